"""What the benchmark times: each loss with its inputs, sizes, minimum bytes and every peer's formulation.

A :class:`Case` is one loss at its PyTorch defaults (``reduction="mean"``), forward and backward with
respect to its first argument, in float32. Its :class:`Layout` turns a size into array shapes, makes
seeded inputs and counts the minimum bytes a fused forward+backward must move (the GB/s column). The
peers' formulations live here too: the obvious several-pass NumPy code (written against ``xp`` so CuPy runs
it unchanged on a GPU) and the JAX forward that ``jax.value_and_grad`` differentiates; for an elementwise
loss both are its spec's array formulation.

The elementwise cases come from the loss-spec table (``lossk._losses``): a new elementwise loss gets its
bench row with no edit here. A loss of another kind is a ``Case`` added to ``CASES``; a new input layout
needs a new ``Layout``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np

from lossk._losses import ELEMENTWISE_LOSSES
from lossk._spec import ARRAY_KIND, ElementwiseLoss

Shape = tuple[int, ...]
FLOAT32_BYTES = 4
INDEX_BYTES = 8
"""Class-index targets are int64 (PyTorch's requirement), except for JAX, which has no int64 by default."""


def parse_size(token: str) -> Shape:
    """``"1048576"``, ``"2^20"``, ``"1e6"`` or ``"2048x32768"`` -> a tuple of positive integers."""
    parts = token.strip().lower().split("x")
    values = tuple(_parse_count(part) for part in parts)
    if not values or any(v < 1 for v in values):
        raise ValueError(f"size {token!r}: every dimension must be a positive integer")
    return values


def _parse_count(text: str) -> int:
    text = text.strip().replace("_", "")
    if "^" in text:
        base, exponent = text.split("^", 1)
        return int(base) ** int(exponent)
    if "e" in text:
        value = float(text)
        if value != int(value):
            raise ValueError(f"{text!r} is not an integer")
        return int(value)
    return int(text)


def size_label(shape: Shape) -> str:
    """``(1048576,)`` -> ``"2^20"``, ``(1000,)`` -> ``"1000"``, ``(2048, 32768)`` -> ``"2048x32768"``."""
    if len(shape) == 1 and shape[0] >= 1024 and shape[0] & (shape[0] - 1) == 0:
        return f"2^{shape[0].bit_length() - 1}"
    return "x".join(map(str, shape))


class Layout(ABC):
    """How a loss's arguments are shaped, made and counted."""

    description: str

    @abstractmethod
    def shape(self, requested: Shape) -> Shape:
        """The shape this layout uses for a size given on the command line."""

    @abstractmethod
    def sweep(self, *, quick: bool, gpu: bool) -> list[Shape]:
        """The default sizes."""

    @abstractmethod
    def inputs(self, shape: Shape, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Seeded host arrays, in the loss's positional order."""

    @abstractmethod
    def min_bytes(self, shape: Shape) -> int:
        """Bytes a fused forward+backward must read and write at least."""

    def elements(self, shape: Shape) -> int:
        """The size the plot's x axis shows: input elements (logits, for the classification layouts)."""
        return math.prod(shape)


class Elementwise(Layout):
    """Input and target of n float32 values drawn from the loss's spec domain; the gradient is n float32
    values: 12 bytes per element."""

    description = "input, target and gradient: 12 bytes per element"

    def __init__(self, spec: ElementwiseLoss) -> None:
        self.spec = spec

    def shape(self, requested: Shape) -> Shape:
        return (math.prod(requested),)

    def sweep(self, *, quick: bool, gpu: bool) -> list[Shape]:
        exponents: dict[tuple[bool, bool], tuple[int, ...]] = {
            (False, False): (16, 18, 20, 22, 24),
            (True, False): (16, 20, 22),
            (False, True): (20, 22, 24, 26, 28),
            (True, True): (20, 24, 28),
        }
        return [(1 << e,) for e in exponents[quick, gpu]]

    def inputs(self, shape: Shape, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        # the smooth part of the domain (no kinks, no clamped probabilities): every peer's gradient is defined
        drawn = self.spec.domain.draw(rng, shape, _scalar_options(self.spec), True)
        return tuple(np.asarray(drawn[name], dtype=np.float32) for name in self.spec.inputs)

    def min_bytes(self, shape: Shape) -> int:
        return 3 * math.prod(shape) * FLOAT32_BYTES


class Classes(Layout):
    """Logits (N, V) float32 and N int64 class indices; the gradient is (N, V): 2 N V x 4 + 8 N bytes.

    A size given as one number n means n logits: V = min(n, 32768) classes and N = n // V rows.
    """

    description = "logits read once, gradient written once, int64 targets: 8 N V + 8 N bytes"
    default_classes = 32768

    def shape(self, requested: Shape) -> Shape:
        if len(requested) == 2:
            return requested
        n = math.prod(requested)
        classes = min(n, self.default_classes)
        return (max(1, n // classes), classes)

    def sweep(self, *, quick: bool, gpu: bool) -> list[Shape]:
        sweeps: dict[tuple[bool, bool], list[Shape]] = {
            (False, False): [(2048, 4096), (128, 32768), (512, 32768), (2048, 32768)],
            (True, False): [(256, 32768), (2048, 32768)],
            (False, True): [(1024, 32768), (4096, 32768), (16384, 32768), (4096, 131072)],
            (True, True): [(4096, 32768), (4096, 131072)],
        }
        return sweeps[quick, gpu]

    def inputs(self, shape: Shape, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        rows, classes = shape
        logits = 2 * rng.standard_normal(shape, dtype=np.float32)
        return logits, rng.integers(0, classes, rows, dtype=np.int64)

    def min_bytes(self, shape: Shape) -> int:
        rows, classes = shape
        return 2 * rows * classes * FLOAT32_BYTES + rows * INDEX_BYTES


class LinearClasses(Layout):
    """Hidden states (N, H), a linear head (V, H) and N int64 class indices; the logits (N, V) need not exist.

    Compute-bound (6 N H V multiply-adds forward and backward), so GB/s is low by nature; the minimum bytes
    are the inputs read once and both gradients (input and head) written once: 8 (N + V) H + 8 N. A size
    NxHxV is taken as given; NxV uses H = 512; one number n means n logits, as for :class:`Classes`.
    """

    description = (
        "compute-bound; hidden states and head read once, both gradients written once: 8 (N + V) H + 8 N bytes"
    )
    default_hidden = 512

    def shape(self, requested: Shape) -> Shape:
        if len(requested) == 3:
            return requested
        rows, classes = Classes().shape(requested)
        return (rows, self.default_hidden, classes)

    def sweep(self, *, quick: bool, gpu: bool) -> list[Shape]:
        sweeps: dict[tuple[bool, bool], list[Shape]] = {
            # 4096x512x32768 takes 5-18 s per call on a 2-core CPU: ask for it with --sizes.
            (False, False): [(1024, 512, 32768)],
            (True, False): [(1024, 256, 8192)],
            (False, True): [(4096, 512, 32768), (8192, 4096, 32768)],
            (True, True): [(4096, 512, 32768)],
        }
        return sweeps[quick, gpu]

    def inputs(self, shape: Shape, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        rows, hidden, classes = shape
        hidden_states = rng.standard_normal((rows, hidden), dtype=np.float32)
        head = rng.standard_normal((classes, hidden), dtype=np.float32) * np.float32(hidden**-0.5)
        return hidden_states, head, rng.integers(0, classes, rows, dtype=np.int64)

    def min_bytes(self, shape: Shape) -> int:
        rows, hidden, classes = shape
        return 2 * (rows + classes) * hidden * FLOAT32_BYTES + rows * INDEX_BYTES

    def elements(self, shape: Shape) -> int:
        rows, _, classes = shape
        return rows * classes


@dataclass(frozen=True)
class Case:
    """One loss, forward and backward, as lossk and each peer compute it."""

    name: str
    """The name on the command line."""
    lossk_name: str
    """The ``lossk`` function (and dispatch registry name)."""
    torch_name: str | None
    """The ``torch.nn.functional`` function PyTorch's users would compare with (:func:`torch_name`); the torch
    providers skip the case where PyTorch has no function of that name."""
    layout: Layout
    several_pass: Callable[..., tuple[Any, Any]]
    """``(xp, *arrays, **options) -> (loss, grad)``: the obvious NumPy / CuPy code, one array op at a time."""
    jax_loss: Callable[..., Any]
    """``(jnp, *arrays, **options) -> loss``, differentiated by ``jax.value_and_grad``."""
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Keyword options, the same for lossk, PyTorch and the peers' formulations."""
    lossk_dispatch: str | None = None
    """The registry loss that ``backend=`` selects, when it is not ``lossk_name`` itself."""
    differentiable: tuple[int, ...] = (0,)
    """Positions of the arguments differentiated; with more than one, ``grad`` is a tuple in this order."""
    liger: Callable[[ModuleType], Callable[..., Any]] | None = None
    """Builds Liger-Kernel's loss (from ``liger_kernel.transformers``) taking lossk's arguments, if it has one."""
    torch_chunked: Callable[[ModuleType], Mapping[str, Any]] | None = None
    """Extra PyTorch options (given ``torch``) that select a chunked, memory-saving path, if it has one."""


# --- the peers' formulations --------------------------------------------------------------------------


def _scalar_options(spec: ElementwiseLoss) -> dict[str, Any]:
    """The loss's scalar and flag options at their defaults (what its bench case runs, with the mean)."""
    return {o.name: o.default for o in spec.formula_options if o.kind != ARRAY_KIND}


def _formula_options(spec: ElementwiseLoss, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` and, for the array options the bench does not pass, ``None``."""
    return {o.name: options.get(o.name) for o in spec.formula_options}


def _several_pass(spec: ElementwiseLoss) -> Callable[..., tuple[Any, Any]]:
    """The spec's array formulation (its reference), one array op at a time, and the mean's gradient."""

    def several_pass(xp: ModuleType, input: Any, target: Any, **options: Any) -> tuple[Any, Any]:
        loss, d1, _ = spec.formula(xp, input, target, order=1, **_formula_options(spec, options))
        return xp.mean(loss), d1 * (1.0 / math.prod(input.shape))  # math.prod: a tensor's size is a method

    several_pass.__name__ = f"several_pass_{spec.name}"
    return several_pass


def _jax_loss(spec: ElementwiseLoss) -> Callable[..., Any]:
    """The spec's array formulation on ``jax.numpy``, for ``jax.value_and_grad`` under ``jax.jit``."""

    def jax_loss(jnp: ModuleType, input: Any, target: Any, **options: Any) -> Any:
        loss, _, _ = spec.formula(jnp, input, target, order=0, **_formula_options(spec, options))
        return jnp.mean(loss)

    jax_loss.__name__ = f"jax_{spec.name}"
    return jax_loss


def torch_name(spec: ElementwiseLoss) -> str | None:
    """The ``torch.nn.functional`` function the bench times beside lossk's loss: its spec's oracle where that is
    one; else PyTorch's loss that is exactly this one at its defaults (its spec's ``rewrite``:
    ``poisson_nll_loss(log_input=True, full=False)`` is ``poisson_loss``); else PyTorch's function of the loss's
    own name (lossk keeps PyTorch's names), where PyTorch has one: ``soft_margin_loss``, whose spec's oracle is
    a torch-written ``-logsigmoid(y x)`` because ``F.soft_margin_loss`` overflows beyond ``-y x > 709``, far
    outside the bench's data. The spec's correctness oracle is unchanged: only the peer is chosen here."""
    if spec.torch_function is not None:
        return spec.torch_function
    for other in ELEMENTWISE_LOSSES.values():
        defaults = {o.name: o.default for o in other.options}
        if other.torch_function is not None and other.rewrite is not None:
            rewritten = other.rewrite(defaults)
            if rewritten is not None and rewritten[0] == spec.name and all(
                    value is None for value in rewritten[1].values()):
                return other.torch_function
    return spec.name


SHORT_NAMES = {"binary_cross_entropy": "bce", "binary_cross_entropy_with_logits": "bce_with_logits"}
"""Command-line names that are not the loss's name without its ``_loss`` suffix."""


def elementwise_case(spec: ElementwiseLoss) -> Case:
    """The bench case of an elementwise loss, from its spec: its domain's data, its default options (and
    ``reduction="mean"`` where that is not the default), its array formulation as the NumPy and JAX peers,
    PyTorch where PyTorch has the loss."""
    options = _scalar_options(spec)
    if "batchmean" in spec.reduction.choices:  # the same as 'mean' on the 1-d inputs here; torch warns on 'mean'
        options["reduction"] = "batchmean"
    elif spec.reduction.default != "mean":
        options["reduction"] = "mean"
    return Case(
        SHORT_NAMES.get(spec.name, spec.name.removesuffix("_loss")), spec.name, torch_name(spec),
        Elementwise(spec), _several_pass(spec), _jax_loss(spec), MappingProxyType(options),
    )


def elementwise_cases() -> list[Case]:
    """A case per elementwise loss of the spec table with one input and one target (the others have no
    bench layout yet), the formerly hand-listed ones first so that the row order of old reports stays."""
    specs = [s for s in ELEMENTWISE_LOSSES.values() if s.inputs == ("input", "target") and s.differentiable == ("input",)]
    first = [n for n in _FIRST if n in ELEMENTWISE_LOSSES]
    ordered = sorted(specs, key=lambda s: first.index(s.name) if s.name in first else len(first))
    return [elementwise_case(spec) for spec in ordered]


_FIRST = ("mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits")


class MultiInput(Layout):
    """The inputs of a multi-input loss (``lossk._losses.multi_input``), each of n float32 values drawn from
    its spec's domain, one gradient per differentiable input: 4 bytes per input and per gradient and element.
    A row-mean loss takes (rows, classes): one number n means ``ROW_CLASSES`` classes, n // ``ROW_CLASSES`` rows.
    """

    ROW_CLASSES = 64

    def __init__(self, spec: ElementwiseLoss) -> None:
        self.spec = spec
        self.description = (f"{', '.join(spec.inputs)} read once, {len(spec.differentiable)} gradient(s) written "
                            f"once: {4 * (len(spec.inputs) + len(spec.differentiable))} bytes per element")

    def shape(self, requested: Shape) -> Shape:
        n = math.prod(requested)
        if not self.spec.row_mean:
            return (n,)
        if len(requested) == 2:
            return requested
        classes = min(n, self.ROW_CLASSES)
        return (max(1, n // classes), classes)

    def sweep(self, *, quick: bool, gpu: bool) -> list[Shape]:
        return [self.shape(s) for s in Elementwise(self.spec).sweep(quick=quick, gpu=gpu)]

    def inputs(self, shape: Shape, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        drawn = self.spec.domain.draw(rng, shape, _scalar_options(self.spec), True)
        return tuple(np.asarray(drawn[name], dtype=np.float32) for name in self.spec.inputs)

    def min_bytes(self, shape: Shape) -> int:
        return (len(self.spec.inputs) + len(self.spec.differentiable)) * math.prod(shape) * FLOAT32_BYTES


def _several_pass_multi(spec: ElementwiseLoss) -> Callable[..., tuple[Any, Any]]:
    """The spec's array formulation and the mean's gradients (a row-mean loss's mean over rows of row means
    is the mean over every element: the rows are equally long)."""

    def several_pass(xp: ModuleType, *arrays: Any, **options: Any) -> tuple[Any, Any]:
        loss, d1, _ = spec.formula(xp, *arrays, order=1, **_formula_options(spec, options))
        scale = 1.0 / arrays[0].size
        return xp.mean(loss), tuple(d * scale for d in d1) if isinstance(d1, tuple) else d1 * scale

    several_pass.__name__ = f"several_pass_{spec.name}"
    return several_pass


def _jax_multi(spec: ElementwiseLoss) -> Callable[..., Any]:
    """The spec's array formulation on ``jax.numpy`` (the mean over every element, as above)."""

    def jax_loss(jnp: ModuleType, *arrays: Any, **options: Any) -> Any:
        loss, _, _ = spec.formula(jnp, *arrays, order=0, **_formula_options(spec, options))
        return jnp.mean(loss)

    jax_loss.__name__ = f"jax_{spec.name}"
    return jax_loss


def multi_input_cases() -> list[Case]:
    """A case per multi-input loss of the spec table (``lossk._losses.multi_input``): its domain's data, its
    default options, its array formulation as the NumPy and JAX peers, PyTorch where PyTorch has the loss;
    every differentiable input differentiated."""
    from lossk._losses.multi_input import LOSSES

    return [
        Case(
            spec.name.removesuffix("_loss"), spec.name, torch_name(spec), MultiInput(spec), _several_pass_multi(spec),
            _jax_multi(spec), MappingProxyType(_scalar_options(spec)),
            differentiable=tuple(spec.inputs.index(name) for name in spec.differentiable),
        )
        for spec in LOSSES
    ]


def _cross_entropy(xp: ModuleType, logits: Any, target: Any) -> tuple[Any, Any]:
    rows = xp.arange(logits.shape[0])
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    exp = xp.exp(shifted)
    total = xp.sum(exp, axis=1, keepdims=True)
    loss = xp.mean(xp.log(total[:, 0]) - shifted[rows, target])
    grad = exp / total
    grad[rows, target] -= 1
    grad *= 1.0 / logits.shape[0]
    return loss, grad


def _linear_cross_entropy(xp: ModuleType, input: Any, linear_weight: Any, target: Any) -> tuple[Any, Any]:
    loss, grad_logits = _cross_entropy(xp, input @ linear_weight.T, target)
    return loss, (grad_logits @ linear_weight, grad_logits.T @ input)


def _jax_cross_entropy(jnp: ModuleType, logits: Any, target: Any) -> Any:
    import jax

    picked = jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)


def _jax_linear_cross_entropy(jnp: ModuleType, input: Any, linear_weight: Any, target: Any) -> Any:
    return _jax_cross_entropy(jnp, input @ linear_weight.T, target)


def _liger_cross_entropy(transformers: ModuleType) -> Callable[..., Any]:
    return transformers.LigerCrossEntropyLoss()


def _liger_linear_cross_entropy(transformers: ModuleType) -> Callable[..., Any]:
    fused = transformers.LigerFusedLinearCrossEntropyLoss()
    return lambda input, linear_weight, target: fused(linear_weight, input, target)  # Liger takes the head first


def _torch_chunked_linear_cross_entropy(torch: ModuleType) -> Mapping[str, Any]:
    return {"options": torch.nn.LinearCrossEntropyOptions()}


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        *elementwise_cases(),
        *multi_input_cases(),
        Case(
            "cross_entropy",
            "cross_entropy",
            "cross_entropy",
            Classes(),
            _cross_entropy,
            _jax_cross_entropy,
            liger=_liger_cross_entropy,
        ),
        Case(
            "linear_cross_entropy",
            "linear_cross_entropy",
            "linear_cross_entropy",
            LinearClasses(),
            _linear_cross_entropy,
            _jax_linear_cross_entropy,
            lossk_dispatch="cross_entropy",  # its backend= picks the chunks' cross-entropy
            differentiable=(0, 1),
            liger=_liger_linear_cross_entropy,
            torch_chunked=_torch_chunked_linear_cross_entropy,
        ),
    )
}
