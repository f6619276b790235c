"""The CUDA kernels on a GPU, against the reference path and against PyTorch (``pytest -m gpu``).

Every loss configuration of ``loss_cases.CASES`` (odd sizes, rows of length 1, unbatched, spatial and
empty inputs, weights, ignored rows, smoothing, probability targets, saturated logits) runs in float32,
float64, float16 and bfloat16, under every reduction, on CuPy arrays and on PyTorch CUDA tensors, and is
compared with the float64 reference (``backend="array_api"``) on the same rounded values, with the
tolerance of the dtype. Further tests: cross-entropy rows long enough for every launch layout (clusters of
1 to 8 blocks, streamed rows) with z_loss and softcap, the three forms of grad_output, output buffers
poisoned with NaN, in-place gradients with no extra device memory, bit-identical repeated runs, PyTorch's
own GPU results, PyTorch streams, and more than 2^31 elements.

Where there is no GPU (CI) every test is collected and skipped, with the reason.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from loss_cases import CASES, Case, as_dtype, defaults, draw, reductions
from torch_oracle import less_peer_error

import lossk
from lossk import _dispatch
from lossk._backends.cupy.elementwise_losses import IMPLEMENTATIONS
from lossk._losses import ELEMENTWISE_LOSSES
from lossk._spec import ElementwiseLoss

pytestmark = pytest.mark.gpu

DTYPES = ("float32", "float64", "float16", "bfloat16")
ELEMENTWISE = tuple(IMPLEMENTATIONS)
"""Every loss of the spec table that the CUDA template serves (a new loss is picked up here)."""
LIBRARIES = ("cupy", "torch")

TOLERANCES = {
    "float64": (1e-10, 1e-12),
    "float32": (2e-5, 2e-6),
    "float16": (2e-3, 2e-3),
    "bfloat16": (1.6e-2, 1.6e-2),
}
"""(rtol, atol relative to the median magnitude) of a kernel result against the float64 reference, after
the reference is rounded to the kernel's dtype."""


@pytest.fixture(autouse=True)
def _gpu() -> None:
    if not _dispatch.is_available("cupy"):
        pytest.skip("needs an NVIDIA GPU with CuPy (pip install 'lossk[cuda12]'); none here")


def numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes  # CuPy's bfloat16

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def rounded(x: np.ndarray, dtype: str) -> np.ndarray:
    """Floating data rounded to ``dtype`` and back to float64 (what the kernel sees, for the reference)."""
    if not np.issubdtype(x.dtype, np.floating):
        return x
    return np.asarray(x).astype(numpy_dtype(dtype)).astype(np.float64)


def to_device(x: np.ndarray | None, dtype: str, library: str) -> Any:
    """A NumPy array on the GPU: floating data in ``dtype``, integers as they are."""
    if x is None:
        return None
    import cupy

    values = x.astype(numpy_dtype(dtype)) if np.issubdtype(x.dtype, np.floating) else x
    if library == "cupy":
        return cupy.asarray(values)
    import torch

    if dtype == "bfloat16" and np.issubdtype(x.dtype, np.floating):
        return torch.tensor(x.astype(np.float32), device="cuda").to(torch.bfloat16)
    return torch.tensor(np.array(values), device="cuda")


def to_host(x: Any) -> np.ndarray:
    """A GPU result as float64 NumPy."""
    if type(x).__module__.startswith("torch"):
        import torch

        return x.detach().to(torch.float64).cpu().numpy()
    return x.get().astype(np.float64)


def assert_close(actual: Any, expected: Any, dtype: str, what: str, peer: np.ndarray | None = None) -> None:
    """``peer``: the reference computed in ``dtype`` (float32); its error against ``expected`` is allowed on top
    of the tolerance (``torch_oracle.assert_close``: an ill-conditioned formula errs as much in the reference)."""
    actual = to_host(actual)
    expected = rounded(np.asarray(expected, dtype=np.float64), dtype)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, reference {expected.shape}"
    if peer is not None:
        actual = less_peer_error(actual, expected, peer)
    rtol, atol = TOLERANCES[dtype]
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(np.median(finite))) if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, equal_nan=True, err_msg=what)


