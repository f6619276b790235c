"""Launch configurations: grid and block sizes, shared memory, and the choice of cross-entropy layout.

Pure Python (no CuPy, no GPU), unit-tested in ``tests/test_cuda_host.py``. The grid of a reducing kernel
depends only on the problem size and the device's SM count, never on timing, so the per-block partial
sums — and with them the losses — are bit-identical from run to run on one device.

The plan follows the device's compute capability: thread-block clusters (distributed shared memory) only
on 9.0 and newer, and bfloat16 only on 8.0 and newer (its rounding conversion is an sm_80 instruction).
Grids are sized from the blocks that are actually resident on an SM (the occupancy API, through
``compiler.resident_blocks``), so a grid-stride kernel runs as whole waves.

The constants (the shared-memory chunk target, the block sizes) are unmeasured predictions;
``bench/gpu_benchmark.py --sweep`` times every layout to confirm or correct them (bench/GPU.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .specialisation import CrossEntropyLayout

ELEMENTWISE_THREADS = 256
"""Must match ELEMENTWISE_THREADS in elementwise.cu (its __launch_bounds__)."""

FINISH_THREADS = 256
"""Must match FINISH_THREADS in common.cuh."""

CLASS_THREADS = 256
"""Must match CLASS_THREADS in class_targets.cuh (and NLL_GRAD_THREADS in nll_loss.cu)."""

BLOCKS_PER_SM = 8
"""Resident 256-thread blocks per SM when nothing but the thread count limits them (2048 threads per SM):
the grid of a kernel whose occupancy is not known."""

MAX_THREADS_PER_SM = 2048
MAX_BLOCKS_PER_SM = 32
REGISTERS_PER_SM = 65536
REGISTER_GRANULE = 8
"""Registers are allocated per thread in multiples of this (per warp in multiples of 256)."""

VECTOR_BYTES = 16

CLUSTER_SIZES = (1, 2, 4, 8)
"""Portable thread-block cluster sizes (sm_90)."""

CLUSTER_CAPABILITY = (9, 0)
"""Thread-block clusters (``__cluster_dims__``, distributed shared memory) need compute capability 9.0."""

BFLOAT16_CAPABILITY = (8, 0)
"""The float32 -> bfloat16 rounding conversion (``cvt.rn.bf16.f32``) needs compute capability 8.0."""

MIN_ROW_THREADS = 32
MAX_ROW_THREADS = 512
"""Block sizes of the row layouts. At most 512 so that two blocks share an SM (64 registers per thread at
most: MIN_BLOCKS in cross_entropy.cu) and one block's read overlaps another's barrier and write."""

CHUNK_BYTES_TARGET = 48 * 1024
"""The shared-memory layout splits a row over the smallest cluster whose per-block chunk fits this."""

STATIC_SHARED_RESERVE = 4 * 1024
"""Shared memory the cross-entropy kernel declares statically (scratch, cluster slots), with a margin."""

THREAD_PER_ROW_MAX_CLASSES = 32
"""Rows this short go one thread per row: a block per row would leave most of its threads idle."""

STRIDED_ROWS_MIN_CLASSES = 1024
STRIDED_ROWS_PER_SM = 32
"""Input (N, C, d1, ...) whose class axis has stride S > 1 goes one thread per row, unless C is at least
STRIDED_ROWS_MIN_CLASSES and there are at most STRIDED_ROWS_PER_SM rows (positions) per SM - fewer than a
warp per SM, which would leave the GPU idle while each thread loops over C classes: then a block per row
reads the row with stride S (no vectors)."""

ROW_WORKERS_PER_SM = 16
"""Cap on row workers (blocks or clusters) per SM for the row layouts: enough to fill every SM, few
partial sums for the deterministic final reduction."""


def vector_width(itemsize: int) -> int:
    """Elements per 16-byte vector (VEC in common.cuh)."""
    return VECTOR_BYTES // itemsize


def is_aligned(*pointers: int | None) -> bool:
    """Whether every pointer given (None skipped) is 16-byte aligned, so the vector path may be taken."""
    return all(p % VECTOR_BYTES == 0 for p in pointers if p is not None)


def same_vector_offset(*pointers: int | None) -> bool:
    """Whether every pointer given (None skipped) lies the same distance past a 16-byte boundary: then the
    row layouts of cross_entropy.cu peel the same head off every row of each and use vectors for the rest."""
    return len({p % VECTOR_BYTES for p in pointers if p is not None}) <= 1


@dataclass(frozen=True)
class RowChunk:
    """The classes one block of a cluster handles in a row (cross_entropy.cu, row layouts)."""

    lo: int
    hi: int
    vector_begin: int
    vector_end: int
    origin: int
    """Class c is chunk_values[c - origin] in shared memory."""


def row_chunks(classes: int, cluster: int, vec: int, misalignment: int, vectorised: bool = True) -> list[RowChunk]:
    """The row split of cross_entropy.cu for a row whose start is ``misalignment`` elements past a 16-byte
    boundary: the same integer arithmetic as the kernel, here so the tests can check it covers every class
    once, with aligned vectors and shared-memory offsets inside ``shared_chunk_elements + vec``."""
    chunk = shared_chunk_elements(classes, cluster, vec)
    head = min(vec - misalignment if vectorised and misalignment else 0, classes)
    chunks = []
    for rank in range(cluster):
        lo = min(0 if rank == 0 else head + rank * chunk, classes)
        hi = classes if rank == cluster - 1 else min(head + (rank + 1) * chunk, classes)
        vector_begin = head if rank == 0 else lo
        vector_end = vector_begin + (hi - vector_begin) // vec * vec if vectorised else vector_begin
        origin = vector_begin - vec if vector_begin > lo else vector_begin
        chunks.append(RowChunk(lo, hi, vector_begin, vector_end, origin))
    return chunks


def require_capability(dtype: str, capability: tuple[int, int]) -> None:
    """Raises a TypeError when the device cannot run kernels on ``dtype`` elements (bfloat16 below sm_80)."""
    if dtype == "bfloat16" and tuple(capability) < BFLOAT16_CAPABILITY:
        major, minor = capability
        raise TypeError(
            f"bfloat16 input needs an NVIDIA GPU of compute capability 8.0 or newer (this one is {major}.{minor}); "
            "cast the input to float16 or float32, or use backend='array_api'"
        )


def resident_blocks_estimate(threads: int, registers: int, shared_bytes: int, shared_per_sm: int) -> int:
    """Blocks of ``threads`` threads resident on one SM, limited by threads, registers and shared memory
    (what the occupancy API answers; used where it cannot be asked). At least 1."""
    limit = min(MAX_BLOCKS_PER_SM, MAX_THREADS_PER_SM // threads)
    if registers > 0:
        per_thread = math.ceil(registers / REGISTER_GRANULE) * REGISTER_GRANULE
        limit = min(limit, REGISTERS_PER_SM // (per_thread * threads))
    if shared_bytes > 0:
        limit = min(limit, shared_per_sm // shared_bytes)
    return max(1, limit)


def grid_for_elements(
    elements: int, per_thread_step: int, sm_count: int, threads: int = ELEMENTWISE_THREADS,
    blocks_per_sm: int = BLOCKS_PER_SM,
) -> int:
    """Blocks for a grid-stride loop over ``elements`` taken ``per_thread_step`` at a time: at most one
    full wave of resident blocks (``blocks_per_sm`` of them per SM), at least one block (an empty input
    still writes its partial sum)."""
    steps = math.ceil(elements / per_thread_step)
    return max(1, min(math.ceil(steps / threads), sm_count * max(1, blocks_per_sm)))


@dataclass(frozen=True)
class CrossEntropyPlan:
    """How cross_entropy.cu runs for one problem shape."""

    layout: CrossEntropyLayout
    cluster: int
    threads: int
    grid: int
    workers: int
    """Blocks (or clusters) that each write one partial sum: the final reduction's count."""
    shared_bytes: int
    """Dynamic shared memory per block (the row chunk and one vector for a misaligned head, ROWS_SHARED)."""


