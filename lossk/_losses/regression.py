r"""Regression losses: L1, squared error, Huber, smooth L1, log-cosh, pinball and pseudo-Huber — one :class:`~lossk._spec.ElementwiseLoss` each.

Each loss is written twice with the same operations: ``_<loss>`` on arrays (the reference, any Array API
library) and ``_<loss>_element`` on scalars (inlined by the generated Numba kernels). Both return
``(loss, d1, d2)``, the per-element loss and its first and second derivatives with respect to the input.
"""

from __future__ import annotations

import math
from types import MappingProxyType

from .._spec import SCALAR_KIND, Anchor, Domain, ElementwiseLoss, Option, reduction_option, weight_option
from .._validation import check_nonnegative, check_positive
from .domains import residuals
from .scalar import cast_like, expm1_of, hypot_of, log1p_bounded_of

# ---- L1 ---------------------------------------------------------------------------------------------------


def _l1(xp, x, y, *, order):
    d = x - y
    # PyTorch's sign(NaN) is 0: a NaN residual gives a NaN loss but a zero gradient
    d1 = xp.where(xp.isnan(d), xp.zeros_like(d), xp.sign(d)) if order >= 1 else None
    return xp.abs(d), d1, xp.zeros_like(d) if order >= 2 else None


def _l1_element(x, y):
    d = x - y
    one = cast_like(1.0, d)
    zero = cast_like(0.0, d)
    sign = one if d > zero else (-one if d < zero else zero)
    return abs(d), sign, zero


def _unit_floor(xp, x, y, **options):
    # the constant surrogate Hessian of LightGBM's l1 / huber / quantile objectives and scikit-learn's
    # AbsoluteError (lossk.boosting): at least the exact one everywhere
    return 1.0


def _unit_floor_element(x, y, *options):
    return cast_like(1.0, x)


L1_LOSS = ElementwiseLoss(
    name="l1_loss",
    class_name="L1Loss",
    summary="Mean absolute error.",
    math=r"""
.. math:: \ell_i = w_i |x_i - y_i|, \qquad \partial \ell_i / \partial x_i = w_i \operatorname{sign}(x_i - y_i),
          \qquad \partial^2 \ell_i / \partial x_i^2 = 0
""",
    notes="""
    The gradient at a zero residual is 0 (the subgradient PyTorch picks). ``reduction="mean"`` divides
    by the element count, or by ``sum(weight)`` when ``weight`` is given.
    """,
    options=(reduction_option(), weight_option()),
    formula=_l1,
    element=_l1_element,
    hessian_floor=_unit_floor,
    hessian_floor_element=_unit_floor_element,
    domain=residuals(),
    oracle="torch.nn.functional.l1_loss",
    mean_divisor="weight_sum",
    references=("PyTorch, ``torch.nn.functional.l1_loss`` (2.13): the weighted mean divides by ``sum(weight)``.",),
    example="""
    >>> import numpy as np, lossk
    >>> float(lossk.l1_loss(np.array([-2.0, 3.0, 0.0, 5.0]), np.array([0.0, 1.0, 2.0, 3.0])))
    2.0
    """,
)

# ---- squared error ------------------------------------------------------------------------------------------


def _mse(xp, x, y, *, order):
    d = x - y
    return d * d, 2 * d if order >= 1 else None, xp.full_like(d, 2.0) if order >= 2 else None


def _mse_element(x, y):
    d = x - y
    two = cast_like(2.0, d)
    return d * d, two * d, two


MSE_LOSS = ElementwiseLoss(
    name="mse_loss",
    class_name="MSELoss",
    summary="Mean squared error.",
    math=r"""
.. math:: \ell_i = w_i (x_i - y_i)^2, \qquad \partial \ell_i / \partial x_i = 2 w_i (x_i - y_i),
          \qquad \partial^2 \ell_i / \partial x_i^2 = 2 w_i
""",
    notes="""
    Note the factor 2: ``prediction - target`` is the gradient of *half* the squared error.
    ``reduction="mean"`` divides by the element count, or by ``sum(weight)`` with a ``weight``.
    """,
    options=(reduction_option(), weight_option()),
    formula=_mse,
    element=_mse_element,
    domain=residuals(),
    oracle="torch.nn.functional.mse_loss",
    mean_divisor="weight_sum",
    references=("PyTorch, ``torch.nn.functional.mse_loss`` (2.13): the weighted mean divides by ``sum(weight)``.",),
    example="""
    >>> import numpy as np, lossk
    >>> truth = np.array([0.0, 1.0, 2.0, 3.0])
    >>> float(lossk.mse_loss(np.array([-2.0, 3.0, 0.0, 5.0]), truth))
    4.0
    >>> float(lossk.mse_loss(np.array([0.0, 1.0, 2.0, 10.0]), truth))
    12.25
    >>> lossk.mse_loss.grad(np.array([0.0, 1.0, 2.0, 10.0]), truth)
    array([0. , 0. , 0. , 3.5])
    """,
)

