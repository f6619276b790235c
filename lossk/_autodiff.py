"""What the autograd wrappers (``lossk.torch``, ``lossk.jax``) share: which losses they wrap, which options
they pass, and how a saved gradient meets the upstream gradient.

Both wrappers run ``lossk.<loss>.value_and_grad`` once in the forward pass, keep the gradient, and scale
it in the backward pass. Every loss listed in ``lossk.__all__`` as a :class:`lossk.LossFunction` is wrapped,
so a loss added to lossk appears in both without code here; the multi-input losses
(``lossk._multi_input``) included: their positional arrays and the arguments their fused gradients belong to
come from their specs (:func:`arrays_of`, :func:`differentiable_of`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import lossk
from lossk._multi_input import MultiInputLossFunction
from lossk._multi_input import broadcast_shapes as _broadcast_shapes

NEGATED_TARGET_GRADIENT = frozenset({"l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss", "gaussian_nll_loss"})
"""Losses whose ``input`` and ``target`` enter through the residual ``input - target`` alone (the other
arguments, gaussian_nll_loss's ``var``, aside): d loss / d target = -(d loss / d input), exactly, weights
included (summed back to the target's shape where it was broadcast). The gradient with respect to a
floating target of any other loss is computed by differentiating lossk's reference
(``backend="array_api"``) with the framework's own autodiff — exact, slower, and only when that gradient is
asked for."""

LABEL_TARGETS = frozenset({"sigmoid_focal_loss", "soft_margin_loss", "hinge_embedding_loss"})
"""Losses whose ``target`` holds labels (binary labels for torchvision's focal loss, where lossk's reference
chooses a branch per label value; ±1 for the margin losses, which PyTorch itself does not differentiate with
respect to ``target``): the wrappers refuse a target that requires a gradient."""

CLASS_AXIS_LOSSES = frozenset({"cross_entropy", "nll_loss"})
"""Losses whose unreduced value drops the class axis 1 of an (N, C, ...) input (an unbatched (C,) input gives
a 0-d loss); the row-mean losses (a spec's ``row_mean``) drop the last axis; every other loss's unreduced
value has the input's shape."""

UNWRAPPED_OPTIONS = frozenset({"return_z_loss"})
"""Options that change the number of results; the wrappers return the loss alone."""


def target_within_input(input_shape: Sequence[int], target_shape: Sequence[int]) -> bool:
    """Whether a target of ``target_shape`` broadcasts to the input's shape (not beyond it): only then is its
    gradient, for a loss of :data:`NEGATED_TARGET_GRADIENT`, minus the input's summed to its shape. A target
    that broadcasts the input (gaussian_nll_loss's input of (D,) against a target of (N, D)) has a gradient of
    more entries than the input's: the wrappers take it from the reference."""
    input_shape, target_shape = tuple(input_shape), tuple(target_shape)
    return len(target_shape) <= len(input_shape) and all(
        t in (1, i) for t, i in zip(target_shape[::-1], input_shape[::-1]))


def loss_functions() -> dict[str, lossk.LossFunction]:
    """Every ``lossk.LossFunction`` that ``lossk`` exports, by name, in ``lossk.__all__``'s order."""
    return {
        name: function for name in lossk.__all__ if isinstance(function := getattr(lossk, name), lossk.LossFunction)
    }


def _multi_input_spec(function: Callable[..., Any]) -> Any:
    """The spec of a multi-input loss (``lossk._multi_input``), else None."""
    return function.spec if isinstance(function, MultiInputLossFunction) else None


def arrays_of(function: Callable[..., Any]) -> tuple[str, ...]:
    """The positional arrays of a loss: its spec's ``inputs`` for a multi-input loss, else input and target."""
    spec = _multi_input_spec(function)
    return ("input", "target") if spec is None else tuple(spec.inputs)


def differentiable_of(function: Callable[..., Any]) -> tuple[str, ...]:
    """The positional arrays whose gradients ``value_and_grad`` returns, in its order (the first array first)."""
    spec = _multi_input_spec(function)
    return ("input",) if spec is None else tuple(spec.differentiable)


def broadcast_shapes(function: Callable[..., Any], shapes: Sequence[tuple[int, ...]]
                     ) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]] | None:
    """``(expanded, full)`` for the positional arrays of a multi-input loss, of ``shapes``: the shape each takes
    before broadcasting and the shape they broadcast to together (``lossk._multi_input.broadcast_shapes``; raises
    ``ValueError`` naming the arguments for shapes lossk refuses); None for a loss of ``(input, target)``."""
    spec = _multi_input_spec(function)
    if spec is None:
        return None
    expanded, full = _broadcast_shapes(spec, dict(zip(spec.inputs, (tuple(s) for s in shapes))))
    return tuple(expanded[name] for name in spec.inputs), full


def is_row_mean(name: str) -> bool:
    """Whether a loss averages each row (the last axis) before its reduction (a spec's ``row_mean``)."""
    spec = _multi_input_spec(getattr(lossk, name))
    return spec is not None and spec.row_mean


def options_of(function: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword options of a lossk loss (its parameters after its positional arrays), minus
    :data:`UNWRAPPED_OPTIONS` and ``backend``."""
    parameters = list(inspect.signature(function).parameters.values())[len(arrays_of(function)):]
    return {
        p.name: p
        for p in parameters
        if p.kind is not inspect.Parameter.VAR_KEYWORD and p.name not in UNWRAPPED_OPTIONS | {"backend"}
    }


def annotation_text(parameter: inspect.Parameter) -> str:
    """A parameter's annotation as text (lossk writes them as strings: ``from __future__ import annotations``)."""
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return ""
    return annotation if isinstance(annotation, str) else str(annotation)


def is_array_option(parameter: inspect.Parameter) -> bool:
    """Whether an option holds an array (``weight``, ``pos_weight``, ...), from its annotation."""
    text = annotation_text(parameter)
    return "Array" in text or "Tensor" in text


def dropped_axis(name: str, ndim: int) -> int | None:
    """The input axis a loss's unreduced value drops (:data:`CLASS_AXIS_LOSSES`: the class axis 1, or 0 for an
    unbatched (C,) input; row-mean losses: the last), None for losses whose unreduced value has the input's shape."""
    if name in CLASS_AXIS_LOSSES:
        return 1 if ndim >= 2 else 0
    return ndim - 1 if is_row_mean(name) and ndim else None


def upstream_axes(name: str, loss_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Where the unreduced loss's upstream gradient needs a new axis to broadcast against the input.

    ``()`` when the loss has the input's shape (elementwise losses) or is 0-d; the axis the loss drops
    (:func:`dropped_axis`) when it has the input's shape without that axis; ``None`` when neither holds.
    """
    if loss_shape in (input_shape, ()):
        return ()
    if loss_shape == unreduced_shape(name, input_shape):
        return (dropped_axis(name, len(input_shape)),)
    return None


def unreduced_shape(name: str, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
    """The shape of a loss's unreduced value (reduction='none') for an input of ``input_shape``."""
    axis = dropped_axis(name, len(input_shape))
    return input_shape if axis is None else (*input_shape[:axis], *input_shape[axis + 1:])
