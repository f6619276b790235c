"""Second derivatives: ``(loss, grad, hess)`` of any lossk loss in one call, dispatched like ``value_and_grad``.

``hess`` is the diagonal of the Hessian, d² loss / d input², shaped like ``input``: the per-element
second derivative of an elementwise loss (its spec's ``d2``), the diagonal of cross-entropy's softmax
Hessian (``lossk._reference.classification``), 0 for NLL (linear in its log-probabilities). It is weighted
and scaled by the reduction and ``grad_output`` exactly like the gradient: ``mean`` divides it by the same
divisor, ``grad_output`` multiplies it, so with ``reduction="none"`` and ``grad_output=w`` it is the
per-sample, ``w``-weighted second derivative that gradient boosting asks for.

Implementations register with :func:`lossk._dispatch.register` under the key :func:`key` (``"<loss>.hessian"``),
so that ``backend="auto"``, availability, input kinds and error messages are those of ``value_and_grad``.
Their contract::

    impl(input, target, *, xp, reduction, grad_output, order, [out, hess_out,] **options) -> (loss, grad, hess)

``order`` 2 computes both derivatives (``grad`` may be ``None`` at order 2 only where asked: never here);
``out`` / ``hess_out`` are passed to implementations registered with ``writes_out=True``, which write into
them when they can; this module copies into them otherwise.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ._array_api import Array
from ._dispatch import is_available, register, select
from ._validation import check_grad_output, check_out

if TYPE_CHECKING:
    from ._loss_function import LossFunction


def key(loss: str) -> str:
    """The dispatch registry's name of ``loss``'s ``(loss, grad, hess)`` implementations."""
    return f"{loss}.hessian"


@functools.cache
def _register_elementwise() -> None:
    """Register the elementwise losses' reference and Numba ``(loss, grad, hess)`` implementations.

    Both are the backends' existing evaluators of a spec at order 2 (the kernels store ``d2`` when given
    a ``hess`` buffer). The Numba ones are registered only where that backend is available.
    """
    from ._losses import ELEMENTWISE_LOSSES
    from ._reference import _elementwise as reference

    for spec in ELEMENTWISE_LOSSES.values():
        register(key(spec.name), "array_api")(functools.partial(reference.evaluate, spec))
    if not is_available("numba"):
        return
    from ._backends.numba import elementwise as fused

    def numba_derivatives(spec: Any, input: Array, target: Array, *, xp: Any, reduction: str, grad_output: Any,
                          order: int, out: Array | None = None, hess_out: Array | None = None,
                          **options: Any) -> tuple[Array, Array | None, Array | None]:
        return fused.evaluate(spec, input, target, reduction=reduction, grad_output=grad_output,
                              compute_grad=order >= 1, out=out, compute_hess=order >= 2, **options)

    for spec in ELEMENTWISE_LOSSES.values():
        register(key(spec.name), "numba", auto_min_size=fused.NUMBA_CROSSOVER_SIZE, writes_out=True)(
            functools.partial(numba_derivatives, spec)
        )


def value_grad_hessian(
    function: LossFunction, input: Array, target: Array, /, *, grad_output: Any = None, out: Array | None = None,
    hess_out: Array | None = None, backend: str = "auto", **options: Any,
) -> tuple[Any, Array, Array]:
    """``(loss, grad, hess)`` of the lossk loss ``function``; see the module docstring.

    ``grad_output`` as for ``function.grad``; ``out`` receives the gradient and ``hess_out`` the Hessian's
    diagonal (each shaped like ``input``, its library and dtype; written directly where the backend can).
    """
    _register_elementwise()
    call = function._prepare(input, target, **options)
    grad_output = check_grad_output(grad_output, call.reduction, call.loss_shape, input)
    for name, buffer in (("out", out), ("hess_out", hess_out)):
        if buffer is not None:
            check_out(buffer, input, name=name)
    if out is not None and hess_out is not None and out is hess_out:
        raise ValueError("out and hess_out must be different arrays")
    registration = select(key(call.loss or function.name), backend, input)
    extra = {"out": out, "hess_out": hess_out} if registration.writes_out else {}
    loss, grad, hess = registration.implementation(
        call.input, call.target, xp=call.xp, reduction=call.reduction, grad_output=grad_output, order=2,
        **extra, **call.options,
    )
    if out is not None and grad is not out:
        out[...] = grad
        grad = out
    if hess_out is not None and hess is not hess_out:
        hess_out[...] = hess
        hess = hess_out
    return loss, grad, hess