def reference(loss: str, input: np.ndarray, target: np.ndarray, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """The float64 reference (``backend="array_api"``) on NumPy copies."""
    return getattr(lossk, loss).value_and_grad(input, target, backend="array_api", **options)


def draw_rounded(case: Case, dtype: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    input, target, arrays = draw(case, rng)
    return rounded(input, dtype), rounded(target, dtype), {k: rounded(v, dtype) for k, v in arrays.items()}


# ---- every case, dtype, reduction and library against the reference -------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kernel_matches_the_reference(case: Case, dtype: str, library: str, rng: np.random.Generator) -> None:
    input, target, arrays = draw_rounded(case, dtype, rng)
    for reduction in reductions(case.loss):
        options = {**case.options, "reduction": reduction}
        expected_loss, expected_grad = reference(case.loss, input, target, **options, **arrays)
        peer_loss = peer_grad = None
        if dtype == "float32":
            peer_loss, peer_grad = reference(
                case.loss, as_dtype(input, np.float32), as_dtype(target, np.float32), **options,
                **{k: as_dtype(v, np.float32) for k, v in arrays.items()},
            )
        device_arrays = {k: to_device(v, dtype, library) for k, v in arrays.items()}
        loss, grad = getattr(lossk, case.loss).value_and_grad(
            to_device(input, dtype, library), to_device(target, dtype, library), backend="cupy", **options,
            **device_arrays,
        )
        assert type(loss).__module__.split(".")[0] == library and type(grad).__module__.split(".")[0] == library
        assert_close(loss, expected_loss, dtype, f"{case.id} {reduction} loss", peer_loss)
        assert_close(grad, expected_grad, dtype, f"{case.id} {reduction} gradient", peer_grad)
        forward_only = getattr(lossk, case.loss)(
            to_device(input, dtype, library), to_device(target, dtype, library), backend="cupy", **options,
            **device_arrays,
        )
        assert_close(forward_only, expected_loss, dtype, f"{case.id} {reduction} loss without gradient", peer_loss)


# ---- cross-entropy: every launch layout, with z_loss and softcap -------------------------------------------

LONG_ROWS = [
    ((4, 4096), "index"),  # one block per row, in shared memory
    ((3, 50000), "index"),  # a cluster of 8 (fp32) / 4 (bf16) blocks
    ((3, 50001), "index"),  # odd: each row's misaligned head peeled, vectors through a cluster
    ((5, 50257), "index"),  # GPT-2's vocabulary: the head moves from row to row
    ((7, 333), "index"),  # a warp per row
    ((4, 1001), "probability"),  # probabilities, streamed, misaligned rows
    ((2, 300000), "index"),  # 1.2 MB rows (fp32): 150 KB chunks, shared memory opt-in
    ((2, 1_100_000), "index"),  # too long for shared memory: streamed twice
    ((3, 50000), "probability"),  # probabilities: streamed
    ((6, 40), "ignored"),
    ((5, 17, 3), "ignored"),  # one thread per row
    ((1, 5000, 3), "index"),  # few long strided rows: a block each, stride 3
    ((2, 3001, 2), "probability"),
    ((9, 1), "index"),  # rows of length 1
]


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
@pytest.mark.parametrize(("shape", "target_kind"), LONG_ROWS, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else v)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"z_loss": 1e-3, "softcap": 30.0},
        {"label_smoothing": 0.1, "z_loss": 1e-4, "return_z_loss": True},
        {"weight": True, "label_smoothing": 0.05, "ignore_index": 1},
    ],
    ids=["plain", "z_loss-softcap", "smoothing-z-return", "weight-smoothing"],
)
def test_cross_entropy_layouts(
    shape: tuple[int, ...], target_kind: str, options: dict[str, Any], dtype: str, library: str,
    rng: np.random.Generator,
) -> None:
    options = dict(options)
    case = Case("cross_entropy", shape, {}, ("weight",) if options.pop("weight", False) else (), target=target_kind)
    input, target, arrays = draw_rounded(case, dtype, rng)
    if "ignore_index" in options and target_kind != "probability":
        target[rng.random(target.shape) < 0.3] = options["ignore_index"]
    for reduction in ("mean", "sum", "none"):
        expected_loss, expected_grad = reference("cross_entropy", input, target, reduction=reduction, **options, **arrays)
        loss, grad = lossk.cross_entropy.value_and_grad(
            to_device(input, dtype, library), to_device(target, dtype, library), backend="cupy", reduction=reduction,
            **options, **{k: to_device(v, dtype, library) for k, v in arrays.items()},
        )
        if options.get("return_z_loss"):
            assert_close(loss[1], expected_loss[1], dtype, f"{shape} {reduction} z term")
            loss, expected_loss = loss[0], expected_loss[0]
        assert_close(loss, expected_loss, dtype, f"{shape} {reduction} loss")
        assert_close(grad, expected_grad, dtype, f"{shape} {reduction} gradient")


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("shape", [(6, 40), (4, 4096), (3, 50000), (5, 9, 3)], ids=lambda s: "x".join(map(str, s)))
def test_cross_entropy_with_masked_classes(shape: tuple[int, ...], library: str, rng: np.random.Generator) -> None:
    """-inf logits (masked classes), the first class of every row among them, give finite losses and zero
    gradients there, in every layout."""
    input, target, _ = draw_rounded(Case("cross_entropy", shape, target="index"), "float32", rng)
    masked = rng.random(shape) < 0.2
    masked[:, 0] = True
    input = np.where(masked, -np.inf, input)
    np.put_along_axis(input, np.expand_dims(target, 1), 0.5, 1)  # the target class is never masked
    for reduction in ("mean", "none"):
        expected_loss, expected_grad = reference("cross_entropy", input, target, reduction=reduction)
        loss, grad = lossk.cross_entropy.value_and_grad(
            to_device(input, "float32", library), to_device(target, "float32", library), backend="cupy",
            reduction=reduction,
        )
        assert np.isfinite(to_host(loss)).all() and np.isfinite(to_host(grad)).all()
        assert_close(loss, expected_loss, "float32", f"{shape} {reduction} loss with masked classes")
        assert_close(grad, expected_grad, "float32", f"{shape} {reduction} gradient with masked classes")


