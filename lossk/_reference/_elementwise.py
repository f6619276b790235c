"""The reference implementation of every elementwise loss: its spec's array ``formula``, weighted and reduced.

One function serves every loss of ``lossk._losses.ELEMENTWISE_LOSSES``: promote to the compute dtype
(float16 and bfloat16 compute in float32), evaluate ``formula``, multiply the loss and its derivatives by
``weight``, reduce, and scale the derivatives by the reduction (``grad_output / divisor`` for 'mean').
"""

from __future__ import annotations

import functools
import inspect
from types import ModuleType
from typing import Any

from .._array_api import Array, as_array
from .._dispatch import Implementation, register
from .._hessian import key as hessian_key
from .._hessian import surrogate_key
from .._reduction import apply_reduction, compute_dtype, upstream_scale
from .._spec import ARRAY_KIND, ElementwiseLoss, check_supported, mean_divisor, surrogate_hessian


def evaluate(
    spec: ElementwiseLoss, input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any,
    order: int, surrogate: bool = False, **options: Any,
) -> tuple[Array, Array | None, Array | None]:
    """``(loss, grad, hess)`` of ``spec`` (``grad`` from ``order`` 1 on, ``hess`` at ``order`` 2, else ``None``).

    ``hess`` is the diagonal second derivative, weighted and scaled by the reduction like ``grad``; with
    ``surrogate``, the surrogate second derivative (:func:`lossk._spec.surrogate_hessian`).
    """
    dtype = compute_dtype(xp, input.dtype)
    x, y = xp.astype(input, dtype), xp.astype(target, dtype)
    weight = options.get("weight")
    w = None if weight is None else xp.astype(weight, dtype)
    arguments = {
        o.name: (None if options[o.name] is None else xp.astype(options[o.name], dtype))
        if o.kind == ARRAY_KIND else options[o.name]
        for o in spec.formula_options
    }
    loss, d1, d2 = spec.formula(xp, x, y, order=order, **arguments)
    if surrogate and d2 is not None:
        d2 = surrogate_hessian(xp, spec, d2, x, y, **arguments)
    if w is not None:
        loss, d1, d2 = (None if a is None else w * a for a in (loss, d1, d2))
    reduction, divisor = mean_divisor(spec, reduction, tuple(x.shape), w, xp.sum)
    value = xp.astype(apply_reduction(xp, loss, reduction, divisor), input.dtype)
    if order == 0:
        return value, None, None
    scale = upstream_scale(reduction, grad_output, divisor)
    # as_array: a 0-d NumPy input gives a NumPy scalar here
    grad, hess = (None if a is None else as_array(xp, xp.astype(a * scale, input.dtype)) for a in (d1, d2))
    return value, grad, hess


def implementation(spec: ElementwiseLoss) -> Implementation:
    """``spec``'s reference implementation, with the keyword signature of the dispatch contract."""
    check_supported(spec)

    def value_and_grad(
        input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
        **options: Any,
    ) -> tuple[Array, Array | None]:
        value, grad, _ = evaluate(
            spec, input, target, xp=xp, reduction=reduction, grad_output=grad_output, order=int(compute_grad),
            **options,
        )
        return value, grad

    value_and_grad.__name__ = value_and_grad.__qualname__ = spec.name
    value_and_grad.__doc__ = f"Reference :func:`lossk.{spec.name}`: its spec's array formula (``lossk._losses``)."
    value_and_grad.__signature__ = contract_signature(spec)  # type: ignore[attr-defined]
    return value_and_grad


def contract_signature(spec: ElementwiseLoss, *extra: str) -> inspect.Signature:
    """``(input, target, *, xp, reduction, grad_output, compute_grad, [extra...,] <options>)``."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    positional = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in spec.inputs]
    names = ("xp", "reduction", "grad_output", "compute_grad", *extra, *(o.name for o in spec.keyword_options))
    return inspect.Signature(positional + [inspect.Parameter(n, keyword) for n in names])


def register_all() -> None:
    """Register every elementwise loss of the table as the ``array_api`` backend."""
    from .._losses import ELEMENTWISE_LOSSES

    for spec in ELEMENTWISE_LOSSES.values():
        register(spec.name, "array_api")(implementation(spec))
        register(hessian_key(spec.name), "array_api")(functools.partial(evaluate, spec))
        register(surrogate_key(spec.name), "array_api")(functools.partial(evaluate, spec, surrogate=True))
