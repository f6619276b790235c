"""The host side of the CUDA backend, without a GPU or CuPy: specialisations, launch plans, argument
packing against the kernels' parameter lists, layouts, DLPack decisions, sources and registration."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import re

import numpy as np
import pytest
import torch

from lossk import _dispatch
from lossk._losses import ELEMENTWISE_LOSSES
from lossk._spec import ElementwiseLoss
from lossk._backends.cupy import (
    arguments, compiler, elementwise_losses, interop, launch, layout, multi_input, scaling, sources, specialisation,
)
from lossk._backends.cupy.launch import plan_cross_entropy
from lossk._backends.cupy.specialisation import CrossEntropyLayout, OptionLayout

H100_SMS = 132
H100_SHARED_OPTIN = 227 * 1024
A100_SHARED_OPTIN = 163 * 1024  # sm_80
T4_SHARED_OPTIN = 64 * 1024  # sm_75
ROW_THREADS = (32, 64, 128, 256, 512)

# ---- specialisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "name"),
    [
        (np.float32, "float32"), (np.dtype("float16"), "float16"), (torch.bfloat16, "bfloat16"),
        (torch.float64, "float64"), (torch.int64, "int64"), (np.uint8, "uint8"), ("bfloat16", "bfloat16"),
    ],
)
def test_dtype_names_of_every_library(dtype: object, name: str) -> None:
    assert specialisation.dtype_name(dtype) == name


def test_cupy_bfloat16_is_ml_dtypes() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    assert specialisation.dtype_name(ml_dtypes.bfloat16) == "bfloat16"
    assert specialisation.dtype_name(np.dtype(ml_dtypes.bfloat16)) == "bfloat16"
    assert interop.numpy_dtype("bfloat16") == np.dtype(ml_dtypes.bfloat16)


def test_dtype_codes_and_accumulators() -> None:
    assert [specialisation.float_code(n) for n in ("float32", "float64", "float16", "bfloat16")] == [0, 1, 2, 3]
    assert specialisation.accumulator_name(torch.float64) == "float64"
    assert {specialisation.accumulator_name(d) for d in (np.float16, torch.bfloat16, np.float32)} == {"float32"}
    with pytest.raises(TypeError, match="float16, bfloat16, float32 and float64"):
        specialisation.float_code(np.int32)
    with pytest.raises(TypeError, match="class indices"):
        specialisation.index_code(np.uint16)


def test_elementwise_options_are_minus_d_flags() -> None:
    spec = specialisation.elementwise(
        ELEMENTWISE_LOSSES["huber_loss"], np.float16, np.float32, weight=OptionLayout.PERIODIC,
        compute_grad=False, reduce=True, grad_output_array=True,
    )
    flags = dict(option[2:].split("=", 1) for option in spec.options())
    assert {k: v for k, v in flags.items() if not k.startswith("LOSSK_") or k in (
        "LOSSK_ELEMENT", "LOSSK_ELEMENT_OPTIONS", "LOSSK_INPUT", "LOSSK_TARGET", "LOSSK_WEIGHT", "LOSSK_OPTION0",
        "LOSSK_OPTION1", "LOSSK_GRAD", "LOSSK_HESS", "LOSSK_REDUCE", "LOSSK_GRAD_OUTPUT")} == {
        "LOSSK_ELEMENT": "huber_loss_element", "LOSSK_ELEMENT_OPTIONS": "(LOSSK_SCALAR(0))LOSSK_COMMA",
        "LOSSK_INPUT": "2", "LOSSK_TARGET": "0", "LOSSK_WEIGHT": "2", "LOSSK_OPTION0": "0", "LOSSK_OPTION1": "0",
        "LOSSK_GRAD": "0", "LOSSK_HESS": "0", "LOSSK_REDUCE": "1",
        "LOSSK_GRAD_OUTPUT": "0",  # no derivative, so no upstream array: one variant, not two
    }
    assert flags["LOSSK_LOG_FLOOR"] == "((ACC)-100.0)" and flags["LOSSK_LOG_2"] == f"((ACC){math.log(2)!r})"
    assert not any("," in o or " " in o for o in spec.options())  # nvcc splits -D values at commas


@pytest.mark.parametrize("loss", sorted(ELEMENTWISE_LOSSES))
def test_every_spec_has_its_device_function(loss: str) -> None:
    spec = ELEMENTWISE_LOSSES[loss]
    if spec.differentiable != ("input",) or spec.inputs != ("input", "target"):
        pytest.skip(f"{loss}: multi-input losses have no CUDA kernel template yet (CuPy arrays take the reference)")
    assert spec.cuda_function in specialisation.device_functions(), (
        f"kernels/cuda/pointwise.cuh has no device function {spec.cuda_function} (see its header)")
    kinds = [kind for kind, _ in specialisation.element_options(spec)]
    text = sources.read_text("pointwise.cuh")
    signature = re.search(rf"void {spec.cuda_function}\(([^)]*)\)", text).group(1)  # type: ignore[union-attr]
    parameters = [p.split()[0] for p in signature.split(",")]
    expected = ["ACC", "ACC", *("bool" if k == "flag" else "ACC" for k in kinds), "ACC&", "ACC&", "ACC&"]
    assert parameters == expected, f"{spec.cuda_function}({signature}): options in the spec's order, {kinds}"
    assert loss in elementwise_losses.IMPLEMENTATIONS


def test_spec_constants_are_macros_and_may_not_disagree() -> None:
    table = {"a": ELEMENTWISE_LOSSES["binary_cross_entropy"], "b": ELEMENTWISE_LOSSES["log_cosh_loss"]}
    assert dict(specialisation.constant_defines(table)) == {
        "LOSSK_BCE_GRAD_EPSILON": "((ACC)9.999999960041972e-13)", "LOSSK_LOG_FLOOR": "((ACC)-100.0)",
        "LOSSK_LOG_2": f"((ACC){math.log(2)!r})"}
    clash = dataclasses.replace(ELEMENTWISE_LOSSES["mse_loss"], constants={"LOG_2": 0.5})
    with pytest.raises(ValueError, match="constant LOG_2 is .* in log_cosh_loss but 0.5 in mse_loss"):
        specialisation.constant_defines({**table, "c": clash})


def test_option_slots_follow_the_spec_order() -> None:
    spec = ELEMENTWISE_LOSSES["binary_cross_entropy_with_logits"]
    with_pos_weight = specialisation.elementwise(spec, "float32", "float32", weight=OptionLayout.NONE,
                                                 options=(OptionLayout.FULL,), compute_grad=True, compute_hess=True,
                                                 reduce=False, grad_output_array=True)
    flags = dict(with_pos_weight.defines)
    assert (flags["LOSSK_ELEMENT_OPTIONS"], flags["LOSSK_OPTION0"], flags["LOSSK_HESS"]) == (
        "(LOSSK_OPTION(0))LOSSK_COMMA", 1, 1)
    without = specialisation.elementwise(spec, "float32", "float32", weight=OptionLayout.NONE, compute_grad=True,
                                         reduce=True, grad_output_array=False)
    assert dict(without.defines)["LOSSK_ELEMENT_OPTIONS"] == "((ACC)1.0)LOSSK_COMMA"  # the neutral pos_weight
    log_target = specialisation.elementwise(ELEMENTWISE_LOSSES["kl_div"], "float32", "float32", weight=OptionLayout.NONE,
                                            flags={"log_target": True}, compute_grad=True, reduce=True,
                                            grad_output_array=False)
    assert dict(log_target.defines)["LOSSK_ELEMENT_OPTIONS"] == "(true)LOSSK_COMMA"
    many = dataclasses.replace(ELEMENTWISE_LOSSES["huber_loss"], options=(
        *ELEMENTWISE_LOSSES["huber_loss"].options,
        *(dataclasses.replace(ELEMENTWISE_LOSSES["huber_loss"].options[1], name=f"s{k}") for k in range(4))))
    with pytest.raises(NotImplementedError, match="at most 4 scalar"):
        specialisation.element_options(many)


def test_cross_entropy_return_z_turns_the_z_term_on() -> None:
    spec = specialisation.cross_entropy(
        torch.bfloat16, torch.int32, probability_target=False, weight=False, smoothing=False, softcap=False,
        z_loss=False, return_z=True, compute_grad=True, reduce=True, grad_output_array=False,
        layout=CrossEntropyLayout.ROWS_SHARED, cluster=8, threads=512,
    )
    flags = dict(spec.defines)
    assert (flags["LOSSK_Z_LOSS"], flags["LOSSK_RETURN_Z"], flags["LOSSK_INDEX"], flags["LOSSK_CLUSTER"]) == (1, 1, 1, 8)
    assert "LOSSK_TARGET" not in flags
    assert hash(spec) == hash(specialisation.cross_entropy(
        "bfloat16", "int32", probability_target=False, weight=False, smoothing=False, softcap=False,
        z_loss=False, return_z=True, compute_grad=True, reduce=True, grad_output_array=False,
        layout=CrossEntropyLayout.ROWS_SHARED, cluster=8, threads=512,
    ))  # the compile cache key does not depend on which library named the dtype


# ---- launch configuration -------------------------------------------------------------------------------


def test_vector_width_and_alignment() -> None:
    assert [launch.vector_width(s) for s in (8, 4, 2)] == [2, 4, 8]
    assert launch.is_aligned(0, 256, None, 4096)
    assert not launch.is_aligned(256, 260)
    assert launch.same_vector_offset(260, 4100, None) and launch.same_vector_offset(256) and launch.same_vector_offset()
    assert not launch.same_vector_offset(256, 260)


@pytest.mark.parametrize("itemsize", [2, 4, 8])
@pytest.mark.parametrize("cluster", [1, 2, 4, 8])
@pytest.mark.parametrize("classes", [1, 3, 7, 8, 9, 33, 50257, 50257 * 3 + 5, 4096])
def test_row_chunks_cover_every_class_once_with_aligned_vectors(classes: int, cluster: int, itemsize: int) -> None:
    vec = launch.vector_width(itemsize)
    shared = launch.shared_chunk_elements(classes, cluster, vec) + vec  # what the plan allocates
    for misalignment in range(vec):
        for vectorised in (True, False):
            covered: list[int] = []
            for chunk in launch.row_chunks(classes, cluster, vec, misalignment, vectorised):
                assert chunk.lo <= chunk.vector_begin <= chunk.vector_end <= chunk.hi
                assert (chunk.vector_end - chunk.vector_begin) % vec == 0
                if vectorised and chunk.vector_end > chunk.vector_begin:  # 16-byte aligned in global memory
                    assert (misalignment + chunk.vector_begin) % vec == 0
                assert (chunk.vector_begin - chunk.origin) % vec == 0  # and in shared memory
                assert chunk.hi == chunk.lo or 0 <= chunk.lo - chunk.origin and chunk.hi - chunk.origin <= shared
                assert chunk.vector_begin - chunk.lo < vec  # scalars: a head shorter than a vector
                covered += range(chunk.lo, chunk.hi)
            assert covered == list(range(classes)), (misalignment, vectorised)


@pytest.mark.parametrize("elements", [0, 1, 3, 255, 1024, 4097, 2**20 + 3, 2**28, 2**31 + 5])
@pytest.mark.parametrize("step", [1, 2, 4, 8])
def test_element_grids_cover_the_input_within_one_wave(elements: int, step: int) -> None:
    grid = launch.grid_for_elements(elements, step, H100_SMS)
    assert 1 <= grid <= H100_SMS * launch.BLOCKS_PER_SM
    if grid < H100_SMS * launch.BLOCKS_PER_SM:  # below the cap: one step per thread at most
        assert grid * launch.ELEMENTWISE_THREADS * step >= elements
    assert grid == launch.grid_for_elements(elements, step, H100_SMS)  # deterministic: same partials every run
    six = launch.grid_for_elements(elements, step, H100_SMS, blocks_per_sm=6)  # what the occupancy API allows
    assert 1 <= six <= H100_SMS * 6 and (six == grid or six == H100_SMS * 6)


@pytest.mark.parametrize(
    ("threads", "registers", "shared", "expected"),
    [
        (256, 32, 0, 8),  # threads alone limit: 2048 per SM
        (256, 39, 0, 6),  # smooth L1 fp32: 40 registers x 256 threads -> 6 blocks
        (256, 47, 0, 5),
        (256, 56, 0, 4),
        (1024, 62, 0, 1),
        (512, 53, 0, 2),
        (32, 48, 0, 32),  # the block-count limit
        (512, 40, 100 * 1024, 2),  # shared memory: 228 KiB per SM
        (512, 40, 120 * 1024, 1),
    ],
)
def test_resident_block_estimate(threads: int, registers: int, shared: int, expected: int) -> None:
    assert launch.resident_blocks_estimate(threads, registers, shared, 228 * 1024) == expected


@pytest.mark.parametrize(
    ("rows", "classes", "itemsize", "cluster", "chunk_bytes"),
    [
        (4096, 131072, 4, 8, 64 * 1024),  # 512 KB rows: the issue's large case, over a cluster of 8
        (4096, 131072, 2, 8, 32 * 1024),
        (16384, 32768, 4, 4, 32 * 1024),
        (16384, 32768, 2, 2, 32 * 1024),
        (8, 1000, 4, 1, 4000),
        (3, 33, 8, 1, 34 * 8),  # rounded up to whole 16-byte vectors
    ],
)
def test_rows_that_fit_are_held_in_shared_memory(rows: int, classes: int, itemsize: int, cluster: int, chunk_bytes: int) -> None:
    plan = plan_cross_entropy(rows, classes, 1, itemsize, probability_target=False, sm_count=H100_SMS,
                              shared_limit=H100_SHARED_OPTIN)
    vec = launch.vector_width(itemsize)
    # the chunk, and one vector for a row's misaligned head
    assert (plan.layout, plan.cluster, plan.shared_bytes) == (CrossEntropyLayout.ROWS_SHARED, cluster, chunk_bytes + 16)
    assert plan.shared_bytes + launch.STATIC_SHARED_RESERVE <= H100_SHARED_OPTIN
    assert (plan.shared_bytes // itemsize) % vec == 0 and plan.shared_bytes // itemsize * cluster >= classes
    assert plan.grid == plan.workers * plan.cluster and plan.workers == launch.row_workers(rows, H100_SMS, plan.threads)
    assert plan.threads in ROW_THREADS


def test_other_rows_are_streamed_or_one_per_thread() -> None:
    def plan(rows: int, classes: int, inner: int, probability: bool = False) -> launch.CrossEntropyPlan:
        return plan_cross_entropy(rows, classes, inner, 4, probability_target=probability, sm_count=H100_SMS,
                                  shared_limit=H100_SHARED_OPTIN)

    assert plan(64, 2**20, 1).layout == CrossEntropyLayout.ROWS_STREAMED  # 4 MB rows: 512 KB per block of 8
    assert plan(64, 50000, 1, probability=True).layout == CrossEntropyLayout.ROWS_STREAMED
    assert plan(64 * 128, 21, 128).layout == CrossEntropyLayout.THREAD_PER_ROW  # (N, C, d): strided classes
    assert plan(64 * 128, 4096, 128).layout == CrossEntropyLayout.THREAD_PER_ROW  # enough rows to fill the GPU
    strided = plan(8, 131072, 8)  # (1, 131072, 8): eight long rows, a block each instead of eight threads
    assert (strided.layout, strided.grid, strided.threads, strided.shared_bytes) == (
        CrossEntropyLayout.ROWS_STREAMED, 8, launch.MAX_ROW_THREADS, 0)
    assert plan(1000, 1, 1).layout == CrossEntropyLayout.THREAD_PER_ROW  # rows of length 1
    small = plan(5, 10, 1)
    assert (small.layout, small.grid, small.workers, small.shared_bytes) == (CrossEntropyLayout.THREAD_PER_ROW, 1, 1, 0)
    without_optin = plan_cross_entropy(4, 131072, 1, 4, probability_target=False, sm_count=8, shared_limit=48 * 1024)
    assert without_optin.layout == CrossEntropyLayout.ROWS_STREAMED  # 64 KB chunks do not fit 48 KB
    forward_only = plan_cross_entropy(4096, 32768, 1, 2, probability_target=False, sm_count=H100_SMS,
                                      shared_limit=H100_SHARED_OPTIN, compute_grad=False)
    assert (forward_only.layout, forward_only.shared_bytes) == (CrossEntropyLayout.ROWS_STREAMED, 0)  # read once


@pytest.mark.parametrize(("classes", "itemsize", "threads"), [(33, 4, 32), (500, 4, 32), (1000, 4, 64), (500, 2, 32),
                                                              (4096, 4, 256), (32768, 2, 512), (131072, 4, 512)])
def test_row_blocks_grow_with_the_row(classes: int, itemsize: int, threads: int) -> None:
    plan = plan_cross_entropy(4096, classes, 1, itemsize, probability_target=False, sm_count=H100_SMS,
                              shared_limit=H100_SHARED_OPTIN)
    assert plan.threads == threads  # a warp for a few hundred classes, never more than 512 threads
    assert plan.workers == min(4096, H100_SMS * max(launch.ROW_WORKERS_PER_SM, 2048 // threads))  # SMs filled


@pytest.mark.parametrize(
    ("capability", "shared_limit", "rows", "classes", "itemsize", "layout", "cluster"),
    [
        ((9, 0), H100_SHARED_OPTIN, 4096, 131072, 4, CrossEntropyLayout.ROWS_SHARED, 8),
        ((8, 0), A100_SHARED_OPTIN, 4096, 131072, 4, CrossEntropyLayout.ROWS_STREAMED, 1),  # 512 KB rows: no cluster
        ((8, 0), A100_SHARED_OPTIN, 4096, 32768, 4, CrossEntropyLayout.ROWS_SHARED, 1),  # 128 KB fits one block
        ((8, 0), A100_SHARED_OPTIN, 16384, 32768, 2, CrossEntropyLayout.ROWS_SHARED, 1),
        ((7, 5), T4_SHARED_OPTIN, 4096, 32768, 4, CrossEntropyLayout.ROWS_STREAMED, 1),
        ((7, 5), T4_SHARED_OPTIN, 4096, 8192, 4, CrossEntropyLayout.ROWS_SHARED, 1),  # 32 KB
        ((7, 5), T4_SHARED_OPTIN, 64, 20, 4, CrossEntropyLayout.THREAD_PER_ROW, 1),
    ],
)
def test_plans_follow_the_compute_capability(capability: tuple[int, int], shared_limit: int, rows: int, classes: int,
                                             itemsize: int, layout: CrossEntropyLayout, cluster: int) -> None:
    plan = plan_cross_entropy(rows, classes, 1, itemsize, probability_target=False, sm_count=108,
                              shared_limit=shared_limit, capability=capability)
    assert (plan.layout, plan.cluster) == (layout, cluster)
    assert plan.shared_bytes + launch.STATIC_SHARED_RESERVE <= shared_limit
    assert capability >= launch.CLUSTER_CAPABILITY or plan.cluster == 1


def test_bfloat16_needs_compute_capability_8(monkeypatch: pytest.MonkeyPatch) -> None:
    launch.require_capability("bfloat16", (8, 0))
    launch.require_capability("float16", (7, 5))
    with pytest.raises(TypeError, match=r"bfloat16 input needs an NVIDIA GPU of compute capability 8\.0 .*7\.5"):
        launch.require_capability("bfloat16", (7, 5))
    spec = specialisation.nll_loss("bfloat16", "int64", weight=False, reduce=True, grad_output_array=False)
    assert compiler.element_dtypes(spec) == {"bfloat16"}
    monkeypatch.setattr(compiler, "compute_capability", lambda device: (7, 5))
    monkeypatch.setattr(compiler, "module", lambda spec: pytest.fail("compiled a variant the device cannot run"))
    compiler.kernel_function.cache_clear()
    with pytest.raises(TypeError, match="compute capability 8.0"):
        compiler.kernel_function(spec, "lossk_nll_rows", 0)
    compiler.kernel_function.cache_clear()


# ---- layouts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compact_shape", "shape"),
    [((5,), (3, 5)), ((1, 5), (3, 5)), ((), (4, 2)), ((2, 3), (4, 2, 3)), ((3, 1), (3, 4)), ((4, 2), (4, 2)),
     ((1,), (7,)), ((2, 1, 3), (2, 1, 3))],
)
def test_broadcast_period_reads_broadcast_views_without_copying(compact_shape: tuple, shape: tuple) -> None:
    base = np.arange(math.prod(compact_shape), dtype=np.float32).reshape(compact_shape)
    view = np.broadcast_to(base, shape)
    strides = tuple(s // view.itemsize for s in view.strides)
    period = layout.broadcast_period(shape, strides)
    flat = view.reshape(-1)
    if period is None:  # (3, 1) -> (3, 4): the repeated axis is last, not a compact trailing block
        assert compact_shape == (3, 1)
        return
    compact = np.lib.stride_tricks.as_strided(view, (period,), (view.itemsize,))
    assert np.array_equal(compact[np.arange(flat.size) % period], flat)


def test_contiguity_and_class_layout() -> None:
    assert layout.is_c_contiguous((4, 3), (3, 1)) and layout.is_c_contiguous((4, 1), (1, 7))
    assert not layout.is_c_contiguous((4, 3), (1, 4)) and not layout.is_c_contiguous((4, 3), (6, 2))
    assert layout.broadcast_period((0, 3), (3, 1)) == 0
    assert layout.class_layout((7,)) == (1, 7, 1)
    assert layout.class_layout((4, 7)) == (4, 7, 1)
    assert layout.class_layout((4, 7, 2, 3)) == (24, 7, 6)


# ---- sources and kernel signatures -----------------------------------------------------------------------


def test_sources_inline_their_headers_once() -> None:
    assert sources.cuda_sources() == ["cross_entropy.cu", "elementwise.cu", "multi_input.cu", "nll_loss.cu"]
    for name in sources.cuda_sources():
        text = sources.kernel_source(name)
        assert not re.search(r'^\s*#\s*include\s+"', text, re.MULTILINE), name
        assert text.count("struct f16_t") == 1, name  # common.cuh once, even when two headers include it
        code = re.sub(r"//[^\n]*", "", text)
        assert "INFINITY" not in code  # NVRTC has no INFINITY macro
        text.encode("ascii")  # CuPy writes it in the locale's encoding
    assert sources.ascii_text("1/2: \u00bd, d\u00b2 \u00b1 \u2014 \u00e9") == "1/2: 1/2, d^2 +- - e"


def test_sources_are_read_from_the_checkout_without_an_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(package: str) -> None:
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(sources.importlib.resources, "files", missing)
    sources.folder.cache_clear()
    try:
        assert sources.folder() == sources.CHECKOUT_FOLDER and "cross_entropy.cu" in sources.cuda_sources()
    finally:
        sources.folder.cache_clear()


def _kernel_parameters(source: str, kernel: str) -> list[str]:
    """The C parameter declarations of ``kernel`` in ``source`` (KERNEL_ARGS expanded)."""
    text = sources.kernel_source(source)
    macro = re.search(r"#define KERNEL_ARGS((?:.*\\\n)*.*)", text)
    if macro:
        text = text.replace("(KERNEL_ARGS)", "(" + macro.group(1).replace("\\\n", " ") + ")")
    match = re.search(rf"\b{kernel}\(([^)]*)\)\s*{{", text)
    assert match, kernel
    return [p.strip() for p in match.group(1).split(",")]


def _numpy_type(parameter: str, accumulator: type) -> type:
    if "*" in parameter:
        return np.uint64
    kind = parameter.split()[0]
    return {"index_t": np.int64, "int": np.int32, "ACC": accumulator}[kind]


def _dummy_arguments(builder: object, accumulator: str) -> tuple:
    values = {}
    for name, parameter in inspect.signature(builder).parameters.items():
        values[name] = accumulator if name == "accumulator" else (0.5 if parameter.annotation == "float" else 16)
        if name == "options":  # lossk_elementwise's array option slots, and its scalar ones
            values[name] = ((16, 16),) * arguments.ELEMENTWISE_ARRAY_SLOTS
        if name == "scalars":
            values[name] = (0.5,) * arguments.ELEMENTWISE_SCALAR_SLOTS
        if name in ("inputs", "grads", "hessians"):  # lossk_multi_input's pointer groups
            values[name] = (16,) * (3 if name == "inputs" else 2)
    return builder(**values)  # type: ignore[operator]


@pytest.mark.parametrize("accumulator", ["float32", "float64"])
@pytest.mark.parametrize(
    ("source", "kernel", "builder"),
    [
        ("elementwise.cu", "lossk_elementwise", arguments.elementwise),
        ("elementwise.cu", "lossk_sum_partials", arguments.sum_partials),
        ("elementwise.cu", "lossk_finish", arguments.finish),
        ("elementwise.cu", "lossk_finish_acc", arguments.finish_acc),
        ("cross_entropy.cu", "lossk_cross_entropy", arguments.cross_entropy),
        ("cross_entropy.cu", "lossk_cross_entropy_finish", arguments.cross_entropy_finish),
        ("nll_loss.cu", "lossk_class_divisor_partials", arguments.class_divisor_partials),
        ("nll_loss.cu", "lossk_class_divisor_finish", arguments.class_divisor_finish),
        ("nll_loss.cu", "lossk_nll_rows", arguments.nll_rows),
        ("nll_loss.cu", "lossk_nll_finish", arguments.nll_finish),
        ("nll_loss.cu", "lossk_nll_grad", arguments.nll_grad),
        ("multi_input.cu", "lossk_multi_input", arguments.multi_input),
        ("multi_input.cu", "lossk_multi_input_finish", arguments.multi_input_finish),
    ],
)
def test_argument_tuples_match_the_kernel_parameters(source: str, kernel: str, builder: object, accumulator: str) -> None:
    parameters = _kernel_parameters(source, kernel)
    packed = _dummy_arguments(builder, accumulator)
    expected = [_numpy_type(p, arguments.ACCUMULATORS[accumulator]) for p in parameters]
    assert [type(a) for a in packed] == expected, list(zip(parameters, [type(a).__name__ for a in packed]))


def test_every_launched_kernel_exists_in_its_source() -> None:
    host = "".join(inspect.getsource(m) for m in (
        __import__("lossk._backends.cupy.elementwise_losses", fromlist=["x"]),
        __import__("lossk._backends.cupy.class_losses", fromlist=["x"]),
        __import__("lossk._backends.cupy.multi_input", fromlist=["x"]),
    ))
    launched = set(re.findall(r'"(lossk_[a-z_]+)"', host))
    defined = set()
    for name in sources.cuda_sources():
        defined |= set(re.findall(r"\b(lossk_[a-z_]+)\((?:KERNEL_ARGS|[^)]*)\)\s*\{", sources.kernel_source(name)))
    assert launched and launched <= defined, launched - defined


def test_host_constants_match_the_sources() -> None:
    def define(source: str, name: str) -> int:
        return int(re.search(rf"#define {name} (\d+)", sources.kernel_source(source)).group(1))  # type: ignore[union-attr]

    assert define("elementwise.cu", "ELEMENTWISE_THREADS") == launch.ELEMENTWISE_THREADS
    assert define("elementwise.cu", "FINISH_THREADS") == launch.FINISH_THREADS
    assert define("nll_loss.cu", "CLASS_THREADS") == launch.CLASS_THREADS
    assert define("nll_loss.cu", "NLL_GRAD_THREADS") == launch.CLASS_THREADS
    assert define("multi_input.cu", "MULTI_INPUT_THREADS") == launch.ELEMENTWISE_THREADS


# ---- scaling and interop decisions --------------------------------------------------------------------------


def test_upstream_kinds() -> None:
    class FakeCupyScalar:
        pass

    FakeCupyScalar.__module__ = "cupy._core.core"
    assert scaling.upstream_kind(None, "mean", "cupy") == "ones"
    assert scaling.upstream_kind(np.ones(3), "none", "cupy") == "array"
    assert scaling.upstream_kind(2.5, "sum", "torch") == "host" and scaling.host_upstream(2.5, "host") == 2.5
    assert scaling.upstream_kind(np.asarray(2.0), "mean", "cupy") == "host"
    assert scaling.upstream_kind(torch.tensor(2.0), "mean", "torch") == "host"  # a CPU tensor: read on the host
    assert scaling.upstream_kind(FakeCupyScalar(), "mean", "cupy") == "device"
    assert scaling.upstream_kind(FakeCupyScalar(), "mean", "torch") == "host"  # another library: read once here
    assert scaling.host_upstream(FakeCupyScalar(), "device") == 1.0
    assert scaling.reciprocal(4) == 0.25 and scaling.reciprocal(0) == math.inf


def test_interop_decisions() -> None:
    assert interop.library_of(torch.zeros(1)) == "torch"
    with pytest.raises(TypeError, match="CuPy arrays and PyTorch CUDA tensors"):
        interop.library_of(np.zeros(1))
    assert interop.dlpack_view_dtype("torch", "bfloat16") == "int16"
    assert interop.dlpack_view_dtype("torch", "float16") is None
    assert interop.dlpack_view_dtype("cupy", "bfloat16") is None
    assert interop.usable_out((4, 3), (3, 1), "float32", (4, 3), "float32")
    assert not interop.usable_out((4, 3), (1, 4), "float32", (4, 3), "float32")  # transposed
    assert not interop.usable_out((4, 3), (3, 1), "float16", (4, 3), "float32")


def test_external_streams_use_from_external_where_cupy_has_it() -> None:
    calls = []

    class Stream:
        @staticmethod
        def from_external(handle: int, device_id: int) -> str:
            calls.append(("from_external", handle, device_id))
            return "stream"

    class OldCuda:
        class Stream:
            pass

        @staticmethod
        def ExternalStream(handle: int, device_id: int) -> str:  # noqa: N802 - CuPy's name
            calls.append(("ExternalStream", handle, device_id))
            return "old"

    new = type("cupy", (), {"cuda": type("cuda", (), {"Stream": Stream})})
    old = type("cupy", (), {"cuda": OldCuda})
    assert interop.external_stream(new, 77, 1) == "stream" and interop.external_stream(old, 78, 0) == "old"
    assert calls == [("from_external", 77, 1), ("ExternalStream", 78, 0)]


# ---- registration and dispatch ------------------------------------------------------------------------------

LOSSES = (*elementwise_losses.IMPLEMENTATIONS, *multi_input.IMPLEMENTATIONS, "cross_entropy", "nll_loss")


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_is_registered_with_the_reference_options(loss: str) -> None:
    import lossk._backends.cupy  # noqa: F401 - registers

    cupy_registration = _dispatch._REGISTRY[(loss, "cupy")]
    reference = _dispatch._REGISTRY[(loss, "array_api")].implementation
    assert cupy_registration.writes_out

    def keywords(f: object) -> set[str]:
        return {n for n, p in inspect.signature(f).parameters.items() if p.kind is p.KEYWORD_ONLY}

    assert keywords(cupy_registration.implementation) == keywords(reference) | {"out"}


def test_asking_for_cupy_without_a_gpu_raises_a_clear_error() -> None:
    import lossk

    if _dispatch.is_available("cupy"):
        pytest.skip("a GPU and CuPy are present here: tests/test_cuda_gpu.py covers this backend")
    with pytest.raises(lossk.BackendUnavailableError, match=r"backend 'cupy' is not available here.*install it with"):
        lossk.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), backend="cupy")
    assert lossk.mse_loss(np.zeros(3), np.ones(3)) == 1.0  # auto falls back quietly


# ---- the host orchestration, with NumPy standing in for device memory and launches recorded -----------------


ARRAYS_BY_ADDRESS: dict[int, np.ndarray] = {}
"""Arrays HostArrays made, by address: what a recorded launch argument points to."""


class HostArrays(interop.DeviceArrays):
    """DeviceArrays on NumPy arrays: the real layout and dtype logic, host addresses for pointers."""

    def __init__(self, example: object) -> None:
        self.cupy = np  # ascontiguousarray, lib.stride_tricks: what the real methods use
        self.library = "cupy"
        self.device_id = 0
        self._views = []

    def on_device(self) -> contextlib.nullcontext:
        return contextlib.nullcontext()

    def empty(self, shape: tuple[int, ...], name: str) -> np.ndarray:
        return np.full(tuple(shape), np.nan, dtype=interop.numpy_dtype(name))

    def pointer(self, x: np.ndarray | None) -> int:
        return 0 if x is None else int(x.__array_interface__["data"][0])

    def zeros(self, shape: tuple[int, ...], name: str) -> np.ndarray:
        return self._keep(np.zeros(tuple(shape), dtype=interop.numpy_dtype(name)))

    def scratch(self, count: int, name: str) -> np.ndarray:
        return self._keep(np.zeros(max(count, 1), dtype=interop.numpy_dtype(name)))

    def astype(self, x: np.ndarray, name: str) -> np.ndarray:
        return self._keep(super().astype(x, name))

    @staticmethod
    def _keep(x: np.ndarray) -> np.ndarray:
        ARRAYS_BY_ADDRESS[int(x.__array_interface__["data"][0])] = x
        return x

    def scratch_pointer(self, buffer: np.ndarray) -> int:
        return self.pointer(buffer)


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every kernel launch of a call (kernel, grid, threads, arguments, shared bytes, specialisation)."""
    from lossk._backends.cupy import class_losses, compiler, elementwise_losses

    recorded: list[dict] = []
    monkeypatch.setattr(elementwise_losses, "DeviceArrays", HostArrays)
    monkeypatch.setattr(class_losses, "DeviceArrays", HostArrays)
    monkeypatch.setattr(multi_input, "DeviceArrays", HostArrays)
    monkeypatch.setattr(compiler, "device_properties", lambda device: (H100_SMS, H100_SHARED_OPTIN))
    monkeypatch.setattr(compiler, "compute_capability", lambda device: (9, 0))
    monkeypatch.setattr(compiler, "resident_blocks", lambda spec, kernel, threads, shared, device: 6)

    def launch(spec: specialisation.Specialisation, kernel: str, grid: int, threads: int, args: tuple,
               shared_bytes: int = 0) -> None:
        recorded.append({"spec": spec, "kernel": kernel, "grid": grid, "threads": threads, "args": args,
                         "shared": shared_bytes})

    monkeypatch.setattr(compiler, "launch", launch)
    return recorded