# ---- grad_output: a number, a 0-d device array, an array for 'none' ------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("loss", ["mse_loss", "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss"])
def test_grad_output_in_every_form(loss: str, library: str, rng: np.random.Generator) -> None:
    case = Case(loss, (7, 5), target="index" if loss in ("cross_entropy", "nll_loss") else "default")
    input, target, _ = draw_rounded(case, "float32", rng)
    x, y = to_device(input, "float32", library), to_device(target, "float32", library)
    function = getattr(lossk, loss)
    for reduction, upstream in (("mean", 0.7), ("sum", -1.5)):
        _, expected = reference(loss, input, target, reduction=reduction, grad_output=upstream)
        assert_close(function.grad(x, y, backend="cupy", reduction=reduction, grad_output=upstream), expected,
                     "float32", f"{reduction} grad_output={upstream}")
        on_device = to_device(np.asarray(upstream), "float32", library)
        assert_close(function.grad(x, y, backend="cupy", reduction=reduction, grad_output=on_device), expected,
                     "float32", f"{reduction} 0-d device grad_output")
    loss_shape = tuple(np.shape(reference(loss, input, target, reduction="none")[0]))
    upstream = rng.normal(size=loss_shape)
    _, expected = reference(loss, input, target, reduction="none", grad_output=upstream)
    got = function.grad(x, y, backend="cupy", reduction="none", grad_output=to_device(upstream, "float32", library))
    assert_close(got, expected, "float32", "grad_output array")


# ---- second derivatives (the Hessian variant of the elementwise kernel) -------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ELEMENTWISE)
def test_second_derivatives_match_the_reference(loss: str, dtype: str, rng: np.random.Generator) -> None:
    spec = ELEMENTWISE_LOSSES[loss]
    case = Case(loss, (37, 11), defaults(spec))
    input, target, arrays = draw_rounded(case, dtype, rng)
    for reduction in reductions(loss):
        options = {**case.options, **arrays, "reduction": reduction}
        expected = getattr(lossk, loss).value_grad_hessian(input, target, backend="array_api", **options)
        device_options = {k: to_device(v, dtype, "cupy") if isinstance(v, np.ndarray) else v for k, v in options.items()}
        got = getattr(lossk, loss).value_grad_hessian(to_device(input, dtype, "cupy"), to_device(target, dtype, "cupy"),
                                                      backend="cupy", **device_options)
        for name, actual, reference_value in zip(("loss", "grad", "hess"), got, expected, strict=True):
            assert_close(actual, reference_value, dtype, f"{loss} {reduction} {name}")


