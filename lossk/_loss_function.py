"""The public face of every loss: a callable with ``.grad`` and ``.value_and_grad``.

A loss is declared by its *prepare* function, which has the loss's PyTorch signature, validates the
arguments and returns a :class:`Prepared` call; :func:`loss_function` turns it into a
:class:`LossFunction` and registers the reference implementation as the ``array_api`` backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ._array_api import Array
from ._dispatch import Implementation, register, select
from ._validation import check_grad_output, check_out


@dataclass(frozen=True)
class Prepared:
    """A validated call: arrays of one namespace, the reduction and the loss's options."""

    xp: ModuleType
    input: Array
    target: Array
    reduction: str
    loss_shape: tuple[int, ...]
    """Shape of the unreduced loss (and of ``grad_output`` under reduction='none')."""
    options: dict[str, Any] = field(default_factory=dict)


class LossFunction:
    """``loss(input, target, ...)`` returns the loss; ``.grad`` d loss / d input; ``.value_and_grad`` both.

    Options are those of the PyTorch function of the same name, keyword-only, plus ``backend``:
    ``"auto"`` (default), ``"array_api"`` (the pure Array API reference), ``"numba"`` or ``"cupy"``.
    """

    def __init__(self, prepare: Callable[..., Prepared], reference: Implementation) -> None:
        functools.update_wrapper(self, prepare)
        self.name: str = prepare.__name__
        self._prepare = prepare
        register(self.name, "array_api")(reference)

    def __repr__(self) -> str:
        return f"<lossk loss function {self.name}>"

    def __call__(self, input: Array, target: Array, /, *, backend: str = "auto", **options: Any) -> Array:
        """The loss: 0-d for reduction 'mean' and 'sum', the unreduced shape for 'none'."""
        loss, _ = self._run(input, target, backend, options, compute_grad=False)
        return loss

    def grad(
        self,
        input: Array,
        target: Array,
        /,
        *,
        grad_output: Any = None,
        out: Array | None = None,
        inplace: bool = False,
        backend: str = "auto",
        **options: Any,
    ) -> Array:
        """d loss / d input, shaped like ``input``, times ``grad_output``.

        ``grad_output`` is the upstream gradient: a scalar for 'mean' and 'sum' (default 1), an array shaped
        like the unreduced loss for 'none' (default ones). ``out`` receives the gradient (no allocation on
        the fused backends); ``inplace=True`` overwrites ``input`` itself with its gradient — only for a
        caller that no longer needs ``input``.
        """
        _, grad = self._run(input, target, backend, options, grad_output=grad_output, out=out, inplace=inplace)
        return grad

    def value_and_grad(
        self,
        input: Array,
        target: Array,
        /,
        *,
        grad_output: Any = None,
        out: Array | None = None,
        inplace: bool = False,
        backend: str = "auto",
        **options: Any,
    ) -> tuple[Array, Array]:
        """``(loss, grad)`` computed together, in one pass where the backend fuses them (see :meth:`grad`)."""
        return self._run(input, target, backend, options, grad_output=grad_output, out=out, inplace=inplace)

    def _run(
        self,
        input: Array,
        target: Array,
        backend: str,
        options: dict[str, Any],
        *,
        compute_grad: bool = True,
        grad_output: Any = None,
        out: Array | None = None,
        inplace: bool = False,
    ) -> tuple[Array, Any]:
        call = self._prepare(input, target, **options)
        if compute_grad:
            grad_output = check_grad_output(grad_output, call.reduction, call.loss_shape, input)
            if inplace:
                if out is not None:
                    raise ValueError("pass either out= or inplace=True, not both")
                out = input
            if out is not None:
                check_out(out, input)
        registration = select(self.name, backend, input)
        extra = {"out": out} if registration.writes_out else {}
        loss, grad = registration.implementation(
            call.input,
            call.target,
            xp=call.xp,
            reduction=call.reduction,
            grad_output=grad_output,
            compute_grad=compute_grad,
            **extra,
            **call.options,
        )
        if out is not None and grad is not out:
            out[...] = grad
            grad = out
        return loss, grad


def loss_function(reference: Implementation) -> Callable[[Callable[..., Prepared]], LossFunction]:
    """Decorator: the prepare function of a loss, with its reference implementation, becomes the loss."""
    return lambda prepare: LossFunction(prepare, reference)