def _check_signatures(recorded: list[dict]) -> None:
    for call in recorded:
        parameters = _kernel_parameters(call["spec"].source, call["kernel"])
        assert len(call["args"]) == len(parameters), call["kernel"]
        assert call["threads"] in ROW_THREADS and call["grid"] >= 1


def _named(call: dict) -> dict[str, object]:
    """A recorded launch's arguments by the kernel's parameter names."""
    names = [p.split()[-1].lstrip("*") for p in _kernel_parameters(call["spec"].source, call["kernel"])]
    return dict(zip(names, call["args"], strict=True))


def _elementwise(loss: str) -> object:
    return elementwise_losses.IMPLEMENTATIONS[loss]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_elementwise_host_launches(launches: list[dict], reduction: str, dtype: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 11)).astype(dtype)
    y = rng.normal(size=(37, 11)).astype(dtype)
    weight = np.broadcast_to(rng.uniform(size=11).astype(dtype), x.shape)  # a broadcast view: periodic
    loss, grad = _elementwise("mse_loss")(
        x, y, xp=np, reduction=reduction, grad_output=None, compute_grad=True, out=None, weight=weight
    )
    _check_signatures(launches)
    kernels = [call["kernel"] for call in launches]
    expected = ["lossk_elementwise"] if reduction == "none" else ["lossk_elementwise", "lossk_finish"]
    if reduction == "mean":
        expected = ["lossk_sum_partials", "lossk_finish_acc", *expected]  # sum(weight) first, on the device
    assert kernels == expected
    main = next(c for c in launches if c["kernel"] == "lossk_elementwise")
    flags, args = dict(main["spec"].defines), _named(main)
    assert flags["LOSSK_WEIGHT"] == int(OptionLayout.PERIODIC) and int(args["weight_period"]) == 11
    assert int(args["grad"]) == HostArrays(None).pointer(grad) and grad.shape == x.shape and grad.dtype == x.dtype
    assert int(args["hess"]) == 0 and flags["LOSSK_HESS"] == 0
    assert main["grid"] <= H100_SMS * 6  # one wave of the resident blocks the occupancy API reports
    assert loss.shape == (() if reduction != "none" else x.shape)
    if reduction != "none":
        finish = launches[-1]
        assert int(finish["args"][1]) == main["grid"]  # every partial summed
        assert int(finish["args"][4]) == HostArrays(None).pointer(loss)


