"""Second derivatives: ``(loss, grad, hess)`` of any lossk loss in one call, dispatched like ``value_and_grad``.

The public entry points are ``lossk.<loss>.hessian`` and ``lossk.<loss>.value_grad_hessian``
(``lossk._loss_function``); both call :func:`value_grad_hessian`.

``hess`` is the diagonal of the Hessian, d² loss / d input², shaped like ``input``: the per-element
second derivative of an elementwise loss (its spec's ``d2``), the diagonal of cross-entropy's softmax
Hessian (``lossk._reference.classification``), 0 for NLL (linear in its log-probabilities). It is weighted
and scaled by the reduction and ``grad_output`` exactly like the gradient: ``mean`` divides it by the same
divisor, ``grad_output`` multiplies it, so with ``reduction="none"`` and ``grad_output=w`` it is the
per-sample, ``w``-weighted second derivative that gradient boosting asks for.

Implementations register with :func:`lossk._dispatch.register` under the key :func:`key` (``"<loss>.hessian"``),
so that ``backend="auto"``, availability, input kinds and error messages are those of ``value_and_grad``;
each backend registers its own beside its gradients (the reference in ``lossk._reference``, the Numba
kernels in ``lossk._backends.numba``, the CUDA kernels in ``lossk._backends.cupy``, where a loss without
a CUDA Hessian takes the reference, on the device). Their contract::

    impl(input, target, *, xp, reduction, grad_output, order, [out, hess_out,] **options) -> (loss, grad, hess)

``order`` 2 computes both derivatives; ``out`` / ``hess_out`` are passed to implementations registered with ``writes_out=True``, which write into
them when they can; this module copies into them otherwise.

The multi-input losses (``lossk._multi_input``: ``gaussian_nll_loss``, ``margin_ranking_loss``,
``multilabel_soft_margin_loss``) register under the same key with their own contract (every input array
positional; a tuple of gradients and a tuple of Hessian diagonals, one per differentiable argument); their
``.hessian`` and ``.value_grad_hessian`` run through ``MultiInputLossFunction``, not :func:`value_grad_hessian`;
``lossk.linear_cross_entropy``'s through ``lossk.linear`` (one diagonal per argument, from each row's whole
softmax Hessian).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._array_api import Array
from ._dispatch import implementations, select
from ._validation import check_grad_output, check_out

if TYPE_CHECKING:
    from ._loss_function import LossFunction


def key(loss: str) -> str:
    """The dispatch registry's name of ``loss``'s ``(loss, grad, hess)`` implementations."""
    return f"{loss}.hessian"


def surrogate_key(loss: str) -> str:
    """The registry's name of ``loss``'s ``(loss, grad, surrogate hess)`` implementations (elementwise losses:
    ``lossk._spec.ElementwiseLoss.hessian_floor``), same contract as :func:`key`'s; ``lossk.boosting`` uses them."""
    return f"{loss}.surrogate_hessian"


def value_grad_hessian(
    function: LossFunction, input: Array, target: Array, /, *, grad_output: Any = None, out: Array | None = None,
    hess_out: Array | None = None, backend: str = "auto", **options: Any,
) -> tuple[Any, Array, Array]:
    """``(loss, grad, hess)`` of the lossk loss ``function``; see the module docstring.

    ``grad_output`` as for ``function.grad``; ``out`` receives the gradient and ``hess_out`` the Hessian's
    diagonal (each shaped like ``input``, its library and dtype; written directly where the backend can).
    """
    loss, grad, hess, _ = derivatives(function, input, target, grad_output=grad_output, out=out, hess_out=hess_out,
                                      backend=backend, surrogate=False, **options)
    return loss, grad, hess


def derivatives(
    function: LossFunction, input: Array, target: Array, /, *, grad_output: Any, out: Array | None,
    hess_out: Array | None, backend: str, surrogate: bool, **options: Any,
) -> tuple[Any, Array, Array, bool]:
    """:func:`value_grad_hessian` and whether ``hess`` is the surrogate: with ``surrogate=True``, the backend
    that computes the exact Hessian computes the surrogate instead where it registers one (:func:`surrogate_key`),
    the reference otherwise; ``False`` for a loss with no surrogate registered (floor 0: the caller clips)."""
    call = function._prepare(input, target, **options)
    grad_output = check_grad_output(grad_output, call.reduction, call.loss_shape, input)
    for name, buffer in (("out", out), ("hess_out", hess_out)):
        if buffer is not None:
            check_out(buffer, input, name=name)
    if out is not None and hess_out is not None and out is hess_out:
        raise ValueError("out and hess_out must be different arrays")
    loss_name = call.loss or function.name
    registration = select(key(loss_name), backend, input)
    floored = False
    if surrogate:
        surrogates = implementations(surrogate_key(loss_name))
        chosen = next(name for name, r in implementations(key(loss_name)).items() if r is registration)
        # a backend without the fused surrogate takes the reference's, on its arrays (one place per floor)
        fused = surrogates.get(chosen, surrogates.get("array_api"))
        registration, floored = (fused, True) if fused is not None else (registration, False)
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
    return loss, grad, hess, floored
