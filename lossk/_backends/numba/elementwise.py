"""Host side of the fused elementwise kernels: NumPy arrays in, flat contiguous buffers to the kernels.

Each adapter maps a loss's options onto its kernel's operands (``lossk._kernels.numba.elementwise``); the
shared :func:`_run` brings inputs to the compute dtype (float16 computes in float32), picks the divisor of
the 'mean', writes the gradient straight into ``out`` when it can, and casts results to the input dtype.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from lossk._dispatch import register
from lossk._kernels.numba import elementwise as kernels

NUMBA_CROSSOVER_SIZE = 1 << 10
"""From this many elements on, ``backend="auto"`` prefers the fused kernels to the NumPy reference.

Measured (bench/NOTES.md, helper C; best of 200 calls, float32, value_and_grad): the fused path already
matches the reference at 64 elements (both ~18-24 us, mostly Python overhead) and is 1.1-2.2x faster at
2^10 for every elementwise loss, 1.6-3.4x at 2^14, 10-28x at 2^16. Below 2^10 the gain is under 10 us,
not worth loading the kernels (0.6 s for ``import numba``, then ~0.04 s per kernel from the disk cache).
"""


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if np.dtype(dtype).itemsize < 4 else np.dtype(dtype)


def _flat(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` as a 1-D C-contiguous array of ``dtype``: a view when it already is one, else a copy."""
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1)