def test_elementwise_host_writes_into_out_and_in_place(launches: list[dict]) -> None:
    x = np.linspace(-1, 1, 1001, dtype=np.float32)
    y = np.zeros_like(x)
    out = np.empty_like(x)
    _, grad = _elementwise("binary_cross_entropy_with_logits")(
        x, y, xp=np, reduction="sum", grad_output=2.0, compute_grad=True, out=out, weight=None, pos_weight=None
    )
    args = _named(launches[0])
    assert grad is out and int(args["grad"]) == HostArrays(None).pointer(out)
    assert float(args["grad_scale"]) == 2.0  # the host upstream gradient folded into grad_scale
    launches.clear()
    _, grad = _elementwise("l1_loss")(x, y, xp=np, reduction="mean", grad_output=None, compute_grad=True, out=x,
                                      weight=None)
    args = _named(launches[0])
    assert grad is x and int(args["input"]) == int(args["grad"])  # in place: input is grad
    assert math.isclose(float(args["grad_scale"]), 1 / 1001, rel_tol=1e-6)
    transposed_out = np.empty((1001, 2), np.float32)[:, 0]
    launches.clear()
    _, grad = _elementwise("mse_loss")(x, y, xp=np, reduction="mean", grad_output=None, compute_grad=True,
                                       out=transposed_out, weight=None)
    assert grad is not transposed_out  # not contiguous: written fresh, copied by the caller


