"""Kernel argument tuples, in the order and C types of each ``extern "C"`` kernel's parameters (pure Python).

CuPy passes NumPy scalars by value with their own size, so every argument is typed here: device pointers
as ``uint64`` (0 is a null pointer), ``index_t`` (``long long``) as ``int64``, ``int`` as ``int32`` and the
kernels' arithmetic type ACC as ``float32`` or ``float64``. ``tests/test_cuda_host.py`` checks each tuple
against the parameter list parsed from the CUDA source, so a signature change that is not mirrored here
fails without a GPU.
"""

from __future__ import annotations

import numpy as np

ACCUMULATORS = {"float32": np.float32, "float64": np.float64}

ELEMENTWISE_SCALAR_SLOTS = 4
ELEMENTWISE_ARRAY_SLOTS = 2
"""The scalar (scalar0 ..) and array (option0 ..) option slots of ``lossk_elementwise``."""


def _pointer(address: int) -> np.uint64:
    return np.uint64(address)


def _index(value: int) -> np.int64:
    return np.int64(value)


def _flag(value: bool | int) -> np.int32:
    return np.int32(value)


def _acc(value: float, accumulator: str) -> np.floating:
    return ACCUMULATORS[accumulator](value)


def elementwise(
    *, input: int, target: int, weight: int, weight_period: int, options: tuple[tuple[int, int], ...],
    grad_output: int, grad: int, hess: int, loss_out: int, partials: int, n: int, vectorised: bool,
    scalars: tuple[float, ...], grad_scale: float, upstream: int, divisor: int, accumulator: str,
) -> tuple:
    """``lossk_elementwise`` (elementwise.cu); ``options`` are (pointer, period) of the array options and
    ``scalars`` the scalar options, in the spec's order (unused slots: null and 0)."""
    slots = tuple(options) + ((0, 1),) * (ELEMENTWISE_ARRAY_SLOTS - len(options))
    values = tuple(scalars) + (0.0,) * (ELEMENTWISE_SCALAR_SLOTS - len(scalars))
    if len(slots) != ELEMENTWISE_ARRAY_SLOTS or len(values) != ELEMENTWISE_SCALAR_SLOTS:
        raise ValueError(f"at most {ELEMENTWISE_ARRAY_SLOTS} array and {ELEMENTWISE_SCALAR_SLOTS} scalar options")
    option_arguments = tuple(a for pointer, period in slots for a in (_pointer(pointer), _index(max(period, 1))))
    return (
        _pointer(input), _pointer(target), _pointer(weight), _index(max(weight_period, 1)), *option_arguments,
        _pointer(grad_output), _pointer(grad), _pointer(hess), _pointer(loss_out), _pointer(partials), _index(n),
        _flag(vectorised), *(_acc(v, accumulator) for v in values), _acc(grad_scale, accumulator),
        _pointer(upstream), _pointer(divisor),
    )


def sum_partials(*, values: int, n: int, partials: int) -> tuple:
    """``lossk_sum_partials`` (elementwise.cu)."""
    return (_pointer(values), _index(n), _pointer(partials))


def finish(*, partials: int, count: int, loss_scale: float, divisor: int, out: int, accumulator: str) -> tuple:
    """``lossk_finish`` (elementwise.cu)."""
    return (_pointer(partials), _index(count), _acc(loss_scale, accumulator), _pointer(divisor), _pointer(out))


def finish_acc(*, partials: int, count: int, out: int) -> tuple:
    """``lossk_finish_acc`` (elementwise.cu)."""
    return (_pointer(partials), _index(count), _pointer(out))


def cross_entropy(
    *, logits: int, target_index: int, target_probability: int, class_weight: int, grad_output: int, grad: int,
    loss_out: int, z_out: int, partials: int, rows: int, classes: int, inner: int, vectorised: bool,
    ignore_index: int, smoothing: float, softcap: float, z_loss: float, ce_scale: float, z_scale: float,
    upstream: int, divisors: int, accumulator: str, hess: int = 0,
) -> tuple:
    """``lossk_cross_entropy`` (cross_entropy.cu, KERNEL_ARGS); ``hess`` is read by LOSSK_HESS variants only."""
    return (
        _pointer(logits), _pointer(target_index), _pointer(target_probability), _pointer(class_weight),
        _pointer(grad_output), _pointer(grad), _pointer(loss_out), _pointer(z_out), _pointer(partials),
        _index(rows), _index(classes), _index(inner), _flag(vectorised), _index(ignore_index),
        _acc(smoothing, accumulator), _acc(softcap, accumulator), _acc(z_loss, accumulator),
        _acc(ce_scale, accumulator), _acc(z_scale, accumulator), _pointer(upstream), _pointer(divisors),
        _pointer(hess),
    )


