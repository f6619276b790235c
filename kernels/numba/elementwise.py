"""Fused elementwise losses: loss and gradient in one pass over memory, parallel over fixed chunks.

Every kernel takes flat contiguous 1-D arrays of one floating dtype (float32 or float64; the host adapter
converts float16 and mixed dtypes) and has the signature::

    kernel(x, y, *operands, scale, upstream, grad, loss_out) -> float64 sum of the per-element losses

``operands`` are the loss's options (a weight array or ``None``, delta, ...). Element ``i``'s gradient,
the local derivative times its weight, is multiplied by ``upstream[i]`` when ``upstream`` is an array
(reduction 'none') or by the scalar ``scale`` (grad_output / divisor for 'mean', grad_output for 'sum')
and written to ``grad[i]``; ``grad=None`` skips the backward pass. ``loss_out`` receives the unreduced,
weighted loss (reduction 'none'), or is ``None`` and the kernel returns the sum. Passing ``None`` makes
Numba compile a specialisation without the corresponding work, so each variant stays a straight loop.

``grad=True`` writes the gradient over ``x`` (in-place). Passing ``x`` itself as ``grad`` would be correct
too (element ``i`` is read before it is written) but slow: LLVM cannot prove that two array arguments
are the same buffer, finds that they overlap at run time and falls back to its scalar loop; written
through ``x``, the store's dependence on the load is visibly at distance 0 and the loop vectorises.

Determinism: the elements are cut into chunks of ``CHUNK`` (whatever the thread count), each chunk sums
its losses in float64 in a fixed order, and the chunk sums are added in chunk order, so the loss is
bit-identical for any ``NUMBA_NUM_THREADS``. Formulas are those of ``lossk._reference`` (the specification).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .typed_math import cast_like, exp_of, log1p_of, log1p_unit_of, log_of

CHUNK = 1 << 14
"""Elements per parallel work item (64 KiB of float32 per array): fixed, so that sums are reproducible."""

KERNEL_FASTMATH = {"reassoc", "contract"}
"""``reassoc`` lets LLVM vectorise the float64 sums (the order then depends on the code, not the threads);
``contract`` fuses multiply-adds. No ``nnan``/``ninf``: NaN and inf propagate as in the reference."""

LOG_FLOOR = -100.0
"""PyTorch's clamp on BCE's logarithms (as in ``lossk._reference.binary``)."""

BCE_GRAD_EPSILON = 9.999999960041972e-13
"""PyTorch's floor on x (1 - x) in the BCE gradient's denominator: 1e-12 rounded to float32, as PyTorch holds it."""

_FUSED = {"parallel": True, "fastmath": KERNEL_FASTMATH, "error_model": "numpy", "cache": True}


@njit(cache=True)
def chunk_count(n):
    """How many ``CHUNK``-element work items cover ``n`` elements."""
    return (n + CHUNK - 1) // CHUNK


@njit(inline="always")
def chunk_bounds(c, n):
    """``[start, stop)`` of chunk ``c`` as unsigned integers.

    A signed index gets Numba's negative-index wraparound, a select per access that LLVM cannot see through:
    the loads and stores become gathers and scatters, three times slower (measured on MSE).
    """
    start = c * CHUNK
    return np.uint64(start), np.uint64(min(start + CHUNK, n))


@njit(cache=True)
def sum_in_order(partial):
    """The chunk sums added in chunk order: the same result for any thread count."""
    total = 0.0
    for c in range(partial.size):
        total += partial[c]
    return total


def store_gradient(grad, x, i, value):
    """``grad[i] = value``; over ``x[i]`` when ``grad`` is True (in-place); nothing when ``grad`` is None."""


@overload(store_gradient)
def _store_gradient(grad, x, i, value):
    if grad is types.none:
        return lambda grad, x, i, value: None
    if isinstance(grad, types.Boolean):

        def store_over_input(grad, x, i, value):
            x[i] = value

        return store_over_input

    def store(grad, x, i, value):
        grad[i] = value

    return store


@njit(inline="always")
def emit(i, x, loss, local_grad, weight, scale, upstream, grad, loss_out):
    """Weight element ``i``'s loss and gradient, store them; returns what the sum gets (0 under 'none')."""
    if weight is not None:
        loss = loss * weight[i]
        local_grad = local_grad * weight[i]
    if grad is not None:
        if upstream is not None:
            local_grad = local_grad * upstream[i]
        else:
            local_grad = local_grad * cast_like(scale, local_grad)
        store_gradient(grad, x, i, local_grad)
    if loss_out is not None:
        loss_out[i] = loss
        return 0.0
    return np.float64(loss)


@njit(**_FUSED)
def weight_sum(weight):
    """sum(weight) in float64, chunked like the kernels: the divisor of a weighted 'mean'."""
    n = weight.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            total += np.float64(weight[i])
        partial[c] = total
    return sum_in_order(partial)