# ---- Huber --------------------------------------------------------------------------------------------------


def _huber(xp, x, y, *, order, delta):
    d = x - y
    magnitude = xp.abs(d)
    inside = magnitude < delta
    loss = xp.where(inside, 0.5 * d * d, delta * (magnitude - 0.5 * delta))
    d1 = xp.clip(d, -delta, delta) if order >= 1 else None
    d2 = xp.where(inside, xp.ones_like(d), xp.zeros_like(d)) if order >= 2 else None
    return loss, d1, d2


def _huber_element(x, y, delta):
    d = x - y
    bound = cast_like(delta, d)
    half = cast_like(0.5, d)
    magnitude = abs(d)
    inside = magnitude < bound
    loss = half * d * d if inside else bound * (magnitude - half * bound)
    d1 = bound if d > bound else max(d, -bound)
    d2 = cast_like(1.0, d) if inside else cast_like(0.0, d)
    return loss, d1, d2


HUBER_LOSS = ElementwiseLoss(
    name="huber_loss",
    class_name="HuberLoss",
    summary="Huber loss: quadratic near the target, linear beyond ``delta`` (> 0).",
    math=r"""
.. math::
    \ell_i = w_i \begin{cases} \tfrac12 d_i^2 & |d_i| < \delta \\
             \delta (|d_i| - \tfrac12 \delta) & \text{otherwise} \end{cases}, \quad d = x - y,
    \qquad \partial \ell_i / \partial x_i = w_i \operatorname{clip}(d_i, -\delta, \delta),
    \qquad \partial^2 \ell_i / \partial x_i^2 = w_i [|d_i| < \delta]
""",
    notes="""
    ``reduction="mean"`` divides by the element count, with or without ``weight`` (PyTorch 2.13 does;
    its l1 and mse divide by ``sum(weight)``).
    """,
    options=(
        reduction_option(),
        Option("delta", 1.0, SCALAR_KIND, "Where the loss turns from quadratic to linear (> 0).",
               check=check_positive, examples=(0.3, 2.5)),
        weight_option(),
    ),
    formula=_huber,
    element=_huber_element,
    hessian_floor=_unit_floor,
    hessian_floor_element=_unit_floor_element,
    domain=residuals(lambda options: (options["delta"],)),
    oracle="torch.nn.functional.huber_loss",
    class_positional=("reduction", "delta"),
    references=("P. J. Huber, \"Robust Estimation of a Location Parameter\", Ann. Math. Statist. 35 (1964).",),
    example="""
    >>> import numpy as np, lossk
    >>> float(lossk.huber_loss(np.array([0.5, 3.0]), np.array([0.0, 0.0])))
    1.3125
    """,
)

# ---- smooth L1 ----------------------------------------------------------------------------------------------


def _smooth_l1(xp, x, y, *, order, beta):
    d = x - y
    magnitude = xp.abs(d)
    inside = magnitude < beta
    loss = xp.where(inside, 0.5 * d * d / beta, magnitude - 0.5 * beta)
    d1 = xp.clip(d / beta, -1.0, 1.0) if order >= 1 else None
    d2 = xp.where(inside, xp.full_like(d, 1 / beta), xp.zeros_like(d)) if order >= 2 else None
    return loss, d1, d2


def _smooth_l1_element(x, y, beta):
    d = x - y
    bound = cast_like(beta, d)
    half = cast_like(0.5, d)
    one = cast_like(1.0, d)
    magnitude = abs(d)
    inside = magnitude < bound
    loss = half * d * d / bound if inside else magnitude - half * bound
    ratio = d / bound
    d1 = one if ratio > one else max(ratio, -one)
    d2 = one / bound if inside else cast_like(0.0, d)
    return loss, d1, d2


