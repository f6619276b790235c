"""Reduce at the edge: losses compute per-element (or per-row) values; this module applies ``reduction``.

The forward reduction and the scale it puts on the backward pass are written side by side:
``mean`` divides the sum by ``divisor`` (the element count, the sum of the weights, or the batch size),
so every element's gradient is multiplied by ``grad_output / divisor``.

A mean over nothing (an empty input, every target ignored) divides by 0: the values are IEEE's (NaN for
0 / 0, ±inf for x / ±0), computed without evaluating the division by zero, because a lazy library (Dask)
computes after :func:`~lossk._array_api.ieee_arithmetic` has closed and NumPy would warn inside its graph.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat

from ._array_api import Array, as_array

Divisor = Any
"""A Python number or a 0-d array: what 'mean' divides the sum by."""


def apply_reduction(xp: ModuleType, loss: Array, reduction: str, divisor: Divisor) -> Array:
    """``loss`` unreduced for 'none', its sum for 'sum', its sum over ``divisor`` otherwise."""
    # as_array: NumPy gives NumPy scalars for 0-d results; lossk always returns arrays of the input's library
    if reduction == "none":
        return as_array(xp, loss)
    total = xp.sum(loss)
    return as_array(xp, total if reduction == "sum" else divide(total, divisor))


def upstream_scale(reduction: str, grad_output: Any, divisor: Divisor) -> Any:
    """What each element's local gradient is multiplied by: d reduced / d loss_i times grad_output.

    ``grad_output`` is ``None`` (ones), a scalar (mean and sum) or an array of the loss's shape ('none').
    """
    upstream = 1.0 if grad_output is None else grad_output
    if reduction in ("none", "sum"):
        return upstream
    return divide(upstream, divisor)


def divide(numerator: Any, divisor: Divisor) -> Any:
    """``numerator / divisor`` (a number or a 0-d array) with IEEE's value, never evaluating a division by 0.

    A number divisor is 0 only for an empty input (its sum is 0, its gradient empty): NaN. A 0-d array divisor
    is divided where it is not 0; where it is, the quotient is NaN for a numerator of 0 or NaN and otherwise
    ±inf, the product of the numerator's sign and the zero's.
    """
    if isinstance(divisor, (int, float)):
        return numerator * float("nan") if divisor == 0 else numerator / divisor
    xp = array_api_compat.array_namespace(divisor)
    zero = divisor == 0
    quotient = numerator / xp.where(zero, xp.ones_like(divisor), divisor)
    sign_of_zero = xp.copysign(xp.ones_like(divisor), divisor)
    infinite = xp.copysign(xp.full_like(quotient, float("inf")), quotient) * sign_of_zero
    undefined = (quotient == 0) | xp.isnan(quotient)
    by_zero = xp.where(undefined, xp.full_like(quotient, float("nan")), infinite)
    return xp.where(zero, by_zero, quotient)


def compute_dtype(xp: ModuleType, dtype: Any) -> Any:
    """float16 and bfloat16 compute in float32; float32 and float64 compute in themselves."""
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype
