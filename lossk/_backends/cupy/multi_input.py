"""The multi-input losses on the GPU (``lossk._multi_input``'s contract): one fused pass of
``kernels/cuda/multi_input.cu`` per call for the losses of two differentiable inputs, and the elementwise
template (``elementwise.cu``) for a row-mean loss of ``(input, target)``.

Every loss of ``lossk._losses.multi_input.LOSSES`` is registered by one loop. A two-gradient loss reads its
three inputs once (a broadcast input is materialised first; the second and third inputs are cast to one
dtype, kept as given when they share it), writes both full-shaped gradients (and, for ``.hessian``, both
second derivatives) once and reduces the loss in two deterministic stages; ``lossk._multi_input`` then sums
a broadcast input's gradient over its broadcast axes. A row-mean loss (``multilabel_soft_margin_loss``) is
an elementwise loss around which ``lossk._multi_input`` applies the mean over the last axis.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from ..._dispatch import Implementation, register
from ..._hessian import key as hessian_key
from ..._losses.multi_input import LOSSES
from ..._spec import SCALAR_KIND, ElementwiseLoss, is_multi_input, mean_divisor
from . import arguments, compiler, elementwise_losses, specialisation
from .interop import DeviceArrays
from .launch import ELEMENTWISE_THREADS, FINISH_THREADS, grid_for_elements, is_aligned, vector_width
from .scaling import host_upstream, reciprocal, upstream_kind

NO_OUTPUTS = (None, None)


def _other_dtype(arrays: DeviceArrays, others: tuple[Any, ...], accumulator: str) -> str:
    """The one dtype the kernel reads the second and third inputs in: theirs when they share it, else the
    accumulator's (each cast to the arithmetic dtype, as the reference casts them)."""
    names = {arrays.dtype(a) for a in others}
    return names.pop() if len(names) == 1 else accumulator


def run_multi_input(
    spec: ElementwiseLoss,
    *inputs: Any,
    reduction: str,
    grad_output: Any,
    compute_grad: bool,
    out: tuple[Any, ...] | None = None,
    compute_hess: bool = False,
    hess_out: tuple[Any, ...] | None = None,
    **options: Any,
) -> tuple[Any, tuple[Any, Any] | None, tuple[Any, Any] | None]:
    """``(loss, grads, hessians)`` of the two-gradient loss ``spec``, each gradient full-shaped."""
    arrays = DeviceArrays(inputs[0])
    with arrays.on_device():
        first = arrays.contiguous(inputs[0])
        shape = tuple(first.shape)
        n = math.prod(shape)
        dtype = arrays.dtype(first)
        accumulator = specialisation.accumulator_name(dtype)
        other = _other_dtype(arrays, inputs[1:], accumulator)
        reads = (first, *(arrays.contiguous(arrays.astype(a, other)) for a in inputs[1:]))
        sm_count, _ = compiler.device_properties(arrays.device_id)
        scalars = tuple(options[o.name] for o in spec.formula_options if o.kind == SCALAR_KIND)
        flags = {o.name: options[o.name] for o in spec.formula_options if o.kind != SCALAR_KIND}
        reduce = reduction != "none"
        derivatives = compute_grad or compute_hess
        kind = upstream_kind(grad_output, reduction, arrays.library) if derivatives else "ones"
        upstream_array = arrays.contiguous(arrays.astype(grad_output, accumulator)) if kind == "array" else None
        upstream_device = arrays.astype(grad_output, accumulator) if kind == "device" else None
        reduction, divisor = mean_divisor(spec, reduction, shape, None, None)
        scale = reciprocal(divisor) if reduction == "mean" else 1.0

        grads = _outputs(arrays, out, shape, dtype) if compute_grad else NO_OUTPUTS
        hessians = _outputs(arrays, hess_out, shape, dtype) if compute_hess else NO_OUTPUTS
        loss_out = arrays.empty(shape if not reduce else (), dtype)

        variant = specialisation.multi_input(
            spec, dtype, other, flags=flags, compute_grad=compute_grad, compute_hess=compute_hess, reduce=reduce,
            grad_output_array=kind == "array",
        )
        resident = compiler.resident_blocks(variant, "lossk_multi_input", ELEMENTWISE_THREADS, 0, arrays.device_id)
        grid = grid_for_elements(n, vector_width(arrays.itemsize(first)), sm_count, blocks_per_sm=resident)
        partials = arrays.scratch(grid, accumulator) if reduce else None
        input_pointers = tuple(arrays.pointer(a) for a in reads)
        grad_pointers = tuple(arrays.pointer(g) for g in grads)
        hess_pointers = tuple(arrays.pointer(h) for h in hessians)
        loss_pointer = 0 if reduce else arrays.pointer(loss_out)
        upstream_pointer = arrays.pointer(upstream_array)
        vector_read = [p or None for p in (*input_pointers, upstream_pointer, *grad_pointers, *hess_pointers, loss_pointer)]
        compiler.launch(
            variant, "lossk_multi_input", grid, ELEMENTWISE_THREADS,
            arguments.multi_input(
                inputs=input_pointers, grad_output=upstream_pointer, grads=grad_pointers, hessians=hess_pointers,
                loss_out=loss_pointer, partials=0 if partials is None else arrays.scratch_pointer(partials), n=n,
                vectorised=is_aligned(*vector_read), scalars=scalars,
                grad_scale=host_upstream(grad_output, kind) * (scale if reduce else 1.0),
                upstream=arrays.pointer(upstream_device), accumulator=accumulator,
            ),
        )
        if reduce:
            compiler.launch(
                variant, "lossk_multi_input_finish", 1, FINISH_THREADS,
                arguments.multi_input_finish(
                    partials=arrays.scratch_pointer(partials), count=grid, loss_scale=scale,
                    out=arrays.pointer(loss_out), accumulator=accumulator,
                ),
            )
    return (
        loss_out,
        tuple(grads) if compute_grad else None,
        tuple(hessians) if compute_hess else None,
    )


