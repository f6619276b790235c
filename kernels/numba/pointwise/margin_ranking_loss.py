"""Fused Numba kernel of ``margin_ranking_loss``: GENERATED from its spec in ``lossk/_losses/multi_input.py`` — do not edit.

Regenerate with ``python -m lossk._losses.generate``. ``element`` is the spec's scalar formulation, ``kernel`` the
loop every elementwise loss shares (``kernels/numba/elementwise.py`` documents its arguments).
Kernel sources inlined (``elementwise.py``, ``typed_math.py``, ``vecmath.py``), SHA-256:
e5b88122640b99dc9ff048b3e974e555cffd9fb2e15ff40c7bed9fd8dcaa17c3
"""

import numpy as np
from numba import njit, prange

from ..elementwise import (
    ELEMENT, FUSED, chunk_bounds, chunk_count, chunk_losses, chunk_sum, emit, emit_derivative, option_at, sum_in_order,
)
from ..typed_math import cast_like


@njit(**ELEMENT)
def element(x1, x2, y, margin):
    zero = cast_like(0.0, x1)
    one = cast_like(1.0, x1)
    h = -y * (x1 - x2) + cast_like(margin, x1)
    loss = zero if h < zero else h
    g = one if h >= zero else zero
    return loss, -y * g, y * g, zero, zero


@njit(**FUSED)
def kernel(x0, x1, x2, weight, margin, scale, upstream, grad_0, grad_1, hess_0, hess_1, loss_out):
    """Loss and the derivatives for input1, input2 of lossk.margin_ranking_loss, weighted, scaled and stored."""
    n = x0.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x0)
        for i in range(start, stop):
            loss, d1_0, d1_1, d2_0, d2_1 = element(x0[i], x1[i], x2[i], margin)
            losses[i - start] = emit(i, x0, loss, d1_0, d2_0, weight, scale, upstream, grad_0, hess_0)
            emit_derivative(i, d1_1, d2_1, weight, scale, upstream, grad_1, hess_1)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)
