r"""Custom objectives for gradient boosting: any lossk loss as an XGBoost, LightGBM or CatBoost objective.

A boosting library asks its objective, once per round, for the first and second derivative of the loss
with respect to each raw prediction (the margin). Each factory here returns an object that computes both
with lossk's fused ``(loss, grad, hess)`` pass (``lossk.<loss>.value_grad_hessian``), per sample (no
``1/n``), sample weights multiplied in, in the form the library expects::

    import lossk, xgboost
    booster = xgboost.train(params, dtrain, num_boost_round=100,
                            obj=lossk.boosting.xgboost_objective(lossk.huber_loss, delta=2.0))

Conventions, read from each library's sources (versions: XGBoost 3.2, LightGBM 4.7, CatBoost 1.2):

- **XGBoost**: ``obj(predt, dtrain) -> (grad, hess)`` for ``xgboost.train``, ``obj(y_true, y_pred, *,
  sample_weight=None)`` for the scikit-learn estimators (``xgboost.sklearn._objective_decorator`` passes
  ``sample_weight`` only to an objective with a parameter of that name). Multi-class margins and the derivatives
  are ``(n_samples, n_classes)`` (required since 2.1). NumPy or CuPy arrays (``xgboost.objective._grad_arrinf``):
  CuPy margins get CuPy derivatives, computed on the device; the labels are copied to the device once
  per ``DMatrix``. A custom objective applies the sample weights itself.
- **LightGBM**: ``params["objective"] = obj`` with ``obj(preds, train_data)`` for ``lightgbm.train``;
  ``obj(y_true, y_pred, weight)`` for the scikit-learn estimators (``lightgbm.sklearn._ObjectiveFunctionWrapper``
  counts the parameters and silently drops the weights of a two-parameter objective: the objects here
  take three). Multi-class ``(n_samples, n_classes)``; LightGBM casts the derivatives to float32.
- **CatBoost**: an object with ``calc_ders_range(approxes, targets, weights)`` returning ``(der1, der2)``
  per object and ``calc_ders_multi(approx, target, weight)`` (one object, multi-class) returning the
  gradient and a Hessian matrix, both with **signs flipped** (derivatives of a quantity to maximise).

Which loss for which task: regression takes an elementwise loss (``lossk.mse_loss``, ``lossk.huber_loss``, ...),
the margin as ``input`` and the label as ``target``; binary classification
``lossk.binary_cross_entropy_with_logits`` (labels 0/1); multi-class ``lossk.cross_entropy`` (margins
``(n, K)``, labels the class indices). The loss's own options (``delta``, ``weight`` for class weights,
``label_smoothing``, ...) are passed as keywords.

Hessians
--------
``hessian="exact"`` hands the library the exact second derivative. Some losses have a Hessian that is zero
on a set the booster cannot step from (a leaf whose Hessian sums to zero gets no split and no Newton
step: XGBoost's ``min_child_weight``, LightGBM's ``min_sum_hessian_in_leaf``), or negative (cross-entropy
through a soft-cap, the focal loss, some Tweedie powers); ``hessian="surrogate"`` (default) gives a positive
stand-in, ``max(exact, floor) · weight`` (the loss's own ``weight`` option and the sample weights). The floor
is the loss's spec entry ``hessian_floor`` (``lossk._losses``; :data:`SURROGATE_HESSIAN` lists them), which the
fused kernels (Numba and CUDA) apply in the same pass as the gradient, and the reference on any other arrays;
the class losses have the floor 0, applied in one more pass over the exact Hessian. A constant ``c`` for these
losses:

- ``l1_loss``: ``c = 1``, as LightGBM's ``regression_l1`` and XGBoost's ``reg:absoluteerror`` (which then
  refit each leaf to the residuals' median) and scikit-learn's ``AbsoluteError`` (Hessian 1, "a placeholder");
- ``huber_loss``: ``c = 1`` everywhere, as LightGBM's ``huber`` objective (``RegressionHuberLoss``:
  Hessian = weight inside and outside ``delta``);
- ``smooth_l1_loss``: ``c = 1 / beta`` (smooth L1 is Huber with ``delta = beta``, divided by ``beta``);
- ``pinball_loss``: ``c = 1``, as LightGBM's ``quantile`` objective (``RegressionQuantileloss``: Hessian =
  weight, leaves refit to the residuals' quantile);
- every loss without a floor: ``c = 0`` — negative values clipped to 0, as XGBoost does with custom objectives
  (its maintainers, dmlc/xgboost#10105),

or a positive value per element:

- ``sigmoid_focal_loss``: ``a_t q^gamma p (1 - p)`` (``p = sigmoid(x)``, ``q = 1 - p_t``, ``a_t`` the class
  weight; ``lossk._losses.binary``): the focal loss's Hessian with its modulating factor ``a_t q^gamma`` held
  fixed at the current margin, i.e. the BCE Hessian reweighted per sample by the focal factor — the first
  term of the exact Hessian, whose other terms carry ``gamma`` and turn it negative on the well-classified
  side. A generalised Gauss-Newton (IRLS) step, equal to the exact Hessian at ``gamma = 0`` (BCE), positive
  wherever ``p (1 - p)`` is (derived here; the exact expansion is in ``lossk._losses.binary``);
- ``tweedie_loss`` with ``power`` 0 or above 2 (where the exact Hessian turns negative for targets far from
  the mean): ``exp((2 - power) x)``, the expected (Fisher) Hessian ``E_y[d² loss / dx²]`` at
  ``E[y] = mu = exp(x)`` — the working weight ``(d mu / d x)² / V(mu) = mu^(2 - power)`` of Fisher scoring
  (IRLS) for a log-link GLM with variance ``mu^power`` (McCullagh and Nelder, *Generalized Linear Models*,
  2nd ed., 1989, chapter 2); at ``power = 0`` the Gauss-Newton Hessian ``exp(2x)`` of half the squared
  error of ``exp(x)``. For ``1 <= power <= 2`` the exact Hessian is positive and is kept as it is: it is
  what LightGBM's ``tweedie`` computes (``RegressionTweedieLoss::GetGradients``,
  ``src/objective/regression_objective.hpp``: ``-y (1 - rho) exp((1 - rho) s) + (2 - rho) exp((2 - rho) s)``),
  as do XGBoost's ``reg:tweedie`` and scikit-learn's ``HalfTweedieLoss`` (the two boosting libraries take
  powers between 1 and 2 only); ``tests/test_boosting.py`` trains against the built-in objectives at ``power=1.5``.

Multi-class Hessian scale: lossk gives the exact diagonal ``p (1 - p)``; XGBoost's ``multi:softprob``
uses ``2 p (1 - p)`` and LightGBM's ``multiclass`` ``K / (K - 1) · p (1 - p)``, so a lossk objective takes
Newton steps of a different length than the built-in ones (both converge; ``tests/test_boosting.py``
checks the factors by training with them). Likewise the built-in Poisson objectives use exp(margin + δ):
XGBoost's ``max_delta_step`` (0.7 for ``count:poisson``) and LightGBM's ``poisson_max_delta_step`` (0.7,
must be > 0); lossk's ``poisson_loss`` gives the exact exp(margin). Gamma and Tweedie (log link) agree
exactly with both libraries.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ._array_api import Array, is_numpy_namespace, namespace_of
from ._hessian import derivatives
from ._loss_function import LossFunction
from ._multi_input import MultiInputLossFunction

__all__ = ["catboost_objective", "lightgbm_objective", "xgboost_objective", "SURROGATE_HESSIAN"]

HESSIANS = ("exact", "surrogate")

def _surrogate_floors() -> dict[str, Callable[[Any, Array, Array, dict[str, Any]], Any]]:
    from ._losses import ELEMENTWISE_LOSSES

    def floor_of(spec: Any) -> Callable[[Any, Array, Array, dict[str, Any]], Any]:
        def floor(xp: Any, margin: Array, label: Array, options: dict[str, Any]) -> Any:
            return spec.hessian_floor(xp, margin, label, **{o.name: options[o.name] for o in spec.formula_options})

        floor.__doc__ = f"The surrogate Hessian's floor of lossk.{spec.name} (its spec's ``hessian_floor``)."
        return floor

    return {spec.name: floor_of(spec) for spec in ELEMENTWISE_LOSSES.values() if spec.hessian_floor is not None}


SURROGATE_HESSIAN: dict[str, Callable[[Any, Array, Array, dict[str, Any]], Any]] = _surrogate_floors()
"""``floor(xp, margin, label, options)``: a loss's per-element surrogate floor, unweighted (an array, or a number
for a constant floor; module docstring), read from its spec's ``hessian_floor`` (``lossk._losses``); losses not
listed have the floor 0. The objectives do not call these: the fused kernels compute the surrogate in the same
pass as the gradient, and the reference does on any other arrays (``lossk._hessian.derivatives``)."""

CLASS_LOSSES = frozenset({"cross_entropy", "nll_loss"})
"""Losses whose margins are ``(n_samples, n_classes)`` and whose labels are class indices."""

FIXED_OPTIONS = frozenset({"reduction", "grad_output", "out", "inplace"})
"""Set by the objectives themselves: per-sample derivatives (no reduction), new buffers."""


class Objective:
    """The derivatives of one lossk loss per raw prediction, for a boosting library (module docstring).

    ``derivatives(prediction, label, weight)`` returns ``(grad, hess)`` shaped like ``prediction`` in its
    library and dtype. The library-specific subclasses adapt the call forms.
    """

    def __init__(self, loss: LossFunction | str, *, hessian: str = "surrogate", dtype: Any = None,
                 backend: str = "auto", **options: Any) -> None:
        function = _single_input(_loss_function(loss))
        if hessian not in HESSIANS:
            raise ValueError(f"hessian must be one of {', '.join(map(repr, HESSIANS))}; got {hessian!r}")
        fixed = FIXED_OPTIONS.intersection(options)
        if fixed:
            raise TypeError(f"{sorted(fixed)[0]} is set by the objective (per-sample derivatives); do not pass it")
        try:
            signature = inspect.signature(function)
            signature.bind_partial(None, None, **options)
        except TypeError as error:
            raise TypeError(f"lossk.{function.name}: {error}") from None
        self.function = function
        self.hessian = hessian
        self.dtype = dtype
        self.backend = backend
        self.options = options
        self._device_labels: weakref.WeakKeyDictionary[Any, Array] = weakref.WeakKeyDictionary()
        self._buffers: tuple[Any, np.ndarray, np.ndarray] | None = None

    def __repr__(self) -> str:
        settings = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(lossk.{self.function.name}, hessian={self.hessian!r}{settings})"

    @property
    def is_multiclass(self) -> bool:
        return self.function.name in CLASS_LOSSES

    def derivatives(self, prediction: Array, label: Any, weight: Any = None, *, reuse: bool = False
                    ) -> tuple[Array, Array]:
        """``(grad, hess)`` of the loss at ``prediction`` (the margins) for ``label``, times ``weight``.

        ``reuse=True`` (NumPy margins): the results are written into two arrays this objective keeps and
        overwrites at its next such call — for the libraries' own calls, which copy them at once (a fresh
        pair of arrays per round costs page faults comparable to the kernel's own time).
        """
        xp = namespace_of(prediction=prediction)
        if self.dtype is not None:
            prediction = xp.astype(prediction, getattr(xp, np.dtype(self.dtype).name))
        label = xp.asarray(label) if not _same_library(label, prediction) else label
        if self.is_multiclass:
            if prediction.ndim != 2:
                raise ValueError(f"lossk.{self.function.name} takes margins of shape (n_samples, n_classes); "
                                 f"got shape {tuple(prediction.shape)} (set the library's number of classes)")
            label = _class_indices(xp, label, prediction.shape[0])
        else:
            label = xp.reshape(xp.astype(label, prediction.dtype, copy=False), tuple(prediction.shape))
        if weight is not None and int(np.prod(weight.shape)) == 0:  # XGBoost: an empty array means no weights
            weight = None
        if weight is not None:
            weight = xp.asarray(weight) if not _same_library(weight, prediction) else weight
            weight = xp.astype(weight, prediction.dtype, copy=False)
            if not self.is_multiclass:
                weight = xp.reshape(weight, (prediction.shape[0], *([1] * (prediction.ndim - 1))))
                weight = xp.broadcast_to(weight, tuple(prediction.shape))
        reduction = "sum" if weight is None else "none"
        call = {"reduction": reduction, "grad_output": weight, "backend": self.backend, **self.options}
        out = hess_out = None
        if reuse and isinstance(prediction, np.ndarray):
            out, hess_out = self._kept_buffers(prediction)
        surrogate = self.hessian == "surrogate"
        _, grad, hess, floored = derivatives(self.function, prediction, label, out=out, hess_out=hess_out,
                                             surrogate=surrogate, **call)
        if surrogate and not floored:  # a loss without a floor (the class losses): negative values clipped to 0
            if isinstance(hess, np.ndarray):
                np.maximum(hess, 0, out=hess)  # lossk's new array or the kept buffer: no second allocation
            else:
                hess = xp.maximum(hess, xp.zeros_like(hess))
        return grad, hess

    def _kept_buffers(self, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two C-contiguous arrays shaped like ``prediction``, kept from one call to the next."""
        key = (tuple(prediction.shape), prediction.dtype)
        if self._buffers is None or self._buffers[0] != key:
            self._buffers = (key, np.empty(prediction.shape, prediction.dtype),
                             np.empty(prediction.shape, prediction.dtype))
        return self._buffers[1], self._buffers[2]

    def _labels_on_device(self, dataset: Any, label: np.ndarray, prediction: Array) -> Array:
        """The dataset's labels in the prediction's library: copied there once per dataset (CuPy margins)."""
        if isinstance(prediction, np.ndarray):
            return label
        try:
            cached = self._device_labels.get(dataset)
        except TypeError:  # not weak-referenceable
            cached = None
        if cached is None or cached.shape[0] != label.shape[0]:
            cached = namespace_of(prediction=prediction).asarray(label)
            try:
                self._device_labels[dataset] = cached
            except TypeError:
                pass
        return cached


