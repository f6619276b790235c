"""Which implementation of a loss runs for a given call: a registry of (loss, backend) -> implementation.

Backends (``array_api`` reference, ``numba`` CPU kernels, ``cupy`` GPU kernels) register an implementation
of each loss's ``value_and_grad`` when their module is imported; the loss modules never mention them.
``backend="auto"`` takes the first backend, in preference order, that is available, accepts the input's
library and device, and implements the loss for an input of that size; a backend named explicitly must
be available or the call raises :class:`BackendUnavailableError`, saying why and how to install it.

Optional backends are isolated from each other and from the reference: a backend is *available* when its
libraries are installed, its device probe passes (CuPy: a CUDA device) and its module imports. One that is
not installed is skipped by ``auto`` quietly; one that is installed but fails (an llvmlite that does not
load, a CUDA driver error, a CuPy built for another CUDA) is skipped with one
:class:`BackendUnavailableWarning` per process naming the backend and the original exception, and asking
for it by name raises :class:`BackendUnavailableError` chained to that exception. The decision is made once
per process.

NaN and infinity follow IEEE arithmetic, as in PyTorch: a NaN in the input propagates to the loss and the
gradient, a log of 0 is -inf where the loss's formula takes it (PyTorch's clamps, such as binary
cross-entropy's log >= -100, are part of the formulas), and a mean over no elements (an empty input,
every target ignored) is NaN; a result beyond its dtype's range (float16) is ±inf. Every registered
implementation runs in :func:`~lossk._array_api.ieee_arithmetic`, so that NumPy does not warn where PyTorch
is silent (``divide by zero in log``, ``invalid value in divide``, ``overflow in cast``). A lazy library
computes later, outside that context, so the reference does not evaluate a division by zero for a mean
over nothing (:mod:`lossk._reduction`) or 0 * inf for an ignored row: every loss of the registry computes
on Dask without a warning, extreme inputs included (``tests/test_warnings.py``), save a float16 result
cast to ±inf.

Every implementation has the signature::

    impl(input, target, *, xp, reduction, grad_output, compute_grad, [out,] **options) -> (loss, grad | None)

with validated arguments; ``out`` is passed only to implementations registered with ``writes_out=True``.

``cross_entropy`` implementations always receive, besides ``weight``, ``ignore_index`` and ``label_smoothing``,
the options ``z_loss`` (float >= 0; 0 means none), ``softcap`` (float > 0, or None for none) and
``return_z_loss`` (bool), with the semantics of ``lossk._reference.classification``. When ``return_z_loss``
is True the loss slot of the result is the pair ``(loss, z_term)`` — both in the input's dtype, reduced
alike, ``loss`` including ``z_term`` — so the result is ``((loss, z_term), grad | None)``; otherwise it is
``(loss, grad | None)`` as for every loss. ``LossFunction`` hands that loss slot to the caller unchanged.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ._array_api import Array, ieee_arithmetic, size

Implementation = Callable[..., tuple[Array, Array | None]]


class BackendUnavailableError(ImportError):
    """A backend was asked for by name but is unavailable: its library or a device is missing, or it fails to load.

    When the backend is installed but fails, the original exception is chained (``__cause__``).
    """


class BackendUnavailableWarning(RuntimeWarning):
    """An installed optional backend fails to load or finds no device; ``backend="auto"`` uses the others."""


@dataclass(frozen=True)
class Backend:
    """A family of implementations and the inputs it takes."""

    name: str
    module: str
    """Imported on first use; registers this backend's implementations."""
    accepts: Callable[[Array], bool]
    takes: str
    """What ``accepts`` admits, in words, for error messages."""
    install_hint: str
    requires: tuple[str, ...]
    """Top-level libraries the backend needs; where one is not installed, the backend is quietly unavailable."""
    probe: Callable[[], None] = lambda: None
    """Raises where the installed libraries cannot run here (no device, a driver error)."""


@dataclass(frozen=True)
class Registration:
    implementation: Implementation
    auto_min_size: int
    """``backend="auto"`` picks this implementation from this many input elements on."""
    writes_out: bool


def _is_numpy_array(x: Array) -> bool:
    import numpy as np

    return type(x) is np.ndarray


def _is_gpu_array(x: Array) -> bool:
    module = type(x).__module__
    if module.startswith("cupy"):
        return True
    return module.startswith("torch") and getattr(getattr(x, "device", None), "type", None) == "cuda"


