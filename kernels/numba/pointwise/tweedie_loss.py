"""Fused Numba kernel of ``tweedie_loss``: GENERATED from its spec in ``lossk/_losses/glm.py`` — do not edit.

Regenerate with ``python -m lossk._losses.generate``. ``element`` is the spec's scalar formulation,
``hessian_floor`` the floor of its surrogate Hessian, ``kernel`` the loop every elementwise loss shares
(``kernels/numba/elementwise.py`` documents its arguments).
Kernel sources inlined (``elementwise.py``, ``typed_math.py``, ``vecmath.py``), SHA-256:
e5b88122640b99dc9ff048b3e974e555cffd9fb2e15ff40c7bed9fd8dcaa17c3
"""

import numpy as np
from numba import njit, prange

from ..elementwise import (
    ELEMENT, FUSED, chunk_bounds, chunk_count, chunk_losses, chunk_sum, emit, option_at, sum_in_order,
)
from ..typed_math import cast_like, exp_of


@njit(**ELEMENT)
def element(x, y, power):
    one = cast_like(1.0, x)
    two = cast_like(2.0, x)
    if power == 0.0:
        e = exp_of(x)
        return cast_like(0.5, x) * (e - y) * (e - y), e * (e - y), e * (two * e - y)
    if power == 1.0:
        e = exp_of(x)
        return e - y * x, e - y, e
    if power == 2.0:
        e = exp_of(-x)
        return x + y * e, one - y * e, y * e
    a = cast_like(1.0 - power, x)
    b = cast_like(2.0 - power, x)
    e1 = exp_of(a * x)
    e2 = exp_of(b * x)
    return e2 / b - y * e1 / a, e2 - y * e1, b * e2 - a * y * e1


@njit(**ELEMENT)
def hessian_floor(x, y, power):
    zero = cast_like(0.0, x)
    if power == 0.0:
        e = exp_of(x)
        return e * e
    if power == 1.0:
        return zero
    if power == 2.0:
        return zero
    b = cast_like(2.0 - power, x)
    e2 = exp_of(b * x)
    return e2 if b < zero else zero


@njit(**FUSED)
def kernel(x, y, weight, power, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.tweedie_loss, weighted, scaled and stored (see the module docstring)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i], power)
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i], power)
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)
