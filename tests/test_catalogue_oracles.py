"""The catalogue oracles (``catalogue_oracles.py``) against their anchors.

Each oracle is checked once against the literal expected values of the anchor's own test suite (the file and line
are cited beside each table) and, where the anchor is installed, against the anchor's code on random data:
optax's ``log_cosh``, scikit-learn's ``_loss`` classes and ``mean_pinball_loss``, XGBoost's
``reg:pseudohubererror`` objective and ``mphe`` metric. The PyTorch losses are PyTorch itself; they are checked
against the reference formulas of PyTorch's test suite (``torch/testing/_internal/common_nn.py``) and for the
behaviours the catalogue's specification relies on (gradients at kinks, NaN, the Gaussian ``var`` clamp and
broadcast). Libraries that are optional extras are skipped where missing, never counted as passing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import catalogue_oracles as co

RNG_SEED = 20261130


def t64(x):
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def oracle_none(name, arrays, **options):
    return co.value_grads_hessians(name, arrays, reduction="none", **options)


# ---- optax / Keras: log-cosh --------------------------------------------------------------------------------------


def test_log_cosh_matches_optax_literal_values():
    # optax/losses/_regression_test.py, LogCoshTest.setUp (lines 106-111 in optax 0.2.8): "computed using
    # tensorflow.keras.losses.log_cosh v2.4.1", compared with atol=1e-5 there
    ys = np.array([500, -2.0, -1.0, 0.5, 1.0])
    ts = np.array([-200, -1.5, 0.0, -1, 1.0])
    expected = np.array([699.3068, 0.12011445, 0.4337809, 0.85544014, 0.0])
    expected_ys_only = np.array([499.30685, 1.3250027, 0.4337809, 0.12011451, 0.43378082])
    loss, _, _ = oracle_none("log_cosh_loss", {"input": ys, "target": ts})
    np.testing.assert_allclose(loss, expected, atol=1e-5)
    loss, _, _ = oracle_none("log_cosh_loss", {"input": ys, "target": np.zeros_like(ys)})
    np.testing.assert_allclose(loss, expected_ys_only, atol=1e-5)
    # beyond float64's cosh range the oracle keeps |d| - log 2, slope sign(d), curvature 0; at d = 0 curvature 1
    loss, grads, hessians = oracle_none("log_cosh_loss", {"input": np.array([1e3, -1e4, 0.0]), "target": np.zeros(3)})
    np.testing.assert_allclose(loss, [1e3 - math.log(2), 1e4 - math.log(2), 0.0], rtol=1e-15)
    np.testing.assert_array_equal(grads["input"], [1.0, -1.0, 0.0])
    np.testing.assert_array_equal(hessians["input"], [0.0, 0.0, 1.0])


def test_log_cosh_matches_keras_literal_values():
    # keras/src/losses/losses.py, LogCosh docstring (Keras 3): y_true = [[0, 1], [0, 0]], y_pred = [[1, 1], [0, 0]]
    # -> 0.108 with "sum_over_batch_size"; with sample_weight=[0.8, 0.2] -> 0.087 (the weighted sum over the
    # element count: Keras does not divide by the weights' sum). The oracle takes no weight divisor other than
    # the count for this loss, as Keras.
    y_true = np.array([[0.0, 1.0], [0.0, 0.0]])
    y_pred = np.array([[1.0, 1.0], [0.0, 0.0]])
    loss, _, _ = co.value_grads_hessians("log_cosh_loss", {"input": y_pred, "target": y_true}, reduction="mean")
    assert round(float(loss), 3) == 0.108
    weight = np.array([[0.8, 0.8], [0.2, 0.2]])
    loss, _, _ = co.value_grads_hessians(
        "log_cosh_loss", {"input": y_pred, "target": y_true}, reduction="mean", weight=weight
    )
    assert round(float(loss), 3) == 0.087


def test_log_cosh_matches_installed_optax():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    rng = np.random.default_rng(RNG_SEED)
    x = np.concatenate([rng.normal(0, 3, 97), [800.0, -800.0, 0.0]])
    y = rng.normal(0, 3, 100)
    loss, grads, hessians = oracle_none("log_cosh_loss", {"input": x, "target": y})
    with jax.enable_x64(True):  # a context manager: the process-wide setting is left as it was
        import jax.numpy as jnp

        def elementwise(p):
            return optax.losses.log_cosh(p, jnp.asarray(y))

        value = np.asarray(elementwise(jnp.asarray(x)))
        grad = np.asarray(jax.grad(lambda p: elementwise(p).sum())(jnp.asarray(x)))
        second = np.asarray(jax.grad(lambda p: jax.grad(lambda q: elementwise(q).sum())(p).sum())(jnp.asarray(x)))
    np.testing.assert_allclose(loss, value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["input"], grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hessians["input"], second, rtol=1e-9, atol=1e-12)


# ---- scikit-learn: pinball, Poisson, Gamma, Tweedie ----------------------------------------------------------------

# sklearn/_loss/tests/test_loss.py, test_loss_on_specific_values (lines 253-260 in scikit-learn 1.9.1):
# (oracle, options, y_true, raw_prediction, loss, gradient, hessian); None where scikit-learn gives none
SKLEARN_SPECIFIC_VALUES = [
    ("pinball_loss", {"quantile": 0.5}, 1.0, 5.0, 2, 0.5, None),
    ("pinball_loss", {"quantile": 0.25}, 1.0, 5.0, 4 * (1 - 0.25), 1 - 0.25, None),
    ("pinball_loss", {"quantile": 0.25}, 5.0, 1.0, 4 * 0.25, -0.25, None),
    ("poisson_loss", {}, 2.0, np.log(4), 4 - 2 * np.log(4), 4 - 2, 4),
    ("gamma_loss", {}, 2.0, np.log(4), np.log(4) + 2 / 4, 1 - 2 / 4, 2 / 4),
    ("tweedie_loss", {"power": 3}, 2.0, np.log(4), -1 / 4 + 1 / 4**2, None, None),
    ("tweedie_loss", {"power": 1}, 2.0, np.log(4), 4 - 2 * np.log(4), 4 - 2, 4),
    ("tweedie_loss", {"power": 2}, 2.0, np.log(4), np.log(4) + 2 / 4, 1 - 2 / 4, 2 / 4),
]


@pytest.mark.parametrize("name, options, y_true, raw, loss_true, gradient_true, hessian_true", SKLEARN_SPECIFIC_VALUES)
def test_sklearn_literal_values(name, options, y_true, raw, loss_true, gradient_true, hessian_true):
    loss, grads, hessians = oracle_none(name, {"input": np.array([raw]), "target": np.array([y_true])}, **options)
    assert loss[0] == pytest.approx(loss_true, rel=1e-15, abs=1e-15)
    if gradient_true is not None:
        assert grads["input"][0] == pytest.approx(gradient_true, rel=1e-15, abs=1e-15)
    if hessian_true is not None:
        assert hessians["input"][0] == pytest.approx(hessian_true, rel=1e-15, abs=1e-15)


def test_mean_pinball_loss_literal_values():
    # sklearn/metrics/tests/test_regression.py (scikit-learn 1.9.1): test_regression_metrics, lines 49-52
    y_true = np.arange(50.0)
    for y_pred, alpha, expected in ((y_true + 1, 0.5, 0.5), (y_true - 1, 0.5, 0.5), (y_true + 1, 0.4, 0.6),
                                    (y_true - 1, 0.4, 0.4)):
        loss, _, _ = co.value_grads_hessians(
            "pinball_loss", {"input": y_pred, "target": y_true}, reduction="mean", quantile=alpha
        )
        assert float(loss) == pytest.approx(expected, abs=1e-7)
    # test_multioutput_regression, lines 137-157: (1 + 2/3) / 8
    y_true = np.array([[1, 0, 0, 1], [0, 1, 1, 1], [1, 1, 0, 1]], dtype=np.float64)
    y_pred = np.array([[0, 0, 0, 1], [1, 0, 1, 1], [0, 0, 0, 1]], dtype=np.float64)
    loss, _, _ = co.value_grads_hessians("pinball_loss", {"input": y_pred, "target": y_true}, reduction="mean")
    assert float(loss) == pytest.approx((1.0 + 2.0 / 3) / 8.0, abs=1e-7)
    # test_regression_multioutput_array, lines 358-384: per-column [0.25 / 2, 0.625 / 2]
    y_true = np.array([[1, 2], [2.5, -1], [4.5, 3], [5, 7]])
    y_pred = np.array([[1, 1], [2, -1], [5, 4], [5, 6.5]])
    loss, _, _ = oracle_none("pinball_loss", {"input": y_pred, "target": y_true})
    np.testing.assert_allclose(loss.mean(axis=0), [0.25 / 2, 0.625 / 2], atol=5e-3)


SKLEARN_LOSSES = [
    ("pinball_loss", "PinballLoss", {"quantile": 0.5}, {"quantile": 0.5}),
    ("pinball_loss", "PinballLoss", {"quantile": 0.1}, {"quantile": 0.1}),
    ("pinball_loss", "PinballLoss", {"quantile": 0.83}, {"quantile": 0.83}),
    ("poisson_loss", "HalfPoissonLoss", {}, {}),
    ("gamma_loss", "HalfGammaLoss", {}, {}),
    ("tweedie_loss", "HalfTweedieLoss", {"power": 0.0}, {"power": 0.0}),
    ("tweedie_loss", "HalfTweedieLoss", {"power": 1.0}, {"power": 1.0}),
    ("tweedie_loss", "HalfTweedieLoss", {"power": 1.5}, {"power": 1.5}),
    ("tweedie_loss", "HalfTweedieLoss", {"power": 2.0}, {"power": 2.0}),
    ("tweedie_loss", "HalfTweedieLoss", {"power": 3.0}, {"power": 3.0}),
    ("tweedie_loss", "HalfTweedieLoss", {"power": 1.2}, {"power": 1.2}),
]


@pytest.mark.parametrize("name, cls, options, sklearn_options", SKLEARN_LOSSES)
def test_matches_installed_sklearn_loss(name, cls, options, sklearn_options):
    sklearn_loss = pytest.importorskip("sklearn._loss.loss")
    loss_object = getattr(sklearn_loss, cls)(**sklearn_options)
    rng = np.random.default_rng(RNG_SEED)
    n = 203
    raw = rng.uniform(-2, 2, n)
    y = rng.uniform(0.1, 5, n) if name != "pinball_loss" else rng.normal(0, 2, n)
    if name == "poisson_loss" or (name == "tweedie_loss" and 0 < options["power"] < 2):
        y[::7] = 0.0  # Poisson and compound-Poisson targets include zeros
    weight = rng.uniform(0.1, 3, n)
    loss, grads, hessians = oracle_none(name, {"input": raw, "target": y}, **options)
    np.testing.assert_allclose(loss, loss_object.loss(y_true=y, raw_prediction=raw), rtol=1e-12, atol=1e-12)
    gradient, hessian = loss_object.gradient_hessian(y_true=y, raw_prediction=raw)
    np.testing.assert_allclose(grads["input"], gradient, rtol=1e-12, atol=1e-12)
    if name == "pinball_loss":  # exact Hessian 0; scikit-learn returns its placeholder 1
        np.testing.assert_array_equal(hessians["input"], 0.0)
        np.testing.assert_array_equal(hessian, 1.0)
    else:
        np.testing.assert_allclose(hessians["input"], hessian, rtol=1e-10, atol=1e-12)
    # the weighted mean: BaseLoss.__call__ is np.average(loss, weights=sample_weight)
    mean, _, _ = co.value_grads_hessians(name, {"input": raw, "target": y}, reduction="mean", weight=weight, **options)
    expected = loss_object(y_true=y, raw_prediction=raw, sample_weight=weight)
    assert float(mean) == pytest.approx(expected, rel=1e-12)


def test_pinball_weighted_mean_matches_mean_pinball_loss():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(RNG_SEED)
    y, x, w = rng.normal(size=57), rng.normal(size=57), rng.uniform(0, 2, 57)
    for q in (0.05, 0.5, 0.7):
        loss, _, _ = co.value_grads_hessians(
            "pinball_loss", {"input": x, "target": y}, reduction="mean", quantile=q, weight=w
        )
        assert float(loss) == pytest.approx(metrics.mean_pinball_loss(y, x, alpha=q, sample_weight=w), rel=1e-12)


def test_pinball_gradient_at_a_tie_is_minus_quantile():
    # scikit-learn's cgradient_pinball_loss: -quantile if y_true >= raw_prediction
    _, grads, _ = oracle_none("pinball_loss", {"input": np.array([1.0]), "target": np.array([1.0])}, quantile=0.3)
    assert grads["input"][0] == -0.3


# ---- XGBoost: pseudo-Huber -----------------------------------------------------------------------------------------

# dmlc/xgboost tests/cpp/objective/test_regression_obj.cc, TEST(Objective, PseudoHuber) (lines 24-48 at the 2024
# version): pred {0.1, 0.2, 0.4, 0.8, 1.6}, labels 1, unit weights; float32 literals to 6 digits
XGBOOST_PSEUDO_HUBER = [
    (1.0, [-0.668965, -0.624695, -0.514496, -0.196116, 0.514496], [0.410660, 0.476140, 0.630510, 0.9428660, 0.630510]),
    (0.1, [-0.099388, -0.099228, -0.098639, -0.089443, 0.098639], [0.0013467, 0.001908, 0.004443, 0.089443, 0.004443]),
]


@pytest.mark.parametrize("delta, out_grad, out_hess", XGBOOST_PSEUDO_HUBER)
def test_pseudo_huber_matches_xgboost_literal_values(delta, out_grad, out_hess):
    pred = np.array([0.1, 0.2, 0.4, 0.8, 1.6], dtype=np.float32).astype(np.float64)
    _, grads, hessians = oracle_none("pseudo_huber_loss", {"input": pred, "target": np.ones(5)}, delta=delta)
    np.testing.assert_allclose(grads["input"], out_grad, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(hessians["input"], out_hess, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("delta", [1.0, 0.3, 2.5])
def test_pseudo_huber_matches_installed_xgboost(delta):
    """XGBoost's own objective and metric on margins we choose (``base_margin``), one constant feature:
    ``eta=0`` leaves the margins as they are, so ``mphe`` is the weighted mean loss there; with ``eta=1``,
    ``lambda=0`` the one tree is a single leaf worth ``-sum(w g) / sum(w h)``."""
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(RNG_SEED)
    n = 64
    y = rng.normal(0, 2, n).astype(np.float32)
    margin = rng.normal(0, 2, n).astype(np.float32)
    w = rng.uniform(0.5, 2, n).astype(np.float32)
    params = {"objective": "reg:pseudohubererror", "huber_slope": delta, "lambda": 0.0, "alpha": 0.0,
              "min_child_weight": 0.0, "max_depth": 1, "eval_metric": "mphe", "nthread": 1, "tree_method": "exact"}

    def train(eta):
        data = xgb.DMatrix(np.zeros((n, 1), np.float32), label=y, weight=w, base_margin=margin)
        history: dict = {}
        booster = xgb.train({**params, "eta": eta}, data, num_boost_round=1, evals=[(data, "train")],
                            evals_result=history, verbose_eval=False)
        return booster.predict(data, output_margin=True), history["train"]["mphe"][0]

    x, y64, w64 = margin.astype(np.float64), y.astype(np.float64), w.astype(np.float64)
    mean, _, _ = co.value_grads_hessians(
        "pseudo_huber_loss", {"input": x, "target": y64}, reduction="mean", delta=delta, weight=w64
    )
    _, metric = train(0.0)
    assert metric == pytest.approx(float(mean), rel=1e-5)
    _, grads, hessians = oracle_none("pseudo_huber_loss", {"input": x, "target": y64}, delta=delta)
    leaf = -(w64 * grads["input"]).sum() / (w64 * hessians["input"]).sum()
    predicted, _ = train(1.0)
    np.testing.assert_allclose(predicted - margin, leaf, rtol=1e-4, atol=1e-5)


# ---- torchvision: sigmoid focal loss -------------------------------------------------------------------------------


def test_focal_gamma_zero_without_alpha_is_bce_with_logits():
    rng = np.random.default_rng(RNG_SEED)
    x, t = t64(rng.normal(0, 4, 50)), t64(rng.integers(0, 2, 50))
    focal = co.torchvision_sigmoid_focal_loss(x, t, alpha=-1, gamma=0)
    torch.testing.assert_close(focal, F.binary_cross_entropy_with_logits(x, t, reduction="none"))


def test_focal_torchvision_defaults_and_reduction_error():
    x, t = t64([0.3, -1.0]), t64([1.0, 0.0])
    assert co.torchvision_sigmoid_focal_loss(x, t).shape == (2,)  # reduction 'none' by default
    with pytest.raises(ValueError, match="reduction"):
        co.torchvision_sigmoid_focal_loss(x, t, reduction="batchmean")


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (-1.0, 0.5), (0.6, 0.0), (0.1, 3.5)])
def test_stable_focal_matches_torchvision(alpha, gamma):
    """The log-space focal oracle equals torchvision's line-for-line transcription (binary and soft targets) for
    logits where torchvision's ``1 - p_t`` is still accurate."""
    rng = np.random.default_rng(RNG_SEED)
    x = rng.uniform(-8, 8, 300)
    t = np.concatenate([rng.integers(0, 2, 250).astype(np.float64), rng.uniform(0.05, 0.95, 50)])
    for reduction in ("none", "mean", "sum"):
        a = co.value_grads_hessians("sigmoid_focal_loss", {"input": x, "target": t}, reduction=reduction,
                                    alpha=alpha, gamma=gamma)
        b = co.value_grads_hessians("sigmoid_focal_loss", {"input": x, "target": t}, reduction=reduction,
                                    alpha=alpha, gamma=gamma, oracle=co.stable_sigmoid_focal_loss)
        np.testing.assert_allclose(b[0], a[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b[1]["input"], a[1]["input"], rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(b[2]["input"], a[2]["input"], rtol=1e-6, atol=1e-9)


def test_stable_focal_is_finite_where_torchvision_is_not():
    # optax #1267: gamma < 1 with a well-classified logit gives 0^(gamma - 1) in the gradient
    x, t = np.array([40.0, 1e4, -1e4, 800.0]), np.array([1.0, 1.0, 0.0, 0.7])
    _, grads, _ = oracle_none("sigmoid_focal_loss", {"input": x[:1], "target": t[:1]}, alpha=0.25, gamma=0.5)
    assert np.isnan(grads["input"]).all()  # torchvision's formula
    loss, grads, hessians = oracle_none("sigmoid_focal_loss", {"input": x, "target": t}, alpha=0.25, gamma=0.5,
                                        oracle=co.stable_sigmoid_focal_loss)
    assert np.isfinite(loss).all() and np.isfinite(grads["input"]).all() and np.isfinite(hessians["input"]).all()
    # x = 40, t = 1: ce = log1p(e^-40), q = sigmoid(-40): loss = 0.25 ce sqrt(q)
    q = 1 / (1 + math.exp(40.0))
    assert loss[0] == pytest.approx(0.25 * math.log1p(math.exp(-40.0)) * math.sqrt(q), rel=1e-12)


@pytest.mark.parametrize(
    "logits, targets, alpha, gamma",
    [
        ([1000.0], [1.0], -1.0, 0.0),  # optax #1267: NaN gradient at gamma=0.0
        ([100.0], [1.0], 0.25, 0.5),  # optax PR #1346's test: finite gradient at gamma=0.5 ...
        ([100.0], [1.0], 0.25, 1.5),  # ... and finite Hessian at gamma=1.5
        ([-100.0, -100.0, 100.0, 100.0], [0.0, 1.0, 0.0, 1.0], 0.25, 0.5),  # kornia #918: all-NaN gradients
        ([18.0], [1.0], 0.5, 0.0),  # facebookresearch/sam3 #576: 0 ** -1 in a fused backward at gamma=0
    ],
)
def test_stable_focal_on_tracker_cases(logits, targets, alpha, gamma):
    """The extreme inputs of the focal-loss bug reports: finite loss, gradient and Hessian, equal to the limits
    (the gradient is -a_t on a confidently wrong logit, 0 on a confidently right one; at gamma = 0 the loss is the
    weighted BCE)."""
    arrays = {"input": np.array(logits), "target": np.array(targets)}
    loss, grads, hessians = oracle_none("sigmoid_focal_loss", arrays, alpha=alpha, gamma=gamma,
                                        oracle=co.stable_sigmoid_focal_loss)
    assert np.isfinite(loss).all() and np.isfinite(grads["input"]).all() and np.isfinite(hessians["input"]).all()
    x, t = np.array(logits), np.array(targets)
    a_t = np.ones_like(t) if alpha < 0 else alpha * t + (1 - alpha) * (1 - t)
    wrong = (x > 0) != (t > 0)
    np.testing.assert_allclose(grads["input"], np.where(wrong, a_t * np.sign(x), 0.0), atol=1e-7)
    if gamma == 0:
        bce = F.binary_cross_entropy_with_logits(t64(x), t64(t), reduction="none").numpy()
        np.testing.assert_allclose(loss, a_t * bce, rtol=1e-12)


# ---- PyTorch losses ------------------------------------------------------------------------------------------------
# Reference formulas of torch/testing/_internal/common_nn.py (torch 2.13), transcribed


def test_torch_losses_match_torch_test_suite_references():
    rng = np.random.default_rng(RNG_SEED)
    x, x2 = t64(rng.normal(size=(6, 7))), t64(rng.normal(size=(6, 7)))
    pm = t64(rng.choice([-1.0, 1.0], size=(6, 7)))
    t01 = t64(rng.integers(0, 2, size=(6, 7)))
    w = t64(rng.uniform(size=7))
    counts = t64(rng.uniform(0, 4, size=(6, 7)))
    # poissonnllloss_no_reduce_test: i.exp() - t.mul(i)
    torch.testing.assert_close(co.ORACLES["poisson_nll_loss"](x, counts, reduction="none"), x.exp() - counts * x)
    # hingeembeddingloss_reference (targets +-1 only: the reference picks one term, F adds both for other values)
    reference = torch.where(pm == 1, x, (1.0 - x).clamp(min=0))
    torch.testing.assert_close(co.ORACLES["hinge_embedding_loss"](x, pm, reduction="none"), reference)
    # softmarginloss_reference: (1 + (-input * target).exp()).log()
    torch.testing.assert_close(co.ORACLES["soft_margin_loss"](x, pm, reduction="none"), (1 + (-x * pm).exp()).log())
    # marginrankingloss_reference: (-target * (input1 - input2) + margin).clamp(min=0)
    torch.testing.assert_close(co.ORACLES["margin_ranking_loss"](x, x2, pm, margin=0.3, reduction="none"),
                               (-pm * (x - x2) + 0.3).clamp(min=0))
    # multilabelsoftmarginloss_weights_no_reduce_test
    reference = (-(t01 * x.sigmoid().log() + (1 - t01) * (-x).sigmoid().log()) * w).sum(dim=1) / x.size(1)
    torch.testing.assert_close(co.ORACLES["multilabel_soft_margin_loss"](x, t01, weight=w, reduction="none"), reference)


def test_torch_kinks_and_nan_as_the_specification_assumes():
    # hinge embedding: at margin - x == 0 the gradient passes; a NaN input has gradient 0; target 0 adds both terms
    loss, grads, _ = oracle_none("hinge_embedding_loss", {"input": np.array([1.0, np.nan, 2.0]),
                                                          "target": np.array([-1.0, -1.0, 0.0])}, margin=1.0)
    np.testing.assert_array_equal(grads["input"], [-1.0, 0.0, 1.0])
    assert loss[2] == 2.0 and np.isnan(loss[1])
    # margin ranking: at h == 0 the gradient passes, to both inputs
    arrays = {"input1": np.array([1.0]), "input2": np.array([0.0]), "target": np.array([1.0])}
    _, grads, _ = co.value_grads_hessians("margin_ranking_loss", arrays, reduction="sum", margin=1.0)
    assert (grads["input1"][0], grads["input2"][0]) == (-1.0, 1.0)


def test_soft_margin_stable_oracle():
    rng = np.random.default_rng(RNG_SEED)
    x, y = rng.normal(0, 5, 100), rng.choice([-1.0, 1.0], 100)
    a = oracle_none("soft_margin_loss", {"input": x, "target": y})
    b = oracle_none("soft_margin_loss", {"input": x, "target": y}, oracle=co.stable_soft_margin_loss)
    np.testing.assert_allclose(b[0], a[0], rtol=1e-12)
    np.testing.assert_allclose(b[1]["input"], a[1]["input"], rtol=1e-10, atol=1e-14)
    # PyTorch overflows at |x| = 1e4; the stable oracle gives the exact limits
    extreme = {"input": np.array([1e4, -1e4]), "target": np.array([-1.0, 1.0])}
    assert np.isinf(oracle_none("soft_margin_loss", extreme)[0]).all()
    loss, grads, _ = oracle_none("soft_margin_loss", extreme, oracle=co.stable_soft_margin_loss)
    np.testing.assert_array_equal(loss, [1e4, 1e4])
    np.testing.assert_array_equal(grads["input"], [1.0, -1.0])


def test_gaussian_nll_var_clamp_passes_the_gradient_and_broadcasts():
    """torch 2.13 clamps var to eps under no_grad on a clone: d/dvar is evaluated at max(var, eps) and reaches
    var even where var < eps; var of shape input.shape[:-1] is unsqueezed, a size-1 axis broadcasts and its
    gradient is summed."""
    rng = np.random.default_rng(RNG_SEED)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    var = np.array([0.0, 1e-9, 0.5, 2.0])
    loss, grads, hessians = co.value_grads_hessians("gaussian_nll_loss", {"input": x, "target": y, "var": var},
                                                    reduction="sum", eps=1e-6)
    vc = np.maximum(var, 1e-6)[:, None]
    d2 = (x - y) ** 2
    assert float(loss) == pytest.approx(float((0.5 * (np.log(vc) + d2 / vc)).sum()), rel=1e-12)
    np.testing.assert_allclose(grads["input"], (x - y) / vc, rtol=1e-12)
    np.testing.assert_allclose(grads["var"], (0.5 * (1 / vc - d2 / vc**2)).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(hessians["input"], np.broadcast_to(1 / vc, x.shape), rtol=1e-12)
    np.testing.assert_allclose(hessians["var"], ((d2 / vc - 0.5) / vc**2).sum(axis=1), rtol=1e-10)
    # accepted and rejected var shapes for input (4, 3)
    for shape in ((4, 3), (4,), (4, 1), (1, 3)):
        assert co.ORACLES["gaussian_nll_loss"](t64(x), t64(y), torch.ones(shape, dtype=torch.float64),
                                               reduction="none").shape == (4, 3)
    for shape in ((1, 1), (3,), (), (4, 3, 1)):
        with pytest.raises(ValueError, match="var is of incorrect size"):
            co.ORACLES["gaussian_nll_loss"](t64(x), t64(y), torch.ones(shape, dtype=torch.float64))
    with pytest.raises(ValueError, match="var has negative"):
        co.ORACLES["gaussian_nll_loss"](t64(x), t64(y), -torch.ones(4, dtype=torch.float64))


def test_poisson_nll_full_adds_stirling_only_above_one():
    x, y = t64([0.5, 0.5, 0.5]), t64([0.0, 1.0, 1.5])
    difference = co.ORACLES["poisson_nll_loss"](x, y, full=True, reduction="none") - co.ORACLES["poisson_nll_loss"](
        x, y, full=False, reduction="none")
    stirling = 1.5 * math.log(1.5) - 1.5 + 0.5 * math.log(2 * math.pi * 1.5)
    torch.testing.assert_close(difference, t64([0.0, 0.0, stirling]))


def test_multilabel_soft_margin_reduces_rows_then_batch():
    rng = np.random.default_rng(RNG_SEED)
    x, t, w = rng.normal(size=(5, 4)), rng.integers(0, 2, (5, 4)).astype(np.float64), rng.uniform(size=4)
    rows, _, _ = oracle_none("multilabel_soft_margin_loss", {"input": x, "target": t}, weight=w)
    assert rows.shape == (5,)
    mean, grads, hessians = co.value_grads_hessians("multilabel_soft_margin_loss", {"input": x, "target": t},
                                                    reduction="mean", weight=w)
    assert float(mean) == pytest.approx(rows.mean(), rel=1e-14)  # divides by the rows, not by sum(weight)
    p = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(grads["input"], w * (p - t) / 4 / 5, rtol=1e-12)
    np.testing.assert_allclose(hessians["input"], w * p * (1 - p) / 4 / 5, rtol=1e-10)


@pytest.mark.parametrize("name", sorted(co.ORACLES))
def test_every_oracle_runs_on_empty_and_gives_finite_gradients(name):
    rng = np.random.default_rng(RNG_SEED)
    arrays = {key: rng.uniform(0.2, 2.0, (3, 4)) for key in co.arguments(name)}
    if "target" in arrays and name in ("soft_margin_loss", "hinge_embedding_loss", "margin_ranking_loss"):
        arrays["target"] = rng.choice([-1.0, 1.0], (3, 4))
    if name == "sigmoid_focal_loss" or name == "multilabel_soft_margin_loss":
        arrays["target"] = rng.integers(0, 2, (3, 4)).astype(np.float64)
    for reduction in ("none", "sum", "mean"):
        loss, grads, hessians = co.value_grads_hessians(name, arrays, reduction=reduction)
        assert np.isfinite(loss).all()
        for key in co.differentiable(name):
            assert grads[key].shape == arrays[key].shape and np.isfinite(grads[key]).all()
            assert hessians[key].shape == arrays[key].shape and np.isfinite(hessians[key]).all()
    empty = {key: np.zeros((0, 4)) for key in co.arguments(name)}
    loss, grads, _ = co.value_grads_hessians(name, empty, reduction="sum")
    assert float(loss) == 0.0
