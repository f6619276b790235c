"""Fused Numba kernel of ``gaussian_nll_loss``: GENERATED from its spec in ``lossk/_losses/multi_input.py`` — do not edit.

Regenerate with ``python -m lossk._losses.generate``. ``element`` is the spec's scalar formulation, ``kernel`` the
loop every elementwise loss shares (``kernels/numba/elementwise.py`` documents its arguments); one ``kernel_*`` per
combination of ``full``, their values compiled in (``lossk._spec.kernel_name``).
Kernel sources inlined (``elementwise.py``, ``typed_math.py``, ``vecmath.py``), SHA-256:
e5b88122640b99dc9ff048b3e974e555cffd9fb2e15ff40c7bed9fd8dcaa17c3
"""

import numpy as np
from numba import njit, prange

from ..elementwise import (
    ELEMENT, FUSED, chunk_bounds, chunk_count, chunk_losses, chunk_sum, emit, emit_derivative, option_at, sum_in_order,
)
from ..typed_math import cast_like, log_of

HALF_LOG_2PI = 0.9189385332046727


@njit(**ELEMENT)
def element(x, y, v, full, eps):
    half = cast_like(0.5, x)
    one = cast_like(1.0, x)
    floor = cast_like(eps, x)
    vc = floor if v < floor else v
    d = x - y
    q = d * d / vc
    loss = half * (log_of(vc) + q) + (cast_like(HALF_LOG_2PI, x) if full else cast_like(0.0, x))
    return loss, d / vc, half * (one - q) / vc, one / vc, (q - half) / (vc * vc)


@njit(**FUSED)
def kernel_not_full(x0, x1, x2, weight, eps, scale, upstream, grad_0, grad_1, hess_0, hess_1, loss_out):
    """Loss and the derivatives for input, var of lossk.gaussian_nll_loss, weighted, scaled and stored (full=False)."""
    n = x0.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x0)
        for i in range(start, stop):
            loss, d1_0, d1_1, d2_0, d2_1 = element(x0[i], x1[i], x2[i], False, eps)
            losses[i - start] = emit(i, x0, loss, d1_0, d2_0, weight, scale, upstream, grad_0, hess_0)
            emit_derivative(i, d1_1, d2_1, weight, scale, upstream, grad_1, hess_1)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)


@njit(**FUSED)
def kernel_full(x0, x1, x2, weight, eps, scale, upstream, grad_0, grad_1, hess_0, hess_1, loss_out):
    """Loss and the derivatives for input, var of lossk.gaussian_nll_loss, weighted, scaled and stored (full=True)."""
    n = x0.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x0)
        for i in range(start, stop):
            loss, d1_0, d1_1, d2_0, d2_1 = element(x0[i], x1[i], x2[i], True, eps)
            losses[i - start] = emit(i, x0, loss, d1_0, d2_0, weight, scale, upstream, grad_0, hess_0)
            emit_derivative(i, d1_1, d2_1, weight, scale, upstream, grad_1, hess_1)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)
