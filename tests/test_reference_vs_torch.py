"""Every loss x option x reduction x dtype against PyTorch autograd in float64, on every backend.

The case table (``loss_cases.CASES``) is the specification of what "identical to PyTorch" covers: odd sizes, unbatched,
spatial and empty inputs, weights, ignored rows, label smoothing, exact 0/1 probabilities, ties (L1's
subgradient) and saturated logits (±1e4). Every case runs contiguous and on strided (non-contiguous) views,
in float32 and float64, with the default upstream gradient and with a random one.
"""

from __future__ import annotations

import numpy as np
import pytest
from loss_cases import CASES, SATURATED, Case, as_dtype, draw, reductions, strided
from torch_oracle import TORCH_DTYPES, assert_close, to_numpy, torch_value_and_grad

import lossk
from lossk._losses import ELEMENTWISE_LOSSES


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    ("case", "reduction"),
    [pytest.param(case, reduction, id=f"{case.id}-{reduction}") for case in CASES for reduction in reductions(case.loss)],
)
def test_matches_pytorch(case, reduction, dtype, layout, backend, rng, seed):
    backend.require(case.loss)
    input64, target64, arrays64 = draw(case, rng)
    # the oracle sees exactly the values lossk sees: rounded to dtype first
    input, target = as_dtype(input64, dtype), as_dtype(target64, dtype)
    arrays = {name: a.astype(dtype) for name, a in arrays64.items()}
    options = {**case.options, **arrays}
    arrange = strided if layout == "strided" else np.asarray
    call_args = (backend.asarray(arrange(input)), backend.asarray(arrange(target)))
    call_options = {**case.options, **{name: backend.asarray(arrange(a)) for name, a in arrays.items()}}
    function = getattr(lossk, case.loss)

    expected_loss, expected_grad = torch_value_and_grad(case.loss, input, target, reduction=reduction, **options)
    peer_loss = peer_grad = None  # in float64, PyTorch's own result is the oracle
    if dtype != np.float64:
        peer_loss, peer_grad = torch_value_and_grad(
            case.loss, input, target, reduction=reduction, torch_dtype=TORCH_DTYPES[np.dtype(dtype)], **options
        )
    loss, grad = function.value_and_grad(*call_args, reduction=reduction, backend=backend.name, **call_options)
    forward_only = function(*call_args, reduction=reduction, backend=backend.name, **call_options)
    for name, result, expected in (("loss", loss, expected_loss), ("forward-only loss", forward_only, expected_loss)):
        assert result.dtype == input.dtype, f"{name} has dtype {result.dtype}, the input {input.dtype}"
        assert type(result) is type(call_args[0]), f"{name} is a {type(result)}, not the input's array type"
        assert_close(result, expected, dtype, name, seed, peer=peer_loss)
    assert grad.dtype == input.dtype
    assert type(grad) is type(call_args[0])
    assert_close(grad, expected_grad, dtype, "gradient", seed, peer=peer_grad)

    # a random upstream gradient: a scalar for mean/sum, an array of the unreduced loss's shape for 'none'
    if reduction == "none":
        upstream = rng.normal(0, 1, expected_loss.shape).astype(dtype)
        grad_output = backend.asarray(arrange(upstream))
    else:
        upstream = grad_output = float(rng.normal(0, 2))
    _, expected_grad = torch_value_and_grad(
        case.loss, input, target, reduction=reduction, grad_output=upstream, **options
    )
    grad = function.grad(*call_args, reduction=reduction, grad_output=grad_output, backend=backend.name, **call_options)
    assert_close(grad, expected_grad, dtype, f"gradient with grad_output={upstream}", seed)
    assert to_numpy(call_args[0]).tobytes() == arrange(input).tobytes(), "the input was modified"


