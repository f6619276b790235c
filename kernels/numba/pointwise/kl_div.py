"""Fused Numba kernel of ``kl_div``: GENERATED from its spec in ``lossk/_losses/divergence.py`` — do not edit.

Regenerate with ``python -m lossk._losses.generate``. ``element`` is the spec's scalar formulation,
``hessian_floor`` the floor of its surrogate Hessian, ``kernel`` the loop every elementwise loss shares
(``kernels/numba/elementwise.py`` documents its arguments); one ``kernel_*`` per combination of ``log_target``,
their values compiled in (``lossk._spec.kernel_name``).
Kernel sources inlined (``elementwise.py``, ``typed_math.py``, ``vecmath.py``), SHA-256:
e5b88122640b99dc9ff048b3e974e555cffd9fb2e15ff40c7bed9fd8dcaa17c3
"""

import numpy as np
from numba import njit, prange

from ..elementwise import (
    ELEMENT, FUSED, chunk_bounds, chunk_count, chunk_losses, chunk_sum, emit, option_at, sum_in_order,
)
from ..typed_math import cast_like, exp_of, log_of


@njit(**ELEMENT)
def element(x, y, log_target):
    if log_target:
        probability = exp_of(y)
        loss = probability * (y - x)
    else:
        probability = y
        loss = y * log_of(y if y != 0 else cast_like(1.0, y)) - y * x
    return loss, -probability, cast_like(0.0, x)


@njit(**ELEMENT)
def hessian_floor(x, y, log_target):
    return cast_like(0.0, x)


@njit(**FUSED)
def kernel_not_log_target(x, y, weight, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.kl_div, weighted, scaled and stored (log_target=False)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i], False)
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i], False)
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)


@njit(**FUSED)
def kernel_log_target(x, y, weight, scale, upstream, grad, hess, surrogate, loss_out):
    """Loss, d1 and d2 of lossk.kl_div, weighted, scaled and stored (log_target=True)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i], True)
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i], True)
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)
