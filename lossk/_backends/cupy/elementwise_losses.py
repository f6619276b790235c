"""The elementwise losses on the GPU: one fused pass of ``kernels/cuda/elementwise.cu`` per call.

Every loss of the spec table (``lossk._losses.ELEMENTWISE_LOSSES``) is registered by one loop: its device
function in ``kernels/cuda/pointwise.cuh`` is chosen by macro (``specialisation.elementwise``), its scalar
options are kernel arguments, its array options (and ``weight``) are read in place or as the compact block
of a broadcast view, and its rewrites and mean divisor come from ``lossk._spec``. One kernel reads input
and target once, writes the gradient (and, for ``.hessian``, the second derivative) once and reduces the
loss in two deterministic stages. A weighted mean that divides by ``sum(weight)`` first sums the weights on
the device, so no call waits for the GPU.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from ..._dispatch import Implementation, register
from ..._hessian import key as hessian_key
from ..._hessian import surrogate_key
from ..._losses import ELEMENTWISE_LOSSES
from ..._reference._elementwise import contract_signature
from ..._spec import ARRAY_KIND, SCALAR_KIND, ElementwiseLoss, check_supported, mean_divisor, resolve
from . import arguments, compiler, specialisation
from .interop import DeviceArrays, usable_out
from .launch import ELEMENTWISE_THREADS, FINISH_THREADS, grid_for_elements, is_aligned, vector_width
from .scaling import host_upstream, reciprocal, upstream_kind
from .specialisation import OptionLayout


def _option(arrays: DeviceArrays, value: Any, accumulator: str, n: int) -> tuple[Any, int, OptionLayout]:
    """(compact ACC buffer, period, layout) of an option array: read whole, or periodically from a broadcast."""
    if value is None:
        return None, 1, OptionLayout.NONE
    compact, period = arrays.periodic_option(value, accumulator)
    return compact, period, OptionLayout.FULL if period == n else OptionLayout.PERIODIC


def _grid(spec: specialisation.Specialisation, kernel: str, arrays: DeviceArrays, elements: int, step: int,
          sm_count: int) -> int:
    """A grid-stride grid of at most one wave of ``kernel``'s resident blocks (the occupancy API)."""
    resident = compiler.resident_blocks(spec, kernel, ELEMENTWISE_THREADS, 0, arrays.device_id)
    return grid_for_elements(elements, step, sm_count, blocks_per_sm=resident)