@pytest.mark.parametrize("nan_in", ["input", "target"])
@pytest.mark.parametrize("loss", [spec.name for spec in ELEMENTWISE_LOSSES.values() if spec.check_values is None])
def test_nan_propagates_like_pytorch(loss, nan_in, backend, rng, seed):
    """A NaN in the data gives NaN in exactly the losses and gradients where PyTorch has NaN (every elementwise
    loss whose input may hold NaN: BCE on probabilities rejects it, as PyTorch does)."""
    backend.require(loss)
    input, target, _ = draw(Case(loss, (4, 5)), rng)
    (input if nan_in == "input" else target)[1, 2] = np.nan
    function = getattr(lossk, loss)
    for reduction in ("none", "mean"):
        expected_loss, expected_grad = torch_value_and_grad(loss, input, target, reduction=reduction)
        value, grad = function.value_and_grad(
            backend.asarray(input), backend.asarray(target), reduction=reduction, backend=backend.name
        )
        assert_close(value, expected_loss, np.float64, f"{reduction} loss", seed)
        assert_close(grad, expected_grad, np.float64, f"{reduction} gradient", seed)


@pytest.mark.parametrize("target_kind", ["index", "probability"])
def test_cross_entropy_nan_logit_poisons_its_row(target_kind, backend, rng, seed):
    backend.require("cross_entropy")
    input, target, _ = draw(Case("cross_entropy", (4, 5), target=target_kind), rng)
    input[1, 2] = np.nan
    for reduction in ("none", "mean"):
        expected_loss, expected_grad = torch_value_and_grad("cross_entropy", input, target, reduction=reduction)
        value, grad = lossk.cross_entropy.value_and_grad(
            backend.asarray(input), backend.asarray(target), reduction=reduction, backend=backend.name
        )
        assert_close(value, expected_loss, np.float64, f"{reduction} loss", seed)
        assert_close(grad, expected_grad, np.float64, f"{reduction} gradient", seed)


def test_l1_subgradient_is_zero_at_zero_residual(backend):
    backend.require("l1_loss")
    x = backend.asarray(np.array([1.0, -2.0, 3.0, 0.5]))
    y = backend.asarray(np.array([1.0, -1.0, 3.0, 0.0]))
    grad = to_numpy(lossk.l1_loss.grad(x, y, reduction="sum", backend=backend.name))
    np.testing.assert_array_equal(grad, [0.0, -1.0, 0.0, 1.0])


def test_smooth_l1_with_beta_zero_is_l1(backend, rng):
    backend.require("smooth_l1_loss")
    backend.require("l1_loss")
    x, y = (backend.asarray(rng.normal(size=(5, 7))) for _ in range(2))
    for reduction in ("none", "mean", "sum"):
        smooth = lossk.smooth_l1_loss.value_and_grad(x, y, beta=0.0, reduction=reduction, backend=backend.name)
        l1 = lossk.l1_loss.value_and_grad(x, y, reduction=reduction, backend=backend.name)
        for a, b in zip(smooth, l1):
            np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-15)


def test_binary_cross_entropy_clamps_exact_probabilities(backend):
    """log 0 is clamped at -100, and the gradient's denominator x (1 - x) at 1e-12, as in PyTorch."""
    backend.require("binary_cross_entropy")
    x = backend.asarray(np.array([0.0, 1.0, 0.0, 1.0]))
    y = backend.asarray(np.array([1.0, 0.0, 0.0, 1.0]))
    loss, grad = lossk.binary_cross_entropy.value_and_grad(x, y, reduction="none", backend=backend.name)
    np.testing.assert_array_equal(to_numpy(loss), [100.0, 100.0, 0.0, 0.0])
    floor = float(np.float32(1e-12))  # PyTorch holds its 1e-12 floor in float32
    np.testing.assert_allclose(to_numpy(grad), [-1 / floor, 1 / floor, 0.0, 0.0], rtol=1e-12)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy_with_logits"])
def test_saturated_logits_stay_finite(loss, backend):
    backend.require(loss)
    logits = np.array([[SATURATED, -SATURATED, 0.0], [-SATURATED, -SATURATED, SATURATED]], dtype=np.float32)
    target = np.array([1, 2]) if loss == "cross_entropy" else np.array([[0, 1, 0.5], [1, 0, 1]], dtype=np.float32)
    value, grad = getattr(lossk, loss).value_and_grad(
        backend.asarray(logits), backend.asarray(target), reduction="sum", backend=backend.name
    )
    assert np.isfinite(to_numpy(value)).all() and np.isfinite(to_numpy(grad)).all()