def _smooth_l1_floor(xp, x, y, *, beta):
    # Huber's unit floor divided by beta, the largest exact value (1 at beta = 0, the L1 loss)
    return 1.0 / beta if beta > 0 else 1.0


def _smooth_l1_floor_element(x, y, beta):
    return cast_like(1.0 / beta if beta > 0.0 else 1.0, x)


SMOOTH_L1_LOSS = ElementwiseLoss(
    name="smooth_l1_loss",
    class_name="SmoothL1Loss",
    summary="Smooth L1 loss: Huber divided by ``beta``; ``beta=0`` is exactly L1.",
    math=r"""
.. math::
    \ell_i = \begin{cases} \tfrac12 d_i^2 / \beta & |d_i| < \beta \\
             |d_i| - \tfrac12 \beta & \text{otherwise} \end{cases},
    \qquad \partial \ell_i / \partial x_i = \operatorname{clip}(d_i / \beta, -1, 1),
    \qquad \partial^2 \ell_i / \partial x_i^2 = [|d_i| < \beta] / \beta
""",
    options=(
        reduction_option(),
        Option("beta", 1.0, SCALAR_KIND, "Where the loss turns from quadratic to linear (>= 0; 0 is L1).",
               check=check_nonnegative, examples=(0.25, 0.0)),
    ),
    formula=_smooth_l1,
    element=_smooth_l1_element,
    hessian_floor=_smooth_l1_floor,
    hessian_floor_element=_smooth_l1_floor_element,
    domain=residuals(lambda options: (options["beta"],)),
    oracle="torch.nn.functional.smooth_l1_loss",
    class_positional=("reduction", "beta"),
    rewrite=lambda options: ("l1_loss", {"weight": None}) if options["beta"] == 0 else None,
    references=("R. Girshick, \"Fast R-CNN\", ICCV 2015 (the smooth L1 loss with beta = 1).",),
    example="""
    >>> import numpy as np, lossk
    >>> float(lossk.smooth_l1_loss(np.array([0.5, 3.0]), np.array([0.0, 0.0]), beta=2.0))
    1.03125
    """,
)

# ---- log-cosh ---------------------------------------------------------------------------------------------

LOG_2 = math.log(2.0)


def _log_cosh(xp, x, y, *, order):
    d = x - y
    magnitude = xp.abs(d)
    # log cosh a (a = |d|) = log1p(w^2 / (2 v)) with v = e^-a, w = v - 1 = expm1(-a) below a = 2: cosh a - 1 =
    # (1 - v)^2 / (2 v), no cancellation near 0, where a + log1p(e^-2a) - log 2 leaves float32 roundoff
    # (log_cosh(0) would be 6e-8); a + log1p(e^-2a) - log 2 from 2 on, where cosh itself would overflow (a ~ 710)
    w = xp.expm1(-magnitude)
    small = magnitude < 2
    v = xp.where(small, 1 + w, xp.ones_like(w))  # no division by 0 in the branch the where() discards
    loss = xp.where(small, xp.log1p(w * w / (2 * v)), magnitude + xp.log1p(xp.exp(-2 * magnitude)) - LOG_2)
    d1 = xp.tanh(d) if order >= 1 else None
    return loss, d1, 1 - d1 * d1 if order >= 2 else None


def _log_cosh_element(x, y):
    # the reference's formulation with one expm1 for everything: e^-2|d| = v^2, and tanh |d| = (1 - v^2) / (1 + v^2)
    # with 1 - v^2 = -w (2 + w), no cancellation; one log1p for both branches, of u in [0, cosh 2 - 1 = 2.77]
    d = x - y
    magnitude = abs(d)
    one = cast_like(1.0, d)
    two = cast_like(2.0, d)
    w = expm1_of(-magnitude)
    v = one + w
    small = magnitude < two
    u = w * w / (two * v) if small else v * v  # NaN lands in v * v
    loss = log1p_bounded_of(u) + (cast_like(0.0, d) if small else magnitude - cast_like(LOG_2, d))
    tanh_magnitude = -w * (two + w) / (one + v * v)
    d1 = -tanh_magnitude if d < cast_like(0.0, d) else tanh_magnitude
    return loss, d1, one - d1 * d1


