"""The fused Numba elementwise kernels against the Array API reference (the specification).

Values and gradients for every loss, option and reduction, forward-only and with an upstream gradient, in
float16/32/64, on odd, empty, multi-chunk and non-contiguous inputs; ``out=`` and in-place gradients; losses
bit-identical for any thread count; and the size from which ``backend="auto"`` picks Numba.
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from loss_cases import CASES, Case, as_dtype, draw, reductions, strided
from lossk._kernels.numba.elementwise import CHUNK

import lossk
from lossk import _dispatch
from lossk._backends.numba.elementwise import NUMBA_CROSSOVER_SIZE

ELEMENTWISE_LOSSES = (
    "l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "kl_div",
)

RTOL = {np.float16: 2e-3, np.float32: 2e-5, np.float64: 1e-12}
"""Relative tolerance per input dtype. float16 rounds a float32 result once more (2^-10 relative); float32
allows the vectorised exp/log (<= 2 ULP) and float64-accumulated sums against NumPy's float32 sums."""

KERNEL_CASES = [case for case in CASES if case.loss in ELEMENTWISE_LOSSES]
MULTI_CHUNK = [
    Case("mse_loss", (3, CHUNK + 7), arrays=("weight",)),
    Case("l1_loss", (2 * CHUNK + 5,)),
    Case("huber_loss", (CHUNK + 3, 2), {"delta": 0.8}),
    Case("smooth_l1_loss", (2, CHUNK + 1), {"beta": 1.5}),
    Case("binary_cross_entropy", (CHUNK + 9, 3), arrays=("weight",)),
    Case("binary_cross_entropy_with_logits", (2, CHUNK + 11), arrays=("weight", "pos_weight"), saturated=True),
    Case("kl_div", (CHUNK + 1, 3), {"log_target": True}),
    Case("kl_div", (3, CHUNK + 1), {"log_target": False}),
]


def assert_close(got: np.ndarray, expected: np.ndarray, dtype: type) -> None:
    """Equal within ``RTOL[dtype]`` of each value, or of the largest value for entries near 0; NaN where NaN."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape
    finite = np.isfinite(expected)
    scale = np.max(np.abs(expected[finite]), initial=0.0)
    np.testing.assert_allclose(got, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def call_both(function, input, target, options, **call):
    """``value_and_grad`` (or the forward alone when ``call`` has ``forward_only``) on numba and the reference."""
    forward_only = call.pop("forward_only", False)
    results = []
    for backend in ("numba", "array_api"):
        if forward_only:
            results.append((function(input, target, backend=backend, **options, **call), None))
        else:
            results.append(function.value_and_grad(input, target, backend=backend, **options, **call))
    return results


def arrays_of(case: Case, rng: np.random.Generator, dtype: type, layout: str):
    input, target, arrays = draw(case, rng)
    arrange = strided if layout == "strided" else (lambda a: a)
    options = {**case.options, **{k: arrange(as_dtype(a, dtype)) for k, a in arrays.items()}}
    return arrange(as_dtype(input, dtype)), arrange(as_dtype(target, dtype)), options


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("case", KERNEL_CASES + MULTI_CHUNK, ids=lambda c: c.id)
def test_matches_reference(case, dtype, layout, rng):
    function = getattr(lossk, case.loss)
    input, target, options = arrays_of(case, rng, dtype, layout)
    for reduction in reductions(case.loss):
        (loss, grad), (expected_loss, expected_grad) = call_both(function, input, target, options, reduction=reduction)
        assert loss.dtype == grad.dtype == input.dtype and grad.shape == input.shape
        assert_close(loss, expected_loss, dtype)
        assert_close(grad, expected_grad, dtype)
        (loss, _), (expected_loss, _) = call_both(
            function, input, target, options, reduction=reduction, forward_only=True
        )
        assert_close(loss, expected_loss, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("case", [c for c in KERNEL_CASES if c.shape == (6, 5)] + MULTI_CHUNK[:2], ids=lambda c: c.id)
def test_upstream_gradient(case, dtype, rng):
    """grad_output: an array of the loss's shape under 'none', a scalar (or 0-d array) otherwise."""
    function = getattr(lossk, case.loss)
    input, target, options = arrays_of(case, rng, dtype, "contiguous")
    for reduction in reductions(case.loss):
        upstream = rng.normal(size=input.shape).astype(dtype) if reduction == "none" else np.asarray(-0.7, dtype)
        (_, grad), (_, expected) = call_both(
            function, input, target, options, reduction=reduction, grad_output=upstream
        )
        assert_close(grad, expected, dtype)


