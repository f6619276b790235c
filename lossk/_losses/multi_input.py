r"""Losses of more than ``(input, target)``: Gaussian NLL (gradients for ``input`` and ``var``) and margin ranking
(gradients for ``input1`` and ``input2``) — one :class:`~lossk._spec.ElementwiseLoss` each.

As in the other definition modules, each loss is written twice with the same operations: ``_<loss>`` on arrays
returns ``(loss, (d1_a, d1_b), (d2_a, d2_b))`` and ``_<loss>_element`` on scalars ``(loss, d1_a, d1_b, d2_a,
d2_b)``, the derivatives with respect to the spec's ``differentiable`` arguments in that order. The public
functions, the reference and the Numba host side are built by ``lossk._multi_input``.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np

from .._array_api import is_cpu_eager
from .._spec import FLAG_KIND, SCALAR_KIND, Domain, ElementwiseLoss, Option, reduction_option, weight_option
from .._validation import check_positive
from .domains import last_axis
from .scalar import cast_like, exp_of, log1p_unit_of, log_of

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
"""The constant of the Gaussian log-density that ``full=True`` adds."""

# ---- Gaussian negative log-likelihood ---------------------------------------------------------------------


def _gaussian_nll(xp, x, y, v, *, order, full, eps):
    # torch clamps a clone of var under no_grad: the value is clamped, the gradient flows as through the identity
    vc = xp.where(v < eps, xp.full_like(v, eps), v)
    d = x - y
    q = d * d / vc
    loss = 0.5 * (xp.log(vc) + q) + (HALF_LOG_2PI if full else 0.0)
    d1 = (d / vc, 0.5 * (1 - q) / vc) if order >= 1 else None
    d2 = (1 / vc, (q - 0.5) / (vc * vc)) if order >= 2 else None
    return loss, d1, d2


def _gaussian_nll_element(x, y, v, full, eps):
    half = cast_like(0.5, x)
    one = cast_like(1.0, x)
    floor = cast_like(eps, x)
    vc = floor if v < floor else v
    d = x - y
    q = d * d / vc
    loss = half * (log_of(vc) + q) + (cast_like(HALF_LOG_2PI, x) if full else cast_like(0.0, x))
    return loss, d / vc, half * (one - q) / vc, one / vc, (q - half) / (vc * vc)


def _var_shape(name: str, input_shape: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shapes torch 2.13 accepts for ``var`` (``torch/nn/functional.py``), as the shape broadcast from."""
    if shape == input_shape:
        return shape
    if input_shape[:-1] == shape:
        return (*shape, 1)
    if len(input_shape) == len(shape) and sum(v for i, v in zip(input_shape, shape) if i != v) == 1:
        return shape
    raise ValueError(f"{name} of shape {shape} is of incorrect size for input of shape {input_shape}: shaped "
                     "like input, like input without its last dimension, or with one dimension of size 1")


def _check_var(xp, arrays):
    var = arrays["var"]
    if not is_cpu_eager(var) or math.prod(var.shape) == 0:
        return
    # one reduction without a temporary; a NaN minimum hides the sign of the rest, so then the full test
    # (PyTorch raises for a negative entry beside a NaN)
    smallest = xp.min(var)
    if bool(smallest < 0) or (bool(xp.isnan(smallest)) and bool(xp.any(var < 0))):
        raise ValueError("var has negative entry/entries")


def _gaussian_draw(rng, shape, options, differentiable):
    # differentiable: var above the clamp at eps (the loss is flat below it, while its gradient, as PyTorch's, is
    # taken at the clamped value); otherwise down to 0, across the clamp
    low = options.get("eps", 0.0) + 0.1 if differentiable else 0.0
    return {"input": rng.normal(0, 2, shape), "target": rng.normal(0, 2, shape), "var": rng.uniform(low, 4.0, shape)}


