"""lossk objectives in XGBoost, LightGBM and CatBoost (``lossk.boosting``), trained on scikit-learn's bundled data.

Where a library's built-in objective has the same derivatives as the lossk loss (squared error with no
L2 leaf penalty, so that MSE's factor 2 cancels in the Newton step; logistic; Poisson, Gamma and Tweedie
with a log link, Poisson's max_delta_step accounted for), the trained models must
predict the same margins to 1e-6 relative (to the margins' scale). Where the conventions differ — the
multi-class Hessian, which XGBoost scales by 2 and LightGBM by K / (K - 1) — the lossk objective must
match a NumPy-written objective with the exact derivatives, and, multiplied by the library's factor, the
built-in objective (which checks the factors stated in ``lossk.boosting``). Few rounds, one thread.
"""

from __future__ import annotations

import numpy as np
import pytest

import lossk
from lossk import boosting

datasets = pytest.importorskip("sklearn.datasets")

RELATIVE = 1e-6
ROUNDS = 4


def _assert_same_margins(actual, desired):
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    assert actual.shape == desired.shape
    assert np.max(np.abs(actual - desired)) <= RELATIVE * np.max(np.abs(desired)), np.max(np.abs(actual - desired))


def _regression():
    return datasets.load_diabetes(return_X_y=True)


def _binary():
    return datasets.load_breast_cancer(return_X_y=True)


def _digits(rows=600):
    X, y = datasets.load_digits(return_X_y=True)
    return X[:rows], y[:rows]


def _weights(n):
    return np.random.default_rng(0).uniform(0.5, 2.0, n)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def numpy_softmax_derivatives(margins, labels, weight=None):
    """What people write today: p - onehot(y) and the exact diagonal p (1 - p), weighted."""
    p = _softmax(np.asarray(margins, np.float64))
    onehot = np.eye(p.shape[1])[np.asarray(labels, np.int64)]
    grad, hess = p - onehot, p * (1 - p)
    if weight is not None and np.size(weight):
        grad, hess = grad * weight[:, None], hess * weight[:, None]
    return grad, hess


def _scaled(objective, factor):
    """``objective`` with its Hessian multiplied by ``factor`` (the library's multi-class convention)."""

    def scaled(predictions, data):
        grad, hess = objective(predictions, data)
        return grad, hess * factor

    return scaled


# ---- XGBoost ----------------------------------------------------------------------------------------------

XGBOOST = {"reg_lambda": 0.0, "min_child_weight": 0.0, "max_depth": 3, "eta": 0.3, "nthread": 1}


def _xgboost_margins(xgb, X, y, params, objective=None, weight=None, rounds=ROUNDS):
    dtrain = xgb.DMatrix(X, label=y, weight=weight)
    booster = xgb.train(params, dtrain, rounds, obj=objective)
    return booster.predict(dtrain, output_margin=True)


@pytest.mark.parametrize("weighted", [False, True])
def test_xgboost_squared_error_matches_builtin(weighted):
    xgb = pytest.importorskip("xgboost")
    X, y = _regression()
    weight = _weights(len(y)) if weighted else None
    params = {**XGBOOST, "base_score": 0.0}
    ours = _xgboost_margins(xgb, X, y, params, boosting.xgboost_objective(lossk.mse_loss), weight)
    builtin = _xgboost_margins(xgb, X, y, {**params, "objective": "reg:squarederror"}, None, weight)
    _assert_same_margins(ours, builtin)


@pytest.mark.parametrize("weighted", [False, True])
def test_xgboost_logistic_matches_builtin(weighted):
    xgb = pytest.importorskip("xgboost")
    X, y = _binary()
    weight = _weights(len(y)) if weighted else None
    objective = boosting.xgboost_objective(lossk.binary_cross_entropy_with_logits)
    ours = _xgboost_margins(xgb, X, y, {**XGBOOST, "base_score": 0.0}, objective, weight)
    builtin = _xgboost_margins(xgb, X, y, {**XGBOOST, "objective": "binary:logistic", "base_score": 0.5}, None, weight)
    _assert_same_margins(ours, builtin)