class XGBoostObjective(Objective):
    """``obj(predt, dtrain)`` for ``xgboost.train``, ``obj(y_true, y_pred, sample_weight=None)`` for its estimators."""

    def __call__(self, first: Any, second: Any, sample_weight: Any = None) -> tuple[Array, Array]:
        if hasattr(second, "get_label"):  # xgboost.train: (margins, DMatrix)
            prediction, dtrain = first, second
            label = self._labels_on_device(dtrain, dtrain.get_label(), prediction)
            weight = dtrain.get_weight()
            return self.derivatives(prediction, label, weight, reuse=True)  # XGBoost copies them at once
        # scikit-learn estimators (or a caller): (labels, margins[, sample_weight])
        return self.derivatives(second, first, sample_weight)


class LightGBMObjective(Objective):
    """``obj(preds, train_data)`` for ``lightgbm.train``, ``obj(y_true, y_pred, weight)`` for its estimators."""

    def __call__(self, first: Any, second: Any, weight: Any = None) -> tuple[Array, Array]:
        if hasattr(second, "get_label"):  # lightgbm.train: (scores, Dataset)
            prediction, train_data = first, second
            label, weight = train_data.get_label(), train_data.get_weight()
            return self.derivatives(np.asarray(prediction), label, weight, reuse=True)  # LightGBM copies them
        # scikit-learn estimators (or a caller): (labels, scores, weight)
        return self.derivatives(np.asarray(second), first, weight)