GAUSSIAN_NLL_LOSS = ElementwiseLoss(
    name="gaussian_nll_loss",
    class_name="GaussianNLLLoss",
    summary="Gaussian negative log-likelihood of ``target`` under mean ``input`` and variance ``var``.",
    math=r"""
.. math::
    \ell_i = \tfrac12 \left(\log v_i + \frac{(x_i - y_i)^2}{v_i}\right) \; [+ \tfrac12 \log 2\pi],
    \quad v_i = \max(\mathrm{var}_i, \epsilon),
    \qquad \frac{\partial \ell_i}{\partial x_i} = \frac{x_i - y_i}{v_i},
    \qquad \frac{\partial \ell_i}{\partial \mathrm{var}_i} = \frac{1 - q_i}{2 v_i}, \quad q_i = \frac{(x_i - y_i)^2}{v_i},

.. math::
    \frac{\partial^2 \ell_i}{\partial x_i^2} = \frac{1}{v_i},
    \qquad \frac{\partial^2 \ell_i}{\partial \mathrm{var}_i^2} = \frac{q_i - 1/2}{v_i^2}
""",
    notes="""
    ``var`` is clamped to ``eps`` as PyTorch does it: the clamp does not block the gradient (d/dvar is taken at
    the clamped value). ``var``'s shape is checked against ``input``'s (PyTorch's rule: the same, one fewer
    dimension, or one dimension of size 1); ``input``, ``target`` and ``var`` then broadcast together, as in
    PyTorch (an ``input`` of (D,) against a ``target`` of (N, D)), and each gradient is summed over the axes its
    argument was broadcast along. ``.grad`` returns ``(grad_input, grad_var)``; ``grad_var`` is ``None`` for a
    Python float ``var``.
    ``.hessian`` returns the diagonal second derivatives ``(hess_input, hess_var)`` in the same order (summed
    over broadcast axes like the gradients; the mixed derivative is not returned). ``hess_var`` is negative
    where ``q < 1/2``: the loss is not convex in ``var``. Below ``eps`` it is, like ``grad_var``, the derivative
    taken at the clamped value (``torch.func.hessian`` of PyTorch's function gives the same).
    """,
    options=(
        Option("full", False, FLAG_KIND, "Add the constant 0.5 log(2 pi).", examples=(True,)),
        Option("eps", 1e-6, SCALAR_KIND, "The floor of ``var`` (> 0).", check=check_positive, examples=(0.5,)),
        reduction_option(),
    ),
    formula=_gaussian_nll,
    element=_gaussian_nll_element,
    domain=Domain(_gaussian_draw),
    oracle="torch.nn.functional.gaussian_nll_loss",
    class_positional=("full", "eps", "reduction"),
    constants=MappingProxyType({"HALF_LOG_2PI": HALF_LOG_2PI}),
    inputs=("input", "target", "var"),
    differentiable=("input", "var"),
    input_shape=lambda name, first, shape: _var_shape(name, first, shape) if name == "var" else shape,
    check_values=_check_var,
    references=("PyTorch, ``torch.nn.functional.gaussian_nll_loss`` (2.13): var's shapes and its clamp.",
                "D. A. Nix and A. S. Weigend, \"Estimating the mean and variance of the target probability "
                "distribution\", ICNN 1994."),
    example="""
    >>> import numpy as np, lossk
    >>> x, y, var = np.array([0.0, 1.0]), np.array([1.0, 1.0]), np.array([1.0, 2.0])
    >>> round(float(lossk.gaussian_nll_loss(x, y, var)), 6)
    0.423287
    >>> grad_input, grad_var = lossk.gaussian_nll_loss.grad(x, y, var)
    >>> grad_input, grad_var
    (array([-0.5,  0. ]), array([0.   , 0.125]))
    """,
)

# ---- margin ranking ---------------------------------------------------------------------------------------


def _margin_ranking(xp, x1, x2, y, *, order, margin):
    h = -y * (x1 - x2) + margin
    zero = xp.zeros_like(h)
    # torch's clamp_min passes the gradient at h == 0; a NaN h gives a NaN loss and zero gradients
    g = xp.where(h >= 0, xp.ones_like(h), zero)
    d1 = (-y * g, y * g) if order >= 1 else None
    return xp.where(h < 0, zero, h), d1, (zero, zero) if order >= 2 else None


