"""The elementwise losses on the GPU: one fused pass of ``kernels/cuda/elementwise.cu`` per call.

mse, l1, huber, smooth_l1, binary_cross_entropy, binary_cross_entropy_with_logits and kl_div read input and
target once, write the gradient once (into ``out`` or over the input when asked) and reduce the loss in two
deterministic stages. A weighted mean of mse and l1 (which divide by ``sum(weight)``) first sums the
weights on the device. Not yet run on a GPU: see bench/GPU.md for what remains to be measured.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from ..._dispatch import register
from . import arguments, compiler, specialisation
from .interop import DeviceArrays, usable_out
from .launch import ELEMENTWISE_THREADS, FINISH_THREADS, grid_for_elements, is_aligned, vector_width
from .scaling import host_upstream, reciprocal, upstream_kind
from .specialisation import OptionLayout

WEIGHT_SUM_MEANS = ("mse_loss", "l1_loss")
"""Losses whose weighted mean divides by sum(weight) (PyTorch 2.13; the others divide by the element count)."""


def _option(arrays: DeviceArrays, value: Any, accumulator: str, n: int) -> tuple[Any, int, OptionLayout]:
    if value is None:
        return None, 1, OptionLayout.NONE
    compact, period = arrays.periodic_option(value, accumulator)
    return compact, period, OptionLayout.FULL if period == n else OptionLayout.PERIODIC


def run_elementwise(
    loss: str,
    input: Any,
    target: Any,
    *,
    reduction: str,
    grad_output: Any,
    compute_grad: bool,
    out: Any,
    weight: Any = None,
    pos_weight: Any = None,
    param: float = 0.0,
    log_target: bool = False,
) -> tuple[Any, Any]:
    """Loss and gradient of the elementwise ``loss`` (a key of ``specialisation.ELEMENTWISE_LOSSES``)."""
    arrays = DeviceArrays(input)
    with arrays.on_device():
        x = arrays.contiguous(input)
        y = arrays.contiguous(target)
        shape = tuple(x.shape)
        n = math.prod(shape)
        dtype = arrays.dtype(x)
        accumulator = specialisation.accumulator_name(dtype)
        sm_count, _ = compiler.device_properties(arrays.device_id)
        w, w_period, w_layout = _option(arrays, weight, accumulator, n)
        pw, pw_period, pw_layout = _option(arrays, pos_weight, accumulator, n)
        reduce = reduction != "none"
        kind = upstream_kind(grad_output, reduction, arrays.library) if compute_grad else "ones"
        upstream_array = arrays.contiguous(arrays.astype(grad_output, dtype)) if kind == "array" else None
        upstream_device = arrays.astype(grad_output, accumulator) if kind == "device" else None

        # the mean's divisor: a count known here, or the weights' sum computed on the device first
        scale = 1.0
        divisor = None
        if reduction == "batchmean":
            scale = reciprocal(shape[0] if shape else 1)
        elif reduction == "mean" and loss in WEIGHT_SUM_MEANS and w is not None:
            divisor = _weight_sum(arrays, w, w_period, accumulator, sm_count)
            scale = w_period / n if n else math.inf  # sum(weight) = sum(compact block) * n / period
        elif reduction == "mean":
            scale = reciprocal(n)

        grad = None
        if compute_grad:
            usable = out is not None and usable_out(tuple(out.shape), arrays.strides(out), arrays.dtype(out), shape, dtype)
            grad = out if usable else arrays.empty(shape, dtype)
        loss_out = arrays.empty(shape if not reduce else (), dtype)

        grid = grid_for_elements(n, vector_width(arrays.itemsize(x)), sm_count)
        partials = arrays.scratch(grid, accumulator) if reduce else None
        pointers = {
            "input": arrays.pointer(x),
            "target": arrays.pointer(y),
            "weight": arrays.pointer(w),
            "pos_weight": arrays.pointer(pw),
            "grad_output": arrays.pointer(upstream_array),
            "grad": arrays.pointer(grad),
            "loss_out": 0 if reduce else arrays.pointer(loss_out),
        }
        vector_read = [pointers["input"], pointers["target"], pointers["grad_output"] or None, pointers["grad"] or None]
        vector_read += [pointers["loss_out"] or None]
        vector_read += [pointers["weight"]] if w_layout == OptionLayout.FULL else []
        vector_read += [pointers["pos_weight"]] if pw_layout == OptionLayout.FULL else []
        spec = specialisation.elementwise(
            loss, dtype, arrays.dtype(y), weight=w_layout, pos_weight=pw_layout, log_target=log_target,
            compute_grad=compute_grad, reduce=reduce, grad_output_array=kind == "array",
        )
        upstream_pointer = arrays.pointer(upstream_device)
        divisor_pointer = 0 if divisor is None else arrays.scratch_pointer(divisor)
        compiler.launch(
            spec, "lossk_elementwise", grid, ELEMENTWISE_THREADS,
            arguments.elementwise(
                **pointers, weight_period=w_period, pos_weight_period=pw_period,
                partials=0 if partials is None else arrays.scratch_pointer(partials), n=n,
                vectorised=is_aligned(*vector_read), param=param,
                grad_scale=host_upstream(grad_output, kind) * (scale if reduce else 1.0),
                upstream=upstream_pointer, divisor=divisor_pointer, accumulator=accumulator,
            ),
        )
        if reduce:
            compiler.launch(
                spec, "lossk_finish", 1, FINISH_THREADS,
                arguments.finish(
                    partials=arrays.scratch_pointer(partials), count=grid, loss_scale=scale if reduction != "sum" else 1.0,
                    divisor=divisor_pointer, out=arrays.pointer(loss_out), accumulator=accumulator,
                ),
            )
    return loss_out, grad


def _weight_sum(arrays: DeviceArrays, weights: Any, count: int, accumulator: str, sm_count: int) -> Any:
    """A one-element device buffer holding the sum of ``weights`` (``count`` values in the accumulator dtype)."""
    spec = specialisation.elementwise(
        "mse_loss", accumulator, accumulator, weight=OptionLayout.NONE, pos_weight=OptionLayout.NONE,
        log_target=False, compute_grad=False, reduce=True, grad_output_array=False,
    )
    grid = grid_for_elements(count, 1, sm_count)
    partials = arrays.scratch(grid, accumulator)
    total = arrays.scratch(1, accumulator)
    compiler.launch(
        spec, "lossk_sum_partials", grid, ELEMENTWISE_THREADS,
        arguments.sum_partials(values=arrays.pointer(weights), n=count, partials=arrays.scratch_pointer(partials)),
    )
    compiler.launch(
        spec, "lossk_finish_acc", 1, FINISH_THREADS,
        arguments.finish_acc(partials=arrays.scratch_pointer(partials), count=grid, out=arrays.scratch_pointer(total)),
    )
    return total


# ---- registrations: the implementation contract of lossk._dispatch --------------------------------------


@register("mse_loss", "cupy", writes_out=True)
def mse_loss(
    input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, out: Any,
    weight: Any,
) -> tuple[Any, Any]:
    """(x - y)^2 and 2 (x - y), fused (see lossk.mse_loss)."""
    return run_elementwise(
        "mse_loss", input, target, reduction=reduction, grad_output=grad_output, compute_grad=compute_grad, out=out,
        weight=weight,
    )


@register("l1_loss", "cupy", writes_out=True)
def l1_loss(
    input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, out: Any,
    weight: Any,
) -> tuple[Any, Any]:
    """|x - y| and sign(x - y), fused (see lossk.l1_loss)."""
    return run_elementwise(
        "l1_loss", input, target, reduction=reduction, grad_output=grad_output, compute_grad=compute_grad, out=out,
        weight=weight,
    )


@register("huber_loss", "cupy", writes_out=True)
def huber_loss(
    input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, out: Any,
    delta: float, weight: Any,
) -> tuple[Any, Any]:
    """Huber loss and its gradient, fused (see lossk.huber_loss)."""
    return run_elementwise(
        "huber_loss", input, target, reduction=reduction, grad_output=grad_output, compute_grad=compute_grad, out=out,
        weight=weight, param=delta,
    )


@register("smooth_l1_loss", "cupy", writes_out=True)
def smooth_l1_loss(
    input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, out: Any,
    beta: float,
) -> tuple[Any, Any]:
    """Smooth L1 and its gradient, fused; beta = 0 runs the L1 kernel (see lossk.smooth_l1_loss)."""
    return run_elementwise(
        "smooth_l1_loss" if beta > 0 else "l1_loss", input, target, reduction=reduction, grad_output=grad_output, compute_grad=compute_grad, out=out,
        param=beta,
    )


@register("binary_cross_entropy", "cupy", writes_out=True)
def binary_cross_entropy(
    input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, out: Any,
    weight: Any,
) -> tuple[Any, Any]:
    """BCE on probabilities and its gradient, fused (see lossk.binary_cross_entropy)."""
    return run_elementwise(
        "binary_cross_entropy", input, target, reduction=reduction, grad_output=grad_output, compute_grad=compute_grad, out=out,
        weight=weight,
    )


@register("binary_cross_entropy_with_logits", "cupy", writes_out=True)
def binary_cross_entropy_with_logits(
    input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, out: Any,
    weight: Any, pos_weight: Any,
) -> tuple[Any, Any]:
    """BCE on logits and its gradient, fused (see lossk.binary_cross_entropy_with_logits)."""
    return run_elementwise(
        "binary_cross_entropy_with_logits", input, target, reduction=reduction, grad_output=grad_output, compute_grad=compute_grad, out=out,
        weight=weight, pos_weight=pos_weight,
    )


@register("kl_div", "cupy", writes_out=True)
def kl_div(
    input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, out: Any,
    log_target: bool,
) -> tuple[Any, Any]:
    """KL divergence and its gradient, fused (see lossk.kl_div)."""
    return run_elementwise(
        "kl_div", input, target, reduction=reduction, grad_output=grad_output, compute_grad=compute_grad, out=out,
        log_target=log_target,
    )
