"""Regression losses: L1, mean squared error, Huber and smooth L1, with PyTorch's signatures.

Each public function validates its arguments and dispatches (``lossk._dispatch``); the formulas live in
``lossk._reference.regression``, the specification every fused kernel reproduces.
"""

from __future__ import annotations

from ._array_api import Array, namespace_of
from ._loss_function import Prepared, loss_function
from ._reference import regression as reference
from ._validation import check_array, check_floating, check_nonnegative, check_positive, check_reduction, check_same_shape


def _prepare_pointwise(input: Array, target: Array, reduction: str, **options: object) -> Prepared:
    """Shared checks: floating input and target of one shape, an optional ``weight`` option of that shape too."""
    check_array("input", input)
    check_array("target", target)
    weight = options.get("weight")
    xp = namespace_of(input=input, target=target, weight=weight)
    check_floating("input", input, xp)
    check_floating("target", target, xp)
    check_same_shape("target", target, "input", input)
    check_reduction(reduction)
    if weight is not None:
        check_floating("weight", weight, xp)
        check_same_shape("weight", weight, "input", input)
    return Prepared(xp, input, target, reduction, tuple(input.shape), options)


@loss_function(reference.l1_loss)
def l1_loss(input: Array, target: Array, *, reduction: str = "mean", weight: Array | None = None) -> Prepared:
    r"""Mean absolute error.

    .. math:: \ell_i = w_i |x_i - y_i|, \qquad \partial \ell_i / \partial x_i = w_i \operatorname{sign}(x_i - y_i)

    The gradient at a zero residual is 0 (the subgradient PyTorch picks). ``reduction="mean"`` divides
    by the element count, or by ``sum(weight)`` when ``weight`` (shaped like ``input``) is given.
    PyTorch equivalent: ``torch.nn.functional.l1_loss``.

    >>> import numpy as np, lossk
    >>> float(lossk.l1_loss(np.array([-2.0, 3.0, 0.0, 5.0]), np.array([0.0, 1.0, 2.0, 3.0])))
    2.0
    """
    return _prepare_pointwise(input, target, reduction, weight=weight)


@loss_function(reference.mse_loss)
def mse_loss(input: Array, target: Array, *, reduction: str = "mean", weight: Array | None = None) -> Prepared:
    r"""Mean squared error.

    .. math:: \ell_i = w_i (x_i - y_i)^2, \qquad \partial \ell_i / \partial x_i = 2 w_i (x_i - y_i)

    Note the factor 2: ``prediction - target`` is the gradient of *half* the squared error.
    ``reduction="mean"`` divides by the element count, or by ``sum(weight)`` with a ``weight``.
    PyTorch equivalent: ``torch.nn.functional.mse_loss``.

    >>> import numpy as np, lossk
    >>> truth = np.array([0.0, 1.0, 2.0, 3.0])
    >>> float(lossk.mse_loss(np.array([-2.0, 3.0, 0.0, 5.0]), truth))
    4.0
    >>> float(lossk.mse_loss(np.array([0.0, 1.0, 2.0, 10.0]), truth))
    12.25
    >>> lossk.mse_loss.grad(np.array([0.0, 1.0, 2.0, 10.0]), truth)
    array([0. , 0. , 0. , 3.5])
    """
    return _prepare_pointwise(input, target, reduction, weight=weight)


@loss_function(reference.huber_loss)
def huber_loss(
    input: Array, target: Array, *, reduction: str = "mean", delta: float = 1.0, weight: Array | None = None
) -> Prepared:
    r"""Huber loss: quadratic near the target, linear beyond ``delta`` (> 0).

    .. math::
        \ell_i = w_i \begin{cases} \tfrac12 d_i^2 & |d_i| < \delta \\
                 \delta (|d_i| - \tfrac12 \delta) & \text{otherwise} \end{cases}, \quad d = x - y,
        \qquad \partial \ell_i / \partial x_i = w_i \operatorname{clip}(d_i, -\delta, \delta)

    ``reduction="mean"`` divides by the element count, with or without ``weight`` (PyTorch 2.13 does;
    its l1 and mse divide by ``sum(weight)``). PyTorch equivalent: ``torch.nn.functional.huber_loss``.

    >>> import numpy as np, lossk
    >>> float(lossk.huber_loss(np.array([0.5, 3.0]), np.array([0.0, 0.0])))
    1.3125
    """
    check_positive("delta", delta)
    return _prepare_pointwise(input, target, reduction, weight=weight, delta=float(delta))


@loss_function(reference.smooth_l1_loss)
def smooth_l1_loss(input: Array, target: Array, *, reduction: str = "mean", beta: float = 1.0) -> Prepared:
    r"""Smooth L1 loss: Huber divided by ``beta``; ``beta=0`` is exactly L1.

    .. math::
        \ell_i = \begin{cases} \tfrac12 d_i^2 / \beta & |d_i| < \beta \\
                 |d_i| - \tfrac12 \beta & \text{otherwise} \end{cases},
        \qquad \partial \ell_i / \partial x_i = \operatorname{clip}(d_i / \beta, -1, 1)

    PyTorch equivalent: ``torch.nn.functional.smooth_l1_loss``.

    >>> import numpy as np, lossk
    >>> float(lossk.smooth_l1_loss(np.array([0.5, 3.0]), np.array([0.0, 0.0]), beta=2.0))
    1.03125
    """
    check_nonnegative("beta", beta)
    return _prepare_pointwise(input, target, reduction, beta=float(beta))
