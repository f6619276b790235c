"""PyTorch drop-ins: every lossk loss as a differentiable function and ``nn.Module`` with PyTorch's names.

``lossk.torch.cross_entropy`` has the signature of ``torch.nn.functional.cross_entropy`` (plus lossk's own
keyword-only options), ``lossk.torch.CrossEntropyLoss`` subclasses ``torch.nn.CrossEntropyLoss``. The
forward pass runs lossk's fused ``value_and_grad`` and keeps the gradient (in place of what PyTorch would
keep, e.g. the softmax); the backward pass multiplies it by the upstream gradient. CPU tensors reach the
Numba kernels as NumPy views of their memory (no copy; bfloat16 goes through a float32 copy), CUDA tensors
the CUDA kernels (DLPack), tensors of other devices lossk's reference.

Each loss is a ``torch.library.custom_op`` (``torch.ops.lossk.<loss>``) with a fake implementation and an
autograd formula, so ``torch.compile(model, fullgraph=True)`` compiles models that call them without graph
breaks. Gradients reach every floating tensor argument that asks for one: the input by the fused kernel
(and a multi-input loss's other differentiable arrays — ``gaussian_nll_loss``'s ``var``,
``margin_ranking_loss``'s ``input2`` — by the same kernel), the target of a residual loss (``mse_loss``,
``l1_loss``, ``gaussian_nll_loss``, ...) as minus the input's gradient, any other floating argument (a
probability target, ``kl_div``'s or ``margin_ranking_loss``'s target, a ``weight``) by differentiating
lossk's reference with PyTorch's autograd in the backward pass. A multi-input loss's arrays broadcast
together as in PyTorch (``lossk._multi_input.broadcast_shapes``); with ``reduction="none"``, an array that
broadcasts (a ``var`` of one value per row, an ``input1`` of one value per row) is expanded to the loss's
shape before the op, so that its gradient scales element by element; PyTorch's ``expand`` sums it back.
Double backward raises (the fused gradient has no graph of its own).

The losses are generated from ``lossk.__all__`` (every :class:`lossk.LossFunction`), so a loss added to
lossk appears here too.

Threads: PyTorch and Numba each bring an OpenMP runtime whose threads spin after a parallel region, on the
cores the other needs. Where lossk's kernels run between PyTorch's ops on few cores, start Python with
``OMP_WAIT_POLICY=PASSIVE NUMBA_THREADING_LAYER=workqueue`` (both read when the runtimes load, so they
cannot be set from here): measured, lossk then kept 87-96% of its stand-alone speed after PyTorch's ops and
did not slow them (bench/NOTES.md, issue 12).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - PyTorch's own alias

import lossk
from lossk import _autodiff

__all__: list[str] = []  # filled below: every loss function, its module class, and linear_cross_entropy

_LIBRARY = "lossk"
_DOUBLE_BACKWARD = (
    "lossk.torch.{name}: double backward (create_graph=True) is not supported: the gradient comes from a "
    "fused kernel and has no graph of its own. Use torch.nn.functional.{name} where second derivatives are needed."
)


# --- tensors to and from lossk ------------------------------------------------------------------------


def _to_lossk(tensor: torch.Tensor | None) -> Any:
    """What lossk receives for a tensor: a NumPy view of a CPU tensor's memory, else the tensor itself.

    NumPy has no bfloat16, so a bfloat16 CPU tensor goes as a float32 copy (lossk computes half precision
    in float32 anyway).
    """
    if tensor is None:
        return None
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        return tensor
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.resolve_conj().resolve_neg().numpy()


def _from_lossk(array: Any, like: torch.Tensor) -> torch.Tensor:
    """A lossk result as a tensor of ``like``'s dtype (zero-copy for NumPy results of that dtype)."""
    if isinstance(array, torch.Tensor):
        return array.to(like.dtype)
    array = np.asarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array).to(like.dtype)


# --- one op per loss ----------------------------------------------------------------------------------

_SCHEMA_TYPES = (("Array", "Tensor"), ("Tensor", "Tensor"), ("bool", "bool"), ("float", "float"), ("int", "int"),
                 ("str", "str"))


