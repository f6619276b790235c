"""Losses of more than ``(input, target)``, with two differentiable arguments, or averaged per row (a spec's
``row_mean``): the builders of their public functions, classes and reference implementation, from their specs
(``lossk._losses.multi_input``). A row-mean loss of ``(input, target)`` runs the ordinary elementwise
implementations of every backend: its 'mean' is their mean, its 'sum' and 'none' are rescaled around them
(:func:`_per_element`, :func:`_row_mean`).

Return order: ``.grad`` returns one gradient per differentiable argument, in the spec's ``differentiable``
order, as a tuple (``(grad_input, grad_var)``, ``(grad_input1, grad_input2)``); ``.value_and_grad`` returns
``(loss, that tuple)`` — the shape of ``jax.value_and_grad(f, argnums=(0, 2))``; with one differentiable
argument, the gradient itself. A gradient is shaped like its
argument (summed over the axes the argument was broadcast along); an argument given as a Python number (a
float ``var``) gets ``None``. ``out`` is an array (the first gradient's destination) or a tuple with one
array or ``None`` per gradient; ``inplace=True`` overwrites the first differentiable argument with its
gradient. ``.hessian`` returns the diagonal second derivatives, d² loss / d argument², in the same order and
shapes (weighted, scaled by the reduction and ``grad_output`` like the gradients; ``out`` receives them), and
``.value_grad_hessian`` ``(loss, grads, hessians)`` from one pass (``out`` the gradients, ``hess_out`` the
Hessians, each an array or a tuple as above).

The implementation contract (both backends): ``implementation(*arrays, xp, reduction, grad_output,
compute_grad, **options) -> (loss, grads)``, the arrays all of one shape (views of the shape they broadcast
to together, :func:`broadcast_shapes`), ``grads`` a tuple of full-shaped gradients (or ``None``); the Numba one
also takes ``out`` (a tuple of destinations or ``None``).
The second derivatives are registered under ``lossk._hessian.key(name)``: ``implementation(*arrays, xp,
reduction, grad_output, order, [out, hess_out,] **options) -> (loss, grads, hessians)``. A row-mean loss of
``(input, target)`` has the elementwise contracts (single arrays instead of tuples).
"""

from __future__ import annotations

import functools
import inspect
from types import ModuleType
from typing import Any

from ._array_api import Array, as_array, ieee_arithmetic
from ._dispatch import register, select
from ._hessian import key as hessian_key
from ._loss_function import LossFunction
from ._reduction import apply_reduction, compute_dtype, divide, upstream_scale
from ._spec import (
    ARRAY_KIND, ElementwiseLoss, check_supported, docstring, mean_divisor, parameters, prepare_arguments,
)
from ._validation import check_grad_output, check_out, inplace_out


_HESSIAN_DOC = """The diagonal second derivatives {hessians} of :func:`lossk.{name}`, each d² loss / d argument²
shaped like its argument (summed over the axes it was broadcast along; ``None`` for a Python number).

Weighted and scaled by the reduction and ``grad_output`` exactly like ``lossk.{name}.grad``. ``out`` receives
them (an array for the first, or a tuple with one array or ``None`` per argument). The other arguments are
those of :func:`lossk.{name}`.
"""

_VALUE_GRAD_HESSIAN_DOC = """``(loss, grads, hessians)`` of :func:`lossk.{name}` from one pass: the gradients as
``lossk.{name}.grad`` returns them and the Hessian diagonals {hessians} as ``lossk.{name}.hessian`` does.

``out`` receives the gradients and ``hess_out`` the Hessians (each an array for the first argument's, or a
tuple with one array or ``None`` per argument; written directly where the backend can).
"""


