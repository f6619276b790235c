"""CuPy arrays and PyTorch CUDA tensors in, the same library out: zero-copy views, device and stream.

A call works on *native* arrays — those of the caller's library — through a :class:`DeviceArrays` adapter:
contiguity, dtype casts of small options and allocation of the results happen in that library (so PyTorch
results come from PyTorch's caching allocator), and each array reaches the kernels as a raw device pointer.
PyTorch tensors are handed to CuPy through DLPack (``cupy.from_dlpack``, zero-copy); every launch goes to
PyTorch's current stream on the tensor's device (:func:`external_stream`: ``cupy.cuda.Stream.from_external``,
or ``ExternalStream`` before CuPy 14), so a lossk call is ordered with the surrounding PyTorch work exactly
like a PyTorch operator, with no synchronisation.

bfloat16: a PyTorch bfloat16 tensor crosses DLPack reinterpreted as int16 (the kernels only need its
address, and not every CuPy release imports DLPack's bfloat16); CuPy bfloat16 arrays are ml_dtypes arrays.

The decisions (:func:`library_of`, :func:`dlpack_view_dtype`, :func:`numpy_dtype`, :func:`usable_out`) are
pure Python and unit-tested without a GPU; the adapters need CuPy and, for tensors, PyTorch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .layout import broadcast_period, is_c_contiguous
from .specialisation import dtype_name


def library_of(x: Any) -> str:
    """'cupy' or 'torch', from the array's type (the dispatcher has already admitted only these two)."""
    module = type(x).__module__.split(".")[0]
    if module not in ("cupy", "torch"):
        raise TypeError(f"the cupy backend takes CuPy arrays and PyTorch CUDA tensors, got {module}")
    return module


def dlpack_view_dtype(library: str, name: str) -> str | None:
    """The dtype a tensor is reinterpreted as before crossing DLPack, or None to send it as it is."""
    return "int16" if library == "torch" and name == "bfloat16" else None


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype CuPy uses for ``name``; bfloat16 is ml_dtypes'."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def external_stream(cupy: Any, handle: int, device_id: int) -> Any:
    """A CuPy stream object for a stream made elsewhere (PyTorch's): ``Stream.from_external`` where CuPy has
    it (14 and newer, where ``ExternalStream`` is deprecated and warns on every use), else ``ExternalStream``."""
    from_external = getattr(cupy.cuda.Stream, "from_external", None)
    if from_external is not None:
        try:
            return from_external(handle, device_id)
        except TypeError:  # a release whose from_external takes the handle alone
            return from_external(handle)
    return cupy.cuda.ExternalStream(handle, device_id)


def usable_out(out_shape: Sequence[int], out_strides: Sequence[int], out_dtype: str, shape: Sequence[int], dtype: str) -> bool:
    """Whether the kernels can write the gradient straight into ``out`` (strides in elements); otherwise they
    write a fresh array and the caller copies it into ``out``."""
    return tuple(out_shape) == tuple(shape) and out_dtype == dtype and is_c_contiguous(out_shape, out_strides)


class DeviceArrays:
    """Native operations on the arrays of one call, and the device pointers the kernels take."""

    def __init__(self, example: Any) -> None:
        import cupy

        self.cupy = cupy
        self.library = library_of(example)
        self._views: list[Any] = []  # DLPack views kept alive until the call ends
        if self.library == "torch":
            import torch

            self.torch = torch
            self.device_id = example.device.index if example.device.index is not None else torch.cuda.current_device()
        else:
            self.device_id = example.device.id

    @contextlib.contextmanager
    def on_device(self) -> Iterator[None]:
        """CuPy's current device (and, for PyTorch, stream) set to the caller's for the launches inside."""
        with self.cupy.cuda.Device(self.device_id):
            if self.library == "torch":
                stream = self.torch.cuda.current_stream(self.device_id)
                with external_stream(self.cupy, stream.cuda_stream, self.device_id):
                    yield
            else:
                yield

    # ---- shapes and layouts --------------------------------------------------------------------------
    @staticmethod
    def dtype(x: Any) -> str:
        return dtype_name(x.dtype)

    def itemsize(self, x: Any) -> int:
        return x.element_size() if self.library == "torch" else x.itemsize

    def strides(self, x: Any) -> tuple[int, ...]:
        """Strides in elements."""
        if self.library == "torch":
            return tuple(x.stride())
        return tuple(s // x.itemsize for s in x.strides)

    # ---- native operations ---------------------------------------------------------------------------
    def contiguous(self, x: Any) -> Any:
        if is_c_contiguous(tuple(x.shape), self.strides(x)):
            return x
        return x.contiguous() if self.library == "torch" else self.cupy.ascontiguousarray(x)

    def astype(self, x: Any, name: str) -> Any:
        """``x`` in dtype ``name`` (no copy when it already is)."""
        if self.dtype(x) == name:
            return x
        if self.library == "torch":
            return x.to(getattr(self.torch, name))
        return x.astype(numpy_dtype(name))

    def empty(self, shape: Sequence[int], name: str) -> Any:
        if self.library == "torch":
            return self.torch.empty(tuple(shape), dtype=getattr(self.torch, name), device=f"cuda:{self.device_id}")
        with self.cupy.cuda.Device(self.device_id):
            return self.cupy.empty(tuple(shape), dtype=numpy_dtype(name))

    def periodic_option(self, x: Any, accumulator: str) -> tuple[Any, int]:
        """A per-element option as (compact native array in the accumulator dtype, period): a broadcast view
        keeps its compact block (read as base[i % period]), any other layout becomes contiguous."""
        shape = tuple(x.shape)
        period = broadcast_period(shape, self.strides(x))
        if period is None:
            x = self.contiguous(x)
            period = int(np.prod(shape))
        if period != int(np.prod(shape)):
            if self.library == "torch":
                x = x.as_strided((period,), (1,))
            else:
                x = self.cupy.lib.stride_tricks.as_strided(x, (period,), (x.itemsize,))
        return self.astype(x, accumulator), period

    # ---- what the kernels receive ----------------------------------------------------------------------
    def pointer(self, x: Any | None) -> int:
        """The device address of ``x``'s first element (0 for None), through DLPack for PyTorch tensors."""
        if x is None:
            return 0
        if self.library == "cupy":
            return int(x.data.ptr)
        x = x.detach()  # DLPack refuses tensors that require grad; detach() shares the memory
        view_dtype = dlpack_view_dtype("torch", self.dtype(x))
        if view_dtype is not None:
            x = x.view(getattr(self.torch, view_dtype))
        with self.cupy.cuda.Device(self.device_id):
            view = self.cupy.from_dlpack(x)
        self._views.append(view)
        return int(view.data.ptr)

    def zeros(self, shape: Sequence[int], name: str) -> Any:
        if self.library == "torch":
            return self.torch.zeros(tuple(shape), dtype=getattr(self.torch, name), device=f"cuda:{self.device_id}")
        with self.cupy.cuda.Device(self.device_id):
            return self.cupy.zeros(tuple(shape), dtype=numpy_dtype(name))

    def scratch(self, count: int, name: str) -> Any:
        """A CuPy buffer for partial sums and divisors (never handed back to the caller)."""
        with self.cupy.cuda.Device(self.device_id):
            return self.cupy.empty((max(count, 1),), dtype=numpy_dtype(name))

    @staticmethod
    def scratch_pointer(buffer: Any) -> int:
        return int(buffer.data.ptr)