def _schema_type(parameter: inspect.Parameter) -> str:
    """The ``torch.library`` schema type of a lossk option, from its annotation (else its default's type)."""
    text = _autodiff.annotation_text(parameter)
    base = next((kind for token, kind in _SCHEMA_TYPES if token in text), None)
    if base is None:
        default = parameter.default
        base = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default), "Tensor")
    optional = "None" in text or parameter.default is None
    return f"{base}?" if optional else base


@dataclass(frozen=True)
class _LossOp:
    """A lossk loss as ``torch.ops.lossk.<name>(*arrays, *tensor options, *options, backend) -> (loss, *grads)``,
    one gradient per argument that lossk's fused ``value_and_grad`` differentiates (in its order)."""

    name: str
    function: lossk.LossFunction
    arrays: tuple[str, ...]
    """The positional arrays (``input, target``; a multi-input loss's spec's ``inputs``)."""
    differentiable: tuple[int, ...]
    """Where, among :attr:`arrays`, the arguments of the fused gradients are (the first array first)."""
    array_options: tuple[str, ...]
    """Tensor-valued options, in the op's order (after the arrays)."""
    scalar_options: tuple[str, ...]
    """Every other option, ``reduction`` included, in the op's order (after the tensors)."""
    schema_types: tuple[str, ...]

    @property
    def n_tensors(self) -> int:
        return len(self.arrays) + len(self.array_options)

    @property
    def others(self) -> tuple[int, ...]:
        """Where, among the op's tensors, those without a fused gradient are (a label or probability target,
        the tensor options)."""
        return tuple(k for k in range(self.n_tensors) if k not in self.differentiable)

    @property
    def negated_target(self) -> int | None:
        """Where the target is, for losses of the residual ``input - target`` (its gradient: minus the input's)."""
        return self.arrays.index("target") if self.name in _autodiff.NEGATED_TARGET_GRADIENT else None

    @property
    def schema(self) -> str:
        names = (*self.arrays, *self.array_options, *self.scalar_options, "backend")
        types = (*("Tensor" for _ in self.arrays), *self.schema_types, "str")
        results = ", ".join("Tensor" for _ in range(1 + len(self.differentiable)))
        return "(" + ", ".join(f"{t} {n}" for t, n in zip(types, names)) + f") -> ({results})"

    def lossk_options(self, tensors: Sequence[Any], scalars: Sequence[Any]) -> dict[str, Any]:
        return {**dict(zip(self.array_options, tensors)), **dict(zip(self.scalar_options, scalars))}

    def split(self, args: Sequence[Any]) -> tuple[Sequence[Any], Sequence[Any], Sequence[Any], str]:
        """The op's arguments as (arrays, tensor options, scalars, backend)."""
        n, m = len(self.arrays), self.n_tensors
        return args[:n], args[n:m], args[m:-1], args[-1]

    def gradients(self, grads: Any) -> tuple[Any, ...]:
        """``value_and_grad``'s gradients as a tuple (one differentiable argument: the gradient itself)."""
        return tuple(grads) if len(self.differentiable) > 1 else (grads,)


def _describe(name: str, function: lossk.LossFunction) -> _LossOp:
    options = _autodiff.options_of(function)
    arrays = _autodiff.arrays_of(function)
    differentiable = tuple(arrays.index(n) for n in _autodiff.differentiable_of(function))
    tensors = tuple(n for n, p in options.items() if _autodiff.is_array_option(p))
    scalars = tuple(n for n in options if n not in tensors)
    return _LossOp(name, function, arrays, differentiable, tensors, scalars,
                   tuple(_schema_type(options[n]) for n in (*tensors, *scalars)))


def _value_and_grad(op: _LossOp, *args: Any) -> tuple[torch.Tensor, ...]:
    """The op's real implementation: lossk's fused value_and_grad on views of the tensors' memory."""
    arrays, tensors, scalars, backend = op.split(args)
    loss, grads = op.function.value_and_grad(
        *(_to_lossk(a) for a in arrays), backend=backend,
        **op.lossk_options([_to_lossk(t) for t in tensors], scalars),
    )
    return (_from_lossk(loss, arrays[0]),
            *(_from_lossk(g, arrays[k]) for g, k in zip(op.gradients(grads), op.differentiable)))