class MultiInputLossFunction(LossFunction):
    """A loss of several positional arrays (module docstring): ``.grad`` returns a tuple of gradients and
    ``.hessian`` a tuple of Hessian diagonals, one per differentiable argument."""

    def __init__(self, spec: ElementwiseLoss, module: str) -> None:
        check_supported(spec, multi_input=True)
        self.spec = spec
        signature = inspect.Signature(parameters(spec))

        def prepare(*arrays: Array, **options: Any) -> None:
            raise NotImplementedError  # never called: _run validates (the signature is what LossFunction reads)

        prepare.__name__ = prepare.__qualname__ = spec.name
        super().__init__(prepare, name=spec.name, signature=signature, doc=docstring(spec), module=module)
        self._signature = signature
        grads = f"tuple[{', '.join('Array | None' for _ in spec.differentiable)}]" if len(spec.differentiable) > 1 else "Array"
        for entry, annotation in (
            (self.grad, grads), (self.value_and_grad, f"tuple[Array, {grads}]"), (self.hessian, grads),
            (self.value_grad_hessian, f"tuple[Array, {grads}, {grads}]"),
        ):
            entry.__signature__ = entry.__signature__.replace(return_annotation=annotation)
        if len(spec.differentiable) > 1:
            hessians = f"``({', '.join(f'hess_{n}' for n in spec.differentiable)})``"
            self.hessian.__doc__ = _HESSIAN_DOC.format(name=spec.name, hessians=hessians)
            self.value_grad_hessian.__doc__ = _VALUE_GRAD_HESSIAN_DOC.format(name=spec.name, hessians=hessians)

    def __call__(self, *arrays: Any, backend: str = "auto", **options: Any) -> Array:
        loss, _, _ = self._run(arrays, backend, options, order=0)
        return loss

    def _grad(
        self, *arrays: Any, grad_output: Any = None, out: Any = None, inplace: bool = False, backend: str = "auto",
        **options: Any,
    ) -> Any:
        return self._run(arrays, backend, options, grad_output=grad_output, out=out, inplace=inplace)[1]

    def _value_and_grad(
        self, *arrays: Any, grad_output: Any = None, out: Any = None, inplace: bool = False, backend: str = "auto",
        **options: Any,
    ) -> tuple[Array, Any]:
        return self._run(arrays, backend, options, grad_output=grad_output, out=out, inplace=inplace)[:2]

    def _hessian(
        self, *arrays: Any, grad_output: Any = None, out: Any = None, backend: str = "auto", **options: Any,
    ) -> Any:
        return self._run(arrays, backend, options, order=2, grad_output=grad_output, hess_out=out, hess_name="out")[2]

    def _value_grad_hessian(
        self, *arrays: Any, grad_output: Any = None, out: Any = None, hess_out: Any = None, backend: str = "auto",
        **options: Any,
    ) -> tuple[Array, Any, Any]:
        return self._run(arrays, backend, options, order=2, grad_output=grad_output, out=out, hess_out=hess_out)

    def _run(
        self, arrays: tuple[Any, ...], backend: str, options: dict[str, Any], *, order: int = 1,
        grad_output: Any = None, out: Any = None, inplace: bool = False, hess_out: Any = None,
        hess_name: str = "hess_out",
    ) -> tuple[Array, Any, Any]:
        """``(loss, grads, hessians)``: the derivatives up to ``order`` (``None`` above it), each one array per
        differentiable argument (a tuple of them with more than one); ``hess_name`` names ``hess_out`` in errors."""
        spec = self.spec
        bound = self._signature.bind(*arrays, **options)
        bound.apply_defaults()
        values = dict(bound.arguments)
        inputs = {name: values.pop(name) for name in spec.inputs}
        first_name = spec.inputs[0]
        first = inputs[first_name]
        # a differentiable argument given as a Python number (gaussian_nll_loss's float var): constant, no gradient
        constant = set()
        for name in spec.differentiable[1:]:
            value = inputs[name]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and hasattr(first, "shape"):
                constant.add(name)
                if value < 0 and name == "var":
                    raise ValueError("var has negative entry/entries")
                xp_first = _namespace(first)
                inputs[name] = xp_first.full(tuple(first.shape), float(value), dtype=first.dtype)
        given = dict(inputs)
        expanded = _broadcast_inputs(spec, inputs)  # every input a view of the shape they broadcast to together
        first = inputs[first_name]
        xp, prepared = prepare_arguments(spec, inputs, values)
        reduction = values["reduction"]
        shape = tuple(first.shape)
        if spec.row_mean and not shape:
            raise ValueError(f"{first_name} must have at least one dimension (its last axis is averaged), got 0-d")
        k = len(spec.differentiable)
        outs = hess_outs = (None,) * k
        if order >= 1:
            loss_shape = shape[:-1] if spec.row_mean else shape
            grad_output = check_grad_output(grad_output, reduction, loss_shape, first)
            if inplace:
                out = inplace_out(out, given[spec.differentiable[0]], spec.differentiable[0])
            outs = self._destinations(out, "out", given, constant)
        if order >= 2:
            hess_outs = self._destinations(hess_out, hess_name, given, constant)
            if any(o is not None and o is h for o, h in zip(outs, hess_outs)):
                raise ValueError("out and hess_out must be different arrays")
        row_reduction = reduction
        if spec.row_mean:
            reduction, grad_output = _per_element(xp, reduction, grad_output, shape, first.dtype)
        registration = select(hessian_key(spec.name) if order >= 2 else spec.name, backend, first)
        extra: dict[str, Any] = {}
        if registration.writes_out:  # only full-shaped destinations can be written by the kernel
            for name, destinations in (("out", outs), ("hess_out", hess_outs))[:max(order, 1)]:
                full = tuple(o if o is not None and tuple(o.shape) == shape else None for o in destinations)
                extra[name] = full if k > 1 else full[0]
        call = {"xp": xp, "reduction": reduction, "grad_output": grad_output, **extra, **prepared}
        if order >= 2:
            loss, grads, hessians = registration.implementation(*(inputs[n] for n in spec.inputs), order=2, **call)
        else:
            loss, grads = registration.implementation(*(inputs[n] for n in spec.inputs), compute_grad=order >= 1, **call)
            hessians = None
        if spec.row_mean:
            loss = _row_mean(xp, loss, row_reduction, shape)
        derivatives = [
            None if d is None else _shaped(xp, d if k > 1 else (d,), destinations, spec, given, constant, expanded)
            for d, destinations in ((grads, outs), (hessians, hess_outs))
        ]
        return loss, *derivatives

    def _destinations(self, out: Any, name: str, given: dict[str, Any], constant: set[str]) -> tuple[Any, ...]:
        """``out`` (the argument ``name``) as one destination (or ``None``) per differentiable argument, checked."""
        names = self.spec.differentiable
        if out is None:
            return (None,) * len(names)
        if not isinstance(out, tuple):
            out = (out,) + (None,) * (len(names) - 1)
        if len(out) != len(names):
            raise ValueError(f"{name} must be an array or a tuple of {len(names)} (one per derivative: "
                             f"{', '.join(names)}), got a tuple of {len(out)}")
        for argument, destination in zip(names, out):
            if destination is None:
                continue
            if argument in constant:
                raise ValueError(f"{name} for {argument}: {argument} is a Python number, it has no derivative")
            check_out(destination, given[argument], name=f"{name} for {argument}")
        return out


