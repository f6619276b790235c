"""Fused Numba kernel of ``margin_ranking_loss``: GENERATED from its spec in ``lossk/_losses/multi_input.py`` — do not edit.

Regenerate with ``python -m lossk._losses.generate``. ``element`` is the spec's scalar formulation, ``kernel`` the
loop every elementwise loss shares (``kernels/numba/elementwise.py`` documents its arguments).
Kernel sources inlined (``elementwise.py``, ``typed_math.py``, ``vecmath.py``), SHA-256:
f251105ab807925e835e9c456b55a3bb4abaf87dc2dbdbc42a94009fb561f11a
"""

import numpy as np
from numba import njit, prange

from ..elementwise import ELEMENT, FUSED, chunk_bounds, chunk_count, emit, emit_derivative, option_at, sum_in_order
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
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            loss, d1_0, d1_1, d2_0, d2_1 = element(x0[i], x1[i], x2[i], margin)
            total += emit(i, x0, loss, d1_0, d2_0, weight, scale, upstream, grad_0, hess_0, loss_out)
            emit_derivative(i, d1_1, d2_1, weight, scale, upstream, grad_1, hess_1)
        partial[c] = total
    return sum_in_order(partial)