def test_xgboost_multiclass_matches_numpy_objective_and_builtin_scale():
    xgb = pytest.importorskip("xgboost")
    X, y = _digits()
    weight = _weights(len(y))
    params = {**XGBOOST, "base_score": 0.0, "num_class": 10}
    # in double, as the NumPy objective computes: a float32 rounding apart, a near-tie split may flip
    objective = boosting.xgboost_objective(lossk.cross_entropy, dtype=np.float64)
    ours = _xgboost_margins(xgb, X, y, params, objective, weight)

    def by_hand(predt, dtrain):
        return numpy_softmax_derivatives(predt, dtrain.get_label(), dtrain.get_weight())

    assert ours.shape == (len(y), 10)
    _assert_same_margins(ours, _xgboost_margins(xgb, X, y, params, by_hand, weight))
    # XGBoost's multi:softprob uses 2 p (1 - p) (and applies the weights once, as a custom objective must): the
    # lossk objective with that factor is the built-in one
    builtin = _xgboost_margins(xgb, X, y, {**params, "objective": "multi:softprob"})
    _assert_same_margins(_xgboost_margins(xgb, X, y, params, _scaled(objective, 2.0)), builtin)
    # With sample weights, a split of zero gain is taken at random among the features: in the first round every
    # margin is 0, p = 1/10, so in a node whose rows are all of other classes than k, g/h = p / (2 p (1 - p)) is
    # the same for every row and every split's gain G_L²/H_L + G_R²/H_R - G²/H is exactly 0. XGBoost computes
    # the gain in float32, where it comes out as a few quanta of the parent's term (2^-19 to 2^-17, 1.9e-6 to
    # 7.6e-6, seen here) and, above its kRtEps of 1e-6, the largest wins. Without weights both objectives hand
    # XGBoost the same float32 numbers (g = 0.1, h = 0.18 on every such row), so the noise is the same; with
    # them the built-in's float32 products p w and 2 p (1 - p) w and a custom objective's float64 ones, rounded
    # once, differ by an ulp on some rows, and the two pick different features for tree 0's node 2 (gains
    # 3.8e-6 and 7.6e-6: a NumPy objective of the exact derivatives does the same as lossk's), whose subtrees
    # then differ by 7e-4 of the margins after 4 rounds. A min_split_loss of 1e-4, 13 times the largest quantum,
    # prunes those splits (and the same few small-gain ones) from both models, which then agree to 1e-6 (to
    # 1.7e-7, measured; the weighted lossk objective itself agrees with the NumPy one exactly, above).
    noise_free = {**params, "min_split_loss": 1e-4}
    builtin = _xgboost_margins(xgb, X, y, {**noise_free, "objective": "multi:softprob"}, None, weight)
    _assert_same_margins(_xgboost_margins(xgb, X, y, noise_free, _scaled(objective, 2.0), weight), builtin)


def test_xgboost_scikit_learn_api_takes_sample_weight():
    xgb = pytest.importorskip("xgboost")
    X, y = _regression()
    weight = _weights(len(y))
    settings = {"n_estimators": ROUNDS, "max_depth": 3, "learning_rate": 0.3, "reg_lambda": 0.0,
                "min_child_weight": 0.0, "n_jobs": 1, "base_score": 0.0}
    model = xgb.XGBRegressor(objective=boosting.xgboost_objective(lossk.huber_loss, delta=30.0), **settings)
    model.fit(X, y, sample_weight=weight)
    native = _xgboost_margins(xgb, X, y, {**XGBOOST, "base_score": 0.0},
                              boosting.xgboost_objective(lossk.huber_loss, delta=30.0), weight)
    _assert_same_margins(model.predict(X, output_margin=True), native)


def test_xgboost_classifier_api_multiclass():
    xgb = pytest.importorskip("xgboost")
    X, y = _digits(300)
    model = xgb.XGBClassifier(objective=boosting.xgboost_objective(lossk.cross_entropy), n_estimators=2,
                              max_depth=2, n_jobs=1)
    model.fit(X, y)
    assert model.predict_proba(X).shape == (300, 10)
    assert np.mean(model.predict(X) == y) > 0.5


# ---- LightGBM ---------------------------------------------------------------------------------------------

