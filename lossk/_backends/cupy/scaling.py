"""What the kernels multiply and divide by: the upstream gradient's form and the mean's scale (pure Python).

The gradient of a reduced loss is scaled by ``grad_output / divisor``. Nothing here reads device memory:
a ``grad_output`` held on the GPU is passed to the kernels by address, and a divisor that depends on the
data (a sum of weights, a count of rows not ignored) is computed on the device by a small pre-pass, so a
call never waits for the GPU.
"""

from __future__ import annotations

import math
from typing import Any


def upstream_kind(grad_output: Any, reduction: str, input_library: str) -> str:
    """How the upstream gradient reaches the kernels.

    'ones' (None), 'array' (reduction='none': one value per loss element, read by the kernel),
    'device' (a 0-d CuPy array or CUDA tensor of the input's library: read by the kernel from its address)
    or 'host' (anything else — a Python number, a 0-d host array, a 0-d array of another library: read
    once here and folded into a kernel argument).
    """
    if grad_output is None:
        return "ones"
    if reduction == "none":
        return "array"
    if isinstance(grad_output, (int, float)):
        return "host"
    library = type(grad_output).__module__.split(".")[0]
    on_gpu = library == "cupy" or (library == "torch" and grad_output.device.type == "cuda")
    return "device" if on_gpu and library == input_library else "host"


def host_upstream(grad_output: Any, kind: str) -> float:
    """The factor of the upstream gradient known on the host (1 unless ``kind`` is 'host')."""
    return float(grad_output) if kind == "host" else 1.0


def reciprocal(count: float) -> float:
    """1 / count, with 1 / 0 = inf so that the mean over nothing is 0 * inf = NaN, as in PyTorch."""
    return math.inf if count == 0 else 1.0 / count
