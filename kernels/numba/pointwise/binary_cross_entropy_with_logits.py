"""Fused Numba kernel of ``binary_cross_entropy_with_logits``: GENERATED from its spec in ``lossk/_losses/binary.py`` — do not edit.

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
from ..typed_math import cast_like, exp_of, log1p_unit_of


@njit(**ELEMENT)
def element(x, y, pos_weight):
    one = cast_like(1.0, x)
    zero = cast_like(0.0, x)
    decay = exp_of(-abs(x))
    softplus_neg = log1p_unit_of(decay) + (zero if x > zero else -x)
    reciprocal = one / (one + decay)
    sigmoid = reciprocal if x >= zero else decay * reciprocal
    log_weight = one + (pos_weight - one) * y  # pos_weight not given: 1, and log_weight is exactly 1
    loss = (one - y) * x + log_weight * softplus_neg
    return loss, log_weight * sigmoid - pos_weight * y, log_weight * (decay * reciprocal * reciprocal)


@njit(**ELEMENT)
def hessian_floor(x, y, pos_weight):
    return cast_like(0.0, x)


@njit(**FUSED)
def kernel(x, y, weight, pos_weight, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.binary_cross_entropy_with_logits, weighted, scaled and stored (see the module docstring)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i], option_at(pos_weight, i, cast_like(1.0, x[i])))
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i], option_at(pos_weight, i, cast_like(1.0, x[i])))
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)
