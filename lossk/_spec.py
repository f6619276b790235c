"""The loss-spec record: everything lossk knows about one elementwise loss, in one place.

Each elementwise loss is one :class:`ElementwiseLoss` in a definition module of ``lossk._losses``
(``regression``, ``binary``, ``divergence``); ``lossk._losses.ELEMENTWISE_LOSSES`` is the table. Everything
else is derived from it:

- the public function (``lossk.<name>``, its ``.grad`` and ``.value_and_grad``), its signature, its
  validation and its numpydoc docstring (``lossk._loss_function``), and its class (``lossk._modules``);
- the reference backend, which evaluates :attr:`ElementwiseLoss.formula` on arrays of any Array API
  library (``lossk._reference._elementwise``);
- the Numba kernel, a generated module per loss whose loop inlines :attr:`ElementwiseLoss.element`
  (``lossk._losses.generate`` writes ``kernels/numba/pointwise/<name>.py``);
- the tests: data drawn from :attr:`ElementwiseLoss.domain` and the option examples, the oracle, the
  finite differences of the first and second derivatives.

A loss's per-element formulation is written twice, with the same operations in the same order: once for
arrays (``formula(xp, x, y, *, order, **options) -> (loss, d1, d2)``, the specification every kernel is
checked against) and once for scalars (``element(x, y, *options) -> (loss, d1, d2)``, what the kernels
inline; it may use only the helpers of :mod:`lossk._losses.scalar`, :attr:`ElementwiseLoss.constants` and the
loss's own :attr:`ElementwiseLoss.scalar_helpers`).
``d1`` and ``d2`` are the first and second derivatives of the per-element loss with respect to the
differentiable input; ``order`` (0, 1 or 2) says which of them the reference needs (the others may be
``None``). The kernels compute ``d2`` always and store it only when asked (a ``hess`` buffer), so LLVM
removes it from the loops that do not.

The rules shared by every elementwise loss live here, once: what ``mean`` divides by
(:func:`mean_divisor`), the rewrite of one loss into another (:func:`resolve`), and the validation of the
arguments (:func:`prepare_arguments`).
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

from ._array_api import Array, namespace_of
from ._validation import REDUCTIONS, check_array, check_floating, check_reduction, check_same_shape

ARRAY_KIND = "array"
SCALAR_KIND = "scalar"
FLAG_KIND = "flag"
REDUCTION_KIND = "reduction"


@dataclass(frozen=True)
class Option:
    """A keyword option of a loss, with PyTorch's name and default.

    ``kind`` is ``"reduction"``, ``"scalar"`` (a number, validated by ``check`` and passed as a float),
    ``"flag"`` (passed as a bool) or ``"array"`` (``None`` or a floating array of the inputs' library).
    An array option named ``weight`` multiplies the per-element loss and its derivatives and is applied by
    the backends themselves; every other option is passed to the loss's ``formula`` and ``element``.
    """

    name: str
    default: Any
    kind: str
    doc: str
    """One line for the docstring's Parameters section."""
    check: Callable[[str, Any], None] | None = None
    """Scalars: raises ``ValueError`` naming the option when the value is not allowed."""
    broadcast: bool = False
    """Arrays: ``False``, the input's shape exactly; ``True``, any shape that broadcasts to the input's."""
    choices: tuple[str, ...] = REDUCTIONS
    """The reduction: the values allowed."""
    examples: tuple[Any, ...] = ()
    """Scalars and flags: values the shared tests try besides the default."""
    draw: Callable[[Any, tuple[int, ...]], Any] | None = None
    """Arrays: ``draw(rng, input_shape)``, a NumPy array the shared tests pass for this option."""
    neutral: float = 1.0
    """Arrays read by ``element``: the value that stands for the option not given (``element`` never sees
    ``None``: its body must stay one branch-free block that Numba inlines and LLVM vectorises)."""

    @property
    def annotation(self) -> str:
        return {ARRAY_KIND: "Array | None", SCALAR_KIND: "float", FLAG_KIND: "bool", REDUCTION_KIND: "str"}[self.kind]


def reduction_option(choices: tuple[str, ...] = REDUCTIONS) -> Option:
    listing = ", ".join(f"``{c!r}``" for c in choices)
    return Option(
        "reduction", "mean", REDUCTION_KIND,
        f"{listing}: the unreduced loss, its mean or its sum.", choices=choices,
    )


def weight_option(*, broadcast: bool = False, draw: Callable[[Any, tuple[int, ...]], Any] | None = None) -> Option:
    shape = "broadcasting to ``input``'s shape" if broadcast else "shaped like ``input``"
    return Option(
        "weight", None, ARRAY_KIND, f"A weight per element ({shape}), multiplying the loss and its derivatives.",
        broadcast=broadcast, draw=draw or (lambda rng, shape: rng.uniform(0, 2, shape)),
    )


@dataclass(frozen=True)
class Domain:
    """Where a loss's arguments live: how the shared tests and the bench draw them.

    ``draw(rng, shape, options, differentiable)`` returns NumPy float64 arrays for the loss's positional
    arguments (``input``, ``target``, ...). With ``differentiable=True`` the values stay away from kinks
    and clamps (finite differences need a smooth neighbourhood). ``extremes`` are input values the tests
    mix in to check that the loss and its derivatives stay finite (saturated logits).
    """

    draw: Callable[..., dict[str, Any]]
    extremes: tuple[float, ...] = ()


@dataclass(frozen=True)
class Anchor:
    """Literal per-element values from the test suite of the library a loss's formulation comes from.

    The shared tests check both the loss's oracle and lossk against them (``reduction="none"``), so that a
    torch-written oracle is itself checked once against the anchor.
    """

    source: str
    """Where the numbers come from: the anchor's test file and test name."""
    arrays: Mapping[str, tuple[float, ...]]
    """The positional arguments by name: ``input``, ``target``, ..."""
    expected: tuple[float, ...]
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    atol: float = 1e-6
    rtol: float = 0.0
    """Relative tolerance: where the anchor's values were computed in float32, its rounding (2^-23)."""


@dataclass(frozen=True)
class ElementwiseLoss:
    """One elementwise loss: the per-element formulation and everything derived from it (module docstring)."""

    name: str
    """The public function's name, PyTorch's where PyTorch has the loss: ``huber_loss``."""
    class_name: str
    """The class's name, PyTorch's where it has one: ``HuberLoss``."""
    summary: str
    """The docstring's first line."""
    math: str
    """reST math of the per-element loss and its derivatives, for the docstring."""
    options: tuple[Option, ...]
    """Keyword options in PyTorch's order, ``reduction`` included."""
    formula: Callable[..., tuple[Array, Array | None, Array | None]]
    """``formula(xp, x, y, *, order, **options) -> (loss, d1, d2)`` on arrays in the compute dtype."""
    element: Callable[..., tuple[Any, Any, Any]]
    """``element(x, y, *options) -> (loss, d1, d2)`` on scalars; options in :attr:`options`' order, an array
    option not given replaced by its ``neutral`` value."""
    domain: Domain
    oracle: str | Callable[..., Any]
    """``"torch.nn.functional.<name>"``, or ``oracle(torch, *inputs, reduction, **options)``: a small
    torch-written formula where PyTorch lacks the loss (checked against the anchor's own test values)."""
    example: str
    """A doctest: the docstring's Examples section."""
    notes: str = ""
    """Paragraphs for the docstring (after the formula)."""
    references: tuple[str, ...] = ()
    """Where the formulation comes from: papers, libraries (numpydoc References entries)."""
    class_positional: tuple[str, ...] = ("reduction",)
    """Options the class takes positionally, as ``torch.nn``'s class does (its non-deprecated ones)."""
    mean_divisor: str = "count"
    """What ``mean`` divides the sum by when a ``weight`` is given: ``"count"`` (the element count) or
    ``"weight_sum"`` (the sum of the weights). Without a weight it is always the element count."""
    rewrite: Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None] | None = None
    """``rewrite(options)``: ``(other loss, its options)`` where this loss is exactly another one."""
    constants: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    """Module-level constants ``element`` reads (written into the generated kernel module)."""
    scalar_helpers: tuple[Callable[..., Any], ...] = ()
    """Scalar functions of the loss's own that :attr:`element` and :attr:`hessian_floor_element` call (the terms
    both need, written once), under the rules of ``element``; the generated module copies them under their names,
    each inlined like ``element``."""
    inputs: tuple[str, ...] = ("input", "target")
    """The positional array arguments, all of one shape (the first's), unless :attr:`input_shape` says otherwise."""
    differentiable: tuple[str, ...] = ("input",)
    """The arguments the derivatives are taken with respect to. With two (``gaussian_nll_loss``'s
    ``input`` and ``var``), ``formula`` returns ``(loss, (d1 per argument), (d2 per argument))`` and
    ``element`` ``(loss, d1_a, d1_b, d2_a, d2_b)``; ``.grad`` then returns one gradient per argument, in this
    order (``lossk._multi_input``), and the Numba kernel has one gradient and Hessian stream per argument."""
    input_shape: Callable[[str, tuple[int, ...], tuple[int, ...]], tuple[int, ...]] | None = None
    """``input_shape(name, first_shape, shape)``: the shape a non-first input of shape ``shape`` is reshaped to
    before it is broadcast to the first input's shape (raises ``ValueError`` naming the argument when it is not
    allowed); ``None``: every input has the first's shape. A broadcast input's gradient is summed back to its
    own shape."""
    row_mean: bool = False
    """``True``: the per-element losses are averaged over the last axis first (one loss per row), then reduced
    (``multilabel_soft_margin_loss``); 'none' returns ``input.shape[:-1]`` and 'mean' divides by the row count.
    Applied around any backend's elementwise implementation by ``lossk._multi_input``."""
    cuda_function: str = ""
    """The CUDA device function computing one element (``kernels/cuda/pointwise.cuh``, selected in
    ``kernels/cuda/elementwise.cu`` by macro); default ``<name>_element``."""
    check_values: Callable[[ModuleType, dict[str, Array]], None] | None = None
    """Data-dependent validation of the inputs (BCE's probabilities in [0, 1]); host-readable arrays only."""
    anchors: tuple[Anchor, ...] = ()
    """The anchor library's own test values, where the oracle is torch-written."""
    torch_equivalent: str = ""
    """The ``torch.nn.functional`` name of the loss where PyTorch has it but :attr:`oracle` is torch-written
    (a stabler formulation than PyTorch's own); otherwise :attr:`torch_function` reads it from :attr:`oracle`."""
    hessian_floor: Callable[..., Any] | None = None
    """``hessian_floor(xp, x, y, **options)``: the floor of the surrogate Hessian on arrays (an array, or a number
    for a constant floor); ``None``: 0. The surrogate second derivative is ``where(d2 < floor, floor, d2)``, taken
    before the weights and the reduction scale multiply it (``lossk.boosting``'s ``hessian="surrogate"``, whose
    module docstring derives each floor)."""
    hessian_floor_element: Callable[..., Any] | None = None
    """The same floor on scalars, ``hessian_floor_element(x, y, *options)``, as :attr:`element` is to
    :attr:`formula` (the kernels inline it); given exactly when :attr:`hessian_floor` is."""

    def __post_init__(self) -> None:
        if (self.hessian_floor is None) != (self.hessian_floor_element is None):
            raise ValueError(f"{self.name}: hessian_floor and hessian_floor_element are given together")
        if not self.cuda_function:
            object.__setattr__(self, "cuda_function", f"{self.name}_element")

    @property
    def reduction(self) -> Option:
        return next(o for o in self.options if o.kind == REDUCTION_KIND)

    @property
    def keyword_options(self) -> tuple[Option, ...]:
        """Every option except ``reduction``: what implementations receive as keywords."""
        return tuple(o for o in self.options if o.kind != REDUCTION_KIND)

    @property
    def formula_options(self) -> tuple[Option, ...]:
        """The options ``formula`` and ``element`` take, in order (all but ``reduction`` and ``weight``)."""
        return tuple(o for o in self.keyword_options if o.name != "weight")

    @property
    def flag_options(self) -> tuple[Option, ...]:
        """The flags among :attr:`formula_options`: each generated kernel has their values compiled in."""
        return tuple(o for o in self.formula_options if o.kind == FLAG_KIND)

    @property
    def weighted(self) -> bool:
        return any(o.name == "weight" for o in self.options)

    @property
    def torch_function(self) -> str | None:
        """The ``torch.nn.functional`` name of the loss, where PyTorch has it."""
        prefix = "torch.nn.functional."
        if isinstance(self.oracle, str) and self.oracle.startswith(prefix):
            return self.oracle[len(prefix):]
        return self.torch_equivalent or None


