"""Host side of the fused elementwise kernels: NumPy arrays in, flat contiguous buffers to the kernels.

One adapter serves every loss of the spec table (``lossk._losses``): :func:`implementation` maps a loss's
options onto its generated kernel's operands (``lossk._kernels.numba.pointwise.<loss>``, imported on the
loss's first call); :func:`run` brings inputs to the compute dtype (float16 computes in float32), picks the
divisor of the 'mean' (``lossk._spec.mean_divisor``), writes the gradient straight into ``out`` when it can,
and casts results to the input dtype.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import Any

import numpy as np

from lossk._dispatch import Implementation, register
from lossk._hessian import key as hessian_key
from lossk._hessian import surrogate_key
from lossk._losses import ELEMENTWISE_LOSSES
from lossk._reduction import compute_dtype
from lossk._reference._elementwise import contract_signature
from lossk._spec import ARRAY_KIND, FLAG_KIND, ElementwiseLoss, check_supported, kernel_name, mean_divisor

from . import lazy_module

kernels = lazy_module("lossk._kernels.numba.elementwise")

NUMBA_CROSSOVER_SIZE = 1 << 10
"""From this many elements on, ``backend="auto"`` prefers the fused kernels to the NumPy reference.

Measured (bench/NOTES.md; best of 200 calls, float32, value_and_grad): the fused path already
matches the reference at 64 elements (both ~18-24 us, mostly Python overhead) and is 1.1-2.2x faster at
2^10 for every elementwise loss, 1.6-3.4x at 2^14, 10-28x at 2^16. Below 2^10 the gain is under 10 us,
not worth loading the kernels (0.6 s for ``import numba``, then ~0.04 s per kernel from the disk cache).
"""


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(compute_dtype(np, np.dtype(dtype)))


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


def run(
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
    compute_hess: bool = False,
    hess_out: np.ndarray | None = None,
    surrogate: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(loss, grad, hess)`` from ``kernel(x, y, *operands, scale, upstream, grad, hess, surrogate, loss_out)``.

    ``hess`` (the second derivative, weighted and scaled like the gradient) only with ``compute_hess``,
    written straight into ``hess_out`` when it can (as ``out`` for the gradient, but never over ``x``);
    ``surrogate``: the surrogate second derivative instead (``lossk._spec.ElementwiseLoss.hessian_floor``).
    """
    dtype = _compute_dtype(input.dtype)
    x, y = _flat(input, dtype), _flat(target, dtype)
    loss_out = np.empty(x.size, dtype) if reduction == "none" else None
    scale, upstream, grad, hess = 1.0, None, None, None
    direct = None
    if compute_grad or compute_hess:
        if reduction == "none":
            upstream = _flat_option(grad_output, dtype)
        else:
            scale = 1.0 if grad_output is None else float(grad_output)
            if reduction == "mean":  # an empty input: NaN, as the reference (its gradient is empty anyway)
                scale = scale / divisor if divisor else math.nan
    if compute_grad:
        if out is not None and _writes_into(out, dtype, x, (y, *operands, grad_output)):
            direct = out
        grad = direct.reshape(-1) if direct is not None else np.empty(x.size, dtype)
    hess_direct = None
    if compute_hess:
        reads = (x, y, *operands, grad_output, grad)
        if (hess_out is not None and hess_out.dtype == dtype and hess_out.flags.c_contiguous
                and not any(isinstance(a, np.ndarray) and np.may_share_memory(hess_out, a) for a in reads)):
            hess_direct = hess_out
        hess = hess_direct.reshape(-1) if hess_direct is not None else np.empty(x.size, dtype)
    # the kernel writes an in-place gradient through x: see its module docstring
    in_place = grad is not None and _same_buffer(grad, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = kernel(x, y, *operands, scale, upstream, True if in_place else grad, hess, True if surrogate else None,
                       loss_out)
        if loss_out is not None:
            loss = loss_out.reshape(input.shape).astype(input.dtype, copy=False)
        else:
            loss = np.asarray(total if reduction == "sum" else np.divide(total, divisor), dtype=input.dtype)
    if hess_direct is not None:
        hess = hess_direct
    elif hess is not None:
        hess = hess.reshape(input.shape).astype(input.dtype, copy=False)
    if grad is None:
        return loss, None, hess
    if direct is not None:
        return loss, direct, hess
    grad = grad.reshape(input.shape).astype(input.dtype, copy=False)
    if out is not None:
        out[...] = grad
        return loss, out, hess
    return loss, grad, hess


_KERNELS: dict[tuple[str, str], Any] = {}


def kernel_of(spec: ElementwiseLoss, options: dict[str, Any]) -> Any:
    """The generated kernel of ``spec`` for the values of its flags in ``options`` (``lossk._spec.kernel_name``:
    flags are compiled in, not passed), its module imported on first use."""
    key = (spec.name, kernel_name(spec, options))
    if key not in _KERNELS:
        module = importlib.import_module(f"lossk._kernels.numba.pointwise.{spec.name}")
        _KERNELS[key] = getattr(module, key[1])
    return _KERNELS[key]


def kernel_operands(spec: ElementwiseLoss, options: dict[str, Any], dtype: np.dtype) -> tuple[Any, ...]:
    """The options a kernel of ``spec`` takes, in its order: arrays flattened to ``dtype``, numbers; no flags."""
    return tuple(
        _flat_option(options[o.name], dtype) if o.kind == ARRAY_KIND else options[o.name]
        for o in spec.formula_options if o.kind != FLAG_KIND
    )


def evaluate(
    spec: ElementwiseLoss, input: np.ndarray, target: np.ndarray, *, reduction: str, grad_output: Any,
    compute_grad: bool, out: np.ndarray | None = None, compute_hess: bool = False,
    hess_out: np.ndarray | None = None, surrogate: bool = False, **options: Any,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(loss, grad, hess)`` of ``spec`` by its fused kernel (validated options, as implementations get them);
    ``surrogate``: ``hess`` is the surrogate second derivative."""
    dtype = _compute_dtype(input.dtype)
    weight = _flat_option(options.get("weight"), dtype)
    operands = kernel_operands(spec, options, dtype)
    reduction, divisor = mean_divisor(
        spec, reduction, tuple(input.shape), weight, lambda w: float(kernels.weight_sum(w))
    )
    return run(
        kernel_of(spec, options), input, target, (weight, *operands), reduction=reduction, grad_output=grad_output,
        compute_grad=compute_grad, out=out, divisor=float(divisor), compute_hess=compute_hess, hess_out=hess_out,
        surrogate=surrogate,
    )


def implementation(spec: ElementwiseLoss) -> Implementation:
    """``spec``'s fused implementation, with the keyword signature of the dispatch contract (plus ``out``)."""
    check_supported(spec)

    def value_and_grad(
        input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any,
        compute_grad: bool, out: np.ndarray | None, **options: Any,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        loss, grad, _ = evaluate(
            spec, input, target, reduction=reduction, grad_output=grad_output, compute_grad=compute_grad, out=out,
            **options,
        )
        return loss, grad

    value_and_grad.__name__ = value_and_grad.__qualname__ = spec.name
    value_and_grad.__doc__ = f"Fused :func:`lossk.{spec.name}` (``lossk._kernels.numba.pointwise.{spec.name}``)."
    value_and_grad.__signature__ = contract_signature(spec, "out")  # type: ignore[attr-defined]
    return value_and_grad


def derivatives(spec: ElementwiseLoss, *, surrogate: bool = False) -> Implementation:
    """``spec``'s fused ``(loss, grad, hess)``: the contract of :mod:`lossk._hessian`; ``surrogate``: ``hess`` is
    the surrogate second derivative (registered under ``lossk._hessian.surrogate_key``)."""

    def value_grad_hessian(
        input: np.ndarray, target: np.ndarray, *, xp: ModuleType, reduction: str, grad_output: Any, order: int,
        out: np.ndarray | None = None, hess_out: np.ndarray | None = None, **options: Any,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        return evaluate(spec, input, target, reduction=reduction, grad_output=grad_output, compute_grad=order >= 1,
                        out=out, compute_hess=order >= 2, hess_out=hess_out, surrogate=surrogate, **options)

    name = f"{spec.name}_value_grad_{'surrogate_' if surrogate else ''}hessian"
    value_grad_hessian.__name__ = value_grad_hessian.__qualname__ = name
    return value_grad_hessian


for _spec in ELEMENTWISE_LOSSES.values():
    register(_spec.name, "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)(implementation(_spec))
    register(hessian_key(_spec.name), "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)(
        derivatives(_spec)
    )
    register(surrogate_key(_spec.name), "numba", auto_min_size=NUMBA_CROSSOVER_SIZE, writes_out=True)(
        derivatives(_spec, surrogate=True)
    )