def _margin_ranking_element(x1, x2, y, margin):
    zero = cast_like(0.0, x1)
    one = cast_like(1.0, x1)
    h = -y * (x1 - x2) + cast_like(margin, x1)
    loss = zero if h < zero else h
    g = one if h >= zero else zero
    return loss, -y * g, y * g, zero, zero


def _same_ndim(name: str, first: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """torch's margin_ranking_loss: every argument of one ndim, then broadcast together."""
    if len(shape) != len(first):
        raise ValueError(f"{name} must have input1's number of dimensions {len(first)}, got shape {shape}")
    return shape


def _ranking_draw(rng, shape, options, differentiable):
    x1, x2 = rng.normal(0, 2, shape), rng.normal(0, 2, shape)
    y = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    if differentiable:  # keep h = -y (x1 - x2) + margin away from the kink at 0
        h = -y * (x1 - x2) + options["margin"]
        x1 = np.where(np.abs(h) < 0.05, x1 - y * 0.1 * np.sign(h + (h == 0)), x1)
    return {"input1": x1, "input2": x2, "target": y}


MARGIN_RANKING_LOSS = ElementwiseLoss(
    name="margin_ranking_loss",
    class_name="MarginRankingLoss",
    summary="Margin ranking loss: ``input1`` should rank above ``input2`` where ``target`` is 1, below where -1.",
    math=r"""
.. math:: \ell_i = \max(0, -y_i (x_{1,i} - x_{2,i}) + m),
          \qquad \frac{\partial \ell_i}{\partial x_{1,i}} = -y_i [h_i \ge 0],
          \qquad \frac{\partial \ell_i}{\partial x_{2,i}} = y_i [h_i \ge 0],
          \qquad \frac{\partial^2 \ell_i}{\partial x_{1,i}^2} = \frac{\partial^2 \ell_i}{\partial x_{2,i}^2} = 0
""",
    notes="""
    ``.grad`` returns ``(grad_input1, grad_input2)``. At the kink (``h = 0``) the gradient passes, as PyTorch's
    ``clamp_min``. As in PyTorch, the three arrays must have one number of dimensions and broadcast together
    (``input1`` included: an ``input1`` of shape (N, 1) against an ``input2`` of (N, D)); the unreduced loss has
    the shape they broadcast to, and each gradient is summed back to its argument's own shape.

    The loss is piecewise linear in both scores: ``.hessian`` returns ``(0, 0)``, exact wherever ``h != 0`` (at
    the kink the second derivative is a Dirac mass, which no array can hold). A Newton method (gradient
    boosting) needs a positive stand-in there, as for the L1 loss (``lossk.boosting``): a constant curvature
    per active pair (LightGBM's and XGBoost's convention for their L1 and quantile objectives), or a smooth
    pairwise loss instead: RankNet's logistic ``softplus(-y (x_1 - x_2))``, the objective of XGBoost's
    ``rank:pairwise``, has the positive second derivative ``s (1 - s)``, ``s = sigmoid(y (x_1 - x_2))``.
    """,
    options=(
        Option("margin", 0.0, SCALAR_KIND, "The margin m.", examples=(0.5, -0.25)),
        reduction_option(),
    ),
    formula=_margin_ranking,
    element=_margin_ranking_element,
    domain=Domain(_ranking_draw),
    oracle="torch.nn.functional.margin_ranking_loss",
    class_positional=("margin", "reduction"),
    inputs=("input1", "input2", "target"),
    differentiable=("input1", "input2"),
    input_shape=_same_ndim,
    references=("PyTorch, ``torch.nn.functional.margin_ranking_loss`` (2.13).",),
    example="""
    >>> import numpy as np, lossk
    >>> a, b, y = np.array([1.0, 0.0]), np.array([0.0, 2.0]), np.array([1.0, 1.0])
    >>> float(lossk.margin_ranking_loss(a, b, y, margin=0.5))
    1.25
    >>> lossk.margin_ranking_loss.grad(a, b, y, margin=0.5)
    (array([-0. , -0.5]), array([0. , 0.5]))
    """,
)

# ---- multilabel soft margin ------------------------------------------------------------------------------


def _multilabel_soft_margin(xp, x, y, *, order):
    # y softplus(-x) + (1 - y) softplus(x) as BCE on logits, max(x, 0) - x y + log1p(e^-|x|): no overflow
    e = xp.exp(-xp.abs(x))
    loss = xp.where(x > 0, x, xp.zeros_like(x)) - x * y + xp.log1p(e)
    if order == 0:
        return loss, None, None
    inv = 1 / (1 + e)
    d1 = xp.where(x >= 0, inv, e * inv) - y
    return loss, d1, e * inv * inv if order >= 2 else None


def _multilabel_soft_margin_element(x, y):
    zero = cast_like(0.0, x)
    one = cast_like(1.0, x)
    e = exp_of(-abs(x))
    inv = one / (one + e)
    loss = (x if x > zero else zero) - x * y + log1p_unit_of(e)
    p = inv if x >= zero else e * inv
    return loss, p - y, e * inv * inv


def _multilabel_draw(rng, shape, options, differentiable):
    return {"input": rng.normal(0, 3, shape), "target": (rng.random(shape) < 0.5).astype(np.float64)}


MULTILABEL_SOFT_MARGIN_LOSS = ElementwiseLoss(
    name="multilabel_soft_margin_loss",
    class_name="MultiLabelSoftMarginLoss",
    summary="Multi-label one-versus-all loss on logits: the mean over classes (the last axis) of BCE on logits.",
    math=r"""
.. math::
    \ell_n = \frac{1}{C} \sum_c w_c \left[y_{nc} \operatorname{softplus}(-x_{nc})
             + (1 - y_{nc}) \operatorname{softplus}(x_{nc})\right],
    \qquad \frac{\partial \ell_n}{\partial x_{nc}} = \frac{w_c}{C} (\sigma(x_{nc}) - y_{nc}),
    \qquad \frac{\partial^2 \ell_n}{\partial x_{nc}^2} = \frac{w_c}{C} \sigma(x_{nc}) (1 - \sigma(x_{nc}))
""",
    notes="""
    One loss per row (``reduction="none"`` returns the rows' shape); ``"mean"`` divides by the row count.
    ``input`` and ``target`` may broadcast together along the rows (an ``input`` of (1, C) or a ``target`` of
    (C,)), not along the classes: PyTorch accepts a ``target`` that broadcasts ``input``'s last axis or adds
    axes, but then divides by ``input.shape[-1]`` and sums over axis ``input.ndim - 1`` of the broadcast
    shape, which is no longer a mean over the classes of each row; lossk refuses those shapes.
    Written so that logits of ±1e4 give finite losses and gradients (PyTorch's own ``logsigmoid`` form does too).
    """,
    options=(
        weight_option(broadcast=True, draw=last_axis(0.0, 2.0)),
        reduction_option(),
    ),
    formula=_multilabel_soft_margin,
    element=_multilabel_soft_margin_element,
    domain=Domain(_multilabel_draw, extremes=(1e4, -1e4)),
    oracle="torch.nn.functional.multilabel_soft_margin_loss",
    class_positional=("weight", "reduction"),
    row_mean=True,
    references=("PyTorch, ``torch.nn.functional.multilabel_soft_margin_loss`` (2.13).",),
    example="""
    >>> import numpy as np, lossk
    >>> x, y = np.array([[0.0, 2.0], [-1.0, 1.0]]), np.array([[1.0, 1.0], [0.0, 1.0]])
    >>> [round(float(v), 6) for v in lossk.multilabel_soft_margin_loss(x, y, reduction="none")]
    [0.410038, 0.313262]
    """,
)

LOSSES = (GAUSSIAN_NLL_LOSS, MARGIN_RANKING_LOSS, MULTILABEL_SOFT_MARGIN_LOSS)