def check_supported(spec: ElementwiseLoss, *, multi_input: bool = False) -> None:
    """The two-array builders handle one differentiable argument, ``input``, and ``(input, target)``; the
    multi-input builders (``multi_input=True``) any inputs and one or two differentiable ones."""
    if multi_input:
        if not 1 <= len(spec.differentiable) <= 2 or not set(spec.differentiable) <= set(spec.inputs):
            raise NotImplementedError(f"{spec.name}: one or two differentiable inputs, got {spec.differentiable}")
    elif spec.differentiable != ("input",) or spec.inputs != ("input", "target"):
        raise NotImplementedError(f"{spec.name}: losses of {spec.inputs} differentiated with respect to "
                                  f"{spec.differentiable} take the multi-input builders (lossk._multi_input)")


def is_multi_input(spec: ElementwiseLoss) -> bool:
    """Whether ``spec`` needs the multi-input kernels (other inputs than ``(input, target)``, or two gradients)."""
    return spec.inputs != ("input", "target") or spec.differentiable != ("input",)


def flag_combinations(spec: ElementwiseLoss) -> list[dict[str, bool]]:
    """Every combination of the loss's flag values (one empty one for a loss without flags), the defaults first."""
    flags = spec.flag_options
    combinations = [dict(zip((o.name for o in flags), values))
                    for values in itertools.product((True, False), repeat=len(flags))]
    return sorted(combinations, key=lambda values: sum(values[o.name] != o.default for o in flags))