def cross_entropy_finish(
    *, partials: int, count: int, ce_scale: float, z_scale: float, divisors: int, out: int, z_out: int, accumulator: str
) -> tuple:
    """``lossk_cross_entropy_finish`` (cross_entropy.cu)."""
    return (
        _pointer(partials), _index(count), _acc(ce_scale, accumulator), _acc(z_scale, accumulator),
        _pointer(divisors), _pointer(out), _pointer(z_out),
    )


def class_divisor_partials(
    *, target: int, class_weight: int, rows: int, classes: int, ignore_index: int, partials: int
) -> tuple:
    """``lossk_class_divisor_partials`` (class_targets.cuh)."""
    return (_pointer(target), _pointer(class_weight), _index(rows), _index(classes), _index(ignore_index), _pointer(partials))


def class_divisor_finish(*, partials: int, count: int, divisors: int) -> tuple:
    """``lossk_class_divisor_finish`` (class_targets.cuh)."""
    return (_pointer(partials), _index(count), _pointer(divisors))


def nll_rows(
    *, input: int, target: int, class_weight: int, rows: int, classes: int, inner: int, ignore_index: int,
    loss_out: int, partials: int,
) -> tuple:
    """``lossk_nll_rows`` (nll_loss.cu)."""
    return (
        _pointer(input), _pointer(target), _pointer(class_weight), _index(rows), _index(classes), _index(inner),
        _index(ignore_index), _pointer(loss_out), _pointer(partials),
    )


def nll_finish(*, partials: int, count: int, loss_scale: float, divide: bool, out: int, divisor: int, accumulator: str) -> tuple:
    """``lossk_nll_finish`` (nll_loss.cu)."""
    return (
        _pointer(partials), _index(count), _acc(loss_scale, accumulator), _flag(divide), _pointer(out), _pointer(divisor)
    )


def nll_grad(
    *, target: int, class_weight: int, grad_output: int, grad: int, elements: int, classes: int, inner: int,
    ignore_index: int, vectorised: bool, grad_scale: float, upstream: int, divisor: int, accumulator: str,
) -> tuple:
    """``lossk_nll_grad`` (nll_loss.cu)."""
    return (
        _pointer(target), _pointer(class_weight), _pointer(grad_output), _pointer(grad), _index(elements),
        _index(classes), _index(inner), _index(ignore_index), _flag(vectorised), _acc(grad_scale, accumulator),
        _pointer(upstream), _pointer(divisor),
    )


def multi_input(
    *, inputs: tuple[int, int, int], grad_output: int, grads: tuple[int, int], hessians: tuple[int, int],
    loss_out: int, partials: int, n: int, vectorised: bool, scalars: tuple[float, ...], grad_scale: float,
    upstream: int, accumulator: str,
) -> tuple:
    """``lossk_multi_input`` (multi_input.cu): the three inputs, then the gradient and second derivative of
    each differentiable input in the spec's order; ``scalars`` the scalar options (unused slots: 0)."""
    values = tuple(scalars) + (0.0,) * (ELEMENTWISE_SCALAR_SLOTS - len(scalars))
    if len(values) != ELEMENTWISE_SCALAR_SLOTS:
        raise ValueError(f"at most {ELEMENTWISE_SCALAR_SLOTS} scalar options")
    return (
        *(_pointer(p) for p in inputs), _pointer(grad_output), *(_pointer(p) for p in grads),
        *(_pointer(p) for p in hessians), _pointer(loss_out), _pointer(partials), _index(n), _flag(vectorised),
        *(_acc(v, accumulator) for v in values), _acc(grad_scale, accumulator), _pointer(upstream),
    )


def multi_input_finish(*, partials: int, count: int, loss_scale: float, out: int, accumulator: str) -> tuple:
    """``lossk_multi_input_finish`` (multi_input.cu)."""
    return (_pointer(partials), _index(count), _acc(loss_scale, accumulator), _pointer(out))
