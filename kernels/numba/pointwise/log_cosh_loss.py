"""Fused Numba kernel of ``log_cosh_loss``: GENERATED from its spec in ``lossk/_losses/regression.py`` — do not edit.

Regenerate with ``python -m lossk._losses.generate``. ``element`` is the spec's scalar formulation,
``kernel`` the loop every elementwise loss shares (``kernels/numba/elementwise.py`` documents its arguments).
Kernel sources inlined (``elementwise.py``, ``typed_math.py``, ``vecmath.py``), SHA-256:
afb30ef66a050383d91640319fd4d43b2d373fcb4263ed03dc2ffcb2bd6db147
"""

import numpy as np
from numba import njit, prange

from ..elementwise import ELEMENT, FUSED, chunk_bounds, chunk_count, emit, option_at, sum_in_order
from ..typed_math import cast_like, exp_of, expm1_of, log1p_of, log1p_unit_of, tanh_of

LOG_2 = 0.6931471805599453


@njit(**ELEMENT)
def element(x, y):
    d = x - y
    magnitude = abs(d)
    two = cast_like(2.0, d)
    if magnitude < two:
        w = expm1_of(-magnitude)
        loss = log1p_of(w * w / (two * (cast_like(1.0, d) + w)))
    else:  # NaN lands here
        loss = magnitude + log1p_unit_of(exp_of(-two * magnitude)) - cast_like(LOG_2, d)
    d1 = tanh_of(d)
    return loss, d1, cast_like(1.0, d) - d1 * d1

@njit(**FUSED)
def kernel(x, y, weight, scale, upstream, grad, hess, loss_out):
    """Loss, d1 and d2 of lossk.log_cosh_loss, weighted, scaled and stored (see the module docstring)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i])
            total += emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess, loss_out)
        partial[c] = total
    return sum_in_order(partial)
