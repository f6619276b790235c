"""The ``cupy`` backend: fused CUDA kernels (``lossk._kernels.cuda``) for CuPy arrays and PyTorch CUDA tensors.

Importing this package registers every loss with ``lossk._dispatch`` and imports neither CuPy nor PyTorch:
CuPy is imported on the first call, which compiles the kernel variant it needs (NVRTC, cached per
specialisation). The pure-Python parts — specialisation macros, launch plans, argument packing, layout and
DLPack decisions — are unit-tested without a GPU (``tests/test_cuda_host.py``); every source is compiled
for sm_90 by ``tests/test_cuda_compile.py``; ``tests/test_cuda_gpu.py`` (``pytest -m gpu``) checks the
kernels against the reference on a device.
"""

from . import class_losses, elementwise_losses, multi_input

__all__ = ["class_losses", "elementwise_losses", "multi_input"]