def kernel_name(spec: ElementwiseLoss, flags: Mapping[str, Any]) -> str:
    """The generated Numba kernel (``kernels/numba/pointwise/<loss>.py``) for these values of the loss's flags:
    ``kernel`` for a loss without flags, else one per combination with the values compiled in, such as
    ``kernel_log_input_not_full`` (``log_input=True, full=False``); it takes every other option as usual."""
    return "_".join(["kernel", *(o.name if flags[o.name] else f"not_{o.name}" for o in spec.flag_options)])


def surrogate_hessian(xp: ModuleType, spec: ElementwiseLoss, d2: Array, x: Array, y: Array, **options: Any) -> Array:
    """``d2`` raised to the loss's :attr:`ElementwiseLoss.hessian_floor` (0 without one), NaN kept: the reference
    of the kernels' surrogate Hessian, the same select in the same place (before weighting)."""
    floor = 0.0 if spec.hessian_floor is None else spec.hessian_floor(xp, x, y, **options)
    floor = xp.asarray(floor, dtype=d2.dtype) if isinstance(floor, (int, float)) else floor
    return xp.where(d2 < floor, floor, d2)


# ---- rules shared by every elementwise loss -----------------------------------------------------------------


def mean_divisor(
    spec: ElementwiseLoss, reduction: str, shape: tuple[int, ...], weight: Array | None,
    weight_sum: Callable[[Array], Any],
) -> tuple[str, Any]:
    """``(reduction, divisor)``: 'batchmean' becomes 'mean' over ``shape[0]``; 'mean' divides by the element
    count, or by ``weight_sum(weight)`` for a loss whose ``mean_divisor`` is ``"weight_sum"``.

    ``weight_sum`` is the backend's own sum (a 0-d array of the weights' library: no host sync).
    """
    if reduction == "batchmean":
        return "mean", shape[0] if shape else 1
    if reduction == "mean" and weight is not None and spec.mean_divisor == "weight_sum":
        return reduction, weight_sum(weight)
    return reduction, math.prod(shape)


