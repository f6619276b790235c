"""Host side of the fused cross-entropy and NLL kernels (``lossk._kernels.numba.classification``).

The adapters lay the input out as rows for the kernels: (C,) as one row (1, C), (N, C) as it is,
(N, C, d1, ...) as (N, C, S) with S = d1 · ... (row (n, s) strided, no transposed copy). They bring
everything to the compute dtype (float16 computes in float32) and C order, compute the 'mean' divisors,
turn ``grad_output`` into per-row upstream factors, and write the gradient straight into ``out`` — or
into the logits themselves in in-place mode — whenever ``out`` is C-contiguous in the compute dtype.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from lossk._dispatch import register
from lossk._hessian import key as hessian_key
from lossk._reduction import compute_dtype

from . import lazy_module

kernels = lazy_module("lossk._kernels.numba.classification")

CROSS_ENTROPY_CROSSOVER_SIZE = 0
"""From this many logits on, ``backend="auto"`` prefers the fused kernel to the NumPy reference: always.

Measured on the 2-core development machine (bench/NOTES.md, "Numba cross-entropy / NLL"): run serially, the kernel's fixed
cost (argument preparation, ~30 µs) is below the reference's (~85 µs), so it is faster at every size
measured, 2.6x at 64 logits, 2-12x up to 2^17.
"""

NLL_CROSSOVER_SIZE = 0
"""The same for ``nll_loss``: ~25 µs against the reference's ~47 µs at 64 elements, faster at every size."""

PARALLEL_MIN_SIZE = 1 << 18
"""Below this many elements the kernels run in the calling thread. A parallel launch costs ~20 µs on a
quiet machine and up to a scheduler tick (~15 ms, measured) when the cores are busy with other work;
2^18 float32 logits take ~160 µs on one core."""


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(compute_dtype(np, np.dtype(dtype)))


