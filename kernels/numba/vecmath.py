"""float32 exp, expm1, log, log1p, tanh and hypot that LLVM vectorises: range reduction plus a polynomial, no libm calls.

NumPy-free loops calling ``math.exp`` compile to one scalar libm call per element (Numba has no SVML
here), which is slower than NumPy. These functions are branch-free straight-line float32 code: every
``a if c else b`` lowers to an LLVM ``select``, the exponent is read and written through bit casts, so
a loop that calls them vectorises (8-wide with AVX2, 16-wide with AVX-512). Callers use
``error_model="numpy"`` so that a float division carries no zero check.

Accuracy (checked in ``tests/test_numba_vecmath.py`` against float64 NumPy over the whole float32 range):
all within 2 ULP of the correctly rounded result (worst seen, sampling every 4099th bit pattern:
exp32 1.00, expm1_32 0.99, log32 0.78, log1p32 1.44, tanh32 1.30 ULP; log1p_unit32 on [0, 1] and log1p_bounded32 on
[0, 4.65] 1.42; hypot32 0.50 on random pairs: correctly rounded but for double rounding). Special values follow C99:
``exp32`` overflows to inf above 88.72 and underflows through the subnormals to 0 below -103.97; ``expm1_32`` is -1
below -17.33 and keeps the sign of 0; ``log32(0) = -inf``, ``log32(x < 0) = nan``, ``log32(inf) = inf``; ``hypot32``
is inf when either argument is ±inf, even with a NaN; NaN in, NaN out.

Floating-point flags: each function is compiled with ``fastmath=SAFE_FASTMATH`` (``contract``: FMA
allowed; no ``reassoc``, which would fold the Cody-Waite ``(x - n c1) - n c2`` and log1p's
``(u - 1) - x`` correction, no ``nnan``/``ninf``, which would delete the special-value selects).
They are *not* inlined at the Numba-IR level (which would give them the caller's flags): LLVM inlines
them, keeping their own flags, so a caller may use ``fastmath={"reassoc", ...}`` (even ``True``) for its
reductions. ``tanh32`` is the exception, too big for LLVM's inliner: it is inlined by Numba, its own few
operations taking the caller's flags (its special values were checked under ``fastmath=True`` too).
float64 callers should use ``math.exp`` / ``math.log`` / ``math.log1p`` ... (accuracy first).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

SAFE_FASTMATH = {"contract"}
"""Flags under which the Cody-Waite reductions and special-value selects stay exact."""

_f32 = np.float32


@intrinsic
def float32_bits(typingctx, x):
    """The IEEE-754 bit pattern of a float32, as an int32 (an LLVM bitcast: free, vectorisable)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def float32_from_bits(typingctx, bits):
    """The float32 whose IEEE-754 bit pattern is the int32 ``bits``."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _split_normal_float32(typingctx, x):
    """``(e, m)`` with ``x = m 2^e``, ``m`` in [0.5, 1), for a positive normal float32 (32-bit integer ops only).

    Numba promotes int32 arithmetic to int64, which would halve the vector width; this does it in LLVM.
    """
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        biased = builder.and_(builder.lshr(bits, ir.Constant(i32, 23)), ir.Constant(i32, 0xFF))
        exponent = builder.sitofp(builder.sub(biased, ir.Constant(i32, 126)), ir.FloatType())
        mantissa_bits = builder.or_(builder.and_(bits, ir.Constant(i32, 0x807FFFFF)), ir.Constant(i32, 0x3F000000))
        mantissa = builder.bitcast(mantissa_bits, ir.FloatType())
        return context.make_tuple(builder, signature.return_type, (exponent, mantissa))

    return types.UniTuple(types.float32, 2)(types.float32), codegen


# exp: x = n ln2 + r, |r| <= ln2 / 2, e^r by Cephes' degree-6 minimax polynomial, times 2^n in two halves
# (so that 2^n for n in [-150, 128] is built from two normal powers and subnormal results round once).
# n is rounded by adding 1.5 2^23 (then the float's last mantissa bits hold n, read as an integer: no
# float-int conversions); the multiply-add rounds once under ``contract``, a separate rounding would only move
# r a little past ln2 / 2, within the polynomial's range.
_LOG2E = _f32(1.44269504088896341)
_LN2_HI = _f32(0.693359375)  # 8 significant bits: n * _LN2_HI is exact
_LN2_LO = _f32(-2.12194440e-4)
_EXP_MAX = _f32(89.0)  # above log(FLT_MAX) = 88.72: e^x rounds to inf
_EXP_MIN = _f32(-104.0)  # below log(FLT_TRUE_MIN / 2) = -103.97: e^x rounds to 0
_EXP_P0 = _f32(1.9875691500e-4)
_EXP_P1 = _f32(1.3981999507e-3)
_EXP_P2 = _f32(8.3334519073e-3)
_EXP_P3 = _f32(4.1665795894e-2)
_EXP_P4 = _f32(1.6666665459e-1)
_EXP_P5 = _f32(5.0000001201e-1)
_ROUND_MAGIC = _f32(12582912.0)  # 1.5 2^23: v + this rounds v (|v| < 2^22) to an integer, held in the low bits
_ROUND_MAGIC_BITS = 0x4B400000
_HALF = _f32(0.5)
_ZERO = _f32(0.0)
_ONE = _f32(1.0)
_TWO = _f32(2.0)


@intrinsic
def _power_of_two(typingctx, rounded):
    """2^n for ``rounded = n + 1.5 2^23`` (``n`` in [-126, 127]): the exponent field built from its low bits."""
    if rounded != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        n = builder.sub(builder.bitcast(args[0], i32), ir.Constant(i32, _ROUND_MAGIC_BITS))
        return builder.bitcast(builder.shl(builder.add(n, ir.Constant(i32, 127)), ir.Constant(i32, 23)), ir.FloatType())

    return types.float32(types.float32), codegen


@intrinsic
def _times_power_of_two(typingctx, y, rounded):
    """``y`` 2^n for ``rounded = n + 1.5 2^23``, ``n`` in [-150, 128]: times 2^floor(n/2), then 2^(n - floor(n/2)),
    both normal (32-bit integer operations in LLVM: Numba would promote int32 arithmetic to int64)."""
    if y != types.float32 or rounded != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        n = builder.sub(builder.bitcast(args[1], i32), ir.Constant(i32, _ROUND_MAGIC_BITS))
        half = builder.ashr(n, ir.Constant(i32, 1))
        factors = []
        for part in (half, builder.sub(n, half)):
            biased = builder.add(part, ir.Constant(i32, 127))
            factors.append(builder.bitcast(builder.shl(biased, ir.Constant(i32, 23)), ir.FloatType()))
        return builder.fmul(builder.fmul(args[0], factors[0]), factors[1])

    return types.float32(types.float32, types.float32), codegen


@njit(fastmath=SAFE_FASTMATH, error_model="numpy", cache=True)
def exp32(x):
    """e^x for float32 ``x``, within 2 ULP; inf above 88.72, 0 below -103.97, NaN for NaN."""
    clamped = min(_EXP_MAX, x)  # NaN too: no garbage in the exponent bits below
    clamped = max(_EXP_MIN, clamped)
    rounded = clamped * _LOG2E + _ROUND_MAGIC
    n = rounded - _ROUND_MAGIC  # round(x / ln2)
    r = (clamped - n * _LN2_HI) - n * _LN2_LO
    p = _EXP_P0
    p = p * r + _EXP_P1
    p = p * r + _EXP_P2
    p = p * r + _EXP_P3
    p = p * r + _EXP_P4
    p = p * r + _EXP_P5
    y = p * (r * r) + r + _ONE
    y = _times_power_of_two(y, rounded)
    return y if x == x else x  # noqa: PLR0124 - the NaN test (x != x only for NaN)


# log: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = f - f^2/2 + f^3 P(f) with f = m - 1 (Cephes logf).
_SQRT_HALF = _f32(0.707106781186547524)
_FLT_MIN_NORMAL = _f32(1.17549435e-38)
_SUBNORMAL_SCALE = _f32(8388608.0)  # 2^23 brings a subnormal into the normal range
_SUBNORMAL_EXPONENT = _f32(23.0)
_LOG_P0 = _f32(7.0376836292e-2)
_LOG_P1 = _f32(-1.1514610310e-1)
_LOG_P2 = _f32(1.1676998740e-1)
_LOG_P3 = _f32(-1.2420140846e-1)
_LOG_P4 = _f32(1.4249322787e-1)
_LOG_P5 = _f32(-1.6668057665e-1)
_LOG_P6 = _f32(2.0000714765e-1)
_LOG_P7 = _f32(-2.4999993993e-1)
_LOG_P8 = _f32(3.3333331174e-1)
_INF = _f32(np.inf)
_NAN = _f32(np.nan)


@njit(fastmath=SAFE_FASTMATH, error_model="numpy", cache=True)
def log32(x):
    """Natural logarithm of float32 ``x``, within 2 ULP; -inf at 0, NaN below 0, inf at inf, NaN for NaN."""
    subnormal = x < _FLT_MIN_NORMAL
    scaled = x * _SUBNORMAL_SCALE if subnormal else x
    e, m = _split_normal_float32(scaled)
    e = e - _SUBNORMAL_EXPONENT if subnormal else e
    below = m < _SQRT_HALF
    e = e - _ONE if below else e
    f = (m + m - _ONE) if below else (m - _ONE)
    z = f * f
    p = _LOG_P0
    p = p * f + _LOG_P1
    p = p * f + _LOG_P2
    p = p * f + _LOG_P3
    p = p * f + _LOG_P4
    p = p * f + _LOG_P5
    p = p * f + _LOG_P6
    p = p * f + _LOG_P7
    p = p * f + _LOG_P8
    y = p * f * z + e * _LN2_LO - _HALF * z
    y = (f + y) + e * _LN2_HI
    y = y if x < _INF else x  # inf stays inf (its mantissa bits would read as 1.0)
    return y if x > 0 else (-_INF if x == 0 else _NAN)


@njit(fastmath=SAFE_FASTMATH, error_model="numpy", cache=True)
def log1p32(x):
    """log(1 + x) for float32 ``x``, within 2 ULP, accurate for tiny x; -inf at -1, NaN below -1.

    log(u) with u = fl(1 + x), corrected by the rounding error of u: log(1 + x) = log(u) - ((u - 1) - x) / u.
    """
    u = x + _ONE
    correction = ((u - _ONE) - x) / u
    y = log32(u) - (correction if u > _ZERO else _ZERO)  # u = 0: log32 gives -inf, the correction 0/0
    y = y if u < _INF else u  # x = inf (or so large that the correction is nan)
    return x if u == _ONE else y


_SQRT2_MINUS_ONE = _f32(0.414213562373095049)


@njit(fastmath=SAFE_FASTMATH, error_model="numpy", cache=True)
def _log1p_reduced(f):
    """log(1 + f) for ``f`` in log32's reduced range [sqrt(1/2) - 1, sqrt(2) - 1]: f - f^2/2 + f^3 P(f)."""
    z = f * f
    p = _LOG_P0
    p = p * f + _LOG_P1
    p = p * f + _LOG_P2
    p = p * f + _LOG_P3
    p = p * f + _LOG_P4
    p = p * f + _LOG_P5
    p = p * f + _LOG_P6
    p = p * f + _LOG_P7
    p = p * f + _LOG_P8
    y = p * f * z - _HALF * z
    return f + y