def _spec_options(spec: object, rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> dict[str, object]:
    """Every option of ``spec`` set: scalars and flags to their first example, arrays drawn by the spec."""
    options: dict[str, object] = {}
    for option in spec.keyword_options:  # type: ignore[attr-defined]
        if option.kind == "array":
            options[option.name] = np.broadcast_to(np.asarray(option.draw(rng, shape), dtype), shape)
        else:
            options[option.name] = type(option.default)(option.examples[0]) if option.examples else option.default
    return options


def _spec_call(loss: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, object], ElementwiseLoss,
                                                               dict[str, object]]:
    """``(x, y, options)`` of a float32 call of ``loss`` (6 x 5, every option set) and the spec and options the
    kernel runs with after the spec's rewrite (smooth_l1(beta=0) runs l1)."""
    spec = ELEMENTWISE_LOSSES[loss]
    shape = (6, 5)
    inputs = spec.domain.draw(rng, shape, {o.name: o.default for o in spec.keyword_options}, True)
    x, y = (inputs[n].astype(np.float32) for n in spec.inputs)
    options = _spec_options(spec, rng, shape, "float32")
    called, called_options = spec.name, options
    if spec.rewrite is not None and spec.rewrite(options) is not None:
        called, called_options = spec.rewrite(options)
    return x, y, options, ELEMENTWISE_LOSSES[called], called_options


