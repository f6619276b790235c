"""Fused Numba kernel of ``poisson_nll_loss``: GENERATED from its spec in ``lossk/_losses/glm.py`` — do not edit.

Regenerate with ``python -m lossk._losses.generate``. ``element`` is the spec's scalar formulation,
``hessian_floor`` the floor of its surrogate Hessian, ``kernel`` the loop every elementwise loss shares
(``kernels/numba/elementwise.py`` documents its arguments); one ``kernel_*`` per combination of ``log_input`` and
``full``, their values compiled in (``lossk._spec.kernel_name``).
Kernel sources inlined (``elementwise.py``, ``typed_math.py``, ``vecmath.py``), SHA-256:
e5b88122640b99dc9ff048b3e974e555cffd9fb2e15ff40c7bed9fd8dcaa17c3
"""

import numpy as np
from numba import njit, prange

from ..elementwise import (
    ELEMENT, FUSED, chunk_bounds, chunk_count, chunk_losses, chunk_sum, emit, option_at, sum_in_order,
)
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


@njit(**ELEMENT)
def hessian_floor(x, y, log_input, full, eps):
    return cast_like(0.0, x)


@njit(**FUSED)
def kernel_log_input_not_full(x, y, weight, eps, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.poisson_nll_loss, weighted, scaled and stored (log_input=True, full=False)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i], True, False, eps)
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i], True, False, eps)
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)


@njit(**FUSED)
def kernel_log_input_full(x, y, weight, eps, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.poisson_nll_loss, weighted, scaled and stored (log_input=True, full=True)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i], True, True, eps)
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i], True, True, eps)
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)


@njit(**FUSED)
def kernel_not_log_input_not_full(x, y, weight, eps, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.poisson_nll_loss, weighted, scaled and stored (log_input=False, full=False)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i], False, False, eps)
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i], False, False, eps)
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)


@njit(**FUSED)
def kernel_not_log_input_full(x, y, weight, eps, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.poisson_nll_loss, weighted, scaled and stored (log_input=False, full=True)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i], False, True, eps)
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i], False, True, eps)
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)