@njit(fastmath=SAFE_FASTMATH, error_model="numpy", cache=True)
def log1p_unit32(d):
    """log(1 + d) for float32 ``d`` in [0, 1] (softplus's log1p(e^-|x|)), within 2 ULP; no division.

    Below sqrt(2) - 1, 1 + d is already in log32's reduced range and f = d exactly; above, 1 + d = 2 (1 + f)
    with f = (d - 1) / 2. Either way log(1 + f) = f - f^2/2 + f^3 P(f), with log32's polynomial.
    NaN gives NaN; outside [0, 1] the result is unspecified.
    """
    upper = d >= _SQRT2_MINUS_ONE
    y = _log1p_reduced((d - _ONE) * _HALF if upper else d)
    return (y + _LN2_LO) + _LN2_HI if upper else y


_TWO_SQRT2_MINUS_ONE = _f32(1.82842712474619010)
_QUARTER = _f32(0.25)


@njit(fastmath=SAFE_FASTMATH, error_model="numpy", cache=True)
def log1p_bounded32(d):
    """log(1 + d) for float32 ``d`` in [0, 4.65] (log-cosh's log1p(cosh |x| - 1) below |x| = 2), within 2 ULP; no
    division.

    :func:`log1p_unit32`'s reduction with one more step: 1 + d = 2^k (1 + f), k = 0, 1, 2 as 1 + d passes sqrt(2)
    and 2 sqrt(2), f = (d - (2^k - 1)) 2^-k in [sqrt(1/2) - 1, sqrt(2) - 1] (exact from d = 0.5 on, Sterbenz),
    then log32's polynomial. NaN gives NaN; outside [0, 4.65] the result is unspecified.
    """
    upper = d >= _SQRT2_MINUS_ONE
    top = d >= _TWO_SQRT2_MINUS_ONE
    scale = _QUARTER if top else (_HALF if upper else _ONE)  # 2^-k
    y = _log1p_reduced(d * scale - (_ONE - scale))
    k = _TWO if top else _ONE
    return (y + k * _LN2_LO) + k * _LN2_HI if upper else y  # k = 0 returns y itself: log1p(-0) = -0


