r"""Binary classification losses: BCE on probabilities and on logits, the sigmoid focal loss (see :mod:`lossk._losses.regression`)."""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np

from .._spec import ARRAY_KIND, REDUCTION_KIND, SCALAR_KIND, Domain, ElementwiseLoss, Option, reduction_option, weight_option
from .._validation import check_nonnegative, check_values_in_unit_interval
from .domains import last_axis
from .scalar import cast_like, exp_of, log1p_of, log1p_unit_of, log_of

LOG_FLOOR = -100.0
"""PyTorch clamps BCE's logarithms at -100 so that a probability of exactly 0 or 1 gives a finite loss."""

BCE_GRAD_EPSILON = 9.999999960041972e-13
"""PyTorch's floor on x (1 - x) in the BCE gradient's denominator: 1e-12 rounded to float32, as PyTorch holds it."""

# ---- BCE on probabilities -----------------------------------------------------------------------------------


def _bce(xp, x, y, *, order):
    # max(log x, -100) and max(log(1 - x), -100), with the log never taken at 0: a lazy library (Dask) computes
    # outside lossk's errstate and would warn about log(0) = -inf, which the floor replaces anyway
    zero, one = xp.zeros_like(x), xp.ones_like(x)
    at_0, at_1 = x == 0, x == 1
    log_p = xp.where(at_0, one * LOG_FLOOR, xp.clip(xp.log(xp.where(at_0, one, x)), LOG_FLOOR, None))
    log_q = xp.where(at_1, one * LOG_FLOOR, xp.clip(xp.log1p(-xp.where(at_1, zero, x)), LOG_FLOOR, None))
    loss = -(y * log_p + (1 - y) * log_q)
    if order == 0:
        return loss, None, None
    variance = x * (1 - x)
    d1 = (x - y) / xp.clip(variance, BCE_GRAD_EPSILON, None)
    # d/dx of (x - y) / (x (1 - x)) is (x² - 2xy + y) / (x (1 - x))²; where the floor holds, 1 / floor
    d2 = None
    if order >= 2:
        unclamped = variance > BCE_GRAD_EPSILON
        safe = xp.where(unclamped, variance, xp.ones_like(variance))
        d2 = xp.where(unclamped, (x * x - 2 * x * y + y) / (safe * safe), xp.full_like(x, 1 / BCE_GRAD_EPSILON))
    return loss, d1, d2


def _bce_element(x, y):
    one = cast_like(1.0, x)
    floor = cast_like(LOG_FLOOR, x)
    log_p = max(log_of(x), floor)  # max that keeps NaN, as the reference's clip
    log_q = max(log1p_of(-x), floor)
    loss = -(y * log_p + (one - y) * log_q)
    variance = x * (one - x)
    epsilon = cast_like(BCE_GRAD_EPSILON, x)
    d1 = (x - y) / max(variance, epsilon)
    two = cast_like(2.0, x)
    d2 = (x * x - two * x * y + y) / (variance * variance) if variance > epsilon else one / epsilon
    return loss, d1, d2


def _probabilities(rng, shape, options, differentiable):
    """Probabilities in (0.05, 0.95), and exact 0 and 1 (PyTorch clamps the logs) unless differentiable."""
    input = rng.uniform(0.05, 0.95, shape)
    if not differentiable:
        input[rng.random(shape) < 0.15] = 0.0
        input[rng.random(shape) < 0.15] = 1.0
    target = rng.uniform(0, 1, shape)
    target[rng.random(shape) < 0.3] = 1.0
    return {"input": np.asarray(input), "target": np.asarray(target)}


