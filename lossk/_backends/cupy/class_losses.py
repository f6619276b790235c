"""cross_entropy and nll_loss on the GPU: ``kernels/cuda/cross_entropy.cu`` and ``kernels/cuda/nll_loss.cu``.

Cross-entropy runs one fused kernel (after, for a mean over class indices, a small pre-pass that sums
w_y and counts the rows kept, on the device) and a one-block final sum; the launch plan
(``launch.plan_cross_entropy``) keeps rows in shared memory across a thread-block cluster where they fit.
The gradient goes to a new array, to ``out``, or over the logits (``out is input``); ``cross_entropy.hessian``
(``lossk._hessian``) writes the Hessian's diagonal in the same pass (``LOSSK_HESS``: one more output
stream from the gradient's exponentials) into a new array or ``hess_out``. NLL's Hessian is 0 (the loss is
linear in its input): a fill, no kernel over the input. Grid-stride kernels
get one full wave of resident blocks (``compiler.resident_blocks``). Inputs with zero classes launch no
cross-entropy kernel (there is no logit to read): every row's loss is 0, an empty sum.
"""

from __future__ import annotations

import dataclasses
import math
from types import ModuleType
from typing import Any

from ..._dispatch import register
from ..._hessian import key as hessian_key
from . import arguments, compiler, launch, specialisation
from .interop import DeviceArrays, usable_out
from .launch import (
    CLASS_THREADS, FINISH_THREADS, grid_for_elements, is_aligned, plan_cross_entropy, same_vector_offset, vector_width,
)
from .layout import class_layout
from .scaling import host_upstream, reciprocal, upstream_kind
from .specialisation import DTYPE_CODES, CrossEntropyLayout


def _loss_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The unreduced loss's shape: the input's without its class axis."""
    return () if len(shape) == 1 else (shape[0], *shape[2:])


def _element_grid(spec: specialisation.Specialisation, kernel: str, arrays: DeviceArrays, elements: int, step: int,
                  sm_count: int, threads: int) -> int:
    """The grid of a grid-stride ``kernel`` over ``elements``: one wave of its resident blocks at most."""
    resident = compiler.resident_blocks(spec, kernel, threads, 0, arrays.device_id)
    return grid_for_elements(elements, step, sm_count, threads=threads, blocks_per_sm=resident)


def _class_divisors(arrays: DeviceArrays, target: Any, weight: Any, rows: int, classes: int, ignore_index: int,
                    accumulator: str, sm_count: int) -> Any:
    """A device buffer [sum of w_y, rows kept] over the class-index ``target``."""
    spec = specialisation.class_divisors(arrays.dtype(target), accumulator, weight=weight is not None)
    grid = _element_grid(spec, "lossk_class_divisor_partials", arrays, rows, 1, sm_count, CLASS_THREADS)
    partials = arrays.scratch(2 * grid, accumulator)
    divisors = arrays.scratch(2, accumulator)
    compiler.launch(
        spec, "lossk_class_divisor_partials", grid, CLASS_THREADS,
        arguments.class_divisor_partials(
            target=arrays.pointer(target), class_weight=arrays.pointer(weight), rows=rows, classes=classes,
            ignore_index=ignore_index, partials=arrays.scratch_pointer(partials),
        ),
    )
    compiler.launch(
        spec, "lossk_class_divisor_finish", 1, FINISH_THREADS,
        arguments.class_divisor_finish(
            partials=arrays.scratch_pointer(partials), count=grid, divisors=arrays.scratch_pointer(divisors)
        ),
    )
    return divisors


def with_hessian(spec: specialisation.Specialisation) -> specialisation.Specialisation:
    """``spec`` (a cross_entropy.cu variant with the gradient) that also writes the Hessian's diagonal."""
    return dataclasses.replace(spec, defines=(*spec.defines, ("LOSSK_HESS", 1)))


def _output(arrays: DeviceArrays, buffer: Any, shape: tuple[int, ...], dtype: str) -> Any:
    """``buffer`` when the kernel can write into it (``usable_out``), else a new array."""
    if buffer is not None and usable_out(tuple(buffer.shape), arrays.strides(buffer), arrays.dtype(buffer), shape, dtype):
        return buffer
    return arrays.empty(shape, dtype)


