"""Second derivatives (``lossk._hessian.value_grad_hessian``): cross-entropy's and NLL's Hessian diagonals, and
the ``(loss, grad, hess)`` entry point of every loss.

Cross-entropy's diagonal is checked three ways: against central differences of the analytic gradient
(float64, every option), against ``torch.func.hessian`` of PyTorch's ``F.cross_entropy`` (and of a small
torch-written z-loss / soft-cap oracle where PyTorch has neither), and the fused Numba kernel against the
reference. The elementwise losses' ``d2`` is checked against finite differences and the reference by the
spec's own tests (``test_finite_differences.py``, ``test_numba_elementwise.py``); here against
``torch.func.hessian`` and through the public entry point (dispatch, ``out=``/``hess_out=``, weights). The
multi-input losses' Hessians are checked in ``test_multi_input.py``; here that every backend registers them.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import lossk
from lossk import _dispatch
from lossk._hessian import key, value_grad_hessian
from lossk._losses import ELEMENTWISE_LOSSES, multi_input
from lossk._reference import classification as reference

CROSS_ENTROPY_OPTIONS = {
    "plain": {},
    "weight": {"weight": True},
    "ignored": {"ignore": True},
    "smoothing+weight": {"label_smoothing": 0.2, "weight": True, "ignore": True},
    "z_loss": {"z_loss": 0.05},
    "softcap": {"softcap": 1.5},
    "everything": {"weight": True, "label_smoothing": 0.1, "ignore": True, "z_loss": 0.02, "softcap": 2.0},
}

SHAPES = [(6,), (5, 4), (7, 1), (3, 5, 4)]

TOLERANCE = {
    np.float64: {"rtol": 1e-10, "atol": 1e-12},
    np.float32: {"rtol": 2e-5, "atol": 2e-6},
}
"""Numba kernel vs reference, per dtype; ``atol`` is relative to the largest entry (the soft-cap's chain
term cancels near zero)."""


def _labels_shape(shape):
    return () if len(shape) == 1 else (shape[0], *shape[2:])


def _cross_entropy_arguments(rng, shape, dtype, target_kind, options):
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    logits = (2 * rng.standard_normal(shape)).astype(dtype)
    options = dict(options)
    if options.pop("weight", False):
        options["weight"] = rng.uniform(0.3, 2.0, n_classes).astype(dtype)
    ignore = options.pop("ignore", False)
    if target_kind == "probabilities":
        target = rng.dirichlet(np.ones(n_classes), size=_labels_shape(shape) or None).astype(dtype)
        target = np.moveaxis(target, -1, 1) if len(shape) > 2 else target
    else:
        target = rng.integers(0, n_classes, _labels_shape(shape))
        if ignore and target.ndim:
            target.flat[0] = -100
    return logits, target, options


def _upstream(rng, reduction, shape, dtype):
    if reduction == "none":
        return rng.uniform(0.5, 2, _labels_shape(shape)).astype(dtype)
    return float(rng.uniform(0.5, 2))


def _assert_close(actual, desired, dtype):
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    scale = float(np.max(np.abs(desired))) if desired.size else 1.0
    tolerance = TOLERANCE[dtype]
    np.testing.assert_allclose(actual, desired, rtol=tolerance["rtol"], atol=tolerance["atol"] * max(scale, 1.0))


@pytest.mark.parametrize("target_kind", ["indices", "probabilities"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("option_name", list(CROSS_ENTROPY_OPTIONS))
@pytest.mark.parametrize("backend_name", ["array_api", "numba"])
def test_cross_entropy_hessian_matches_finite_differences_of_the_gradient(
    backend_name, option_name, reduction, target_kind, rng
):
    """d² loss / d z_i² against (grad_i(z + h e_i) - grad_i(z - h e_i)) / 2h, float64."""
    if not _dispatch.is_available(backend_name):
        pytest.skip(f"backend {backend_name!r} is not available here")
    logits, target, options = _cross_entropy_arguments(
        rng, (4, 5), np.float64, target_kind, CROSS_ENTROPY_OPTIONS[option_name]
    )
    upstream = _upstream(rng, reduction, logits.shape, np.float64)
    call = {"reduction": reduction, "grad_output": upstream, "backend": backend_name, **options}
    _, _, hess = value_grad_hessian(lossk.cross_entropy, logits, target, **call)
    step = 1e-6
    numeric = np.empty_like(logits)
    for index in np.ndindex(logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[index] += step
        minus[index] -= step
        numeric[index] = (lossk.cross_entropy.grad(plus, target, **call)[index]
                          - lossk.cross_entropy.grad(minus, target, **call)[index]) / (2 * step)
    np.testing.assert_allclose(hess, numeric, rtol=1e-6, atol=1e-8)
    if options.get("softcap") is None:
        assert np.all(hess >= 0), "without a soft-cap the diagonal is a sum of non-negative terms"


def _torch_cross_entropy(torch, z, target, *, weight, ignore_index, label_smoothing, z_loss, softcap, reduction):
    """PyTorch's cross-entropy, plus Liger-Kernel's z-loss and Gemma 2's soft-cap written in torch."""
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    loss = torch.nn.functional.cross_entropy(z, target, weight=weight, ignore_index=ignore_index,
                                             label_smoothing=label_smoothing, reduction=reduction)
    if z_loss:
        kept = target != ignore_index
        lse = torch.logsumexp(z, dim=1)
        rows = torch.where(kept, z_loss * lse**2, torch.zeros_like(lse))
        loss = loss + (rows.sum() / kept.sum() if reduction == "mean" else rows.sum() if reduction == "sum" else rows)
    return loss


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # inside torch.func
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("option_name", list(CROSS_ENTROPY_OPTIONS))
def test_cross_entropy_hessian_matches_torch_func_hessian(option_name, reduction, rng):
    """The reference's diagonal against the diagonal of ``torch.func.hessian`` (float64)."""
    torch = pytest.importorskip("torch")
    logits, target, options = _cross_entropy_arguments(rng, (4, 5), np.float64, "indices",
                                                       CROSS_ENTROPY_OPTIONS[option_name])
    upstream = _upstream(rng, reduction, logits.shape, np.float64)
    _, _, hess = value_grad_hessian(lossk.cross_entropy, logits, target, reduction=reduction, grad_output=upstream,
                                    backend="array_api", **options)
    weight = options.get("weight")
    torch_options = {
        "weight": None if weight is None else torch.from_numpy(weight), "ignore_index": -100,
        "label_smoothing": options.get("label_smoothing", 0.0), "z_loss": options.get("z_loss", 0.0),
        "softcap": options.get("softcap"), "reduction": reduction,
    }
    labels = torch.from_numpy(target)
    factor = torch.as_tensor(upstream, dtype=torch.float64)

    def scalar(z):
        return (factor * _torch_cross_entropy(torch, z, labels, **torch_options)).sum()

    full = torch.func.hessian(scalar)(torch.from_numpy(logits))
    diagonal = full.reshape(logits.size, logits.size).diagonal().reshape(logits.shape).numpy()
    np.testing.assert_allclose(hess, diagonal, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("target_kind", ["indices", "probabilities"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("option_name", list(CROSS_ENTROPY_OPTIONS))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_numba_cross_entropy_hessian_matches_reference(shape, option_name, reduction, target_kind, dtype, rng):
    """The fused kernel's Hessian stream (and loss and gradient, written in the same pass) against the reference."""
    pytest.importorskip("numba")
    logits, target, options = _cross_entropy_arguments(rng, shape, dtype, target_kind,
                                                       CROSS_ENTROPY_OPTIONS[option_name])
    upstream = _upstream(rng, reduction, shape, dtype)
    call = {"reduction": reduction, "grad_output": upstream, **options}
    fused = value_grad_hessian(lossk.cross_entropy, logits, target, backend="numba", **call)
    expected = value_grad_hessian(lossk.cross_entropy, logits, target, backend="array_api", **call)
    for got, want in zip(fused, expected):
        assert got.dtype == want.dtype == dtype
        _assert_close(got, want, dtype)


def test_numba_cross_entropy_writes_into_out_and_hess_out(rng):
    """``out`` and ``hess_out`` C-contiguous in the compute dtype are written by the kernel itself;
    ``out=input`` (in place) keeps the Hessian right; a strided ``hess_out`` receives a copy."""
    pytest.importorskip("numba")
    logits, target, options = _cross_entropy_arguments(rng, (9, 7), np.float32, "indices",
                                                       CROSS_ENTROPY_OPTIONS["everything"])
    _, grad, hess = value_grad_hessian(lossk.cross_entropy, logits, target, backend="array_api", **options)
    out, hess_out = np.empty_like(logits), np.empty_like(logits)
    _, got_grad, got_hess = value_grad_hessian(lossk.cross_entropy, logits, target, backend="numba", out=out,
                                               hess_out=hess_out, **options)
    assert got_grad is out and got_hess is hess_out
    _assert_close(out, grad, np.float32)
    _assert_close(hess_out, hess, np.float32)
    in_place = logits.copy()
    _, got_grad, got_hess = value_grad_hessian(lossk.cross_entropy, in_place, target, backend="numba", out=in_place,
                                               **options)
    assert got_grad is in_place
    _assert_close(in_place, grad, np.float32)
    _assert_close(got_hess, hess, np.float32)
    strided = np.empty((9, 14), np.float32)[:, ::2]
    _, _, got_hess = value_grad_hessian(lossk.cross_entropy, logits, target, backend="numba", hess_out=strided,
                                        **options)
    assert got_hess is strided
    _assert_close(strided, hess, np.float32)


@pytest.mark.parametrize("backend_name", ["array_api", "numba"])
def test_nll_loss_hessian_is_zero(backend_name, rng):
    """NLL is linear in its log-probability input: its Hessian is exactly 0, its gradient unchanged."""
    if not _dispatch.is_available(backend_name):
        pytest.skip(f"backend {backend_name!r} is not available here")
    log_probabilities = np.log(rng.dirichlet(np.ones(5), size=6))
    target = rng.integers(0, 5, 6)
    loss, grad, hess = value_grad_hessian(lossk.nll_loss, log_probabilities, target, backend=backend_name)
    expected_loss, expected_grad = lossk.nll_loss.value_and_grad(log_probabilities, target, backend="array_api")
    np.testing.assert_allclose(loss, expected_loss)
    np.testing.assert_allclose(grad, expected_grad)
    assert hess.shape == log_probabilities.shape and not np.any(hess)


ELEMENTWISE_TORCH = [name for name, spec in ELEMENTWISE_LOSSES.items() if spec.torch_function]


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")  # torch's kl_div
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # inside torch.func
@pytest.mark.filterwarnings("ignore:There is a performance drop because we have not yet implemented the batching rule")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", ELEMENTWISE_TORCH)
def test_elementwise_hessian_matches_torch_func_hessian(name, reduction, rng):
    """Every elementwise loss PyTorch has: the weighted, reduced d2 against ``torch.func.hessian``'s diagonal."""
    torch = pytest.importorskip("torch")
    spec = ELEMENTWISE_LOSSES[name]
    arrays = spec.domain.draw(rng, (3, 4), {o.name: o.default for o in spec.options}, True)
    input, target = arrays["input"], arrays["target"]
    options = {}
    if spec.weighted:
        weight_option = next(o for o in spec.options if o.name == "weight")
        options["weight"] = np.broadcast_to(weight_option.draw(rng, input.shape), input.shape).copy()
    upstream = rng.uniform(0.5, 2, input.shape) if reduction == "none" else 1.7
    _, _, hess = value_grad_hessian(getattr(lossk, name), input, target, reduction=reduction, grad_output=upstream,
                                    backend="array_api", **options)
    function = getattr(torch.nn.functional, spec.torch_function)
    torch_options = {k: torch.from_numpy(v) for k, v in options.items()}
    factor = torch.as_tensor(upstream, dtype=torch.float64)

    def scalar(x):
        return (factor * function(x, torch.from_numpy(target), reduction=reduction, **torch_options)).sum()

    # reverse over reverse: torch.func.hessian's forward-over-reverse lacks soft_margin_loss_backward's forward AD
    full = torch.func.jacrev(torch.func.jacrev(scalar))(torch.from_numpy(input))
    diagonal = full.reshape(input.size, input.size).diagonal().reshape(input.shape).numpy(force=True)  # L1: zeros
    np.testing.assert_allclose(hess, diagonal, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", list(ELEMENTWISE_LOSSES))
def test_every_loss_has_a_hessian_on_every_backend_that_has_its_gradient(name, rng):
    """The ``(loss, grad, hess)`` entry point: loss and gradient equal ``value_and_grad``'s; each backend
    registering the gradient registers the Hessian (the CUDA Hessian is not written yet: cupy excepted)."""
    spec = ELEMENTWISE_LOSSES[name]
    function = getattr(lossk, name)
    arrays = spec.domain.draw(rng, (33,), {o.name: o.default for o in spec.options}, True)
    for backend_name in _dispatch.implementations(name):
        if backend_name == "cupy":
            continue
        assert backend_name in _dispatch.implementations(key(name)), backend_name
        loss, grad, hess = value_grad_hessian(function, arrays["input"], arrays["target"], backend=backend_name)
        expected_loss, expected_grad = function.value_and_grad(arrays["input"], arrays["target"], backend=backend_name)
        # not bit-equal: with the Hessian stored, LLVM may contract the shared arithmetic differently (fastmath)
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-13, atol=1e-300)
        assert hess.shape == grad.shape and hess.dtype == grad.dtype


def test_hess_out_errors_name_the_argument():
    x = np.zeros(4)
    with pytest.raises(ValueError, match="hess_out"):
        value_grad_hessian(lossk.mse_loss, x, x, hess_out=np.zeros(3))
    with pytest.raises(TypeError, match="hess_out"):
        value_grad_hessian(lossk.mse_loss, x, x, hess_out=np.zeros(4, np.float32))
    out = np.zeros(4)
    with pytest.raises(ValueError, match="different arrays"):
        value_grad_hessian(lossk.mse_loss, x, x, out=out, hess_out=out)


def test_smooth_l1_with_beta_zero_has_l1s_hessian():
    """``smooth_l1_loss(beta=0)`` is L1 (the spec's rewrite): its Hessian is L1's, exactly 0."""
    x = np.array([-2.0, 0.5, 3.0])
    _, grad, hess = value_grad_hessian(lossk.smooth_l1_loss, x, np.zeros(3), beta=0.0, reduction="sum")
    np.testing.assert_array_equal(grad, np.sign(x))
    np.testing.assert_array_equal(hess, np.zeros(3))


def test_reference_cross_entropy_keeps_its_contract():
    """``cross_entropy`` (the registered gradient implementation) is ``cross_entropy_derivatives`` at order 1."""
    rng = np.random.default_rng(0)
    z, t = rng.standard_normal((4, 3)), np.array([0, 2, 1, 1])
    arguments = {"xp": np, "reduction": "mean", "grad_output": None, "weight": None, "ignore_index": -100,
                 "label_smoothing": 0.0, "z_loss": 0.0, "softcap": None, "return_z_loss": False}
    value, grad = reference.cross_entropy(z, t, compute_grad=True, **arguments)
    value2, grad2, hess = reference.cross_entropy_derivatives(z, t, order=1, **arguments)
    np.testing.assert_array_equal(value, value2)
    np.testing.assert_array_equal(grad, grad2)
    assert hess is None


@pytest.mark.parametrize("name", [*ELEMENTWISE_LOSSES, "cross_entropy", "nll_loss"])
def test_public_hessian_entry_points(name, rng):
    """``lossk.<loss>.hessian`` and ``.value_grad_hessian``: the same results as the dispatcher's, ``out=``
    receiving the Hessian (``.hessian``) or the gradient (``.value_grad_hessian``, with ``hess_out=``)."""
    function = getattr(lossk, name)
    if name in ELEMENTWISE_LOSSES:
        spec = ELEMENTWISE_LOSSES[name]
        arrays = spec.domain.draw(rng, (5, 7), {o.name: o.default for o in spec.options}, True)
        input, target = arrays["input"], arrays["target"]
    elif name == "cross_entropy":
        input, target = rng.normal(size=(5, 7)), rng.integers(0, 7, 5)
    else:
        input, target = np.log(rng.dirichlet(np.ones(7), size=5)), rng.integers(0, 7, 5)
    loss, grad, hess = value_grad_hessian(function, input, target, reduction="sum", grad_output=1.5)
    np.testing.assert_array_equal(function.hessian(input, target, reduction="sum", grad_output=1.5), hess)
    out, hess_out = np.empty_like(input), np.empty_like(input)
    result = function.value_grad_hessian(input, target, reduction="sum", grad_output=1.5, out=out, hess_out=hess_out)
    assert result[1] is out and result[2] is hess_out
    np.testing.assert_array_equal(result[0], loss)
    np.testing.assert_array_equal(out, grad)
    np.testing.assert_array_equal(hess_out, hess)
    assert function.hessian(input, target, out=hess_out) is hess_out
    assert "hess_out" in str(inspect.signature(function.value_grad_hessian))
    assert "hess_out" not in str(inspect.signature(function.hessian))


@pytest.mark.parametrize("name", [spec.name for spec in multi_input.LOSSES])
def test_multi_input_losses_have_a_hessian_on_every_backend_that_has_their_gradient(name, rng):
    """The multi-input losses register ``(loss, grads, hessians)`` beside their gradients (the CUDA ones excepted,
    as above); ``.value_grad_hessian``'s loss and gradients are ``.value_and_grad``'s (``tests/test_multi_input.py``
    checks the Hessians themselves)."""
    spec = next(s for s in multi_input.LOSSES if s.name == name)
    function = getattr(lossk, name)
    arrays = spec.domain.draw(rng, (3, 11), {o.name: o.default for o in spec.options}, True)
    arrays = [arrays[n] for n in spec.inputs]
    for backend_name in _dispatch.implementations(name):
        if backend_name == "cupy":
            continue
        assert backend_name in _dispatch.implementations(key(name)), backend_name
        loss, grads, hessians = function.value_grad_hessian(*arrays, backend=backend_name)
        expected_loss, expected_grads = function.value_and_grad(*arrays, backend=backend_name)
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
        grads, hessians, expected_grads = (g if isinstance(g, tuple) else (g,) for g in (grads, hessians, expected_grads))
        assert len(hessians) == len(spec.differentiable)
        for got, expected, hess in zip(grads, expected_grads, hessians):
            np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-300)
            assert hess.shape == got.shape and hess.dtype == got.dtype


@pytest.mark.parametrize("backend_name", ["array_api", "numba"])
def test_cross_entropy_ignored_row_with_an_infinite_logit_and_label_smoothing(backend_name):
    """An ignored row holding a -inf logit, with label smoothing: its loss, gradient and Hessian are 0 (PyTorch
    fills ignored rows' smoothing term with 0), the other rows' are finite and the mean is PyTorch's."""
    if not _dispatch.is_available(backend_name):
        pytest.skip(f"backend {backend_name!r} is not available here")
    z = np.array([[1.0, -np.inf, 0.5], [0.2, 0.1, -0.3], [0.0, 1.0, 2.0]])
    target = np.array([-100, 1, 2])
    for weight in (None, np.array([0.5, 1.0, 2.0])):
        call = {"label_smoothing": 0.1, "weight": weight, "backend": backend_name}
        rows, grad, hess = value_grad_hessian(lossk.cross_entropy, z, target, reduction="none", **call)
        assert rows[0] == 0 and not np.any(grad[0]) and not np.any(hess[0])
        assert np.all(np.isfinite(rows)) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))
        mean = lossk.cross_entropy(z, target, reduction="mean", **call)
        torch = pytest.importorskip("torch")
        expected = torch.nn.functional.cross_entropy(
            torch.from_numpy(z), torch.from_numpy(target), label_smoothing=0.1,
            weight=None if weight is None else torch.from_numpy(weight))
        np.testing.assert_allclose(mean, expected.item(), rtol=1e-12)
