"""Memory layouts the kernels read without a copy, decided from shapes and strides alone (pure Python).

The kernels take contiguous arrays, plus one cheap exception for per-element options: a broadcast view
(``weight`` or ``pos_weight`` of shape (C,) broadcast to (N, C) by the public function) is read as its
compact trailing block, element ``i`` being ``base[i % period]``, instead of being materialised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def broadcast_period(shape: Sequence[int], strides: Sequence[int]) -> int | None:
    """The period of a view read in C order as a repeated compact block, or None.

    ``strides`` are in elements. A C-contiguous array gives its size; a view whose leading axes have stride
    0 (or length 1) and whose trailing axes are C-contiguous gives the size of that trailing block; any
    other layout gives None (the caller makes a contiguous copy).

    >>> broadcast_period((4, 3), (3, 1)), broadcast_period((4, 3), (0, 1)), broadcast_period((4, 3), (1, 4))
    (12, 3, None)
    """
    size = math.prod(shape)
    if size == 0:
        return 0
    period = 1
    leading = len(shape)
    for axis in reversed(range(len(shape))):
        if shape[axis] == 1:
            leading = axis
            continue
        if strides[axis] != period:
            break
        period *= shape[axis]
        leading = axis
    for axis in range(leading):
        if shape[axis] != 1 and strides[axis] != 0:
            return None
    return period


def is_c_contiguous(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether a view with these strides (in elements) is C-contiguous (axes of length 1 may have any stride)."""
    return broadcast_period(shape, strides) == math.prod(shape)


def class_layout(shape: Sequence[int]) -> tuple[int, int, int]:
    """(rows, classes, inner) of a cross-entropy input (C,), (N, C) or (N, C, d1, ...): row r = (n, s),
    class c of it at n C S + c S + s, with S = inner = d1 * ... (1 without spatial axes)."""
    if len(shape) == 1:
        return 1, shape[0], 1
    inner = math.prod(shape[2:])
    return shape[0] * inner, shape[1], inner
