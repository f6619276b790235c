"""The vectorisable float32 exp/expm1/log/log1p/tanh/hypot of ``lossk._kernels.numba.vecmath`` against float64 NumPy."""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from lossk._kernels.numba import vecmath

MAX_ULP = {"exp32": 2.0, "expm1_32": 2.0, "log32": 2.0, "log1p32": 2.0, "tanh32": 2.0, "log1p_unit32": 2.0,
           "log1p_bounded32": 2.0, "hypot32": 0.501}
"""Largest error allowed, in units in the last place of the correctly rounded float32 result."""

REFERENCE = {"exp32": np.exp, "expm1_32": np.expm1, "log32": np.log, "log1p32": np.log1p, "tanh32": np.tanh,
             "log1p_unit32": np.log1p, "log1p_bounded32": np.log1p}
"""The one-argument functions and their float64 NumPy counterparts (``hypot32`` has its own tests)."""
DOMAIN = {"log1p_unit32": (0.0, 1.0), "log1p_bounded32": (0.0, 4.65)}
"""Functions defined on part of the line only: checked there."""

SPECIAL = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-45, -1e-45, 1e-38, 3.4e38, -3.4e38, 88.72283, 88.7229,
     -87.3, -103.97, -104.0, -200.0, 200.0, -1 + 2**-24, 2**-30, -(2**-30), 0.625, 9.0, 20.0, 0.6931472,
     -0.6931472, 0.34657359, -17.4, 88.3],
    dtype=np.float32,
)


def _kernel(function, fastmath):
    """A loop applying ``function`` elementwise: the way kernels call it (inlined by LLVM, vectorised)."""

    @numba.njit(fastmath=fastmath, error_model="numpy")
    def apply(x, out):
        for i in range(x.size):
            out[i] = function(x[i])

    return apply


def _binary_kernel(function, fastmath):
    """:func:`_kernel` for a function of two arguments."""

    @numba.njit(fastmath=fastmath, error_model="numpy")
    def apply(a, b, out):
        for i in range(a.size):
            out[i] = function(a[i], b[i])

    return apply


def _apply(name, x, fastmath=frozenset({"contract"})):
    out = np.empty_like(x)
    _kernel(getattr(vecmath, name), fastmath if fastmath is True else set(fastmath))(x, out)
    return out


