"""Compiled kernels: one ``cupy.RawModule`` per :class:`~.specialisation.Specialisation`, built on first use.

CuPy compiles with NVRTC for the current device's architecture and keeps the binary in its on-disk kernel
cache, so a specialisation costs one compilation per machine; this module keeps the loaded module per
process. Launches go to CuPy's current stream, which :mod:`.interop` sets to PyTorch's current stream for
PyTorch tensors. Before a variant is first used on a device, the device's compute capability is checked
against what the variant needs (``launch.require_capability``), so an unsupported dtype is a clear error
rather than an NVRTC failure.
"""

from __future__ import annotations

import functools
from typing import Any

from . import launch as plans
from .sources import kernel_source
from .specialisation import DTYPE_CODES, Specialisation

NVRTC_OPTIONS = ("--std=c++17",)

DEFAULT_SHARED_LIMIT = 48 * 1024
"""Dynamic shared memory a kernel gets without opting in."""

_FLOAT_MACROS = ("LOSSK_INPUT", "LOSSK_TARGET")


def element_dtypes(spec: Specialisation) -> set[str]:
    """The floating dtypes a variant reads or writes (from its LOSSK_INPUT / LOSSK_TARGET macros)."""
    names = {code: name for name, code in DTYPE_CODES.items()}
    defines = dict(spec.defines)
    return {names[defines[m]] for m in _FLOAT_MACROS if m in defines}


@functools.cache
def module(spec: Specialisation) -> Any:
    """The ``cupy.RawModule`` of ``spec`` (compiled lazily by CuPy, per device)."""
    import cupy

    return cupy.RawModule(code=kernel_source(spec.source), options=NVRTC_OPTIONS + spec.options())


@functools.cache
def kernel_function(spec: Specialisation, kernel: str, device_id: int) -> Any:
    """``kernel`` of ``spec`` on device ``device_id``, after checking that the device can run it."""
    capability = compute_capability(device_id)
    for dtype in element_dtypes(spec):
        plans.require_capability(dtype, capability)
    return module(spec).get_function(kernel)


def launch(
    spec: Specialisation, kernel: str, grid: int, threads: int, arguments: tuple[Any, ...], shared_bytes: int = 0
) -> None:
    """Launches ``kernel`` of ``spec`` on CuPy's current stream and device."""
    import cupy

    function = kernel_function(spec, kernel, cupy.cuda.runtime.getDevice())
    if shared_bytes > DEFAULT_SHARED_LIMIT and function.max_dynamic_shared_size_bytes < shared_bytes:
        function.max_dynamic_shared_size_bytes = shared_bytes
    function((grid,), (threads,), arguments, shared_mem=shared_bytes)


@functools.cache
def resident_blocks(spec: Specialisation, kernel: str, threads: int, shared_bytes: int, device_id: int) -> int:
    """Blocks of ``kernel`` that are resident at once on one SM of the device, from the occupancy API
    (``cuOccupancyMaxActiveBlocksPerMultiprocessor``), or estimated from the kernel's registers and shared
    memory where this CuPy does not expose it. Depends only on the compiled kernel and the device, never on
    timing, so grids sized from it keep results bit-identical from run to run."""
    import cupy

    function = kernel_function(spec, kernel, device_id)
    if shared_bytes > DEFAULT_SHARED_LIMIT and function.max_dynamic_shared_size_bytes < shared_bytes:
        function.max_dynamic_shared_size_bytes = shared_bytes
    try:
        blocks = cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(function.ptr, threads, shared_bytes)
    except Exception:  # noqa: BLE001 - older CuPy, or a driver without the call: estimate instead
        attributes = cupy.cuda.Device(device_id).attributes
        blocks = plans.resident_blocks_estimate(
            threads, int(function.num_regs), int(function.shared_size_bytes) + shared_bytes,
            int(attributes.get("MaxSharedMemoryPerMultiprocessor", DEFAULT_SHARED_LIMIT)),
        )
    return max(1, int(blocks))


@functools.cache
def device_properties(device_id: int) -> tuple[int, int]:
    """(SM count, opt-in shared memory per block in bytes) of a CUDA device."""
    import cupy

    attributes = cupy.cuda.Device(device_id).attributes
    return attributes["MultiProcessorCount"], attributes.get("MaxSharedMemoryPerBlockOptin", DEFAULT_SHARED_LIMIT)


@functools.cache
def compute_capability(device_id: int) -> tuple[int, int]:
    """(major, minor) compute capability of a CUDA device (CuPy reports it as a string such as '90')."""
    import cupy

    code = int(cupy.cuda.Device(device_id).compute_capability)
    return code // 10, code % 10