def run_elementwise(
    loss: ElementwiseLoss,
    input: Any,
    target: Any,
    *,
    reduction: str,
    grad_output: Any,
    compute_grad: bool,
    out: Any,
    compute_hess: bool = False,
    hess_out: Any = None,
    surrogate: bool = False,
    **options: Any,
) -> tuple[Any, Any, Any]:
    """``(loss, grad, hess)`` of the elementwise loss ``loss`` with its validated ``options``; ``surrogate``:
    ``hess`` is the surrogate second derivative (``lossk._spec.ElementwiseLoss.hessian_floor``), in the same pass."""
    name, options = resolve(loss, options)
    spec = loss if name == loss.name else ELEMENTWISE_LOSSES[name]  # a row-mean loss is not in the table
    arrays = DeviceArrays(input)
    with arrays.on_device():
        x = arrays.contiguous(input)
        y = arrays.contiguous(target)
        shape = tuple(x.shape)
        n = math.prod(shape)
        dtype = arrays.dtype(x)
        accumulator = specialisation.accumulator_name(dtype)
        sm_count, _ = compiler.device_properties(arrays.device_id)
        w, w_period, w_layout = _option(arrays, options.get("weight"), accumulator, n)
        array_options = [_option(arrays, options[o.name], accumulator, n)
                         for o in spec.formula_options if o.kind == ARRAY_KIND]
        scalars = tuple(options[o.name] for o in spec.formula_options if o.kind == SCALAR_KIND)
        flags = {o.name: options[o.name] for o in spec.formula_options if o.kind not in (ARRAY_KIND, SCALAR_KIND)}
        reduce = reduction != "none"
        derivatives = compute_grad or compute_hess
        kind = upstream_kind(grad_output, reduction, arrays.library) if derivatives else "ones"
        # the upstream gradient is multiplied in ACC: no rounding to the input's dtype first
        upstream_array = arrays.contiguous(arrays.astype(grad_output, accumulator)) if kind == "array" else None
        upstream_device = arrays.astype(grad_output, accumulator) if kind == "device" else None

        # the mean's divisor: a count known here, or the weights' sum computed on the device first
        reduction, divisor = mean_divisor(
            spec, reduction, shape, w, lambda weights: _weight_sum(arrays, weights, w_period, accumulator, sm_count)
        )
        device_divisor = None if isinstance(divisor, int) else divisor
        if device_divisor is not None:
            scale = w_period / n if n else math.inf  # sum(weight) = sum(compact block) * n / period
        else:
            scale = reciprocal(divisor) if reduction == "mean" else 1.0

        grad = _output(arrays, out, shape, dtype) if compute_grad else None
        hess = _output(arrays, hess_out, shape, dtype) if compute_hess else None
        loss_out = arrays.empty(shape if not reduce else (), dtype)

        variant = specialisation.elementwise(
            spec, dtype, arrays.dtype(y), weight=w_layout, options=tuple(layout for _, _, layout in array_options),
            flags=flags, compute_grad=compute_grad, compute_hess=compute_hess, surrogate=surrogate, reduce=reduce,
            grad_output_array=kind == "array",
        )
        grid = _grid(variant, "lossk_elementwise", arrays, n, vector_width(arrays.itemsize(x)), sm_count)
        partials = arrays.scratch(grid, accumulator) if reduce else None
        pointers = {
            "input": arrays.pointer(x),
            "target": arrays.pointer(y),
            "weight": arrays.pointer(w),
            "grad_output": arrays.pointer(upstream_array),
            "grad": arrays.pointer(grad),
            "hess": arrays.pointer(hess),
            "loss_out": 0 if reduce else arrays.pointer(loss_out),
        }
        option_pointers = tuple((arrays.pointer(value), period) for value, period, _ in array_options)
        vector_read = [pointers[k] or None for k in ("input", "target", "grad_output", "grad", "hess", "loss_out")]
        vector_read += [pointers["weight"]] if w_layout == OptionLayout.FULL else []
        vector_read += [p for (p, _), (_, _, layout) in zip(option_pointers, array_options) if layout == OptionLayout.FULL]
        divisor_pointer = 0 if device_divisor is None else arrays.scratch_pointer(device_divisor)
        compiler.launch(
            variant, "lossk_elementwise", grid, ELEMENTWISE_THREADS,
            arguments.elementwise(
                **pointers, weight_period=w_period, options=option_pointers,
                partials=0 if partials is None else arrays.scratch_pointer(partials), n=n,
                vectorised=is_aligned(*vector_read), scalars=scalars,
                grad_scale=host_upstream(grad_output, kind) * (scale if reduce else 1.0),
                upstream=arrays.pointer(upstream_device), divisor=divisor_pointer, accumulator=accumulator,
            ),
        )
        if reduce:
            compiler.launch(
                variant, "lossk_finish", 1, FINISH_THREADS,
                arguments.finish(
                    partials=arrays.scratch_pointer(partials), count=grid, loss_scale=scale if reduction != "sum" else 1.0,
                    divisor=divisor_pointer, out=arrays.pointer(loss_out), accumulator=accumulator,
                ),
            )
    return loss_out, grad, hess


def _output(arrays: DeviceArrays, out: Any, shape: tuple[int, ...], dtype: str) -> Any:
    """``out`` where the kernel can write into it (contiguous, the input's dtype and shape), else a new array."""
    usable = out is not None and usable_out(tuple(out.shape), arrays.strides(out), arrays.dtype(out), shape, dtype)
    return out if usable else arrays.empty(shape, dtype)