@njit(**_FUSED)
def mse_loss(x, y, weight, scale, upstream, grad, loss_out):
    """w (x - y)^2; gradient 2 w (x - y)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            diff = x[i] - y[i]
            total += emit(i, x, diff * diff, cast_like(2.0, diff) * diff, weight, scale, upstream, grad, loss_out)
        partial[c] = total
    return sum_in_order(partial)


@njit(**_FUSED)
def l1_loss(x, y, weight, scale, upstream, grad, loss_out):
    """w |x - y|; gradient w sign(x - y), 0 at a zero residual and (as in PyTorch) at a NaN one."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            diff = x[i] - y[i]
            one = cast_like(1.0, diff)
            sign = one if diff > 0 else (-one if diff < 0 else cast_like(0.0, diff))
            total += emit(i, x, abs(diff), sign, weight, scale, upstream, grad, loss_out)
        partial[c] = total
    return sum_in_order(partial)


@njit(**_FUSED)
def huber_loss(x, y, weight, delta, coefficient, scale, upstream, grad, loss_out):
    """coefficient w (½ d² if |d| < delta else delta (|d| - ½ delta)); gradient coefficient w clip(d, ±delta).

    Huber is coefficient 1; smooth L1 with beta is Huber with delta = beta and coefficient 1 / beta.
    """
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            diff = x[i] - y[i]
            bound = cast_like(delta, diff)
            factor = cast_like(coefficient, diff)
            half = cast_like(0.5, diff)
            magnitude = abs(diff)
            loss = half * diff * diff if magnitude < bound else bound * (magnitude - half * bound)
            clipped = bound if diff > bound else (max(diff, -bound))
            total += emit(i, x, factor * loss, factor * clipped, weight, scale, upstream, grad, loss_out)
        partial[c] = total
    return sum_in_order(partial)


@njit(**_FUSED)
def binary_cross_entropy(x, y, weight, scale, upstream, grad, loss_out):
    """-w [y max(log x, -100) + (1 - y) max(log(1 - x), -100)]; gradient w (x - y) / max(x (1 - x), 1e-12)."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            p = x[i]
            t = y[i]
            one = cast_like(1.0, p)
            floor = cast_like(LOG_FLOOR, p)
            log_p = log_of(p)
            log_q = log1p_of(-p)
            log_p = max(log_p, floor)  # max that keeps NaN, as the reference's clip
            log_q = max(log_q, floor)
            loss = -(t * log_p + (one - t) * log_q)
            variance = p * (one - p)
            epsilon = cast_like(BCE_GRAD_EPSILON, p)
            variance = max(variance, epsilon)
            total += emit(i, x, loss, (p - t) / variance, weight, scale, upstream, grad, loss_out)
        partial[c] = total
    return sum_in_order(partial)


@njit(**_FUSED)
def binary_cross_entropy_with_logits(x, y, weight, pos_weight, scale, upstream, grad, loss_out):
    """w [(1 - y) x + l softplus(-x)], l = 1 + (p - 1) y; gradient w [l sigmoid(x) - p y] (p = pos_weight or 1).

    One exp, one log1p (on [0, 1]: no division) and one division per element: softplus(-x) = log1p(e^-|x|) + max(-x, 0) and sigmoid(x) from the
    same e^-|x| (1 / (1 + e) for x >= 0, e / (1 + e) below), so no logit overflows.
    """
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            logit = x[i]
            t = y[i]
            one = cast_like(1.0, logit)
            zero = cast_like(0.0, logit)
            decay = exp_of(-abs(logit))
            softplus_neg = log1p_unit_of(decay) + (zero if logit > zero else -logit)
            reciprocal = one / (one + decay)
            sigmoid = reciprocal if logit >= zero else decay * reciprocal
            if pos_weight is not None:
                log_weight = one + (pos_weight[i] - one) * t
                positive = pos_weight[i] * t
            else:
                log_weight = one
                positive = t
            loss = (one - t) * logit + log_weight * softplus_neg
            total += emit(i, x, loss, log_weight * sigmoid - positive, weight, scale, upstream, grad, loss_out)
        partial[c] = total
    return sum_in_order(partial)


@njit(**_FUSED)
def kl_div(x, y, log_target, scale, upstream, grad, loss_out):
    """y (log y - x), 0 where y = 0; gradient -y. With log_target: e^y (y - x); gradient -e^y."""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            t = y[i]
            if log_target:
                probability = exp_of(t)
                loss = probability * (t - x[i])
            else:
                probability = t
                loss = t * log_of(t if t != 0 else cast_like(1.0, t)) - t * x[i]
            total += emit(i, x, loss, -probability, None, scale, upstream, grad, loss_out)
        partial[c] = total
    return sum_in_order(partial)