BINARY_CROSS_ENTROPY = ElementwiseLoss(
    name="binary_cross_entropy",
    class_name="BCELoss",
    summary="Binary cross-entropy between probabilities ``input`` in [0, 1] and ``target``.",
    math=r"""
.. math::
    \ell_i = -w_i \left[y_i \max(\log x_i, -100) + (1 - y_i) \max(\log(1 - x_i), -100)\right],
    \qquad \partial \ell_i / \partial x_i = w_i \frac{x_i - y_i}{\max(x_i (1 - x_i), 10^{-12})},
    \qquad \partial^2 \ell_i / \partial x_i^2 = w_i \frac{x_i^2 - 2 x_i y_i + y_i}{(x_i (1 - x_i))^2}
""",
    notes="""
    The clamps are PyTorch's: probabilities of exactly 0 or 1 give finite losses and gradients (where
    the gradient's floor holds, the second derivative is 1e12). ``weight`` broadcasts to the input's
    shape; the mean divides by the element count. Input values outside [0, 1] (NaN included) raise
    ``ValueError`` on host arrays, as in PyTorch. Prefer :func:`binary_cross_entropy_with_logits`,
    which is stable for any logit.
    """,
    options=(weight_option(broadcast=True, draw=last_axis(0, 2)), reduction_option()),
    formula=_bce,
    element=_bce_element,
    domain=Domain(_probabilities),
    oracle="torch.nn.functional.binary_cross_entropy",
    class_positional=("weight", "reduction"),
    constants=MappingProxyType({"LOG_FLOOR": LOG_FLOOR, "BCE_GRAD_EPSILON": BCE_GRAD_EPSILON}),
    check_values=lambda xp, arrays: check_values_in_unit_interval("input", arrays["input"], xp),
    references=("PyTorch, ``torch.nn.functional.binary_cross_entropy`` (2.13): the clamps of the log and "
                "of the gradient's denominator.",),
    example="""
    >>> import numpy as np, lossk
    >>> round(float(lossk.binary_cross_entropy(np.array([0.9, 0.2]), np.array([1.0, 0.0]))), 6)
    0.164252
    """,
)

# ---- BCE on logits ------------------------------------------------------------------------------------------


def _bce_with_logits(xp, x, y, *, order, pos_weight):
    # softplus(-x) = log1p(exp(-|x|)) + max(-x, 0) never overflows, and sigmoid is evaluated from the same
    # exp(-|x|), so logits of ±1e4 give finite losses and exact 0/1 gradients
    decay = xp.exp(-xp.abs(x))
    softplus_neg = xp.log1p(decay) + xp.clip(-x, 0, None)
    log_weight = 1.0 if pos_weight is None else 1 + (pos_weight - 1) * y
    loss = (1 - y) * x + log_weight * softplus_neg
    if order == 0:
        return loss, None, None
    reciprocal = 1 / (1 + decay)
    sigmoid = xp.where(x >= 0, reciprocal, decay * reciprocal)
    d1 = log_weight * sigmoid - (y if pos_weight is None else pos_weight * y)
    # sigmoid (1 - sigmoid) = e^-|x| / (1 + e^-|x|)², symmetric in x
    d2 = log_weight * (decay * reciprocal * reciprocal) if order >= 2 else None
    return loss, d1, d2


def _bce_with_logits_element(x, y, pos_weight):
    one = cast_like(1.0, x)
    zero = cast_like(0.0, x)
    decay = exp_of(-abs(x))
    softplus_neg = log1p_unit_of(decay) + (zero if x > zero else -x)
    reciprocal = one / (one + decay)
    sigmoid = reciprocal if x >= zero else decay * reciprocal
    log_weight = one + (pos_weight - one) * y  # pos_weight not given: 1, and log_weight is exactly 1
    loss = (one - y) * x + log_weight * softplus_neg
    return loss, log_weight * sigmoid - pos_weight * y, log_weight * (decay * reciprocal * reciprocal)


def _logits(rng, shape, options, differentiable):
    return {"input": np.asarray(rng.normal(0, 3, shape)), "target": np.asarray(rng.uniform(0, 1, shape))}


