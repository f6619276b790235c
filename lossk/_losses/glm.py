r"""Count and positive-valued regression: PyTorch's Poisson NLL and scikit-learn's Tweedie family with a log link.

``poisson_nll_loss`` follows ``torch.nn.functional``; ``tweedie_loss``, ``gamma_loss`` and ``poisson_loss`` are
scikit-learn's ``HalfTweedieLoss``, ``HalfGammaLoss`` and ``HalfPoissonLoss`` (``sklearn/_loss/loss.py``) with
the log link: ``input`` is the raw prediction, the predicted mean is ``exp(input)``. Those are the forms
gradient boosting takes (their constant terms in ``target`` dropped, as scikit-learn does). Each loss is
written twice, on arrays and on scalars, as in :mod:`lossk._losses.regression`.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np

from .._spec import FLAG_KIND, SCALAR_KIND, Anchor, Domain, ElementwiseLoss, Option, reduction_option, weight_option
from .._validation import check_positive
from .scalar import cast_like, exp_of, log_of

TWO_PI = 2.0 * math.pi

# ---- Poisson NLL (PyTorch) --------------------------------------------------------------------------------------


def _poisson_nll(xp, x, y, *, order, log_input, full, eps):
    if log_input:
        e = xp.exp(x)
        loss, d1, d2 = e - y * x, e - y, e
    else:  # x + eps <= 0 gives NaN or inf, as in PyTorch (documented)
        s = x + eps
        loss = x - y * xp.log(s)
        d1, d2 = 1 - y / s, y / (s * s)
    if full:
        # Stirling's term y log y - y + log(2 pi y) / 2, for targets > 1 only (PyTorch's masked_fill(target <= 1, 0));
        # the where() keeps log(0) and log of a negative out of the branch it discards
        above = ~(y <= 1)
        safe = xp.where(above, y, xp.ones_like(y))
        loss = loss + xp.where(above, safe * xp.log(safe) - safe + 0.5 * xp.log(TWO_PI * safe), xp.zeros_like(y))
    return loss, d1 if order >= 1 else None, d2 if order >= 2 else None


def _poisson_nll_element(x, y, log_input, full, eps):
    one = cast_like(1.0, x)
    if log_input:
        e = exp_of(x)
        loss = e - y * x
        d1 = e - y
        d2 = e
    else:
        s = x + cast_like(eps, x)
        loss = x - y * log_of(s)
        d1 = one - y / s
        d2 = y / (s * s)
    if full and not (y <= one):
        loss += y * log_of(y) - y + cast_like(0.5, x) * log_of(cast_like(TWO_PI, x) * y)
    return loss, d1, d2


def _counts(rng, shape, options, differentiable):
    """Targets: Poisson(2) counts (0 and 1 too: no Stirling term there) and 30% non-integers in [0, 6).
    Inputs: log-rates normal(0, 1), or rates in [0.1, 5) with ``log_input=False`` (and exact 0 unless
    differentiable: -log(eps), finite)."""
    target = rng.poisson(2.0, shape).astype(np.float64)
    target = np.where(rng.random(shape) < 0.3, rng.uniform(0, 6, shape), target)
    if options.get("log_input", True):
        input = rng.normal(0, 1, shape)
    else:
        input = rng.uniform(0.1, 5, shape)
        if not differentiable:
            input[rng.random(shape) < 0.1] = 0.0
    return {"input": np.asarray(input), "target": np.asarray(target)}


POISSON_NLL_LOSS = ElementwiseLoss(
    name="poisson_nll_loss",
    class_name="PoissonNLLLoss",
    summary="Negative log-likelihood of a Poisson distribution of rate ``exp(input)`` (or ``input``).",
    math=r"""
.. math::
    \ell_i = e^{x_i} - y_i x_i, \qquad \partial \ell_i / \partial x_i = e^{x_i} - y_i,
    \qquad \partial^2 \ell_i / \partial x_i^2 = e^{x_i} \qquad (\texttt{log\_input=True});

    \ell_i = x_i - y_i \log(x_i + \epsilon), \qquad \partial \ell_i / \partial x_i = 1 - \frac{y_i}{x_i + \epsilon},
    \qquad \partial^2 \ell_i / \partial x_i^2 = \frac{y_i}{(x_i + \epsilon)^2} \qquad (\texttt{log\_input=False})
