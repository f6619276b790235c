"""The three matrix products of a chunk of ``lossk.linear_cross_entropy``, in the Array API.

A backend may register a faster way to compute them for its arrays under :data:`PRODUCTS` (the Numba
backend's NumPy products write into buffers reused across chunks); ``lossk.linear`` selects them as it
selects a loss's implementation, and this one serves every other library.
"""

from __future__ import annotations

from types import ModuleType

from .._array_api import Array

PRODUCTS = "linear_cross_entropy.products"
"""The dispatch registry's name of the chunk products: ``factory(linear_weight, *, xp, chunk_rows)`` returns a
:class:`ChunkProducts` for chunks of at most ``chunk_rows`` tokens."""

WEIGHT_GRADIENT_BLOCK_BYTES = 8 * 2**20
"""d_linear_weight += g.T @ x goes over the vocabulary in blocks: the product of a block (block, H) and the
block of g it reads (rows, block) each take at most about this many bytes (the Array API has no in-place
matrix product, and NumPy's product copies the transposed block of g before calling the BLAS)."""


class ChunkProducts:
    """The three matrix products of a chunk, with x (rows, H), W (V, H) and the logits' gradient g (rows, V):

    logits = x W^T,   d_input[rows] = g W,   d_weight += g^T x   (over W's rows in blocks).

    Each product allocates its result (the Array API has no ``out=``).
    """

    def __init__(self, xp: ModuleType, linear_weight: Array, chunk_rows: int) -> None:
        self.xp = xp
        self.weight = linear_weight
        self.weight_t = xp.matrix_transpose(linear_weight)
        n_features = linear_weight.shape[1]
        itemsize = xp.finfo(linear_weight.dtype).bits // 8
        self.block_rows = max(1, WEIGHT_GRADIENT_BLOCK_BYTES // (max(1, n_features, chunk_rows) * itemsize))

    def logits(self, x: Array) -> Array:
        """x W^T, a fresh array the caller may overwrite (until its next call)."""
        return self.xp.matmul(x, self.weight_t)

    def set_input_gradient(self, d_input: Array, start: int, stop: int, g: Array) -> None:
        """d_input[start:stop] = g W."""
        d_input[start:stop, ...] = self.xp.matmul(g, self.weight)

    def accumulate_weight_gradient(self, d_weight: Array, g: Array, x: Array) -> None:
        """d_weight += g^T x, a block of W's rows at a time."""
        n_classes = d_weight.shape[0]
        for start in range(0, n_classes, self.block_rows):
            stop = min(start + self.block_rows, n_classes)
            self.add_weight_block(d_weight, start, stop, self.xp.matrix_transpose(g[:, start:stop]), x)

    def add_weight_block(self, d_weight: Array, start: int, stop: int, g_t: Array, x: Array) -> None:
        """d_weight[start:stop] += g_t x, with g_t (stop - start, rows) the transposed block of g."""
        d_weight[start:stop, ...] += self.xp.matmul(g_t, x)


def chunk_products(linear_weight: Array, *, xp: ModuleType, chunk_rows: int) -> ChunkProducts:
    """The Array API products (registered as the ``array_api`` backend's :data:`PRODUCTS`)."""
    return ChunkProducts(xp, linear_weight, chunk_rows)
