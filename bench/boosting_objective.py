"""One boosting round's objective call: lossk's fused objective against the NumPy objective people write.

``python -m bench.boosting_objective [--rows N] [--classes-rows N]`` times what XGBoost asks for each round,
``obj(predt, dtrain) -> (grad, hess)``, on float32 margins and labels (XGBoost's dtypes), the dataset a
stand-in that returns the labels (no weights):

- regression, 10^7 rows: Huber (``delta=1``), exact Hessian and the surrogate (1 everywhere, LightGBM's);
- multi-class, 10^6 rows x 10 classes: softmax cross-entropy, labels as XGBoost stores them (float32),
  Hessian surrogate (the default, max(exact, 0)) and exact.

The NumPy peers are the obvious several-pass code (in the margins' dtype); their results are checked
against lossk's before timing. Medians of repeated calls after warm-up; the ratio is NumPy / lossk.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import lossk
from bench.timing import measure
from lossk import boosting


def numpy_huber(y_true: np.ndarray, y_pred: np.ndarray, delta: float, surrogate: bool) -> tuple[np.ndarray, np.ndarray]:
    residual = y_pred - y_true
    inside = np.abs(residual) <= delta
    grad = np.where(inside, residual, delta * np.sign(residual))
    hess = np.ones_like(residual) if surrogate else inside.astype(residual.dtype)
    return grad, hess


def numpy_softmax(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = y_true.astype(np.int64)
    shifted = y_pred - y_pred.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    p = exponentials / exponentials.sum(axis=1, keepdims=True)
    grad = p.copy()
    grad[np.arange(p.shape[0]), labels] -= 1
    hess = p * (1 - p)
    return grad, hess


class Dataset:
    """What ``obj(predt, dtrain)`` reads from XGBoost's ``DMatrix``: the labels and (empty) weights."""

    def __init__(self, label: np.ndarray) -> None:
        self.label = label

    def get_label(self) -> np.ndarray:
        return self.label

    def get_weight(self) -> np.ndarray:
        return np.empty(0, np.float32)


def _check(ours: tuple[np.ndarray, np.ndarray], theirs: tuple[np.ndarray, np.ndarray], what: str) -> None:
    for name, a, b in zip(("grad", "hess"), ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype, (what, name, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=f"{what}: {name}")


def _row(what: str, ours_s: float, theirs_s: float) -> str:
    return f"| {what} | {theirs_s * 1e3:9.1f} | {ours_s * 1e3:9.1f} | {theirs_s / ours_s:5.2f}x |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10**7, help="regression rows (default 10^7)")
    parser.add_argument("--classes-rows", type=int, default=10**6, help="multi-class rows (default 10^6)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per measurement")
    parser.add_argument("--no-regression", action="store_true", help="time the multi-class objective only")
    arguments = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    settings = {"warmup": 2, "repeats": 30, "budget_s": arguments.budget}
    print(f"threads: NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'all')} cores={os.cpu_count()}")
    print("| objective call (float32) | NumPy ms | lossk ms | NumPy / lossk |")
    print("|---|---|---|---|")
    y_pred = rng.normal(0, 2, arguments.rows).astype(np.float32)
    y_true = rng.normal(0, 2, arguments.rows).astype(np.float32)
    for hessian in () if arguments.no_regression else ("exact", "surrogate"):
        objective = boosting.xgboost_objective(lossk.huber_loss, delta=1.0, hessian=hessian)
        dtrain = Dataset(y_true)
        _check(objective(y_pred, dtrain), numpy_huber(y_true, y_pred, 1.0, hessian == "surrogate"), hessian)
        ours = measure(lambda: objective(y_pred, dtrain), **settings)
        theirs = measure(lambda: numpy_huber(y_true, y_pred, 1.0, hessian == "surrogate"), **settings)
        print(_row(f"Huber, {arguments.rows:.0e} rows, hessian={hessian}", ours.median_s, theirs.median_s))
    n, k = arguments.classes_rows, arguments.classes
    margins = rng.normal(0, 2, (n, k)).astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.float32)
    dtrain = Dataset(labels)
    for hessian in ("surrogate", "exact"):  # surrogate (the default): max(exact, 0), one more pass over hess
        objective = boosting.xgboost_objective(lossk.cross_entropy, hessian=hessian)
        _check(objective(margins, dtrain), numpy_softmax(labels, margins), "softmax")
        ours = measure(lambda: objective(margins, dtrain), **settings)
        theirs = measure(lambda: numpy_softmax(labels, margins), **settings)
        print(_row(f"softmax cross-entropy, {n:.0e} x {k}, hessian={hessian}", ours.median_s, theirs.median_s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
