"""Fixtures of the pytest-benchmark matrix (``bench/test_bench_*.py``).

``pytest bench/ --benchmark-only`` (or ``--benchmark-enable``) times the default sweep of sizes; any other
run, a plain ``pytest`` included, calls each provider once on a small input and checks its loss and
gradient against float64 NumPy: a fast smoke test of every provider installed.
"""

from __future__ import annotations

import pytest

from bench import hardware
from bench.providers import CPU, GPU


def benchmarking(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False))


@pytest.fixture(scope="session")
def device() -> str:
    """The GPU where one is found (as ``python -m bench`` does), else the CPU."""
    return GPU if hardware.gpu_model() else CPU


@pytest.fixture
def timed(benchmark, request: pytest.FixtureRequest):
    """``benchmark``, switched to a single untimed call unless benchmarks were asked for."""
    if not benchmarking(request.config):
        benchmark.disabled = True
    return benchmark
