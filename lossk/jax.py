"""JAX drop-ins: every lossk loss as a ``jax.custom_vjp`` function that works under ``jit``, ``vmap`` and ``grad``.

``lossk.jax.cross_entropy(logits, labels, reduction="mean", ...)`` takes lossk's arguments and options
(``lossk.jax.gaussian_nll_loss(input, target, var, ...)``: a multi-input loss's arrays, positionally). Its
forward pass computes the loss and its gradient together and keeps the gradient; the backward pass scales
it by the upstream gradient. The forward pass is lossk's reference traced by JAX, which XLA compiles and
fuses; on the CPU, lossk's Numba kernels can be called through ``jax.pure_callback`` instead, for inputs of
at least :data:`HOST_KERNEL_MIN_SIZE` elements (off by default: slower than XLA where measured).

Gradients reach every floating argument JAX differentiates: the input (and a multi-input loss's other
differentiable arrays, ``gaussian_nll_loss``'s ``var``, ``margin_ranking_loss``'s ``input2``) from the saved
gradients, the target of a residual loss (``mse_loss``, ``l1_loss``, ``gaussian_nll_loss``, ...) as minus the
input's gradient, any other floating argument (a probability target, ``kl_div``'s or
``margin_ranking_loss``'s target, a ``weight``) through ``jax.vjp`` of lossk's reference
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


def _value_and_grad_on_host(function: lossk.LossFunction, options: dict[str, Any], arrays: tuple[Any, ...],
                            named: dict[str, Any]) -> tuple[Any, Any]:
    """``function.value_and_grad`` by the fused kernels, through a callback that JAX can trace and batch."""
    shapes = jax.eval_shape(
        lambda a, n: function.value_and_grad(*a, backend="array_api", **options, **n), arrays, named
    )

    def host(a: tuple[np.ndarray, ...], n: dict[str, np.ndarray]) -> Any:
        result = function.value_and_grad(*(np.asarray(x) for x in a), backend="numba", **options,
                                         **{k: np.asarray(v) for k, v in n.items()})
        return jax.tree.map(lambda r, s: np.asarray(r, dtype=s.dtype), result, shapes)

    return jax.pure_callback(host, shapes, arrays, named, vmap_method="sequential")


def _scale(name: str, grad: Any, grad_output: Any) -> Any:
    """The saved gradient of loss ``name`` times the upstream gradient (a scalar, or one value per element or
    row)."""
    axes = _autodiff.upstream_axes(name, tuple(grad_output.shape), tuple(grad.shape))
    if axes is None:
        raise NotImplementedError(
            f"an upstream gradient of shape {grad_output.shape} does not broadcast to the input's {grad.shape}"
        )
    return grad * jnp.expand_dims(grad_output, axes) if axes else grad * grad_output


def _sum_to(grad: Any, shape: tuple[int, ...]) -> Any:
    """A gradient summed over the axes its argument (of ``shape``, broadcast as NumPy does) was broadcast along."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = (*range(lead), *(lead + k for k, n in enumerate(shape) if n == 1 and grad.shape[lead + k] != 1))
    return jnp.reshape(jnp.sum(grad, axis=axes, keepdims=True), shape)