# tanh(x) = sign(x) (1 - 2 / (e^{2|x|} + 1)) away from 0; an odd polynomial (Cephes tanhf) below 0.625.
_TANH_SMALL = _f32(0.625)
_TANH_SATURATE = _f32(9.0)  # tanh(9) rounds to 1 in float32
_TANH_P0 = _f32(-5.70498872745e-3)
_TANH_P1 = _f32(2.06390887954e-2)
_TANH_P2 = _f32(-5.37397155531e-2)
_TANH_P3 = _f32(1.33314422036e-1)
_TANH_P4 = _f32(-3.33332819422e-1)


@njit(fastmath=SAFE_FASTMATH, error_model="numpy", cache=True, inline="always")  # too big for LLVM to inline
def tanh32(x):
    """tanh of float32 ``x``, within 2 ULP; ±1 beyond ±9, NaN for NaN."""
    a = abs(x)
    big = _ONE - _TWO / (exp32(_TWO * (min(a, _TANH_SATURATE))) + _ONE)
    big = big if x >= 0 else -big
    z = x * x
    p = _TANH_P0
    p = p * z + _TANH_P1
    p = p * z + _TANH_P2
    p = p * z + _TANH_P3
    p = p * z + _TANH_P4
    small = p * z * x + x
    small = small if a != _ZERO else x  # tanh(-0) = -0
    return small if a < _TANH_SMALL else big


