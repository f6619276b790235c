"""Loss objects with PyTorch's class names, for hand-written training loops.

``criterion(input, target)`` returns the loss and keeps its gradient, computed in the same fused pass;
``criterion.backward()`` returns d loss / d input for that call::

    criterion = lossk.CrossEntropyLoss(label_smoothing=0.1)
    loss = criterion(logits, labels)
    d_logits = criterion.backward()          # where backpropagation starts
"""

from __future__ import annotations

from typing import Any

from . import binary, classification, divergence, regression
from ._array_api import Array
from ._loss_function import LossFunction


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


class L1Loss(Loss):
    """Mean absolute error; see :func:`lossk.l1_loss`. PyTorch: ``torch.nn.L1Loss``."""

    function = regression.l1_loss

    def __init__(self, reduction: str = "mean", *, weight: Array | None = None, backend: str = "auto") -> None:
        super().__init__(reduction=reduction, backend=backend, weight=weight)


class MSELoss(Loss):
    """Mean squared error; see :func:`lossk.mse_loss`. PyTorch: ``torch.nn.MSELoss``."""

    function = regression.mse_loss

    def __init__(self, reduction: str = "mean", *, weight: Array | None = None, backend: str = "auto") -> None:
        super().__init__(reduction=reduction, backend=backend, weight=weight)


class HuberLoss(Loss):
    """Huber loss; see :func:`lossk.huber_loss`. PyTorch: ``torch.nn.HuberLoss``."""

    function = regression.huber_loss

    def __init__(
        self, reduction: str = "mean", delta: float = 1.0, *, weight: Array | None = None, backend: str = "auto"
    ) -> None:
        super().__init__(reduction=reduction, backend=backend, delta=delta, weight=weight)


class SmoothL1Loss(Loss):
    """Smooth L1 loss; see :func:`lossk.smooth_l1_loss`. PyTorch: ``torch.nn.SmoothL1Loss``."""

    function = regression.smooth_l1_loss

    def __init__(self, reduction: str = "mean", beta: float = 1.0, *, backend: str = "auto") -> None:
        super().__init__(reduction=reduction, backend=backend, beta=beta)


class BCELoss(Loss):
    """Binary cross-entropy on probabilities; see :func:`lossk.binary_cross_entropy`. PyTorch: ``torch.nn.BCELoss``."""

    function = binary.binary_cross_entropy

    def __init__(self, weight: Array | None = None, reduction: str = "mean", *, backend: str = "auto") -> None:
        super().__init__(reduction=reduction, backend=backend, weight=weight)


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits; see :func:`lossk.binary_cross_entropy_with_logits`.

    PyTorch: ``torch.nn.BCEWithLogitsLoss``.
    """

    function = binary.binary_cross_entropy_with_logits

    def __init__(
        self,
        weight: Array | None = None,
        reduction: str = "mean",
        pos_weight: Array | None = None,
        *,
        backend: str = "auto",
    ) -> None:
        super().__init__(reduction=reduction, backend=backend, weight=weight, pos_weight=pos_weight)


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


class KLDivLoss(Loss):
    """Kullback-Leibler divergence; see :func:`lossk.kl_div`. PyTorch: ``torch.nn.KLDivLoss``."""

    function = divergence.kl_div

    def __init__(self, reduction: str = "mean", log_target: bool = False, *, backend: str = "auto") -> None:
        super().__init__(reduction=reduction, backend=backend, log_target=log_target)
