"""Float64 torch oracles for the catalogue losses (PyTorch, torchvision, optax/Keras, scikit-learn, XGBoost).

Each oracle takes torch tensors and returns the loss tensor after ``reduction``; autograd then gives the gradients
and, by differentiating the gradient's sum once more, the diagonal Hessian (every loss here is separable: each
element's loss depends on that element's input only, so the Hessian with respect to an input is diagonal).

- ``torch.nn.functional`` losses are PyTorch itself (``F.<name>``).
- ``sigmoid_focal_loss`` is torchvision 0.28's ``torchvision.ops.sigmoid_focal_loss`` transcribed line for line
  (torchvision does not import with torch's CPU build here: ``operator torchvision::nms does not exist``).
- The others are small torch formulas of the anchor's definition, checked against the anchor's own literal
  values and the installed library in ``test_catalogue_oracles.py``.

``stable_*`` oracles are float64 formulations for inputs where the anchor's own arithmetic overflows or cancels
(PyTorch's soft margin loss is ``log1p(exp(-y x))``: ``inf`` loss and ``nan`` gradient once ``-y x > 709``;
torchvision's focal loss forms ``1 - p_t`` by subtraction: 0 for logits beyond about 37, then ``nan`` gradients
when ``gamma < 1``). They agree with the anchor wherever the anchor is finite and accurate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def reduce(loss: Tensor, reduction: str, divisor: Tensor | float | None = None) -> Tensor:
    """``none`` / ``sum`` / ``mean`` (the sum over ``divisor``, the element count when ``divisor`` is None)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if divisor is None else loss.sum() / divisor
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def weighted(loss: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    """``loss * weight``; the weighted mean divides by ``sum(weight)`` (scikit-learn's ``np.average``, XGBoost's
    ``esum / wsum``), the plain mean by the element count."""
    if weight is None:
        return reduce(loss, reduction)
    weight = torch.broadcast_to(weight, loss.shape)
    return reduce(loss * weight, reduction, divisor=weight.sum())


# --- torchvision -----------------------------------------------------------------------------------------------


def torchvision_sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2, reduction: str = "none"
) -> Tensor:
    """torchvision 0.28 ``torchvision.ops.focal_loss.sigmoid_focal_loss``, line for line (less the API-usage log)."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)

    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss

    # Check reduction option and return loss accordingly
    if reduction == "none":
        pass
    elif reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    else:
        raise ValueError(
            f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', 'mean', 'sum'"
        )
    return loss


def stable_sigmoid_focal_loss(
    input: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> Tensor:
    """torchvision's focal loss in log space: ``1 - p_t = p (1 - t) + (1 - p) t`` as a log-sum-exp of
    ``log p = -softplus(-x)`` and ``log(1 - p) = -softplus(x)``, so ``(1 - p_t)^gamma = exp(gamma log(1 - p_t))``
    neither underflows to 0 nor meets ``0^(gamma - 1)`` in the gradient."""
    log_p = F.logsigmoid(input)  # F.softplus's backward is exp(x) / (exp(x) + 1): nan past x = 709
    log_not_p = F.logsigmoid(-input)
    # binary targets take their branch directly; a soft target t in (0, 1) bounds 1 - p_t below by min(t, 1 - t),
    # so its logarithm is taken directly (torch.logaddexp's second derivative is nan for far-apart arguments)
    one, nought = target == 1, target == 0
    soft = torch.where(one | nought, torch.full_like(target, 0.5), target)
    mixed = torch.log(torch.sigmoid(input) * (1 - soft) + torch.sigmoid(-input) * soft)
    log_modulus = torch.where(one, log_not_p, torch.where(nought, log_p, mixed))
    ce = F.binary_cross_entropy_with_logits(input, target, reduction="none")
    loss = ce * torch.exp(gamma * log_modulus)
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return reduce(loss, reduction)


def stable_soft_margin_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """``log(1 + exp(-y x))`` as ``-logsigmoid(y x)``: PyTorch's own ``log1p(exp(.))`` overflows past 709."""
    return reduce(-F.logsigmoid(target * input), reduction)


