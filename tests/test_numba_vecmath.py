"""The vectorisable float32 exp/log/log1p/tanh of ``lossk._kernels.numba.vecmath`` against float64 NumPy."""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from lossk._kernels.numba import vecmath

MAX_ULP = {"exp32": 2.0, "log32": 2.0, "log1p32": 2.0, "tanh32": 2.0, "log1p_unit32": 2.0}
"""Largest error allowed, in units in the last place of the correctly rounded float32 result."""

REFERENCE = {"exp32": np.exp, "log32": np.log, "log1p32": np.log1p, "tanh32": np.tanh, "log1p_unit32": np.log1p}
DOMAIN = {"log1p_unit32": (0.0, 1.0)}
"""Functions defined on part of the line only: checked there."""

SPECIAL = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-45, -1e-45, 1e-38, 3.4e38, -3.4e38, 88.72283, 88.7229,
     -87.3, -103.97, -104.0, -200.0, 200.0, -1 + 2**-24, 2**-30, -(2**-30), 0.625, 9.0, 20.0],
    dtype=np.float32,
)


def _kernel(function, fastmath):
    """A loop applying ``function`` elementwise: the way kernels call it (inlined by LLVM, vectorised)."""

    @numba.njit(fastmath=fastmath, error_model="numpy")
    def apply(x, out):
        for i in range(x.size):
            out[i] = function(x[i])

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


@pytest.mark.parametrize("name", sorted(MAX_ULP))
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


@pytest.mark.parametrize("name", sorted(MAX_ULP))
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
@pytest.mark.parametrize("name", sorted(MAX_ULP))
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


def test_log_edges():
    got = _apply("log32", np.float32([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan]))
    assert got[0] == got[1] == -np.inf and np.isnan(got[2:4]).all() and got[4] == np.inf and np.isnan(got[5])
    got = _apply("log1p32", np.float32([-1.0, -1.5, np.inf, 1e-30]))
    assert got[0] == -np.inf and np.isnan(got[1]) and got[2] == np.inf and got[3] == np.float32(1e-30)


@pytest.mark.parametrize("name", sorted(MAX_ULP))
def test_the_calling_loop_vectorises(name):
    """A loop over these functions compiles to SIMD float vectors with no calls left in it."""
    kernel = _kernel(getattr(vecmath, name), {"contract"})
    x = np.ones(64, np.float32)
    kernel(x, np.empty_like(x))
    llvm = kernel.inspect_llvm(kernel.signatures[0])
    assert "x float>" in llvm  # <4 x float>, <8 x float> or <16 x float>, whichever the CPU has
    loop_function = llvm.split("define")[1]
    calls = [line for line in loop_function.splitlines() if " call " in line and name in line]
    assert not calls, f"{name} was not inlined into the loop: {calls}"