BINARY_CROSS_ENTROPY_WITH_LOGITS = ElementwiseLoss(
    name="binary_cross_entropy_with_logits",
    class_name="BCEWithLogitsLoss",
    summary="Binary cross-entropy on logits: sigmoid and BCE in one numerically stable formula.",
    math=r"""
.. math::
    \ell_i = w_i \left[(1 - y_i) x_i + l_i \operatorname{softplus}(-x_i)\right], \quad l_i = 1 + (p_i - 1) y_i,
    \qquad \partial \ell_i / \partial x_i = w_i \left[l_i \sigma(x_i) - p_i y_i\right],
    \qquad \partial^2 \ell_i / \partial x_i^2 = w_i l_i \sigma(x_i) (1 - \sigma(x_i))
""",
    notes="""
    with ``p = pos_weight`` (1 without one), broadcast along the last axis as in PyTorch.
    ``softplus(-x) = log1p(exp(-|x|)) + max(-x, 0)`` never overflows, so saturated logits (±1e4) stay finite.
    """,
    options=(
        weight_option(broadcast=True, draw=last_axis(0, 2)),
        reduction_option(),
        Option("pos_weight", None, ARRAY_KIND, "A weight of the positive term, broadcasting to ``input``'s shape "
               "(one per class along the last axis).", broadcast=True, draw=last_axis(0.2, 3)),
    ),
    formula=_bce_with_logits,
    element=_bce_with_logits_element,
    domain=Domain(_logits, extremes=(1e4, -1e4)),
    oracle="torch.nn.functional.binary_cross_entropy_with_logits",
    class_positional=("weight", "reduction", "pos_weight"),
    references=("PyTorch, ``torch.nn.functional.binary_cross_entropy_with_logits`` (2.13).",),
    example="""
    >>> import numpy as np, lossk
    >>> round(float(lossk.binary_cross_entropy_with_logits(np.array([2.0, -1.0]), np.array([1.0, 0.0]))), 6)
    0.220095
    """,
)

# ---- sigmoid focal loss (torchvision) -----------------------------------------------------------------------
# L = a_t ce q^gamma, ce = BCE with logits, q = 1 - p_t = p (1 - t) + (1 - p) t. In log space: log q is
# -softplus(x) at t = 1 and -softplus(-x) at t = 0 (no underflow of q at extreme logits, no 0^(gamma - 1) in
# the gradient: torchvision's 1 - p_t is 0 past |x| ~ 37, then NaN gradients for gamma < 1); a soft t in (0, 1)
# bounds q below by min(t, 1 - t), so log q is taken directly. With r = q'/q = (1 - 2t) p (1 - p) / q (|r| <= 1):
#   dL/dx   = a_t q^gamma [(p - t) + gamma ce r]
#   d2L/dx2 = a_t q^gamma [p(1-p) + 2 gamma r (p - t) + gamma ce r (1 - 2p) + gamma (gamma - 1) ce r^2]
# (r' = r (1 - 2p) - r^2). The second derivative is negative on the well-classified side for gamma > 0.