@register("cross_entropy", "cupy", writes_out=True)
def cross_entropy(
    input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, out: Any,
    weight: Any, ignore_index: int, label_smoothing: float, z_loss: float = 0.0, softcap: float | None = None,
    return_z_loss: bool = False,
) -> tuple[Any, Any]:
    """Fused cross-entropy with every option of lossk.cross_entropy (see kernels/cuda/cross_entropy.cu)."""
    value, grad, _ = _cross_entropy(
        input, target, reduction=reduction, grad_output=grad_output, order=int(compute_grad), out=out,
        hess_out=None, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss,
        softcap=softcap, return_z_loss=return_z_loss,
    )
    return value, grad


@register(hessian_key("cross_entropy"), "cupy", writes_out=True)
def cross_entropy_derivatives(
    input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, order: int, out: Any = None,
    hess_out: Any = None, weight: Any, ignore_index: int, label_smoothing: float, z_loss: float = 0.0,
    softcap: float | None = None, return_z_loss: bool = False,
) -> tuple[Any, Any, Any]:
    """``(loss, grad, hess)`` of lossk.cross_entropy in one fused pass (the contract of lossk._hessian)."""
    return _cross_entropy(
        input, target, reduction=reduction, grad_output=grad_output, order=order, out=out, hess_out=hess_out,
        weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
        return_z_loss=return_z_loss,
    )


