"""The fused Numba cross-entropy and NLL kernels against the Array API reference (``backend="array_api"``).

Every option, reduction and layout of ``lossk.cross_entropy`` / ``lossk.nll_loss`` on the ``numba`` backend
must give the reference's loss and gradient within :data:`TOLERANCE`; ``out=`` and in-place mode must
write the same gradient into the caller's buffer; the loss must not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

import lossk
from lossk import _dispatch
from lossk._backends.numba import classification as adapters

TOLERANCE = {
    np.float64: {"rtol": 1e-10, "atol": 1e-12},
    np.float32: {"rtol": 2e-5, "atol": 2e-6},
    np.float16: {"rtol": 2e-2, "atol": 2e-3},
}
"""Numba kernel vs reference, per input dtype (float16 computes in float32 on both sides, then rounds)."""

SHAPES = [(7,), (1, 1), (5, 1), (6, 13), (4, 33), (3, 7, 5), (2, 5, 3, 4)]
"""(C,), (N, C) with rows of length 1 and odd lengths (vector loop tails), (N, C, d1, ...)."""

OPTIONS = {
    "plain": {},
    "weight": {"weight": True},
    "ignored": {"ignore": True},
    "ignore_index=2": {"ignore_index": 2},
    "smoothing": {"label_smoothing": 0.15},
    "weight+smoothing+ignored": {"weight": True, "label_smoothing": 0.3, "ignore": True},
    "z_loss+softcap": {"z_loss": 1e-2, "softcap": 2.5},
    "everything": {"weight": True, "label_smoothing": 0.1, "ignore": True, "z_loss": 1e-3, "softcap": 4.0},
}


def _labels_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return () if len(shape) == 1 else (shape[0], *shape[2:])


def _arguments(rng, shape, dtype, target_kind, options):
    """(logits, target, keyword options) for ``lossk.cross_entropy``."""
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    options = dict(options)
    if options.pop("weight", False):
        options["weight"] = rng.uniform(0.2, 2.0, n_classes).astype(dtype)
    ignore = options.pop("ignore", False)
    if target_kind == "probabilities":
        target = rng.dirichlet(np.ones(n_classes), size=_labels_shape(shape) or None).astype(dtype)
        target = np.moveaxis(target, -1, 1) if len(shape) > 2 else target
        options.pop("ignore_index", None)
    else:
        target = rng.integers(0, n_classes, _labels_shape(shape))
        if ignore and target.ndim:
            target[rng.random(target.shape) < 0.3] = options.get("ignore_index", -100)
    return logits, target, options


def _grad_output(rng, reduction, shape, dtype):
    if reduction == "none":
        return rng.uniform(-2, 2, _labels_shape(shape)).astype(dtype)
    return float(rng.uniform(0.5, 2))


def _assert_close(actual, desired, dtype):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(desired, dtype=np.float64),
                               **TOLERANCE[dtype])


def _both(loss, *args, **kwargs):
    """(numba result, reference result) of ``loss.value_and_grad``."""
    return (loss.value_and_grad(*args, backend="numba", **kwargs),
            loss.value_and_grad(*args, backend="array_api", **kwargs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("target_kind", ["indices", "probabilities"])
@pytest.mark.parametrize("option_name", list(OPTIONS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_reference(rng, dtype, shape, target_kind, option_name, reduction):
    logits, target, options = _arguments(rng, shape, dtype, target_kind, OPTIONS[option_name])
    grad_output = _grad_output(rng, reduction, shape, dtype)
    (loss, grad), (ref_loss, ref_grad) = _both(
        lossk.cross_entropy, logits, target, reduction=reduction, grad_output=grad_output, return_z_loss=True,
        **options,
    )
    for value, ref_value in zip(loss, ref_loss, strict=True):  # (loss, z-term)
        assert value.dtype == ref_value.dtype and value.shape == ref_value.shape
        _assert_close(value, ref_value, dtype)
    assert grad.dtype == logits.dtype and grad.shape == logits.shape
    _assert_close(grad, ref_grad, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("option_name", ["plain", "everything"])
@pytest.mark.parametrize("shape", [(6, 13), (3, 7, 5)], ids=str)
def test_cross_entropy_forward_only_matches_reference(rng, dtype, option_name, shape):
    logits, target, options = _arguments(rng, shape, dtype, "indices", OPTIONS[option_name])
    for reduction in ("mean", "none"):
        loss = lossk.cross_entropy(logits, target, reduction=reduction, backend="numba", **options)
        _assert_close(loss, lossk.cross_entropy(logits, target, reduction=reduction, backend="array_api",
                                                **options), dtype)


@pytest.mark.parametrize("target_kind", ["indices", "probabilities"])
def test_cross_entropy_float16_computes_in_float32(rng, target_kind):
    logits, target, options = _arguments(rng, (8, 21), np.float16, target_kind, OPTIONS["everything"])
    (loss, grad), (ref_loss, ref_grad) = _both(lossk.cross_entropy, logits, target, **options)
    assert loss.dtype == grad.dtype == np.float16
    _assert_close(loss, ref_loss, np.float16)
    _assert_close(grad, ref_grad, np.float16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_saturated_logits(rng, dtype):
    """Logits of ±1e4 (exp overflows without the max shift; softmax is exactly one-hot)."""
    logits = rng.choice(np.array([-1e4, 1e4, 0.0, 9999.0], dtype=dtype), size=(9, 40))
    target = rng.integers(0, 40, 9)
    for options in ({}, {"label_smoothing": 0.2, "z_loss": 1e-4}, {"softcap": 30.0}):
        (loss, grad), (ref_loss, ref_grad) = _both(lossk.cross_entropy, logits, target, **options)
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        _assert_close(loss, ref_loss, dtype)
        _assert_close(grad, ref_grad, dtype)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_empty_batch(reduction):
    logits, target = np.zeros((0, 5), np.float32), np.zeros(0, np.int64)
    (loss, grad), (ref_loss, ref_grad) = _both(lossk.cross_entropy, logits, target, reduction=reduction)
    np.testing.assert_array_equal(loss, ref_loss)  # NaN for the mean of nothing, as the reference
    assert grad.shape == (0, 5) and ref_grad.shape == (0, 5)


@pytest.mark.parametrize("target_kind", ["probabilities", "ignored indices"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.2, "z_loss": 1e-3, "softcap": 3.0}, {"weight": "empty"}],
                         ids=["plain", "smoothing-zloss-softcap", "weight"])
def test_cross_entropy_no_classes(target_kind, options):
    """(N, 0) logits: each row's loss is 0, in the reference as in the kernels; the mean over rows that are all
    ignored is NaN. (PyTorch 2.13 also gives NaN for the mean with probabilities: it divides by N·C / C.)"""
    logits = np.zeros((3, 0), np.float32)
    target = np.zeros((3, 0), np.float32) if target_kind == "probabilities" else np.full(3, -100)
    if options.get("weight") == "empty":
        options = {"weight": np.zeros(0, np.float32), "label_smoothing": 0.1}
    for reduction in ("mean", "sum", "none"):
        (loss, grad), (ref_loss, ref_grad) = _both(lossk.cross_entropy, logits, target, reduction=reduction, **options)
        np.testing.assert_array_equal(loss, ref_loss)
        expected = np.nan if reduction == "mean" and target_kind == "ignored indices" else 0.0
        np.testing.assert_array_equal(ref_loss, np.full(3 if reduction == "none" else (), expected, np.float32))
        assert grad.shape == ref_grad.shape == (3, 0)


def test_cross_entropy_every_row_ignored_gives_nan_like_the_reference(rng):
    logits = rng.standard_normal((4, 6))
    target = np.full(4, -100)
    (loss, grad), (ref_loss, ref_grad) = _both(lossk.cross_entropy, logits, target)
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(grad, ref_grad)


@pytest.mark.parametrize("layout", ["strided columns", "transposed", "strided 3-d"])
def test_cross_entropy_non_contiguous_input(rng, layout):
    if layout == "strided columns":
        logits = rng.standard_normal((6, 34)).astype(np.float32)[:, ::2]
    elif layout == "transposed":
        logits = rng.standard_normal((17, 6)).astype(np.float32).T
    else:
        logits = rng.standard_normal((3, 8, 10)).astype(np.float32)[:, :, ::2]
    target = rng.integers(0, logits.shape[1], _labels_shape(logits.shape))
    (loss, grad), (ref_loss, ref_grad) = _both(lossk.cross_entropy, logits, target, label_smoothing=0.1)
    _assert_close(loss, ref_loss, np.float32)
    _assert_close(grad, ref_grad, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("option_name", ["plain", "everything"])
@pytest.mark.parametrize("target_kind", ["indices", "probabilities"])
def test_cross_entropy_out_and_inplace(rng, dtype, option_name, target_kind):
    logits, target, options = _arguments(rng, (5, 3, 4), dtype, target_kind, OPTIONS[option_name])
    ref_loss, ref_grad = lossk.cross_entropy.value_and_grad(logits, target, backend="array_api", **options)
    out = np.full_like(logits, np.nan)
    loss, grad = lossk.cross_entropy.value_and_grad(logits, target, out=out, backend="numba", **options)
    assert grad is out
    _assert_close(grad, ref_grad, dtype)
    strided_out = np.full((4, 3, 10), np.nan, dtype)[:, :, ::2].transpose(2, 1, 0)  # (5, 3, 4), not contiguous
    grad = lossk.cross_entropy.grad(logits, target, out=strided_out, backend="numba", **options)
    assert grad is strided_out
    _assert_close(grad, ref_grad, dtype)
    overwritten = logits.copy()
    loss, grad = lossk.cross_entropy.value_and_grad(overwritten, target, inplace=True, backend="numba", **options)
    assert grad is overwritten
    _assert_close(loss, ref_loss, dtype)
    _assert_close(grad, ref_grad, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_loss_is_bit_identical_for_any_thread_count(rng, dtype):
    logits, target, options = _arguments(rng, (300, 1000), dtype, "indices", OPTIONS["everything"])
    assert logits.size >= adapters.PARALLEL_MIN_SIZE  # the parallel path, several chunks
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        try:
            results.append(lossk.cross_entropy.value_and_grad(logits, target, backend="numba", **options))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    (loss_1, grad_1), (loss_n, grad_n) = results
    assert float(loss_1).hex() == float(loss_n).hex()
    np.testing.assert_array_equal(grad_1, grad_n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (6, 13), (3, 7, 5)], ids=str)
@pytest.mark.parametrize("option_name", ["plain", "weight", "weight+smoothing+ignored", "ignore_index=2"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_matches_reference(rng, dtype, shape, option_name, reduction):
    log_probabilities, target, options = _arguments(rng, shape, dtype, "indices", OPTIONS[option_name])
    options.pop("label_smoothing", None)
    grad_output = _grad_output(rng, reduction, shape, dtype)
    (loss, grad), (ref_loss, ref_grad) = _both(
        lossk.nll_loss, log_probabilities, target, reduction=reduction, grad_output=grad_output, **options
    )
    assert loss.dtype == ref_loss.dtype and loss.shape == ref_loss.shape
    _assert_close(loss, ref_loss, dtype)
    _assert_close(grad, ref_grad, dtype)
    forward = lossk.nll_loss(log_probabilities, target, reduction=reduction, backend="numba", **options)
    _assert_close(forward, ref_loss, dtype)


def test_nll_loss_out_and_inplace(rng):
    log_probabilities = rng.standard_normal((6, 9)).astype(np.float32)
    target = np.array([0, 8, -100, 3, 3, 1])
    ref_grad = lossk.nll_loss.grad(log_probabilities, target, backend="array_api")
    out = np.full_like(log_probabilities, np.nan)
    assert lossk.nll_loss.grad(log_probabilities, target, out=out, backend="numba") is out
    _assert_close(out, ref_grad, np.float32)
    ref_loss = lossk.nll_loss(log_probabilities, target, backend="array_api")
    overwritten = log_probabilities.copy()
    loss, grad = lossk.nll_loss.value_and_grad(overwritten, target, inplace=True, backend="numba")
    assert grad is overwritten
    _assert_close(loss, ref_loss, np.float32)
    _assert_close(grad, ref_grad, np.float32)


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_auto_picks_numba_for_numpy_inputs_of_any_size(loss):
    """The measured crossover is 0: the serial kernel beats the reference from the smallest inputs on."""
    assert adapters.CROSS_ENTROPY_CROSSOVER_SIZE == adapters.NLL_CROSSOVER_SIZE == 0
    numba_implementation = _dispatch.implementations(loss)["numba"].implementation
    for n_classes in (1, 5000):
        logits = np.zeros((1, n_classes), np.float32)
        assert _dispatch.select(loss, "auto", logits).implementation is numba_implementation


@pytest.mark.parametrize("rows", [3, 700])
def test_serial_and_parallel_paths_agree(rng, rows):
    """Small inputs run in the calling thread, large ones in parallel: the same values either way."""
    logits, target, options = _arguments(rng, (rows, 1000), np.float64, "indices", OPTIONS["everything"])
    assert (logits.size >= adapters.PARALLEL_MIN_SIZE) == (rows == 700)
    (loss, grad), (ref_loss, ref_grad) = _both(lossk.cross_entropy, logits, target, reduction="none", **options)
    _assert_close(loss, ref_loss, np.float64)
    _assert_close(grad, ref_grad, np.float64)
