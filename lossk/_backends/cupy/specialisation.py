"""Which compiled variant of a CUDA source a call needs: dtype codes and ``-D`` macros, as hashable data.

Pure Python (no CuPy): the same :class:`Specialisation` gives the NVRTC options at run time and the nvcc
flags of the compile test (``tests/test_cuda_compile.py``), so every variant the host can ask for is one
the test can build. The macros are documented at the top of each ``kernels/cuda/*.cu`` file.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from ..._spec import ARRAY_KIND, FLAG_KIND, SCALAR_KIND, ElementwiseLoss
from .arguments import ELEMENTWISE_ARRAY_SLOTS, ELEMENTWISE_SCALAR_SLOTS

DTYPE_CODES = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3}
"""LOSSK_INPUT / LOSSK_TARGET codes (common.cuh)."""

INDEX_CODES = {"int64": 0, "int32": 1, "int16": 2, "int8": 3, "uint8": 4}
"""LOSSK_INDEX codes (class_targets.cuh)."""

SCALAR_SLOTS = ELEMENTWISE_SCALAR_SLOTS
"""Scalar options a loss may have: the kernel's arguments scalar0 .. scalar3 (elementwise.cu)."""

ARRAY_SLOTS = ELEMENTWISE_ARRAY_SLOTS
"""Array options (other than ``weight``) a loss may have: option0 and option1 (elementwise.cu)."""


class OptionLayout(IntEnum):
    """How a per-element option array (weight, pos_weight) is laid out (LOSSK_WEIGHT / LOSSK_OPTION<k>)."""

    NONE = 0
    FULL = 1
    """Shaped like the input, contiguous: read with vector loads."""
    PERIODIC = 2
    """A broadcast view: element i is base[i % period]."""


class CrossEntropyLayout(IntEnum):
    """LOSSK_LAYOUT of cross_entropy.cu."""

    ROWS_STREAMED = 0
    ROWS_SHARED = 1
    THREAD_PER_ROW = 2


def dtype_name(dtype: Any) -> str:
    """'float32', 'bfloat16', 'int64', ... for a NumPy, ml_dtypes, CuPy or PyTorch dtype (or scalar type)."""
    if isinstance(dtype, str):
        return dtype
    name = str(dtype)
    if name.startswith("torch."):
        return name.removeprefix("torch.")
    return np.dtype(dtype).name


def accumulator_name(dtype: Any) -> str:
    """The arithmetic dtype of the kernels for elements of ``dtype``: float64 for float64, else float32."""
    return "float64" if dtype_name(dtype) == "float64" else "float32"


def float_code(dtype: Any) -> int:
    name = dtype_name(dtype)
    if name not in DTYPE_CODES:
        raise TypeError(f"the CUDA kernels take float16, bfloat16, float32 and float64 arrays, got {name}")
    return DTYPE_CODES[name]


def index_code(dtype: Any) -> int:
    name = dtype_name(dtype)
    if name not in INDEX_CODES:
        raise TypeError(f"the CUDA kernels take class indices of type {', '.join(INDEX_CODES)}, got {name}")
    return INDEX_CODES[name]


@dataclass(frozen=True)
class Specialisation:
    """A source file of ``lossk._kernels.cuda`` and the macro values it is compiled with."""

    source: str
    defines: tuple[tuple[str, int | str], ...]

    def options(self) -> tuple[str, ...]:
        """The ``-D`` flags, as NVRTC and nvcc both take them."""
        return tuple(f"-D{name}={value}" for name, value in self.defines)


def element_options(spec: ElementwiseLoss) -> tuple[tuple[str, int], ...]:
    """``(kind, slot)`` of each option the loss's device function takes, in the spec's order: the k-th
    scalar option is kernel argument ``scalar<k>``, the k-th array option ``option<k>``; flags have no slot."""
    counts = {SCALAR_KIND: 0, ARRAY_KIND: 0, FLAG_KIND: 0}
    slots = []
    for option in spec.formula_options:
        slots.append((option.kind, counts[option.kind]))
        counts[option.kind] += 1
    if counts[SCALAR_KIND] > SCALAR_SLOTS or counts[ARRAY_KIND] > ARRAY_SLOTS:
        raise NotImplementedError(
            f"{spec.name}: the CUDA template takes at most {SCALAR_SLOTS} scalar and {ARRAY_SLOTS} array options"
        )
    return tuple(slots)


_DEVICE_FUNCTION = re.compile(r"__device__\s+__forceinline__\s+void\s+(\w+)\s*\(")


@functools.cache
def device_functions() -> frozenset[str]:
    """The names of the device functions defined in ``pointwise.cuh`` and ``multi_input.cuh`` (what
    ``LOSSK_ELEMENT`` may name)."""
    from .sources import read_text

    return frozenset(_DEVICE_FUNCTION.findall(read_text("pointwise.cuh") + read_text("multi_input.cuh")))


def _literal(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"a CUDA constant must be finite, got {value}")
    return f"((ACC){float(value)!r})"