class CatBoostObjective(Objective):
    """CatBoost's ``calc_ders_range`` / ``calc_ders_multi``: derivatives of ``-loss`` (signs flipped)."""

    def calc_ders_range(self, approxes: Any, targets: Any, weights: Any) -> list[tuple[float, float]]:
        """``(-d loss/d approx, -d² loss/d approx²)`` for each object of the range."""
        grad, hess = self.derivatives(np.asarray(approxes, dtype=np.float64), np.asarray(targets),
                                      None if weights is None else np.asarray(weights))
        return list(zip((-grad).tolist(), (-hess).tolist()))

    def calc_ders_multi(self, approx: Any, target: Any, weight: Any) -> tuple[list[float], list[list[float]]]:
        """One object's flipped gradient and Hessian (its diagonal, the off-diagonal terms 0)."""
        grad, hess = self.derivatives(np.asarray(approx, dtype=np.float64)[None, :], np.asarray([target]),
                                      None if weight is None else np.asarray([weight]))
        diagonal = np.diag(-hess[0])
        return (-grad[0]).tolist(), diagonal.tolist()


def xgboost_objective(loss: LossFunction | str, /, *, hessian: str = "surrogate", dtype: Any = None,
                      backend: str = "auto", **options: Any) -> XGBoostObjective:
    """``loss`` as an XGBoost custom objective (``obj=`` of ``xgboost.train``, ``objective=`` of its estimators).

    Parameters
    ----------
    loss : LossFunction or str
        A lossk loss (``lossk.huber_loss``) or its name.
    hessian : {'surrogate', 'exact'}, default 'surrogate'
        The exact second derivative, or its positive surrogate where it vanishes or turns negative
        (see :mod:`lossk.boosting`).
    dtype : floating dtype, optional
        The precision of the derivatives; default the margins' own (XGBoost's are float32, as its built-in
        objectives compute; ``numpy.float64`` computes in double, as a NumPy objective on float64 does).
    backend : str, default 'auto'
        lossk's backend for the derivatives.
    **options
        The loss's options (``delta=2.0``, class ``weight``, ``label_smoothing``...); ``reduction`` is fixed.

    Returns
    -------
    XGBoostObjective
        A callable taking both of XGBoost's call forms and returning ``(grad, hess)`` shaped like the margins.
    """
    return XGBoostObjective(loss, hessian=hessian, dtype=dtype, backend=backend, **options)


