"""Shared steps of the elementwise losses: dtype promotion in, weighting and reduction out."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._array_api import Array, size
from .._reduction import apply_reduction, compute_dtype, upstream_scale


def promote(xp: ModuleType, input: Array, *others: Array | None) -> list[Array | None]:
    """``input`` and ``others`` in the compute dtype (float16 and bfloat16 compute in float32)."""
    dtype = compute_dtype(xp, input.dtype)
    return [None if a is None else xp.astype(a, dtype) for a in (input, *others)]


def finish_elementwise(
    xp: ModuleType,
    loss: Array,
    local_grad: Array | None,
    *,
    weight: Array | None,
    reduction: str,
    grad_output: Any,
    dtype: Any,
    divisor: Any = None,
) -> tuple[Array, Array | None]:
    """Weight, reduce and cast back to ``dtype``: ``(reduce(weight * loss), weight * local_grad * upstream)``.

    The mean divides by ``divisor`` when given, else by the sum of the weights when there are weights,
    else by the element count.
    """
    if weight is not None:
        loss = weight * loss
        local_grad = None if local_grad is None else weight * local_grad
    if divisor is None:
        divisor = size(loss) if weight is None else xp.sum(weight)
    value = xp.astype(apply_reduction(xp, loss, reduction, divisor), dtype)
    if local_grad is None:
        return value, None
    # asarray: a 0-d NumPy input gives a NumPy scalar here
    return value, xp.asarray(xp.astype(local_grad * upstream_scale(reduction, grad_output, divisor), dtype))
