"""The analytic gradient of every loss against central finite differences of its own forward pass, in float64.

Independent of PyTorch: this checks each backend's ``.grad`` against its own loss, on inputs kept away from
kinks and clamps (see ``loss_cases.draw(differentiable=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from loss_cases import CASES, LARGE, draw, reductions
from torch_oracle import to_numpy

import lossk

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