def _outputs(arrays: DeviceArrays, out: tuple[Any, ...] | None, shape: tuple[int, ...], dtype: str) -> tuple[Any, Any]:
    """One destination per gradient: the given one where the kernel can write into it, else a new array."""
    given = tuple(out) if out is not None else NO_OUTPUTS
    return tuple(elementwise_losses._output(arrays, o, shape, dtype) for o in given)  # type: ignore[return-value]


# ---- registrations: the contracts of lossk._multi_input --------------------------------------------------


def implementation(spec: ElementwiseLoss) -> Implementation:
    """``spec``'s fused value and gradients (``lossk._multi_input``'s contract, plus ``out``)."""

    def value_and_grad(
        *arrays: Any, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, out: Any = None,
        **options: Any,
    ) -> tuple[Any, Any]:
        loss, grads, _ = run_multi_input(spec, *arrays, reduction=reduction, grad_output=grad_output,
                                         compute_grad=compute_grad, out=out, **options)
        return loss, grads

    value_and_grad.__name__ = value_and_grad.__qualname__ = spec.name
    value_and_grad.__doc__ = f"Fused :func:`lossk.{spec.name}` on the GPU (``{spec.cuda_function}``)."
    return value_and_grad


def derivatives(spec: ElementwiseLoss) -> Implementation:
    """``spec``'s fused ``(loss, grads, hessians)``: the second-derivative contract of ``lossk._multi_input``."""

    def value_grad_hessian(
        *arrays: Any, xp: ModuleType, reduction: str, grad_output: Any, order: int, out: Any = None,
        hess_out: Any = None, **options: Any,
    ) -> tuple[Any, Any, Any]:
        return run_multi_input(spec, *arrays, reduction=reduction, grad_output=grad_output, compute_grad=order >= 1,
                               out=out, compute_hess=order >= 2, hess_out=hess_out, **options)

    value_grad_hessian.__name__ = value_grad_hessian.__qualname__ = f"{spec.name}_value_grad_hessian"
    return value_grad_hessian


def supported(spec: ElementwiseLoss) -> bool:
    """Whether a kernel template serves ``spec``: ``multi_input.cu`` for two gradients, ``elementwise.cu``
    for a row-mean loss of ``(input, target)``; and its device function exists."""
    if not is_multi_input(spec):
        return elementwise_losses.supported(spec)
    try:
        specialisation.multi_input(spec, "float32", "float32", compute_grad=True, reduce=True, grad_output_array=False)
    except NotImplementedError:
        return False
    return spec.cuda_function in specialisation.device_functions()


IMPLEMENTATIONS: dict[str, Implementation] = {}
"""The registered value-and-gradient implementation of each multi-input loss served here, by name."""

for _spec in LOSSES:
    if supported(_spec):
        two_gradients = is_multi_input(_spec)
        IMPLEMENTATIONS[_spec.name] = register(_spec.name, "cupy", writes_out=True)(
            implementation(_spec) if two_gradients else elementwise_losses.implementation(_spec)
        )
        register(hessian_key(_spec.name), "cupy", writes_out=True)(
            derivatives(_spec) if two_gradients else elementwise_losses.derivatives(_spec)
        )