def _loss_shape(op: _LossOp, input: torch.Tensor, scalars: Sequence[Any]) -> tuple[int, ...]:
    """The loss's shape, for the fake implementation (symbolic shapes included).

    (PyTorch's own meta function of ``cross_entropy`` gives a 0-d result for reduction='none' under dynamic
    shapes, and lossk's reference makes real constants that fake tracing refuses: hence a rule.)
    """
    if dict(zip(op.scalar_options, scalars)).get("reduction") != "none":
        return ()
    return _autodiff.unreduced_shape(op.name, tuple(input.shape))


def _fake(op: _LossOp, *args: Any) -> tuple[torch.Tensor, ...]:
    arrays, _, scalars, _ = op.split(args)
    return (arrays[0].new_empty(_loss_shape(op, arrays[0], scalars)),
            *(torch.empty_like(arrays[k]) for k in op.differentiable))


def _reference_vjp(op: _LossOp, *args: Any) -> list[torch.Tensor]:
    """Gradients of ``grad_output · loss`` with respect to the tensors ``wanted`` flags (those of
    :attr:`_LossOp.others`, in order), by PyTorch's autodiff over lossk's reference."""
    *args, grad_output, wanted = args
    tensors, scalars = list(args[:op.n_tensors]), args[op.n_tensors:-1]
    chosen_at = [k for k, w in zip(op.others, wanted) if w]

    def loss_of(*chosen: torch.Tensor) -> torch.Tensor:
        given = list(tensors)
        for k, tensor in zip(chosen_at, chosen):
            given[k] = tensor
        arrays, options = given[:len(op.arrays)], given[len(op.arrays):]
        return op.function(*arrays, backend="array_api", **op.lossk_options(options, scalars))

    # torch.func rather than torch.autograd: the op runs below PyTorch's autograd dispatch
    _, pullback = torch.func.vjp(loss_of, *(tensors[k] for k in chosen_at))
    return list(pullback(grad_output))


def _reference_vjp_fake(op: _LossOp, *args: Any) -> list[torch.Tensor]:
    *args, _, wanted = args
    return [torch.empty_like(args[k]) for k, w in zip(op.others, wanted) if w]


def _owned(grad: torch.Tensor, grad_output: torch.Tensor) -> bool:
    """Whether the backward pass may hand the saved gradient on or scale it in place.

    True in eager mode when this backward pass is the graph's last (no ``retain_graph``): autograd releases
    the saved tensors right after the node runs, so nothing else reads the buffer, and ``AccumulateGrad``
    then takes it as the leaf's ``.grad`` without a copy. With ``retain_graph=True`` (``gradcheck``,
    repeated backward passes) the saved gradient must stay intact and each pass gets a fresh product.
    Under ``torch.compile`` (traced tensors) the product is left to the compiler.
    """
    if type(grad) is not torch.Tensor or type(grad_output) is not torch.Tensor:
        return False
    return not _keep_graph()


def _keep_graph() -> bool:
    """``retain_graph`` of the running backward pass (True, the safe answer, where PyTorch cannot tell)."""
    query = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return True if query is None else bool(query())


