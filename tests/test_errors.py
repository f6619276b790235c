"""Every bad input raises a clear exception that names the argument and what was expected."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossk
from lossk import _dispatch
from lossk._losses import ELEMENTWISE_LOSSES

X = np.linspace(0.1, 0.9, 12).reshape(3, 4)
Y = X[::-1].copy()
LABELS = np.array([0, 3, 1])

ELEMENTWISE = list(ELEMENTWISE_LOSSES)
EVERY_LOSS = [*ELEMENTWISE, "cross_entropy", "nll_loss"]


def target_for(loss: str) -> np.ndarray:
    return LABELS if loss in ("cross_entropy", "nll_loss") else Y


@pytest.mark.parametrize("loss", ELEMENTWISE)
def test_shape_mismatch_names_both_shapes(loss):
    with pytest.raises(ValueError, match=r"target.*\(3, 4\).*\(4, 3\)"):
        getattr(lossk, loss)(X, Y.reshape(4, 3))


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_class_index_target_shape_mismatch(loss):
    with pytest.raises(ValueError, match=r"target must have shape \(3,\).*got \(2,\)"):
        getattr(lossk, loss)(X, LABELS[:2])


@pytest.mark.parametrize("loss", EVERY_LOSS)
def test_unknown_reduction_lists_the_choices(loss):
    with pytest.raises(ValueError, match=r"reduction must be one of 'none', 'mean', 'sum'.*got 'average'"):
        getattr(lossk, loss)(X, target_for(loss), reduction="average")


def test_batchmean_is_only_for_kl_div():
    assert np.isfinite(lossk.kl_div(np.log(X), Y, reduction="batchmean"))
    with pytest.raises(ValueError, match="reduction must be one of"):
        lossk.mse_loss(X, Y, reduction="batchmean")


@pytest.mark.parametrize("loss", EVERY_LOSS)
def test_integer_input_is_a_type_error(loss):
    with pytest.raises(TypeError, match="input must have a real floating dtype"):
        getattr(lossk, loss)(np.arange(12).reshape(3, 4), target_for(loss))


@pytest.mark.parametrize("loss", EVERY_LOSS)
@pytest.mark.parametrize("target", [[0.0, 1.0], 3.0, "labels", None])
def test_target_that_is_not_an_array_is_a_type_error(loss, target):
    with pytest.raises(TypeError, match="target must be an array"):
        getattr(lossk, loss)(X, target)


def test_input_that_is_not_an_array_is_a_type_error():
    with pytest.raises(TypeError, match="input must be an array, got list"):
        lossk.mse_loss([1.0, 2.0], np.array([1.0, 2.0]))


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("bad", [4, -1, 99])
def test_class_index_out_of_range(loss, bad):
    labels = LABELS.copy()
    labels[1] = bad
    with pytest.raises(ValueError, match=rf"target holds class index {bad}, outside \[0, 4\)"):
        getattr(lossk, loss)(X, labels)


def test_class_index_check_is_done_on_torch_cpu_too():
    with pytest.raises(ValueError, match="outside"):
        lossk.cross_entropy(torch.asarray(X), torch.tensor([0, 4, 1]))


def test_ignore_index_is_not_out_of_range():
    assert np.isfinite(lossk.cross_entropy(X, np.array([0, -100, 1])))
    assert np.isfinite(lossk.cross_entropy(X, np.array([0, 7, 1]), ignore_index=7))


def test_floating_target_for_nll_loss_is_a_type_error():
    with pytest.raises(TypeError, match="target must hold integer class indices"):
        lossk.nll_loss(X, LABELS.astype(np.float64))


@pytest.mark.parametrize(("loss", "option"), [("huber_loss", "delta"), ("smooth_l1_loss", "beta")])
@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf")])
def test_negative_delta_or_beta(loss, option, value):
    with pytest.raises(ValueError, match=f"{option} must be a finite number"):
        getattr(lossk, loss)(X, Y, **{option: value})


def test_huber_delta_zero_is_rejected_but_smooth_l1_beta_zero_is_l1():
    with pytest.raises(ValueError, match="delta must be a finite number > 0"):
        lossk.huber_loss(X, Y, delta=0.0)
    assert float(lossk.smooth_l1_loss(X, Y, beta=0.0)) == float(lossk.l1_loss(X, Y))


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_label_smoothing_outside_unit_interval(value):
    with pytest.raises(ValueError, match="label_smoothing must be a number in \\[0, 1\\]"):
        lossk.cross_entropy(X, LABELS, label_smoothing=value)


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan")])
def test_bce_probabilities_outside_unit_interval(bad):
    x = X.copy()
    x[0, 0] = bad
    with pytest.raises(ValueError, match=r"input must be probabilities in \[0, 1\]"):
        lossk.binary_cross_entropy(x, Y)


@pytest.mark.parametrize(
    "arrays",
    [
        {"input": torch.asarray(X), "target": Y},
        {"input": X, "target": torch.asarray(Y)},
        {"input": X, "target": Y, "weight": torch.asarray(X)},
    ],
    ids=["torch-numpy", "numpy-torch", "numpy-numpy-torch-weight"],
)
def test_arrays_from_two_libraries(arrays):
    with pytest.raises(TypeError, match="one call must come from one library.*torch"):
        lossk.mse_loss(arrays["input"], arrays["target"], weight=arrays.get("weight"))


def test_grad_output_from_another_library():
    with pytest.raises(TypeError, match="grad_output must come from the input's library"):
        lossk.mse_loss.grad(X, Y, reduction="none", grad_output=torch.ones(3, 4))


def test_grad_output_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"grad_output must have shape \(3, 4\)"):
        lossk.mse_loss.grad(X, Y, reduction="none", grad_output=np.ones(4))


def test_array_grad_output_for_a_reduced_loss():
    with pytest.raises(TypeError, match="grad_output must be a scalar"):
        lossk.mse_loss.grad(X, Y, reduction="mean", grad_output=np.ones((3, 4)))


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be 'auto' or one of 'cupy', 'numba', 'array_api'; got 'jax'"):
        lossk.mse_loss(X, Y, backend="jax")


def test_unavailable_backend_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(_dispatch, "is_available", lambda backend: backend == "array_api")
    with pytest.raises(lossk.BackendUnavailableError, match=r'numba.*pip install "lossk\[numba\]"'):
        lossk.mse_loss(X, Y, backend="numba")
    with pytest.raises(lossk.BackendUnavailableError, match=r"cupy.*lossk\[cuda12\]"):
        lossk.mse_loss(X, Y, backend="cupy")
    assert float(lossk.mse_loss(X, Y)) == pytest.approx(np.mean((X - Y) ** 2))  # auto falls back quietly


def test_backend_unavailable_error_is_an_import_error():
    assert issubclass(lossk.BackendUnavailableError, ImportError)


@pytest.mark.skipif(not _dispatch.is_available("numba"), reason="numba is not installed")
def test_numba_backend_rejects_torch_tensors():
    with pytest.raises(TypeError, match="backend 'numba' takes NumPy arrays"):
        lossk.mse_loss(torch.asarray(X), torch.asarray(Y), backend="numba")


def test_out_and_inplace_together():
    with pytest.raises(ValueError, match="either out= or inplace=True"):
        lossk.mse_loss.grad(X.copy(), Y, out=np.empty_like(X), inplace=True)


def test_read_only_destinations_are_refused_by_name():
    """A read-only NumPy array (and JAX's immutable arrays, tests/test_linear_cross_entropy.py) cannot take a
    derivative: out=, hess_out= and inplace=True say so before any computing."""
    frozen = X.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="out must be a writeable array"):
        lossk.mse_loss.grad(X, Y, out=frozen)
    with pytest.raises(ValueError, match="hess_out must be a writeable array"):
        lossk.mse_loss.value_grad_hessian(X, Y, hess_out=frozen)
    with pytest.raises(ValueError, match="inplace=True writes the gradient into input, but it is a read-only numpy"):
        lossk.mse_loss.grad(frozen, Y, inplace=True)
    with pytest.raises(ValueError, match="inplace=True writes the gradient into input1"):
        lossk.margin_ranking_loss.grad(frozen, Y, np.ones_like(X), inplace=True)


def test_out_of_the_wrong_dtype():
    with pytest.raises(TypeError, match="out must have the input's dtype"):
        lossk.mse_loss.grad(X, Y, out=np.empty_like(X, dtype=np.float32))


def test_class_weight_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\) \(one weight per class\)"):
        lossk.cross_entropy(X, LABELS, weight=np.ones(3))


def test_pos_weight_that_does_not_broadcast():
    with pytest.raises(ValueError, match=r"pos_weight of shape \(3,\) does not broadcast"):
        lossk.binary_cross_entropy_with_logits(X, Y, pos_weight=np.ones(3))


def test_zero_dimensional_logits():
    with pytest.raises(ValueError, match="input must have a class axis"):
        lossk.cross_entropy(np.array(1.0), np.array(0))