# expm1: x = n ln2 + r, e^x - 1 = 2^n expm1(r) + (2^n - 1) (one fused multiply-add, no cancellation: for n >= 1,
# expm1(r) >= 0 or 2^n - 1 >= 3 dominates; for n <= -1 both terms are negative or 2^n - 1 <= -0.75 dominates).
# n = 0 on |x| < ln2 (not only on |x| < ln2 / 2), so that the cancelling cases n = ±1 with r of the other sign
# never occur: expm1(r) = r + r^2 q(r) on [-ln2, ln2], q a degree-6 fit of relative error below 2^-27.
_LN2 = _f32(0.693147180559945309)
_EXPM1_MAX = _f32(89.0)  # above log(FLT_MAX): inf
_EXPM1_MIN = _f32(-18.0)  # below log(2^-25) = -17.33: e^x - 1 rounds to -1
_EXPM1_BIG_N = _f32(100.0)  # from here on 2^n is applied in two factors (2^128 is not a float32)
_EXPM1_EXACT_N = _f32(24.0)  # 2^n - 1 is a float32 up to here
_EXPM1_TINY_N = _f32(60.0)
_TWICE_ROUND_MAGIC = _f32(25165824.0)  # minus n + 1.5 2^23: -n + 1.5 2^23, for _power_of_two
_EXPM1_Q0 = _f32(0.5)
_EXPM1_Q1 = _f32(0.16666671633720398)
_EXPM1_Q2 = _f32(0.04166661947965622)
_EXPM1_Q3 = _f32(0.008332628756761551)
_EXPM1_Q4 = _f32(0.0013890427071601152)
_EXPM1_Q5 = _f32(0.00020095774380024523)
_EXPM1_Q6 = _f32(2.4781144020380452e-05)