def constant_defines(specs: Mapping[str, ElementwiseLoss]) -> tuple[tuple[str, str], ...]:
    """``LOSSK_<NAME>`` = the value cast to ACC, for every constant of every spec (pointwise.cuh reads them).

    Two specs may share a constant's name only with the same value.
    """
    values: dict[str, tuple[float, str]] = {}
    for spec in specs.values():
        for name, value in spec.constants.items():
            if name in values and values[name][0] != float(value):
                raise ValueError(f"constant {name} is {values[name][0]!r} in {values[name][1]} but {value!r} in {spec.name}")
            values.setdefault(name, (float(value), spec.name))
    return tuple((f"LOSSK_{name}", _literal(value)) for name, (value, _) in sorted(values.items()))


def elementwise(
    spec: ElementwiseLoss,
    input_dtype: Any,
    target_dtype: Any,
    *,
    weight: OptionLayout,
    options: tuple[OptionLayout, ...] = (),
    flags: Mapping[str, bool] | None = None,
    compute_grad: bool,
    compute_hess: bool = False,
    surrogate: bool = False,
    reduce: bool,
    grad_output_array: bool,
) -> Specialisation:
    """The variant of ``elementwise.cu`` for the loss ``spec``.

    ``options`` are the layouts of the spec's array options in order (missing ones: NONE), ``flags`` the
    values of its flags (missing ones: their defaults); both are compile-time, scalar options are not.
    ``surrogate`` (with ``compute_hess``): the second derivative is the surrogate, raised to the spec's
    ``hessian_floor`` (the device function :func:`hessian_floor_function`) in the same pass.
    """
    layouts = tuple(options) + (OptionLayout.NONE,) * (ARRAY_SLOTS - len(options))
    return Specialisation(
        "elementwise.cu",
        (
            *_element_defines(spec, layouts, flags),
            ("LOSSK_INPUT", float_code(input_dtype)),
            ("LOSSK_TARGET", float_code(target_dtype)),
            ("LOSSK_WEIGHT", int(weight)),
            *((f"LOSSK_OPTION{k}", int(layout)) for k, layout in enumerate(layouts)),
            *_pass_defines(compute_grad, compute_hess, reduce, grad_output_array),
            *_surrogate_defines(spec, surrogate and compute_hess),
        ),
    )


def hessian_floor_function(spec: ElementwiseLoss) -> str | None:
    """The device function of ``pointwise.cuh`` computing the spec's surrogate Hessian floor
    (``hessian_floor_element``): ``<cuda_function without _element>_hessian_floor``; ``None`` without a floor (0)."""
    if spec.hessian_floor_element is None:
        return None
    return f"{spec.cuda_function.removesuffix('_element')}_hessian_floor"


def _surrogate_defines(spec: ElementwiseLoss, surrogate: bool) -> tuple[tuple[str, int | str], ...]:
    """``LOSSK_SURROGATE`` and, for a loss with a floor, ``LOSSK_HESSIAN_FLOOR`` (elementwise.cu)."""
    floor = hessian_floor_function(spec) if surrogate else None
    return (("LOSSK_SURROGATE", int(surrogate)), *((("LOSSK_HESSIAN_FLOOR", floor),) if floor else ()))


def _element_defines(
    spec: ElementwiseLoss, layouts: tuple[OptionLayout, ...], flags: Mapping[str, bool] | None,
) -> tuple[tuple[str, str], ...]:
    """``LOSSK_ELEMENT`` and ``LOSSK_ELEMENT_OPTIONS``: the device function and its option arguments."""
    flags = flags or {}
    arguments = []
    for option, (kind, slot) in zip(spec.formula_options, element_options(spec)):
        if kind == SCALAR_KIND:
            arguments.append(f"(LOSSK_SCALAR({slot}))")
        elif kind == FLAG_KIND:
            arguments.append("(true)" if flags.get(option.name, option.default) else "(false)")
        elif layouts[slot] == OptionLayout.NONE:
            arguments.append(_literal(option.neutral))
        else:
            arguments.append(f"(LOSSK_OPTION({slot}))")
    return (
        ("LOSSK_ELEMENT", spec.cuda_function),
        # no commas or spaces in a -D value (nvcc splits its options at commas): LOSSK_COMMA separates
        ("LOSSK_ELEMENT_OPTIONS", "".join(a + "LOSSK_COMMA" for a in arguments)),
    )


def multi_input(
    spec: ElementwiseLoss,
    input_dtype: Any,
    other_dtype: Any,
    *,
    flags: Mapping[str, bool] | None = None,
    compute_grad: bool,
    compute_hess: bool = False,
    reduce: bool,
    grad_output_array: bool,
) -> Specialisation:
    """The variant of ``multi_input.cu`` for the loss ``spec`` (three inputs, two differentiable, no array
    options): ``other_dtype`` is the dtype of its second and third inputs, ``flags`` the values of its flags
    (missing ones: their defaults)."""
    if len(spec.inputs) != 3 or len(spec.differentiable) != 2 or any(o.kind == ARRAY_KIND for o in spec.formula_options):
        raise NotImplementedError(f"{spec.name}: multi_input.cu takes three inputs, two differentiable, no array options")
    return Specialisation(
        "multi_input.cu",
        (
            *_element_defines(spec, (), flags),
            ("LOSSK_INPUT", float_code(input_dtype)),
            ("LOSSK_TARGET", float_code(other_dtype)),
            *_pass_defines(compute_grad, compute_hess, reduce, grad_output_array),
        ),
    )


