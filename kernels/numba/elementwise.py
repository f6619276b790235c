"""The loop every fused elementwise kernel shares: chunked ``prange``, weighting, upstream scaling, stores.

Each loss's kernel is a generated module, ``pointwise/<loss>.py`` (written by ``python -m
lossk._losses.generate`` from the loss's spec, committed): its loop calls the loss's scalar formulation
``element(x[i], y[i], *options) -> (loss, d1, d2)`` and hands the result to :func:`emit`. Every kernel takes
flat contiguous 1-D arrays of one floating dtype (float32 or float64; the host adapter converts float16 and
mixed dtypes) and has the signature::

    kernel(x, y, weight, *options, scale, upstream, grad, hess, surrogate, loss_out) -> float64 sum of the losses

``weight`` is an array or ``None``; ``options`` are the loss's other options in its spec's order (arrays,
read element by element through :func:`option_at`, or ``None``, which ``element`` sees as the option's
neutral value; numbers). Flags are not passed: a loss with flags has one kernel per combination of their
values, which hands them to ``element`` as constants (``kernel_log_input_not_full``; ``lossk._spec.kernel_name``),
so that LLVM drops the branches they decide. ``surrogate`` is ``None``, or ``True`` for the surrogate second
derivative (raised to the loss's ``hessian_floor`` before weighting; two-array kernels). Element ``i``'s first
derivative times its weight is multiplied by ``upstream[i]`` when ``upstream`` is an array (reduction
'none') or by the scalar ``scale`` (grad_output / divisor for 'mean', grad_output for 'sum') and written to
``grad[i]``; the second derivative likewise to ``hess[i]``. ``grad=None`` / ``hess=None`` skip them (LLVM
then removes their arithmetic from the loop). ``loss_out`` receives the unreduced, weighted loss (reduction
'none'), or is ``None`` and the kernel returns the sum. Passing ``None`` makes Numba compile a
specialisation without the corresponding work, so each variant stays a straight loop.

``grad=True`` writes the gradient over ``x`` (in-place). Passing ``x`` itself as ``grad`` would be correct
too (element ``i`` is read before it is written) but slow: LLVM cannot prove that two array arguments
are the same buffer, finds that they overlap at run time and falls back to its scalar loop; written
through ``x``, the store's dependence on the load is visibly at distance 0 and the loop vectorises.

Determinism: the elements are cut into chunks of ``CHUNK`` (whatever the thread count), each chunk sums
its losses in float64 in a fixed order, and the chunk sums are added in chunk order, so the loss is
bit-identical for any ``NUMBA_NUM_THREADS``. Formulas are those of the specs (``lossk._losses``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .typed_math import cast_like

CHUNK = 1 << 14
"""Elements per parallel work item (64 KiB of float32 per array): fixed, so that sums are reproducible."""

KERNEL_FASTMATH = {"reassoc", "contract"}
"""``reassoc`` lets LLVM vectorise the float64 sums (the order then depends on the code, not the threads);
``contract`` fuses multiply-adds. No ``nnan``/``ninf``: NaN and inf propagate as in the reference."""

FUSED = {"parallel": True, "fastmath": KERNEL_FASTMATH, "error_model": "numpy", "cache": True}
"""The flags of every fused kernel (``cache=True``: each generated module is compiled once per machine)."""

ELEMENT = {"fastmath": KERNEL_FASTMATH, "error_model": "numpy", "inline": "always"}
"""The flags of the scalar ``element`` functions, inlined into the kernels' loops by Numba (as a separate
function, one with exp/log calls is too big for LLVM's inliner, and the loop stops vectorising: 4-5x slower)."""


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


def option_at(option, i, neutral):
    """Element ``i`` of an option array, or ``neutral`` for an option not given (inside Numba kernels)."""


@overload(option_at)
def _option_at(option, i, neutral):
    if option is types.none:
        return lambda option, i, neutral: neutral
    return lambda option, i, neutral: option[i]


@njit(inline="always")
def emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess):
    """Weight element ``i``'s loss and derivatives, store the derivatives; returns the weighted loss."""
    if weight is not None:
        loss = loss * weight[i]
        d1 = d1 * weight[i]
        d2 = d2 * weight[i]
    if upstream is not None:
        factor = upstream[i]
    else:
        factor = cast_like(scale, d1)
    if grad is not None:
        store_gradient(grad, x, i, d1 * factor)
    if hess is not None:
        hess[i] = d2 * factor
    return loss


def chunk_losses(loss_out, start, stop, x):
    """Where the loop puts the losses of elements ``[start, stop)``: ``loss_out[start:stop]`` (reduction 'none'),
    or a chunk-sized scratch array of ``x``'s dtype that :func:`chunk_sum` adds up afterwards.

    The element loop then holds no float64 value: LLVM sizes a loop's vectors by the widest type among its loads,
    stores and reductions, and a float64 sum inside it gives float32 kernels 4 lanes instead of 8 (AVX2).
    """


@overload(chunk_losses)
def _chunk_losses(loss_out, start, stop, x):
    if loss_out is types.none:
        return lambda loss_out, start, stop, x: np.empty(stop - start, x.dtype)
    return lambda loss_out, start, stop, x: loss_out[start:stop]


def chunk_sum(losses, loss_out):
    """The float64 sum of a chunk's losses, in a fixed order (0 when they went to ``loss_out``)."""


@overload(chunk_sum)
def _chunk_sum(losses, loss_out):
    if loss_out is not types.none:
        return lambda losses, loss_out: 0.0

    def add_up(losses, loss_out):
        total = 0.0
        for j in range(losses.size):
            total += np.float64(losses[j])
        return total

    return add_up


@njit(inline="always")
def emit_derivative(i, d1, d2, weight, scale, upstream, grad, hess):
    """The second differentiable argument's derivatives of element ``i``, weighted and scaled like :func:`emit`'s
    (multi-input kernels: ``kernel(x0, x1, ..., weight, *options, scale, upstream, grad_0, grad_1, hess_0,
    hess_1, loss_out)``, the gradients and Hessians of the spec's ``differentiable`` arguments in order)."""
    if weight is not None:
        d1 = d1 * weight[i]
        d2 = d2 * weight[i]
    if upstream is not None:
        factor = upstream[i]
    else:
        factor = cast_like(scale, d1)
    if grad is not None:
        grad[i] = d1 * factor
    if hess is not None:
        hess[i] = d2 * factor


@njit(**FUSED)
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
