"""JAX drop-ins: every lossk loss as a ``jax.custom_vjp`` function that works under ``jit``, ``vmap`` and ``grad``.

``lossk.jax.cross_entropy(logits, labels, reduction="mean", ...)`` takes lossk's arguments and options. Its
forward pass computes the loss and its gradient together and keeps the gradient; the backward pass scales
it by the upstream gradient. The forward pass is lossk's reference traced by JAX, which XLA compiles and
fuses; on the CPU, lossk's Numba kernels can be called through ``jax.pure_callback`` instead, for inputs of
at least :data:`HOST_KERNEL_MIN_SIZE` elements (off by default: slower than XLA where measured).

Gradients reach every floating argument JAX differentiates: the input from the saved gradient, the target
of a residual loss (``mse_loss``, ``l1_loss``, ...) as minus the input's gradient, any other floating
argument (a probability target, ``kl_div``'s target, a ``weight``) through ``jax.vjp`` of lossk's reference
— computed in the backward pass, which ``jit`` removes when nobody uses it. Second derivatives differentiate
the saved gradient as a constant and are therefore wrong: ``jax.hessian`` of these functions is not supported.

The losses are generated from ``lossk.__all__`` (every :class:`lossk.LossFunction`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import lossk
from lossk import _autodiff, _dispatch

__all__: list[str] = []  # filled below: one function per loss

HOST_KERNEL_MIN_SIZE: int | None = None
"""From this many input elements on, the CPU forward pass calls the Numba kernels through a callback; None
(the default): never. Measured (bench/NOTES.md, issue 12 follow-up): the callback was 1.3-240x slower than
XLA's compilation of lossk's reference at every loss and size tried (2^14 to 2^22 elements, cross-entropy
up to 512x32768): it copies operands and results between XLA's buffers and NumPy and runs serially. Set an
element count to opt in."""


def _host_kernels_available() -> bool:
    return jax.default_backend() == "cpu" and _dispatch.is_available("numba")


def _value_and_grad_on_host(function: lossk.LossFunction, options: dict[str, Any], input: Any, target: Any,
                            arrays: dict[str, Any]) -> tuple[Any, Any]:
    """``function.value_and_grad`` by the fused kernels, through a callback that JAX can trace and batch."""
    loss_shape = jax.eval_shape(
        lambda x, t, a: function(x, t, backend="array_api", **options, **a), input, target, arrays
    )
    shapes = (loss_shape, jax.ShapeDtypeStruct(input.shape, input.dtype))

    def host(x: np.ndarray, t: np.ndarray, a: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        loss, grad = function.value_and_grad(np.asarray(x), np.asarray(t), backend="numba", **options,
                                             **{k: np.asarray(v) for k, v in a.items()})
        return np.asarray(loss, dtype=loss_shape.dtype), np.asarray(grad, dtype=input.dtype)

    return jax.pure_callback(host, shapes, input, target, arrays, vmap_method="sequential")


def _scale(grad: Any, grad_output: Any) -> Any:
    """The saved gradient times the upstream gradient (a scalar, or one value per element or row)."""
    axes = _autodiff.upstream_axes(tuple(grad_output.shape), tuple(grad.shape))
    if axes is None:
        raise NotImplementedError(
            f"an upstream gradient of shape {grad_output.shape} does not broadcast to the input's {grad.shape}"
        )
    return grad * jnp.expand_dims(grad_output, axes) if axes else grad * grad_output


@functools.cache
def _differentiable(name: str, options: tuple[tuple[str, Any], ...], array_names: tuple[str, ...]) -> Callable:
    """The ``custom_vjp`` function of one loss with its static options fixed: ``f(input, target, *arrays)``."""
    function = getattr(lossk, name)
    static = dict(options)

    def reference(input: Any, target: Any, arrays: tuple[Any, ...]) -> Any:
        return function(input, target, backend="array_api", **static, **dict(zip(array_names, arrays)))

    @jax.custom_vjp
    def loss(input: Any, target: Any, *arrays: Any) -> Any:
        return reference(input, target, arrays)

    def forward(input: Any, target: Any, *arrays: Any) -> tuple[Any, Any]:
        named = dict(zip(array_names, arrays))
        threshold = HOST_KERNEL_MIN_SIZE
        if threshold is not None and input.size >= threshold and _host_kernels_available():
            value, grad = _value_and_grad_on_host(function, static, input, target, named)
        else:
            value, grad = function.value_and_grad(input, target, backend="array_api", **static, **named)
        return value, (grad, input, target, arrays)

    def backward(saved: tuple[Any, ...], grad_output: Any) -> tuple[Any, ...]:
        grad, input, target, arrays = saved
        d_input = _scale(grad, grad_output)
        floating_target = jnp.issubdtype(target.dtype, jnp.floating)
        negated = floating_target and name in _autodiff.NEGATED_TARGET_GRADIENT
        d_target = -d_input if negated else None
        d_arrays: tuple[Any, ...] = tuple(None for _ in arrays)
        by_reference = (floating_target and not negated, bool(arrays))
        if any(by_reference):
            # jit removes this when the caller does not use these gradients
            if by_reference[0]:
                _, pullback = jax.vjp(lambda t, *a: reference(input, t, a), target, *arrays)
                d_target, *rest = pullback(grad_output)
            else:
                _, pullback = jax.vjp(lambda *a: reference(input, target, a), *arrays)
                rest = pullback(grad_output)
            d_arrays = tuple(rest)
        return (d_input, d_target, *d_arrays)

    loss.defvjp(forward, backward)
    # jit: every array lossk sees is then a tracer (lossk takes the arrays of one call from one library, and
    # counts a concrete jax array, ``jaxlib``, and a tracer, ``jax``, as two), and the call compiles once
    return jax.jit(loss)


def _wrap(name: str, function: lossk.LossFunction) -> Callable[..., Any]:
    options = _autodiff.options_of(function)
    array_names = tuple(n for n, p in options.items() if _autodiff.is_array_option(p))

    def wrapped(input: Any, target: Any, /, **kwargs: Any) -> Any:
        unknown = set(kwargs) - set(options)
        if unknown:
            raise TypeError(f"lossk.jax.{name} got unexpected option(s) {', '.join(sorted(unknown))}; "
                            f"it takes {', '.join(options)}")
        arrays = {n: kwargs.pop(n) for n in array_names if kwargs.get(n) is not None}
        kwargs = {n: v for n, v in kwargs.items() if n not in array_names}
        static = tuple(sorted(kwargs.items()))
        return _differentiable(name, static, tuple(arrays))(input, target, *arrays.values())

    wrapped.__name__ = wrapped.__qualname__ = name
    wrapped.__module__ = __name__
    wrapped.__doc__ = (
        f"``lossk.{name}`` as a ``jax.custom_vjp`` function (``jit``, ``vmap``, ``grad``): the forward pass "
        f"computes the loss and its gradient together.\n\n    Options: {', '.join(options)} "
        f"(keyword-only; see :func:`lossk.{name}`)."
    )
    return wrapped


for _name, _function in _autodiff.loss_functions().items():
    globals()[_name] = _wrap(_name, _function)
    __all__.append(_name)
del _name, _function
