"""The benchmark loop: every case, size and provider timed once, with the derived throughput columns."""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .cases import Case, Shape, size_label
from .providers import NotApplicable, Provider, to_numpy
from .timing import Timing, measure

LOSS_RTOL = 1e-3
"""A provider's float32 loss may differ this much (relative) from the float64 NumPy value and still count as right."""


@dataclass
class Measurement:
    """One provider timed on one loss at one size."""

    loss: str
    provider: str
    peer: bool
    size: str
    shape: Shape
    elements: int
    """Input elements; logits for the classification losses (the linear one never materialises them)."""
    min_bytes: int
    median_s: float
    min_s: float
    first_call_s: float
    repeats: int
    loss_value: float
    reference_loss: float
    """The same loss in float64 NumPy: the check that the timed code computes the right thing."""
    gbs: float = math.nan
    fraction_of_copy: float = math.nan
    speedup_vs_best_peer: float | None = None
    """Fastest peer's median time / this median time (> 1: faster than every peer); None without peers."""

    @property
    def loss_matches(self) -> bool:
        return math.isclose(self.loss_value, self.reference_loss, rel_tol=LOSS_RTOL, abs_tol=1e-6)


@dataclass(frozen=True)
class Skipped:
    provider: str
    loss: str | None
    """None: skipped for every loss."""
    reason: str


@dataclass(frozen=True)
class Failed:
    provider: str
    loss: str
    size: str
    error: str


@dataclass
class Outcome:
    measurements: list[Measurement] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)

    def providers_run(self) -> list[str]:
        return list(dict.fromkeys(m.provider for m in self.measurements))


@dataclass(frozen=True)
class Settings:
    device: str
    warmup: int
    repeats: int
    budget_s: float
    seed: int = 0


def run(
    cases: Sequence[Case],
    sizes: dict[str, list[Shape]],
    providers: Sequence[Provider],
    settings: Settings,
    copy_gbs: float,
    on_step: Callable[[str], None] = lambda label: None,
) -> Outcome:
    """Time every provider on every case at each of ``sizes[case.name]``; ``on_step`` is told after each."""
    outcome = Outcome()
    not_applicable: set[tuple[str, str]] = set()
    for case in cases:
        for shape in sizes[case.name]:
            label = size_label(shape)
            arrays = case.layout.inputs(shape, np.random.default_rng(settings.seed))
            reference_loss = float(case.several_pass(np, *_as_float64(arrays), **case.options)[0])
            for provider in providers:
                on_step(f"{case.name} {label} {provider.name}")
                if (provider.name, case.name) in not_applicable:
                    continue
                try:
                    timing, loss_value = _time_one(provider, case, arrays, settings)
                except NotApplicable as reason:
                    not_applicable.add((provider.name, case.name))
                    outcome.skipped.append(Skipped(provider.name, case.name, str(reason)))
                    continue
                except Exception as error:  # noqa: BLE001 - one provider's failure must not end the run
                    outcome.failed.append(Failed(provider.name, case.name, label, _one_line(error)))
                    traceback.print_exc()
                    continue
                outcome.measurements.append(
                    Measurement(
                        case.name,
                        provider.name,
                        provider.peer,
                        label,
                        shape,
                        case.layout.elements(shape),
                        case.layout.min_bytes(shape),
                        timing.median_s,
                        timing.min_s,
                        timing.first_call_s,
                        len(timing.times_s),
                        loss_value,
                        reference_loss,
                    )
                )
    derive(outcome.measurements, copy_gbs)
    return outcome


def _time_one(
    provider: Provider, case: Case, arrays: tuple[np.ndarray, ...], settings: Settings
) -> tuple[Timing, float]:
    """Time ``provider`` on ``case``; its arrays are freed on return, before the next provider allocates."""
    call = provider.prepare(case, arrays, settings.device)
    timing = measure(call, warmup=settings.warmup, repeats=settings.repeats, budget_s=settings.budget_s)
    return timing, float(to_numpy(call()[0]))


def derive(measurements: list[Measurement], copy_gbs: float) -> None:
    """Fill in GB/s at the minimum bytes, the fraction of copy bandwidth and the speed-up vs the best peer."""
    best_peer: dict[tuple[str, str], float] = {}
    for m in measurements:
        if m.peer and m.loss_matches:
            key = (m.loss, m.size)
            best_peer[key] = min(best_peer.get(key, math.inf), m.median_s)
    for m in measurements:
        m.gbs = m.min_bytes / m.median_s / 1e9
        m.fraction_of_copy = m.gbs / copy_gbs
        peer_s = best_peer.get((m.loss, m.size))
        m.speedup_vs_best_peer = None if peer_s is None else peer_s / m.median_s


def _as_float64(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    return tuple(a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays)


def _one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text.splitlines()[0] if text else type(error).__name__