def resolve(spec: ElementwiseLoss, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The loss (and options) that a call of ``spec`` with ``options`` computes: itself, or its rewrite."""
    if spec.rewrite is not None:
        rewritten = spec.rewrite(options)
        if rewritten is not None:
            return rewritten
    return spec.name, options


def prepare_arguments(spec: ElementwiseLoss, arrays: dict[str, Any], options: dict[str, Any]) -> tuple[ModuleType, dict[str, Any]]:
    """Validate one call: the namespace of its arrays and its options ready for the implementations.

    Inputs must be floating arrays of one library and one shape; scalar options pass their ``check`` and
    become floats, flags bools; array options are floating and shaped like ``input`` (or, where the option
    broadcasts, are broadcast to it).
    """
    for name, value in arrays.items():
        check_array(name, value)
    array_options = {o.name: options[o.name] for o in spec.keyword_options if o.kind == ARRAY_KIND}
    xp = namespace_of(**arrays, **array_options)
    first_name, first = next(iter(arrays.items()))
    for name, value in arrays.items():
        check_floating(name, value, xp)
        if name != first_name and spec.input_shape is not None:
            shape = spec.input_shape(name, tuple(first.shape), tuple(value.shape))
            arrays[name] = _broadcast(name, xp.reshape(value, shape), first, xp)
        elif name != first_name:
            check_same_shape(name, value, first_name, first)
    check_reduction(options["reduction"], spec.reduction.choices)
    prepared: dict[str, Any] = {}
    for option in spec.keyword_options:
        value = options[option.name]
        if option.kind == SCALAR_KIND:
            if option.check is not None:
                option.check(option.name, value)
            value = float(value)
        elif option.kind == FLAG_KIND:
            value = bool(value)
        elif value is not None:
            check_floating(option.name, value, xp)
            value = _broadcast(option.name, value, first, xp) if option.broadcast else value
            if not option.broadcast:
                check_same_shape(option.name, value, first_name, first)
        prepared[option.name] = value
    if spec.check_values is not None:
        spec.check_values(xp, arrays)
    return xp, prepared


def _broadcast(name: str, value: Array, input: Array, xp: ModuleType) -> Array:
    """A per-element option broadcast to the input's shape, as PyTorch does."""
    try:
        return xp.broadcast_to(value, tuple(input.shape))
    except (ValueError, RuntimeError) as error:
        raise ValueError(
            f"{name} of shape {tuple(value.shape)} does not broadcast to the input's shape {tuple(input.shape)}"
        ) from error


# ---- signatures and docstrings ------------------------------------------------------------------------------


def parameters(spec: ElementwiseLoss) -> list[inspect.Parameter]:
    """The loss's PyTorch-style parameters: arrays positional-only, options keyword-only."""
    positional = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY, annotation="Array") for n in spec.inputs]
    keywords = [
        inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default, annotation=o.annotation)
        for o in spec.options
    ]
    return positional + keywords