@pytest.mark.parametrize("loss", sorted(elementwise_losses.IMPLEMENTATIONS))
def test_every_spec_launches_its_device_function_with_its_options(launches: list[dict], loss: str) -> None:
    from lossk._hessian import key

    x, y, options, called_spec, called_options = _spec_call(loss, np.random.default_rng(5))
    hessian = _dispatch._REGISTRY[(key(loss), "cupy")].implementation
    loss_value, grad, hess = hessian(x, y, xp=np, reduction="mean", grad_output=None, order=2, **options)
    _check_signatures(launches)
    main = next(c for c in launches if c["kernel"] == "lossk_elementwise")
    flags, args = dict(main["spec"].defines), _named(main)
    assert flags["LOSSK_ELEMENT"] == called_spec.cuda_function and flags["LOSSK_HESS"] == 1
    assert int(args["hess"]) == HostArrays(None).pointer(hess) and hess.shape == x.shape
    scalars = [float(called_options[o.name]) for o in called_spec.formula_options if o.kind == "scalar"]
    assert [float(args[f"scalar{k}"]) for k in range(len(scalars))] == pytest.approx(scalars)
    arrays = [o for o in called_spec.formula_options if o.kind == "array"]
    for k, option in enumerate(arrays):
        given = called_options.get(option.name) is not None
        assert (flags[f"LOSSK_OPTION{k}"] != 0, int(args[f"option{k}"]) != 0) == (given, given)
    assert flags["LOSSK_WEIGHT"] == (0 if called_options.get("weight") is None else flags["LOSSK_WEIGHT"] or -1)
    with_weight_sum = called_spec.mean_divisor == "weight_sum" and called_options.get("weight") is not None
    assert ("lossk_sum_partials" in [c["kernel"] for c in launches]) == with_weight_sum


def test_smooth_l1_with_beta_zero_runs_the_l1_device_function(launches: list[dict]) -> None:
    x = np.linspace(-1, 1, 7, dtype=np.float32)
    _elementwise("smooth_l1_loss")(x, 0 * x, xp=np, reduction="sum", grad_output=None, compute_grad=True, out=None,
                                   beta=0.0)
    assert dict(launches[0]["spec"].defines)["LOSSK_ELEMENT"] == "l1_loss_element"


@pytest.mark.parametrize("loss", sorted(n for n, s in ELEMENTWISE_LOSSES.items() if s.hessian_floor is not None))
def test_every_surrogate_floor_has_its_device_function(loss: str) -> None:
    """``<loss>_hessian_floor`` in pointwise.cuh takes the element's arguments and writes its three values and
    the floor."""
    spec = ELEMENTWISE_LOSSES[loss]
    function = specialisation.hessian_floor_function(spec)
    assert function == f"{loss}_hessian_floor" and function in specialisation.device_functions()
    kinds = [kind for kind, _ in specialisation.element_options(spec)]
    text = sources.read_text("pointwise.cuh")
    signature = re.search(rf"void {function}\(([^)]*)\)", text).group(1)  # type: ignore[union-attr]
    parameters = [p.split()[0] for p in signature.split(",")]
    assert parameters == ["ACC", "ACC", *("bool" if k == "flag" else "ACC" for k in kinds), *["ACC&"] * 4], signature


def test_surrogate_defines_follow_the_spec_floor() -> None:
    """LOSSK_SURROGATE only with the Hessian; LOSSK_HESSIAN_FLOOR only for a loss whose spec has a floor."""
    def defines(loss: str, **changes: object) -> dict[str, object]:
        options: dict[str, object] = {"weight": OptionLayout.NONE, "compute_grad": True, "compute_hess": True,
                                      "surrogate": True, "reduce": False, "grad_output_array": True, **changes}
        return dict(specialisation.elementwise(ELEMENTWISE_LOSSES[loss], "float32", "float32", **options).defines)

    assert (defines("tweedie_loss")["LOSSK_SURROGATE"], defines("tweedie_loss")["LOSSK_HESSIAN_FLOOR"]) == (
        1, "tweedie_loss_hessian_floor")
    assert defines("mse_loss")["LOSSK_SURROGATE"] == 1 and "LOSSK_HESSIAN_FLOOR" not in defines("mse_loss")  # 0
    for changes in ({"surrogate": False}, {"compute_hess": False}):  # the exact Hessian; no Hessian: one variant
        assert defines("huber_loss", **changes)["LOSSK_SURROGATE"] == 0
        assert "LOSSK_HESSIAN_FLOOR" not in defines("huber_loss", **changes)
    assert defines("huber_loss", compute_hess=False) == defines("huber_loss", compute_hess=False, surrogate=False)


@pytest.mark.parametrize("loss", sorted(elementwise_losses.IMPLEMENTATIONS))
def test_surrogate_hessian_is_one_launch_of_the_floored_variant(launches: list[dict], loss: str) -> None:
    """The CuPy surrogate registration runs the gradient's pass with LOSSK_SURROGATE and the called loss's floor
    (after its rewrite: smooth_l1(beta=0) is l1's), the Hessian written into hess_out, no pass of its own."""
    from lossk._hessian import key, surrogate_key

    rng = np.random.default_rng(6)
    x, y, options, called_spec, _ = _spec_call(loss, rng)
    upstream = rng.uniform(0.5, 2.0, x.shape).astype(np.float32)  # lossk.boosting's sample weights
    hess_out = np.empty_like(x)
    surrogate = _dispatch._REGISTRY[(surrogate_key(loss), "cupy")]
    assert surrogate.writes_out and surrogate is not _dispatch._REGISTRY[(key(loss), "cupy")]
    _, grad, hess = surrogate.implementation(x, y, xp=np, reduction="none", grad_output=upstream, order=2, out=None,
                                             hess_out=hess_out, **options)
    _check_signatures(launches)
    assert [c["kernel"] for c in launches] == ["lossk_elementwise"]
    flags, args = dict(launches[0]["spec"].defines), _named(launches[0])
    assert (flags["LOSSK_ELEMENT"], flags["LOSSK_HESS"], flags["LOSSK_SURROGATE"], flags["LOSSK_GRAD_OUTPUT"]) == (
        called_spec.cuda_function, 1, 1, 1)
    assert flags.get("LOSSK_HESSIAN_FLOOR") == specialisation.hessian_floor_function(called_spec)
    assert hess is hess_out and int(args["hess"]) == HostArrays(None).pointer(hess_out)
    assert int(args["grad"]) == HostArrays(None).pointer(grad) and grad is not hess


def test_smooth_l1_with_beta_zero_takes_the_l1_floor(launches: list[dict]) -> None:
    from lossk._hessian import surrogate_key

    x = np.linspace(-1, 1, 7, dtype=np.float32)
    surrogate = _dispatch._REGISTRY[(surrogate_key("smooth_l1_loss"), "cupy")].implementation
    surrogate(x, 0 * x, xp=np, reduction="sum", grad_output=None, order=2, beta=0.0)
    flags = dict(launches[0]["spec"].defines)
    assert (flags["LOSSK_ELEMENT"], flags["LOSSK_HESSIAN_FLOOR"]) == ("l1_loss_element", "l1_loss_hessian_floor")