def shared_chunk_elements(classes: int, cluster: int, vec: int) -> int:
    """Classes per block of a cluster: ceil(C / cluster) rounded up to a multiple of VEC (as the kernel does)."""
    per_block = math.ceil(classes / cluster)
    return math.ceil(per_block / vec) * vec


def row_threads(elements_per_block: int, vec: int) -> int:
    """Block size for a row chunk: enough threads for a few vectors each, MIN_ROW_THREADS (one warp, for
    rows of a few hundred classes) to MAX_ROW_THREADS."""
    threads = MIN_ROW_THREADS
    while threads < MAX_ROW_THREADS and threads * vec * 4 < elements_per_block:
        threads *= 2
    return threads


def plan_cross_entropy(
    rows: int,
    classes: int,
    inner: int,
    itemsize: int,
    *,
    probability_target: bool,
    sm_count: int,
    shared_limit: int,
    chunk_bytes_target: int = CHUNK_BYTES_TARGET,
    capability: tuple[int, int] = CLUSTER_CAPABILITY,
    compute_grad: bool = True,
    blocks_per_sm: int = BLOCKS_PER_SM,
) -> CrossEntropyPlan:
    """The layout, cluster size, block size and grid for ``rows`` rows of ``classes`` logits.

    ``inner`` > 1 means the class axis has stride ``inner`` (input (N, C, d1, ...)): one thread per row,
    as are rows of at most THREAD_PER_ROW_MAX_CLASSES classes (but few long strided rows get a block each,
    STRIDED_ROWS_MIN_CLASSES); ``blocks_per_sm`` (the resident blocks of
    that kernel) sizes its grid. Contiguous rows of class-index targets whose gradient is wanted are held
    in shared memory, split over the smallest cluster whose chunk fits ``chunk_bytes_target`` (or the
    largest cluster whose chunk fits ``shared_limit``, the device's opt-in maximum per block), so the
    logits are read from memory once; clusters of more than one block only on ``capability`` 9.0 and
    newer. Other rows are streamed: read twice with a gradient, once without (a forward-only call gains
    nothing from staging a row in shared memory).
    """
    vec = vector_width(itemsize)
    if inner > 1 and classes >= STRIDED_ROWS_MIN_CLASSES and rows <= sm_count * STRIDED_ROWS_PER_SM:
        return CrossEntropyPlan(CrossEntropyLayout.ROWS_STREAMED, 1, row_threads(classes, 1), rows, rows, 0)
    if inner > 1 or classes <= THREAD_PER_ROW_MAX_CLASSES:
        grid = grid_for_elements(rows, 1, sm_count, threads=ELEMENTWISE_THREADS, blocks_per_sm=blocks_per_sm)
        return CrossEntropyPlan(CrossEntropyLayout.THREAD_PER_ROW, 1, ELEMENTWISE_THREADS, grid, grid, 0)
    if not probability_target and compute_grad:
        usable = shared_limit - STATIC_SHARED_RESERVE
        sizes = CLUSTER_SIZES if tuple(capability) >= CLUSTER_CAPABILITY else (1,)
        # a block holds its chunk and, in block 0, a row's misaligned head: one vector more
        fitting = [c for c in sizes if (shared_chunk_elements(classes, c, vec) + vec) * itemsize <= usable]
        if fitting:
            preferred = [c for c in fitting if shared_chunk_elements(classes, c, vec) * itemsize <= chunk_bytes_target]
            cluster = preferred[0] if preferred else fitting[-1]
            chunk = shared_chunk_elements(classes, cluster, vec)
            threads = row_threads(chunk, vec)
            workers = row_workers(rows, sm_count, threads)
            return CrossEntropyPlan(
                CrossEntropyLayout.ROWS_SHARED, cluster, threads, workers * cluster, workers, (chunk + vec) * itemsize,
            )
    threads = row_threads(classes, vec)
    workers = row_workers(rows, sm_count, threads)
    return CrossEntropyPlan(CrossEntropyLayout.ROWS_STREAMED, 1, threads, workers, workers, 0)


def row_workers(rows: int, sm_count: int, threads: int) -> int:
    """Row workers (blocks or clusters) of the row layouts: ROW_WORKERS_PER_SM per SM, more for small
    blocks so that a warp per row still fills an SM's 2048 threads, never more than the rows."""
    per_sm = max(ROW_WORKERS_PER_SM, MAX_THREADS_PER_SM // threads)
    return max(1, min(rows, sm_count * per_sm))
