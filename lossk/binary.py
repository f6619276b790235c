"""Binary classification losses: BCE on probabilities and on logits, with PyTorch's signatures."""

from __future__ import annotations

from types import ModuleType

from ._array_api import Array, namespace_of
from ._loss_function import Prepared, loss_function
from ._reference import binary as reference
from ._validation import (
    check_array,
    check_floating,
    check_reduction,
    check_same_shape,
    check_values_in_unit_interval,
)


def _broadcast_option(name: str, value: Array | None, input: Array, xp: ModuleType) -> Array | None:
    """A per-element option (``weight``, ``pos_weight``) broadcast to the input's shape, as PyTorch does."""
    if value is None:
        return None
    check_floating(name, value, xp)
    try:
        return xp.broadcast_to(value, tuple(input.shape))
    except (ValueError, RuntimeError) as error:
        raise ValueError(
            f"{name} of shape {tuple(value.shape)} does not broadcast to the input's shape {tuple(input.shape)}"
        ) from error


def _prepare_binary(input: Array, target: Array, reduction: str, **options: Array | None) -> Prepared:
    check_array("input", input)
    check_array("target", target)
    xp = namespace_of(input=input, target=target, **options)
    check_floating("input", input, xp)
    check_floating("target", target, xp)
    check_same_shape("target", target, "input", input)
    check_reduction(reduction)
    broadcast = {name: _broadcast_option(name, value, input, xp) for name, value in options.items()}
    return Prepared(xp, input, target, reduction, tuple(input.shape), broadcast)


@loss_function(reference.binary_cross_entropy)
def binary_cross_entropy(
    input: Array, target: Array, *, weight: Array | None = None, reduction: str = "mean"
) -> Prepared:
    r"""Binary cross-entropy between probabilities ``input`` in [0, 1] and ``target``.

    .. math::
        \ell_i = -w_i \left[y_i \max(\log x_i, -100) + (1 - y_i) \max(\log(1 - x_i), -100)\right],
        \qquad \partial \ell_i / \partial x_i = w_i \frac{x_i - y_i}{\max(x_i (1 - x_i), 10^{-12})}

    The clamps are PyTorch's: probabilities of exactly 0 or 1 give finite losses and gradients.
    ``weight`` broadcasts to the input's shape; the mean divides by the element count. Input values
    outside [0, 1] (NaN included) raise ``ValueError`` on host arrays, as in PyTorch. Prefer
    :func:`binary_cross_entropy_with_logits`, which is stable for any logit.
    PyTorch equivalent: ``torch.nn.functional.binary_cross_entropy``.

    >>> import numpy as np, lossk
    >>> round(float(lossk.binary_cross_entropy(np.array([0.9, 0.2]), np.array([1.0, 0.0]))), 6)
    0.164252
    """
    loss = _prepare_binary(input, target, reduction, weight=weight)
    check_values_in_unit_interval("input", input, loss.xp)
    return loss


@loss_function(reference.binary_cross_entropy_with_logits)
def binary_cross_entropy_with_logits(
    input: Array,
    target: Array,
    *,
    weight: Array | None = None,
    reduction: str = "mean",
    pos_weight: Array | None = None,
) -> Prepared:
    r"""Binary cross-entropy on logits: sigmoid and BCE in one numerically stable formula.

    .. math::
        \ell_i = w_i \left[(1 - y_i) x_i + l_i \operatorname{softplus}(-x_i)\right], \quad l_i = 1 + (p_i - 1) y_i,
        \qquad \partial \ell_i / \partial x_i = w_i \left[l_i \sigma(x_i) - p_i y_i\right]

    with ``p = pos_weight`` (1 without one), broadcast along the last axis as in PyTorch.
    ``softplus(-x) = log1p(exp(-|x|)) + max(-x, 0)`` never overflows, so saturated logits (±1e4) stay finite.
    PyTorch equivalent: ``torch.nn.functional.binary_cross_entropy_with_logits``.

    >>> import numpy as np, lossk
    >>> round(float(lossk.binary_cross_entropy_with_logits(np.array([2.0, -1.0]), np.array([1.0, 0.0]))), 6)
    0.220095
    """
    return _prepare_binary(input, target, reduction, weight=weight, pos_weight=pos_weight)