def _cross_entropy(
    input: Any, target: Any, *, reduction: str, grad_output: Any, order: int, out: Any, hess_out: Any, weight: Any,
    ignore_index: int, label_smoothing: float, z_loss: float, softcap: float | None, return_z_loss: bool,
) -> tuple[Any, Any, Any]:
    """Loss, gradient (``order`` >= 1) and Hessian's diagonal (``order`` 2) of cross_entropy.cu."""
    compute_grad, compute_hess = order >= 1, order >= 2
    arrays = DeviceArrays(input)
    with arrays.on_device():
        x = arrays.contiguous(input)
        shape = tuple(x.shape)
        dtype = arrays.dtype(x)
        accumulator = specialisation.accumulator_name(dtype)
        rows, classes, inner = class_layout(shape)
        t = arrays.contiguous(target)
        probability = arrays.dtype(t) in DTYPE_CODES
        w = None if weight is None else arrays.astype(arrays.contiguous(weight), accumulator)
        sm_count, shared_limit = compiler.device_properties(arrays.device_id)
        capability = compiler.compute_capability(arrays.device_id)
        launch.require_capability(dtype, capability)
        itemsize = arrays.itemsize(x)
        plan_options = {
            "probability_target": probability, "sm_count": sm_count, "shared_limit": shared_limit,
            "chunk_bytes_target": launch.CHUNK_BYTES_TARGET,  # read now: benchmarks sweep it
            "capability": capability, "compute_grad": compute_grad,
        }
        plan = plan_cross_entropy(rows, classes, inner, itemsize, **plan_options)
        reduce = reduction != "none"
        with_z = z_loss > 0 or return_z_loss
        kind = upstream_kind(grad_output, reduction, arrays.library) if compute_grad else "ones"
        # the upstream gradient in the accumulator dtype: multiplied at full precision, never rounded first
        upstream_array = arrays.contiguous(arrays.astype(grad_output, accumulator)) if kind == "array" else None
        upstream_device = arrays.astype(grad_output, accumulator) if kind == "device" else None

        # the mean's divisors: the row count for probabilities; for class indices, sum w_y and the rows kept
        mean_scale = 1.0
        divisors = None
        if reduction == "mean" and probability:
            mean_scale = reciprocal(rows)
        elif reduction == "mean":
            divisors = _class_divisors(arrays, t, w, rows, classes, ignore_index, accumulator, sm_count)
        divisors_pointer = 0 if divisors is None else arrays.scratch_pointer(divisors)

        grad = _output(arrays, out, shape, dtype) if compute_grad else None
        hess = _output(arrays, hess_out, shape, dtype) if compute_hess else None
        loss_shape = () if reduce else _loss_shape(shape)
        if classes == 0 and not reduce:  # no logit to read: every row's loss (and z term) is an empty sum, 0
            loss_out = arrays.zeros(loss_shape, dtype)
            z_out = arrays.zeros(loss_shape, dtype) if return_z_loss else None
            return ((loss_out, z_out) if return_z_loss else loss_out), grad, hess
        loss_out = arrays.empty(loss_shape, dtype)
        z_out = arrays.empty(loss_shape, dtype) if return_z_loss else None

        spec = specialisation.cross_entropy(
            dtype, arrays.dtype(t), probability_target=probability, weight=w is not None,
            smoothing=label_smoothing > 0, softcap=softcap is not None, z_loss=z_loss > 0, return_z=return_z_loss,
            compute_grad=compute_grad, reduce=reduce, grad_output_array=kind == "array", layout=plan.layout,
            cluster=plan.cluster, threads=plan.threads,
        )
        if compute_hess:
            spec = with_hessian(spec)
        if plan.layout == CrossEntropyLayout.THREAD_PER_ROW:  # a grid-stride kernel: one wave of resident blocks
            resident = compiler.resident_blocks(spec, "lossk_cross_entropy", plan.threads, 0, arrays.device_id)
            plan = plan_cross_entropy(rows, classes, inner, itemsize, **plan_options, blocks_per_sm=resident)
        width = 2 if with_z else 1
        grad_scale = host_upstream(grad_output, kind) * mean_scale
        if classes == 0:  # no logit to read: every worker's partial sums are 0; the final sum still divides
            partials = arrays.zeros((width * plan.workers,), accumulator)
        else:
            partials = arrays.scratch(width * plan.workers, accumulator) if reduce else None
            logits_pointer, grad_pointer, hess_pointer = arrays.pointer(x), arrays.pointer(grad), arrays.pointer(hess)
            # the row layouts peel each row's misaligned head, given the same offset in logits, gradient, Hessian
            vectorised = (
                plan.layout != CrossEntropyLayout.THREAD_PER_ROW
                and inner == 1  # strided rows of (N, C, d1, ...) are read one element at a time
                and same_vector_offset(logits_pointer, grad_pointer or None, hess_pointer or None)
            )
            compiler.launch(
                spec, "lossk_cross_entropy", plan.grid, plan.threads,
                arguments.cross_entropy(
                    logits=logits_pointer, target_index=0 if probability else arrays.pointer(t),
                    target_probability=arrays.pointer(t) if probability else 0, class_weight=arrays.pointer(w),
                    grad_output=arrays.pointer(upstream_array), grad=grad_pointer,
                    loss_out=0 if reduce else arrays.pointer(loss_out),
                    z_out=0 if (reduce or z_out is None) else arrays.pointer(z_out),
                    partials=0 if partials is None else arrays.scratch_pointer(partials), rows=rows,
                    classes=classes, inner=inner, vectorised=vectorised, ignore_index=ignore_index,
                    smoothing=label_smoothing, softcap=softcap or 0.0, z_loss=z_loss, ce_scale=grad_scale,
                    z_scale=grad_scale, upstream=arrays.pointer(upstream_device), divisors=divisors_pointer,
                    hess=hess_pointer, accumulator=accumulator,
                ),
                shared_bytes=plan.shared_bytes,
            )
        if reduce:
            compiler.launch(
                spec, "lossk_cross_entropy_finish", 1, FINISH_THREADS,
                arguments.cross_entropy_finish(
                    partials=arrays.scratch_pointer(partials), count=plan.workers, ce_scale=mean_scale,
                    z_scale=mean_scale, divisors=divisors_pointer, out=arrays.pointer(loss_out),
                    z_out=arrays.pointer(z_out), accumulator=accumulator,
                ),
            )
    return ((loss_out, z_out) if return_z_loss else loss_out), grad, hess


