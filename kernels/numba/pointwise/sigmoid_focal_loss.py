"""Fused Numba kernel of ``sigmoid_focal_loss``: GENERATED from its spec in ``lossk/_losses/binary.py`` — do not edit.

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
from ..typed_math import cast_like, exp_of, log1p_unit_of, log_of


@njit(**ELEMENT)
def _focal_terms_element(x, t, alpha, gamma):
    """``(scale, p, pq, ce, r)``: the focal factor ``a_t q^gamma``, ``p``, ``p (1 - p)``, BCE and ``r = q'/q``."""
    zero = cast_like(0.0, x)
    one = cast_like(1.0, x)
    two = cast_like(2.0, x)
    e = exp_of(-abs(x))
    inv = one / (one + e)
    l1pe = log1p_unit_of(e)
    p = inv if x >= zero else e * inv
    not_p = e * inv if x >= zero else inv  # 1 - p, not formed by subtraction
    pq = e * inv * inv
    relu = x if x > zero else zero
    ce = relu - x * t + l1pe
    if t == one:
        log_q = -(relu + l1pe)
        r = -p
    elif t == zero:
        log_q = -(relu - x + l1pe)
        r = not_p
    else:
        q = p * (one - t) + not_p * t
        log_q = log_of(q)
        r = (one - two * t) * pq / q
    a = cast_like(alpha, x)
    a_t = a * t + (one - a) * (one - t) if a >= zero else one
    return a_t * exp_of(cast_like(gamma, x) * log_q), p, pq, ce, r


@njit(**ELEMENT)
def element(x, t, alpha, gamma):
    one = cast_like(1.0, x)
    two = cast_like(2.0, x)
    g = cast_like(gamma, x)
    scale, p, pq, ce, r = _focal_terms_element(x, t, alpha, gamma)
    d1 = scale * ((p - t) + g * ce * r)
    d2 = scale * (pq + two * g * r * (p - t) + g * ce * r * (one - two * p) + g * (g - one) * ce * r * r)
    return scale * ce, d1, d2


@njit(**ELEMENT)
def hessian_floor(x, t, alpha, gamma):
    scale, _, pq, _, _ = _focal_terms_element(x, t, alpha, gamma)
    return scale * pq


@njit(**FUSED)
def kernel(x, y, weight, alpha, gamma, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.sigmoid_focal_loss, weighted, scaled and stored (see the module docstring)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i], alpha, gamma)
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i], alpha, gamma)
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)