@functools.cache
def _differentiable(name: str, options: tuple[tuple[str, Any], ...], array_names: tuple[str, ...]) -> Callable:
    """The ``custom_vjp`` function of one loss with its static options fixed: ``f(*arrays, *array options)``."""
    function = getattr(lossk, name)
    static = dict(options)
    positional = _autodiff.arrays_of(function)
    n = len(positional)
    fused = tuple(positional.index(a) for a in _autodiff.differentiable_of(function))
    negated = positional.index("target") if name in _autodiff.NEGATED_TARGET_GRADIENT else None

    def reference(*tensors: Any) -> Any:
        return function(*tensors[:n], backend="array_api", **static, **dict(zip(array_names, tensors[n:])))

    @jax.custom_vjp
    def loss(*tensors: Any) -> Any:
        return reference(*tensors)

    def forward(*tensors: Any) -> tuple[Any, Any]:
        arrays, named = tensors[:n], dict(zip(array_names, tensors[n:]))
        threshold = HOST_KERNEL_MIN_SIZE
        if threshold is not None and arrays[0].size >= threshold and _host_kernels_available():
            value, grads = _value_and_grad_on_host(function, static, arrays, named)
        else:
            value, grads = function.value_and_grad(*arrays, backend="array_api", **static, **named)
        return value, (grads if len(fused) > 1 else (grads,), tensors)

    def backward(saved: tuple[Any, ...], grad_output: Any) -> tuple[Any, ...]:
        grads, tensors = saved
        result: list[Any] = [None] * len(tensors)
        for k, grad in zip(fused, grads):
            result[k] = _scale(name, grad, grad_output)
        # the other floating arguments: a residual loss's target as minus the input's gradient, the rest by
        # jax.vjp of the reference (jit removes these when the caller does not use them)
        others = [k for k, t in enumerate(tensors) if k not in fused and jnp.issubdtype(t.dtype, jnp.floating)]
        if negated in others and _autodiff.target_within_input(tensors[0].shape, tensors[negated].shape):
            result[negated] = _sum_to(-result[0], tensors[negated].shape)
            others.remove(negated)
        if others:
            def of_others(*chosen: Any) -> Any:
                given = list(tensors)
                for k, tensor in zip(others, chosen):
                    given[k] = tensor
                return reference(*given)

            _, pullback = jax.vjp(of_others, *(tensors[k] for k in others))
            for k, grad in zip(others, pullback(grad_output)):
                result[k] = grad
        return tuple(result)

    loss.defvjp(forward, backward)
    # jit: every array lossk sees is then a tracer (lossk takes the arrays of one call from one library, and
    # counts a concrete jax array, ``jaxlib``, and a tracer, ``jax``, as two), and the call compiles once
    return jax.jit(loss)


def _wrap(name: str, function: lossk.LossFunction) -> Callable[..., Any]:
    options = _autodiff.options_of(function)
    array_names = tuple(n for n, p in options.items() if _autodiff.is_array_option(p))
    positional = _autodiff.arrays_of(function)
    default_reduction = options["reduction"].default if "reduction" in options else None

    def wrapped(*arrays: Any, **kwargs: Any) -> Any:
        if len(arrays) != len(positional):
            raise TypeError(f"lossk.jax.{name} takes {len(positional)} positional arrays ({', '.join(positional)}), "
                            f"got {len(arrays)}")
        unknown = set(kwargs) - set(options)
        if unknown:
            raise TypeError(f"lossk.jax.{name} got unexpected option(s) {', '.join(sorted(unknown))}; "
                            f"it takes {', '.join(options)}")
        tensors = {n: kwargs.pop(n) for n in array_names if kwargs.get(n) is not None}
        kwargs = {n: v for n, v in kwargs.items() if n not in array_names}
        static = tuple(sorted(kwargs.items()))
        first = jnp.asarray(arrays[0])
        # a Python number where an array goes (gaussian_nll_loss's float var, as PyTorch allows): a constant
        arrays = (first, *(jnp.full_like(first, a) if isinstance(a, (int, float)) else jnp.asarray(a)
                           for a in arrays[1:]))
        if kwargs.get("reduction", default_reduction) == "none":
            arrays = _expanded(function, arrays)
        return _differentiable(name, static, tuple(tensors))(*arrays, *tensors.values())

    wrapped.__name__ = wrapped.__qualname__ = name
    wrapped.__module__ = __name__
    wrapped.__doc__ = (
        f"``lossk.{name}`` as a ``jax.custom_vjp`` function (``jit``, ``vmap``, ``grad``): the forward pass "
        f"computes the loss and its gradient together.\n\n    Positional arrays: {', '.join(positional)}; "
        f"options: {', '.join(options)} (keyword-only; see :func:`lossk.{name}`)."
    )
    return wrapped


def _expanded(function: lossk.LossFunction, arrays: tuple[Any, ...]) -> tuple[Any, ...]:
    """For reduction='none': the arrays of a multi-input loss broadcast to the shape they broadcast to together,
    so that each fused gradient is full-shaped and scales element by element (``broadcast_to``'s transpose sums
    it back). The arrays of a loss of ``(input, target)`` as they are."""
    shapes = _autodiff.broadcast_shapes(function, [tuple(a.shape) for a in arrays])
    if shapes is None:
        return arrays
    expanded, full = shapes
    return tuple(a if a.shape == full else jnp.broadcast_to(jnp.reshape(a, own), full)
                 for a, own in zip(arrays, expanded))


for _name, _function in _autodiff.loss_functions().items():
    globals()[_name] = _wrap(_name, _function)
    __all__.append(_name)
del _name, _function
