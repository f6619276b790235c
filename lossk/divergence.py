"""The Kullback-Leibler divergence, with PyTorch's signature."""

from __future__ import annotations

from ._array_api import Array, namespace_of
from ._loss_function import Prepared, loss_function
from ._reference import divergence as reference
from ._validation import REDUCTIONS, check_array, check_floating, check_reduction, check_same_shape


@loss_function(reference.kl_div)
def kl_div(input: Array, target: Array, *, reduction: str = "mean", log_target: bool = False) -> Prepared:
    r"""Kullback-Leibler divergence of ``target`` from the log-probabilities ``input``.

    .. math::
        \ell_i = y_i (\log y_i - x_i) \;(0 \text{ where } y_i = 0), \qquad
        \partial \ell_i / \partial x_i = -y_i

    With ``log_target=True`` the target holds log-probabilities: :math:`\ell_i = e^{y_i} (y_i - x_i)`,
    gradient :math:`-e^{y_i}`. ``reduction="batchmean"`` divides the sum by ``input.shape[0]`` — the
    mathematically correct KL divergence per sample; ``"mean"`` divides by the element count, as PyTorch does.
    PyTorch equivalent: ``torch.nn.functional.kl_div``.

    >>> import numpy as np, lossk
    >>> p = np.array([[0.5, 0.5]]); q = np.array([[0.25, 0.75]])
    >>> round(float(lossk.kl_div(np.log(q), p, reduction="batchmean")), 6)
    0.143841
    """
    check_array("input", input)
    check_array("target", target)
    xp = namespace_of(input=input, target=target)
    check_floating("input", input, xp)
    check_floating("target", target, xp)
    check_same_shape("target", target, "input", input)
    check_reduction(reduction, (*REDUCTIONS, "batchmean"))
    return Prepared(xp, input, target, reduction, tuple(input.shape), {"log_target": bool(log_target)})