""",
    notes="""
    ``full=True`` adds Stirling's approximation of ``log(y!)``, ``y log y - y + log(2 pi y) / 2``, for targets
    greater than 1 only (as PyTorch; it does not depend on ``input``). With ``log_input=False`` the input is a
    rate and must be >= 0: ``input + eps <= 0`` gives NaN or infinite losses, as in PyTorch (not checked per
    element; pytorch/pytorch#184030). The mean divides by the element count. With ``log_input=True`` and
    ``full=False`` (the default) the loss is :func:`poisson_loss` without a weight, and is computed by it.
    """,
    options=(
        Option("log_input", True, FLAG_KIND, "``input`` is the log of the rate (else the rate itself).",
               examples=(False,)),
        Option("full", False, FLAG_KIND, "Add Stirling's term for targets > 1.", examples=(True,)),
        Option("eps", 1e-8, SCALAR_KIND, "Added to the rate before its logarithm when ``log_input=False`` (> 0).",
               check=check_positive, examples=(0.5,)),
        reduction_option(),
    ),
    formula=_poisson_nll,
    element=_poisson_nll_element,
    domain=Domain(_counts),
    oracle="torch.nn.functional.poisson_nll_loss",
    class_positional=("log_input", "full", "eps", "reduction"),
    # the default call is scikit-learn's half Poisson deviance, exactly: its kernel has no flag branches to compute
    rewrite=lambda options: (
        ("poisson_loss", {"weight": None}) if options["log_input"] and not options["full"] else None
    ),
    constants=MappingProxyType({"TWO_PI": TWO_PI}),
    references=("PyTorch, ``torch.nn.functional.poisson_nll_loss`` (2.13).",),
    example="""
    >>> import numpy as np, lossk
    >>> x, y = np.log(np.array([4.0, 0.5])), np.array([2.0, 0.0])
    >>> [round(float(v), 6) for v in lossk.poisson_nll_loss(x, y, reduction="none")]
    [1.227411, 0.5]
    >>> [round(float(v), 6) for v in lossk.poisson_nll_loss.grad(x, y, reduction="sum")]
    [2.0, 0.5]
    """,
)

# ---- scikit-learn's half Tweedie deviances with a log link ------------------------------------------------------


def _check_power(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not (
        value == 0 or value >= 1
    ):
        raise ValueError(f"{name} must be 0 or a finite number >= 1, got {value!r}")


def _tweedie(xp, x, y, *, order, power):
    # power is a Python float: the branch is chosen once per call
    if power == 0:  # half squared error of exp(x)
        e = xp.exp(x)
        loss, d1, d2 = 0.5 * (e - y) * (e - y), e * (e - y), e * (2 * e - y)
    elif power == 1:  # HalfPoissonLoss
        e = xp.exp(x)
        loss, d1, d2 = e - y * x, e - y, e
    elif power == 2:  # HalfGammaLoss
        e = xp.exp(-x)
        loss, d1, d2 = x + y * e, 1 - y * e, y * e
    else:
        e1 = xp.exp((1 - power) * x)
        e2 = xp.exp((2 - power) * x)
        loss = e2 / (2 - power) - y * e1 / (1 - power)
        d1, d2 = e2 - y * e1, (2 - power) * e2 - (1 - power) * y * e1
    return loss, d1 if order >= 1 else None, d2 if order >= 2 else None


def _tweedie_element(x, y, power):
    one = cast_like(1.0, x)
    two = cast_like(2.0, x)
    if power == 0.0:
        e = exp_of(x)
        return cast_like(0.5, x) * (e - y) * (e - y), e * (e - y), e * (two * e - y)
    if power == 1.0:
        e = exp_of(x)
        return e - y * x, e - y, e
    if power == 2.0:
        e = exp_of(-x)
        return x + y * e, one - y * e, y * e
    a = cast_like(1.0 - power, x)
    b = cast_like(2.0 - power, x)
    e1 = exp_of(a * x)
    e2 = exp_of(b * x)
    return e2 / b - y * e1 / a, e2 - y * e1, b * e2 - a * y * e1


def _tweedie_floor(xp, x, y, *, power):
    # the expected (Fisher) Hessian exp((2 - p) x) where the exact one can be negative (lossk.boosting derives
    # it); the element's branches and exponentials, so that the kernel computes no second exp
    if power == 0:
        e = xp.exp(x)
        return e * e
    return xp.exp((2 - power) * x) if power > 2 else 0.0


def _tweedie_floor_element(x, y, power):
    zero = cast_like(0.0, x)
    if power == 0.0:
        e = exp_of(x)
        return e * e
    if power == 1.0:
        return zero
    if power == 2.0:
        return zero
    b = cast_like(2.0 - power, x)
    e2 = exp_of(b * x)
    return e2 if b < zero else zero


def _gamma(xp, x, y, *, order):
    e = xp.exp(-x)
    return x + y * e, 1 - y * e if order >= 1 else None, y * e if order >= 2 else None


def _gamma_element(x, y):
    e = exp_of(-x)
    return x + y * e, cast_like(1.0, x) - y * e, y * e


def _poisson(xp, x, y, *, order):
    e = xp.exp(x)
    return e - y * x, e - y if order >= 1 else None, e if order >= 2 else None


def _poisson_element(x, y):
    e = exp_of(x)
    return e - y * x, e - y, e


def _positive_targets(rng, shape, options, differentiable):
    """Raw predictions normal(0, 0.7); targets gamma-distributed (mean 2), with 20% zeros where scikit-learn
    allows them (power < 2: Poisson and compound Poisson-gamma; power 0 allows any real target)."""
    power = options.get("power", 1.0)
    target = rng.gamma(2.0, 1.0, shape)
    if power < 2:
        target = np.where(rng.random(shape) < 0.2, 0.0, target)
    return {"input": np.asarray(rng.normal(0, 0.7, shape)), "target": np.asarray(target)}


def _gamma_targets(rng, shape, options, differentiable):
    return _positive_targets(rng, shape, {"power": 2.0}, differentiable)


def _sklearn_oracle(loss_of):
    """A torch oracle ``loss_of(torch, x, y, **options)``, weighted; 'mean' divides by ``sum(weight)``
    (scikit-learn's ``np.average(loss, weights=sample_weight)``)."""

    def oracle(torch, input, target, *, reduction, weight=None, **options):
        loss = loss_of(torch, input, target, **options)
        if weight is not None:
            loss = loss * weight
        divisor = loss.numel() if weight is None else weight.sum()
        return {"none": loss, "sum": loss.sum(), "mean": loss.sum() / divisor}[reduction]

    oracle.__doc__ = loss_of.__doc__
    return oracle


def _tweedie_torch(torch, x, y, *, power=1.5):
    """scikit-learn ``HalfTweedieLoss`` (``sklearn/_loss/_loss.pyx.tp``, ``closs_half_tweedie``), its branches."""
    if power == 0:
        return 0.5 * (torch.exp(x) - y) ** 2
    if power == 1:
        return torch.exp(x) - y * x
    if power == 2:
        return x + y * torch.exp(-x)
    return torch.exp((2 - power) * x) / (2 - power) - y * torch.exp((1 - power) * x) / (1 - power)


_SKLEARN_VALUES = "sklearn/_loss/tests/test_loss.py, test_loss_on_specific_values (scikit-learn 1.9.1)"
_MEAN_NOTE = """
    ``reduction="mean"`` divides by the element count, or by ``sum(weight)`` with a ``weight``
    (scikit-learn's ``np.average(loss, weights=sample_weight)``). Constant terms in ``target`` are dropped,
    as scikit-learn does: the loss is a deviance up to a constant, and its minimum is not 0.
    """

TWEEDIE_LOSS = ElementwiseLoss(
    name="tweedie_loss",
    class_name="TweedieLoss",
    summary="Half Tweedie deviance with a log link: ``input`` is the log of the predicted mean.",
    math=r"""
.. math::
    \ell_i = w_i \left(\frac{e^{(2-p) x_i}}{2-p} - y_i \frac{e^{(1-p) x_i}}{1-p}\right),
    \qquad \partial \ell_i / \partial x_i = w_i \left(e^{(2-p) x_i} - y_i e^{(1-p) x_i}\right),
    \qquad \partial^2 \ell_i / \partial x_i^2 = w_i \left((2-p) e^{(2-p) x_i} - (1-p) y_i e^{(1-p) x_i}\right)
""",
    notes="""
    for power ``p`` not 0, 1 or 2; ``p = 0`` is half the squared error of ``exp(x)``, ``p = 1``
    :func:`poisson_loss` and ``p = 2`` :func:`gamma_loss` (scikit-learn's branches: the loss is not continuous
    in ``p`` there). ``power`` is 0 or at least 1; targets are >= 0 for ``p < 2`` and > 0 for ``p >= 2``
    (any real target at ``p = 0``). The second derivative is negative for ``p = 0`` where ``y > 2 exp(x)`` and
    for ``p > 2`` where ``y`` is small: the surrogate Hessian (``lossk.boosting``'s ``hessian="surrogate"``) floors it
    there at ``exp((2 - p) x)``, the expected (Fisher) Hessian.
    """ + _MEAN_NOTE,
    options=(
        Option("power", 1.5, SCALAR_KIND, "The Tweedie power: 0, or at least 1 (1 < p < 2: compound Poisson-gamma).",
               check=_check_power, examples=(0.0, 1.0, 2.0, 3.0, 1.2)),
        weight_option(),
        reduction_option(),
    ),
    formula=_tweedie,
    element=_tweedie_element,
    hessian_floor=_tweedie_floor,
    hessian_floor_element=_tweedie_floor_element,
    domain=Domain(_positive_targets),
    oracle=_sklearn_oracle(_tweedie_torch),
    class_positional=("power", "reduction"),
    mean_divisor="weight_sum",
    anchors=(
        Anchor(_SKLEARN_VALUES + ", HalfTweedieLoss(power=3)", {"input": (math.log(4),), "target": (2.0,)},
               (-1 / 4 + 1 / 4**2,), options=MappingProxyType({"power": 3.0}), atol=1e-15),
        Anchor(_SKLEARN_VALUES + ", HalfTweedieLoss(power=1)", {"input": (math.log(4),), "target": (2.0,)},
               (4 - 2 * math.log(4),), options=MappingProxyType({"power": 1.0}), atol=1e-15),
        Anchor(_SKLEARN_VALUES + ", HalfTweedieLoss(power=2)", {"input": (math.log(4),), "target": (2.0,)},
               (math.log(4) + 2 / 4,), options=MappingProxyType({"power": 2.0}), atol=1e-15),
    ),
    references=(
        "scikit-learn, ``sklearn._loss.loss.HalfTweedieLoss`` (the formulation above, its branches and domains).",
        "B. Jørgensen, \"The Theory of Dispersion Models\", Chapman & Hall, 1997.",
    ),
    example="""
    >>> import numpy as np, lossk
    >>> x, y = np.log(np.array([4.0, 1.0])), np.array([2.0, 0.0])
    >>> [round(float(v), 6) for v in lossk.tweedie_loss(x, y, power=3.0, reduction="none")]
    [-0.1875, -1.0]
    >>> [round(float(v), 6) for v in lossk.tweedie_loss.grad(x, y, power=1.5, reduction="sum")]
    [1.0, 1.0]
    """,
)

GAMMA_LOSS = ElementwiseLoss(
    name="gamma_loss",
    class_name="GammaLoss",
    summary="Half Gamma deviance with a log link: ``input`` is the log of the predicted mean (targets > 0).",
    math=r"""
.. math:: \ell_i = w_i \left(x_i + y_i e^{-x_i}\right), \qquad \partial \ell_i / \partial x_i = w_i (1 - y_i e^{-x_i}),
          \qquad \partial^2 \ell_i / \partial x_i^2 = w_i y_i e^{-x_i}
""",
    notes="``tweedie_loss`` with ``power=2``." + _MEAN_NOTE,
    options=(weight_option(), reduction_option()),
    formula=_gamma,
    element=_gamma_element,
    domain=Domain(_gamma_targets),
    oracle=_sklearn_oracle(lambda torch, x, y: x + y * torch.exp(-x)),
    mean_divisor="weight_sum",
    anchors=(Anchor(_SKLEARN_VALUES + ", HalfGammaLoss", {"input": (math.log(4),), "target": (2.0,)},
                    (math.log(4) + 2 / 4,), atol=1e-15),),
    references=("scikit-learn, ``sklearn._loss.loss.HalfGammaLoss``.",),
    example="""
    >>> import numpy as np, lossk
    >>> x, y = np.log(np.array([4.0])), np.array([2.0])
    >>> round(float(lossk.gamma_loss(x, y)), 6), round(float(lossk.gamma_loss.grad(x, y)[0]), 6)
    (1.886294, 0.5)
    """,
)

POISSON_LOSS = ElementwiseLoss(
    name="poisson_loss",
    class_name="PoissonLoss",
    summary="Half Poisson deviance with a log link: ``input`` is the log of the predicted mean (targets >= 0).",
    math=r"""
.. math:: \ell_i = w_i \left(e^{x_i} - y_i x_i\right), \qquad \partial \ell_i / \partial x_i = w_i (e^{x_i} - y_i),
          \qquad \partial^2 \ell_i / \partial x_i^2 = w_i e^{x_i}
""",
    notes="""
    ``tweedie_loss`` with ``power=1``; :func:`poisson_nll_loss` with a weight and scikit-learn's mean.
    """ + _MEAN_NOTE,
    options=(weight_option(), reduction_option()),
    formula=_poisson,
    element=_poisson_element,
    domain=Domain(_positive_targets),
    oracle=_sklearn_oracle(lambda torch, x, y: torch.exp(x) - y * x),
    mean_divisor="weight_sum",
    anchors=(Anchor(_SKLEARN_VALUES + ", HalfPoissonLoss", {"input": (math.log(4),), "target": (2.0,)},
                    (4 - 2 * math.log(4),), atol=1e-15),),
    references=("scikit-learn, ``sklearn._loss.loss.HalfPoissonLoss``.",),
    example="""
    >>> import numpy as np, lossk
    >>> x, y = np.log(np.array([4.0])), np.array([2.0])
    >>> round(float(lossk.poisson_loss(x, y)), 6), round(float(lossk.poisson_loss.grad(x, y)[0]), 6)
    (1.227411, 2.0)
    """,
)

LOSSES = (POISSON_NLL_LOSS, TWEEDIE_LOSS, GAMMA_LOSS, POISSON_LOSS)