LIGHTGBM = {"verbose": -1, "num_threads": 1, "boost_from_average": False, "num_leaves": 8, "learning_rate": 0.3,
            "min_sum_hessian_in_leaf": 0.0, "min_data_in_leaf": 5, "deterministic": True}


def _lightgbm_margins(lgb, X, y, params, objective, weight=None, rounds=ROUNDS):
    dataset = lgb.Dataset(X, label=y, weight=weight, params={"verbose": -1})
    booster = lgb.train({**params, "objective": objective}, dataset, rounds)
    return booster.predict(X, raw_score=True)


@pytest.mark.parametrize("weighted", [False, True])
def test_lightgbm_squared_error_matches_builtin(weighted):
    lgb = pytest.importorskip("lightgbm")
    X, y = _regression()
    weight = _weights(len(y)) if weighted else None
    ours = _lightgbm_margins(lgb, X, y, LIGHTGBM, boosting.lightgbm_objective(lossk.mse_loss), weight)
    _assert_same_margins(ours, _lightgbm_margins(lgb, X, y, LIGHTGBM, "regression", weight))


@pytest.mark.parametrize("weighted", [False, True])
def test_lightgbm_logistic_matches_builtin(weighted):
    lgb = pytest.importorskip("lightgbm")
    X, y = _binary()
    weight = _weights(len(y)) if weighted else None
    objective = boosting.lightgbm_objective(lossk.binary_cross_entropy_with_logits)
    ours = _lightgbm_margins(lgb, X, y, LIGHTGBM, objective, weight)
    _assert_same_margins(ours, _lightgbm_margins(lgb, X, y, LIGHTGBM, "binary", weight))


@pytest.mark.parametrize("weighted", [False, True])
def test_lightgbm_multiclass_matches_numpy_objective_and_builtin_scale(weighted):
    lgb = pytest.importorskip("lightgbm")
    X, y = _digits()
    weight = _weights(len(y)) if weighted else None
    params = {**LIGHTGBM, "num_class": 10}
    objective = boosting.lightgbm_objective(lossk.cross_entropy)
    ours = _lightgbm_margins(lgb, X, y, params, objective, weight)

    def by_hand(preds, train_data):
        return numpy_softmax_derivatives(preds, train_data.get_label(), train_data.get_weight())

    assert ours.shape == (len(y), 10)
    _assert_same_margins(ours, _lightgbm_margins(lgb, X, y, params, by_hand, weight))
    # LightGBM's multiclass uses K / (K - 1) p (1 - p), weighted once as a custom objective is
    builtin = _lightgbm_margins(lgb, X, y, params, "multiclass", weight)
    _assert_same_margins(_lightgbm_margins(lgb, X, y, params, _scaled(objective, 10 / 9), weight), builtin)


def test_lightgbm_scikit_learn_api_takes_weights():
    """The estimators pass the weights only to a three-parameter objective: the lossk objective is one."""
    lgb = pytest.importorskip("lightgbm")
    X, y = _regression()
    weight = _weights(len(y))
    model = lgb.LGBMRegressor(objective=boosting.lightgbm_objective(lossk.mse_loss), n_estimators=ROUNDS,
                              num_leaves=8, learning_rate=0.3, min_child_weight=0.0, min_child_samples=5,
                              n_jobs=1, verbose=-1, boost_from_average=False, deterministic=True)
    model.fit(X, y, sample_weight=weight)
    _assert_same_margins(model.predict(X, raw_score=True),
                         _lightgbm_margins(lgb, X, y, LIGHTGBM, "regression", weight))


# ---- CatBoost ---------------------------------------------------------------------------------------------

CATBOOST = {"iterations": 3, "depth": 3, "learning_rate": 0.3, "verbose": False, "thread_count": 1,
            "random_seed": 0, "l2_leaf_reg": 0.0, "boost_from_average": False, "leaf_estimation_method": "Newton",
            "leaf_estimation_iterations": 1, "allow_writing_files": False}

CATBOOST_JIT_WARNINGS = [
    "ignore:Can't optimze method:UserWarning",  # CatBoost's own spelling: it cannot numba-compile a Python object
    "ignore:Failed to optimize method:UserWarning",
    "ignore:Failed to import numba for optimizing:UserWarning",  # where Numba is not installed
]