def _surrogate_options(spec: ElementwiseLoss) -> list[dict[str, Any]]:
    """The defaults, then each scalar option at each of its examples (Tweedie's powers 0 and 3 have a floor,
    1, 1.2 and 2 none; the focal floor follows alpha and gamma; smooth_l1's follows beta)."""
    options = [defaults(spec)]
    for option in spec.formula_options:
        if option.kind == "scalar":
            options += [{**defaults(spec), option.name: value} for value in option.examples]
    return options


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ELEMENTWISE)
def test_surrogate_hessian_matches_the_reference(loss: str, dtype: str, rng: np.random.Generator) -> None:
    """lossk.boosting's call (lossk._hessian.derivatives with surrogate=True): the fused CUDA surrogate (one pass,
    ``floored``) equals the reference's, without sample weights ('sum') and with them ('none', grad_output)."""
    from lossk._hessian import derivatives

    spec = ELEMENTWISE_LOSSES[loss]
    function = getattr(lossk, loss)
    for options in _surrogate_options(spec):
        case = Case(loss, (37, 11), options)
        input, target, arrays = draw_rounded(case, dtype, rng)
        sample_weight = rounded(rng.uniform(0.5, 2.0, input.shape), dtype)
        for reduction, upstream in (("sum", None), ("none", sample_weight)):
            call = {**options, **arrays, "reduction": reduction}
            expected = derivatives(function, input, target, grad_output=upstream, out=None, hess_out=None,
                                   backend="array_api", surrogate=True, **call)
            device_call = {k: to_device(v, dtype, "cupy") if isinstance(v, np.ndarray) else v for k, v in call.items()}
            got = derivatives(function, to_device(input, dtype, "cupy"), to_device(target, dtype, "cupy"),
                              grad_output=None if upstream is None else to_device(upstream, dtype, "cupy"), out=None,
                              hess_out=None, backend="cupy", surrogate=True, **device_call)
            assert got[3] and expected[3], "the surrogate is fused on both backends"
            what = f"{loss} {options} {reduction}"
            for name, actual, reference_value in zip(("loss", "grad", "surrogate hess"), got[:3], expected[:3],
                                                     strict=True):
                assert_close(actual, reference_value, dtype, f"{what} {name}")


# ---- out=, in place, poisoned buffers ------------------------------------------------------------------------

ODD_SHAPES = [(1027,), (5, 7), (3, 333), (17, 9), (9, 13)]

POISON_CASES = [
    *((loss, ODD_SHAPES[i % len(ODD_SHAPES)]) for i, loss in enumerate(ELEMENTWISE)),
    ("cross_entropy", (5, 4097)), ("cross_entropy", (3, 50001)), ("cross_entropy", (4, 6, 5)),
    ("nll_loss", (7, 9)), ("nll_loss", (3, 5, 7)),
]


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize(("loss", "shape"), POISON_CASES)
def test_out_and_inplace_write_every_element(loss: str, shape: tuple[int, ...], dtype: str, library: str,
                                            rng: np.random.Generator) -> None:
    target_kind = "index" if loss in ("cross_entropy", "nll_loss") else "default"
    options = defaults(ELEMENTWISE_LOSSES[loss]) if loss in ELEMENTWISE_LOSSES else {}
    input, target, _ = draw_rounded(Case(loss, shape, options, target=target_kind), dtype, rng)
    target_on_device = to_device(target, dtype, library)
    _, expected = reference(loss, input, target, **options)
    function = getattr(lossk, loss)

    out = to_device(np.full(shape, np.nan), dtype, library)  # poisoned: an element not written stays NaN
    grad = function.grad(to_device(input, dtype, library), target_on_device, backend="cupy", out=out, **options)
    assert grad is out
    assert not np.isnan(to_host(out)).any()
    assert_close(out, expected, dtype, "gradient into out=")

    logits = to_device(input, dtype, library)
    grad = function.grad(logits, target_on_device, backend="cupy", inplace=True, **options)
    assert grad is logits
    assert_close(logits, expected, dtype, "gradient in place")