def _shaped(
    xp: ModuleType, derivatives: tuple[Array, ...], destinations: tuple[Any, ...], spec: ElementwiseLoss,
    given: dict[str, Any], constant: set[str], expanded: dict[str, tuple[int, ...]],
) -> Any:
    """Full-shaped derivatives (gradients or Hessian diagonals) as the caller gets them: each summed to its
    argument's shape (the diagonal of a broadcast argument's Hessian is the sum of the per-element second
    derivatives it feeds, as its gradient is of the first), written into its destination, ``None`` for a Python
    number; a tuple with several differentiable arguments."""
    result = []
    for derivative, destination, name in zip(derivatives, destinations, spec.differentiable):
        value = None if name in constant else _sum_to(xp, derivative, tuple(given[name].shape), expanded[name])
        if value is not None and destination is not None and value is not destination:
            destination[...] = value
            value = destination
        result.append(value)
    return tuple(result) if len(result) > 1 else result[0]


def _per_element(xp: ModuleType, reduction: str, grad_output: Any, shape: tuple[int, ...], dtype: Any) -> tuple[str, Any]:
    """A row-mean loss's call as an elementwise one: 'mean' over rows of row means is the elementwise mean;
    'sum' and 'none' take the upstream gradient over the row length (broadcast along the rows for 'none')."""
    if reduction == "mean":
        return reduction, grad_output
    columns = shape[-1]
    with ieee_arithmetic(xp):
        if reduction == "sum":
            return reduction, divide(1.0 if grad_output is None else grad_output, columns)
        upstream = xp.ones(shape[:-1], dtype=dtype) if grad_output is None else grad_output
        return reduction, xp.broadcast_to(xp.expand_dims(divide(upstream, columns), axis=-1), shape)


