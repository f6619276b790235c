"""What the autograd wrappers (``lossk.torch``, ``lossk.jax``) share: which losses they wrap, which options
they pass, and how a saved gradient meets the upstream gradient.

Both wrappers run ``lossk.<loss>.value_and_grad`` once in the forward pass, keep the gradient, and scale
it in the backward pass. Every loss listed in ``lossk.__all__`` as a :class:`lossk.LossFunction` is wrapped,
so a loss added to lossk appears in both without code here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import lossk

NEGATED_TARGET_GRADIENT = frozenset({"l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss"})
"""Losses of the residual ``input - target`` alone: d loss / d target = -(d loss / d input), exactly, weights
included. The gradient with respect to a floating target of any other loss is computed by differentiating
lossk's reference (``backend="array_api"``) with the framework's own autodiff — exact, slower, and only
when that gradient is asked for."""

LABEL_TARGETS = frozenset({"sigmoid_focal_loss", "soft_margin_loss", "hinge_embedding_loss"})
"""Losses whose ``target`` holds labels (binary labels for torchvision's focal loss, where lossk's reference
chooses a branch per label value; ±1 for the margin losses, which PyTorch itself does not differentiate with
respect to ``target``): the wrappers refuse a target that requires a gradient."""

CLASS_AXIS_LOSSES = frozenset({"cross_entropy", "nll_loss"})
"""Losses whose unreduced value drops the class axis 1 of an (N, C, ...) input (an unbatched (C,) input gives
a 0-d loss); every other loss's unreduced value has the input's shape."""

UNWRAPPED_OPTIONS = frozenset({"return_z_loss"})
"""Options that change the number of results; the wrappers return the loss alone."""


def loss_functions() -> dict[str, lossk.LossFunction]:
    """Every ``lossk.LossFunction`` that ``lossk`` exports, by name, in ``lossk.__all__``'s order, except the
    multi-input ones (``lossk._multi_input``: more positional arrays than ``(input, target)`` and a tuple of
    gradients), which the wrappers do not map yet."""
    from lossk._multi_input import MultiInputLossFunction

    return {
        name: function
        for name in lossk.__all__
        if isinstance(function := getattr(lossk, name), lossk.LossFunction)
        and not isinstance(function, MultiInputLossFunction)
    }


def options_of(function: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword options of a lossk loss (its parameters after ``input`` and ``target``), minus
    :data:`UNWRAPPED_OPTIONS` and ``backend``."""
    parameters = list(inspect.signature(function).parameters.values())[2:]
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


def upstream_axes(loss_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Where the unreduced loss's upstream gradient needs a new axis to broadcast against the input.

    ``()`` when the loss has the input's shape (elementwise losses); ``(1,)`` when the loss drops the class
    axis 1 of an (N, C, ...) input (PyTorch's convention for class losses); ``None`` when neither holds.
    A 0-d loss (an unbatched (C,) input) broadcasts as it is.
    """
    if loss_shape in (input_shape, ()):
        return ()
    if len(input_shape) >= 2 and loss_shape == (input_shape[0], *input_shape[2:]):
        return (1,)
    return None


def unreduced_shape(name: str, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
    """The shape of a loss's unreduced value (reduction='none') for an input of ``input_shape``."""
    if name not in CLASS_AXIS_LOSSES:
        return input_shape
    return (input_shape[0], *input_shape[2:]) if len(input_shape) >= 2 else ()