@njit(fastmath=SAFE_FASTMATH, error_model="numpy", cache=True)
def expm1_32(x):
    """e^x - 1 for float32 ``x``, within 2 ULP, accurate near 0; inf above 88.72, -1 below -17.33, NaN for NaN."""
    clamped = min(_EXPM1_MAX, x)  # NaN too: no garbage in the exponent bits below
    clamped = max(_EXPM1_MIN, clamped)
    rounded = clamped * _LOG2E + _ROUND_MAGIC if abs(clamped) >= _LN2 else _ROUND_MAGIC
    n = rounded - _ROUND_MAGIC  # round(x / ln2), or 0
    r = (clamped - n * _LN2_HI) - n * _LN2_LO
    q = _EXPM1_Q6
    q = q * r + _EXPM1_Q5
    q = q * r + _EXPM1_Q4
    q = q * r + _EXPM1_Q3
    q = q * r + _EXPM1_Q2
    q = q * r + _EXPM1_Q1
    q = q * r + _EXPM1_Q0
    p = q * (r * r) + r  # expm1(r)
    big = n >= _EXPM1_BIG_N
    t = _power_of_two(rounded - _ONE if big else rounded)
    # 2^n - 1 is exact up to n = 24; beyond, the -1 goes into p as -2^-n (2^-60 stands for smaller ones)
    inexact = n > _EXPM1_EXACT_N
    p = p - _power_of_two(_TWICE_ROUND_MAGIC - min(rounded, _ROUND_MAGIC + _EXPM1_TINY_N)) if inexact else p
    y = p * t + (t if inexact else t - _ONE)
    y = y * _TWO if big else y
    y = y if x != _ZERO else x  # expm1(-0) = -0 (p * 1 + 0 would give +0)
    return y if x == x else x  # noqa: PLR0124 - the NaN test


# hypot: in float64, where the squares of float32 numbers are exact and never overflow or underflow (float32's
# largest squared is 1.2e77, its smallest subnormal squared 2e-90); the sum and the sqrt round once each, then the
# conversion to float32: correctly rounded but for the rare double rounding (checked within 0.501 ULP).
_F64_INF = np.float64(np.inf)


@njit(fastmath=SAFE_FASTMATH, error_model="numpy", cache=True)
def hypot32(a, b):
    """sqrt(a^2 + b^2) for float32 ``a``, ``b``, correctly rounded but for double rounding; no overflow of the squares.

    C99's special values: inf if either is ±inf (even with a NaN), else NaN if either is NaN.
    """
    x = np.float64(a)
    y = np.float64(b)
    h = _f32(math.sqrt(x * x + y * y))
    return _INF if (abs(x) == _F64_INF or abs(y) == _F64_INF) else h
