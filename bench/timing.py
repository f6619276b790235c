"""Timing one forward+backward: warm-up calls, then repeats until a count or a time budget is reached."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

MIN_REPEATS = 3


@dataclass(frozen=True)
class Timing:
    first_call_s: float
    """The first call alone: includes JIT compilation (Numba, JAX, torch.compile) and first-touch allocation."""
    times_s: tuple[float, ...]
    """The timed calls, after warm-up."""

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)


def measure(call: Callable[[], object], *, warmup: int, repeats: int, budget_s: float) -> Timing:
    """Time ``call`` (which must return only once its work is finished, device included).

    The first call is untimed, and so are ``warmup`` more; then ``call`` runs ``repeats`` times, or fewer
    once ``budget_s`` seconds are spent, but at least ``MIN_REPEATS`` times (if ``repeats`` allows). A call
    slower than the whole budget (a large linear cross-entropy on a CPU) is timed once, and gets no extra
    warm-up if its first call (compilation included) already took the budget. The garbage collector is
    paused while timing.
    """
    start = time.perf_counter()
    call()
    first_call_s = time.perf_counter() - start
    for _ in range(0 if first_call_s > budget_s else warmup):
        call()
    times: list[float] = []
    gc.collect()
    gc.disable()
    try:
        while len(times) < repeats:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
            at_least = 1 if times[0] > budget_s else MIN_REPEATS
            if len(times) >= at_least and sum(times) >= budget_s:
                break
    finally:
        gc.enable()
    return Timing(first_call_s, tuple(times))
