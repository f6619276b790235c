r"""Margin losses on ±1 targets: PyTorch's soft margin and hinge embedding losses.

Each loss is written twice, on arrays and on scalars, as in :mod:`lossk._losses.regression`.
"""

from __future__ import annotations

import numpy as np

from .._spec import SCALAR_KIND, Domain, ElementwiseLoss, Option, reduction_option
from .domains import KINK_MARGIN
from .scalar import cast_like, exp_of, log1p_unit_of

# ---- soft margin ----------------------------------------------------------------------------------------------


def _soft_margin(xp, x, y, *, order):
    # log(1 + e^z), z = -y x, as max(z, 0) + log1p(e^-|z|): PyTorch's log1p(exp(z)) is inf past z = 709 (88 in
    # float32). One exp serves the loss and both derivatives: sigmoid(z) = 1/(1+e) for z >= 0, e/(1+e) below,
    # and sigmoid(z) sigmoid(-z) = e/(1+e)^2
    z = -y * x
    e = xp.exp(-xp.abs(z))
    inv = 1 / (1 + e)
    loss = xp.where(z > 0, z, xp.zeros_like(z)) + xp.log1p(e)
    d1 = -y * xp.where(z >= 0, inv, e * inv) if order >= 1 else None
    d2 = y * y * e * inv * inv if order >= 2 else None
    return loss, d1, d2


def _soft_margin_element(x, y):
    zero = cast_like(0.0, x)
    one = cast_like(1.0, x)
    z = -y * x
    e = exp_of(-abs(z))
    inv = one / (one + e)
    loss = (z if z > zero else zero) + log1p_unit_of(e)
    sigmoid = inv if z >= zero else e * inv
    return loss, -y * sigmoid, y * y * e * inv * inv


def _signs(rng, shape, options, differentiable):
    """Inputs normal(0, 3); targets -1 or 1, as PyTorch documents them."""
    return {"input": np.asarray(rng.normal(0, 3, shape)), "target": np.asarray(rng.choice([-1.0, 1.0], shape))}


def _soft_margin_oracle(torch, input, target, *, reduction):
    """PyTorch's soft margin loss written ``-logsigmoid(y x)``: ``torch.nn.functional.soft_margin_loss`` computes
    ``log1p(exp(-y x))``, whose value is inf and gradient NaN once ``-y x > 709``; elsewhere the two agree."""
    loss = -torch.nn.functional.logsigmoid(target * input)
    return {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]


SOFT_MARGIN_LOSS = ElementwiseLoss(
    name="soft_margin_loss",
    class_name="SoftMarginLoss",
    summary="Soft margin loss: the logistic loss of ``target * input`` for targets -1 and 1.",
    math=r"""
.. math::
    \ell_i = \log\left(1 + e^{-y_i x_i}\right), \qquad \partial \ell_i / \partial x_i = -y_i \sigma(-y_i x_i),
    \qquad \partial^2 \ell_i / \partial x_i^2 = y_i^2 \sigma(y_i x_i) \sigma(-y_i x_i)
""",
    notes="""
    Written ``max(z, 0) + log1p(exp(-|z|))`` with ``z = -y x``: finite for any input (PyTorch's own
    ``log1p(exp(z))`` overflows to inf, with a NaN gradient, once ``z > 709``, 88 in float32; elsewhere they
    agree). The mean divides by the element count.
    """,
    options=(reduction_option(),),
    formula=_soft_margin,
    element=_soft_margin_element,
    domain=Domain(_signs, extremes=(1e4, -1e4)),
    oracle=_soft_margin_oracle,
    torch_equivalent="soft_margin_loss",
    references=("PyTorch, ``torch.nn.functional.soft_margin_loss`` (2.13).",),
    example="""
    >>> import numpy as np, lossk
    >>> x, y = np.array([2.0, 1e4]), np.array([-1.0, -1.0])
    >>> [round(float(v), 6) for v in lossk.soft_margin_loss(x, y, reduction="none")]
    [2.126928, 10000.0]
    >>> [round(float(v), 6) for v in lossk.soft_margin_loss.grad(x, y, reduction="sum")]
    [0.880797, 1.0]
    """,
)

# ---- hinge embedding ------------------------------------------------------------------------------------------


