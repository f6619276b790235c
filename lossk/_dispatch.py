"""Which implementation of a loss runs for a given call: a registry of (loss, backend) -> implementation.

Backends (``array_api`` reference, ``numba`` CPU kernels, ``cupy`` GPU kernels) register an implementation
of each loss's ``value_and_grad`` when their module is imported; the loss modules never mention them.
``backend="auto"`` takes the first backend, in preference order, that is installed, accepts the input's
library and device, and implements the loss for an input of that size; a backend named explicitly must
be available or the call raises, saying how to install it.

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
from collections.abc import Callable
from dataclasses import dataclass

from ._array_api import Array, size

Implementation = Callable[..., tuple[Array, Array | None]]


class BackendUnavailableError(ImportError):
    """A backend was asked for by name but its library (or a device) is missing."""


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
    is_usable: Callable[[], bool]


@dataclass(frozen=True)
class Registration:
    implementation: Implementation
    auto_min_size: int
    """``backend="auto"`` picks this implementation from this many input elements on."""
    writes_out: bool


def _importable(*modules: str) -> Callable[[], bool]:
    return lambda: all(importlib.util.find_spec(m) is not None for m in modules)


def _is_numpy_array(x: Array) -> bool:
    import numpy as np

    return type(x) is np.ndarray


def _is_gpu_array(x: Array) -> bool:
    module = type(x).__module__
    if module.startswith("cupy"):
        return True
    return module.startswith("torch") and getattr(getattr(x, "device", None), "type", None) == "cuda"


def _has_cuda_device() -> bool:
    if not _importable("cupy")():
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any CUDA runtime failure means no usable device
        return False


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (  # auto's preference order
        Backend(
            "cupy",
            "lossk._backends.cupy",
            _is_gpu_array,
            "CuPy arrays and PyTorch CUDA tensors",
            'pip install "lossk[cuda12]" (or "lossk[cuda13]"), on a machine with an NVIDIA GPU',
            _has_cuda_device,
        ),
        Backend(
            "numba",
            "lossk._backends.numba",
            _is_numpy_array,
            "NumPy arrays",
            'pip install "lossk[numba]"',
            _importable("numba"),
        ),
        Backend(
            "array_api",
            "lossk._reference",
            lambda x: True,
            "arrays of any Array API library",
            "(always installed)",
            lambda: True,
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
        _REGISTRY[(loss, backend)] = Registration(implementation, auto_min_size, writes_out)
        return implementation

    return decorate


@functools.cache
def is_available(backend: str) -> bool:
    """Whether ``backend``'s library is installed (and, for cupy, a GPU is present); imports its module."""
    spec = BACKENDS[backend]
    if not spec.is_usable():
        return False
    importlib.import_module(spec.module)
    return True


def implementations(loss: str) -> dict[str, Registration]:
    """Every available backend's registration of ``loss``, in auto's preference order."""
    return {
        name: _REGISTRY[(loss, name)]
        for name in BACKENDS
        if is_available(name) and (loss, name) in _REGISTRY
    }


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
        raise BackendUnavailableError(f"backend {backend!r} is not available here; install it with: {spec.install_hint}")
    if not spec.accepts(input):
        raise TypeError(f"backend {backend!r} takes {spec.takes}; got {type(input).__module__}.{type(input).__name__}")
    if (loss, backend) not in _REGISTRY:
        raise NotImplementedError(f"backend {backend!r} does not implement {loss}")
    return _REGISTRY[(loss, backend)]
