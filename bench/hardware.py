"""The machine the benchmark runs on: CPU, GPU, library versions and the measured copy bandwidth."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

LIBRARIES = ("lossk", "numpy", "numba", "cupy", "torch", "jax", "liger-kernel")


@dataclass(frozen=True)
class Hardware:
    cpu_model: str
    cpu_cores: int
    """Cores this process may run on."""
    gpu_model: str | None

    def summary(self) -> str:
        gpu = self.gpu_model or "none"
        return f"CPU: {self.cpu_model}, {self.cpu_cores} cores | GPU: {gpu}"


def detect() -> Hardware:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Hardware(_cpu_model(), cores, gpu_model())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_model() -> str | None:
    """The first CUDA device's name, found through CuPy or else PyTorch; None without one."""
    return _cupy_gpu_model() or _torch_gpu_model()


def _cupy_gpu_model() -> str | None:
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() == 0:
            return None
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    except Exception:  # noqa: BLE001 - no CuPy, no driver or no device all mean: none through CuPy
        return None
    return name.decode() if isinstance(name, bytes) else str(name)


def _torch_gpu_model() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - as above, for PyTorch
        return None


def library_versions() -> dict[str, str]:
    """Installed versions of lossk and every provider's library (absent ones left out)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def copy_bandwidth(device: str, *, quick: bool) -> float:
    """GB/s of copying one large float32 array (bytes read + written), median of several copies.

    On the CPU: 128 MiB (32 MiB with ``quick``) copied by NumPy's ``copyto`` on every core at once, one
    contiguous slice per thread (``copyto`` releases the GIL), as the parallel kernels read and write; on a
    GPU a device-to-device copy of 1 GiB (256 MiB) through CuPy, or PyTorch without CuPy.
    """
    if device == "cpu":
        source = np.ones((1 << 23) if quick else (1 << 25), dtype=np.float32)
        destination = np.empty_like(source)
        return _median_gbs(_parallel_copy(destination, source), 2 * source.nbytes, repeats=5)
    elements = (1 << 26) if quick else (1 << 28)
    return _median_gbs(_device_copy(elements), 2 * 4 * elements, repeats=10)


def _parallel_copy(destination: np.ndarray, source: np.ndarray) -> Callable[[], None]:
    """``np.copyto(destination, source)`` split into one contiguous slice per core, run on a thread each."""
    cores = os.cpu_count() or 1
    bounds = np.linspace(0, source.size, cores + 1).astype(int)
    slices = [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]

    def copy() -> None:  # thread start-up (tens of µs) is noise against a copy of tens of ms
        with ThreadPoolExecutor(max_workers=cores) as pool:
            list(pool.map(lambda part: np.copyto(destination[part], source[part]), slices))

    return copy


def _device_copy(elements: int) -> Callable[[], None]:
    """A device-to-device copy of ``elements`` float32 values that returns once finished."""
    try:
        import cupy
    except ImportError:
        import torch

        torch_source = torch.ones(elements, dtype=torch.float32, device="cuda")
        torch_destination = torch.empty_like(torch_source)

        def torch_copy() -> None:
            torch_destination.copy_(torch_source)
            torch.cuda.synchronize()

        return torch_copy
    source = cupy.ones(elements, dtype=cupy.float32)
    destination = cupy.empty_like(source)

    def cupy_copy() -> None:
        cupy.copyto(destination, source)
        cupy.cuda.Device().synchronize()

    return cupy_copy


def _median_gbs(copy: Callable[[], None], nbytes: int, *, repeats: int) -> float:
    copy()  # first touch of the destination pages
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        copy()
        times.append(time.perf_counter() - start)
    return nbytes / statistics.median(times) / 1e9
