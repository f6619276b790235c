"""The table of loss configurations every backend is checked on, and how to draw their data.

Shared by the PyTorch oracle tests, the finite-difference tests and the kernel tests: odd sizes, unbatched,
spatial and empty inputs, weights, ignored rows, label smoothing, exact 0/1 probabilities, ties (L1's
subgradient) and saturated logits (±1e4). The elementwise losses' cases come from the loss-spec table
(``lossk._losses``): every shape, each option example, each array option, the domain's extreme inputs, so
a loss added to the table is tested with no edit here. Cross-entropy and NLL are listed by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lossk._losses import ELEMENTWISE_LOSSES
from lossk._spec import ARRAY_KIND, FLAG_KIND, SCALAR_KIND, ElementwiseLoss

SATURATED = 1e4


@dataclass(frozen=True)
class Case:
    """One configuration of a loss: its input shape, its options and how to draw its data."""

    loss: str
    shape: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    """Scalar options (delta, beta, ignore_index, label_smoothing, log_target), passed as they are."""
    arrays: tuple[str, ...] = ()
    """Array options drawn at random: weight, pos_weight."""
    target: str = "default"
    """How to draw the target: 'default' for the loss, 'index', 'probability', 'ignored' (some rows ignored),
    'all_ignored', 'int32'."""
    saturated: bool = False
    """Put logits of ±1e4 into the input."""

    @property
    def id(self) -> str:
        parts = [self.loss, "x".join(map(str, self.shape)) or "scalar"]
        parts += [f"{k}={v}" for k, v in self.options.items()]
        parts += list(self.arrays)
        if self.target != "default":
            parts.append(f"target={self.target}")
        if self.saturated:
            parts.append("saturated")
        return "-".join(parts)


ELEMENTWISE_SHAPES = [(), (1,), (13,), (4, 7, 3), (0,)]


def defaults(spec: ElementwiseLoss) -> dict[str, Any]:
    """The scalar and flag options of ``spec`` at their defaults."""
    return {o.name: o.default for o in spec.keyword_options if o.kind in (SCALAR_KIND, FLAG_KIND)}


def elementwise_cases(spec: ElementwiseLoss) -> list[Case]:
    """Every shape at the defaults; each option example; each array option and all of them together; the
    domain's extreme inputs."""
    base = defaults(spec)
    arrays = tuple(o.name for o in spec.keyword_options if o.kind == ARRAY_KIND)
    cases = [Case(spec.name, shape, base) for shape in ELEMENTWISE_SHAPES]
    for option in spec.keyword_options:
        cases += [Case(spec.name, (33,), {**base, option.name: value}) for value in option.examples]
    cases += [Case(spec.name, (6, 5), base, arrays=(name,)) for name in arrays]
    if len(arrays) > 1:
        cases.append(Case(spec.name, (2, 3, 5), base, arrays=arrays))
    if spec.domain.extremes:
        cases.append(Case(spec.name, (2, 3, 5), base, arrays=arrays, saturated=True))
    return cases


def multi_chunk_cases(chunk: int) -> list[Case]:
    """One case per elementwise loss spanning several chunks of a parallel kernel (and a tail), every
    array option given."""
    return [
        Case(spec.name, (3, chunk + 7), defaults(spec), arrays=tuple(o.name for o in spec.keyword_options if o.kind == ARRAY_KIND),
             saturated=bool(spec.domain.extremes))
        for spec in ELEMENTWISE_LOSSES.values()
    ]


CASES: list[Case] = [
    *(case for spec in ELEMENTWISE_LOSSES.values() for case in elementwise_cases(spec)),
    *(
        Case("cross_entropy", shape, target="index")
        for shape in [(5,), (1, 1), (7, 5), (3, 4, 2, 3), (0, 4)]
    ),
    Case("cross_entropy", (7, 5), target="int32"),
    Case("cross_entropy", (9, 6), arrays=("weight",), target="index"),
    Case("cross_entropy", (9, 6), {"ignore_index": -100}, target="ignored"),
    Case("cross_entropy", (9, 6), {"ignore_index": 2}, arrays=("weight",), target="ignored"),
    Case("cross_entropy", (4, 6), {"ignore_index": -100}, arrays=("weight",), target="all_ignored"),
    Case("cross_entropy", (9, 6), {"label_smoothing": 0.1}, target="index"),
    Case(
        "cross_entropy", (3, 5, 2, 3), {"ignore_index": 1, "label_smoothing": 0.3}, arrays=("weight",),
        target="ignored",
    ),
    Case("cross_entropy", (4, 6), {"label_smoothing": 0.2}, target="all_ignored"),
    Case("cross_entropy", (5, 7), target="index", saturated=True),
    Case("cross_entropy", (5, 7), {"label_smoothing": 0.1}, arrays=("weight",), target="index", saturated=True),
    *(Case("cross_entropy", shape, target="probability") for shape in [(5,), (7, 5), (3, 4, 2, 3)]),
    Case("cross_entropy", (7, 5), arrays=("weight",), target="probability"),
    Case("cross_entropy", (3, 4, 2, 3), {"label_smoothing": 0.25}, arrays=("weight",), target="probability"),
    Case("cross_entropy", (5, 7), {"label_smoothing": 0.1}, target="probability", saturated=True),
    *(Case("nll_loss", shape, target="index") for shape in [(5,), (7, 5), (3, 4, 2, 3), (0, 3)]),
    Case("nll_loss", (9, 6), arrays=("weight",), target="index"),
    Case("nll_loss", (9, 6), {"ignore_index": 3}, arrays=("weight",), target="ignored"),
    Case("nll_loss", (4, 6), target="all_ignored"),
    # large odd sizes: several chunks of a parallel kernel, and its tail
    Case("mse_loss", (129, 257), arrays=("weight",)),
    Case("binary_cross_entropy_with_logits", (129, 257), arrays=("pos_weight",)),
    Case("cross_entropy", (1031, 37), {"ignore_index": 3, "label_smoothing": 0.1}, ("weight",), "ignored"),
]
LARGE = 1000
"""Cases with more input elements than this are left out of the (element-by-element) finite differences."""


