"""Host side of the fused multi-input kernels (``lossk._multi_input``'s contract): every input flattened to one
contiguous buffer of the compute dtype (a broadcast input is materialised), one gradient stream per
differentiable argument, written straight into a full-shaped ``out`` when it can be.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from lossk._dispatch import register
from lossk._losses.multi_input import LOSSES
from lossk._spec import ARRAY_KIND, ElementwiseLoss, check_supported, is_multi_input, mean_divisor

from . import elementwise
from .elementwise import NUMBA_CROSSOVER_SIZE, _compute_dtype, _flat, _flat_option, kernel_of


def _destination(out: np.ndarray | None, dtype: np.dtype, reads: list[np.ndarray]) -> np.ndarray | None:
    """``out`` flattened when the kernel may write into it: its dtype, C-contiguous, sharing no read buffer."""
    if out is None or out.dtype != dtype or not out.flags.c_contiguous:
        return None
    return None if any(np.may_share_memory(out, a) for a in reads) else out.reshape(-1)


def _weight_sum(weight: np.ndarray) -> float:
    from lossk._kernels.numba.elementwise import weight_sum  # on first use: registering imports no Numba

    return float(weight_sum(weight))


def evaluate(
    spec: ElementwiseLoss, *arrays: np.ndarray, reduction: str, grad_output: Any, order: int,
    out: tuple[np.ndarray | None, ...] | None = None, **options: Any,
) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None, tuple[np.ndarray, ...] | None]:
    """``(loss, grads, hessians)`` of ``spec`` by its generated kernel (``None`` below ``order``)."""
    first = arrays[0]
    shape = tuple(first.shape)
    dtype = _compute_dtype(first.dtype)
    flat = [_flat(np.broadcast_to(a, shape), dtype) for a in arrays]
    weight = _flat_option(options.get("weight"), dtype)
    operands = tuple(
        _flat_option(options[o.name], dtype) if o.kind == ARRAY_KIND else options[o.name] for o in spec.formula_options
    )
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
    grads = [None, None]
    hessians = [None, None]
    if order >= 1:
        grads[:k] = [_destination(o, dtype, reads) if o is not None else None for o in outs]
        grads[:k] = [g if g is not None else np.empty(n, dtype) for g in grads[:k]]
    if order >= 2:
        hessians[:k] = [np.empty(n, dtype) for _ in range(k)]
    with np.errstate(divide="ignore", invalid="ignore"):
        total = kernel_of(spec)(*flat, weight, *operands, scale, upstream, *grads, *hessians, loss_out)
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
        shaped(hessians, (None,) * k) if order >= 2 else None,
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


for _spec in LOSSES:  # a row-mean loss of (input, target) runs the elementwise kernel (lossk._multi_input)
    register(_spec.name, "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)(
        implementation(_spec) if is_multi_input(_spec) else elementwise.implementation(_spec)
    )