# --- optax / Keras ---------------------------------------------------------------------------------------------


def log_cosh_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """optax ``log_cosh`` (``logaddexp(d, -d) - log 2``, ``d = input - target``), written ``log(cosh(d))`` for
    ``|d| < 15`` and ``|d| + log1p(exp(-2|d|)) - log 2`` beyond: torch.logaddexp's second derivative is nan for
    far-apart arguments, and the second form's autograd Hessian is wrong at ``d = 0``. With a ``weight``, the mean
    divides by the element count, as Keras' ``LogCosh(reduction="sum_over_batch_size")`` does."""
    d = input - target
    small = d.abs() < 15
    near = torch.where(small, d, torch.zeros_like(d))  # no cosh overflow in the branch where() discards
    far = torch.where(small, torch.full_like(d, 15.0), d).abs()
    loss = torch.where(small, torch.log(torch.cosh(near)), far + torch.log1p(torch.exp(-2 * far)) - math.log(2.0))
    if weight is not None:
        loss = loss * weight
    return reduce(loss, reduction)


# --- scikit-learn ----------------------------------------------------------------------------------------------


def pinball_loss(
    input: Tensor, target: Tensor, quantile: float = 0.5, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """scikit-learn ``PinballLoss`` / ``mean_pinball_loss``: ``q (y - x)`` where ``y >= x``, else ``(1 - q)(x - y)``;
    at ``y == x`` the gradient is ``-q`` (``cgradient_pinball_loss``)."""
    loss = torch.where(target >= input, quantile * (target - input), (1 - quantile) * (input - target))
    return weighted(loss, weight, reduction)


def _half_squared_error_log_link(input: Tensor, target: Tensor) -> Tensor:
    return 0.5 * (torch.exp(input) - target) ** 2


def poisson_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """scikit-learn ``HalfPoissonLoss`` (log link, constant ``xlogy(y, y) - y`` dropped): ``exp(x) - y x``."""
    return weighted(torch.exp(input) - target * input, weight, reduction)


def gamma_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """scikit-learn ``HalfGammaLoss`` (log link, constant ``-log(y) - 1`` dropped): ``x + y exp(-x)``."""
    return weighted(input + target * torch.exp(-input), weight, reduction)


def tweedie_loss(
    input: Tensor, target: Tensor, power: float = 1.5, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """scikit-learn ``HalfTweedieLoss`` (log link, constant ``max(y, 0)^(2-p) / ((1-p)(2-p))`` dropped), with its
    branches: half squared error of ``exp(x)`` at ``p = 0``, ``HalfPoissonLoss`` at 1, ``HalfGammaLoss`` at 2."""
    if power == 0:
        loss = _half_squared_error_log_link(input, target)
    elif power == 1:
        loss = torch.exp(input) - target * input
    elif power == 2:
        loss = input + target * torch.exp(-input)
    else:
        loss = torch.exp((2 - power) * input) / (2 - power) - target * torch.exp((1 - power) * input) / (1 - power)
    return weighted(loss, weight, reduction)


# --- XGBoost ---------------------------------------------------------------------------------------------------


def pseudo_huber_loss(
    input: Tensor, target: Tensor, delta: float = 1.0, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """XGBoost ``reg:pseudohubererror`` and its metric ``mphe``: ``delta^2 (sqrt(1 + (z / delta)^2) - 1)``, ``z =
    input - target``; the weighted mean is ``sum(w l) / sum(w)`` (``EvalPseudoHuber``)."""
    z = input - target
    loss = delta**2 * (torch.sqrt(1 + (z / delta) ** 2) - 1)
    return weighted(loss, weight, reduction)


# --- the table the tests walk ----------------------------------------------------------------------------------

ORACLES: dict[str, Callable[..., Tensor]] = {
    "poisson_nll_loss": F.poisson_nll_loss,
    "gaussian_nll_loss": F.gaussian_nll_loss,
    "soft_margin_loss": F.soft_margin_loss,
    "multilabel_soft_margin_loss": F.multilabel_soft_margin_loss,
    "hinge_embedding_loss": F.hinge_embedding_loss,
    "margin_ranking_loss": F.margin_ranking_loss,
    "sigmoid_focal_loss": torchvision_sigmoid_focal_loss,
    "log_cosh_loss": log_cosh_loss,
    "pinball_loss": pinball_loss,
    "pseudo_huber_loss": pseudo_huber_loss,
    "tweedie_loss": tweedie_loss,
    "gamma_loss": gamma_loss,
    "poisson_loss": poisson_loss,
}
"""lossk name -> float64 oracle, called as ``oracle(*arrays, reduction=..., **options)``."""

ARGUMENTS: dict[str, tuple[str, ...]] = {
    "gaussian_nll_loss": ("input", "target", "var"),
    "margin_ranking_loss": ("input1", "input2", "target"),
}
"""Positional array arguments of each oracle, where they are not ``(input, target)``."""

DIFFERENTIABLE: dict[str, tuple[str, ...]] = {
    "gaussian_nll_loss": ("input", "var"),
    "margin_ranking_loss": ("input1", "input2"),
}
"""The arrays each loss differentiates with respect to, in the order lossk returns the gradients (default
``("input",)``)."""


def arguments(name: str) -> tuple[str, ...]:
    return ARGUMENTS.get(name, ("input", "target"))


def differentiable(name: str) -> tuple[str, ...]:
    return DIFFERENTIABLE.get(name, ("input",))


def _tensor(x: Any, requires_grad: bool = False) -> Any:
    if x is None or isinstance(x, (bool, int, float)):
        return x
    return torch.tensor(np.array(x, dtype=np.float64), dtype=torch.float64, requires_grad=requires_grad)


def value_grads_hessians(
    name: str,
    arrays: dict[str, Any],
    *,
    reduction: str,
    oracle: Callable[..., Tensor] | None = None,
    **options: Any,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(loss, {argument: gradient}, {argument: diagonal Hessian}) of the float64 oracle, as NumPy arrays.

    ``arrays`` maps the argument names of ``arguments(name)`` to NumPy arrays (``var`` may be a float);
    ``options`` go to the oracle as keywords (a ``weight`` array is turned into a tensor). The gradient is that of
    the loss summed over its output (``grad_output`` of ones); the Hessian diagonal is the gradient of the summed
    gradient, which is the diagonal for these separable losses.
    """
    oracle = oracle or ORACLES[name]
    wrt = differentiable(name)
    tensors = {
        key: _tensor(arrays[key], requires_grad=key in wrt and not isinstance(arrays[key], float))
        for key in arguments(name)
    }
    keywords = {key: _tensor(value) if isinstance(value, np.ndarray) else value for key, value in options.items()}
    loss = oracle(*tensors.values(), reduction=reduction, **keywords)
    leaves = [tensors[key] for key in wrt if isinstance(tensors[key], torch.Tensor)]
    names = [key for key in wrt if isinstance(tensors[key], torch.Tensor)]
    if loss.numel() == 0:
        zeros = {key: np.zeros(tensors[key].shape) for key in names}
        return loss.detach().numpy(), zeros, dict(zeros)
    grads = torch.autograd.grad(loss.sum(), leaves, create_graph=True, allow_unused=True)
    gradients, hessians = {}, {}
    for key, leaf, grad in zip(names, leaves, grads, strict=True):
        if grad is None:
            gradients[key] = hessians[key] = np.zeros(leaf.shape)
            continue
        gradients[key] = grad.detach().numpy()
        if grad.requires_grad:
            (second,) = torch.autograd.grad(grad.sum(), leaf, retain_graph=True, allow_unused=True)
            hessians[key] = np.zeros(leaf.shape) if second is None else second.detach().numpy()
        else:  # piecewise-linear losses: the gradient does not depend on the input
            hessians[key] = np.zeros(leaf.shape)
    return loss.detach().numpy(), gradients, hessians