def lightgbm_objective(loss: LossFunction | str, /, *, hessian: str = "surrogate", dtype: Any = None,
                       backend: str = "auto", **options: Any) -> LightGBMObjective:
    """``loss`` as a LightGBM custom objective (``params["objective"]`` of ``lightgbm.train``, ``objective=``
    of its estimators). Parameters as :func:`xgboost_objective`."""
    return LightGBMObjective(loss, hessian=hessian, dtype=dtype, backend=backend, **options)


def catboost_objective(loss: LossFunction | str, /, *, hessian: str = "surrogate", dtype: Any = None,
                       backend: str = "auto", **options: Any) -> CatBoostObjective:
    """``loss`` as a CatBoost custom objective (``loss_function=``; give CatBoost an ``eval_metric`` too).
    Parameters as :func:`xgboost_objective`; the derivatives are returned with CatBoost's flipped signs."""
    return CatBoostObjective(loss, hessian=hessian, dtype=dtype, backend=backend, **options)


def _loss_function(loss: LossFunction | str) -> LossFunction:
    import lossk

    if isinstance(loss, str):
        function = getattr(lossk, loss, None)
        if not isinstance(function, LossFunction):
            raise ValueError(f"loss must be a lossk loss or its name; lossk has no loss named {loss!r}")
        return function
    if not isinstance(loss, LossFunction):
        raise TypeError(f"loss must be a lossk loss (such as lossk.huber_loss) or its name; got {loss!r}")
    return loss