def test_boosting_derivatives_take_the_fused_cuda_surrogate(launches: list[dict],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """lossk._hessian.derivatives (lossk.boosting's call) with the CuPy backend chosen: the surrogate registration
    runs (floored, so boosting adds no pass of its own) and the exact one without ``surrogate``."""
    import lossk
    from lossk import _hessian

    # as where CuPy is available: the CuPy registrations chosen and listed
    monkeypatch.setattr(_hessian, "select", lambda name, backend, input: _dispatch._REGISTRY[(name, "cupy")])
    monkeypatch.setattr(_hessian, "implementations",
                        lambda name: {b: r for (n, b), r in _dispatch._REGISTRY.items() if n == name})
    rng = np.random.default_rng(7)
    x = rng.normal(size=64).astype(np.float32)
    y = rng.uniform(0.5, 2.0, size=64).astype(np.float32)
    for surrogate in (True, False):
        launches.clear()
        *_, floored = _hessian.derivatives(lossk.tweedie_loss, x, y, grad_output=None, out=None, hess_out=None,
                                          backend="cupy", surrogate=surrogate, reduction="sum", power=3.0)
        flags = dict(launches[0]["spec"].defines)
        assert floored == surrogate and flags["LOSSK_SURROGATE"] == int(surrogate)
        assert flags.get("LOSSK_HESSIAN_FLOOR") == ("tweedie_loss_hessian_floor" if surrogate else None)


@pytest.mark.parametrize(
    ("shape", "target_kind", "options", "layout"),
    [
        ((4096, 1000), "index", {}, CrossEntropyLayout.ROWS_SHARED),
        ((3, 300000), "index", {"z_loss": 1e-4, "return_z_loss": True}, CrossEntropyLayout.ROWS_SHARED),
        ((64, 2000), "probability", {"softcap": 30.0}, CrossEntropyLayout.ROWS_STREAMED),
        ((5, 7, 3), "index", {"label_smoothing": 0.1, "weight": True}, CrossEntropyLayout.THREAD_PER_ROW),
        ((2, 3000, 3), "index", {"z_loss": 1e-4}, CrossEntropyLayout.ROWS_STREAMED),  # strided rows
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_host_launches(launches: list[dict], shape: tuple, target_kind: str, options: dict,
                                     layout: CrossEntropyLayout, reduction: str) -> None:
    from lossk._backends.cupy import class_losses

    rng = np.random.default_rng(1)
    x = rng.normal(size=shape).astype(np.float32)
    loss_shape = (shape[0], *shape[2:])
    target = rng.random(shape).astype(np.float32) if target_kind == "probability" else rng.integers(0, shape[1], loss_shape)
    options = dict(options)
    weight = rng.uniform(size=shape[1]).astype(np.float32) if options.pop("weight", False) else None
    full = {"ignore_index": -100, "label_smoothing": 0.0, "z_loss": 0.0, "softcap": None, "return_z_loss": False}
    full.update(options)
    result, grad = class_losses.cross_entropy(
        x, target, xp=np, reduction=reduction, grad_output=None, compute_grad=True, out=x, weight=weight, **full
    )
    _check_signatures(launches)
    kernels = [c["kernel"] for c in launches]
    expected = ["lossk_cross_entropy"] if reduction == "none" else ["lossk_cross_entropy", "lossk_cross_entropy_finish"]
    if reduction == "mean" and target_kind == "index":
        expected = ["lossk_class_divisor_partials", "lossk_class_divisor_finish", *expected]
    assert kernels == expected
    main = next(c for c in launches if c["kernel"] == "lossk_cross_entropy")
    flags = dict(main["spec"].defines)
    assert flags["LOSSK_LAYOUT"] == int(layout) and main["threads"] == flags["LOSSK_THREADS"]
    assert grad is x and int(main["args"][0]) == int(main["args"][5])  # in place
    if flags["LOSSK_LAYOUT"] == CrossEntropyLayout.ROWS_SHARED:
        assert main["grid"] % flags["LOSSK_CLUSTER"] == 0 and main["shared"] > 0
    if len(shape) > 2:
        assert int(main["args"][12]) == 0  # strided rows: no vectors
    if full["return_z_loss"]:
        loss, z_term = result
        assert loss.shape == z_term.shape
    if reduction != "none":
        finish = launches[-1]
        assert int(finish["args"][1]) == main["grid"] // flags["LOSSK_CLUSTER"]  # one partial per worker


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_host_launches(launches: list[dict], reduction: str) -> None:
    from lossk._backends.cupy import class_losses

    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 5, 4)).astype(np.float16)
    target = rng.integers(0, 5, (9, 4)).astype(np.int32)
    loss, grad = class_losses.nll_loss(x, target, xp=np, reduction=reduction, grad_output=None, compute_grad=True,
                                       out=None, weight=None, ignore_index=-100)
    _check_signatures(launches)
    kernels = [c["kernel"] for c in launches]
    assert kernels == (["lossk_nll_rows", "lossk_nll_grad"] if reduction == "none"
                       else ["lossk_nll_rows", "lossk_nll_finish", "lossk_nll_grad"])
    assert grad.shape == x.shape and grad.dtype == np.float16 and loss.shape == ((9, 4) if reduction == "none" else ())
    grad_call = launches[-1]
    assert int(grad_call["args"][4]) == x.size and int(grad_call["args"][6]) == 4  # elements, inner
    assert (int(grad_call["args"][11]) != 0) == (reduction == "mean")  # divides by sum(w_y) only for the mean


def test_an_upstream_array_is_read_by_the_kernel(launches: list[dict]) -> None:
    from lossk._backends.cupy import class_losses

    x = np.ones((4, 5), np.float16)
    upstream = np.arange(20.0).reshape(4, 5)  # float64: multiplied in the kernels' float32, not rounded to fp16
    _elementwise("kl_div")(x, x, xp=np, reduction="none", grad_output=upstream, compute_grad=True, out=None,
                           log_target=True)
    main, args = launches[0], _named(launches[0])
    assert dict(main["spec"].defines)["LOSSK_GRAD_OUTPUT"] == 1 and int(args["grad_output"]) != 0
    assert ARRAYS_BY_ADDRESS[int(args["grad_output"])].dtype == np.float32
    launches.clear()
    class_losses.cross_entropy(x, np.zeros(4, np.int64), xp=np, reduction="none", grad_output=np.ones(4),
                               compute_grad=True, out=None, weight=None, ignore_index=-100, label_smoothing=0.0)
    main = launches[0]
    assert dict(main["spec"].defines)["LOSSK_GRAD_OUTPUT"] == 1 and int(main["args"][4]) != 0
    assert ARRAYS_BY_ADDRESS[int(main["args"][4])].dtype == np.float32  # multiplied in float32, not rounded to fp16
    launches.clear()
    class_losses.nll_loss(x, np.zeros(4, np.int64), xp=np, reduction="none", grad_output=np.ones(4),
                          compute_grad=True, out=None, weight=None, ignore_index=-100)
    grad_call = launches[-1]
    assert ARRAYS_BY_ADDRESS[int(grad_call["args"][2])].dtype == np.float32


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("target_kind", ["index", "probability"])
def test_zero_classes_launch_no_cross_entropy_kernel(launches: list[dict], reduction: str, target_kind: str) -> None:
    from lossk._backends.cupy import class_losses

    x = np.zeros((3, 0), np.float32)
    target = np.zeros((3, 0), np.float32) if target_kind == "probability" else np.full(3, -100)
    (loss, z_term), grad = class_losses.cross_entropy(
        x, target, xp=np, reduction=reduction, grad_output=None, compute_grad=True, out=None, weight=None,
        ignore_index=-100, label_smoothing=0.1, z_loss=1e-4, return_z_loss=True,
    )
    kernels = [c["kernel"] for c in launches]
    assert "lossk_cross_entropy" not in kernels  # it would read logits[start] of an empty row
    assert grad.shape == (3, 0)
    if reduction == "none":
        assert kernels == [] and np.array_equal(loss, np.zeros(3)) and np.array_equal(z_term, np.zeros(3))
    else:
        assert kernels[-1] == "lossk_cross_entropy_finish"
        partials = ARRAYS_BY_ADDRESS[int(launches[-1]["args"][0])]
        assert not partials.any()  # zeros, summed and divided on the device (0 / 0 = NaN for an all-ignored mean)


# positions in lossk_cross_entropy's KERNEL_ARGS (test_argument_tuples_match_the_kernel_parameters checks the list)
GRAD_ARGUMENT, VECTORISED_ARGUMENT, HESS_ARGUMENT = 5, 12, 21


def test_cross_entropy_positions_name_their_parameters() -> None:
    names = [p.split()[-1].lstrip("*") for p in _kernel_parameters("cross_entropy.cu", "lossk_cross_entropy")]
    assert (names[GRAD_ARGUMENT], names[VECTORISED_ARGUMENT], names[HESS_ARGUMENT]) == ("grad", "vectorised", "hess")


@pytest.mark.parametrize(
    ("shape", "target_kind", "options", "layout"),
    [
        ((4096, 1000), "index", {"label_smoothing": 0.1, "weight": True}, CrossEntropyLayout.ROWS_SHARED),
        ((3, 300000), "index", {"z_loss": 1e-4, "softcap": 30.0}, CrossEntropyLayout.ROWS_SHARED),  # a cluster
        ((64, 2000), "probability", {"softcap": 30.0, "z_loss": 1e-4}, CrossEntropyLayout.ROWS_STREAMED),
        ((5, 7, 3), "index", {"label_smoothing": 0.1}, CrossEntropyLayout.THREAD_PER_ROW),
    ],
)
def test_cross_entropy_hessian_host_launch(launches: list[dict], shape: tuple, target_kind: str, options: dict,
                                           layout: CrossEntropyLayout) -> None:
    """cross_entropy.hessian runs the gradient's kernel with LOSSK_HESS: one launch more writes nothing more."""
    from lossk._backends.cupy import class_losses
    from lossk._hessian import key

    registration = _dispatch._REGISTRY[(key("cross_entropy"), "cupy")]
    assert registration.writes_out and registration.implementation.__name__ == "cross_entropy_derivatives"
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape).astype(np.float32)
    loss_shape = (shape[0], *shape[2:])
    target = rng.random(shape).astype(np.float32) if target_kind == "probability" else rng.integers(0, shape[1], loss_shape)
    options = dict(options)
    weight = rng.uniform(size=shape[1]).astype(np.float32) if options.pop("weight", False) else None
    full = {"ignore_index": -100, "label_smoothing": 0.0, "z_loss": 0.0, "softcap": None, "return_z_loss": False}
    full.update(options)
    hess_out = np.empty_like(x)
    _, grad, hess = class_losses.cross_entropy_derivatives(x, target, xp=np, reduction="mean", grad_output=None,
                                                           order=2, out=None, hess_out=hess_out, weight=weight, **full)
    _check_signatures(launches)
    main = next(c for c in launches if c["kernel"] == "lossk_cross_entropy")
    flags, args = dict(main["spec"].defines), main["args"]
    assert flags["LOSSK_HESS"] == 1 and flags["LOSSK_GRAD"] == 1 and flags["LOSSK_LAYOUT"] == int(layout)
    assert hess is hess_out and int(args[HESS_ARGUMENT]) == HostArrays(None).pointer(hess_out)
    assert int(args[GRAD_ARGUMENT]) == HostArrays(None).pointer(grad) and grad is not hess
    # the gradient-only call compiles the same variant without the macro: the same code as before LOSSK_HESS
    launches.clear()
    class_losses.cross_entropy(x, target, xp=np, reduction="mean", grad_output=None, compute_grad=True, out=None,
                               weight=weight, **full)
    plain = next(c for c in launches if c["kernel"] == "lossk_cross_entropy")
    assert "LOSSK_HESS" not in dict(plain["spec"].defines) and int(plain["args"][HESS_ARGUMENT]) == 0
    assert class_losses.with_hessian(plain["spec"]) == main["spec"]