def test_cross_entropy_in_place_needs_no_extra_device_memory(rng: np.random.Generator) -> None:
    import torch

    logits = torch.randn(4096, 32768, device="cuda")  # 512 MiB
    target = torch.randint(0, 32768, (4096,), device="cuda")
    lossk.cross_entropy.grad(logits.clone(), target, backend="cupy", inplace=True)  # compile, warm the pools
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    lossk.cross_entropy.value_and_grad(logits, target, backend="cupy", inplace=True)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - before < 1 << 20  # a loss scalar, no logits-sized buffer


# ---- determinism -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["mse_loss", "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss"])
def test_repeated_runs_are_bit_identical(loss: str, rng: np.random.Generator) -> None:
    import cupy

    if loss in ("cross_entropy", "nll_loss"):
        shape = (3001, 1031)
        input = rng.normal(size=shape).astype(np.float32)
        target = rng.integers(0, shape[1], shape[0])
    else:
        input = rng.normal(size=2**22 + 3).astype(np.float32)
        target = rng.uniform(size=input.shape).astype(np.float32)
    x, y = cupy.asarray(input), cupy.asarray(target)
    runs = [getattr(lossk, loss).value_and_grad(x, y, backend="cupy") for _ in range(5)]
    losses = {r[0].get().tobytes() for r in runs}
    grads = {r[1].get().tobytes() for r in runs}
    assert len(losses) == 1 and len(grads) == 1


# ---- against PyTorch's own GPU kernels -------------------------------------------------------------------------

def _torch_options(spec: ElementwiseLoss) -> dict[str, Any]:
    """A scalar option at its first example, a flag flipped: a case besides the defaults."""
    options: dict[str, Any] = {}
    for option in spec.formula_options:
        if option.kind == "scalar" and option.examples:
            options[option.name] = option.examples[0]
        elif option.kind == "flag":
            options[option.name] = not option.default
    return options


