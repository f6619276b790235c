"""Fused Numba kernel of ``log_cosh_loss``: GENERATED from its spec in ``lossk/_losses/regression.py`` — do not edit.

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
from ..typed_math import cast_like, expm1_of, log1p_bounded_of

LOG_2 = 0.6931471805599453


@njit(**ELEMENT)
def element(x, y):
    # the reference's formulation with one expm1 for everything: e^-2|d| = v^2, and tanh |d| = (1 - v^2) / (1 + v^2)
    # with 1 - v^2 = -w (2 + w), no cancellation; one log1p for both branches, of u in [0, cosh 2 - 1 = 2.77]
    d = x - y
    magnitude = abs(d)
    one = cast_like(1.0, d)
    two = cast_like(2.0, d)
    w = expm1_of(-magnitude)
    v = one + w
    small = magnitude < two
    u = w * w / (two * v) if small else v * v  # NaN lands in v * v
    loss = log1p_bounded_of(u) + (cast_like(0.0, d) if small else magnitude - cast_like(LOG_2, d))
    tanh_magnitude = -w * (two + w) / (one + v * v)
    d1 = -tanh_magnitude if d < cast_like(0.0, d) else tanh_magnitude
    return loss, d1, one - d1 * d1


@njit(**ELEMENT)
def hessian_floor(x, y):
    return cast_like(0.0, x)


@njit(**FUSED)
def kernel(x, y, weight, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.log_cosh_loss, weighted, scaled and stored (see the module docstring)."""
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
