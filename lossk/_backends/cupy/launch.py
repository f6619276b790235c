"""Launch configurations: grid and block sizes, shared memory, and the choice of cross-entropy layout.

Pure Python (no CuPy, no GPU), unit-tested in ``tests/test_cuda_host.py``. The grid of a reducing kernel
depends only on the problem size and the device's SM count, never on timing, so the per-block partial
sums — and with them the losses — are bit-identical from run to run on one device.

These are predictions written before any run on a GPU: the constants (blocks per SM, the shared-memory
chunk target) are what ``bench/gpu_benchmark.py`` is meant to confirm or correct on an H100.
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
"""Resident 256-thread blocks per SM for a full H100 SM (2048 threads): one wave, then grid-stride."""

VECTOR_BYTES = 16

CLUSTER_SIZES = (1, 2, 4, 8)
"""Portable thread-block cluster sizes (sm_90)."""

CHUNK_BYTES_TARGET = 48 * 1024
"""The shared-memory layout splits a row over the smallest cluster whose per-block chunk fits this."""

STATIC_SHARED_RESERVE = 4 * 1024
"""Shared memory the cross-entropy kernel declares statically (scratch, cluster slots), with a margin."""

THREAD_PER_ROW_MAX_CLASSES = 32
"""Rows this short go one thread per row: a block per row would leave most of its threads idle."""

ROW_WORKERS_PER_SM = 16
"""Cap on row workers (blocks or clusters) per SM for the row layouts: enough to fill every SM, few
partial sums for the deterministic final reduction."""


def vector_width(itemsize: int) -> int:
    """Elements per 16-byte vector (VEC in common.cuh)."""
    return VECTOR_BYTES // itemsize


def is_aligned(*pointers: int | None) -> bool:
    """Whether every pointer given (None skipped) is 16-byte aligned, so the vector path may be taken."""
    return all(p % VECTOR_BYTES == 0 for p in pointers if p is not None)


def grid_for_elements(elements: int, per_thread_step: int, sm_count: int, threads: int = ELEMENTWISE_THREADS) -> int:
    """Blocks for a grid-stride loop over ``elements`` taken ``per_thread_step`` at a time: at most one
    full wave of resident blocks, at least one block (an empty input still writes its partial sum)."""
    steps = math.ceil(elements / per_thread_step)
    return max(1, min(math.ceil(steps / threads), sm_count * BLOCKS_PER_SM))


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
    """Dynamic shared memory per block (the row chunk, layout ROWS_SHARED)."""


def shared_chunk_elements(classes: int, cluster: int, vec: int) -> int:
    """Classes per block of a cluster: ceil(C / cluster) rounded up to a multiple of VEC (as the kernel does)."""
    per_block = math.ceil(classes / cluster)
    return math.ceil(per_block / vec) * vec


def row_threads(elements_per_block: int, vec: int) -> int:
    """Block size for a row chunk: enough threads for a few vectors each, 128 to 1024."""
    threads = 128
    while threads < 1024 and threads * vec * 4 < elements_per_block:
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
) -> CrossEntropyPlan:
    """The layout, cluster size, block size and grid for ``rows`` rows of ``classes`` logits.

    ``inner`` > 1 means the class axis has stride ``inner`` (input (N, C, d1, ...)): one thread per row.
    Contiguous rows of class-index targets are held in shared memory, split over the smallest cluster
    whose chunk fits ``chunk_bytes_target`` (or the largest cluster whose chunk fits ``shared_limit``,
    the device's opt-in maximum per block), so the logits are read from memory once; other rows are
    streamed twice.
    """
    vec = vector_width(itemsize)
    if inner > 1 or classes <= THREAD_PER_ROW_MAX_CLASSES:
        grid = grid_for_elements(rows, 1, sm_count, threads=ELEMENTWISE_THREADS)
        return CrossEntropyPlan(CrossEntropyLayout.THREAD_PER_ROW, 1, ELEMENTWISE_THREADS, grid, grid, 0)
    workers = max(1, min(rows, sm_count * ROW_WORKERS_PER_SM))
    if not probability_target:
        usable = shared_limit - STATIC_SHARED_RESERVE
        fitting = [c for c in CLUSTER_SIZES if shared_chunk_elements(classes, c, vec) * itemsize <= usable]
        if fitting:
            preferred = [c for c in fitting if shared_chunk_elements(classes, c, vec) * itemsize <= chunk_bytes_target]
            cluster = preferred[0] if preferred else fitting[-1]
            chunk = shared_chunk_elements(classes, cluster, vec)
            return CrossEntropyPlan(
                CrossEntropyLayout.ROWS_SHARED, cluster, row_threads(chunk, vec), workers * cluster, workers,
                chunk * itemsize,
            )
    return CrossEntropyPlan(CrossEntropyLayout.ROWS_STREAMED, 1, row_threads(classes, vec), workers, workers, 0)