def _ulp_error(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|got - exact| in ULPs of the float32 result (0 where both are the same inf or both NaN)."""
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = exact.astype(np.float32)
        spacing = np.maximum(np.spacing(np.abs(rounded)), np.spacing(np.float32(0))).astype(np.float64)
        error = np.abs(got.astype(np.float64) - exact) / spacing
    same = (got == rounded) | (np.isnan(got) & np.isnan(exact))
    return np.where(same, 0.0, error)


def _every_float32(step: int) -> np.ndarray:
    """Finite float32 values spread over the whole range: every ``step``-th bit pattern."""
    values = np.arange(0, 2**32, step, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return values[np.isfinite(values)]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_ulp_error_over_the_float32_range(name):
    x = _every_float32(4099)
    low, high = DOMAIN.get(name, (-np.inf, np.inf))
    x = x[(x >= low) & (x <= high)]
    with np.errstate(all="ignore"):
        exact = REFERENCE[name](x.astype(np.float64))
    defined = ~np.isnan(exact)
    error = _ulp_error(_apply(name, x), exact)
    worst = int(np.argmax(np.where(defined, error, 0)))
    assert error[defined].max() <= MAX_ULP[name], f"{name}({x[worst]!r}): {error[worst]} ULP"
    assert np.isnan(_apply(name, x)[~defined]).all()


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_near_one_and_near_zero(name):
    """Where cancellation bites: arguments near 0 (log1p, tanh, exp) and near 1 (log)."""
    x = np.concatenate([np.linspace(-1, 1, 100_001), 1 + np.linspace(-1e-3, 1e-3, 10_001), np.geomspace(1e-30, 1, 10_001)])
    x = np.concatenate([x, -x]).astype(np.float32)
    low, high = DOMAIN.get(name, (-np.inf, np.inf))
    x = x[(x >= low) & (x <= high)]
    with np.errstate(all="ignore"):
        exact = REFERENCE[name](x.astype(np.float64))
    defined = ~np.isnan(exact)
    assert _ulp_error(_apply(name, x), exact)[defined].max() <= MAX_ULP[name]


@pytest.mark.parametrize("fastmath", [frozenset({"contract"}), frozenset({"reassoc", "contract", "nsz", "arcp"}), True])
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_special_values_under_the_callers_fastmath_flags(name, fastmath):
    """inf, NaN, 0, subnormals, overflow and underflow thresholds, whatever flags the calling loop uses."""
    low, high = DOMAIN.get(name, (-np.inf, np.inf))
    special = SPECIAL[np.isnan(SPECIAL) | ((SPECIAL >= low) & (SPECIAL <= high))]
    got = _apply(name, special, fastmath)
    with np.errstate(all="ignore"):
        exact = REFERENCE[name](special.astype(np.float64))
        rounded = exact.astype(np.float32)
    assert _ulp_error(got, exact).max() <= MAX_ULP[name], list(zip(special, got, rounded))
    assert (np.signbit(got) == np.signbit(rounded))[~np.isnan(exact)].all()


def test_exp_over_and_underflow():
    assert _apply("exp32", np.float32([88.8, 1e30, np.inf])).tolist() == [np.inf] * 3
    assert _apply("exp32", np.float32([-104.0, -1e30, -np.inf])).tolist() == [0.0] * 3
    smallest = _apply("exp32", np.float32([-103.2789]))[0]  # e^x ~ 1.4e-45: the smallest subnormal
    assert smallest == np.float32(1e-45)


def test_expm1_edges():
    got = _apply("expm1_32", np.float32([-0.0, 0.0, -np.inf, -18.0, -1e30, np.inf, 89.0, 1e-45, -1e-45, np.nan]))
    assert np.signbit(got[0]) and got[1] == 0 and not np.signbit(got[1])
    assert got[2:5].tolist() == [-1.0] * 3 and got[5:7].tolist() == [np.inf] * 2
    assert got[7] == np.float32(1e-45) and got[8] == np.float32(-1e-45) and np.isnan(got[9])


def _hypot(a, b, fastmath=frozenset({"contract"})):
    a, b = np.broadcast_arrays(np.float32(a), np.float32(b))
    out = np.empty(a.size, np.float32)
    _binary_kernel(vecmath.hypot32, fastmath if fastmath is True else set(fastmath))(a.ravel().copy(), b.ravel().copy(), out)
    return out


def test_hypot_ulp_error(rng):
    """Random bit patterns (both magnitudes anywhere in the range), pairs of close magnitudes, and (1, r), the
    pseudo-Huber loss's hypot, for r over the whole range."""
    random = rng.integers(0, 2**32, (2, 200_000), dtype=np.uint64).astype(np.uint32).view(np.float32)
    random = random[:, np.isfinite(random).all(axis=0)]
    close = rng.standard_normal(200_000) * 2.0 ** rng.integers(-140, 120, 200_000)
    close = np.stack([close, close * rng.uniform(-3, 3, close.size)]).astype(np.float32)
    r = _every_float32(4099)
    pairs = np.concatenate([random, close, np.stack([np.ones_like(r), r])], axis=1)
    assert pairs.dtype == np.float32
    got = _hypot(pairs[0], pairs[1])
    exact = np.hypot(pairs[0].astype(np.float64), pairs[1].astype(np.float64))
    error = _ulp_error(got, exact)
    worst = int(np.argmax(error))
    assert error.max() <= MAX_ULP["hypot32"], f"hypot32{tuple(pairs[:, worst])}: {error[worst]} ULP"


@pytest.mark.parametrize("fastmath", [frozenset({"contract"}), True])
def test_hypot_special_values(fastmath):
    inf, nan = np.inf, np.nan
    a = [inf, -inf, nan, inf, nan, 0.0, -0.0, 1e-45, 3e38, 3.4e38, 1.0, 1.0, 1.0, -1.0]
    b = [nan, 1.0, inf, -inf, 1.0, 0.0, -0.0, 1e-45, 3e38, 0.0, 1e30, -4096.0, 2e-4, 1e-30]
    got = _hypot(a, b, fastmath)
    exact = np.hypot(np.float64(np.float32(a)), np.float64(np.float32(b)))
    assert np.array_equal(np.isnan(got), np.isnan(exact)) and not np.signbit(got).any()
    assert _ulp_error(got, exact).max() <= MAX_ULP["hypot32"], list(zip(a, b, got))


def test_log_edges():
    got = _apply("log32", np.float32([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan]))
    assert got[0] == got[1] == -np.inf and np.isnan(got[2:4]).all() and got[4] == np.inf and np.isnan(got[5])
    got = _apply("log1p32", np.float32([-1.0, -1.5, np.inf, 1e-30]))
    assert got[0] == -np.inf and np.isnan(got[1]) and got[2] == np.inf and got[3] == np.float32(1e-30)


@pytest.mark.parametrize("name", sorted(MAX_ULP))
def test_the_calling_loop_vectorises(name):
    """A loop over these functions compiles to SIMD float vectors with no calls left in it."""
    x = np.ones(64, np.float32)
    if name in REFERENCE:
        kernel = _kernel(getattr(vecmath, name), {"contract"})
        kernel(x, np.empty_like(x))
    else:
        kernel = _binary_kernel(getattr(vecmath, name), {"contract"})
        kernel(x, x, np.empty_like(x))
    llvm = kernel.inspect_llvm(kernel.signatures[0])
    assert "x float>" in llvm  # <4 x float>, <8 x float> or <16 x float>, whichever the CPU has
    loop_function = llvm.split("define")[1]
    calls = [line for line in loop_function.splitlines() if " call " in line and name in line]
    assert not calls, f"{name} was not inlined into the loop: {calls}"


@pytest.mark.parametrize("loss", ["log_cosh_loss", "pseudo_huber_loss"])
def test_losses_on_expm1_and_hypot_at_float32_extremes(loss):
    """The kernels that call ``expm1_32`` / ``hypot32``, at residuals up to 3e38 (beyond float16, which the shared
    extremes stay within): loss and gradient as the float64 reference's, rounded to float32."""
    import lossk

    function = getattr(lossk, loss)
    x = np.float32([1e30, -1e30, 3e38, 1e4, -20.0, 2.0, -1.9999999, 0.0, 1e-30, -2.5e-4, 0.7])
    y = np.zeros_like(x)
    value, grad = function.value_and_grad(x, y, reduction="sum", backend="numba")
    expected_value = function(x.astype(np.float64), y.astype(np.float64), reduction="none", backend="array_api")
    expected_grad = function.grad(x.astype(np.float64), y.astype(np.float64), reduction="sum", backend="array_api")
    got = function(x, y, reduction="none", backend="numba")
    assert np.isfinite(got).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(got, expected_value, rtol=1e-6, atol=1e-37)  # a few float32 ULP
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-37)
    np.testing.assert_allclose(value, np.sum(expected_value), rtol=1e-6)
