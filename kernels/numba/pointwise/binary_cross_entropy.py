"""Fused Numba kernel of ``binary_cross_entropy``: GENERATED from its spec in ``lossk/_losses/binary.py`` — do not edit.

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
from ..typed_math import cast_like, log1p_of, log_of

LOG_FLOOR = -100.0
BCE_GRAD_EPSILON = 9.999999960041972e-13


@njit(**ELEMENT)
def element(x, y):
    one = cast_like(1.0, x)
    floor = cast_like(LOG_FLOOR, x)
    log_p = max(log_of(x), floor)  # max that keeps NaN, as the reference's clip
    log_q = max(log1p_of(-x), floor)
    loss = -(y * log_p + (one - y) * log_q)
    variance = x * (one - x)
    epsilon = cast_like(BCE_GRAD_EPSILON, x)
    d1 = (x - y) / max(variance, epsilon)
    two = cast_like(2.0, x)
    d2 = (x * x - two * x * y + y) / (variance * variance) if variance > epsilon else one / epsilon
    return loss, d1, d2


@njit(**ELEMENT)
def hessian_floor(x, y):
    return cast_like(0.0, x)


@njit(**FUSED)
def kernel(x, y, weight, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.binary_cross_entropy, weighted, scaled and stored (see the module docstring)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i])
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i])
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)