def _row_mean(xp: ModuleType, loss: Array, reduction: str, shape: tuple[int, ...]) -> Array:
    """The reduced loss of a row-mean loss from the elementwise one (see :func:`_per_element`)."""
    if reduction == "mean":
        return loss
    with ieee_arithmetic(xp):
        if reduction == "sum":
            return as_array(xp, divide(loss, shape[-1]))
        return as_array(xp, divide(xp.sum(loss, axis=-1), shape[-1]))


def _namespace(array: Any) -> ModuleType:
    from ._array_api import namespace_of

    return namespace_of(input=array)


def _sum_to(xp: ModuleType, grad: Array, shape: tuple[int, ...], expanded: tuple[int, ...]) -> Array:
    """A full-shaped gradient summed over the axes its argument (of ``shape``, reshaped to ``expanded`` before
    it broadcast) was broadcast along, shaped like the argument."""
    if tuple(grad.shape) == shape:
        return grad
    full = tuple(grad.shape)
    expanded = (1,) * (len(full) - len(expanded)) + tuple(expanded)
    axes = tuple(k for k, (e, f) in enumerate(zip(expanded, full)) if e == 1 and f != 1)
    summed = xp.sum(grad, axis=axes, keepdims=True) if axes else grad
    return xp.reshape(xp.astype(summed, grad.dtype), shape)


