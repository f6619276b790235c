"""Compiled kernels: one ``cupy.RawModule`` per :class:`~.specialisation.Specialisation`, built on first use.

CuPy compiles with NVRTC for the current device's architecture and keeps the binary in its on-disk kernel
cache, so a specialisation costs one compilation per machine; this module keeps the loaded module per
process. Launches go to CuPy's current stream, which :mod:`.interop` sets to PyTorch's current stream for
PyTorch tensors.
"""

from __future__ import annotations

import functools
from typing import Any

from .sources import kernel_source
from .specialisation import Specialisation

NVRTC_OPTIONS = ("--std=c++17",)

DEFAULT_SHARED_LIMIT = 48 * 1024
"""Dynamic shared memory a kernel gets without opting in."""


@functools.cache
def module(spec: Specialisation) -> Any:
    """The ``cupy.RawModule`` of ``spec`` (compiled lazily by CuPy, per device)."""
    import cupy

    return cupy.RawModule(code=kernel_source(spec.source), options=NVRTC_OPTIONS + spec.options())


def launch(
    spec: Specialisation, kernel: str, grid: int, threads: int, arguments: tuple[Any, ...], shared_bytes: int = 0
) -> None:
    """Launches ``kernel`` of ``spec`` on CuPy's current stream and device."""
    function = module(spec).get_function(kernel)
    if shared_bytes > DEFAULT_SHARED_LIMIT and function.max_dynamic_shared_size_bytes < shared_bytes:
        function.max_dynamic_shared_size_bytes = shared_bytes
    function((grid,), (threads,), arguments, shared_mem=shared_bytes)


@functools.cache
def device_properties(device_id: int) -> tuple[int, int]:
    """(SM count, opt-in shared memory per block in bytes) of a CUDA device."""
    import cupy

    attributes = cupy.cuda.Device(device_id).attributes
    return attributes["MultiProcessorCount"], attributes.get("MaxSharedMemoryPerBlockOptin", DEFAULT_SHARED_LIMIT)