def _hinge_embedding(xp, x, y, *, order, margin):
    # PyTorch compares the target with 1 and -1 only: where(y != 1, max(margin - x, 0), 0) + where(y != -1, x, 0),
    # so a target other than ±1 takes both terms. At margin - x = 0 the gradient passes (clamp_min's), -1
    zero = xp.zeros_like(x)
    h = margin - x
    loss = xp.where(y != -1, x, zero) + xp.where(y != 1, xp.where(h < 0, zero, h), zero)  # NaN h kept
    d1 = None
    if order >= 1:
        one = xp.ones_like(x)
        # a NaN input: NaN loss; the hinge term passes no gradient (NaN >= 0 is false), the linear one does
        d1 = xp.where(y != -1, one, zero) - xp.where((y != 1) & (h >= 0), one, zero)
    return loss, d1, zero if order >= 2 else None


def _hinge_embedding_element(x, y, margin):
    zero = cast_like(0.0, x)
    one = cast_like(1.0, x)
    h = cast_like(margin, x) - x
    positive = y != -one
    negative = y != one
    loss = (x if positive else zero) + ((zero if h < zero else h) if negative else zero)
    d1 = (one if positive else zero) - (one if negative and h >= zero else zero)
    return loss, d1, zero


def _hinge_targets(rng, shape, options, differentiable):
    """Inputs normal(0, 2), targets ±1; unless differentiable, inputs exactly at the margin (the kink) and 10%
    targets 0 (both terms, as PyTorch); differentiable, inputs at least ``KINK_MARGIN`` from the margin."""
    margin = options["margin"]
    input = rng.normal(0, 2, shape)
    target = rng.choice([-1.0, 1.0], shape)
    if differentiable:
        near = np.abs(input - margin) < KINK_MARGIN
        input = np.where(near, margin + np.where(input >= margin, 1.0, -1.0) * (KINK_MARGIN + rng.uniform(0, 1, shape)), input)
    else:
        input[rng.random(shape) < 0.1] = margin
        target[rng.random(shape) < 0.1] = 0.0
    return {"input": np.asarray(input), "target": np.asarray(target)}


def _check_finite(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


HINGE_EMBEDDING_LOSS = ElementwiseLoss(
    name="hinge_embedding_loss",
    class_name="HingeEmbeddingLoss",
    summary="Hinge embedding loss: ``input`` (a distance) for target 1, ``max(0, margin - input)`` for -1.",
    math=r"""
.. math::
    \ell_i = [y_i \ne -1]\, x_i + [y_i \ne 1] \max(0, m - x_i),
    \qquad \partial \ell_i / \partial x_i = [y_i \ne -1] - [y_i \ne 1][m - x_i \ge 0],
    \qquad \partial^2 \ell_i / \partial x_i^2 = 0
""",
    notes="""
    As PyTorch, the target is compared with 1 and -1 only: any other value takes both terms. At the kink
    ``input = margin`` the gradient is -1 (PyTorch's); a NaN input gives a NaN loss, and the gradient of the
    linear term only (the hinge passes none), as PyTorch's autograd.
    The mean divides by the element count. Piecewise linear: the second derivative is 0.
    """,
    options=(
        Option("margin", 1.0, SCALAR_KIND, "The margin for targets -1 (any finite number).", check=_check_finite,
               examples=(0.5, -0.25)),
        reduction_option(),
    ),
    formula=_hinge_embedding,
    element=_hinge_embedding_element,
    domain=Domain(_hinge_targets),
    oracle="torch.nn.functional.hinge_embedding_loss",
    class_positional=("margin", "reduction"),
    references=("PyTorch, ``torch.nn.functional.hinge_embedding_loss`` (2.13).",),
    example="""
    >>> import numpy as np, lossk
    >>> x, y = np.array([0.3, 0.3, 2.0]), np.array([1.0, -1.0, -1.0])
    >>> [round(float(v), 6) for v in lossk.hinge_embedding_loss(x, y, reduction="none")]
    [0.3, 0.7, 0.0]
    >>> [float(v) for v in lossk.hinge_embedding_loss.grad(x, y, reduction="sum")]
    [1.0, -1.0, 0.0]
    """,
)

LOSSES = (SOFT_MARGIN_LOSS, HINGE_EMBEDDING_LOSS)