class NumpySquaredError:
    """What people write for CatBoost today: the flipped derivatives of (a - t)², per object."""

    def calc_ders_range(self, approxes, targets, weights):
        residual = np.asarray(approxes) - np.asarray(targets)
        grad, hess = -2 * residual, np.full_like(residual, -2.0)
        if weights is not None:
            grad, hess = grad * weights, hess * weights
        return list(zip(grad, hess))


class NumpySoftmax:
    def calc_ders_multi(self, approx, target, weight):
        grad, hess = numpy_softmax_derivatives(np.asarray(approx)[None, :], [target])
        return (-grad[0] * weight).tolist(), np.diag(-hess[0] * weight).tolist()


@pytest.mark.filterwarnings(*CATBOOST_JIT_WARNINGS)
def test_catboost_squared_error_matches_numpy_objective():
    """CatBoost's RMSE takes (a - t) and 1: the factor 2 changes its tree scores even without L2, so the
    check is against a NumPy objective with MSE's derivatives."""
    catboost = pytest.importorskip("catboost")
    X, y = _regression()
    weight = _weights(len(y))

    def margins(objective):
        model = catboost.CatBoostRegressor(loss_function=objective, eval_metric="RMSE", **CATBOOST)
        return model.fit(X, y, sample_weight=weight).predict(X)

    _assert_same_margins(margins(boosting.catboost_objective(lossk.mse_loss)), margins(NumpySquaredError()))


@pytest.mark.filterwarnings(*CATBOOST_JIT_WARNINGS)
def test_catboost_logistic_matches_builtin():
    catboost = pytest.importorskip("catboost")
    X, y = _binary()

    def margins(objective, **metric):
        model = catboost.CatBoostClassifier(loss_function=objective, **metric, **CATBOOST)
        return model.fit(X, y).predict(X, prediction_type="RawFormulaVal")

    ours = margins(boosting.catboost_objective(lossk.binary_cross_entropy_with_logits), eval_metric="Logloss")
    _assert_same_margins(ours, margins("Logloss"))


@pytest.mark.filterwarnings(*CATBOOST_JIT_WARNINGS)
@pytest.mark.parametrize("weighted", [False, True])
def test_catboost_multiclass_matches_numpy_objective(weighted):
    catboost = pytest.importorskip("catboost")
    X, y = _digits(200)
    weight = _weights(len(y)) if weighted else None

    def margins(objective):
        model = catboost.CatBoostClassifier(loss_function=objective, eval_metric="MultiClass", classes_count=10,
                                            **{**CATBOOST, "iterations": 2})
        return model.fit(X, y, sample_weight=weight).predict(X, prediction_type="RawFormulaVal")

    _assert_same_margins(margins(boosting.catboost_objective(lossk.cross_entropy)), margins(NumpySoftmax()))


def test_catboost_signs_are_flipped():
    objective = boosting.catboost_objective(lossk.mse_loss)
    (der1, der2), = objective.calc_ders_range(np.array([3.0]), np.array([1.0]), None)
    assert (der1, der2) == (-4.0, -2.0)
    grad, hess = objective.calc_ders_range(np.array([3.0, 0.0]), np.array([1.0, 0.0]), np.array([0.5, 2.0]))
    assert grad == (-2.0, -1.0) and hess == (0.0, -4.0)


# ---- the derivatives themselves ---------------------------------------------------------------------------


def test_objective_derivatives_are_per_sample_and_weighted():
    """No 1/n: each sample's derivatives are the unreduced loss's, times its weight."""
    rng = np.random.default_rng(1)
    margins, labels, weight = rng.normal(size=50), rng.normal(size=50), rng.uniform(0.5, 2, 50)
    grad, hess = boosting.xgboost_objective(lossk.mse_loss)(labels, margins, sample_weight=weight)
    np.testing.assert_allclose(grad, 2 * (margins - labels) * weight)
    np.testing.assert_allclose(hess, 2 * weight)
    grad, hess = boosting.lightgbm_objective(lossk.cross_entropy)(labels[:5] * 0 + 1, rng.normal(size=(5, 3)), None)
    assert grad.shape == hess.shape == (5, 3)