def _weight_sum(arrays: DeviceArrays, weights: Any, count: int, accumulator: str, sm_count: int) -> Any:
    """A one-element device buffer holding the sum of ``weights`` (``count`` values in the accumulator dtype)."""
    variant = specialisation.weight_sums(accumulator)
    grid = _grid(variant, "lossk_sum_partials", arrays, count, 1, sm_count)
    partials = arrays.scratch(grid, accumulator)
    total = arrays.scratch(1, accumulator)
    compiler.launch(
        variant, "lossk_sum_partials", grid, ELEMENTWISE_THREADS,
        arguments.sum_partials(values=arrays.pointer(weights), n=count, partials=arrays.scratch_pointer(partials)),
    )
    compiler.launch(
        variant, "lossk_finish_acc", 1, FINISH_THREADS,
        arguments.finish_acc(partials=arrays.scratch_pointer(partials), count=grid, out=arrays.scratch_pointer(total)),
    )
    return total


# ---- registrations: the implementation contract of lossk._dispatch --------------------------------------


def implementation(spec: ElementwiseLoss) -> Implementation:
    """``spec``'s fused value and gradient, with the keyword signature of the dispatch contract (plus ``out``)."""

    def value_and_grad(
        input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, out: Any,
        **options: Any,
    ) -> tuple[Any, Any]:
        loss, grad, _ = run_elementwise(spec, input, target, reduction=reduction, grad_output=grad_output,
                                        compute_grad=compute_grad, out=out, **options)
        return loss, grad

    value_and_grad.__name__ = value_and_grad.__qualname__ = spec.name
    value_and_grad.__doc__ = f"Fused :func:`lossk.{spec.name}` on the GPU (``{spec.cuda_function}``)."
    value_and_grad.__signature__ = contract_signature(spec, "out")  # type: ignore[attr-defined]
    return value_and_grad


def derivatives(spec: ElementwiseLoss, *, surrogate: bool = False) -> Implementation:
    """``spec``'s fused ``(loss, grad, hess)``: the contract of :mod:`lossk._hessian`; ``surrogate``: ``hess`` is
    the surrogate second derivative (registered under ``lossk._hessian.surrogate_key``)."""

    def value_grad_hessian(
        input: Any, target: Any, *, xp: ModuleType, reduction: str, grad_output: Any, order: int, out: Any = None,
        hess_out: Any = None, **options: Any,
    ) -> tuple[Any, Any, Any]:
        return run_elementwise(spec, input, target, reduction=reduction, grad_output=grad_output,
                               compute_grad=order >= 1, out=out, compute_hess=order >= 2, hess_out=hess_out,
                               surrogate=surrogate, **options)

    name = f"{spec.name}_value_grad_{'surrogate_' if surrogate else ''}hessian"
    value_grad_hessian.__name__ = value_grad_hessian.__qualname__ = name
    return value_grad_hessian


def supported(spec: ElementwiseLoss) -> bool:
    """Whether the elementwise template serves ``spec``: one differentiable input (``check_supported``),
    options within its slots, and a device function in ``pointwise.cuh`` (until a new loss has one, CuPy
    arrays take the reference on the device; ``tests/test_cuda_compile.py`` fails meanwhile)."""
    try:
        check_supported(spec)
        specialisation.element_options(spec)
    except NotImplementedError:
        return False
    return spec.cuda_function in specialisation.device_functions()


def supports_surrogate(spec: ElementwiseLoss) -> bool:
    """Whether the fused surrogate Hessian serves ``spec``: its floor's device function is in ``pointwise.cuh``,
    or it has no floor (0). Until then CuPy arrays take the reference's surrogate, on the device
    (``lossk._hessian.derivatives``); ``tests/test_cuda_compile.py`` fails meanwhile."""
    floor = specialisation.hessian_floor_function(spec)
    return floor is None or floor in specialisation.device_functions()


IMPLEMENTATIONS: dict[str, Implementation] = {}
"""The registered value-and-gradient implementation of each loss served here, by name."""

for _spec in ELEMENTWISE_LOSSES.values():
    if supported(_spec):
        IMPLEMENTATIONS[_spec.name] = register(_spec.name, "cupy", writes_out=True)(implementation(_spec))
        register(hessian_key(_spec.name), "cupy", writes_out=True)(derivatives(_spec))
        if supports_surrogate(_spec):
            register(surrogate_key(_spec.name), "cupy", writes_out=True)(derivatives(_spec, surrogate=True))