def _log_cosh_oracle(torch, input, target, *, reduction, weight=None):
    """log cosh as ``logaddexp(d, -d) - log 2`` (not lossk's formulation), weighted; 'mean' divides by the count."""
    d = input - target
    loss = torch.logaddexp(d, -d) - LOG_2
    loss = loss if weight is None else weight * loss
    return {"none": loss, "sum": loss.sum(), "mean": loss.sum() / loss.numel()}[reduction]


_OPTAX_LOG_COSH = "optax/losses/_regression_test.py, LogCoshTest (values from tf.keras.losses.log_cosh 2.4.1)"

LOG_COSH_LOSS = ElementwiseLoss(
    name="log_cosh_loss",
    class_name="LogCoshLoss",
    summary="Log-cosh loss: quadratic near the target, linear far from it, smooth everywhere.",
    math=r"""
.. math::
    \ell_i = w_i \log\cosh(x_i - y_i) = w_i \left(|d_i| + \log(1 + e^{-2|d_i|}) - \log 2\right),
    \qquad \partial \ell_i / \partial x_i = w_i \tanh d_i,
    \qquad \partial^2 \ell_i / \partial x_i^2 = w_i (1 - \tanh^2 d_i)
""",
    notes="""
    Written so that no cosh overflows: finite for any residual. ``reduction="mean"`` divides by the element
    count, with or without ``weight`` (Keras's ``sum_over_batch_size``). PyTorch has no log-cosh loss.
    """,
    options=(reduction_option(), weight_option()),
    formula=_log_cosh,
    element=_log_cosh_element,
    domain=residuals(),
    oracle=_log_cosh_oracle,
    constants=MappingProxyType({"LOG_2": LOG_2}),
    anchors=(
        Anchor(_OPTAX_LOG_COSH + ", test_batched",
               {"input": (500.0, -2.0, -1.0, 0.5, 1.0), "target": (-200.0, -1.5, 0.0, -1.0, 1.0)},
               (699.3068, 0.12011445, 0.4337809, 0.85544014, 0.0), atol=1e-5, rtol=2**-23),
        Anchor(_OPTAX_LOG_COSH + ", test_batched_predictions_only",
               {"input": (500.0, -2.0, -1.0, 0.5, 1.0), "target": (0.0, 0.0, 0.0, 0.0, 0.0)},
               (499.30685, 1.3250027, 0.4337809, 0.12011451, 0.43378082), atol=1e-5, rtol=2**-23),
    ),
    references=(
        "optax, ``optax.losses.log_cosh`` (the formulation above).",
        "Keras, ``keras.losses.LogCosh``.",
        "P. Chen, G. Chen and S. Zhang, \"Log Hyperbolic Cosine Loss Improves Variational Auto-Encoder\", 2018.",
    ),
    example="""
    >>> import numpy as np, lossk
    >>> x, y = np.array([500.0, -2.0, 0.5]), np.array([-200.0, -1.5, -1.0])
    >>> [round(float(v), 5) for v in lossk.log_cosh_loss(x, y, reduction="none")]
    [699.30685, 0.12011, 0.85544]
    >>> [round(float(v), 5) for v in lossk.log_cosh_loss.grad(x, y, reduction="sum")]
    [1.0, -0.46212, 0.90515]
    """,
)

# ---- pinball (quantile) -------------------------------------------------------------------------------------


