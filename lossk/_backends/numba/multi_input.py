"""Host side of the fused multi-input kernels (``lossk._multi_input``'s contracts): every input flattened to one
contiguous buffer of the compute dtype (a broadcast input is materialised), one gradient stream per
differentiable argument and, for ``.hessian`` (``lossk._hessian.key``), one Hessian stream per differentiable
argument written by the same pass, each straight into a full-shaped ``out`` / ``hess_out`` when it can be.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from lossk._dispatch import register
from lossk._hessian import key as hessian_key
from lossk._losses.multi_input import LOSSES
from lossk._spec import ElementwiseLoss, check_supported, is_multi_input, mean_divisor

from . import elementwise
from .elementwise import NUMBA_CROSSOVER_SIZE, _compute_dtype, _flat, _flat_option, kernel_of, kernel_operands


def _destination(out: np.ndarray | None, dtype: np.dtype, reads: list[np.ndarray]) -> np.ndarray | None:
    """``out`` flattened when the kernel may write into it: its dtype, C-contiguous, sharing no read buffer."""
    if out is None or out.dtype != dtype or not out.flags.c_contiguous:  # (None: no destination)
        return None
    return None if any(np.may_share_memory(out, a) for a in reads) else out.reshape(-1)


def _weight_sum(weight: np.ndarray) -> float:
    from lossk._kernels.numba.elementwise import weight_sum  # on first use: registering imports no Numba

    return float(weight_sum(weight))


def evaluate(
    spec: ElementwiseLoss, *arrays: np.ndarray, reduction: str, grad_output: Any, order: int,
    out: tuple[np.ndarray | None, ...] | None = None, hess_out: tuple[np.ndarray | None, ...] | None = None,
    **options: Any,
) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None, tuple[np.ndarray, ...] | None]:
    """``(loss, grads, hessians)`` of ``spec`` by its generated kernel (``None`` below ``order``); ``out`` and
    ``hess_out`` (one destination or ``None`` per differentiable argument) are written by the kernel where
    :func:`_destination` allows."""
    first = arrays[0]
    shape = tuple(first.shape)
    dtype = _compute_dtype(first.dtype)
    flat = [_flat(np.broadcast_to(a, shape), dtype) for a in arrays]
    weight = _flat_option(options.get("weight"), dtype)
    operands = kernel_operands(spec, options, dtype)
    reduction, divisor = mean_divisor(spec, reduction, shape, weight, _weight_sum)
    n = flat[0].size
    loss_out = np.empty(n, dtype) if reduction == "none" else None
    scale, upstream = 1.0, None
    if order >= 1:
        if reduction == "none":
            upstream = _flat_option(grad_output, dtype)
        else:
            scale = 1.0 if grad_output is None else float(grad_output)
            if reduction == "mean":  # an empty input: NaN, as the reference (its gradients are empty anyway)
                scale = scale / divisor if divisor else math.nan
    reads = [*flat, *(a for a in (weight, upstream, *operands) if isinstance(a, np.ndarray))]
    k = len(spec.differentiable)
    outs = tuple(out) if out is not None else (None,) * k
    hess_outs = tuple(hess_out) if hess_out is not None else (None,) * k
    grads = [None, None]
    hessians = [None, None]
    if order >= 1:
        grads[:k] = [_destination(o, dtype, reads) for o in outs]
        grads[:k] = [g if g is not None else np.empty(n, dtype) for g in grads[:k]]
    if order >= 2:  # a Hessian destination may not overlap what the kernel reads or its gradient streams
        hessians[:k] = [_destination(o, dtype, [*reads, *grads[:k]]) for o in hess_outs]
        hessians[:k] = [h if h is not None else np.empty(n, dtype) for h in hessians[:k]]
    with np.errstate(divide="ignore", invalid="ignore"):
        total = kernel_of(spec, options)(*flat, weight, *operands, scale, upstream, *grads, *hessians, loss_out)
        if loss_out is not None:
            loss = loss_out.reshape(shape).astype(first.dtype, copy=False)
        else:
            loss = np.asarray(total if reduction == "sum" else np.divide(total, float(divisor)), dtype=first.dtype)

    def shaped(buffers, destinations):
        return tuple(
            d if d is not None and np.may_share_memory(d, b) else b.reshape(shape).astype(first.dtype, copy=False)
            for b, d in zip(buffers[:k], destinations)
        )

    return (
        loss,
        shaped(grads, outs) if order >= 1 else None,
        shaped(hessians, hess_outs) if order >= 2 else None,
    )


def implementation(spec: ElementwiseLoss):
    """``spec``'s fused implementation (``lossk._multi_input``'s contract, plus ``out``)."""
    check_supported(spec, multi_input=True)

    def value_and_grad(
        *arrays: np.ndarray, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
        out: tuple[np.ndarray | None, ...] | None = None, **options: Any,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        loss, grads, _ = evaluate(
            spec, *arrays, reduction=reduction, grad_output=grad_output, order=int(compute_grad), out=out, **options
        )
        return loss, grads

    value_and_grad.__name__ = value_and_grad.__qualname__ = spec.name
    value_and_grad.__doc__ = f"Fused :func:`lossk.{spec.name}` (``lossk._kernels.numba.pointwise.{spec.name}``)."
    return value_and_grad


def derivatives(spec: ElementwiseLoss):
    """``spec``'s fused ``(loss, grads, hessians)`` (``lossk._multi_input``'s second contract): the gradient and
    Hessian streams of every differentiable argument from one pass of its kernel."""
    check_supported(spec, multi_input=True)

    def value_grad_hessian(
        *arrays: np.ndarray, xp: ModuleType, reduction: str, grad_output: Any, order: int,
        out: tuple[np.ndarray | None, ...] | None = None, hess_out: tuple[np.ndarray | None, ...] | None = None,
        **options: Any,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None, tuple[np.ndarray, ...] | None]:
        return evaluate(spec, *arrays, reduction=reduction, grad_output=grad_output, order=order, out=out,
                        hess_out=hess_out, **options)

    value_grad_hessian.__name__ = value_grad_hessian.__qualname__ = f"{spec.name}_value_grad_hessian"
    return value_grad_hessian


for _spec in LOSSES:  # a row-mean loss of (input, target) runs the elementwise kernel (lossk._multi_input)
    _multi = is_multi_input(_spec)
    register(_spec.name, "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)(
        implementation(_spec) if _multi else elementwise.implementation(_spec)
    )
    register(hessian_key(_spec.name), "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)(
        derivatives(_spec) if _multi else elementwise.derivatives(_spec)
    )
