"""The analytic gradient of every loss against central finite differences of its own forward pass, in float64.

Independent of PyTorch: this checks each backend's ``.grad`` against its own loss, and each elementwise loss's
second derivative (the reference's and the Numba kernel's ``hess``) against central differences of its own
analytic gradient, on inputs kept away from kinks and clamps (see ``loss_cases.draw(differentiable=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from loss_cases import CASES, LARGE, draw, reductions
from torch_oracle import to_numpy

import lossk
from lossk import _dispatch
from lossk._losses import ELEMENTWISE_LOSSES
from lossk._reference import _elementwise as reference_elementwise
from lossk._spec import prepare_arguments, resolve

STEP = 1e-6
"""Relative step of the central differences: truncation error ~ STEP², rounding error ~ 1e-16 / STEP."""


def central_differences(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """d f / d x, element by element, from (f(x + h) - f(x - h)) / 2h."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        h = STEP * max(1.0, abs(x[index]))
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        grad[index] = (f(plus) - f(minus)) / (2 * h)
    return grad


@pytest.mark.parametrize(
    ("case", "reduction"),
    [
        pytest.param(case, reduction, id=f"{case.id}-{reduction}")
        for case in CASES
        if not case.saturated and case.target != "all_ignored"  # all ignored: the loss is NaN
        and math.prod(case.shape) <= LARGE
        for reduction in reductions(case.loss)
    ],
)
def test_gradient_matches_finite_differences(case, reduction, backend, rng, seed):
    backend.require(case.loss)
    input, target, arrays = draw(case, rng, differentiable=True)
    function = getattr(lossk, case.loss)
    target_, options = backend.asarray(target), {**case.options, **{k: backend.asarray(a) for k, a in arrays.items()}}
    unreduced_shape = to_numpy(function(backend.asarray(input), target_, reduction="none", **options)).shape
    if reduction == "none":
        upstream = rng.normal(0, 1, unreduced_shape)
        grad_output = backend.asarray(upstream)
    else:
        upstream = grad_output = float(rng.normal(0, 2))

    def objective(x: np.ndarray) -> float:
        """The scalar whose gradient ``.grad`` returns: grad_output · loss."""
        loss = to_numpy(function(backend.asarray(x), target_, reduction=reduction, backend=backend.name, **options))
        return float(np.sum(upstream * loss))

    analytic = to_numpy(
        function.grad(
            backend.asarray(input), target_, reduction=reduction, grad_output=grad_output, backend=backend.name,
            **options,
        )
    )
    numerical = central_differences(objective, input)
    scale = max(1.0, float(np.max(np.abs(numerical), initial=0.0)))
    np.testing.assert_allclose(
        analytic, numerical, rtol=1e-6, atol=1e-7 * scale, err_msg=f"LOSSK_SEED={seed}"
    )


def second_derivative(backend: str, spec, input: np.ndarray, target: np.ndarray, options: dict, order: int) -> np.ndarray:
    """The unreduced gradient (``order=1``) or second derivative (``order=2``) of ``spec`` on ``backend``."""
    call = {"reduction": "none", "grad_output": None}
    if backend == "numba":
        from lossk._backends.numba import elementwise as numba_elementwise

        _, grad, hess = numba_elementwise.evaluate(
            spec, input, target, compute_grad=order == 1, compute_hess=order == 2, **call, **options
        )
    else:
        with np.errstate(all="ignore"):
            _, grad, hess = reference_elementwise.evaluate(spec, input, target, xp=np, order=order, **call, **options)
    return grad if order == 1 else hess


@pytest.mark.parametrize("backend_name", ["array_api", "numba"])
@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.loss in ELEMENTWISE_LOSSES and not c.saturated and math.prod(c.shape) <= LARGE],
    ids=lambda c: c.id,
)
def test_second_derivative_matches_finite_differences_of_the_gradient(case, backend_name, rng, seed):
    """d2 against (grad(x + h) - grad(x - h)) / 2h, element by element (an elementwise loss's Hessian is diagonal)."""
    if not _dispatch.is_available(backend_name):
        pytest.skip(f"backend {backend_name!r} is not available here")
    spec = ELEMENTWISE_LOSSES[case.loss]
    input, target, arrays = draw(case, rng, differentiable=True)
    options = {o.name: o.default for o in spec.options} | case.options | arrays
    _, options = prepare_arguments(spec, {"input": input, "target": target}, options)
    name, options = resolve(spec, options)
    spec = ELEMENTWISE_LOSSES[name]
    step = STEP * np.maximum(1.0, np.abs(input))
    plus = second_derivative(backend_name, spec, input + step, target, options, 1)
    minus = second_derivative(backend_name, spec, input - step, target, options, 1)
    numerical = (plus - minus) / (2 * step)
    analytic = second_derivative(backend_name, spec, input, target, options, 2)
    scale = max(1.0, float(np.max(np.abs(numerical), initial=0.0)))
    np.testing.assert_allclose(analytic, numerical, rtol=1e-6, atol=1e-7 * scale, err_msg=f"LOSSK_SEED={seed}")