def test_cross_entropy_hessian_vectors_need_the_hessian_aligned_too(launches: list[dict]) -> None:
    from lossk._backends.cupy import class_losses

    x = np.zeros((8, 1024), np.float32)
    target = np.zeros(8, np.int64)
    options = {"weight": None, "ignore_index": -100, "label_smoothing": 0.0}
    storage = np.empty(x.size + 1, np.float32)
    for hess_out, vectorised in ((np.empty_like(x), 1), (storage[1:].reshape(x.shape), 0)):  # 4 bytes off
        launches.clear()
        _, _, hess = class_losses.cross_entropy_derivatives(x, target, xp=np, reduction="sum", grad_output=None,
                                                            order=2, out=None, hess_out=hess_out, **options)
        args = next(c for c in launches if c["kernel"] == "lossk_cross_entropy")["args"]
        assert hess is hess_out and int(args[VECTORISED_ARGUMENT]) == vectorised


def test_cross_entropy_hessian_of_zero_classes_is_empty(launches: list[dict]) -> None:
    from lossk._backends.cupy import class_losses

    loss, grad, hess = class_losses.cross_entropy_derivatives(
        np.zeros((3, 0), np.float32), np.zeros(3, np.int64), xp=np, reduction="none", grad_output=None, order=2,
        weight=None, ignore_index=-100, label_smoothing=0.0,
    )
    assert "lossk_cross_entropy" not in [c["kernel"] for c in launches]
    assert grad.shape == hess.shape == (3, 0) and np.array_equal(loss, np.zeros(3))


@pytest.mark.parametrize("with_buffer", [False, True])
def test_nll_hessian_is_a_fill_without_a_kernel(launches: list[dict], with_buffer: bool) -> None:
    from lossk._backends.cupy import class_losses
    from lossk._hessian import key

    registration = _dispatch._REGISTRY[(key("nll_loss"), "cupy")]
    assert registration.writes_out and registration.implementation.__name__ == "nll_loss_derivatives"
    x = np.random.default_rng(4).normal(size=(9, 5)).astype(np.float16)
    target = np.arange(9) % 5
    hess_out = np.full_like(x, np.nan) if with_buffer else None
    loss, grad, hess = class_losses.nll_loss_derivatives(x, target, xp=np, reduction="mean", grad_output=None, order=2,
                                                         out=None, hess_out=hess_out, weight=None, ignore_index=-100)
    # the launches of the gradient alone: the Hessian adds no kernel over the input
    assert [c["kernel"] for c in launches] == ["lossk_nll_rows", "lossk_nll_finish", "lossk_nll_grad"]
    assert hess.shape == x.shape and hess.dtype == x.dtype and not hess.any()
    assert (hess is hess_out) == with_buffer


