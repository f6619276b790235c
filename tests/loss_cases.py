"""The table of loss configurations every backend is checked on, and how to draw their data.

Shared by the PyTorch oracle tests, the finite-difference tests and the kernel tests: odd sizes, unbatched,
spatial and empty inputs, weights, ignored rows, label smoothing, exact 0/1 probabilities, ties (L1's
subgradient) and saturated logits (±1e4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

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

CASES: list[Case] = [
    *(Case(loss, shape) for loss in ("l1_loss", "mse_loss") for shape in ELEMENTWISE_SHAPES),
    *(Case(loss, (5, 9), arrays=("weight",)) for loss in ("l1_loss", "mse_loss")),
    *(Case("huber_loss", shape, {"delta": 1.0}) for shape in ELEMENTWISE_SHAPES),
    Case("huber_loss", (33,), {"delta": 0.3}),
    Case("huber_loss", (6, 5), {"delta": 2.5}, arrays=("weight",)),
    *(Case("smooth_l1_loss", shape, {"beta": 1.0}) for shape in ELEMENTWISE_SHAPES),
    Case("smooth_l1_loss", (33,), {"beta": 0.25}),
    Case("smooth_l1_loss", (6, 5), {"beta": 0.0}),
    *(Case("binary_cross_entropy", shape) for shape in ELEMENTWISE_SHAPES),
    Case("binary_cross_entropy", (6, 5), arrays=("weight",)),
    *(Case("binary_cross_entropy_with_logits", shape) for shape in ELEMENTWISE_SHAPES),
    Case("binary_cross_entropy_with_logits", (6, 5), arrays=("weight",)),
    Case("binary_cross_entropy_with_logits", (6, 5), arrays=("pos_weight",)),
    Case("binary_cross_entropy_with_logits", (2, 3, 5), arrays=("weight", "pos_weight"), saturated=True),
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
    *(Case("kl_div", shape, {"log_target": False}) for shape in [(6, 5), (3, 4, 2), (1,), (0, 3)]),
    *(Case("kl_div", shape, {"log_target": True}) for shape in [(6, 5), (3, 4, 2)]),
    # large odd sizes: several chunks of a parallel kernel, and its tail
    Case("mse_loss", (129, 257), arrays=("weight",)),
    Case("binary_cross_entropy_with_logits", (129, 257), arrays=("pos_weight",)),
    Case("cross_entropy", (1031, 37), {"ignore_index": 3, "label_smoothing": 0.1}, ("weight",), "ignored"),
]
LARGE = 1000
"""Cases with more input elements than this are left out of the (element-by-element) finite differences."""


def reductions(loss: str) -> tuple[str, ...]:
    return ("none", "mean", "sum", "batchmean") if loss == "kl_div" else ("none", "mean", "sum")


def log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def draw(
    case: Case, rng: np.random.Generator, *, differentiable: bool = False
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Input, target and array options of ``case``, in float64 (class indices in int64 or int32).

    ``differentiable=True`` keeps the input away from kinks and clamps (zero residuals, ±delta, ±beta,
    probabilities 0 and 1, saturated logits), for finite differences.
    """
    shape, loss = case.shape, case.loss
    arrays: dict[str, np.ndarray] = {}
    if loss in ("l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss"):
        input = rng.normal(0, 2, shape)
        target = rng.normal(0, 2, shape)
        if differentiable:  # residuals at least 0.05 away from 0 and from the Huber/smooth-L1 thresholds
            kinks = [0.0, *(v for k, v in case.options.items() if k in ("delta", "beta"))]
            residual = input - target
            for _ in range(10):
                near = np.zeros(shape, bool)
                for kink in kinks:
                    near |= np.abs(np.abs(residual) - kink) < 0.05
                residual = np.where(near, rng.normal(0, 2, shape), residual)
            input = target + residual
        else:
            np.copyto(target, input, where=rng.random(shape) < 0.2)  # zero residuals: L1's subgradient
        if "weight" in case.arrays:
            arrays["weight"] = rng.uniform(0, 2, shape)
    elif loss == "binary_cross_entropy":
        input = rng.uniform(0.05, 0.95, shape)
        if not differentiable:  # exact 0 and 1: PyTorch clamps the logs at -100
            input[rng.random(shape) < 0.15] = 0.0
            input[rng.random(shape) < 0.15] = 1.0
        target = rng.uniform(0, 1, shape)
        target[rng.random(shape) < 0.3] = 1.0
        if "weight" in case.arrays:
            arrays["weight"] = rng.uniform(0, 2, shape[-1:])  # broadcast along the last axis
    elif loss == "binary_cross_entropy_with_logits":
        input = rng.normal(0, 3, shape)
        target = rng.uniform(0, 1, shape)
        if "weight" in case.arrays:
            arrays["weight"] = rng.uniform(0, 2, shape[-1:])
        if "pos_weight" in case.arrays:
            arrays["pos_weight"] = rng.uniform(0.2, 3, shape[-1:])
    elif loss in ("cross_entropy", "nll_loss"):
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
    elif loss == "kl_div":
        class_axis = len(shape) - 1
        input = log_softmax(rng.normal(0, 2, shape), class_axis)
        target = np.exp(log_softmax(rng.normal(0, 2, shape), class_axis))
        if case.options["log_target"]:
            target = np.log(target)
        else:
            target[rng.random(shape) < 0.2] = 0.0  # y log y is 0 at y = 0
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