def _probe_cuda_device() -> None:
    import cupy

    if cupy.cuda.runtime.getDeviceCount() < 1:
        raise RuntimeError("CuPy finds no CUDA device")


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (  # auto's preference order
        Backend(
            "cupy",
            "lossk._backends.cupy",
            _is_gpu_array,
            "CuPy arrays and PyTorch CUDA tensors",
            'pip install "lossk[cuda12]" (or "lossk[cuda13]"), on a machine with an NVIDIA GPU',
            ("cupy",),
            _probe_cuda_device,
        ),
        Backend(
            "numba",
            "lossk._backends.numba",
            _is_numpy_array,
            "NumPy arrays",
            'pip install "lossk[numba]"',
            ("numba",),
        ),
        Backend(
            "array_api",
            "lossk._reference",
            lambda x: True,
            "arrays of any Array API library",
            "(always installed)",
            (),
        ),
    )
}

_REGISTRY: dict[tuple[str, str], Registration] = {}


def register(
    loss: str, backend: str, *, auto_min_size: int = 0, writes_out: bool = False
) -> Callable[[Implementation], Implementation]:
    """Decorator: ``implementation`` computes ``loss`` on ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")

    def decorate(implementation: Implementation) -> Implementation:
        _REGISTRY[(loss, backend)] = Registration(_in_ieee_arithmetic(implementation), auto_min_size, writes_out)
        return implementation

    return decorate


def _in_ieee_arithmetic(implementation: Implementation) -> Implementation:
    """``implementation`` run in :func:`~lossk._array_api.ieee_arithmetic` for its namespace (see the module doc)."""

    @functools.wraps(implementation)
    def run(*arrays: Array, xp: ModuleType, **arguments: Any) -> tuple[Array, Any]:
        with ieee_arithmetic(xp):
            return implementation(*arrays, xp=xp, **arguments)

    return run


@dataclass(frozen=True)
class Status:
    """Why a backend is unavailable (``cause``, None where it is available), and whether it is installed."""

    cause: BaseException | None
    installed: bool


@functools.cache
def status(backend: str) -> Status:
    """Whether ``backend`` can run here: its libraries installed, its device probe passed, its module imported.

    Decided once per process; the import registers the backend's implementations.
    """
    spec = BACKENDS[backend]
    try:
        missing = [library for library in spec.requires if importlib.util.find_spec(library) is None]
        if missing:
            return Status(ModuleNotFoundError(f"No module named {missing[0]!r}", name=missing[0]), installed=False)
        spec.probe()
        importlib.import_module(spec.module)
    except Exception as error:  # noqa: BLE001 - any failure of an optional backend leaves the others working
        return Status(error, installed=True)
    return Status(None, installed=True)


def is_available(backend: str) -> bool:
    """Whether ``backend`` can run here (see :func:`status`); imports its module."""
    return status(backend).cause is None


_warned: set[str] = set()
_PACKAGE_DIR = str(Path(__file__).parent) + os.sep


def _warn_unavailable(backend: str, cause: BaseException) -> None:
    """One :class:`BackendUnavailableWarning` per process and backend, attributed to the caller of lossk."""
    if backend in _warned:
        return
    _warned.add(backend)
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        level, frame = level + 1, frame.f_back
    warnings.warn(
        f"lossk backend {backend!r} is installed but unavailable ({type(cause).__name__}: {cause}); "
        f'backend="auto" uses the other backends',
        BackendUnavailableWarning,
        stacklevel=level,
    )


def implementations(loss: str) -> dict[str, Registration]:
    """Every available backend's registration of ``loss``, in auto's preference order.

    An installed backend that fails to load is left out with a :class:`BackendUnavailableWarning` (once).
    """
    available = {}
    for name in BACKENDS:
        if not is_available(name):
            backend_status = status(name)
            if backend_status.installed and backend_status.cause is not None:
                _warn_unavailable(name, backend_status.cause)
            continue
        if (loss, name) in _REGISTRY:
            available[name] = _REGISTRY[(loss, name)]
    return available


def select(loss: str, backend: str, input: Array, n_elements: int | None = None) -> Registration:
    """The registration that computes ``loss`` for ``input`` under the ``backend`` request.

    ``n_elements`` stands in for ``input``'s size in auto's choice (an array of ``input``'s kind that is not
    built yet, e.g. a chunk of logits).
    """
    if backend == "auto":
        n = (size(input) or 0) if n_elements is None else n_elements
        for name, registration in implementations(loss).items():
            if BACKENDS[name].accepts(input) and n >= registration.auto_min_size:
                return registration
        raise AssertionError("the array_api reference accepts every input")  # pragma: no cover
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    spec = BACKENDS[backend]
    if not is_available(backend):
        cause = status(backend).cause
        reason = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        raise BackendUnavailableError(
            f"backend {backend!r} is not available here{reason}; install it with: {spec.install_hint}"
        ) from cause
    if not spec.accepts(input):
        raise TypeError(f"backend {backend!r} takes {spec.takes}; got {type(input).__module__}.{type(input).__name__}")
    if (loss, backend) not in _REGISTRY:
        raise NotImplementedError(f"backend {backend!r} does not implement {loss}")
    return _REGISTRY[(loss, backend)]