TORCH_CASES = [
    *((loss, _torch_options(ELEMENTWISE_LOSSES[loss])) for loss in ELEMENTWISE
      if ELEMENTWISE_LOSSES[loss].torch_function),
    ("cross_entropy", {"label_smoothing": 0.1}), ("nll_loss", {}),
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize(("loss", "options"), TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_matches_pytorch_on_the_gpu(loss: str, options: dict[str, Any], dtype: str, rng: np.random.Generator) -> None:
    import torch
    import torch.nn.functional as F

    shape = (257, 1000) if loss in ("cross_entropy", "nll_loss") else (1000, 257)
    target_kind = "index" if loss in ("cross_entropy", "nll_loss") else "default"
    input, target, _ = draw_rounded(Case(loss, shape, options, target=target_kind), dtype, rng)
    x, y = to_device(input, dtype, "torch"), to_device(target, dtype, "torch")
    for reduction in ("mean", "sum", "none"):
        leaf = x.clone().requires_grad_(True)
        torch_name = ELEMENTWISE_LOSSES[loss].torch_function if loss in ELEMENTWISE_LOSSES else loss
        expected = getattr(F, torch_name)(leaf, y, reduction=reduction, **options)
        (expected_grad,) = torch.autograd.grad(expected, leaf, torch.ones_like(expected))
        loss_value, grad = getattr(lossk, loss).value_and_grad(x, y, backend="cupy", reduction=reduction, **options)
        assert_close(loss_value, to_host(expected), dtype, f"{loss} {reduction} loss vs torch")
        assert_close(grad, to_host(expected_grad), dtype, f"{loss} {reduction} gradient vs torch")


# ---- PyTorch interop: device, stream, dtype ----------------------------------------------------------------------


def test_torch_tensors_come_back_on_the_same_device_and_stream(rng: np.random.Generator) -> None:
    import torch

    x = torch.randn(8192, 1000, device="cuda", dtype=torch.bfloat16)
    y = torch.randint(0, 1000, (8192,), device="cuda")
    expected_loss, expected_grad = lossk.cross_entropy.value_and_grad(x, y, backend="cupy")
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        loss, grad = lossk.cross_entropy.value_and_grad(x, y, backend="cupy")  # enqueued on `stream`
        total = loss.float() + grad.float().sum()  # PyTorch work after it on the same stream
    stream.synchronize()
    assert loss.dtype == torch.bfloat16 and grad.dtype == torch.bfloat16 and grad.device == x.device
    assert torch.equal(loss, expected_loss) and torch.equal(grad, expected_grad)
    assert torch.isfinite(total)
    assert _dispatch.select("cross_entropy", "auto", x).implementation.__module__ == "lossk._backends.cupy.class_losses"
    leaf = torch.randn(1000, device="cuda", requires_grad=True)  # DLPack refuses these unless detached first
    _, leaf_grad = lossk.mse_loss.value_and_grad(leaf, torch.zeros_like(leaf), backend="cupy", reduction="sum")
    assert torch.equal(leaf_grad, 2 * leaf.detach())


# ---- 64-bit indexing ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_more_than_2_31_elements() -> None:
    import torch

    rows, classes = 16385, 131072  # 2^31 + 131072 bfloat16 logits (4 GiB)
    logits = torch.randn(rows, classes, device="cuda", dtype=torch.bfloat16)
    target = torch.randint(0, classes, (rows,), device="cuda")
    last = logits[-2:].float().cpu().numpy()
    loss = lossk.cross_entropy(logits, target, backend="cupy", reduction="none")
    grad = lossk.cross_entropy.grad(logits, target, backend="cupy", reduction="sum", inplace=True)
    expected_loss, expected_grad = reference("cross_entropy", last.astype(np.float64), target[-2:].cpu().numpy(),
                                             reduction="none")
    assert_close(loss[-2:], expected_loss, "bfloat16", "the last rows' loss (offsets beyond 2^31)")
    assert_close(grad[-2:], expected_grad, "bfloat16", "the last rows' gradient")

    del logits, grad, loss
    flat = torch.randn(2**31 + 17, device="cuda")  # 8 GiB of float32; three such arrays in all
    value, flat_grad = lossk.mse_loss.value_and_grad(flat, torch.zeros_like(flat), backend="cupy", reduction="sum")
    expected = sum(float((part.double() ** 2).sum()) for part in flat.split(1 << 28))
    assert math.isclose(float(value), expected, rel_tol=1e-4)
    assert torch.equal(flat_grad[-17:], 2 * flat[-17:])


# ---- NaN, empty class axes, warnings (issue 11's static review) ---------------------------------------------------


@pytest.mark.parametrize(("loss", "options"), [("huber_loss", {"delta": 0.5}), ("smooth_l1_loss", {"beta": 0.5}),
                                                ("binary_cross_entropy", {}), ("binary_cross_entropy_with_logits", {}),
                                                ("mse_loss", {})])
def test_nan_propagates_through_clamps(loss: str, options: dict[str, Any]) -> None:
    import cupy

    x = cupy.asarray([np.nan, 0.25, 0.5], dtype=np.float32)
    y = cupy.asarray([0.0, 0.0, 1.0], dtype=np.float32)
    value, grad = getattr(lossk, loss).value_and_grad(x, y, backend="cupy", reduction="none", **options)
    assert math.isnan(float(value[0])) and math.isnan(float(grad[0]))  # as PyTorch: NaN, not a clipped value
    assert not cupy.isnan(value[1:]).any() and not cupy.isnan(grad[1:]).any()


@pytest.mark.parametrize("shape", [(4, 6), (3, 5000), (2, 300000), (5, 3, 4)], ids=lambda s: "x".join(map(str, s)))
def test_a_nan_logit_makes_its_row_nan(shape: tuple[int, ...], rng: np.random.Generator) -> None:
    import cupy

    logits = rng.normal(size=shape).astype(np.float32)
    logits[1, 2] = np.nan
    target = rng.integers(0, shape[1], (shape[0], *shape[2:]))
    value, grad = lossk.cross_entropy.value_and_grad(cupy.asarray(logits), cupy.asarray(target), backend="cupy",
                                                     reduction="none")
    expected, _ = reference("cross_entropy", logits.astype(np.float64), target, reduction="none")
    assert np.array_equal(np.isnan(to_host(value)), np.isnan(expected))
    assert np.isnan(to_host(grad)[1]).any() and not np.isnan(to_host(grad)[0]).any()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_zero_classes_do_not_touch_the_logits(reduction: str) -> None:
    import cupy

    x = cupy.zeros((3, 0), dtype=np.float32)
    loss, grad = lossk.cross_entropy.value_and_grad(x, cupy.zeros((3, 0), dtype=np.float32), backend="cupy",
                                                    reduction=reduction)
    cupy.cuda.Device().synchronize()  # an illegal address would surface here and poison the context
    assert grad.shape == (3, 0)
    assert float(cupy.abs(loss).sum()) == 0.0
    _ = cupy.ones(4).sum().item()  # the context still works


def test_torch_calls_warn_about_nothing(rng: np.random.Generator) -> None:
    import warnings

    import torch

    x = torch.randn(64, 1000, device="cuda")
    y = torch.randint(0, 1000, (64,), device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # CuPy 14 warns on every ExternalStream
        lossk.cross_entropy.value_and_grad(x, y, backend="cupy")
        lossk.mse_loss.value_and_grad(x, torch.zeros_like(x), backend="cupy")


# ---- cross-entropy's Hessian diagonal (LOSSK_HESS) in every layout, and NLL's zero Hessian -------------------

HESSIAN_ROWS = [
    ((4, 4096), "index"),  # one block per row, in shared memory
    ((3, 50001), "index"),  # a cluster, each row's misaligned head peeled
    ((7, 333), "index"),  # a warp per row
    ((4, 1001), "probability"),  # streamed, misaligned rows
    ((2, 1_100_000), "index"),  # too long for shared memory: streamed twice
    ((5, 17, 3), "ignored"),  # one thread per row
    ((1, 5000, 3), "index"),  # few long strided rows: a block each
    ((2, 3001, 2), "probability"),
    ((9, 1), "index"),
]
HESSIAN_OPTIONS = [
    {},
    {"z_loss": 1e-3, "softcap": 30.0},
    {"weight": True, "label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 5.0, "ignore_index": 1},
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize(("shape", "target_kind"), HESSIAN_ROWS, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else v)
@pytest.mark.parametrize("options", HESSIAN_OPTIONS, ids=["plain", "z_loss-softcap", "everything"])
def test_cross_entropy_hessian_layouts(shape: tuple[int, ...], target_kind: str, options: dict[str, Any], dtype: str,
                                       rng: np.random.Generator) -> None:
    options = dict(options)
    case = Case("cross_entropy", shape, {}, ("weight",) if options.pop("weight", False) else (), target=target_kind)
    input, target, arrays = draw_rounded(case, dtype, rng)
    if "ignore_index" in options and target_kind != "probability":
        target[rng.random(target.shape) < 0.3] = options["ignore_index"]
    loss_shape = (shape[0], *shape[2:])
    library = "torch" if target_kind == "probability" else "cupy"
    device_arrays = {k: to_device(v, dtype, library) for k, v in arrays.items()}
    for reduction, upstream in (("mean", None), ("sum", -1.5), ("none", rng.normal(size=loss_shape))):
        expected = lossk.cross_entropy.value_grad_hessian(input, target, backend="array_api", reduction=reduction,
                                                          grad_output=upstream, **options, **arrays)
        got = lossk.cross_entropy.value_grad_hessian(
            to_device(input, dtype, library), to_device(target, dtype, library), backend="cupy", reduction=reduction,
            grad_output=upstream if not isinstance(upstream, np.ndarray) else to_device(upstream, "float32", library),
            **options, **device_arrays,
        )
        for name, actual, reference_value in zip(("loss", "grad", "hess"), got, expected, strict=True):
            assert_close(actual, reference_value, dtype, f"{shape} {reduction} {name}")


@pytest.mark.parametrize("shape", [(4, 4096), (7, 333), (5, 9, 3)], ids=lambda s: "x".join(map(str, s)))
def test_cross_entropy_hessian_into_buffers_and_in_place(shape: tuple[int, ...], rng: np.random.Generator) -> None:
    """hess_out (poisoned) and out=input: every element written, the Hessian from the logits before the
    in-place gradient overwrites them."""
    import cupy

    input, target, _ = draw_rounded(Case("cross_entropy", shape, target="index"), "float32", rng)
    expected = lossk.cross_entropy.value_grad_hessian(input, target, backend="array_api", label_smoothing=0.1,
                                                      z_loss=1e-3)
    x = to_device(input, "float32", "cupy")
    hess_out = cupy.full(shape, cupy.nan, cupy.float32)
    loss, grad, hess = lossk.cross_entropy.value_grad_hessian(
        x, to_device(target, "float32", "cupy"), backend="cupy", label_smoothing=0.1, z_loss=1e-3, out=x,
        hess_out=hess_out,
    )
    assert grad is x and hess is hess_out
    for name, actual, reference_value in zip(("loss", "grad", "hess"), (loss, grad, hess), expected, strict=True):
        assert_close(actual, reference_value, "float32", f"{shape} in place {name}")


@pytest.mark.parametrize("library", LIBRARIES)
def test_nll_hessian_is_zero(library: str, rng: np.random.Generator) -> None:
    input, target, _ = draw_rounded(Case("nll_loss", (7, 5, 3), target="index"), "float32", rng)
    expected = lossk.nll_loss.value_grad_hessian(input, target, backend="array_api", reduction="sum")
    got = lossk.nll_loss.value_grad_hessian(to_device(input, "float32", library), to_device(target, "float32", library),
                                            backend="cupy", reduction="sum")
    for name, actual, reference_value in zip(("loss", "grad", "hess"), got, expected, strict=True):
        assert_close(actual, reference_value, "float32", f"nll {name}")
    assert not to_host(got[2]).any()


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", [{}, {"z_loss": 1e-2, "softcap": 3.0, "label_smoothing": 0.1, "class_weight": True}],
                         ids=["plain", "every-option"])
def test_linear_cross_entropy_and_its_hessian(options: dict[str, Any], dtype: str, library: str,
                                              rng: np.random.Generator) -> None:
    """The chunked linear layer + cross-entropy on the device (the fused CUDA cross-entropy in place, the
    library's products) and its second derivatives (the reference on the device), against NumPy float64."""
    n_tokens, n_features, n_classes = 37, 24, 129
    arrays = {"input": rng.normal(0, 1, (n_tokens, n_features)),
              "linear_weight": rng.normal(0, 0.3, (n_classes, n_features)),
              "linear_bias": rng.normal(0, 0.3, n_classes)}
    target = rng.integers(0, n_classes, n_tokens)
    target[::5] = -100
    settings = {name: value for name, value in options.items() if name != "class_weight"}
    if options.get("class_weight"):
        arrays["weight"] = rng.uniform(0.5, 2.0, n_classes)
    host = {name: rounded(a, dtype) for name, a in arrays.items()}
    device = {name: to_device(a, dtype, library) for name, a in arrays.items()}
    device_target = to_device(target, dtype, library)

    def call(function: Any, values: dict[str, Any], labels: Any, **extra: Any) -> Any:
        keywords = {name: values[name] for name in ("linear_bias", "weight") if name in values}
        return function(values["input"], values["linear_weight"], labels, chunk_size=16, **keywords, **settings, **extra)

    expected = call(lossk.linear_cross_entropy.value_grad_hessian, host, target, backend="array_api")
    loss, grads = call(lossk.linear_cross_entropy.value_and_grad, device, device_target)
    got = call(lossk.linear_cross_entropy.value_grad_hessian, device, device_target)
    assert_close(loss, expected[0], dtype, "loss")
    assert_close(got[0], expected[0], dtype, "loss (value_grad_hessian)")
    for name, actual, also, reference_value in zip(("d_input", "d_linear_weight", "d_linear_bias"), grads, got[1],
                                                   expected[1], strict=True):
        assert_close(actual, reference_value, dtype, name)
        assert_close(also, reference_value, dtype, f"{name} (value_grad_hessian)")
    for name, actual, reference_value in zip(("h_input", "h_linear_weight", "h_linear_bias"), got[2], expected[2],
                                             strict=True):
        assert type(actual) is type(device["input"])
        assert_close(actual, reference_value, dtype, name)
