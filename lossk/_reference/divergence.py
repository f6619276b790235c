"""Reference Kullback-Leibler divergence (see ``lossk.divergence``)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._array_api import Array
from ._elementwise import finish_elementwise, promote


def kl_div(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
    log_target: bool,
) -> tuple[Array, Array | None]:
    """y (log y - x), 0 where y = 0 (``xlogy``); with log_target, exp(y) (y - x). Gradient -y or -exp(y)."""
    x, y = promote(xp, input, target)
    if log_target:
        probability = xp.exp(y)
        loss = probability * (y - x)
    else:
        probability = y
        y_log_y = y * xp.log(xp.where(y == 0, xp.ones_like(y), y))
        loss = y_log_y - y * x
    grad = -probability if compute_grad else None
    divisor = None
    if reduction == "batchmean":
        reduction, divisor = "mean", (x.shape[0] if x.ndim else 1)
    return finish_elementwise(
        xp, loss, grad, weight=None, reduction=reduction, grad_output=grad_output, dtype=input.dtype,
        divisor=divisor,
    )