@pytest.mark.parametrize("loss", ["mse_loss", "binary_cross_entropy_with_logits", "huber_loss", "kl_div"])
def test_special_values_propagate_like_the_reference(loss):
    """NaN, ±inf and saturated inputs: the kernels produce the reference's NaNs, infinities and zeros."""
    special = np.array([np.nan, np.inf, -np.inf, 1e4, -1e4, 0.0, -0.0, 1e-30, 88.0, -88.0, 3.0], np.float32)
    target = np.array([0.5, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, np.nan], np.float32)
    options = {"delta": 1.0} if loss == "huber_loss" else {}
    if loss == "kl_div":
        special, target = special[np.isfinite(special)], np.abs(target[np.isfinite(special)])
    function = getattr(lossk, loss)
    with np.errstate(all="ignore"):
        (loss_value, grad), (expected_value, expected_grad) = call_both(
            function, special, target, options, reduction="none"
        )
    np.testing.assert_array_equal(np.isnan(loss_value), np.isnan(expected_value))
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(expected_grad))
    assert_close(loss_value, expected_value, np.float32)
    assert_close(grad, expected_grad, np.float32)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("loss", ELEMENTWISE_LOSSES)
def test_out_receives_the_gradient(loss, dtype, rng):
    case = Case(loss, (CHUNK + 3,), {"log_target": False} if loss == "kl_div" else {})
    input, target, options = arrays_of(case, rng, dtype, "contiguous")
    expected = getattr(lossk, loss).grad(input, target, backend="array_api", **options)
    for out in (np.full_like(input, np.nan), strided(np.full_like(input, np.nan))):
        grad = getattr(lossk, loss).grad(input, target, out=out, backend="numba", **options)
        assert grad is out
        assert_close(out, expected, dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("loss", ELEMENTWISE_LOSSES)
def test_inplace_overwrites_the_input_with_its_gradient(loss, dtype, rng):
    case = Case(loss, (5, CHUNK + 1), {"log_target": True} if loss == "kl_div" else {})
    input, target, options = arrays_of(case, rng, dtype, "contiguous")
    expected_loss, expected_grad = getattr(lossk, loss).value_and_grad(
        input, target, reduction="sum", backend="array_api", **options
    )
    loss_value, grad = getattr(lossk, loss).value_and_grad(
        input, target, reduction="sum", inplace=True, backend="numba", **options
    )
    assert grad is input
    assert_close(input, expected_grad, dtype)
    assert_close(loss_value, expected_loss, dtype)


@pytest.mark.parametrize("loss", ELEMENTWISE_LOSSES)
def test_loss_is_bit_identical_for_any_thread_count(loss, rng):
    case = Case(loss, (7, CHUNK + 13), {"log_target": False} if loss == "kl_div" else {})
    input, target, options = arrays_of(case, rng, np.float32, "contiguous")
    function = getattr(lossk, loss)
    threads = numba.get_num_threads()
    results = []
    try:
        for count in sorted({1, 2, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(count)
            results.append(function.value_and_grad(input, target, reduction="mean", backend="numba", **options))
    finally:
        numba.set_num_threads(threads)
    for loss_value, grad in results[1:]:
        assert loss_value.tobytes() == results[0][0].tobytes()
        assert grad.tobytes() == results[0][1].tobytes()


def test_auto_picks_numba_from_the_crossover_size():
    for loss in ELEMENTWISE_LOSSES:
        numba_implementation = _dispatch.implementations(loss)["numba"].implementation
        assert _dispatch.select(loss, "auto", np.zeros(NUMBA_CROSSOVER_SIZE)).implementation is numba_implementation
        assert _dispatch.select(loss, "auto", np.zeros(NUMBA_CROSSOVER_SIZE - 1)).implementation is not numba_implementation


def test_out_overlapping_the_target_gets_the_right_gradient(rng):
    """An ``out`` that partially overlaps an array the kernel reads goes through a scratch buffer."""
    n = CHUNK + 5
    buffer = rng.normal(size=n + 1).astype(np.float32)
    input = rng.normal(size=n).astype(np.float32)
    target, out = buffer[:-1], buffer[1:]  # element i would overwrite target[i + 1] before it is read
    expected = lossk.mse_loss.grad(input, target.copy(), backend="array_api")
    grad = lossk.mse_loss.grad(input, target, out=out, backend="numba")
    assert grad is out
    assert_close(out, expected, np.float32)
