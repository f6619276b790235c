"""Loss objects with PyTorch's class names, for hand-written training loops.

``criterion(input, target)`` returns the loss and keeps its gradient, computed in the same fused pass;
``criterion.backward()`` returns d loss / d input for that call::

    criterion = lossk.CrossEntropyLoss(label_smoothing=0.1)
    loss = criterion(logits, labels)
    d_logits = criterion.backward()          # where backpropagation starts
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from . import classification
from ._array_api import Array
from ._loss_function import LossFunction
from ._losses import ELEMENTWISE_LOSSES, FAMILY_OF
from ._spec import ElementwiseLoss


class Loss:
    """Base class: a :class:`~lossk.LossFunction` with its options fixed at construction."""

    function: LossFunction

    def __init__(self, *, reduction: str = "mean", backend: str = "auto", **options: Any) -> None:
        self.reduction = reduction
        self.backend = backend
        self.options = options
        self._last: tuple[Array, Array, Array] | None = None

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in {"reduction": self.reduction, **self.options}.items())
        return f"{type(self).__name__}({settings})"

    def __call__(self, input: Array, target: Array) -> Array:
        """The loss; its gradient is computed in the same pass and kept for :meth:`backward`."""
        loss, grad = self.function.value_and_grad(
            input, target, reduction=self.reduction, backend=self.backend, **self.options
        )
        self._last = (input, target, grad)
        return loss

    def backward(self, grad_output: Any = None) -> Array:
        """d loss / d input for the last call, times ``grad_output`` (a scalar, or an array for reduction='none')."""
        if self._last is None:
            raise RuntimeError(f"call the {type(self).__name__} on an input before asking for its backward")
        input, target, grad = self._last
        if grad_output is None:
            return grad
        return self.function.grad(
            input, target, grad_output=grad_output, reduction=self.reduction, backend=self.backend, **self.options
        )


class CrossEntropyLoss(Loss):
    """Cross-entropy on logits; see :func:`lossk.cross_entropy`. PyTorch: ``torch.nn.CrossEntropyLoss``.

    With ``return_z_loss=True`` a call returns ``(loss, z_term)``.
    """

    function = classification.cross_entropy

    def __init__(
        self,
        weight: Array | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
        return_z_loss: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            reduction=reduction, backend=backend, weight=weight, ignore_index=ignore_index,
            label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap, return_z_loss=return_z_loss,
        )


class NLLLoss(Loss):
    """Negative log-likelihood; see :func:`lossk.nll_loss`. PyTorch: ``torch.nn.NLLLoss``."""

    function = classification.nll_loss

    def __init__(
        self, weight: Array | None = None, ignore_index: int = -100, reduction: str = "mean", *, backend: str = "auto"
    ) -> None:
        super().__init__(reduction=reduction, backend=backend, weight=weight, ignore_index=ignore_index)


def elementwise_class(spec: ElementwiseLoss) -> type[Loss]:
    """The class of an elementwise loss, with ``torch.nn``'s name and positional arguments (``spec.class_positional``)."""
    function = getattr(importlib.import_module(f"lossk.{FAMILY_OF[spec.name]}"), spec.name)
    by_name = {option.name: option for option in spec.options}
    positional = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=by_name[name].default)
        for name in spec.class_positional
    ]
    keyword = [
        inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default)
        for o in spec.options if o.name not in spec.class_positional
    ]
    backend = inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default="auto")
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    signature = inspect.Signature([self_parameter, *positional, *keyword, backend])

    def __init__(self: Loss, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = bound.arguments
        Loss.__init__(
            self, reduction=values["reduction"], backend=values["backend"],
            **{o.name: values[o.name] for o in spec.keyword_options},
        )

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{spec.class_name}.__init__"
    torch_class = f" PyTorch: ``torch.nn.{spec.class_name}``." if spec.torch_function else ""
    doc = f"{spec.summary[:-1] if spec.summary.endswith('.') else spec.summary}; see :func:`lossk.{spec.name}`.{torch_class}"
    return type(spec.class_name, (Loss,), {"function": function, "__init__": __init__, "__doc__": doc, "__module__": __name__})


ELEMENTWISE_CLASSES: dict[str, type[Loss]] = {
    spec.class_name: elementwise_class(spec) for spec in ELEMENTWISE_LOSSES.values()
}
globals().update(ELEMENTWISE_CLASSES)
