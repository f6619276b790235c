"""The helpers a loss's scalar formulation (``ElementwiseLoss.element``) may call, in plain Python.

The same names are Numba-overloaded in ``lossk._kernels.numba.typed_math`` (float32 arithmetic stays
float32, with vectorisable exp/log/tanh), which the generated kernel modules import instead; here they
run on Python floats, so that a scalar formulation can be checked against its array formulation without
Numba. ``max``/``min``/``abs`` and ``a if c else b`` are Python's (Numba lowers them to selects).
"""

from __future__ import annotations

import math

__all__ = [
    "cast_like", "exp_of", "expm1_of", "hypot_of", "log1p_bounded_of", "log1p_of", "log1p_unit_of", "log_of", "tanh_of",
]


def cast_like(value, like):
    """``value`` converted to the floating type of ``like`` (a constant in the element's precision)."""
    return type(like)(value)


def exp_of(x):
    """e^x in the precision of ``x``."""
    return _ieee(math.exp, x)


def expm1_of(x):
    """e^x - 1 in the precision of ``x`` (no cancellation near 0)."""
    return _ieee(math.expm1, x)


def hypot_of(a, b):
    """sqrt(a^2 + b^2) in the precision of ``a``, without overflow or underflow of the squares."""
    return type(a)(math.hypot(a, b))


def log_of(x):
    """log x in the precision of ``x``; -inf at 0, NaN below."""
    return _ieee(math.log, x)


def log1p_of(x):
    """log(1 + x) in the precision of ``x``."""
    return _ieee(math.log1p, x)


def log1p_bounded_of(x):
    """log(1 + x) for ``x`` in [0, 4.65], in the precision of ``x``."""
    return _ieee(math.log1p, x)


def log1p_unit_of(x):
    """log(1 + x) for ``x`` in [0, 1], in the precision of ``x``."""
    return _ieee(math.log1p, x)


def tanh_of(x):
    """tanh x in the precision of ``x``."""
    return _ieee(math.tanh, x)


def _ieee(function, x):
    """``function(x)`` with C's special values where Python raises (log 0 = -inf, exp overflow = inf)."""
    try:
        return type(x)(function(x))
    except OverflowError:
        return type(x)(math.inf)
    except ValueError:
        if function in (math.log, math.log1p) and x == (0.0 if function is math.log else -1.0):
            return type(x)(-math.inf)
        return type(x)(math.nan)