def _check_open_unit_interval(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in the open interval (0, 1), got {value!r}")


def _pinball(xp, x, y, *, order, quantile):
    u = y - x
    above = u >= 0  # a tie takes this side: gradient -quantile, as scikit-learn's cgradient_pinball_loss
    loss = xp.where(above, quantile * u, (quantile - 1) * u)
    d1 = xp.where(above, xp.full_like(u, -quantile), xp.full_like(u, 1 - quantile)) if order >= 1 else None
    return loss, d1, xp.zeros_like(u) if order >= 2 else None


def _pinball_element(x, y, quantile):
    zero = cast_like(0.0, x)
    q = cast_like(quantile, x)
    u = y - x
    above = u >= zero
    loss = q * u if above else (q - cast_like(1.0, x)) * u
    d1 = -q if above else cast_like(1.0, x) - q
    return loss, d1, zero


def _pinball_oracle(torch, input, target, *, reduction, quantile=0.5, weight=None):
    """scikit-learn's ``PinballLoss`` / ``mean_pinball_loss`` in torch: the weighted mean divides by ``sum(weight)``."""
    loss = torch.where(target >= input, quantile * (target - input), (1 - quantile) * (input - target))
    return _weighted_mean_by_weight_sum(loss, weight, reduction)


def _weighted_mean_by_weight_sum(loss, weight, reduction):
    loss = loss if weight is None else loss * weight
    divisor = loss.numel() if weight is None else weight.sum()
    return {"none": loss, "sum": loss.sum(), "mean": loss.sum() / divisor}[reduction]


_SKLEARN_PINBALL = "sklearn/_loss/tests/test_loss.py, test_loss_on_specific_values (scikit-learn 1.9.1), PinballLoss"

PINBALL_LOSS = ElementwiseLoss(
    name="pinball_loss",
    class_name="PinballLoss",
    summary="Pinball (quantile) loss: ``input`` estimates the ``quantile`` of ``target``.",
    math=r"""
.. math::
    \ell_i = w_i \begin{cases} q\, u_i & u_i \ge 0 \\ (q - 1)\, u_i & u_i < 0 \end{cases}, \quad u = y - x,
    \qquad \partial \ell_i / \partial x_i = w_i \begin{cases} -q & u_i \ge 0 \\ 1 - q & u_i < 0 \end{cases},
    \qquad \partial^2 \ell_i / \partial x_i^2 = 0
""",
    notes="""
    At a tie (``input == target``) the gradient is ``-quantile``, scikit-learn's choice. ``quantile=0.5`` is
    half the absolute error. ``reduction="mean"`` divides by the element count, or by ``sum(weight)`` with a
    ``weight`` (``mean_pinball_loss``'s ``np.average``). The second derivative is 0; gradient boosting takes
    1 instead (scikit-learn, XGBoost ``reg:quantileerror`` and LightGBM ``quantile`` do).
    """,
    options=(
        Option("quantile", 0.5, SCALAR_KIND, "The quantile estimated, in (0, 1).", check=_check_open_unit_interval,
               examples=(0.1, 0.9)),
        weight_option(),
        reduction_option(),
    ),
    formula=_pinball,
    element=_pinball_element,
    hessian_floor=_unit_floor,
    hessian_floor_element=_unit_floor_element,
    domain=residuals(),
    oracle=_pinball_oracle,
    class_positional=("quantile", "reduction"),
    mean_divisor="weight_sum",
    anchors=(
        Anchor(_SKLEARN_PINBALL, {"input": (5.0,), "target": (1.0,)}, (2.0,), MappingProxyType({"quantile": 0.5}),
               atol=1e-15),
        Anchor(_SKLEARN_PINBALL, {"input": (5.0, 1.0), "target": (1.0, 5.0)}, (4 * (1 - 0.25), 4 * 0.25),
               MappingProxyType({"quantile": 0.25}), atol=1e-15),
    ),
    references=(
        "R. Koenker and G. Bassett, \"Regression Quantiles\", Econometrica 46 (1978).",
        "scikit-learn, ``sklearn._loss.loss.PinballLoss`` and ``sklearn.metrics.mean_pinball_loss``.",
    ),
    example="""
    >>> import numpy as np, lossk
    >>> x, y = np.array([5.0, 1.0]), np.array([1.0, 5.0])
    >>> [float(v) for v in lossk.pinball_loss(x, y, quantile=0.25, reduction="none")]
    [3.0, 1.0]
    >>> [float(v) for v in lossk.pinball_loss.grad(x, y, quantile=0.25, reduction="sum")]
    [0.75, -0.25]
    """,
)

# ---- pseudo-Huber -------------------------------------------------------------------------------------------


def _pseudo_huber(xp, x, y, *, order, delta):
    # delta^2 (sqrt(1 + r^2) - 1), r = z / delta, h = hypot(1, r) (no overflow of r^2): for |r| < 1 written
    # delta |z| |r| / (1 + h), no cancellation of h - 1 (float32 gives 0 below |r| ~ 3e-4); beyond, delta^2 (h - 1)
    # directly (h - 1 >= 0.41, and no product |z| |r| that overflows once the kernels' reassociation regroups it)
    z = x - y
    r = z / delta
    h = xp.hypot(xp.ones_like(r), r)
    loss = xp.where(xp.abs(r) < 1, delta * xp.abs(z) * (xp.abs(r) / (1 + h)), delta * delta * (h - 1))
    return loss, z / h if order >= 1 else None, 1 / (h * h * h) if order >= 2 else None


def _pseudo_huber_element(x, y, delta):
    one = cast_like(1.0, x)
    b = cast_like(delta, x)
    z = x - y
    r = z / b
    h = hypot_of(one, r)
    loss = b * abs(z) * (abs(r) / (one + h)) if abs(r) < one else b * b * (h - one)
    return loss, z / h, one / (h * h * h)


def _pseudo_huber_oracle(torch, input, target, *, reduction, delta=1.0, weight=None):
    """XGBoost's ``reg:pseudohubererror`` / ``mphe``, ``delta^2 (sqrt(1 + r^2) - 1)`` written ``delta^2 r^2 /
    (sqrt(1 + r^2) + 1)`` (no cancellation near 0); the weighted mean divides by ``sum(weight)``."""
    r = (input - target) / delta
    loss = delta**2 * r * r / (torch.sqrt(1 + r * r) + 1)
    return _weighted_mean_by_weight_sum(loss, weight, reduction)


PSEUDO_HUBER_LOSS = ElementwiseLoss(
    name="pseudo_huber_loss",
    class_name="PseudoHuberLoss",
    summary="Pseudo-Huber loss: a smooth Huber, quadratic near the target and linear beyond ``delta``.",
    math=r"""
.. math::
    \ell_i = w_i \delta^2 \left(\sqrt{1 + (d_i / \delta)^2} - 1\right), \quad d = x - y,
    \qquad \partial \ell_i / \partial x_i = w_i \frac{d_i}{\sqrt{1 + (d_i / \delta)^2}},
    \qquad \partial^2 \ell_i / \partial x_i^2 = w_i \left(1 + (d_i / \delta)^2\right)^{-3/2}
""",
    notes="""
    Computed as ``delta |d| |r| / (1 + h)`` for ``|r| < 1`` and ``delta^2 (h - 1)`` beyond, ``r = d / delta``,
    ``h = hypot(1, r)``: accurate near 0 and finite for any residual. ``reduction="mean"`` divides by the element count, or by ``sum(weight)`` with a ``weight``
    (XGBoost's metric ``mphe``). PyTorch has no pseudo-Huber loss.
    """,
    options=(
        Option("delta", 1.0, SCALAR_KIND, "The slope of the linear part (XGBoost's ``huber_slope``, > 0).",
               check=check_positive, examples=(0.1, 2.5)),
        weight_option(),
        reduction_option(),
    ),
    formula=_pseudo_huber,
    element=_pseudo_huber_element,
    domain=Domain(residuals().draw, extremes=(3e4, -3e4)),  # within float16: the tests cast the data
    oracle=_pseudo_huber_oracle,
    class_positional=("delta", "reduction"),
    mean_divisor="weight_sum",
    references=(
        "P. Charbonnier, L. Blanc-Feraud, G. Aubert and M. Barlaud, \"Two deterministic half-quadratic "
        "regularization algorithms for computed imaging\", ICIP 1994.",
        "XGBoost, objective ``reg:pseudohubererror`` (``huber_slope``) and metric ``mphe``.",
    ),
    example="""
    >>> import numpy as np, lossk
    >>> x, y = np.array([0.1, 1.6]), np.array([1.0, 1.0])
    >>> [round(float(v), 6) for v in lossk.pseudo_huber_loss(x, y, reduction="none")]
    [0.345362, 0.16619]
    >>> [round(float(v), 6) for v in lossk.pseudo_huber_loss.grad(x, y, reduction="sum")]
    [-0.668965, 0.514496]
    """,
)

LOSSES = (L1_LOSS, MSE_LOSS, HUBER_LOSS, SMOOTH_L1_LOSS, LOG_COSH_LOSS, PINBALL_LOSS, PSEUDO_HUBER_LOSS)