def _single_input(function: LossFunction) -> LossFunction:
    """``function``, refused where it is a multi-input loss (``lossk._multi_input``): the objectives hand a loss
    one margin array and its labels."""
    if isinstance(function, MultiInputLossFunction):
        raise ValueError(
            f"loss must be a loss of one margin array against its labels, element by element or row by row of "
            f"classes; lossk.{function.name} is a multi-input loss of ({', '.join(function.spec.inputs)}) "
            "(multi-label margins: lossk.binary_cross_entropy_with_logits, whose per-element derivatives are "
            "multilabel_soft_margin_loss's times the number of classes)")
    return function


def _same_library(a: Any, b: Array) -> bool:
    return type(a).__module__.split(".")[0] == type(b).__module__.split(".")[0] and hasattr(a, "shape")


def _class_indices(xp: Any, label: Array, n_rows: int) -> Array:
    """Class labels (floats, as the libraries store them) as int64 indices, checked on host arrays."""
    label = xp.reshape(label, (-1,))
    if label.shape[0] != n_rows:
        raise ValueError(f"got {label.shape[0]} labels for {n_rows} rows of margins")
    if xp.isdtype(label.dtype, "integral"):
        return xp.astype(label, xp.int64)
    indices = xp.astype(label, xp.int64)
    if is_numpy_namespace(xp) and not bool(xp.all(xp.astype(indices, label.dtype) == label)):
        raise ValueError("class labels must be whole numbers (the class indices 0 .. n_classes - 1)")
    return indices
