"""Fused Numba kernel of ``pinball_loss``: GENERATED from its spec in ``lossk/_losses/regression.py`` — do not edit.

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
from ..typed_math import cast_like


@njit(**ELEMENT)
def element(x, y, quantile):
    zero = cast_like(0.0, x)
    q = cast_like(quantile, x)
    u = y - x
    above = u >= zero
    loss = q * u if above else (q - cast_like(1.0, x)) * u
    d1 = -q if above else cast_like(1.0, x) - q
    return loss, d1, zero


@njit(**ELEMENT)
def hessian_floor(x, y, quantile):
    return cast_like(1.0, x)


@njit(**FUSED)
def kernel(x, y, weight, quantile, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.pinball_loss, weighted, scaled and stored (see the module docstring)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i], quantile)
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i], quantile)
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)
