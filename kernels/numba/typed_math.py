"""Math in the precision of the argument, for kernels written once for float32 and float64.

Numba types ``float32 * 0.5`` as float64 (a Python float is a float64), which would silently turn a float32
kernel into a float64 one; ``cast_like(0.5, x)`` is ``0.5`` in ``x``'s type and folds to a constant.
``exp_of`` / ``expm1_of`` / ``hypot_of`` / ``log_of`` / ``log1p_of`` / ``log1p_unit_of`` / ``log1p_bounded_of``
/ ``tanh_of`` take the vectorisable float32 functions of :mod:`.vecmath` for float32 and libm (``math.exp`` ...)
for float64, where accuracy comes first. A libm call inside a kernel's loop is one scalar call per element and stops
LLVM from vectorising the whole loop, not only that call.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from .vecmath import exp32, expm1_32, hypot32, log1p32, log1p_bounded32, log1p_unit32, log32, tanh32


def cast_like(value, like):
    """``value`` converted to the floating type of ``like`` (inside Numba kernels)."""
    return type(like)(value)


def exp_of(x):
    """e^x in the precision of ``x`` (inside Numba kernels)."""
    return math.exp(x)


def expm1_of(x):
    """e^x - 1 in the precision of ``x`` (inside Numba kernels)."""
    return math.expm1(x)


def hypot_of(a, b):
    """sqrt(a^2 + b^2) in the precision of ``a``, without overflow of the squares (inside Numba kernels)."""
    return math.hypot(a, b)


def log_of(x):
    """log x in the precision of ``x`` (inside Numba kernels); -inf at 0, NaN below."""
    return math.log(x)


def log1p_of(x):
    """log(1 + x) in the precision of ``x`` (inside Numba kernels)."""
    return math.log1p(x)


def log1p_unit_of(x):
    """log(1 + x) for ``x`` in [0, 1], in the precision of ``x``: float32 without division (inside Numba kernels)."""
    return math.log1p(x)


def log1p_bounded_of(x):
    """log(1 + x) for ``x`` in [0, 4.65], in the precision of ``x``: float32 without division (inside Numba kernels)."""
    return math.log1p(x)


def tanh_of(x):
    """tanh x in the precision of ``x`` (inside Numba kernels)."""
    return math.tanh(x)


@overload(cast_like)
def _cast_like(value, like):
    if like == types.float32:
        return lambda value, like: np.float32(value)
    if like == types.float64:
        return lambda value, like: np.float64(value)
    return None


def _by_precision(float32_function, float64_function):
    """An overload implementation choosing ``float32_function`` or ``float64_function`` by the argument type."""

    def implementation(x):
        if x == types.float32:
            return lambda x: float32_function(x)
        if x == types.float64:
            return lambda x: float64_function(x)
        return None

    return implementation


overload(exp_of)(_by_precision(exp32, math.exp))  # libm inside Numba: C semantics, no Python errors
overload(log_of)(_by_precision(log32, math.log))
overload(log1p_of)(_by_precision(log1p32, math.log1p))
overload(log1p_unit_of)(_by_precision(log1p_unit32, math.log1p))
overload(log1p_bounded_of)(_by_precision(log1p_bounded32, math.log1p))
overload(tanh_of)(_by_precision(tanh32, math.tanh))
overload(expm1_of)(_by_precision(expm1_32, math.expm1))


@overload(hypot_of)
def _hypot_of(a, b):
    if a == types.float32:
        return lambda a, b: hypot32(a, np.float32(b))
    if a == types.float64:
        return lambda a, b: math.hypot(a, np.float64(b))
    return None
