"""The fused Numba elementwise kernels against the Array API reference (the specification).

Values, gradients and second derivatives for every loss of the spec table, option and reduction,
forward-only and with an upstream gradient, in float16/32/64, on odd, empty, multi-chunk and non-contiguous
inputs; ``out=`` and in-place gradients; losses bit-identical for any thread count; the size from which
``backend="auto"`` picks Numba; and the generated kernel modules up to date with their specs.
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from loss_cases import CASES, Case, as_dtype, defaults, draw, multi_chunk_cases, reductions, strided
from lossk._kernels.numba.elementwise import CHUNK
from torch_oracle import TOLERANCES

import lossk
from lossk import _dispatch
from lossk._backends.numba import elementwise as numba_elementwise
from lossk._backends.numba.elementwise import NUMBA_CROSSOVER_SIZE
from lossk._losses import ELEMENTWISE_LOSSES, generate
from lossk._reference import _elementwise as reference_elementwise
from lossk._spec import prepare_arguments, resolve

RTOL = {dtype: TOLERANCES[np.dtype(dtype)]["rtol"] for dtype in (np.float16, np.float32, np.float64)}
"""Relative tolerance per input dtype. float16 rounds a float32 result once more (2^-10 relative); float32
allows the vectorised exp/log (<= 2 ULP) and float64-accumulated sums against NumPy's float32 sums."""

KERNEL_CASES = [case for case in CASES if case.loss in ELEMENTWISE_LOSSES]
MULTI_CHUNK = multi_chunk_cases(CHUNK)


def assert_close(got: np.ndarray, expected: np.ndarray, dtype: type, terms: float = 0.0) -> None:
    """Equal within ``RTOL[dtype]`` of each value, or of the largest value for entries near 0; NaN where NaN.

    ``terms``: for a reduced loss, the sum or mean of its terms' magnitudes: terms of both signs (hinge
    embedding's ``x`` for ``y = 1``) can cancel to a total far below them, and the rounding of each term
    bounds the total's accuracy relative to the terms, not to the total.
    """
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape
    finite = np.isfinite(expected)
    scale = max(np.max(np.abs(expected[finite]), initial=0.0), terms)
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
    magnitudes = np.abs(np.asarray(function(input, target, backend="array_api", reduction="none", **options), np.float64))
    magnitudes = magnitudes[np.isfinite(magnitudes)]  # an infinite term makes the total infinite, compared as such
    for reduction in reductions(case.loss):
        terms = {"sum": np.sum(magnitudes), "mean": np.mean(magnitudes) if magnitudes.size else 0.0}.get(reduction, 0.0)
        (loss, grad), (expected_loss, expected_grad) = call_both(function, input, target, options, reduction=reduction)
        assert loss.dtype == grad.dtype == input.dtype and grad.shape == input.shape
        assert_close(loss, expected_loss, dtype, terms)
        assert_close(grad, expected_grad, dtype)
        (loss, _), (expected_loss, _) = call_both(
            function, input, target, options, reduction=reduction, forward_only=True
        )
        assert_close(loss, expected_loss, dtype, terms)


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
    case = Case(loss, (CHUNK + 3,), defaults(ELEMENTWISE_LOSSES[loss]))
    input, target, options = arrays_of(case, rng, dtype, "contiguous")
    expected = getattr(lossk, loss).grad(input, target, backend="array_api", **options)
    for out in (np.full_like(input, np.nan), strided(np.full_like(input, np.nan))):
        grad = getattr(lossk, loss).grad(input, target, out=out, backend="numba", **options)
        assert grad is out
        assert_close(out, expected, dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("loss", ELEMENTWISE_LOSSES)
def test_inplace_overwrites_the_input_with_its_gradient(loss, dtype, rng):
    case = Case(loss, (5, CHUNK + 1), defaults(ELEMENTWISE_LOSSES[loss]))
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
    case = Case(loss, (7, CHUNK + 13), defaults(ELEMENTWISE_LOSSES[loss]))
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize(
    "case", [c for c in KERNEL_CASES if c.shape in ((13,), (33,), (6, 5), (2, 3, 5))] + MULTI_CHUNK[:1], ids=lambda c: c.id
)
def test_second_derivative_matches_reference(case, dtype, rng):
    """The kernel's hess output (d2, weighted and scaled like the gradient) against the spec's array formula."""
    spec = ELEMENTWISE_LOSSES[case.loss]
    input, target, options = arrays_of(case, rng, dtype, "contiguous")
    call = {o.name: o.default for o in spec.options} | options
    _, call = prepare_arguments(spec, {"input": input, "target": target}, call)  # as the public function does
    name, call = resolve(spec, call)  # smooth_l1_loss(beta=0) is l1_loss
    spec = ELEMENTWISE_LOSSES[name]
    for reduction in reductions(case.loss):
        upstream = rng.normal(size=input.shape).astype(dtype) if reduction == "none" else 0.7
        loss, grad, hess = numba_elementwise.evaluate(
            spec, input, target, reduction=reduction, grad_output=upstream, compute_grad=True, compute_hess=True,
            **call,
        )
        with np.errstate(all="ignore"):  # the public path runs the reference in IEEE arithmetic too (log 0)
            expected = reference_elementwise.evaluate(
                spec, input, target, xp=np, reduction=reduction, grad_output=upstream, order=2, **call
            )
        for got, want in zip((loss, grad, hess), expected):
            assert got.dtype == want.dtype == input.dtype
            assert_close(got, want, dtype)


def test_generated_kernel_modules_are_up_to_date():
    """Each kernels/numba/pointwise/<loss>.py is what ``python -m lossk._losses.generate`` writes from its spec."""
    for path, text in generate.expected_files().items():
        assert path.exists(), f"{path.name} is missing: run python -m lossk._losses.generate"
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run python -m lossk._losses.generate"
    assert generate.main(["--check"]) == 0


def test_hess_slot_costs_nothing_when_not_asked(rng):
    """Without a hess buffer the kernel's results are the same bits as with one (d2 is dead code there)."""
    spec = ELEMENTWISE_LOSSES["huber_loss"]
    input, target, options = arrays_of(Case("huber_loss", (CHUNK + 5,), defaults(spec)), rng, np.float32, "contiguous")
    call = {**defaults(spec), "weight": None}
    without = numba_elementwise.evaluate(spec, input, target, reduction="sum", grad_output=None, compute_grad=True, **call)
    with_hess = numba_elementwise.evaluate(
        spec, input, target, reduction="sum", grad_output=None, compute_grad=True, compute_hess=True, **call
    )
    assert without[2] is None and with_hess[2] is not None
    assert without[0].tobytes() == with_hess[0].tobytes() and without[1].tobytes() == with_hess[1].tobytes()