def test_surrogate_hessians():
    x, y = np.array([-3.0, -0.5, 0.0, 0.5, 3.0]), np.zeros(5)
    weight = np.array([1.0, 2.0, 1.0, 0.5, 3.0])
    exact = boosting.xgboost_objective(lossk.huber_loss, delta=1.0, hessian="exact")
    surrogate = boosting.xgboost_objective(lossk.huber_loss, delta=1.0)
    np.testing.assert_array_equal(exact(y, x, sample_weight=weight)[1], [0.0, 2.0, 1.0, 0.5, 0.0])
    np.testing.assert_array_equal(surrogate(y, x, sample_weight=weight)[1], weight)  # LightGBM's huber
    np.testing.assert_array_equal(boosting.xgboost_objective(lossk.l1_loss)(y, x)[1], np.ones(5))
    np.testing.assert_array_equal(boosting.xgboost_objective(lossk.smooth_l1_loss, beta=0.5)(y, x)[1], np.full(5, 2.0))
    # cross-entropy through a soft-cap: the exact diagonal can be negative, the surrogate clips it at 0
    rng = np.random.default_rng(2)
    margins, labels = 4 * rng.normal(size=(40, 5)), rng.integers(0, 5, 40)
    exact_hess = boosting.xgboost_objective(lossk.cross_entropy, softcap=1.0, hessian="exact")(labels, margins)[1]
    clipped = boosting.xgboost_objective(lossk.cross_entropy, softcap=1.0)(labels, margins)[1]
    assert np.any(exact_hess < 0)
    np.testing.assert_array_equal(clipped, np.maximum(exact_hess, 0))


def test_objective_errors_name_the_problem():
    with pytest.raises(TypeError, match="lossk loss"):
        boosting.xgboost_objective(len)
    with pytest.raises(ValueError, match="no loss named 'hubber_loss'"):
        boosting.xgboost_objective("hubber_loss")
    for multi_input in ("margin_ranking_loss", "gaussian_nll_loss", "multilabel_soft_margin_loss"):
        with pytest.raises(ValueError, match=f"lossk.{multi_input} is a multi-input loss"):
            boosting.xgboost_objective(multi_input)
    with pytest.raises(ValueError, match="hessian must be one of"):
        boosting.lightgbm_objective(lossk.mse_loss, hessian="diagonal")
    with pytest.raises(TypeError, match="reduction is set by the objective"):
        boosting.catboost_objective(lossk.mse_loss, reduction="mean")
    with pytest.raises(TypeError, match="lossk.huber_loss.*delt"):
        boosting.xgboost_objective(lossk.huber_loss, delt=1.0)
    with pytest.raises(ValueError, match="n_samples, n_classes"):
        boosting.xgboost_objective(lossk.cross_entropy)(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="whole numbers"):
        boosting.xgboost_objective(lossk.cross_entropy)(np.array([0.5, 1.0]), np.zeros((2, 3)))


class _FakeDMatrix:
    """What the native XGBoost call form reads from its dataset: host labels and (possibly empty) weights."""

    def __init__(self, label, weight=None):
        self.label, self.weight = label, np.empty(0) if weight is None else weight

    def get_label(self):
        return self.label

    def get_weight(self):
        return self.weight


@pytest.mark.parametrize("loss", ["mse_loss", "huber_loss", "cross_entropy"])
def test_margins_of_another_library_stay_there(loss):
    """Non-NumPy margins (CuPy on a GPU; array-api-strict here) get derivatives of their own library, with
    the dataset's host labels copied over once per dataset, and the same values as NumPy margins."""
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(3)
    shape = (40, 4) if loss == "cross_entropy" else (40,)
    margins = rng.normal(size=shape).astype(np.float32)
    labels = (rng.integers(0, 4, 40) if loss == "cross_entropy" else rng.normal(size=40)).astype(np.float32)
    weight = rng.uniform(0.5, 2, 40).astype(np.float32)
    objective = boosting.xgboost_objective(getattr(lossk, loss))
    dataset = _FakeDMatrix(labels, weight)
    grad, hess = objective(xps.asarray(margins), dataset)
    assert type(grad) is type(hess) is type(xps.asarray(margins))
    cached = objective._device_labels[dataset]
    objective(xps.asarray(margins), dataset)
    assert objective._device_labels[dataset] is cached
    expected_grad, expected_hess = objective(margins, dataset)
    np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(hess), expected_hess, rtol=1e-5, atol=1e-6)