def _rows(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` (C,), (N, C) or (N, C, d1, ...) as C-contiguous (1, C), (N, C) or (N, C, S) of ``dtype``.

    A view when ``array`` already is C-contiguous in ``dtype``, else a copy.
    """
    array = np.ascontiguousarray(array, dtype=dtype)
    if array.ndim == 1:
        return array.reshape(1, -1)
    if array.ndim == 2:
        return array
    return array.reshape(array.shape[0], array.shape[1], math.prod(array.shape[2:]))  # no -1: sizes may be 0


def _row_count(rows: np.ndarray) -> int:
    return rows.shape[0] * (rows.shape[2] if rows.ndim == 3 else 1)


def _gradient_buffer(input: np.ndarray, logits: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """Where the kernel writes the gradient, laid out like ``logits``.

    ``out`` itself when it is C-contiguous in the compute dtype (in-place mode: the kernel sees the same
    memory as ``logits``); ``logits`` when that is a private copy of ``input`` (the kernel works in place
    on it); else a new array.
    """
    if out is not None and out.dtype == logits.dtype and out.flags.c_contiguous:
        return out.reshape(logits.shape)
    if not np.may_share_memory(logits, input):
        return logits
    return np.empty_like(logits)


def _upstream(reduction: str, grad_output: Any, n_rows: int) -> tuple[float, np.ndarray]:
    """(scalar upstream gradient, per-row upstream factors (R,) float64) for the kernels."""
    if reduction == "none":
        if grad_output is None:
            return 1.0, np.ones(n_rows)
        return 1.0, np.ascontiguousarray(grad_output, dtype=np.float64).reshape(-1)
    return (1.0 if grad_output is None else float(grad_output)), np.ones(n_rows)


def _divide(numerator: float, divisor: float) -> np.float64:
    """numerator / divisor with IEEE semantics (0 / 0 = NaN, x / 0 = inf), as the reference's arrays give."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(numerator) / np.float64(divisor)


def _reduced(reduction: str, total: float, row_values: np.ndarray, divisor: float, loss_shape: tuple[int, ...],
             dtype: np.dtype) -> np.ndarray:
    if reduction == "none":
        return row_values.reshape(loss_shape).astype(dtype)
    return np.asarray(total if reduction == "sum" else _divide(total, divisor), dtype=dtype)


def _finish_gradient(grad: np.ndarray, input: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """The gradient in ``input``'s shape and dtype, in ``out`` when given."""
    grad = grad.reshape(input.shape)
    if out is None:
        return grad.astype(input.dtype, copy=False)
    if not np.may_share_memory(grad, out):
        out[...] = grad
    return out


def _hessian_buffer(input: np.ndarray, logits: np.ndarray, grad: np.ndarray, hess_out: np.ndarray | None) -> np.ndarray:
    """Where the kernel writes the Hessian's diagonal: ``hess_out`` when it is C-contiguous in the compute
    dtype and overlaps neither the logits nor the gradient buffer, else a new array."""
    if (hess_out is not None and hess_out.dtype == logits.dtype and hess_out.flags.c_contiguous
            and not any(np.may_share_memory(hess_out, a) for a in (input, logits, grad))):
        return hess_out.reshape(logits.shape)
    return np.empty_like(logits)


@register("cross_entropy", "numba", auto_min_size=CROSS_ENTROPY_CROSSOVER_SIZE, writes_out=True)
def cross_entropy(
    input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any,
    compute_grad: bool, out: np.ndarray | None = None, weight: np.ndarray | None, ignore_index: int,
    label_smoothing: float, z_loss: float = 0.0, softcap: float | None = None, return_z_loss: bool = False,
) -> tuple[Any, np.ndarray | None]:
    """``lossk.cross_entropy`` by the fused kernel; the contract of ``lossk._reference.classification``."""
    value, grad, _ = cross_entropy_derivatives(
        input, target, xp=xp, reduction=reduction, grad_output=grad_output, order=int(compute_grad), out=out,
        weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
        return_z_loss=return_z_loss,
    )
    return value, grad


@register(hessian_key("cross_entropy"), "numba", auto_min_size=CROSS_ENTROPY_CROSSOVER_SIZE, writes_out=True)
def cross_entropy_derivatives(
    input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any, order: int,
    out: np.ndarray | None = None, hess_out: np.ndarray | None = None, weight: np.ndarray | None,
    ignore_index: int, label_smoothing: float, z_loss: float = 0.0, softcap: float | None = None,
    return_z_loss: bool = False,
) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
    """``(loss, grad, hess)`` by the fused kernel: ``grad`` from ``order`` 1 on, the Hessian's diagonal at
    ``order`` 2 (written in the same pass), as ``lossk._reference.classification.cross_entropy_derivatives``."""
    compute_grad = order >= 1
    dtype = _compute_dtype(input.dtype)
    logits = _rows(input, dtype)
    n_rows, n_classes = _row_count(logits), logits.shape[1]
    loss_shape = () if input.ndim == 1 else (input.shape[0], *input.shape[2:])
    class_weight = None if weight is None else np.ascontiguousarray(weight, dtype=dtype)
    if np.issubdtype(target.dtype, np.integer):
        labels = np.ascontiguousarray(target, dtype=np.int64).reshape(-1)
        probabilities = None
        # the divisors of 'mean' only: a pass over the labels (and class weights) that 'sum' and 'none' skip
        divisor, z_divisor = (kernels.label_weight_sums(labels, class_weight, ignore_index) if reduction == "mean"
                              else (1.0, 1.0))
    else:
        labels = None
        probabilities = _rows(target, dtype)
        divisor = z_divisor = float(n_rows)
    upstream, row_upstream = _upstream(reduction, grad_output, n_rows)
    mean = reduction == "mean"
    scale = _divide(upstream, divisor) if mean else upstream
    z_scale = _divide(upstream, z_divisor) if mean else upstream
    grad = _gradient_buffer(input, logits, out) if compute_grad else None
    hess = _hessian_buffer(input, logits, grad, hess_out) if order >= 2 else None
    row_loss = np.empty(n_rows)
    row_z_loss = np.empty(n_rows)
    operands = (
        logits, labels, probabilities, grad, hess, class_weight, ignore_index, float(label_smoothing), float(z_loss),
        None if softcap is None else dtype.type(softcap), float(scale), float(z_scale), row_upstream, row_loss,
        row_z_loss,
    )
    rows_per_chunk = kernels.chunk_rows(n_classes)
    if (grad is not None and labels is not None and logits.ndim == 2 and n_classes <= kernels.SMALL_ROW_CLASSES
            and label_smoothing == 0 and z_loss == 0 and softcap is None):
        small = (logits, labels, grad, hess, class_weight, ignore_index, float(scale), row_upstream, row_loss)
        if logits.size < PARALLEL_MIN_SIZE:
            loss_total = kernels.small_rows(0, n_rows, *small)
        else:
            loss_total = kernels.small_rows_parallel(*small, rows_per_chunk)
        z_loss_total = 0.0
        row_z_loss[:] = 0.0
    elif logits.size < PARALLEL_MIN_SIZE:
        loss_total, z_loss_total = kernels.cross_entropy_rows(0, n_rows, *operands)
    else:
        loss_total, z_loss_total = kernels.cross_entropy(*operands, rows_per_chunk)
    if reduction == "none":
        value = row_loss.reshape(loss_shape).astype(input.dtype)
    else:
        ce_part = loss_total if reduction == "sum" else _divide(loss_total, divisor)
        z_part = z_loss_total if reduction == "sum" else _divide(z_loss_total, z_divisor)
        value = np.asarray(ce_part + z_part, dtype=input.dtype)
    if return_z_loss:
        value = (value, _reduced(reduction, z_loss_total, row_z_loss, z_divisor, loss_shape, input.dtype))
    return (value, None if grad is None else _finish_gradient(grad, input, out),
            None if hess is None else _finish_gradient(hess, input, hess_out))


@register(hessian_key("nll_loss"), "numba", auto_min_size=NLL_CROSSOVER_SIZE, writes_out=True)
def nll_loss_derivatives(
    input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any, order: int,
    out: np.ndarray | None = None, hess_out: np.ndarray | None = None, weight: np.ndarray | None, ignore_index: int,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(loss, grad, hess)`` of :func:`nll_loss`; ``hess`` (``order`` 2) is 0: the loss is linear in ``input``."""
    value, grad = nll_loss(input, target, xp=xp, reduction=reduction, grad_output=grad_output,
                           compute_grad=order >= 1, out=out, weight=weight, ignore_index=ignore_index)
    if order < 2:
        return value, grad, None
    if hess_out is None:
        return value, grad, np.zeros_like(input)
    hess_out[...] = 0
    return value, grad, hess_out


@register("nll_loss", "numba", auto_min_size=NLL_CROSSOVER_SIZE, writes_out=True)
def nll_loss(
    input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any,
    compute_grad: bool, out: np.ndarray | None = None, weight: np.ndarray | None, ignore_index: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``lossk.nll_loss`` by the fused kernel; the contract of ``lossk._reference.classification``."""
    dtype = _compute_dtype(input.dtype)
    log_probabilities = _rows(input, dtype)
    n_rows = _row_count(log_probabilities)
    loss_shape = () if input.ndim == 1 else (input.shape[0], *input.shape[2:])
    class_weight = None if weight is None else np.ascontiguousarray(weight, dtype=dtype)
    labels = np.ascontiguousarray(target, dtype=np.int64).reshape(-1)
    divisor, _ = kernels.label_weight_sums(labels, class_weight, ignore_index)
    upstream, row_upstream = _upstream(reduction, grad_output, n_rows)
    scale = _divide(upstream, divisor) if reduction == "mean" else upstream
    grad = _gradient_buffer(input, log_probabilities, out) if compute_grad else None
    row_loss = np.empty(n_rows)
    operands = (log_probabilities, labels, grad, class_weight, ignore_index, float(scale), row_upstream, row_loss)
    rows_per_chunk = kernels.chunk_rows(log_probabilities.shape[1])
    if log_probabilities.size < PARALLEL_MIN_SIZE:
        total = kernels.nll_loss_rows(0, n_rows, *operands)
    else:
        total = kernels.nll_loss(*operands, rows_per_chunk)
    value = _reduced(reduction, total, row_loss, divisor, loss_shape, input.dtype)
    return value, (None if grad is None else _finish_gradient(grad, input, out))
