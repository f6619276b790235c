"""Inputs for every public loss of the dispatch registry, for the tests that must cover each one without naming it.

Each loss's configurations come from ``loss_cases.CASES`` (options, weights, ignored targets, extremes); a loss
that has none there is drawn from its record in the loss-spec table (``lossk._losses``: its ``domain``), with
its default options. A registered public loss with neither fails the calling test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import lossk
from lossk import _dispatch

from loss_cases import CASES, draw

SPEC_SHAPES = [(13,), (4, 7, 3), (0,)]


@dataclass(frozen=True)
class Inputs:
    """One configuration of a loss: ``make(rng)`` gives ``(arrays, options)``: the loss's positional arrays
    (``(input, target)``, or more for a multi-input loss) and its options (with arrays)."""

    id: str
    loss: str
    make: Callable[[np.random.Generator], tuple[tuple[np.ndarray, ...], dict[str, Any]]]
    empty: bool


def public_losses() -> list[str]:
    """Every loss the registry holds a reference for that lossk exports as a ``LossFunction`` (the registry
    also holds auxiliary operations, such as ``<loss>.hessian``)."""
    return sorted(
        name
        for name, backend in _dispatch._REGISTRY
        if backend == "array_api" and isinstance(getattr(lossk, name, None), lossk.LossFunction)
    )


def _from_case(case) -> Inputs:
    def make(rng: np.random.Generator):
        input, target, arrays = draw(case, rng)
        return (input, target), {**case.options, **arrays}

    return Inputs(case.id, case.loss, make, 0 in case.shape)


def _from_spec(loss: str, shape: tuple[int, ...]) -> Inputs:
    from lossk._losses import ELEMENTWISE_LOSSES, multi_input

    spec = {**ELEMENTWISE_LOSSES, **{s.name: s for s in multi_input.LOSSES}}[loss]
    defaults = {o.name: o.default for o in spec.options}

    def make(rng: np.random.Generator):
        arrays = spec.domain.draw(rng, shape, defaults, False)
        return tuple(np.asarray(arrays[name]) for name in spec.inputs), {}

    return Inputs(f"{loss}-{'x'.join(map(str, shape))}-spec", loss, make, 0 in shape)


def every_loss_inputs() -> list[Inputs]:
    """Every configuration of every public registered loss; raises if a loss has none."""
    inputs = []
    for loss in public_losses():
        cases = [_from_case(case) for case in CASES if case.loss == loss]
        if not cases:
            try:
                cases = [_from_spec(loss, shape) for shape in SPEC_SHAPES]
            except (ImportError, KeyError) as error:
                raise AssertionError(f"{loss} has no case in tests/loss_cases.py and no loss-spec record") from error
        inputs += cases
    return inputs