def _check_alpha(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value <= 1 or math.isinf(value):
        raise ValueError(f"{name} must be a number in [0, 1], or negative (-1) to turn the class weight off, "
                         f"got {value!r}")


def _focal_factor(xp, x, t, alpha, gamma):
    """``(scale, l1pe, softplus, softplus_neg, log_q)``: the focal factor ``a_t q^gamma``, ``log1p(exp(-|x|))``,
    ``-log(1 - p)``, ``-log p`` and ``log q``."""
    e = xp.exp(-xp.abs(x))
    l1pe = xp.log1p(e)
    zero = xp.zeros_like(x)
    softplus = xp.where(x > 0, x, zero) + l1pe  # -log(1 - p)
    softplus_neg = xp.where(x < 0, -x, zero) + l1pe  # -log p
    p = xp.exp(-softplus_neg)
    soft = xp.where((t == 0) | (t == 1), xp.full_like(t, 0.5), t)  # the where() discards log(0) at t = 0 or 1
    log_q = xp.where(t == 1, -softplus, xp.where(t == 0, -softplus_neg,
                                                 xp.log(p * (1 - soft) + xp.exp(-softplus) * soft)))
    a_t = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else xp.ones_like(t)
    return a_t * xp.exp(gamma * log_q), l1pe, softplus, softplus_neg, log_q


def _sigmoid_focal(xp, x, t, *, order, alpha, gamma):
    scale, l1pe, softplus, softplus_neg, log_q = _focal_factor(xp, x, t, alpha, gamma)
    zero = xp.zeros_like(x)
    ce = xp.where(x > 0, x, zero) - x * t + l1pe
    p = xp.exp(-softplus_neg)
    if order == 0:
        return scale * ce, None, None
    pq = xp.exp(-softplus - softplus_neg)
    r = (1 - 2 * t) * xp.exp(-softplus - softplus_neg - log_q)
    d1 = scale * ((p - t) + gamma * ce * r)
    d2 = None
    if order >= 2:
        d2 = scale * (pq + 2 * gamma * r * (p - t) + gamma * ce * r * (1 - 2 * p) + gamma * (gamma - 1) * ce * r * r)
    return scale * ce, d1, d2


def _focal_terms_element(x, t, alpha, gamma):
    """``(scale, p, pq, ce, r)``: the focal factor ``a_t q^gamma``, ``p``, ``p (1 - p)``, BCE and ``r = q'/q``."""
    zero = cast_like(0.0, x)
    one = cast_like(1.0, x)
    two = cast_like(2.0, x)
    e = exp_of(-abs(x))
    inv = one / (one + e)
    l1pe = log1p_unit_of(e)
    p = inv if x >= zero else e * inv
    not_p = e * inv if x >= zero else inv  # 1 - p, not formed by subtraction
    pq = e * inv * inv
    relu = x if x > zero else zero
    ce = relu - x * t + l1pe
    if t == one:
        log_q = -(relu + l1pe)
        r = -p
    elif t == zero:
        log_q = -(relu - x + l1pe)
        r = not_p
    else:
        q = p * (one - t) + not_p * t
        log_q = log_of(q)
        r = (one - two * t) * pq / q
    a = cast_like(alpha, x)
    a_t = a * t + (one - a) * (one - t) if a >= zero else one
    return a_t * exp_of(cast_like(gamma, x) * log_q), p, pq, ce, r


def _sigmoid_focal_element(x, t, alpha, gamma):
    one = cast_like(1.0, x)
    two = cast_like(2.0, x)
    g = cast_like(gamma, x)
    scale, p, pq, ce, r = _focal_terms_element(x, t, alpha, gamma)
    d1 = scale * ((p - t) + g * ce * r)
    d2 = scale * (pq + two * g * r * (p - t) + g * ce * r * (one - two * p) + g * (g - one) * ce * r * r)
    return scale * ce, d1, d2


def _sigmoid_focal_floor(xp, x, t, *, alpha, gamma):
    # a_t q^gamma p (1 - p): the first term of d2, the focal factor held fixed (lossk.boosting derives it)
    scale, _, softplus, softplus_neg, _ = _focal_factor(xp, x, t, alpha, gamma)
    return scale * xp.exp(-softplus - softplus_neg)


def _sigmoid_focal_floor_element(x, t, alpha, gamma):
    scale, _, pq, _, _ = _focal_terms_element(x, t, alpha, gamma)
    return scale * pq


def _focal_targets(rng, shape, options, differentiable):
    """Logits normal(0, 3); targets 0 and 1 (40% each) and soft labels in (0, 1)."""
    target = rng.uniform(0.05, 0.95, shape)
    draw = rng.random(shape)
    target = np.where(draw < 0.4, 0.0, np.where(draw < 0.8, 1.0, target))
    return {"input": np.asarray(rng.normal(0, 3, shape)), "target": np.asarray(target)}


def _sigmoid_focal_oracle(torch, input, target, *, reduction, alpha=0.25, gamma=2.0):
    """torchvision 0.28's ``sigmoid_focal_loss`` in log space (its own ``(1 - p_t) ** gamma`` underflows to 0 past
    logits of about 37, with NaN gradients for ``gamma < 1``); equal to torchvision's wherever that is finite
    (``tests/test_catalogue_oracles.py`` checks it against torchvision transcribed line for line)."""
    functional = torch.nn.functional
    one, nought = target == 1, target == 0
    soft = torch.where(one | nought, torch.full_like(target, 0.5), target)
    mixed = torch.log(torch.sigmoid(input) * (1 - soft) + torch.sigmoid(-input) * soft)
    log_q = torch.where(one, functional.logsigmoid(-input), torch.where(nought, functional.logsigmoid(input), mixed))
    loss = functional.binary_cross_entropy_with_logits(input, target, reduction="none") * torch.exp(gamma * log_q)
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]