GLM_LOSSES = [
    # lossk loss, its options, XGBoost's objective, LightGBM's, the factor on LightGBM's Hessian
    ("poisson_loss", {}, "count:poisson", "poisson", float(np.exp(0.7))),
    ("gamma_loss", {}, "reg:gamma", "gamma", 1.0),
    ("tweedie_loss", {"power": 1.5}, "reg:tweedie", "tweedie", 1.0),
]
"""Log-link losses. XGBoost's count:poisson Hessian is exp(margin + max_delta_step) (set to 0 here);
LightGBM's poisson Hessian is exp(score + poisson_max_delta_step), which must be > 0 (default 0.7): the
lossk objective matches it with its exact Hessian times exp(0.7). Gamma and Tweedie use the exact Hessian."""


@pytest.mark.parametrize(("loss", "options", "xgboost_name", "lightgbm_name", "lightgbm_factor"), GLM_LOSSES,
                         ids=[case[0] for case in GLM_LOSSES])
def test_log_link_losses_match_builtins(loss, options, xgboost_name, lightgbm_name, lightgbm_factor):
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    if not hasattr(lossk, loss):
        pytest.skip(f"lossk has no {loss} yet (the catalogue issue adds it)")
    X, y = _regression()
    y = y / 100  # counts and amounts of order 1: exp(margin) from margin 0
    function = getattr(lossk, loss)
    power = {"tweedie_variance_power": options["power"]} if "power" in options else {}
    params = {**XGBOOST, "max_delta_step": 0.0}
    ours = _xgboost_margins(xgb, X, y, {**params, "base_score": 0.0}, boosting.xgboost_objective(function, **options))
    builtin = _xgboost_margins(xgb, X, y, {**params, "objective": xgboost_name, "base_score": 1.0, **power})
    _assert_same_margins(ours, builtin)
    objective = _scaled(boosting.lightgbm_objective(function, **options), lightgbm_factor)
    ours = _lightgbm_margins(lgb, X, y, {**LIGHTGBM, **power}, objective)
    _assert_same_margins(ours, _lightgbm_margins(lgb, X, y, {**LIGHTGBM, **power}, lightgbm_name))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_focal_surrogate_is_the_hessian_with_the_focal_factor_held_fixed():
    """max(exact, a_t (1 - p_t)^gamma p (1 - p) · weight), the floor written here from its definition; the exact
    Hessian is negative on the well-classified side, the surrogate positive; at gamma = 0 it is BCE's, exact."""
    rng = np.random.default_rng(4)
    x = rng.uniform(-6, 6, 60)
    t = np.where(rng.random(60) < 0.5, 0.0, 1.0)
    t[:10] = rng.uniform(0.1, 0.9, 10)  # soft labels
    weight = rng.uniform(0.5, 2.0, 60)
    for alpha, gamma in ((0.25, 2.0), (-1.0, 0.5)):
        options = {"alpha": alpha, "gamma": gamma}
        exact = boosting.xgboost_objective(lossk.sigmoid_focal_loss, hessian="exact", **options)(t, x, sample_weight=weight)
        grad, hess = boosting.xgboost_objective(lossk.sigmoid_focal_loss, **options)(t, x, sample_weight=weight)
        p = _sigmoid(x)
        p_t = p * t + (1 - p) * (1 - t)
        a_t = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else 1.0
        floor = a_t * (1 - p_t) ** gamma * p * (1 - p) * weight
        assert np.any(exact[1] < 0)
        np.testing.assert_array_equal(grad, exact[0])
        np.testing.assert_allclose(hess, np.maximum(exact[1], floor), rtol=1e-12, atol=0)
        assert np.all(hess > 0)
    bce_like = {"alpha": 0.25, "gamma": 0.0}
    exact = boosting.xgboost_objective(lossk.sigmoid_focal_loss, hessian="exact", **bce_like)(t, x)[1]
    np.testing.assert_allclose(boosting.xgboost_objective(lossk.sigmoid_focal_loss, **bce_like)(t, x)[1], exact,
                               rtol=1e-14)


