"""The chunk products of ``lossk.linear_cross_entropy`` for NumPy arrays, written into reused buffers.

The Array API products (``lossk._reference.linear``) allocate each result; NumPy's ``matmul(..., out=)``
writes the logits and the weight gradient's blocks into buffers allocated once per call, which saves one
chunk of fresh pages — and their page faults — per chunk. No Numba kernel: registered by this backend
because it is the one that takes NumPy arrays.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from lossk._dispatch import register
from lossk._reference.linear import PRODUCTS, ChunkProducts


class NumpyChunkProducts(ChunkProducts):
    """:class:`~lossk._reference.linear.ChunkProducts` through ``np.matmul(..., out=)``."""

    def __init__(self, xp: ModuleType, linear_weight: np.ndarray, chunk_rows: int) -> None:
        super().__init__(xp, linear_weight, chunk_rows)
        n_classes, n_features = linear_weight.shape
        self.logits_buffer = np.empty((chunk_rows, n_classes), dtype=linear_weight.dtype)
        self.block_buffer = np.empty((min(self.block_rows, n_classes), n_features), dtype=linear_weight.dtype)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.matmul(x, self.weight_t, out=self.logits_buffer[: x.shape[0]])

    def set_input_gradient(self, d_input: np.ndarray, start: int, stop: int, g: np.ndarray) -> None:
        np.matmul(g, self.weight, out=d_input[start:stop])

    def add_weight_block(self, d_weight: np.ndarray, start: int, stop: int, g_t: np.ndarray, x: np.ndarray) -> None:
        block = np.matmul(g_t, x, out=self.block_buffer[: stop - start])
        np.add(d_weight[start:stop], block, out=d_weight[start:stop])


@register(PRODUCTS, "numba")
def chunk_products(linear_weight: np.ndarray, *, xp: ModuleType, chunk_rows: int) -> NumpyChunkProducts:
    """NumPy products into reused buffers (``lossk._reference.linear.PRODUCTS``)."""
    return NumpyChunkProducts(xp, linear_weight, chunk_rows)