SIGMOID_FOCAL_LOSS = ElementwiseLoss(
    name="sigmoid_focal_loss",
    class_name="SigmoidFocalLoss",
    summary="Sigmoid focal loss on logits (torchvision's): BCE down-weighted on well-classified elements.",
    math=r"""
.. math::
    \ell_i = \alpha_{t,i} (1 - p_{t,i})^\gamma \operatorname{BCE}(x_i, t_i), \quad p = \sigma(x),
    \quad p_t = p t + (1 - p)(1 - t), \quad \alpha_t = \alpha t + (1 - \alpha)(1 - t),
    \qquad \partial \ell_i / \partial x_i = \alpha_{t,i} q_i^\gamma \left[(p_i - t_i) + \gamma\,
    \operatorname{BCE}_i\, r_i\right], \quad q = 1 - p_t, \quad r = (1 - 2t) p (1 - p) / q
""",
    notes="""
    Computed in log space, ``(1 - p_t)^gamma = exp(gamma log(1 - p_t))`` with ``log(1 - p_t)`` a log-sigmoid
    for binary targets: finite losses and gradients for any logit and any ``gamma >= 0``, ``gamma < 1``
    included (torchvision's own formula gives NaN gradients there; optax #1267, kornia #2115). Targets in
    [0, 1]; soft targets are allowed. ``alpha < 0`` (torchvision's -1) turns the class weight off. The default
    reduction is ``'none'``, as torchvision's; the mean divides by the element count. The second derivative
    is negative on the well-classified side for ``gamma > 0``: the surrogate Hessian (``lossk.boosting``'s
    ``hessian="surrogate"``) floors it at ``a_t q^gamma p (1 - p)``, the first term with the focal factor held fixed.
    """,
    options=(
        Option("alpha", 0.25, SCALAR_KIND, "The weight of the positive class, in [0, 1]; negative: no weighting.",
               check=_check_alpha, examples=(-1.0, 0.5)),
        Option("gamma", 2.0, SCALAR_KIND, "The focusing exponent (>= 0; 0 is BCE).", check=check_nonnegative,
               examples=(0.0, 0.5, 3.5)),
        Option("reduction", "none", REDUCTION_KIND, "``'none'``, ``'mean'`` or ``'sum'``: the unreduced loss "
               "(torchvision's default), its mean or its sum."),
    ),
    formula=_sigmoid_focal,
    element=_sigmoid_focal_element,
    scalar_helpers=(_focal_terms_element,),
    hessian_floor=_sigmoid_focal_floor,
    hessian_floor_element=_sigmoid_focal_floor_element,
    domain=Domain(_focal_targets, extremes=(1e4, -1e4, 40.0)),
    oracle=_sigmoid_focal_oracle,
    class_positional=("alpha", "gamma", "reduction"),
    references=(
        "T.-Y. Lin, P. Goyal, R. Girshick, K. He and P. Dollar, \"Focal Loss for Dense Object Detection\", "
        "ICCV 2017.",
        "torchvision, ``torchvision.ops.sigmoid_focal_loss`` (0.28): the options and defaults.",
    ),
    example="""
    >>> import numpy as np, lossk
    >>> x, t = np.array([2.0, -1.0, 40.0]), np.array([1.0, 1.0, 1.0])
    >>> [round(float(v), 6) for v in lossk.sigmoid_focal_loss(x, t)]
    [0.000451, 0.175467, 0.0]
    >>> [round(float(v), 6) for v in lossk.sigmoid_focal_loss.grad(x, t, gamma=0.5)]
    [-0.015114, -0.194015, -0.0]
    """,
)

LOSSES = (BINARY_CROSS_ENTROPY, BINARY_CROSS_ENTROPY_WITH_LOGITS, SIGMOID_FOCAL_LOSS)