def _pass_defines(compute_grad: bool, compute_hess: bool, reduce: bool, grad_output_array: bool) -> tuple[tuple[str, int | str], ...]:
    """What one pass of the elementwise templates writes and reads, and every spec constant."""
    return (
        ("LOSSK_GRAD", int(compute_grad)),
        ("LOSSK_HESS", int(compute_hess)),
        ("LOSSK_REDUCE", int(reduce)),
        # no derivative, no upstream array: one variant, not two
        ("LOSSK_GRAD_OUTPUT", int((compute_grad or compute_hess) and grad_output_array)),
        *_spec_constants(),
    )


@functools.cache
def _spec_constants() -> tuple[tuple[str, str], ...]:
    from ..._losses import ELEMENTWISE_LOSSES
    from ..._losses.multi_input import LOSSES

    return constant_defines({**ELEMENTWISE_LOSSES, **{spec.name: spec for spec in LOSSES}})


def weight_sums(accumulator: Any) -> Specialisation:
    """A fixed variant of ``elementwise.cu`` whose ``lossk_sum_partials`` / ``lossk_finish_acc`` sum weights."""
    from ..._losses import ELEMENTWISE_LOSSES

    return elementwise(ELEMENTWISE_LOSSES["mse_loss"], accumulator, accumulator, weight=OptionLayout.NONE,
                       compute_grad=False, reduce=True, grad_output_array=False)


def cross_entropy(
    input_dtype: Any,
    target_dtype: Any,
    *,
    probability_target: bool,
    weight: bool,
    smoothing: bool,
    softcap: bool,
    z_loss: bool,
    return_z: bool,
    compute_grad: bool,
    reduce: bool,
    grad_output_array: bool,
    layout: CrossEntropyLayout,
    cluster: int,
    threads: int,
) -> Specialisation:
    """The variant of ``cross_entropy.cu``; ``target_dtype`` is the index type or the probabilities' dtype."""
    target = (
        ("LOSSK_TARGET_KIND", 1), ("LOSSK_TARGET", float_code(target_dtype))
    ) if probability_target else (("LOSSK_TARGET_KIND", 0), ("LOSSK_INDEX", index_code(target_dtype)))
    return Specialisation(
        "cross_entropy.cu",
        (
            ("LOSSK_INPUT", float_code(input_dtype)),
            *target,
            ("LOSSK_WEIGHT", int(weight)),
            ("LOSSK_SMOOTHING", int(smoothing)),
            ("LOSSK_SOFTCAP", int(softcap)),
            ("LOSSK_Z_LOSS", int(z_loss or return_z)),
            ("LOSSK_RETURN_Z", int(return_z)),
            ("LOSSK_GRAD", int(compute_grad)),
            ("LOSSK_REDUCE", int(reduce)),
            ("LOSSK_GRAD_OUTPUT", int(compute_grad and grad_output_array)),
            ("LOSSK_LAYOUT", int(layout)),
            ("LOSSK_CLUSTER", cluster),
            ("LOSSK_THREADS", threads),
        ),
    )


def nll_loss(input_dtype: Any, index_dtype: Any, *, weight: bool, reduce: bool, grad_output_array: bool) -> Specialisation:
    """The variant of ``nll_loss.cu``."""
    return Specialisation(
        "nll_loss.cu",
        (
            ("LOSSK_INPUT", float_code(input_dtype)),
            ("LOSSK_INDEX", index_code(index_dtype)),
            ("LOSSK_WEIGHT", int(weight)),
            ("LOSSK_REDUCE", int(reduce)),
            ("LOSSK_GRAD_OUTPUT", int(grad_output_array)),
        ),
    )


def class_divisors(index_dtype: Any, accumulate_dtype: Any, *, weight: bool) -> Specialisation:
    """A small module holding the ``lossk_class_divisor_*`` kernels (class_targets.cuh) a mean needs first.

    Those kernels depend only on the index type, the accumulator and whether there are class weights, so
    they come from one fixed variant of ``nll_loss.cu`` (which includes them) rather than from every
    cross-entropy variant.
    """
    return Specialisation(
        "nll_loss.cu",
        (
            ("LOSSK_INPUT", float_code(accumulate_dtype)),
            ("LOSSK_INDEX", index_code(index_dtype)),
            ("LOSSK_WEIGHT", int(weight)),
            ("LOSSK_REDUCE", 1),
            ("LOSSK_GRAD_OUTPUT", 0),
        ),
    )