def docstring(spec: ElementwiseLoss) -> str:
    """The public function's numpydoc docstring, from the spec."""
    lines = [spec.summary, "", spec.math.strip("\n"), ""]
    if spec.notes:
        lines += [inspect.cleandoc(spec.notes), ""]
    if spec.torch_function:
        lines += [f"PyTorch equivalent: ``torch.nn.functional.{spec.torch_function}``.", ""]
    lines += ["Parameters", "----------"]
    for name in spec.inputs:
        lines += [f"{name} : Array", f"    {_INPUT_DOCS.get(name, 'An array shaped like ``input``.')}"]
    for option in spec.options:
        lines += [f"{option.name} : {option.annotation}, default {option.default!r}", f"    {option.doc}"]
    lines += [
        "backend : str, default 'auto'",
        "    ``'auto'``, ``'array_api'`` (the pure Array API reference), ``'numba'`` or ``'cupy'``.",
        "",
        "Returns",
        "-------",
        "Array",
        "    The loss in ``input``'s dtype: 0-d for ``'mean'`` and ``'sum'``, shaped like "
        + ("``input.shape[:-1]``" if spec.row_mean else "``input``") + " for ``'none'``.",
        "    ``.grad`` returns d loss / d input (shaped like ``input``), ``.value_and_grad`` both."
        if len(spec.differentiable) == 1 else
        f"    ``.grad`` returns the tuple ``({', '.join(f'grad_{n}' for n in spec.differentiable)})`` (each shaped "
        "like its argument), ``.value_and_grad`` ``(loss, that tuple)``.",
    ]
    if spec.references:
        lines += ["", "References", "----------"]
        lines += [f".. [{i}] {reference}" for i, reference in enumerate(spec.references, 1)]
    lines += ["", "Examples", "--------", inspect.cleandoc(spec.example)]
    return "\n".join(lines)


_INPUT_DOCS = {
    "input": "The prediction (floating dtype; float16 and bfloat16 compute in float32).",
    "target": "The target, shaped like ``input``.",
    "input1": "The first score (floating dtype; float16 and bfloat16 compute in float32).",
    "input2": "The second score, shaped like ``input1``.",
    "var": ("The variance (>= 0): an array shaped like ``input``, or like ``input`` with one fewer dimension or "
            "a last dimension 1, or a Python float (then no gradient for it). Clamped to ``eps``."),
}