def broadcast_shapes(
    spec: ElementwiseLoss, shapes: dict[str, tuple[int, ...]],
) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
    """``(expanded, full)``: the shape each positional array of ``spec`` takes before broadcasting (its spec's
    ``input_shape`` against the first array's own shape: gaussian_nll_loss's ``var`` of one value per row gets a
    trailing 1) and the shape they all broadcast to, which is the shape of the unreduced per-element loss.

    As PyTorch 2.13: the arrays broadcast together, NumPy's rules, the first one included (``input1`` of
    margin_ranking_loss of shape (N, 1) against ``input2`` of (N, D)), after the spec's own constraints
    (margin_ranking_loss: one number of dimensions; gaussian_nll_loss: ``var``'s shapes). A row-mean loss
    averages the first array's last axis: its arrays may broadcast along the other axes only (PyTorch divides
    by ``input.shape[-1]`` and sums over ``input.ndim - 1`` of the broadcast shape, which is no longer a row
    mean when ``target`` broadcasts the class axis or adds axes: refused here). Raises ``ValueError`` naming
    the arguments that do not fit.
    """
    names = list(shapes)
    first_name, first = names[0], tuple(shapes[names[0]])
    expanded = {first_name: first}
    for name in names[1:]:
        shape = tuple(shapes[name])
        expanded[name] = tuple(spec.input_shape(name, first, shape)) if spec.input_shape is not None else shape
    ndim = max(len(s) for s in expanded.values())
    full = []
    for axis in range(-ndim, 0):
        sizes = {s[axis] for s in expanded.values() if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            listing = ", ".join(f"{n} of shape {shapes[n]}" for n in names)
            raise ValueError(f"{spec.name}: {listing} do not broadcast together (axis {axis}: sizes {sorted(sizes)})")
        full.append(sizes.pop() if sizes else 1)
    full_shape = tuple(full)
    classes_kept = bool(first) and len(full_shape) == len(first) and full_shape[-1] == first[-1]
    if spec.row_mean and full_shape != first and not classes_kept:
        if not first:
            raise ValueError(f"{first_name} must have at least one dimension (its last axis is averaged), got 0-d")
        others = ", ".join(f"{n} of shape {shapes[n]}" for n in names[1:])
        raise ValueError(
            f"{spec.name}: {others} broadcast {first_name} of shape {first} to {full_shape}; the loss averages "
            f"{first_name}'s last axis (the classes), so the other arrays may broadcast along its other axes only "
            f"(same number of dimensions, last axis of size {first[-1]})"
        )
    return expanded, full_shape


def _broadcast_inputs(spec: ElementwiseLoss, inputs: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Replace each entry of ``inputs`` by a broadcast view of the shape they broadcast to together
    (:func:`broadcast_shapes`) and return the shapes they were expanded from. Arrays that are not arrays are left
    for :func:`~lossk._spec.prepare_arguments` to refuse."""
    if not all(hasattr(a, "shape") for a in inputs.values()):
        return {name: () for name in inputs}
    expanded, full = broadcast_shapes(spec, {name: tuple(a.shape) for name, a in inputs.items()})
    from ._array_api import namespace_of

    xp = namespace_of(**inputs)
    for name, array in inputs.items():
        if tuple(array.shape) != full:
            inputs[name] = xp.broadcast_to(xp.reshape(array, expanded[name]), full)
    return expanded


# ---- the reference ----------------------------------------------------------------------------------------


def evaluate(
    spec: ElementwiseLoss, *arrays: Array, xp: ModuleType, reduction: str, grad_output: Any, order: int,
    **options: Any,
) -> tuple[Array, tuple[Array, ...] | None, tuple[Array, ...] | None]:
    """``(loss, grads, hessians)`` of a multi-input ``spec`` from its array ``formula`` (one derivative per
    differentiable argument, full-shaped, weighted and scaled by the reduction; ``None`` below ``order``)."""
    first = arrays[0]
    dtype = compute_dtype(xp, first.dtype)
    xs = [xp.astype(a, dtype) for a in arrays]
    weight = options.get("weight")
    w = None if weight is None else xp.astype(weight, dtype)
    arguments = {
        o.name: (None if options[o.name] is None else xp.astype(options[o.name], dtype))
        if o.kind == ARRAY_KIND else options[o.name]
        for o in spec.formula_options
    }
    loss, d1, d2 = spec.formula(xp, *xs, order=order, **arguments)
    if len(spec.differentiable) == 1:
        d1, d2 = (None if d is None else (d,) for d in (d1, d2))
    if w is not None:
        loss = w * loss
        d1, d2 = (None if d is None else tuple(w * a for a in d) for d in (d1, d2))
    reduction, divisor = mean_divisor(spec, reduction, tuple(first.shape), w, xp.sum)
    value = xp.astype(apply_reduction(xp, loss, reduction, divisor), first.dtype)
    if order == 0:
        return value, None, None
    scale = upstream_scale(reduction, grad_output, divisor)
    # broadcast_to: a derivative that does not depend on the element (a constant) comes back 0-d or scalar
    grads, hessians = (
        None if d is None else tuple(
            as_array(xp, xp.astype(xp.broadcast_to(as_array(xp, a * scale), tuple(first.shape)), first.dtype))
            for a in d
        )
        for d in (d1, d2)
    )
    return value, grads, hessians


def implementation(spec: ElementwiseLoss):
    """``spec``'s reference implementation (the contract of the module docstring)."""

    def value_and_grad(
        *arrays: Array, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool, **options: Any,
    ) -> tuple[Array, tuple[Array, ...] | None]:
        value, grads, _ = evaluate(
            spec, *arrays, xp=xp, reduction=reduction, grad_output=grad_output, order=int(compute_grad), **options
        )
        return value, grads

    value_and_grad.__name__ = value_and_grad.__qualname__ = spec.name
    value_and_grad.__doc__ = f"Reference :func:`lossk.{spec.name}`: its spec's array formula (``lossk._losses``)."
    return value_and_grad


def register_all() -> None:
    """Register every multi-input loss of the table as the ``array_api`` backend: its ``(loss, grads)`` and,
    under ``lossk._hessian.key``, its ``(loss, grads, hessians)``."""
    from ._losses.multi_input import LOSSES

    from ._reference import _elementwise
    from ._spec import is_multi_input

    for spec in LOSSES:  # a row-mean loss of (input, target) runs the elementwise reference
        multi = is_multi_input(spec)
        register(spec.name, "array_api")(implementation(spec) if multi else _elementwise.implementation(spec))
        register(hessian_key(spec.name), "array_api")(functools.partial(evaluate if multi else _elementwise.evaluate, spec))


# ---- public functions and classes -------------------------------------------------------------------------


class MultiInputLoss:
    """Base of the multi-input loss classes: options fixed at construction; a call keeps the gradients (a tuple,
    one per differentiable argument) for :meth:`backward`."""

    function: MultiInputLossFunction
    signature: inspect.Signature

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = self.signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        del values["self"]
        self.reduction = values.pop("reduction")
        self.backend = values.pop("backend")
        self.options = values
        self._last: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in {"reduction": self.reduction, **self.options}.items())
        return f"{type(self).__name__}({settings})"

    def __call__(self, *arrays: Any) -> Array:
        """The loss; its gradients are computed in the same pass and kept for :meth:`backward`."""
        loss, grads = self.function.value_and_grad(
            *arrays, reduction=self.reduction, backend=self.backend, **self.options
        )
        self._last = (arrays, grads)
        return loss

    def backward(self, grad_output: Any = None) -> tuple[Any, ...]:
        """The gradients of the last call (one per differentiable argument), times ``grad_output``."""
        if self._last is None:
            raise RuntimeError(f"call the {type(self).__name__} on its inputs before asking for its backward")
        arrays, grads = self._last
        if grad_output is None:
            return grads
        return self.function.grad(
            *arrays, grad_output=grad_output, reduction=self.reduction, backend=self.backend, **self.options
        )


def loss_class(spec: ElementwiseLoss, function: MultiInputLossFunction) -> type[MultiInputLoss]:
    """The class of a multi-input loss, with ``torch.nn``'s name and positional options."""
    by_name = {option.name: option for option in spec.options}
    positional = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=by_name[name].default)
        for name in spec.class_positional
    ]
    keyword = [
        inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default)
        for o in spec.options if o.name not in spec.class_positional
    ]
    backend = inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default="auto")
    signature = inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY), *positional, *keyword, backend])

    def __init__(self: MultiInputLoss, *args: Any, **kwargs: Any) -> None:
        MultiInputLoss.__init__(self, *args, **kwargs)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{spec.class_name}.__init__"
    summary = spec.summary[:-1] if spec.summary.endswith(".") else spec.summary
    torch_class = f" PyTorch: ``torch.nn.{spec.class_name}``." if spec.torch_function else ""
    return type(spec.class_name, (MultiInputLoss,), {
        "function": function, "signature": signature, "__init__": __init__, "__module__": "lossk",
        "__doc__": f"{summary}; see :func:`lossk.{spec.name}`.{torch_class}",
    })


def public() -> tuple[dict[str, MultiInputLossFunction], dict[str, type[MultiInputLoss]]]:
    """The public functions and classes of the multi-input losses, by name (exported by ``lossk``)."""
    from ._losses.multi_input import LOSSES

    functions = {spec.name: MultiInputLossFunction(spec, "lossk") for spec in LOSSES}
    classes = {spec.class_name: loss_class(spec, functions[spec.name]) for spec in LOSSES}
    return functions, classes
