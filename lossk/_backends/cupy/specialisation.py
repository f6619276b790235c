"""Which compiled variant of a CUDA source a call needs: dtype codes and ``-D`` macros, as hashable data.

Pure Python (no CuPy): the same :class:`Specialisation` gives the NVRTC options at run time and the nvcc
flags of the compile test (``tests/test_cuda_compile.py``), so every variant the host can ask for is one
the test can build. The macros are documented at the top of each ``kernels/cuda/*.cu`` file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

DTYPE_CODES = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3}
"""LOSSK_INPUT / LOSSK_TARGET codes (common.cuh)."""

INDEX_CODES = {"int64": 0, "int32": 1, "int16": 2, "int8": 3, "uint8": 4}
"""LOSSK_INDEX codes (class_targets.cuh)."""

ELEMENTWISE_LOSSES = {
    "mse_loss": 0,
    "l1_loss": 1,
    "huber_loss": 2,
    "smooth_l1_loss": 3,
    "binary_cross_entropy": 4,
    "binary_cross_entropy_with_logits": 5,
    "kl_div": 6,
}
"""LOSSK_LOSS codes (elementwise.cu)."""


class OptionLayout(IntEnum):
    """How a per-element option array (weight, pos_weight) is laid out (LOSSK_WEIGHT / LOSSK_POS_WEIGHT)."""

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
    defines: tuple[tuple[str, int], ...]

    def options(self) -> tuple[str, ...]:
        """The ``-D`` flags, as NVRTC and nvcc both take them."""
        return tuple(f"-D{name}={value}" for name, value in self.defines)


def elementwise(
    loss: str,
    input_dtype: Any,
    target_dtype: Any,
    *,
    weight: OptionLayout,
    pos_weight: OptionLayout,
    log_target: bool,
    compute_grad: bool,
    reduce: bool,
    grad_output_array: bool,
) -> Specialisation:
    """The variant of ``elementwise.cu`` for ``loss``; options a loss does not have must be NONE / False."""
    return Specialisation(
        "elementwise.cu",
        (
            ("LOSSK_LOSS", ELEMENTWISE_LOSSES[loss]),
            ("LOSSK_INPUT", float_code(input_dtype)),
            ("LOSSK_TARGET", float_code(target_dtype)),
            ("LOSSK_WEIGHT", int(weight)),
            ("LOSSK_POS_WEIGHT", int(pos_weight)),
            ("LOSSK_LOG_TARGET", int(log_target)),
            ("LOSSK_GRAD", int(compute_grad)),
            ("LOSSK_REDUCE", int(reduce)),
            ("LOSSK_GRAD_OUTPUT", int(compute_grad and grad_output_array)),
        ),
    )


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