def _emulated_cross_entropy_rows(logits: np.ndarray, target: np.ndarray, probability: bool, weight: np.ndarray | None,
                                 eps: float, softcap: float | None, z_loss: float, ignore_index: int,
                                 ce_scale: np.ndarray, z_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cross_entropy.cu's row arithmetic (add_logit, finish_row, logit_grad with LOSSK_HESS) in float64, one
    logit at a time as a thread of the one-thread-per-row layout runs it: per-row loss, gradient, Hessian."""
    rows, classes = logits.shape
    w = np.ones(classes) if weight is None else weight
    cap = (lambda z: softcap * math.tanh(float(z) / softcap)) if softcap else float  # Python floats: no warnings
    loss, grad, hess = np.zeros(rows), np.zeros_like(logits), np.zeros_like(logits)
    for r in range(rows):
        if probability:
            index, kept, w_y = -1, True, 1.0
        else:
            y = int(target[r])
            kept = y != ignore_index
            index = y if kept and 0 <= y < classes else -1
            w_y = w[index] if index >= 0 else 0.0
        if not kept:
            continue
        first = cap(logits[r, 0])
        ref = first if first - first == 0 else 0.0
        target_logit = cap(logits[r, index]) if index >= 0 else 0.0
        m, s, a, b = -math.inf, 0.0, 0.0, 0.0
        for c in range(classes):  # add_logit
            z = cap(logits[r, c])
            if z > m:
                s, m = s * math.exp(m - z) + 1.0, z
            elif z != -math.inf:
                s += math.exp(z - m)
            q = w[c] * ((1 - eps) * target[r, c] + eps / classes) if probability else w[c]
            if probability or eps > 0:
                a, b = a + q * (z - ref), b + q
        lse_rel = (m - ref) + math.log(s)  # finish_row
        lse = ref + lse_rel
        if probability:
            ce, sum_q, grad_target, grad_smooth, grad_q = b * lse_rel - a, b, 0.0, 0.0, ce_scale[r]
        else:
            hit = (1 - eps) * w_y if index >= 0 else 0.0
            ce = hit * (lse_rel - (target_logit - ref)) if index >= 0 else 0.0
            smooth = eps / classes
            ce, sum_q = ce + (smooth * (b * lse_rel - a) if eps > 0 else 0.0), hit + (smooth * b if eps > 0 else 0.0)
            grad_target, grad_smooth, grad_q = hit * ce_scale[r], smooth * ce_scale[r], 0.0
        loss[r] = ce * ce_scale[r] + z_loss * lse * lse * z_scale[r]
        grad_sum_q, grad_z, hess_z = sum_q * ce_scale[r], 2 * z_loss * lse * z_scale[r], 2 * z_loss * z_scale[r]
        for c in range(classes):  # logit_grad
            z = cap(logits[r, c])
            p = math.exp(z - lse)
            coefficient = grad_sum_q + grad_z
            g = coefficient * p
            if probability:
                g -= grad_q * w[c] * ((1 - eps) * target[r, c] + eps / classes)
            else:
                g -= grad_target if c == index else 0.0
                g -= grad_smooth * w[c] if eps > 0 else 0.0
            h = coefficient * p * (1 - p) + hess_z * p * p
            if softcap:
                u = z / softcap
                bend = 1 - u * u
                h = h * bend * bend - g * 2 * u * bend / softcap
                g *= bend
            grad[r, c], hess[r, c] = g, h
    return loss, grad, hess


@pytest.mark.parametrize("probability", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_emulated_kernel_hessian_matches_the_reference(probability: bool, seed: int) -> None:
    """The Hessian arithmetic of cross_entropy.cu, emulated in float64, against the reference's
    value_grad_hessian: every option on, ignored and out-of-range rows, large and -inf logits."""
    import lossk

    rng = np.random.default_rng(100 + seed)
    rows, classes = int(rng.integers(1, 9)), int(rng.integers(1, 14))
    logits = rng.normal(scale=[1.0, 4.0, 40.0][seed % 3], size=(rows, classes)) + rng.normal(scale=100.0)
    weight = rng.uniform(0.2, 2.0, classes) if seed % 2 == 0 else None
    options = {"label_smoothing": [0.0, 0.1, 0.3][seed % 3], "z_loss": [0.0, 1e-3, 0.05][(seed + 1) % 3],
               "softcap": [None, 30.0, 3.0][(seed + 2) % 3], "ignore_index": 2}
    if classes > 2 and seed % 2 and options["label_smoothing"] == 0:  # with smoothing, a masked class gives inf
        logits[rng.random(logits.shape) < 0.2] = -np.inf  # masked classes (the first among them sometimes)
    if probability:
        target = rng.dirichlet(np.ones(classes), rows)
    else:
        target = rng.integers(0, classes, rows)
        target[rng.random(rows) < 0.3] = 2  # ignored (where class 2 exists, an ordinary class elsewhere)
        logits[np.arange(rows), np.clip(target, 0, classes - 1)] = rng.normal(size=rows)  # the target is finite
    for reduction in ("none", "mean"):
        upstream = rng.normal(size=rows) if reduction == "none" else None
        ones = np.ones(rows)
        if reduction == "none":
            ce_scale = z_scale = upstream
        elif probability:
            ce_scale = z_scale = ones / rows
        else:
            kept = target != options["ignore_index"]
            in_range = kept & (target >= 0) & (target < classes)
            w_y = np.where(in_range, (np.ones(classes) if weight is None else weight)[np.clip(target, 0, classes - 1)], 0)
            if w_y.sum() == 0 or not kept.any():
                continue  # every row ignored: the mean is 0 / 0
            ce_scale, z_scale = ones / w_y.sum(), ones / kept.sum()
        loss, grad, hess = _emulated_cross_entropy_rows(logits, target, probability, weight, options["label_smoothing"],
                                                        options["softcap"], options["z_loss"], options["ignore_index"],
                                                        ce_scale, z_scale)
        expected = lossk.cross_entropy.value_grad_hessian(
            logits, target, backend="array_api", reduction=reduction, grad_output=upstream, weight=weight, **options
        )
        expected_loss = expected[0] * (upstream if reduction == "none" else 1)
        np.testing.assert_allclose(loss if reduction == "none" else loss.sum(), expected_loss, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(grad, expected[1], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hess, expected[2], rtol=1e-10, atol=1e-12)


# ---- the multi-input losses (multi_input.cu, and the row-mean loss on elementwise.cu) ------------------------

MULTI_INPUT = {spec.name: spec for spec in multi_input.LOSSES}


@pytest.mark.parametrize("loss", sorted(MULTI_INPUT))
def test_every_multi_input_spec_has_its_device_function(loss: str) -> None:
    spec = MULTI_INPUT[loss]
    two_gradients = len(spec.differentiable) == 2
    header = "multi_input.cuh" if two_gradients else "pointwise.cuh"
    signature = re.search(rf"void {spec.cuda_function}\(([^)]*)\)", sources.read_text(header))
    assert signature, f"kernels/cuda/{header} has no device function {spec.cuda_function} (see its header)"
    parameters = [p.split()[0] for p in signature.group(1).split(",")]
    kinds = [kind for kind, _ in specialisation.element_options(spec)]
    outputs = 5 if two_gradients else 3  # loss, then d1 and d2 of each differentiable input
    expected = [*("ACC" for _ in spec.inputs), *("bool" if k == "flag" else "ACC" for k in kinds), *("ACC&",) * outputs]
    assert parameters == expected, f"{spec.cuda_function}({signature.group(1)}): options in the spec's order, {kinds}"
    assert loss in multi_input.IMPLEMENTATIONS


def _multi_arrays(loss: str, shape: tuple[int, ...], dtype: str, seed: int = 3) -> list[np.ndarray]:
    spec = MULTI_INPUT[loss]
    drawn = spec.domain.draw(np.random.default_rng(seed), shape, {o.name: o.default for o in spec.keyword_options}, False)
    return [np.asarray(drawn[name], dtype=dtype) for name in spec.inputs]


def _element_arguments(flags: dict, args: dict) -> list[object]:
    """The option arguments the device function receives, read back from LOSSK_ELEMENT_OPTIONS and the launch."""
    values: list[object] = []
    for token in filter(None, str(flags["LOSSK_ELEMENT_OPTIONS"]).split("LOSSK_COMMA")):
        scalar = re.fullmatch(r"\(LOSSK_SCALAR\((\d)\)\)", token)
        values.append(float(args[f"scalar{scalar.group(1)}"]) if scalar else {"(true)": True, "(false)": False}[token])
    return values


def _emulated_multi_input(spec: object, launches: list[dict], arrays: list[np.ndarray], upstream: np.ndarray | None):
    """lossk_multi_input and its finish, emulated in float64 from the recorded launches: the device function is
    the spec's scalar element (the same operations as multi_input.cuh) on what the kernel reads, with the
    options, grad_scale, upstream array and loss_scale the host passed."""
    main = next(c for c in launches if c["kernel"] == "lossk_multi_input")
    flags, args = dict(main["spec"].defines), _named(main)
    options = _element_arguments(flags, args)
    names = {code: name for name, code in specialisation.DTYPE_CODES.items()}
    other = interop.numpy_dtype(names[flags["LOSSK_TARGET"]])
    shape = arrays[0].shape
    read = [arrays[0].astype(np.float64).reshape(-1)]
    read += [np.broadcast_to(a, shape).astype(other).astype(np.float64).reshape(-1) for a in arrays[1:]]
    n = int(args["n"])
    assert n == read[0].size
    values = np.array([spec.element(*(r[i] for r in read), *options) for i in range(n)]).reshape(n, 5).T
    factor = float(args["grad_scale"]) * (upstream.astype(np.float64).reshape(-1) if flags["LOSSK_GRAD_OUTPUT"] else 1.0)
    if flags["LOSSK_REDUCE"]:
        finish = _named(next(c for c in launches if c["kernel"] == "lossk_multi_input_finish"))
        assert int(finish["count"]) == main["grid"]
        loss = values[0].sum() * float(finish["loss_scale"])
    else:
        loss = values[0].reshape(shape)
    return loss, [(v * factor).reshape(shape) for v in values[1:3]], [(v * factor).reshape(shape) for v in values[3:5]]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("loss", "options"), [
    ("gaussian_nll_loss", {"full": False, "eps": 1e-6}), ("gaussian_nll_loss", {"full": True, "eps": 0.5}),
    ("margin_ranking_loss", {"margin": 0.25}),
])
@pytest.mark.parametrize("broadcast", [1, 0], ids=["second-broadcast", "first-broadcast"])
def test_emulated_multi_input_kernel_matches_the_reference(launches: list[dict], loss: str, options: dict,
                                                           reduction: str, broadcast: int) -> None:
    """The host's launch of multi_input.cu (options, scales, upstream, buffers), emulated in float64 against
    the reference's value, gradients and second derivatives; a broadcast input (the second, or the first, as
    ``lossk._multi_input`` passes an input1 of margin_ranking_loss that input2 broadcasts) is materialised."""
    from lossk._hessian import key
    from lossk._multi_input import evaluate

    spec = MULTI_INPUT[loss]
    arrays = _multi_arrays(loss, (7, 13), "float64")
    arrays[broadcast] = np.broadcast_to(arrays[broadcast][:, :1], arrays[broadcast].shape)  # a broadcast view
    upstream = np.random.default_rng(4).normal(size=(7, 13)) if reduction == "none" else 2.5
    hessian = _dispatch._REGISTRY[(key(loss), "cupy")].implementation
    value, grads, hessians = hessian(*arrays, xp=np, reduction=reduction, grad_output=upstream, order=2, **options)
    _check_signatures(launches)
    assert [c["kernel"] for c in launches] == ["lossk_multi_input", *(["lossk_multi_input_finish"] if reduction != "none" else [])]
    main = launches[0]
    flags, args = dict(main["spec"].defines), _named(main)
    assert (flags["LOSSK_ELEMENT"], flags["LOSSK_HESS"], flags["LOSSK_GRAD"]) == (spec.cuda_function, 1, 1)
    pointer = HostArrays(None).pointer
    assert [int(args[k]) for k in ("grad_first", "grad_second", "hess_first", "hess_second")] == [
        pointer(a) for a in (*grads, *hessians)]
    assert int(args[f"input{broadcast}"]) != pointer(arrays[broadcast])  # the broadcast view was made contiguous
    emulated = _emulated_multi_input(spec, launches, arrays, upstream if reduction == "none" else None)
    expected = evaluate(spec, *(np.broadcast_to(a, arrays[0].shape) for a in arrays), xp=np, reduction=reduction,
                        grad_output=upstream, order=2, **options)
    np.testing.assert_allclose(emulated[0], expected[0], rtol=1e-12)
    for part in (1, 2):
        for actual, reference in zip(emulated[part], expected[part], strict=True):
            np.testing.assert_allclose(actual, reference, rtol=1e-12, atol=1e-15)
    assert value.shape == (() if reduction != "none" else (7, 13)) and all(g.shape == (7, 13) for g in grads)


@pytest.mark.parametrize(("dtypes", "other"), [
    (("float32", "float32", "float32"), "float32"),
    (("float32", "float64", "float64"), "float64"),  # read as given, cast to ACC in the kernel
    (("float16", "float32", "float32"), "float32"),
    (("float32", "float64", "float16"), "float32"),  # two dtypes: both cast to the accumulator
])
def test_multi_input_other_inputs_are_read_in_one_dtype(launches: list[dict], dtypes: tuple, other: str) -> None:
    arrays = [a.astype(d) for a, d in zip(_multi_arrays("gaussian_nll_loss", (1001,), "float64"), dtypes)]
    _, grads = multi_input.IMPLEMENTATIONS["gaussian_nll_loss"](
        *arrays, xp=np, reduction="mean", grad_output=None, compute_grad=True, out=None, full=False, eps=1e-6)
    flags, args = dict(launches[0]["spec"].defines), _named(launches[0])
    assert flags["LOSSK_INPUT"] == specialisation.DTYPE_CODES[dtypes[0]]
    assert flags["LOSSK_TARGET"] == specialisation.DTYPE_CODES[other]
    assert all(g.dtype == np.dtype(dtypes[0]) and g.shape == (1001,) for g in grads)
    assert math.isclose(float(args["grad_scale"]), 1 / 1001, rel_tol=1e-6)


def test_multi_input_writes_into_out_and_in_place(launches: list[dict]) -> None:
    arrays = _multi_arrays("margin_ranking_loss", (1001,), "float32")
    out = (np.empty(1001, np.float32), None)
    _, grads = multi_input.IMPLEMENTATIONS["margin_ranking_loss"](
        *arrays, xp=np, reduction="sum", grad_output=None, compute_grad=True, out=out, margin=0.0)
    args = _named(launches[0])
    assert grads[0] is out[0] and int(args["grad_first"]) == HostArrays(None).pointer(out[0])
    assert int(args["hess_first"]) == 0 and int(args["loss_out"]) == 0
    launches.clear()
    _, grads = multi_input.IMPLEMENTATIONS["margin_ranking_loss"](
        *arrays, xp=np, reduction="mean", grad_output=None, compute_grad=True, out=(arrays[0], None), margin=0.0)
    args = _named(launches[0])
    assert grads[0] is arrays[0] and int(args["input0"]) == int(args["grad_first"])  # in place
    launches.clear()
    value, grads = multi_input.IMPLEMENTATIONS["margin_ranking_loss"](
        *arrays, xp=np, reduction="mean", grad_output=None, compute_grad=False, margin=0.0)
    args = _named(launches[0])
    assert grads is None and dict(launches[0]["spec"].defines)["LOSSK_GRAD"] == 0 and int(args["grad_first"]) == 0


def test_row_mean_loss_runs_the_elementwise_template(launches: list[dict]) -> None:
    from lossk._hessian import key

    x, y = _multi_arrays("multilabel_soft_margin_loss", (9, 5), "float32")
    weight = np.broadcast_to(np.linspace(0.5, 1.5, 5, dtype=np.float32), x.shape)
    for implementation in (multi_input.IMPLEMENTATIONS["multilabel_soft_margin_loss"],
                           _dispatch._REGISTRY[(key("multilabel_soft_margin_loss"), "cupy")].implementation):
        launches.clear()
        extra = {"compute_grad": True} if implementation.__name__ == "multilabel_soft_margin_loss" else {"order": 2}
        implementation(x, y, xp=np, reduction="mean", grad_output=None, out=None, weight=weight, **extra)
        _check_signatures(launches)
        main = next(c for c in launches if c["kernel"] == "lossk_elementwise")
        flags, args = dict(main["spec"].defines), _named(main)
        assert flags["LOSSK_ELEMENT"] == "multilabel_soft_margin_loss_element"
        assert flags["LOSSK_WEIGHT"] == int(OptionLayout.PERIODIC) and int(args["weight_period"]) == 5
        assert flags["LOSSK_HESS"] == ("order" in extra)
