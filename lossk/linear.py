"""A linear layer and cross-entropy in one call that never materialises the (N, V) logits.

An LLM's last layer maps N hidden states (N, H) to logits over a vocabulary of V classes; the logits and
their gradient are the largest arrays of a training step. ``linear_cross_entropy`` goes over the tokens in
chunks: a chunk's logits come from the namespace's own matrix product (the BLAS behind NumPy, cuBLAS behind
CuPy and PyTorch), ``cross_entropy.value_and_grad(..., inplace=True)`` overwrites them with their gradient
(a fused kernel on the Numba and CUDA backends, no further memory), and the two gradient products are
accumulated. Peak extra memory is one chunk, whatever N.

This module speaks the Array API only. The products are dispatched as a loss's implementation is
(``lossk._reference.linear``: the Array API's, or a backend's own, such as NumPy's into reused buffers), and
the mean's divisors stay 0-d arrays of the input's library: nothing here synchronises a GPU or computes a
lazy (Dask) graph.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import classification
from ._array_api import Array, as_array, is_writeable_array, namespace_of
from ._dispatch import Implementation, implementations, select
from ._reduction import compute_dtype
from ._reference import classification as reference_classification
from ._reference.linear import PRODUCTS
from ._validation import (
    check_array,
    check_class_indices,
    check_floating,
    check_grad_output,
    check_integer,
    check_nonnegative,
    check_positive,
    check_reduction,
    check_shape,
    check_unit_interval,
)

LOGITS_CHUNK_BYTES = 32 * 2**20
"""``chunk_size=None`` takes as many tokens as fit this many bytes of logits (in the input's dtype)."""

UNFUSED_TEMPORARIES = 8
"""A cross-entropy that does not write its gradient in place (the reference) makes about this many
chunk-sized temporaries, so its chunks are this many times smaller."""

HESSIAN_LOGITS_CHUNK_BYTES = 16 * 2**20
"""``chunk_size=None`` for the second derivatives: chunks of this many bytes of logits. Their reference
cross-entropy makes about a dozen chunk-sized temporaries (some 200 MiB), traded for fewer passes over the
(V, H) weight gradient and Hessian that every chunk adds to (``bench/NOTES.md``: at V = 32768, H = 512 this
is 128 rows, the fastest of 32 to 512)."""


@dataclass(frozen=True)
class ChunkedCall:
    """A validated call of :func:`linear_cross_entropy`."""

    xp: ModuleType
    input: Array
    linear_weight: Array
    target: Array
    linear_bias: Array | None
    reduction: str
    z_loss: float
    return_z_loss: bool
    chunk_rows: int
    cross_entropy_options: dict[str, Any]
    """weight, ignore_index, label_smoothing, softcap and backend, passed to every chunk's cross-entropy."""
    products: Implementation
    """``products(linear_weight, xp=, chunk_rows=)``: the chunks' matrix products (``lossk._reference.linear``)."""
    hessian_chunk_rows: int
    """The chunk size of the second derivatives' pass (:data:`HESSIAN_LOGITS_CHUNK_BYTES`)."""


class LinearCrossEntropy:
    """``linear_cross_entropy(input, linear_weight, target, ...)`` returns the loss;
    ``.value_and_grad`` returns ``(loss, (d_input, d_linear_weight, d_linear_bias))``."""

    def __init__(self, prepare: Callable[..., ChunkedCall]) -> None:
        functools.update_wrapper(self, prepare)
        self._prepare = prepare

    def __repr__(self) -> str:
        return "<lossk loss function linear_cross_entropy>"

    def __call__(self, input: Array, linear_weight: Array, target: Array, /, **options: Any) -> Any:
        """The loss (``(loss, z_term)`` with ``return_z_loss=True``); nothing is kept for a backward pass."""
        value, _, _ = _run(self._prepare(input, linear_weight, target, **options), order=0, grad_output=None)
        return value

    def value_and_grad(
        self, input: Array, linear_weight: Array, target: Array, /, *, grad_output: Any = None, **options: Any
    ) -> tuple[Any, tuple[Array, Array, Array | None]]:
        """``(loss, (d_input, d_linear_weight, d_linear_bias))``, d_linear_bias None without a bias.

        The loss is ``(loss, z_term)`` with ``return_z_loss=True``. ``grad_output`` is the upstream gradient:
        a scalar for 'mean' and 'sum' (default 1), an (N,) array for 'none' (default ones).
        """
        call = self._prepare(input, linear_weight, target, **options)
        grad_output = check_grad_output(grad_output, call.reduction, (input.shape[0],), input)
        loss, grads, _ = _run(call, order=1, grad_output=grad_output)
        return loss, grads

    def value_grad_hessian(
        self, input: Array, linear_weight: Array, target: Array, /, *, grad_output: Any = None, **options: Any
    ) -> tuple[Any, tuple[Array, Array, Array | None], tuple[Array, Array, Array | None]]:
        r"""``(loss, (d_input, d_linear_weight, d_linear_bias), (h_input, h_linear_weight, h_linear_bias))``:
        the gradients as :meth:`value_and_grad` gives them and the diagonals of the Hessian with respect to
        each argument, shaped like it (``h_linear_bias`` None without a bias), scaled by the reduction and
        ``grad_output`` like the gradients.

        With each row's Hessian with respect to its logits written ``diag(D) + c beta beta^T``
        (``lossk._reference.classification``; ``h`` its diagonal, cross-entropy's Hessian) and the logits
        ``z = x W^T + b``:

        .. math:: h_{x, nj} = \textstyle\sum_v D_{nv} W_{vj}^2 + c_n (\sum_v \beta_{nv} W_{vj})^2, \qquad
                  h_{W, vj} = \textstyle\sum_n h_{nv} x_{nj}^2, \qquad h_{b, v} = \textstyle\sum_n h_{nv}.

        Three more matrix products per chunk than the gradient's (six in all), and one array like
        ``linear_weight`` (its square). Each chunk's cross-entropy is the reference (Array API, on the
        input's library); ``chunk_size=None`` takes chunks of 16 MiB of logits
        (:data:`HESSIAN_LOGITS_CHUNK_BYTES`); ``backend`` chooses the products.
        Without a soft-cap or z-loss, ``h_input`` is the variance of ``W``'s columns under each row's softmax
        times the row's weight: a difference of two sums that loses relative precision where one class takes
        nearly all the probability.
        """
        call = self._prepare(input, linear_weight, target, **options)
        grad_output = check_grad_output(grad_output, call.reduction, (input.shape[0],), input)
        return _run(call, order=2, grad_output=grad_output)

    def hessian(
        self, input: Array, linear_weight: Array, target: Array, /, *, grad_output: Any = None, **options: Any
    ) -> tuple[Array, Array, Array | None]:
        """``(h_input, h_linear_weight, h_linear_bias)``, the Hessian's diagonals of :meth:`value_grad_hessian`."""
        return self.value_grad_hessian(input, linear_weight, target, grad_output=grad_output, **options)[2]


@LinearCrossEntropy
def linear_cross_entropy(
    input: Array,
    linear_weight: Array,
    target: Array,
    *,
    linear_bias: Array | None = None,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> ChunkedCall:
    r"""Cross-entropy of the logits :math:`z = x W^\top + b` of a linear layer, computed chunk by chunk.

    Equal to ``cross_entropy(input @ linear_weight.T + linear_bias, target, weight=weight, ...)`` with
    every option of :func:`lossk.cross_entropy` (``z_loss``, ``softcap`` and ``return_z_loss`` included),
    without ever holding the (N, V) logits. With :math:`g = \partial \ell / \partial z` (the
    cross-entropy's gradient, one chunk of tokens at a time),

    .. math:: \partial \ell / \partial x = g W, \qquad \partial \ell / \partial W = g^\top x, \qquad
              \partial \ell / \partial b = \textstyle\sum_n g_n .

    ``input`` is (N, H), ``linear_weight`` (V, H) as in ``torch.nn.Linear``, ``linear_bias`` (V,), both in
    ``input``'s dtype; ``target`` holds N class indices; ``weight`` is the per-class weight (V,). The mean
    divides by the sum of :math:`w_y` over the tokens not ignored (their count for the z-loss part), summed
    over all chunks before any chunk is computed. ``chunk_size`` tokens go through at a time; ``None``
    chooses it so that one chunk's logits take about 32 MiB (4 MiB when the cross-entropy backend is the
    reference, which makes temporaries). Extra memory beyond the three gradients: one chunk of logits, an
    (chunk_size, H) product and an 8 MiB block of the weight gradient's product. Matrix products run in the
    input's dtype (float16 and bfloat16 accumulate in float32 on GPUs) and the weight gradient accumulates
    over chunks in that dtype. ``backend`` chooses the cross-entropy's backend, as in
    :func:`lossk.cross_entropy`. PyTorch equivalent: ``torch.nn.functional.linear_cross_entropy`` (pass
    ``ignore_index=-100`` explicitly: its default is ``None``), chunked with
    ``options=torch.nn.LinearCrossEntropyOptions()``.

    >>> import numpy as np, lossk
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> w = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> loss, (d_x, d_w, d_b) = lossk.linear_cross_entropy.value_and_grad(x, w, np.array([0, 1, 2]), chunk_size=2)
    >>> round(float(loss), 6), d_x.shape, d_w.shape, d_b
    (0.988295, (3, 2), (3, 2), None)
    """
    for name, array in (("input", input), ("linear_weight", linear_weight), ("target", target)):
        check_array(name, array)
    xp = namespace_of(input=input, linear_weight=linear_weight, target=target, linear_bias=linear_bias, weight=weight)
    check_floating("input", input, xp)
    if input.ndim != 2:
        raise ValueError(f"input must have shape (N, H) (tokens, hidden features), got {tuple(input.shape)}")
    n_tokens, n_features = input.shape
    if linear_weight.ndim != 2 or linear_weight.shape[1] != n_features:
        raise ValueError(
            f"linear_weight must have shape (V, {n_features}) (classes, the input's hidden features), "
            f"got {tuple(linear_weight.shape)}"
        )
    n_classes = linear_weight.shape[0]
    _check_input_dtype("linear_weight", linear_weight, input)
    if linear_bias is not None:
        check_shape("linear_bias", linear_bias, (n_classes,), "one bias per class")
        _check_input_dtype("linear_bias", linear_bias, input)
    if weight is not None:
        check_floating("weight", weight, xp)
        check_shape("weight", weight, (n_classes,), "one weight per class")
    check_reduction(reduction)
    try:
        ignore_index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}") from None
    check_integer("target", target, xp)
    check_shape("target", target, (n_tokens,), "one class index per row of input")
    check_class_indices("target", target, n_classes, ignore_index, xp)
    check_unit_interval("label_smoothing", label_smoothing)
    check_nonnegative("z_loss", z_loss)
    if softcap is not None:
        check_positive("softcap", softcap)
    if not isinstance(return_z_loss, bool):
        raise TypeError(f"return_z_loss must be a bool, got {return_z_loss!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be None or an integer >= 1, got {chunk_size!r}")
    row_bytes = n_classes * xp.finfo(input.dtype).bits // 8
    automatic_rows = max(1, LOGITS_CHUNK_BYTES // max(row_bytes, 1))
    # the backend that will compute the chunks' cross-entropy (this also rejects an unusable backend now)
    registration = select("cross_entropy", backend, input, n_elements=automatic_rows * n_classes)
    hessian_rows = max(1, HESSIAN_LOGITS_CHUNK_BYTES // max(row_bytes, 1)) if chunk_size is None else chunk_size
    if chunk_size is None:
        chunk_size = automatic_rows if registration.writes_out else max(1, automatic_rows // UNFUSED_TEMPORARIES)
    # the matrix products of the backend asked for where it registers its own (else the Array API's)
    products_backend = backend if backend == "auto" or backend in implementations(PRODUCTS) else "array_api"
    products = select(PRODUCTS, products_backend, input)
    options = {
        "weight": weight,
        "ignore_index": ignore_index,
        "label_smoothing": float(label_smoothing),
        "softcap": None if softcap is None else float(softcap),
        "backend": backend,
    }
    return ChunkedCall(
        xp,
        input,
        linear_weight,
        target,
        linear_bias,
        reduction,
        float(z_loss),
        return_z_loss,
        min(chunk_size, max(n_tokens, 1)),
        options,
        products.implementation,
        min(hessian_rows, max(n_tokens, 1)),
    )


def _check_input_dtype(name: str, x: Array, input: Array) -> None:
    if x.dtype != input.dtype:
        raise TypeError(f"{name} must have the input's dtype {input.dtype}, got {x.dtype}")


def _mean_divisors(call: ChunkedCall) -> tuple[Array, Array]:
    """(Σ w_y over the tokens not ignored, their count) as 0-d arrays of the compute dtype: what the mean
    divides the cross-entropy and the z-loss parts by, over all tokens. Arrays, not numbers: reading them
    would synchronise a GPU or compute a lazy (Dask) graph."""
    xp, target = call.xp, call.target
    dtype = compute_dtype(xp, call.input.dtype)
    kept = target != call.cross_entropy_options["ignore_index"]
    count = xp.sum(xp.astype(kept, dtype))
    weight = call.cross_entropy_options["weight"]
    if weight is None:
        return count, count
    safe_target = xp.where(kept, target, xp.zeros_like(target))
    w_y = xp.take(xp.astype(weight, dtype), safe_target)
    return xp.sum(xp.where(kept, w_y, xp.zeros_like(w_y))), count


@dataclass(frozen=True)
class ChunkPlan:
    """How every chunk is computed so that the chunks add up to the requested reduction over all tokens."""

    reduction: str
    """Each chunk's reduction: 'none' for 'none', else 'sum'."""
    weight: Array | None
    """The class weights each chunk's cross-entropy takes."""
    factor: Any
    """What the summed chunk losses are multiplied by: 1, or a 0-d array for 'mean'."""
    upstream: Any
    """The upstream gradient of every 'sum' chunk (for 'none', the caller's, sliced per chunk)."""


def _chunk_plan(call: ChunkedCall, grad_output: Any) -> ChunkPlan:
    """The chunks' reduction, class weights and factors (see :class:`ChunkPlan`).

    The mean divides the cross-entropy part by D (Σ w_y) and the z part by D_z (tokens kept):

        Σ w_y ce / D + λ Σ lse² / D_z = (Σ (w_y D_z / D) ce + λ Σ lse²) / D_z,

    so with class weights and a z-loss the chunks take the class weights times D_z / D and 'sum', and the
    total is divided by D_z; otherwise (no class weights: D = D_z; no z-loss) the weights stay and the total
    is divided by D. D and D_z stay arrays (:func:`_mean_divisors`). A mean over no tokens (D or D_z zero) is
    NaN, as in PyTorch.
    """
    weight = call.cross_entropy_options["weight"]
    if call.reduction == "none":
        return ChunkPlan("none", weight, 1.0, grad_output)
    upstream = 1.0 if grad_output is None else grad_output
    if call.reduction == "sum":
        return ChunkPlan("sum", weight, 1.0, upstream)
    xp = call.xp
    divisor, z_divisor = _mean_divisors(call)
    empty = (divisor == 0) | (z_divisor == 0)
    one = xp.ones_like(z_divisor)
    rescale = weight is not None and call.z_loss != 0
    total_divisor = z_divisor if rescale else divisor
    # as_array: NumPy's arithmetic on 0-d arrays gives NumPy scalars
    factor = as_array(xp, xp.where(empty, xp.full_like(one, float("nan")), one / xp.where(empty, one, total_divisor)))
    if rescale:
        ratio = as_array(xp, xp.where(empty, one, z_divisor / xp.where(empty, one, divisor)))
        weight = xp.astype(weight, ratio.dtype) * ratio
    return ChunkPlan("sum", weight, factor, as_array(xp, upstream * factor))


def _run(call: ChunkedCall, *, order: int, grad_output: Any) -> tuple[Any, Any, Any]:
    """``(loss, grads, hessians)`` over the chunks: the loss alone at ``order`` 0, the gradients from 1, the
    Hessian's diagonals at 2 (:meth:`LinearCrossEntropy.value_grad_hessian` gives the formulas); ``None`` for
    what the order leaves out."""
    xp, input, linear_weight, target, bias = call.xp, call.input, call.linear_weight, call.target, call.linear_bias
    n_tokens = input.shape[0]
    rows = call.hessian_chunk_rows if order == 2 else call.chunk_rows
    dtype = compute_dtype(xp, input.dtype)
    plan = _chunk_plan(call, grad_output)
    options = {
        **call.cross_entropy_options,
        "weight": plan.weight,
        "reduction": plan.reduction,
        "z_loss": call.z_loss,
        "return_z_loss": call.return_z_loss,
    }
    products = call.products(linear_weight, xp=xp, chunk_rows=min(rows, n_tokens))
    grads = _ChunkSums(xp, products, input, linear_weight, bias) if order >= 1 else None
    hessians = _ChunkSums(xp, products, input, linear_weight, bias) if order == 2 else None
    if order == 2:
        reference_options = {name: value for name, value in options.items() if name != "backend"}
        weight_in_dtype = xp.astype(linear_weight, dtype, copy=False)
        square_weight = weight_in_dtype**2
    losses, z_terms = [], []
    chunk_upstream = plan.upstream
    for start in range(0, n_tokens, rows):
        stop = min(start + rows, n_tokens)
        x = input[start:stop, ...]
        logits = products.logits(x)
        if bias is not None:
            logits += bias
        if order >= 1 and call.reduction == "none" and plan.upstream is not None:
            chunk_upstream = plan.upstream[start:stop]
        if order == 2:
            value, g, h, (diagonal, coefficient, beta) = reference_classification.cross_entropy_derivatives(
                logits, target[start:stop], xp=xp, grad_output=chunk_upstream, order=2, hessian_factors=True,
                **reference_options,
            )
            h_rows = xp.matmul(diagonal, square_weight) + coefficient * xp.matmul(beta, weight_in_dtype) ** 2
            hessians.add(start, stop, h, x * x, rows=xp.astype(h_rows, input.dtype))
            del h, diagonal, coefficient, beta, h_rows
        elif order == 1:
            value, g = classification.cross_entropy.value_and_grad(
                logits, target[start:stop], grad_output=chunk_upstream, inplace=grads.in_place, **options
            )
        else:
            value = classification.cross_entropy(logits, target[start:stop], **options)
        del logits  # the chunk's logits (and gradient) go before the next chunk's are made
        if order >= 1:
            grads.add(start, stop, g, x)
            del g
        loss, z_term = value if call.return_z_loss else (value, None)
        losses.append(loss)
        z_terms.append(z_term)
        del value, loss
    result = _combine(xp, losses, call.reduction, plan.factor, dtype, input.dtype)
    if call.return_z_loss:
        result = (result, _combine(xp, z_terms, call.reduction, plan.factor, dtype, input.dtype))
    return result, None if grads is None else grads.arrays(), None if hessians is None else hessians.arrays()


class _ChunkSums:
    """The (N, H), (V, H) and (V,) results of a pass over the chunks: rows set chunk by chunk, and sums over
    the chunks of ``g^T x`` and of ``g``'s columns. In place where the library's arrays are writeable (the
    products' own buffers and blocks); otherwise (JAX) the rows are concatenated and the sums added, new arrays
    each time."""

    def __init__(self, xp: ModuleType, products: Any, input: Array, linear_weight: Array, bias: Array | None) -> None:
        self.xp, self.products, self.linear_weight = xp, products, linear_weight
        # whether the library's new arrays take item assignment (JAX's do not), asked of an empty one
        self.in_place = is_writeable_array(xp.empty_like(input[:0, ...]))
        self.input = xp.empty_like(input) if self.in_place else None
        self.chunks: list[Array] = []
        self.weight = xp.zeros_like(linear_weight)
        self.bias = None if bias is None else xp.zeros_like(bias)

    def add(self, start: int, stop: int, g: Array, x: Array, rows: Array | None = None) -> None:
        """Rows ``start:stop`` = ``rows`` (default ``g W``); weight += ``g^T x``; bias += the column sums of ``g``."""
        xp = self.xp
        if self.in_place:
            if rows is None:
                self.products.set_input_gradient(self.input, start, stop, g)
            else:
                self.input[start:stop, ...] = rows
            self.products.accumulate_weight_gradient(self.weight, g, x)
            if self.bias is not None:
                self.bias += xp.sum(g, axis=0)
            return
        self.chunks.append(xp.matmul(g, self.linear_weight) if rows is None else rows)
        self.weight = self.weight + xp.matmul(xp.matrix_transpose(g), x)
        if self.bias is not None:
            self.bias = self.bias + xp.sum(g, axis=0)

    def arrays(self) -> tuple[Array, Array, Array | None]:
        if self.in_place:
            return self.input, self.weight, self.bias
        no_rows = self.xp.zeros((0, self.linear_weight.shape[1]), dtype=self.linear_weight.dtype)
        return self.xp.concat(self.chunks) if self.chunks else no_rows, self.weight, self.bias


def _combine(xp: ModuleType, chunks: list[Array], reduction: str, factor: Any, dtype: Any, out_dtype: Any) -> Array:
    """The chunks' losses as one: concatenated for 'none', else their sum (in ``dtype``) times ``factor``."""
    if reduction == "none":
        return xp.concat(chunks) if chunks else xp.zeros((0,), dtype=out_dtype)
    total = xp.asarray(0.0, dtype=dtype)
    for loss in chunks:
        total = total + xp.astype(loss, dtype)
    return xp.astype(as_array(xp, total * factor), out_dtype)
