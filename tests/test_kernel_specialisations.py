"""Compile-time specialisations of the generated Numba kernels, against the Array API reference.

A loss with flags has one kernel per combination of their values (``lossk._spec.kernel_name``), the values
compiled in; the surrogate second derivative (``ElementwiseLoss.hessian_floor``, ``lossk.boosting``'s
``hessian="surrogate"``) is written by the kernel in the pass that computes the gradient. The reference's
surrogate is checked without Numba too.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from loss_cases import defaults, draw_elementwise
from torch_oracle import TOLERANCES

import lossk
from lossk._dispatch import select
from lossk._hessian import surrogate_key
from lossk._losses import ELEMENTWISE_LOSSES, multi_input
from lossk._spec import ARRAY_KIND, flag_combinations, kernel_name

SPECS = {spec.name: spec for spec in (*ELEMENTWISE_LOSSES.values(), *multi_input.LOSSES)}
FLAG_CASES = [(name, flags) for name, spec in SPECS.items() if spec.flag_options for flags in flag_combinations(spec)]


def _option_cases(spec):
    """The defaults, then each example value of each scalar or flag option."""
    base = defaults(spec)
    return [base] + [{**base, o.name: v} for o in spec.keyword_options if o.kind != ARRAY_KIND for v in o.examples]


SURROGATE_CASES = [(spec.name, options) for spec in ELEMENTWISE_LOSSES.values() for options in _option_cases(spec)]


def assert_close(got, expected, dtype):
    """Within the dtype's relative tolerance of each value, or of the largest finite value near 0; NaN where NaN."""
    rtol = TOLERANCES[np.dtype(dtype)]["rtol"]
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    finite = np.isfinite(expected)
    scale = np.max(np.abs(expected[finite]), initial=0.0)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


def _arrays(spec, options, rng, dtype, n=3001):
    """The loss's positional arrays from its domain (3001 elements: more than one kernel chunk of vectors)."""
    inputs = spec.domain.draw(rng, (n,), {**defaults(spec), **options}, False)
    return [np.asarray(inputs[name], dtype) for name in spec.inputs]


@pytest.mark.parametrize(("loss", "flags"), FLAG_CASES, ids=[f"{n}-{f}" for n, f in FLAG_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_flag_combination_matches_the_reference(loss, flags, dtype):
    pytest.importorskip("numba")
    spec = SPECS[loss]
    module = importlib.import_module(f"lossk._kernels.numba.pointwise.{loss}")
    assert callable(getattr(module, kernel_name(spec, flags))) and not hasattr(module, "kernel")
    rng = np.random.default_rng(11)
    arrays = _arrays(spec, flags, rng, dtype)
    upstream = rng.uniform(0.5, 2.0, arrays[0].shape).astype(dtype)
    function = getattr(lossk, loss)
    results = [function.value_grad_hessian(*arrays, reduction="none", grad_output=upstream, backend=backend, **flags)
               for backend in ("numba", "array_api")]
    for got, expected in zip(*results):
        for g, e in zip(*((got, expected) if isinstance(got, tuple) else ((got,), (expected,)))):
            assert_close(g, e, dtype)


def _surrogate(loss, backend, input, target, options, upstream):
    function = getattr(lossk, loss)
    call = function._prepare(input, target, reduction="none", **options)
    registration = select(surrogate_key(call.loss or loss), backend, input)
    return registration.implementation(call.input, call.target, xp=call.xp, reduction="none", grad_output=upstream,
                                       order=2, **call.options)


@pytest.mark.parametrize(("loss", "options"), SURROGATE_CASES, ids=[f"{n}-{o}" for n, o in SURROGATE_CASES])
def test_reference_surrogate_is_the_exact_hessian_raised_to_the_floor(loss, options):
    """max(exact, floor) · weight, NaN-free where the exact Hessian is, and positive where the spec has a floor."""
    spec = ELEMENTWISE_LOSSES[loss]
    rng = np.random.default_rng(12)
    input, target, _ = draw_elementwise(spec, (500,), options, (), rng, saturated=True)
    upstream = rng.uniform(0.5, 2.0, input.shape)
    loss_value, grad, hess = _surrogate(loss, "array_api", input, target, options, upstream)
    exact_loss, exact_grad, exact = getattr(lossk, loss).value_grad_hessian(
        input, target, reduction="none", grad_output=upstream, backend="array_api", **options)
    np.testing.assert_array_equal(grad, exact_grad)
    np.testing.assert_array_equal(loss_value, exact_loss)
    floor = 0.0 if spec.hessian_floor is None else spec.hessian_floor(
        np, input, target, **{o.name: options[o.name] for o in spec.formula_options if o.name in options})
    expected = np.where(exact < floor * upstream, floor * upstream, exact)
    np.testing.assert_allclose(hess, expected, rtol=1e-12, atol=0)
    assert np.all(np.isnan(hess) == np.isnan(exact))
    assert np.all(hess[~np.isnan(hess)] >= 0)


@pytest.mark.parametrize(("loss", "options"), SURROGATE_CASES, ids=[f"{n}-{o}" for n, o in SURROGATE_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_surrogate_matches_the_reference(loss, options, dtype):
    """The kernel's surrogate (one pass with the gradient) equals the reference's, finite where it is."""
    pytest.importorskip("numba")
    spec = ELEMENTWISE_LOSSES[loss]
    rng = np.random.default_rng(13)
    input, target, _ = draw_elementwise(spec, (3001,), options, (), rng)
    input, target = input.astype(dtype), target.astype(dtype)
    upstream = rng.uniform(0.5, 2.0, input.shape).astype(dtype)
    fused = _surrogate(loss, "numba", input, target, options, upstream)
    reference = _surrogate(loss, "array_api", input, target, options, upstream)
    for got, expected in zip(fused, reference):
        assert_close(got, expected, dtype)
    assert np.all(np.isfinite(fused[2]) == np.isfinite(reference[2]))
    assert np.all(fused[2][np.isfinite(fused[2])] >= 0)



@pytest.mark.parametrize("backend", ["array_api", "numba"])
def test_boosting_surrogate_is_weighted_like_the_loss(backend):
    """``lossk.boosting``'s surrogate through each backend's surrogate registration: ``max(d2, floor)`` times the
    loss's own ``weight`` and the sample weights (Tweedie at power 3: the floor exp(-x))."""
    if backend == "numba":
        pytest.importorskip("numba")
    from lossk import boosting

    rng = np.random.default_rng(14)
    n = 2048
    x = rng.normal(size=n)
    y = rng.gamma(2.0, 2.0, n) * np.where(rng.random(n) < 0.5, 0.05, 1.0)
    loss_weight, sample_weight = rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, n)
    objective = boosting.lightgbm_objective(lossk.tweedie_loss, power=3.0, weight=loss_weight, backend=backend)
    _, hess = objective(y, x, sample_weight)
    _, _, d2 = lossk.tweedie_loss.value_grad_hessian(x, y, power=3.0, reduction="none", backend="array_api")
    assert np.any(d2 < np.exp(-x))
    np.testing.assert_allclose(hess, np.maximum(d2, np.exp(-x)) * loss_weight * sample_weight, rtol=1e-12, atol=0)