def _flat_option(array: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """An optional array option flattened like :func:`_flat`; broadcast views (zero strides) are materialised."""
    return None if array is None else _flat(array, dtype)


def _writes_into(out: np.ndarray, dtype: np.dtype, x: np.ndarray, others: tuple[Any, ...]) -> bool:
    """Whether the kernel can write the gradient straight into ``out``: its dtype, C-contiguous, and either
    ``x``'s very buffer (in-place) or overlapping none of the arrays read (a partial overlap would race)."""
    if out.dtype != dtype or not out.flags.c_contiguous:
        return False
    reads = [a for a in others if isinstance(a, np.ndarray)]
    if not _same_buffer(out, x):
        reads.append(x)
    return not any(np.may_share_memory(out, a) for a in reads)


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two C-contiguous arrays of one size and dtype are the same memory."""
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.nbytes == b.nbytes


def _run(
    kernel: Any,
    input: np.ndarray,
    target: np.ndarray,
    operands: tuple[Any, ...],
    *,
    reduction: str,
    grad_output: Any,
    compute_grad: bool,
    out: np.ndarray | None,
    divisor: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Call ``kernel(x, y, *operands, scale, upstream, grad, loss_out)`` and shape its results."""
    dtype = _compute_dtype(input.dtype)
    x, y = _flat(input, dtype), _flat(target, dtype)
    loss_out = np.empty(x.size, dtype) if reduction == "none" else None
    scale, upstream, grad = 1.0, None, None
    direct = None
    if compute_grad:
        if reduction == "none":
            upstream = _flat_option(grad_output, dtype)
        else:
            scale = 1.0 if grad_output is None else float(grad_output)
            if reduction == "mean":  # an empty input: NaN, as the reference (its gradient is empty anyway)
                scale = scale / divisor if divisor else math.nan
        if out is not None and _writes_into(out, dtype, x, (y, *operands, grad_output)):
            direct = out
        grad = direct.reshape(-1) if direct is not None else np.empty(x.size, dtype)
    # the kernel writes an in-place gradient through x: see its module docstring
    in_place = grad is not None and _same_buffer(grad, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = kernel(x, y, *operands, scale, upstream, True if in_place else grad, loss_out)
        if loss_out is not None:
            loss = loss_out.reshape(input.shape).astype(input.dtype, copy=False)
        else:
            loss = np.asarray(total if reduction == "sum" else np.divide(total, divisor), dtype=input.dtype)
    if grad is None:
        return loss, None
    if direct is not None:
        return loss, direct
    grad = grad.reshape(input.shape).astype(input.dtype, copy=False)
    if out is not None:
        out[...] = grad
        return loss, out
    return loss, grad


def _weighted_mean_divisor(weight: np.ndarray | None, input: np.ndarray, reduction: str) -> float:
    """What 'mean' divides by: the sum of the weights when there are weights, else the element count."""
    if weight is None or reduction != "mean":
        return float(input.size)
    return float(kernels.weight_sum(weight))


@register("l1_loss", "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)
def l1_loss(
    input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any,
    compute_grad: bool, out: np.ndarray | None, weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fused :func:`lossk._reference.regression.l1_loss`."""
    w = _flat_option(weight, _compute_dtype(input.dtype))
    return _run(
        kernels.l1_loss, input, target, (w,), reduction=reduction, grad_output=grad_output,
        compute_grad=compute_grad, out=out, divisor=_weighted_mean_divisor(w, input, reduction),
    )


@register("mse_loss", "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)
def mse_loss(
    input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any,
    compute_grad: bool, out: np.ndarray | None, weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fused :func:`lossk._reference.regression.mse_loss`."""
    w = _flat_option(weight, _compute_dtype(input.dtype))
    return _run(
        kernels.mse_loss, input, target, (w,), reduction=reduction, grad_output=grad_output,
        compute_grad=compute_grad, out=out, divisor=_weighted_mean_divisor(w, input, reduction),
    )


@register("huber_loss", "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)
def huber_loss(
    input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any,
    compute_grad: bool, out: np.ndarray | None, delta: float, weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fused :func:`lossk._reference.regression.huber_loss` (the mean divides by the element count)."""
    return _run(
        kernels.huber_loss, input, target, (_flat_option(weight, _compute_dtype(input.dtype)), delta, 1.0),
        reduction=reduction, grad_output=grad_output, compute_grad=compute_grad, out=out,
        divisor=float(input.size),
    )


@register("smooth_l1_loss", "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)
def smooth_l1_loss(
    input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any,
    compute_grad: bool, out: np.ndarray | None, beta: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fused :func:`lossk._reference.regression.smooth_l1_loss`: Huber(delta=beta) / beta; L1 at beta = 0."""
    kernel, operands = (kernels.l1_loss, (None,)) if beta == 0 else (kernels.huber_loss, (None, beta, 1.0 / beta))
    return _run(
        kernel, input, target, operands, reduction=reduction, grad_output=grad_output,
        compute_grad=compute_grad, out=out, divisor=float(input.size),
    )


@register("binary_cross_entropy", "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)
def binary_cross_entropy(
    input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any,
    compute_grad: bool, out: np.ndarray | None, weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fused :func:`lossk._reference.binary.binary_cross_entropy` (the mean divides by the element count)."""
    return _run(
        kernels.binary_cross_entropy, input, target, (_flat_option(weight, _compute_dtype(input.dtype)),),
        reduction=reduction, grad_output=grad_output, compute_grad=compute_grad, out=out,
        divisor=float(input.size),
    )


@register("binary_cross_entropy_with_logits", "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)
def binary_cross_entropy_with_logits(
    input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any,
    compute_grad: bool, out: np.ndarray | None, weight: np.ndarray | None, pos_weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fused :func:`lossk._reference.binary.binary_cross_entropy_with_logits`."""
    dtype = _compute_dtype(input.dtype)
    return _run(
        kernels.binary_cross_entropy_with_logits, input, target, (_flat_option(weight, dtype), _flat_option(pos_weight, dtype)),
        reduction=reduction, grad_output=grad_output, compute_grad=compute_grad, out=out,
        divisor=float(input.size),
    )


@register("kl_div", "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)
def kl_div(
    input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any,
    compute_grad: bool, out: np.ndarray | None, log_target: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fused :func:`lossk._reference.divergence.kl_div`; 'batchmean' divides by ``input.shape[0]``."""
    divisor = float(input.size)
    if reduction == "batchmean":
        reduction, divisor = "mean", float(input.shape[0] if input.ndim else 1)
    return _run(
        kernels.kl_div, input, target, (log_target,), reduction=reduction, grad_output=grad_output,
        compute_grad=compute_grad, out=out, divisor=divisor,
    )
