"""Multi-class losses: cross-entropy and negative log-likelihood, with PyTorch's signatures.

Inputs are shaped (C,) (one unbatched sample), (N, C) or (N, C, d1, ...) (per-pixel classes); class-index
targets drop the class axis, class-probability targets (cross-entropy only) keep it.
"""

from __future__ import annotations

import operator
from types import ModuleType

from ._array_api import Array, namespace_of
from ._loss_function import Prepared, loss_function
from ._reference import classification as reference
from ._validation import (
    check_array,
    check_class_indices,
    check_floating,
    check_integer,
    check_nonnegative,
    check_positive,
    check_reduction,
    check_same_shape,
    check_shape,
    check_unit_interval,
)


def _class_axis_layout(input: Array) -> tuple[int, tuple[int, ...]]:
    """(number of classes, shape of the unreduced loss) for input (C,), (N, C) or (N, C, d1, ...)."""
    if input.ndim == 0:
        raise ValueError("input must have a class axis: shape (C,), (N, C) or (N, C, d1, ...); got a 0-d array")
    if input.ndim == 1:
        return input.shape[0], ()
    return input.shape[1], (input.shape[0], *input.shape[2:])


def _check_index_target(
    target: Array, loss_shape: tuple[int, ...], n_classes: int, ignore_index: int, xp: ModuleType
) -> None:
    check_integer("target", target, xp)
    check_shape("target", target, loss_shape, "the input's shape without its class axis")
    check_class_indices("target", target, n_classes, ignore_index, xp)


def _prepare_classes(
    input: Array, target: Array, weight: Array | None, reduction: str, ignore_index: int
) -> tuple[ModuleType, int, tuple[int, ...]]:
    check_array("input", input)
    check_array("target", target)
    xp = namespace_of(input=input, target=target, weight=weight)
    check_floating("input", input, xp)
    check_reduction(reduction)
    try:
        operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}") from None
    n_classes, loss_shape = _class_axis_layout(input)
    if weight is not None:
        check_floating("weight", weight, xp)
        check_shape("weight", weight, (n_classes,), "one weight per class")
    return xp, n_classes, loss_shape


@loss_function(reference.cross_entropy)
def cross_entropy(
    input: Array,
    target: Array,
    *,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
) -> Prepared:
    r"""Cross-entropy between logits ``input`` and class indices or class probabilities ``target``.

    With per-class coefficients :math:`q` and :math:`s = \sum_c q_c`,

    .. math:: \ell = -\sum_c q_c \log \operatorname{softmax}(z)_c, \qquad
              \partial \ell / \partial z = s \operatorname{softmax}(z) - q

    - class index :math:`y`: :math:`q = (1 - \varepsilon) w_y \operatorname{onehot}(y) + \tfrac{\varepsilon}{C} w`,
      and :math:`q = 0` where ``target == ignore_index``; the mean divides by :math:`\sum w_y` over the
      rows not ignored (NaN if every row is ignored, as in PyTorch);
    - class probabilities :math:`t` (floating target shaped like ``input``):
      :math:`q = w \left((1 - \varepsilon) t + \tfrac{\varepsilon}{C}\right)`; the mean divides by the row count.

    :math:`\varepsilon` is ``label_smoothing`` in [0, 1], :math:`w` the per-class ``weight`` (shape (C,)).
    Class indices outside [0, C) raise ``ValueError`` for host arrays; on a GPU or Dask the check would cost
    a device synchronisation or a computation and is skipped. PyTorch equivalent:
    ``torch.nn.functional.cross_entropy``.

    Options for LLM training (not in PyTorch; Liger-Kernel's semantics):

    - ``softcap`` :math:`c > 0` (Gemma 2): the logits become :math:`c \tanh(z / c)` before everything
      else; the gradient gains the factor :math:`1 - \tanh^2(z / c)`.
    - ``z_loss`` :math:`\lambda \ge 0` (PaLM's auxiliary loss): every row not ignored (every row for
      probability targets) adds :math:`\lambda \operatorname{lse}^2`, :math:`\operatorname{lse} =
      \log \sum_c e^{z_c}` of the (soft-capped) logits, unweighted and unsmoothed; its gradient is
      :math:`2 \lambda \operatorname{lse} \operatorname{softmax}(z)`. The mean divides this part by the
      number of rows not ignored, the cross-entropy part by its own divisor above.
    - ``return_z_loss=True``: the call returns ``(loss, z_term)`` and ``value_and_grad`` returns
      ``((loss, z_term), grad)``; ``z_term`` is the z-loss part alone, reduced like the loss, which
      includes it (for logging). ``.grad`` returns the gradient alone.

    >>> import numpy as np, lossk
    >>> logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    >>> round(float(lossk.cross_entropy(logits, np.array([0, 2]))), 6)
    0.160927
    """
    xp, n_classes, loss_shape = _prepare_classes(input, target, weight, reduction, ignore_index)
    check_unit_interval("label_smoothing", label_smoothing)
    check_nonnegative("z_loss", z_loss)
    if softcap is not None:
        check_positive("softcap", softcap)
    if not isinstance(return_z_loss, bool):
        raise TypeError(f"return_z_loss must be a bool, got {return_z_loss!r}")
    if xp.isdtype(target.dtype, "real floating"):
        check_same_shape("target", target, "input", input)
    else:
        _check_index_target(target, loss_shape, n_classes, ignore_index, xp)
    options = {
        "weight": weight, "ignore_index": int(ignore_index), "label_smoothing": float(label_smoothing),
        "z_loss": float(z_loss), "softcap": None if softcap is None else float(softcap),
        "return_z_loss": return_z_loss,
    }
    return Prepared(xp, input, target, reduction, loss_shape, options)


@loss_function(reference.nll_loss)
def nll_loss(
    input: Array,
    target: Array,
    *,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Prepared:
    r"""Negative log-likelihood of class indices ``target`` under log-probabilities ``input``.

    .. math:: \ell = -w_y x_y, \qquad \partial \ell / \partial x = -w_y \operatorname{onehot}(y)

    Rows with ``target == ignore_index`` contribute 0; the mean divides by :math:`\sum w_y` over the rest.
    ``nll_loss(log_softmax(z), y)`` equals ``cross_entropy(z, y)``.
    PyTorch equivalent: ``torch.nn.functional.nll_loss``.

    >>> import numpy as np, lossk
    >>> float(lossk.nll_loss(np.log(np.array([[0.5, 0.25, 0.25]])), np.array([1])))  # -log(0.25)
    1.3862943611198906
    """
    xp, n_classes, loss_shape = _prepare_classes(input, target, weight, reduction, ignore_index)
    _check_index_target(target, loss_shape, n_classes, ignore_index, xp)
    return Prepared(xp, input, target, reduction, loss_shape, {"weight": weight, "ignore_index": int(ignore_index)})
