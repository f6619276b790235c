"""Input domains shared by several loss definitions: how tests and the bench draw each loss's arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._spec import Domain

KINK_MARGIN = 0.05
"""In differentiable mode, residuals stay this far from every kink (central differences step over 1e-6)."""


def residuals(kinks: Callable[[dict[str, Any]], tuple[float, ...]] = lambda options: ()) -> Domain:
    """Input and target normal(0, 2). Otherwise 20% exact ties (zero residuals: L1's subgradient); in
    differentiable mode, residuals at least ``KINK_MARGIN`` from 0 and from ``±kinks(options)``."""

    def draw(rng: np.random.Generator, shape: tuple[int, ...], options: dict[str, Any], differentiable: bool):
        input = rng.normal(0, 2, shape)
        target = rng.normal(0, 2, shape)
        if differentiable:
            points = [0.0, *kinks(options)]
            residual = input - target
            for _ in range(10):
                near = np.zeros(shape, bool)
                for point in points:
                    near |= np.abs(np.abs(residual) - point) < KINK_MARGIN
                residual = np.where(near, rng.normal(0, 2, shape), residual)
            input = target + residual
        else:
            np.copyto(target, input, where=rng.random(shape) < 0.2)
        return {"input": np.asarray(input), "target": np.asarray(target)}

    return Domain(draw)


def last_axis(low: float, high: float) -> Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]:
    """An option array of the input's last axis (broadcast along the others), uniform in [low, high)."""
    return lambda rng, shape: rng.uniform(low, high, shape[-1:])


def log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
