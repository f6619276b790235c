r"""The Kullback-Leibler divergence (see :mod:`lossk._losses.regression`)."""

from __future__ import annotations

import numpy as np

from .._spec import FLAG_KIND, Domain, ElementwiseLoss, Option, reduction_option
from .._validation import REDUCTIONS
from .domains import log_softmax
from .scalar import cast_like, exp_of, log_of


def _kl_div(xp, x, y, *, order, log_target):
    if log_target:
        probability = xp.exp(y)
        loss = probability * (y - x)
    else:
        probability = y
        loss = y * xp.log(xp.where(y == 0, xp.ones_like(y), y)) - y * x  # y log y is 0 at y = 0 (xlogy)
    return loss, -probability if order >= 1 else None, xp.zeros_like(x) if order >= 2 else None


def _kl_div_element(x, y, log_target):
    if log_target:
        probability = exp_of(y)
        loss = probability * (y - x)
    else:
        probability = y
        loss = y * log_of(y if y != 0 else cast_like(1.0, y)) - y * x
    return loss, -probability, cast_like(0.0, x)


def _distributions(rng, shape, options, differentiable):
    """Log-probabilities along the last axis; target probabilities with 20% exact zeros (or their logs)."""
    if shape and 0 not in shape:
        input = log_softmax(rng.normal(0, 2, shape), len(shape) - 1)
        target = np.exp(log_softmax(rng.normal(0, 2, shape), len(shape) - 1))
    else:  # a scalar or an empty input: no distribution to normalise
        input, target = np.log(rng.uniform(0.05, 1, shape)), rng.uniform(0, 1, shape)
    if options["log_target"]:
        target = np.log(target)
    else:
        target[rng.random(shape) < 0.2] = 0.0
    return {"input": np.asarray(input), "target": np.asarray(target)}


KL_DIV = ElementwiseLoss(
    name="kl_div",
    class_name="KLDivLoss",
    summary="Kullback-Leibler divergence of ``target`` from the log-probabilities ``input``.",
    math=r"""
.. math::
    \ell_i = y_i (\log y_i - x_i) \;(0 \text{ where } y_i = 0), \qquad
    \partial \ell_i / \partial x_i = -y_i, \qquad \partial^2 \ell_i / \partial x_i^2 = 0
""",
    notes=r"""
    With ``log_target=True`` the target holds log-probabilities: :math:`\ell_i = e^{y_i} (y_i - x_i)`,
    gradient :math:`-e^{y_i}`. ``reduction="batchmean"`` divides the sum by ``input.shape[0]`` — the
    mathematically correct KL divergence per sample; ``"mean"`` divides by the element count, as PyTorch does.
    """,
    options=(
        reduction_option((*REDUCTIONS, "batchmean")),
        Option("log_target", False, FLAG_KIND, "Whether ``target`` holds log-probabilities.", examples=(True,)),
    ),
    formula=_kl_div,
    element=_kl_div_element,
    domain=Domain(_distributions),
    oracle="torch.nn.functional.kl_div",
    class_positional=("reduction", "log_target"),
    references=("S. Kullback and R. A. Leibler, \"On Information and Sufficiency\", Ann. Math. Statist. 22 (1951).",),
    example="""
    >>> import numpy as np, lossk
    >>> p = np.array([[0.5, 0.5]]); q = np.array([[0.25, 0.75]])
    >>> round(float(lossk.kl_div(np.log(q), p, reduction="batchmean")), 6)
    0.143841
    """,
)

LOSSES = (KL_DIV,)