def reductions(loss: str) -> tuple[str, ...]:
    spec = ELEMENTWISE_LOSSES.get(loss)
    return spec.reduction.choices if spec is not None else ("none", "mean", "sum")


def log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def draw_elementwise(
    spec: ElementwiseLoss, shape: tuple[int, ...], options: dict[str, Any], array_options: tuple[str, ...],
    rng: np.random.Generator, *, differentiable: bool = False, saturated: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Input, target and array options of an elementwise loss, from its spec's domain and option draws."""
    inputs = spec.domain.draw(rng, shape, {**defaults(spec), **options}, differentiable)
    by_name = {o.name: o for o in spec.keyword_options}
    arrays = {name: np.asarray(by_name[name].draw(rng, shape)) for name in array_options}
    input = inputs["input"]
    if saturated and input.size and not differentiable:
        for extreme in spec.domain.extremes:
            input.flat[rng.choice(input.size, max(1, input.size // 4), replace=False)] = extreme
    return np.asarray(input), np.asarray(inputs["target"]), arrays


def draw(
    case: Case, rng: np.random.Generator, *, differentiable: bool = False
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Input, target and array options of ``case``, in float64 (class indices in int64 or int32).

    ``differentiable=True`` keeps the input away from kinks and clamps (zero residuals, ±delta, ±beta,
    probabilities 0 and 1, saturated logits), for finite differences.
    """
    shape, loss = case.shape, case.loss
    if loss in ELEMENTWISE_LOSSES:
        return draw_elementwise(
            ELEMENTWISE_LOSSES[loss], shape, case.options, case.arrays, rng, differentiable=differentiable,
            saturated=case.saturated,
        )
    arrays: dict[str, np.ndarray] = {}
    if loss in ("cross_entropy", "nll_loss"):
        class_axis = 0 if len(shape) == 1 else 1
        n_classes = shape[class_axis]
        input = rng.normal(0, 3, shape)
        if loss == "nll_loss":
            input = log_softmax(input, class_axis)
        loss_shape = shape[:class_axis] + shape[class_axis + 1 :]
        if case.target == "probability":
            target = np.exp(log_softmax(rng.normal(0, 2, shape), class_axis))
        else:
            target = rng.integers(0, n_classes, loss_shape)
            ignore_index = case.options.get("ignore_index", -100)
            if case.target == "ignored":
                target[rng.random(loss_shape) < 0.3] = ignore_index
            elif case.target == "all_ignored":
                target[...] = ignore_index
            elif case.target == "int32":
                target = target.astype(np.int32)
        if "weight" in case.arrays:
            arrays["weight"] = rng.uniform(0.2, 2, (n_classes,))
    else:  # pragma: no cover - every loss of CASES has a branch
        raise AssertionError(loss)
    if case.saturated and input.size and not differentiable:
        input.flat[rng.choice(input.size, max(1, input.size // 4), replace=False)] = SATURATED
        input.flat[rng.choice(input.size, max(1, input.size // 4), replace=False)] = -SATURATED
    return np.asarray(input), np.asarray(target), arrays  # asarray: a 0-d draw is a NumPy scalar


def strided(x: np.ndarray) -> np.ndarray:
    """The same values as a non-contiguous view (every other element of a larger buffer)."""
    buffer = np.empty((*x.shape, 2), dtype=x.dtype)
    buffer[..., 0] = x
    view = buffer[..., 0]
    assert x.size <= 1 or not view.flags.c_contiguous
    return view


def as_dtype(x: np.ndarray, dtype: Any) -> np.ndarray:
    return x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x
