"""Reduce at the edge: losses compute per-element (or per-row) values; this module applies ``reduction``.

The forward reduction and the scale it puts on the backward pass are written side by side:
``mean`` divides the sum by ``divisor`` (the element count, the sum of the weights, or the batch size),
so every element's gradient is multiplied by ``grad_output / divisor``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ._array_api import Array, as_array

Divisor = Any
"""A Python number or a 0-d array: what 'mean' divides the sum by."""


def apply_reduction(xp: ModuleType, loss: Array, reduction: str, divisor: Divisor) -> Array:
    """``loss`` unreduced for 'none', its sum for 'sum', its sum over ``divisor`` otherwise."""
    # as_array: NumPy gives NumPy scalars for 0-d results; lossk always returns arrays of the input's library
    if reduction == "none":
        return as_array(xp, loss)
    total = xp.sum(loss)
    return as_array(xp, total if reduction == "sum" else total / divisor)


def upstream_scale(reduction: str, grad_output: Any, divisor: Divisor) -> Any:
    """What each element's local gradient is multiplied by: d reduced / d loss_i times grad_output.

    ``grad_output`` is ``None`` (ones), a scalar (mean and sum) or an array of the loss's shape ('none').
    """
    upstream = 1.0 if grad_output is None else grad_output
    if reduction in ("none", "sum"):
        return upstream
    if isinstance(divisor, (int, float)) and divisor == 0:  # an empty input: its gradient is empty too
        return upstream * float("nan")
    return upstream / divisor


def compute_dtype(xp: ModuleType, dtype: Any) -> Any:
    """float16 and bfloat16 compute in float32; float32 and float64 compute in themselves."""
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype
