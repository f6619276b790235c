"""Checks run once at the public entry of every loss; implementations trust what passes them.

Every error names the offending argument and what was expected.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from ._array_api import Array, is_array_api_obj, is_cpu_eager, is_writeable_array, library_name

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str, choices: tuple[str, ...] = REDUCTIONS) -> None:
    if reduction not in choices:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, choices))}; got {reduction!r}")


def check_floating(name: str, x: Array, xp: ModuleType) -> None:
    """``x`` must have a real floating dtype (float16, bfloat16, float32 or float64)."""
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype, got {x.dtype}")


def check_integer(name: str, x: Array, xp: ModuleType) -> None:
    if not xp.isdtype(x.dtype, "integral"):
        raise TypeError(f"{name} must hold integer class indices, got dtype {x.dtype}")


def check_same_shape(name: str, x: Array, reference_name: str, reference: Array) -> None:
    if tuple(x.shape) != tuple(reference.shape):
        raise ValueError(
            f"{name} must have the shape of {reference_name} {tuple(reference.shape)}, got {tuple(x.shape)}"
        )


def check_shape(name: str, x: Array, expected: tuple[int, ...], what: str) -> None:
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)} ({what}), got {tuple(x.shape)}")


def check_nonnegative(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_unit_interval(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def check_values_in_unit_interval(name: str, x: Array, xp: ModuleType) -> None:
    """Like PyTorch's BCE: every value in [0, 1] (NaN fails too). Host-readable arrays only."""
    if is_cpu_eager(x) and x.size and not bool(xp.all((x >= 0) & (x <= 1))):
        raise ValueError(f"all elements of {name} must be probabilities in [0, 1]")


def check_class_indices(name: str, target: Array, n_classes: int, ignore_index: int, xp: ModuleType) -> None:
    """Every index in [0, n_classes) or equal to ``ignore_index``. Host-readable arrays only.

    On a GPU the check would cost a device synchronisation and on Dask a computation, so it is skipped
    there: an out-of-range index then contributes a zero one-hot row (documented in the README).
    """
    if not is_cpu_eager(target) or target.size == 0:
        return
    valid = ((target >= 0) & (target < n_classes)) | (target == ignore_index)
    if not bool(xp.all(valid)):
        bad = xp.where(valid, xp.zeros_like(target), target)
        low, high = int(xp.min(bad)), int(xp.max(bad))
        offender = low if low != 0 else high
        raise ValueError(
            f"{name} holds class index {offender}, outside [0, {n_classes}) "
            f"and not ignore_index={ignore_index}"
        )


def check_array(name: str, x: Any) -> None:
    if not is_array_api_obj(x):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")


def check_grad_output(grad_output: Any, reduction: str, loss_shape: tuple[int, ...], input: Array) -> Any:
    """The upstream gradient: a scalar for mean/sum, an array of the unreduced loss's shape for 'none'.

    Returns it as a Python float or an array; ``None`` stays ``None`` (meaning ones).
    """
    if grad_output is None:
        return None
    if reduction == "none":
        check_array("grad_output", grad_output)
        if library_name(grad_output) != library_name(input):
            raise TypeError(
                f"grad_output must come from the input's library ({library_name(input)}), "
                f"got a {library_name(grad_output)} array"
            )
        check_shape("grad_output", grad_output, loss_shape, "the shape of the unreduced loss")
        return grad_output
    if isinstance(grad_output, (int, float)) and not isinstance(grad_output, bool):
        return float(grad_output)
    if is_array_api_obj(grad_output) and tuple(grad_output.shape) == ():
        return grad_output
    raise TypeError(f"grad_output must be a scalar (a number or a 0-d array) for reduction={reduction!r}")


def inplace_out(out: Array | None, input: Array, name: str = "input") -> Array:
    """The ``out`` of ``inplace=True``: ``input`` itself (the argument ``name``), which must be writeable and
    not come with an ``out=`` of its own."""
    if out is not None:
        raise ValueError("pass either out= or inplace=True, not both")
    if not is_writeable_array(input):
        raise ValueError(f"inplace=True writes the gradient into {name}, but it is a read-only "
                         f"{library_name(input)} array (JAX arrays are immutable): call without inplace")
    return input


def check_out(out: Array, input: Array, name: str = "out") -> None:
    """``out`` (the argument ``name``) receives a derivative: the input's library, shape and dtype."""
    check_array(name, out)
    if library_name(out) != library_name(input):
        raise TypeError(f"{name} must come from the input's library ({library_name(input)}), got {library_name(out)}")
    if not is_writeable_array(out):
        raise ValueError(f"{name} must be a writeable array (it receives a derivative), got a read-only "
                         f"{library_name(out)} array (JAX arrays are immutable: call without {name}=)")
    check_same_shape(name, out, "input", input)
    if out.dtype != input.dtype:
        raise TypeError(f"{name} must have the input's dtype {input.dtype}, got {out.dtype}")