@pytest.mark.parametrize("power", [0.0, 3.0, 1.5])
def test_tweedie_surrogate_is_the_expected_hessian_where_the_exact_turns_negative(power):
    """power 0 and > 2: max(exact, exp((2 - power) x) · weight), positive; 1 <= power <= 2: the exact Hessian,
    positive already (LightGBM's and XGBoost's tweedie objectives)."""
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, 80)
    y = rng.gamma(2.0, 2.0, 80) * np.where(rng.random(80) < 0.5, 0.05, 1.0)
    weight = rng.uniform(0.5, 2.0, 80)
    _, exact = boosting.lightgbm_objective(lossk.tweedie_loss, power=power, hessian="exact")(y, x, weight)
    _, hess = boosting.lightgbm_objective(lossk.tweedie_loss, power=power)(y, x, weight)
    if power == 1.5:
        assert np.all(exact > 0)
        np.testing.assert_array_equal(hess, exact)
        return
    assert np.any(exact < 0)
    np.testing.assert_allclose(hess, np.maximum(exact, np.exp((2 - power) * x) * weight), rtol=1e-12, atol=0)
    assert np.all(hess > 0)
    # the floor is the expected Hessian: averaged over targets of mean exp(x), the exact Hessian equals it
    mean_target = np.exp(x)
    _, at_the_mean = boosting.lightgbm_objective(lossk.tweedie_loss, power=power, hessian="exact")(mean_target, x)
    np.testing.assert_allclose(at_the_mean, np.exp((2 - power) * x), rtol=1e-12)


def test_focal_surrogate_objective_trains():
    """XGBoost with the focal loss's surrogate Hessian: Newton steps that lower the training loss."""
    xgb = pytest.importorskip("xgboost")
    X, y = _binary()
    objective = boosting.xgboost_objective(lossk.sigmoid_focal_loss, alpha=0.25, gamma=2.0)
    labels = y.astype(np.float64)

    def mean_loss(margins):
        return float(lossk.sigmoid_focal_loss(np.asarray(margins, np.float64), labels, reduction="mean"))

    start = mean_loss(np.zeros(len(y)))
    one, four = (mean_loss(_xgboost_margins(xgb, X, y, {**XGBOOST, "base_score": 0.0}, objective, rounds=rounds))
                 for rounds in (1, 4))
    assert four < one < start


@pytest.mark.parametrize("loss", ["huber_loss", "sigmoid_focal_loss", "tweedie_loss"])
def test_a_backend_without_the_fused_surrogate_takes_the_reference_floor(loss, monkeypatch):
    """lossk._hessian.derivatives: where the backend that computes the exact Hessian registers no fused
    surrogate, the reference's surrogate serves its arrays (the floor has one place, the spec), not a 0 floor."""
    from lossk import _dispatch
    from lossk._hessian import surrogate_key

    options = {"tweedie_loss": {"power": 3.0}}.get(loss, {})
    rng = np.random.default_rng(7)
    x = rng.uniform(-6, 6, 50)
    y = {"sigmoid_focal_loss": np.where(rng.random(50) < 0.5, 0.0, 1.0),
         "tweedie_loss": rng.gamma(2.0, 2.0, 50)}.get(loss, rng.normal(0, 1, 50))
    weight = rng.uniform(0.5, 2.0, 50)
    expected = boosting.xgboost_objective(loss, backend="array_api", **options)(y, x, sample_weight=weight)
    registry = {k: v for k, v in _dispatch._REGISTRY.items() if k[0] != surrogate_key(loss) or k[1] == "array_api"}
    monkeypatch.setattr(_dispatch, "_REGISTRY", registry)
    for backend in ("auto", "array_api", *(["numba"] if _dispatch.is_available("numba") else [])):
        grad, hess = boosting.xgboost_objective(loss, backend=backend, **options)(y, x, sample_weight=weight)
        exact = boosting.xgboost_objective(loss, backend=backend, hessian="exact", **options)(y, x, sample_weight=weight)[1]
        assert np.any(hess > np.maximum(exact, 0)), "the floor lifts the Hessian above the exact one somewhere"
        np.testing.assert_allclose(grad, expected[0], rtol=1e-12, atol=0)
        np.testing.assert_allclose(hess, expected[1], rtol=1e-12, atol=0)
