"""Reference binary classification losses: BCE on probabilities and on logits (see ``lossk.binary``)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._array_api import Array, size
from ._elementwise import finish_elementwise, promote

LOG_FLOOR = -100.0
"""PyTorch clamps BCE's logarithms at -100 so that a probability of exactly 0 or 1 gives a finite loss."""

BCE_GRAD_EPSILON = 9.999999960041972e-13
"""PyTorch's floor on x (1 - x) in the BCE gradient's denominator: 1e-12 rounded to float32, as PyTorch holds it."""


def binary_cross_entropy(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
    weight: Array | None,
) -> tuple[Array, Array | None]:
    """-w [y max(log x, -100) + (1 - y) max(log(1 - x), -100)]; gradient w (x - y) / max(x (1 - x), 1e-12)."""
    x, y, w = promote(xp, input, target, weight)
    loss = -(y * xp.clip(xp.log(x), LOG_FLOOR, None) + (1 - y) * xp.clip(xp.log1p(-x), LOG_FLOOR, None))
    grad = (x - y) / xp.clip(x * (1 - x), BCE_GRAD_EPSILON, None) if compute_grad else None
    return finish_elementwise(
        xp, loss, grad, weight=w, reduction=reduction, grad_output=grad_output, dtype=input.dtype,
        divisor=size(x),
    )


def binary_cross_entropy_with_logits(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
    weight: Array | None, pos_weight: Array | None,
) -> tuple[Array, Array | None]:
    """(1 - y) x + l softplus(-x) with l = 1 + (p - 1) y; gradient l sigmoid(x) - p y (p = pos_weight or 1).

    softplus(-x) = log1p(exp(-|x|)) + max(-x, 0) never overflows, and sigmoid is evaluated from the same
    exp(-|x|), so logits of ±1e4 give finite losses and exact 0/1 gradients.
    """
    x, y, w, p = promote(xp, input, target, weight, pos_weight)
    decay = xp.exp(-xp.abs(x))
    softplus_neg = xp.log1p(decay) + xp.clip(-x, 0, None)
    log_weight = 1.0 if p is None else 1 + (p - 1) * y
    loss = (1 - y) * x + log_weight * softplus_neg
    grad = None
    if compute_grad:
        sigmoid = xp.where(x >= 0, 1 / (1 + decay), decay / (1 + decay))
        grad = log_weight * sigmoid - (y if p is None else p * y)
    return finish_elementwise(
        xp, loss, grad, weight=w, reduction=reduction, grad_output=grad_output, dtype=input.dtype,
        divisor=size(x),
    )