def _scale(name: str, grad: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """The saved gradient of loss ``name`` times the upstream gradient (a scalar, or one value per element or
    row).

    When the saved buffer is :func:`_owned`, no new tensor is made: an upstream gradient of exactly 1 on the
    CPU (``loss.backward()``) passes the buffer on as it is, any other upstream gradient scales it in place
    (one pass). Otherwise the product is a new tensor.
    """
    if grad_output.ndim != 0:
        axes = _autodiff.upstream_axes(name, tuple(grad_output.shape), tuple(grad.shape))
        if axes is None:
            raise NotImplementedError(
                f"an upstream gradient of shape {tuple(grad_output.shape)} does not broadcast to the input's "
                f"{tuple(grad.shape)}"
            )
        for axis in axes:
            grad_output = grad_output.unsqueeze(axis)
    if not _owned(grad, grad_output):
        return grad * grad_output
    # (on a GPU the comparison would synchronise with the device: there the multiplication always runs)
    if grad_output.ndim == 0 and grad_output.device.type == "cpu" and bool(grad_output == 1):
        return grad
    return grad.mul_(grad_output)


def _register(op: _LossOp) -> Any:
    """``torch.ops.lossk.<name>`` and ``torch.ops.lossk.<name>_reference_vjp``, with fakes and autograd."""
    forward = torch.library.custom_op(
        f"{_LIBRARY}::{op.name}", lambda *args: _value_and_grad(op, *args), mutates_args=(), schema=op.schema
    )
    forward.register_fake(lambda *args: _fake(op, *args))
    vjp_schema = op.schema.split(" -> ")[0][:-1] + ", Tensor grad_output, bool[] wanted) -> Tensor[]"
    vjp = torch.library.custom_op(
        f"{_LIBRARY}::{op.name}_reference_vjp", lambda *args: _reference_vjp(op, *args), mutates_args=(),
        schema=vjp_schema,
    )
    vjp.register_fake(lambda *args: _reference_vjp_fake(op, *args))
    negated = op.negated_target

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        _, *grads = output
        ctx.mark_non_differentiable(*grads)
        ctx.set_materialize_grads(False)  # no zero-filled, input-sized upstream gradients for the grads
        needs = list(ctx.needs_input_grad[:op.n_tensors])
        ctx.others = [needs[k] for k in op.others]
        ctx.negate = negated is not None and needs[negated] and not any(
            w for k, w in zip(op.others, ctx.others) if k != negated) and _autodiff.target_within_input(
            inputs[0].shape, inputs[negated].shape)
        # the input's gradient also gives the target's where it is its negative
        kept = [needs[k] or (k == 0 and ctx.negate) for k in op.differentiable]
        ctx.needs = needs
        ctx.target_shape = inputs[negated].shape if ctx.negate else None
        ctx.arguments = inputs[op.n_tensors:]  # the scalar options and backend
        by_reference = any(ctx.others) and not ctx.negate
        ctx.save_for_backward(*(g if k else None for g, k in zip(grads, kept)),
                              *(inputs[:op.n_tensors] if by_reference else ()))

    def backward(ctx: Any, grad_output: torch.Tensor, *_grads_of_grads: Any) -> tuple[Any, ...]:
        if torch.is_grad_enabled():
            raise RuntimeError(_DOUBLE_BACKWARD.format(name=op.name))
        result: list[Any] = [None] * (op.n_tensors + len(ctx.arguments))
        if grad_output is None:  # (materialize_grads off: only the loss has an upstream gradient)
            return tuple(result)
        saved = ctx.saved_tensors
        grads, tensors = saved[:len(op.differentiable)], saved[len(op.differentiable):]
        for k, grad in zip(op.differentiable, grads):
            if grad is not None:
                result[k] = _scale(op.name, grad, grad_output)
        if ctx.negate:
            result[negated] = _sum_to(-result[0], ctx.target_shape)
            if not ctx.needs[0]:
                result[0] = None
        elif any(ctx.others):
            computed = iter(vjp(*tensors, *ctx.arguments, grad_output, ctx.others))
            for k, wanted in zip(op.others, ctx.others):
                result[k] = next(computed) if wanted else None
        return tuple(result)

    forward.register_autograd(backward, setup_context=setup_context)
    return forward


def _sum_to(grad: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A gradient summed over the axes its argument (of ``shape``) was broadcast along."""
    return grad if tuple(grad.shape) == tuple(shape) else grad.sum_to_size(shape)


class _InPlace(torch.autograd.Function):
    """Eager in-place variant: lossk writes the first array's gradient over it; autograd is told
    (``mark_dirty``). The other fused gradients (a multi-input loss's) are kept as usual."""

    @staticmethod
    def forward(ctx: Any, op: _LossOp, *args: Any) -> Any:
        arrays, tensors, scalars, backend = op.split(args)
        input = arrays[0]
        views = [_to_lossk(a) for a in arrays]
        loss, grads = op.function.value_and_grad(
            *views, inplace=True, backend=backend, **op.lossk_options([_to_lossk(t) for t in tensors], scalars),
        )
        if isinstance(views[0], np.ndarray) and input.dtype == torch.bfloat16:  # lossk wrote into a float32 copy
            input.copy_(torch.from_numpy(views[0]))
        others = [_from_lossk(g, arrays[k]) for g, k in zip(op.gradients(grads)[1:], op.differentiable[1:])]
        ctx.op = op
        ctx.n_args = len(args)
        ctx.mark_dirty(input)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(input, *others)
        return _from_lossk(loss, input), input

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor, _grad_of_input: Any) -> tuple[Any, ...]:
        op = ctx.op
        if torch.is_grad_enabled():
            raise RuntimeError(_DOUBLE_BACKWARD.format(name=op.name))
        result: list[Any] = [None] * ctx.n_args
        if grad_output is not None:
            for k, grad in zip(op.differentiable, ctx.saved_tensors):
                result[k] = _scale(op.name, grad, grad_output)
        return (None, *result)


def _call(op: _LossOp, arrays: tuple[Any, ...], tensors: tuple[Any, ...], scalars: tuple[Any, ...],
          inplace: bool, backend: str) -> torch.Tensor:
    """What every generated function does once its arguments are in the op's order."""
    input = arrays[0]
    # a Python number where an array goes (gaussian_nll_loss's float var, as PyTorch allows): a constant
    arrays = tuple(a if isinstance(a, torch.Tensor) else torch.full_like(input, float(a)) for a in arrays)
    target = arrays[op.arrays.index("target")]
    if op.name in _autodiff.LABEL_TARGETS and target.requires_grad:
        raise ValueError(f"lossk.torch.{op.name}: target holds labels, which lossk does not differentiate; "
                         "pass target.detach()")
    if dict(zip(op.scalar_options, scalars)).get("reduction") == "none":
        arrays = _expanded(op, arrays)
    if inplace and not torch.compiler.is_compiling():
        shapes = _autodiff.broadcast_shapes(op.function, [tuple(a.shape) for a in arrays])
        if shapes is not None and shapes[1] != tuple(input.shape):
            raise ValueError(f"lossk.torch.{op.name}: inplace=True overwrites {op.arrays[0]} with its gradient, "
                             f"which needs the other arrays to broadcast to its shape {tuple(input.shape)}")
        if any(t is not None and t.requires_grad for k, t in enumerate((*arrays, *tensors)) if k in op.others):
            raise ValueError(f"lossk.torch.{op.name}: inplace=True overwrites {op.arrays[0]}, so no gradient with "
                             "respect to target or another tensor argument can be computed; pass them detached")
        loss, *_ = _InPlace.apply(op, *arrays, *tensors, *scalars, backend)
        return loss
    loss, *_ = getattr(getattr(torch.ops, _LIBRARY), op.name)(*arrays, *tensors, *scalars, backend)
    return loss


def _expanded(op: _LossOp, arrays: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """For reduction='none': the arrays of a multi-input loss expanded (views) to the shape they broadcast to
    together, the first always (the loss has that shape) and the others that require grad, so that each fused
    gradient is full-shaped and scales element by element; PyTorch's ``expand`` then sums it back. The arrays of
    a loss of ``(input, target)``, or already of that shape, as they are."""
    shapes = _autodiff.broadcast_shapes(op.function, [tuple(a.shape) for a in arrays])
    if shapes is None:
        return arrays
    expanded, full = shapes
    return tuple(
        a.reshape(own).expand(full) if tuple(a.shape) != full and (k == 0 or a.requires_grad) else a
        for k, (a, own) in enumerate(zip(arrays, expanded))
    )


def _legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    if size_average is None and reduce is None:
        return reduction
    return torch.nn._reduction.legacy_get_string(size_average, reduce)


# --- public functions with PyTorch's signatures --------------------------------------------------------

_INPLACE_DOC = """

    lossk additions (keyword-only): lossk's own options of the loss (see ``lossk.{name}``),
    ``backend`` (``"auto"``, ``"numba"``, ``"cupy"``, ``"array_api"``) and ``inplace``.

    .. warning:: ``inplace=True`` overwrites ``{first}`` with its gradient during the forward pass (as
       Liger-Kernel does), saving one input-sized buffer. After the call ``{first}`` no longer holds what the
       caller passed: use it only for tensors nothing else reads (the logits of a final linear layer). A
       tensor some other operation saved for its own backward makes ``backward()`` fail with PyTorch's
       "modified by an inplace operation" error, and a leaf that requires grad is refused. Under
       ``torch.compile`` the flag has no effect.
"""


def _parameters(name: str, op: _LossOp) -> list[inspect.Parameter]:
    """PyTorch's parameters for the loss, then lossk's own options and ``inplace``, ``backend`` keyword-only."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    namesake = getattr(F, name, None)
    known = {*op.arrays, "size_average", "reduce", *op.array_options, *op.scalar_options}
    if namesake is not None and set(inspect.signature(namesake).parameters) <= known:
        parameters = list(inspect.signature(namesake).parameters.values())
    else:
        positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
        parameters = [inspect.Parameter(n, positional) for n in op.arrays]
    present = {p.name for p in parameters}
    lossk_options = _autodiff.options_of(op.function)
    parameters += [p.replace(kind=keyword) for n, p in lossk_options.items() if n not in present]
    parameters += [inspect.Parameter("inplace", keyword, default=False, annotation=bool),
                   inspect.Parameter("backend", keyword, default="auto", annotation=str)]
    return parameters


def _function(name: str, op: _LossOp) -> Callable[..., torch.Tensor]:
    """A plain Python function (Dynamo traces it like any other) with PyTorch's parameters for ``name``."""
    parameters = _parameters(name, op)
    names = [p.name for p in parameters]
    legacy = "size_average" in names
    reduction = "_legacy_reduction(size_average, reduce, reduction)" if legacy else "reduction"
    scalars = ", ".join(reduction if n == "reduction" else n for n in op.scalar_options)
    positional = [p.name for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keyword_only = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    source = (
        f"def {name}({', '.join(positional)}, *, {', '.join(keyword_only)}):\n"
        f"    return _call(_OP, ({', '.join(op.arrays)},), "
        f"({', '.join(op.array_options)}{',' if op.array_options else ''}), "
        f"({scalars}{',' if op.scalar_options else ''}), inplace, backend)\n"
    )
    namespace: dict[str, Any] = {"_call": _call, "_OP": op, "_legacy_reduction": _legacy_reduction}
    exec(source, namespace)  # noqa: S102 - generated from the loss's own signature, as dataclasses does
    function = namespace[name]
    function.__defaults__ = tuple(p.default for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY
                                  and p.default is not inspect.Parameter.empty) or None
    function.__kwdefaults__ = {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    function.__signature__ = inspect.Signature(parameters, return_annotation=torch.Tensor)
    function.__module__ = __name__
    function.__qualname__ = name
    function.__doc__ = (
        f"``torch.nn.functional.{name}`` computed by ``lossk.{name}``'s fused forward and backward.\n\n"
        f"    See :func:`lossk.{name}` for the formula, its gradient and the options."
        + _INPLACE_DOC.format(name=name, first=op.arrays[0])
    )
    return function


def _module_class(name: str, function: Callable[..., torch.Tensor]) -> type | None:
    """The module class of a loss, named as lossk (and PyTorch) name it, whose forward calls ``function``.

    Where ``torch.nn`` has the class, a subclass of it (PyTorch's constructor, plus lossk's options
    keyword-only); otherwise a ``torch.nn.Module`` taking ``reduction`` and the loss's options. None where
    lossk has no class for the loss.
    """
    class_name = next((n for n in lossk.__all__ if getattr(getattr(lossk, n), "function", None)
                       is getattr(lossk, name)), None)
    if class_name is None:
        return None
    base = getattr(torch.nn, class_name, None)
    signature = inspect.signature(function)
    arrays = _autodiff.arrays_of(getattr(lossk, name))
    forwarded = [p for p in signature.parameters.values() if p.name not in (*arrays, "size_average", "reduce")]
    if base is None:
        return _plain_module_class(class_name, name, function, forwarded)
    torch_options = {p.name for p in forwarded} & set(inspect.signature(base.__init__).parameters)
    extra = [p for p in forwarded if p.name not in torch_options and p.name not in ("weight", "pos_weight")]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        lossk_kwargs = {p.name: kwargs.pop(p.name, p.default) for p in extra}
        base.__init__(self, *args, **kwargs)
        self.lossk_options = lossk_kwargs

    def forward(self: Any, *arrays: torch.Tensor) -> torch.Tensor:
        options = {p.name: getattr(self, p.name, p.default) for p in forwarded if p.name not in self.lossk_options}
        return function(*arrays, **options, **self.lossk_options)

    doc = (f"``torch.nn.{class_name}`` whose forward is :func:`lossk.torch.{name}`. Takes PyTorch's arguments, "
           f"and lossk's keyword-only options ({', '.join(p.name for p in extra)}).")
    return type(class_name, (base,), {"__init__": __init__, "forward": forward, "__doc__": doc,
                                      "__module__": __name__})


def _plain_module_class(class_name: str, name: str, function: Callable[..., torch.Tensor],
                        forwarded: list[inspect.Parameter]) -> type:
    """A ``torch.nn.Module`` for a loss PyTorch lacks: ``Class(reduction="mean", *, <options>)``."""
    options = [p for p in forwarded if p.name != "reduction"]

    def __init__(self: Any, reduction: str = "mean", **kwargs: Any) -> None:  # noqa: N807
        torch.nn.Module.__init__(self)
        unknown = set(kwargs) - {p.name for p in options}
        if unknown:
            raise TypeError(f"{class_name} got unexpected argument(s) {', '.join(sorted(unknown))}")
        self.reduction = reduction
        self.lossk_options = {p.name: kwargs.get(p.name, p.default) for p in options}

    def forward(self: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return function(input, target, reduction=self.reduction, **self.lossk_options)

    doc = (f"A ``torch.nn.Module`` whose forward is :func:`lossk.torch.{name}` (PyTorch has no such loss). "
           f"Takes ``reduction`` and the keyword options {', '.join(p.name for p in options)}.")
    return type(class_name, (torch.nn.Module,), {"__init__": __init__, "forward": forward, "__doc__": doc,
                                                 "__module__": __name__})


# --- linear_cross_entropy: three differentiable arguments ------------------------------------------------

_NO_IGNORED_CLASS = -(2**63)
"""PyTorch's ``ignore_index=None`` (no class ignored): an index no target can hold."""

_LINEAR_SCHEMA = (
    "(Tensor input, Tensor linear_weight, Tensor target, Tensor? linear_bias, Tensor? weight, str reduction, "
    "int ignore_index, float label_smoothing, float z_loss, float? softcap, int? chunk_size, str backend"
)
_LINEAR_OPTIONS = ("reduction", "ignore_index", "label_smoothing", "z_loss", "softcap", "chunk_size", "backend")


def _linear_arguments(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
                      linear_bias: torch.Tensor | None, weight: torch.Tensor | None,
                      *options: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    arrays = tuple(_to_lossk(t) for t in (input, linear_weight, target))
    return arrays, {"linear_bias": _to_lossk(linear_bias), "weight": _to_lossk(weight),
                    **dict(zip(_LINEAR_OPTIONS, options))}


def _linear_gradients(grads: tuple[Any, ...], like: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    d_input, d_weight, d_bias = grads
    return (_from_lossk(d_input, like[0]), _from_lossk(d_weight, like[1]),
            like[0].new_empty((0,)) if d_bias is None else _from_lossk(d_bias, like[0]))


@torch.library.custom_op(f"{_LIBRARY}::linear_cross_entropy", mutates_args=(),
                         schema=_LINEAR_SCHEMA + ") -> (Tensor, Tensor, Tensor, Tensor)")
def _linear_forward(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
                    linear_bias: torch.Tensor | None, weight: torch.Tensor | None,
                    *options: Any) -> tuple[torch.Tensor, ...]:
    """Loss and the three gradients in one chunked pass; for reduction='none' the loss alone (the gradient
    of a weighted sum of rows is computed in the backward pass, which knows the weights)."""
    arrays, kwargs = _linear_arguments(input, linear_weight, target, linear_bias, weight, *options)
    if kwargs["reduction"] == "none":
        loss = lossk.linear_cross_entropy(*arrays, **kwargs)
        return _from_lossk(loss, input), input.new_empty((0,)), input.new_empty((0,)), input.new_empty((0,))
    loss, grads = lossk.linear_cross_entropy.value_and_grad(*arrays, **kwargs)
    return (_from_lossk(loss, input), *_linear_gradients(grads, (input, linear_weight)))


@_linear_forward.register_fake
def _linear_forward_fake(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
                         linear_bias: torch.Tensor | None, weight: torch.Tensor | None,
                         reduction: str, *options: Any) -> tuple[torch.Tensor, ...]:
    if reduction == "none":
        empty = input.new_empty((0,))
        return input.new_empty((input.shape[0],)), empty, empty.clone(), empty.clone()
    bias = input.new_empty((0,)) if linear_bias is None else torch.empty_like(linear_bias)
    return input.new_empty(()), torch.empty_like(input), torch.empty_like(linear_weight), bias


@torch.library.custom_op(f"{_LIBRARY}::linear_cross_entropy_backward", mutates_args=(),
                         schema=_LINEAR_SCHEMA + ", Tensor grad_output) -> (Tensor, Tensor, Tensor)")
def _linear_backward(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
                     linear_bias: torch.Tensor | None, weight: torch.Tensor | None,
                     *options_and_grad_output: Any) -> tuple[torch.Tensor, ...]:
    """The three gradients of ``sum(grad_output * loss)`` for reduction='none'."""
    *options, grad_output = options_and_grad_output
    arrays, kwargs = _linear_arguments(input, linear_weight, target, linear_bias, weight, *options)
    _, grads = lossk.linear_cross_entropy.value_and_grad(*arrays, grad_output=_to_lossk(grad_output), **kwargs)
    return _linear_gradients(grads, (input, linear_weight))


@_linear_backward.register_fake
def _linear_backward_fake(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
                          linear_bias: torch.Tensor | None, *rest: Any) -> tuple[torch.Tensor, ...]:
    bias = input.new_empty((0,)) if linear_bias is None else torch.empty_like(linear_bias)
    return torch.empty_like(input), torch.empty_like(linear_weight), bias


def _linear_setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
    ctx.mark_non_differentiable(*output[1:])
    ctx.set_materialize_grads(False)
    if ctx.needs_input_grad[4]:
        raise NotImplementedError("lossk.torch.linear_cross_entropy does not differentiate the class weight "
                                  "`weight`; pass it detached")
    ctx.reduction = inputs[5]
    ctx.has_bias = inputs[3] is not None
    ctx.arguments = inputs[5:]
    if ctx.reduction == "none":
        ctx.save_for_backward(*inputs[:5])
    else:
        ctx.save_for_backward(*output[1:])


def _linear_backward_formula(ctx: Any, grad_output: torch.Tensor, *_grads_of_grads: Any) -> tuple[Any, ...]:
    if torch.is_grad_enabled():
        raise RuntimeError(_DOUBLE_BACKWARD.format(name="linear_cross_entropy"))
    if grad_output is None:
        return (None,) * (5 + len(ctx.arguments))
    if ctx.reduction == "none":
        d_input, d_weight, d_bias = _linear_backward(*ctx.saved_tensors, *ctx.arguments, grad_output)
    else:
        d_input, d_weight, d_bias = (_scale("linear_cross_entropy", g, grad_output) for g in ctx.saved_tensors)
    return (d_input, d_weight, None, d_bias if ctx.has_bias else None, None, *(None for _ in ctx.arguments))


_linear_forward.register_autograd(_linear_backward_formula, setup_context=_linear_setup_context)


def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: Any = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """``torch.nn.functional.linear_cross_entropy`` computed by :func:`lossk.linear_cross_entropy`.

    The logits are never materialised: lossk goes over the tokens in chunks in the forward pass and keeps
    the gradients of ``input``, ``linear_weight`` and ``linear_bias`` (for reduction 'none' it computes them
    in the backward pass, which knows each row's upstream gradient). ``ignore_index=None`` (PyTorch's
    default) ignores no class. PyTorch's ``options`` is accepted and has no effect: lossk always chunks.
    lossk additions (keyword-only): ``z_loss``, ``softcap``, ``chunk_size``, ``backend`` (see
    :func:`lossk.linear_cross_entropy`). The class ``weight`` is not differentiated.
    """
    index = _NO_IGNORED_CLASS if ignore_index is None else ignore_index
    loss, *_ = _linear_forward(input, linear_weight, target, linear_bias, weight, reduction, index,
                               label_smoothing, z_loss, softcap, chunk_size, backend)
    return loss


__all__.append("linear_cross_entropy")

_OPS: dict[str, Any] = {}
for _name, _function_of_lossk in _autodiff.loss_functions().items():
    _op = _describe(_name, _function_of_lossk)
    _OPS[_name] = _register(_op)
    globals()[_name] = _function(_name, _op)
    __all__.append(_name)
    _class = _module_class(_name, globals()[_name])
    if _class is not None:
        globals()[_class.__name__] = _class
        __all__.append(_class.__name__)
del _name, _function_of_lossk, _op, _class