@register("nll_loss", "cupy", writes_out=True)
def nll_loss(
    input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, out: Any,
    weight: Any, ignore_index: int,
) -> tuple[Any, Any]:
    """Negative log-likelihood: a per-row kernel for the loss, a vectorised fill for the gradient."""
    arrays = DeviceArrays(input)
    with arrays.on_device():
        x = arrays.contiguous(input)
        shape = tuple(x.shape)
        dtype = arrays.dtype(x)
        accumulator = specialisation.accumulator_name(dtype)
        rows, classes, inner = class_layout(shape)
        t = arrays.contiguous(target)
        w = None if weight is None else arrays.astype(arrays.contiguous(weight), accumulator)
        sm_count, _ = compiler.device_properties(arrays.device_id)
        launch.require_capability(dtype, compiler.compute_capability(arrays.device_id))
        reduce = reduction != "none"
        kind = upstream_kind(grad_output, reduction, arrays.library) if compute_grad else "ones"
        # the upstream gradient in the accumulator dtype: multiplied at full precision, never rounded first
        upstream_array = arrays.contiguous(arrays.astype(grad_output, accumulator)) if kind == "array" else None
        upstream_device = arrays.astype(grad_output, accumulator) if kind == "device" else None
        spec = specialisation.nll_loss(
            dtype, arrays.dtype(t), weight=w is not None, reduce=reduce, grad_output_array=kind == "array"
        )
        loss_out = arrays.empty(() if reduce else _loss_shape(shape), dtype)
        row_grid = _element_grid(spec, "lossk_nll_rows", arrays, rows, 1, sm_count, CLASS_THREADS)
        partials = arrays.scratch(2 * row_grid, accumulator) if reduce else None
        divisor = arrays.scratch(1, accumulator) if reduce else None
        compiler.launch(
            spec, "lossk_nll_rows", row_grid, CLASS_THREADS,
            arguments.nll_rows(
                input=arrays.pointer(x), target=arrays.pointer(t), class_weight=arrays.pointer(w), rows=rows,
                classes=classes, inner=inner, ignore_index=ignore_index,
                loss_out=0 if reduce else arrays.pointer(loss_out),
                partials=0 if partials is None else arrays.scratch_pointer(partials),
            ),
        )
        if reduce:
            compiler.launch(
                spec, "lossk_nll_finish", 1, FINISH_THREADS,
                arguments.nll_finish(
                    partials=arrays.scratch_pointer(partials), count=row_grid, loss_scale=1.0,
                    divide=reduction == "mean", out=arrays.pointer(loss_out),
                    divisor=arrays.scratch_pointer(divisor), accumulator=accumulator,
                ),
            )
        grad = None
        if compute_grad:
            usable = out is not None and usable_out(tuple(out.shape), arrays.strides(out), arrays.dtype(out), shape, dtype)
            grad = out if usable else arrays.empty(shape, dtype)
            elements = math.prod(shape)
            grad_pointer = arrays.pointer(grad)
            grid = _element_grid(spec, "lossk_nll_grad", arrays, elements, vector_width(arrays.itemsize(x)), sm_count,
                                 CLASS_THREADS)
            compiler.launch(
                spec, "lossk_nll_grad", grid, CLASS_THREADS,
                arguments.nll_grad(
                    target=arrays.pointer(t), class_weight=arrays.pointer(w),
                    grad_output=arrays.pointer(upstream_array), grad=grad_pointer, elements=elements,
                    classes=classes, inner=inner, ignore_index=ignore_index, vectorised=is_aligned(grad_pointer),
                    grad_scale=host_upstream(grad_output, kind), upstream=arrays.pointer(upstream_device),
                    divisor=arrays.scratch_pointer(divisor) if reduction == "mean" else 0,
                    accumulator=accumulator,
                ),
            )
    return loss_out, grad


@register(hessian_key("nll_loss"), "cupy", writes_out=True)
def nll_loss_derivatives(
    input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, order: int, out: Any = None,
    hess_out: Any = None, weight: Any, ignore_index: int,
) -> tuple[Any, Any, Any]:
    """``(loss, grad, hess)`` of lossk.nll_loss: :func:`nll_loss`, and a Hessian of zeros (linear loss)."""
    loss, grad = nll_loss(input, target, xp=xp, reduction=reduction, grad_output=grad_output,
                          compute_grad=order >= 1, out=out, weight=weight, ignore_index=ignore_index)
    if order < 2:
        return loss, grad, None
    if hess_out is not None:  # checked by lossk._hessian: the input's shape, dtype and library
        hess_out[...] = 0
        return loss, grad, hess_out
    arrays = DeviceArrays(input)
    with arrays.on_device():
        return loss, grad, arrays.zeros(tuple(input.shape), arrays.dtype(input))
