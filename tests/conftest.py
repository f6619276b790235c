"""Fixtures shared by every test: the backend under test and a freshly seeded random generator.

``backend`` runs a test once per backend of ``lossk._dispatch.BACKENDS`` (cupy, numba, array_api); a backend
that is not available here, or that does not implement the loss under test (``backend.require(loss)``), is
reported as *skipped*, never as passed. ``rng`` is seeded afresh for every test; the seed is printed with
every failure and ``LOSSK_SEED=<seed>`` replays it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from lossk import _dispatch

SEED_VARIABLE = "LOSSK_SEED"


@dataclass(frozen=True)
class BackendUnderTest:
    """A lossk backend and the array library its inputs come from (NumPy, or CuPy for ``cupy``)."""

    name: str

    def asarray(self, x: Any) -> Any:
        """A NumPy array (or ``None``) moved to the library this backend takes, strides kept where possible."""
        if x is None or self.name != "cupy":
            return x
        import cupy

        return cupy.asarray(x)

    def require(self, loss: str) -> None:
        """Skip the calling test unless this backend registers ``loss``."""
        if self.name not in _dispatch.implementations(loss):
            pytest.skip(f"backend {self.name!r} does not implement {loss}")


@pytest.fixture(params=tuple(_dispatch.BACKENDS))
def backend(request: pytest.FixtureRequest) -> BackendUnderTest:
    """Each backend in turn; skipped where its library (or, for cupy, a GPU) is missing."""
    name = request.param
    if not _dispatch.is_available(name):
        pytest.skip(f"backend {name!r} is not available here: {_dispatch.BACKENDS[name].install_hint}")
    return BackendUnderTest(name)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """A fresh seed per test, or ``$LOSSK_SEED``; shown in the report of a failing test."""
    value = int(os.environ.get(SEED_VARIABLE) or secrets.randbits(32))
    request.node.lossk_seed = value
    return value


@pytest.fixture
def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    seed = getattr(item, "lossk_seed", None)
    if report.failed and seed is not None:
        report.sections.append(("random seed", f"rerun with {SEED_VARIABLE}={seed} pytest '{item.nodeid}'"))
    return report
