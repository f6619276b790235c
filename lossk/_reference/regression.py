"""Reference regression losses: L1, squared error, Huber and smooth L1 (see ``lossk.regression``)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._array_api import Array, size
from ._elementwise import finish_elementwise, promote


def l1_loss(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
    weight: Array | None,
) -> tuple[Array, Array | None]:
    """|x - y|; gradient sign(x - y), 0 at a zero residual (the subgradient PyTorch picks)."""
    x, y, w = promote(xp, input, target, weight)
    diff = x - y
    # PyTorch's sign(NaN) is 0: a NaN residual gives a NaN loss but a zero gradient
    grad = xp.where(xp.isnan(diff), xp.zeros_like(diff), xp.sign(diff)) if compute_grad else None
    return finish_elementwise(
        xp, xp.abs(diff), grad, weight=w, reduction=reduction, grad_output=grad_output, dtype=input.dtype
    )


def mse_loss(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
    weight: Array | None,
) -> tuple[Array, Array | None]:
    """(x - y)^2; gradient 2 (x - y)."""
    x, y, w = promote(xp, input, target, weight)
    diff = x - y
    grad = 2 * diff if compute_grad else None
    return finish_elementwise(
        xp, diff * diff, grad, weight=w, reduction=reduction, grad_output=grad_output, dtype=input.dtype
    )


def huber_loss(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
    delta: float, weight: Array | None,
) -> tuple[Array, Array | None]:
    """½ d² for |d| < delta, delta (|d| - ½ delta) beyond; gradient clip(d, -delta, delta)."""
    x, y, w = promote(xp, input, target, weight)
    diff = x - y
    magnitude = xp.abs(diff)
    loss = xp.where(magnitude < delta, 0.5 * diff * diff, delta * (magnitude - 0.5 * delta))
    grad = xp.clip(diff, -delta, delta) if compute_grad else None
    # PyTorch 2.13 divides Huber's weighted mean by the element count (l1 and mse divide by sum(weight))
    return finish_elementwise(
        xp, loss, grad, weight=w, reduction=reduction, grad_output=grad_output, dtype=input.dtype, divisor=size(x)
    )


def smooth_l1_loss(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
    beta: float,
) -> tuple[Array, Array | None]:
    """½ d² / beta for |d| < beta, |d| - ½ beta beyond; gradient clip(d / beta, -1, 1). beta = 0 is L1."""
    if beta == 0:
        return l1_loss(
            input, target, xp=xp, reduction=reduction, grad_output=grad_output, compute_grad=compute_grad,
            weight=None,
        )
    x, y = promote(xp, input, target)
    diff = x - y
    magnitude = xp.abs(diff)
    loss = xp.where(magnitude < beta, 0.5 * diff * diff / beta, magnitude - 0.5 * beta)
    grad = xp.clip(diff / beta, -1.0, 1.0) if compute_grad else None
    return finish_elementwise(
        xp, loss, grad, weight=None, reduction=reduction, grad_output=grad_output, dtype=input.dtype
    )
