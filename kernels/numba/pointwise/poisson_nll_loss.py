"""Fused Numba kernel of ``poisson_nll_loss``: GENERATED from its spec in ``lossk/_losses/glm.py`` — do not edit.

Regenerate with ``python -m lossk._losses.generate``. ``element`` is the spec's scalar formulation,
``kernel`` the loop every elementwise loss shares (``kernels/numba/elementwise.py`` documents its arguments).
Kernel sources inlined (``elementwise.py``, ``typed_math.py``, ``vecmath.py``), SHA-256:
7a4666f078b8d71cb0b834cfd8e0d93c290c706ceb12ad2654c3f264144c99e4
"""

import numpy as np
from numba import njit, prange

from ..elementwise import ELEMENT, FUSED, chunk_bounds, chunk_count, emit, option_at, sum_in_order
from ..typed_math import cast_like, exp_of, log_of

TWO_PI = 6.283185307179586


@njit(**ELEMENT)
def element(x, y, log_input, full, eps):
    one = cast_like(1.0, x)
    if log_input:
        e = exp_of(x)
        loss = e - y * x
        d1 = e - y
        d2 = e
    else:
        s = x + cast_like(eps, x)
        loss = x - y * log_of(s)
        d1 = one - y / s
        d2 = y / (s * s)
    if full and not (y <= one):
        loss += y * log_of(y) - y + cast_like(0.5, x) * log_of(cast_like(TWO_PI, x) * y)
    return loss, d1, d2

@njit(**FUSED)
def kernel(x, y, weight, log_input, full, eps, scale, upstream, grad, hess, loss_out):
    """Loss, d1 and d2 of lossk.poisson_nll_loss, weighted, scaled and stored (see the module docstring)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i], log_input, full, eps)
            total += emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess, loss_out)
        partial[c] = total
    return sum_in_order(partial)
