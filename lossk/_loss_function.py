"""The public face of every loss: a callable with ``.grad``, ``.value_and_grad``, ``.hessian`` and
``.value_grad_hessian`` (the diagonal second derivative, :mod:`lossk._hessian`), and a signature that tells the truth.

A loss is declared by its *prepare* function, which takes the loss's arguments, validates them and returns
a :class:`Prepared` call. The elementwise losses' prepare functions are built from their specs
(:func:`elementwise_loss_function`); cross-entropy and NLL write theirs out (``lossk.classification``)
and use the :func:`loss_function` decorator. Implementations are registered by the backends themselves
(``lossk._reference`` registers the reference when imported).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ._array_api import Array
from ._dispatch import Implementation, select
from ._hessian import value_grad_hessian
from ._spec import ElementwiseLoss, docstring, parameters, prepare_arguments, resolve
from ._validation import check_grad_output, check_out, inplace_out


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
    loss: str | None = None
    """The loss whose implementations compute this call, where it is another one (a spec's rewrite)."""


_GRAD_KEYWORDS = (
    inspect.Parameter("grad_output", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Any"),
    inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Array | None"),
    inspect.Parameter("inplace", inspect.Parameter.KEYWORD_ONLY, default=False, annotation="bool"),
)
_BACKEND = inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default="auto", annotation="str")

_GRAD_DOC = """d loss / d input of :func:`lossk.{name}`, shaped like ``input``, times ``grad_output``.

``grad_output`` is the upstream gradient: a scalar for 'mean' and 'sum' (default 1), an array shaped like
the unreduced loss for 'none' (default ones). ``out`` receives the gradient (no allocation on the fused
backends); ``inplace=True`` overwrites ``input`` itself with its gradient — only for a caller that no
longer needs ``input``. The other arguments are those of :func:`lossk.{name}`.
"""

_VALUE_AND_GRAD_DOC = """``(loss, grad)`` of :func:`lossk.{name}`, in one pass where the backend fuses them.

See ``lossk.{name}.grad`` for ``grad_output``, ``out`` and ``inplace``.
"""

_HESSIAN_DOC = """The diagonal of the Hessian, d² loss / d input², of :func:`lossk.{name}`, shaped like ``input``.

Weighted and scaled by the reduction and ``grad_output`` exactly like ``lossk.{name}.grad`` ('mean'
divides by the same divisor). ``out`` receives it. For gradient boosting, see :mod:`lossk.boosting`.
The other arguments are those of :func:`lossk.{name}`.
"""

_VALUE_GRAD_HESSIAN_DOC = """``(loss, grad, hess)`` of :func:`lossk.{name}`: the Hessian's diagonal in the gradient's pass.

``out`` receives the gradient and ``hess_out`` the Hessian (both written directly where the backend can);
see ``lossk.{name}.grad`` for ``grad_output`` and ``lossk.{name}.hessian`` for the Hessian.
"""

_HESSIAN_KEYWORDS = (
    inspect.Parameter("grad_output", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Any"),
    inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Array | None"),
)
_HESS_OUT = inspect.Parameter("hess_out", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Array | None")


class LossFunction:
    """``loss(input, target, ...)`` returns the loss; ``.grad`` d loss / d input; ``.value_and_grad`` both.

    Options are those of the PyTorch function of the same name, keyword-only, plus ``backend``:
    ``"auto"`` (default), ``"array_api"`` (the pure Array API reference), ``"numba"`` or ``"cupy"``.
    ``inspect.signature`` and ``help`` show each entry point's full signature.
    """

    def __init__(
        self, prepare: Callable[..., Prepared], *, name: str | None = None,
        signature: inspect.Signature | None = None, doc: str | None = None, module: str | None = None,
    ) -> None:
        self._prepare = prepare
        self.name: str = name or prepare.__name__
        self.__name__ = self.__qualname__ = self.name
        self.__module__ = module or prepare.__module__
        self.__doc__ = doc if doc is not None else prepare.__doc__
        self.__wrapped__ = prepare  # doctest finds the examples through it
        arguments = list((signature or _public_signature(prepare)).parameters.values())
        arrays = [p for p in arguments if p.kind is inspect.Parameter.POSITIONAL_ONLY]
        keywords = [p for p in arguments if p.kind is not inspect.Parameter.POSITIONAL_ONLY]
        self.__signature__ = inspect.Signature([*arrays, *keywords, _BACKEND], return_annotation="Array")
        self.grad = self._entry_point(
            "grad", self._grad, inspect.Signature([*arrays, *keywords, *_GRAD_KEYWORDS, _BACKEND], return_annotation="Array"),
            _GRAD_DOC,
        )
        self.value_and_grad = self._entry_point(
            "value_and_grad", self._value_and_grad,
            inspect.Signature([*arrays, *keywords, *_GRAD_KEYWORDS, _BACKEND], return_annotation="tuple[Array, Array]"),
            _VALUE_AND_GRAD_DOC,
        )
        self.hessian = self._entry_point(
            "hessian", self._hessian,
            inspect.Signature([*arrays, *keywords, *_HESSIAN_KEYWORDS, _BACKEND], return_annotation="Array"),
            _HESSIAN_DOC,
        )
        self.value_grad_hessian = self._entry_point(
            "value_grad_hessian", self._value_grad_hessian,
            inspect.Signature([*arrays, *keywords, *_HESSIAN_KEYWORDS, _HESS_OUT, _BACKEND],
                              return_annotation="tuple[Array, Array, Array]"),
            _VALUE_GRAD_HESSIAN_DOC,
        )

    def _entry_point(self, method: str, run: Callable[..., Any], signature: inspect.Signature, doc: str) -> Callable[..., Any]:
        def entry_point(*args: Any, **kwargs: Any) -> Any:
            return run(*args, **kwargs)

        entry_point.__name__ = method
        entry_point.__qualname__ = f"{self.name}.{method}"
        entry_point.__module__ = self.__module__
        entry_point.__doc__ = doc.format(name=self.name)
        entry_point.__signature__ = signature  # type: ignore[attr-defined]
        return entry_point

    def __repr__(self) -> str:
        return f"<lossk loss function {self.name}>"

    def __get__(self, instance: Any, owner: type | None = None) -> LossFunction:
        """A loss stored on a class stays the loss (no binding); also makes ``help`` show it as a routine."""
        return self

    def __call__(self, input: Array, target: Array, /, *, backend: str = "auto", **options: Any) -> Array:
        """The loss: 0-d for reduction 'mean' and 'sum', the unreduced shape for 'none'."""
        loss, _ = self._run(input, target, backend, options, compute_grad=False)
        return loss

    def _grad(
        self, input: Array, target: Array, /, *, grad_output: Any = None, out: Array | None = None,
        inplace: bool = False, backend: str = "auto", **options: Any,
    ) -> Array:
        _, grad = self._run(input, target, backend, options, grad_output=grad_output, out=out, inplace=inplace)
        return grad

    def _value_and_grad(
        self, input: Array, target: Array, /, *, grad_output: Any = None, out: Array | None = None,
        inplace: bool = False, backend: str = "auto", **options: Any,
    ) -> tuple[Array, Array]:
        return self._run(input, target, backend, options, grad_output=grad_output, out=out, inplace=inplace)

    def _hessian(
        self, input: Array, target: Array, /, *, grad_output: Any = None, out: Array | None = None,
        backend: str = "auto", **options: Any,
    ) -> Array:
        return value_grad_hessian(self, input, target, grad_output=grad_output, hess_out=out, backend=backend,
                                  **options)[2]

    def _value_grad_hessian(
        self, input: Array, target: Array, /, *, grad_output: Any = None, out: Array | None = None,
        hess_out: Array | None = None, backend: str = "auto", **options: Any,
    ) -> tuple[Any, Array, Array]:
        return value_grad_hessian(self, input, target, grad_output=grad_output, out=out, hess_out=hess_out,
                                  backend=backend, **options)

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
                out = inplace_out(out, input)
            if out is not None:
                check_out(out, input)
        registration = select(call.loss or self.name, backend, input)
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


def _public_signature(prepare: Callable[..., Prepared]) -> inspect.Signature:
    """A prepare function's signature as the public one: its array arguments positional-only."""
    arguments = []
    for p in inspect.signature(prepare).parameters.values():
        kind = inspect.Parameter.POSITIONAL_ONLY if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD else p.kind
        arguments.append(p.replace(kind=kind))
    return inspect.Signature(arguments)


def loss_function(reference: Implementation | None = None) -> Callable[[Callable[..., Prepared]], LossFunction]:
    """Decorator: the prepare function of a hand-written loss becomes the loss.

    ``reference`` names the loss's reference implementation for the reader; ``lossk._reference`` registers it.
    """
    return lambda prepare: LossFunction(prepare)


def elementwise_loss_function(spec: ElementwiseLoss, module: str) -> LossFunction:
    """The public loss of ``spec``, exported from the module ``module``: validation, signature and docstring."""
    signature = inspect.Signature(parameters(spec))

    def prepare(*arrays: Array, **options: Any) -> Prepared:
        bound = signature.bind(*arrays, **options)
        bound.apply_defaults()
        values = dict(bound.arguments)
        inputs = {name: values.pop(name) for name in spec.inputs}
        xp, prepared = prepare_arguments(spec, inputs, values)
        loss, prepared = resolve(spec, prepared)
        input, target = inputs["input"], inputs["target"]
        return Prepared(xp, input, target, values["reduction"], tuple(input.shape), prepared, loss=loss)

    prepare.__name__ = prepare.__qualname__ = spec.name
    prepare.__module__ = module
    prepare.__doc__ = docstring(spec)
    return LossFunction(prepare, signature=signature, module=module)
