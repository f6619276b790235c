"""Fused cross-entropy and negative log-likelihood: the loss and its gradient, rows in parallel.

Cross-entropy of a row z with per-class coefficients q (see ``lossk._reference.classification``) is

    loss = Σ_c q_c (lse - z_c),   lse = m + log S,   S = Σ_c e^{z_c - m},   m = max_c z_c,
    d loss / d z_c = s e^{z_c - m} / S - q_c,   s = Σ_c q_c,

written as ``s log S + Σ_c q_c (m - z_c)``: both terms are non-negative sums, so nothing cancels.
With soft-capping the row is first z -> c tanh(z / c) and the gradient is chained with 1 - tanh²(z / c);
the z-loss λ lse² adds 2 λ lse e^{z_c - m} / S to the gradient. Asked for it (a ``hess`` buffer), step 4
also writes the diagonal of the Hessian from the same e_c, p_c = e_c / S (the formula is the reference's,
``lossk._reference.classification``): a p_c (1 - p_c) + b p_c², a the gradient's softmax coefficient and
b = z_scale 2 λ, chained through the soft-cap — one more store per element, nothing recomputed.

Each row is read from memory once and worked on while it sits in the core's L2 cache (a 32768-class
float32 row is 128 KiB):

1. the row maximum m, copying the (capped) row into the gradient buffer — nothing to copy in in-place
   mode (the buffer is the logits); from here on every step works on that one array, so LLVM needs no
   runtime alias check (which fails, and falls back to scalar code, when the output is the input);
2. only with label smoothing or probability targets: Σ q_c (m - z_c) and Σ q_c;
3. e_c = e^{z_c - m} once per element, summed into S (float64) and written over the row;
4. the gradient, from the stored e_c: g_c = e_c (scale s + z_scale 2 λ lse) / S - scale q_c, the target
   class fixed afterwards.

With soft-capping step 3 cannot keep both the capped logit and its exponential, so step 4 recomputes the
exponential (two exp and one tanh per element instead of one exp). The loss alone (no gradient buffer)
reads the logits in steps 1-3 without writing anything.

:func:`cross_entropy_rows` does a range of rows in the calling thread (the host runs small inputs so);
:func:`cross_entropy` runs fixed chunks of rows in parallel, each chunk summing its rows' losses in
float64 and the chunks' sums added in chunk order, so the loss does not depend on the number of threads.
float32 rows use float32 arithmetic (exp by ``vecmath.exp32``, vectorised) with float64 row sums;
float64 rows use float64 throughout (``math.exp``). Input (N, C, d1, ...) is worked on as (N, C, S)
without a transposed copy: row (n, s) is the strided view ``[n, :, s]`` and consecutive rows are
consecutive s, so each cache line of a class plane serves 16 rows; those rows are not vectorised.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .typed_math import exp_of, tanh_of
from .vecmath_extra import maximum

ROW_FASTMATH = {"reassoc", "contract", "nsz"}
"""Reassociation lets LLVM vectorise the row sums; NaN and inf semantics are kept."""

SUM_BLOCK = 256
"""float32 rows sum their exponentials in float32 over blocks of this many elements, the blocks in
float64: float64 accuracy (relative error ~1e-9) at float32 vector width."""

ELEMENTS_PER_CHUNK = 1 << 16
"""Rows are grouped into chunks of about this many elements: the unit of parallel work and of summation."""


def element(array, value):
    """``value`` as a scalar of ``array``'s dtype (keeps float32 loops in float32)."""


@overload(element)
def _element(array, value):
    dtype = array.dtype
    return lambda array, value: dtype(value)


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def capped(value, softcap):
    """softcap · tanh(value / softcap), or ``value`` when ``softcap`` is None."""
    if softcap is None:
        return value
    return softcap * tanh_of(value / softcap)


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def row_max(row, softcap):
    """max_c of the (capped) row; NaN if it holds a NaN."""
    m = element(row, -np.inf)
    for c in range(row.shape[0]):
        m = maximum(m, capped(row[c], softcap))
    return m


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def copy_row_max(row, out, softcap):
    """out <- the (capped) row; returns its maximum. ``out`` must not overlap ``row``."""
    m = element(out, -np.inf)
    for c in range(row.shape[0]):
        v = capped(row[c], softcap)
        out[c] = v
        m = maximum(m, v)
    return m


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def cap_row_max_in_place(row, softcap):
    """row <- softcap · tanh(row / softcap); returns its maximum."""
    m = element(row, -np.inf)
    for c in range(row.shape[0]):
        v = capped(row[c], softcap)
        row[c] = v
        m = maximum(m, v)
    return m


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def coefficient_gap_sums(row, m, softcap, class_weight, probabilities, probability_coefficient, constant):
    """(Σ q_c (m - z_c), Σ q_c) in float64 with q_c = w_c (t_c · probability_coefficient + constant).

    ``class_weight`` None means w = 1, ``probabilities`` None means t = 0.
    """
    gap = 0.0
    total = 0.0
    for c in range(row.shape[0]):
        q = constant
        if probabilities is not None:
            q = probabilities[c] * probability_coefficient + constant
        if class_weight is not None:
            q = q * class_weight[c]
        gap += np.float64(q * (m - capped(row[c], softcap)))
        total += np.float64(q)
    return gap, total


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def exp_sum(row, m, softcap):
    """Σ_c e^{z_c - m} in float64 (z the capped row); blocks of SUM_BLOCK summed in the row's dtype."""
    n = row.shape[0]
    total = 0.0
    for start in range(0, n - n % SUM_BLOCK, SUM_BLOCK):
        block = element(row, 0.0)
        for c in range(start, start + SUM_BLOCK):
            block += exp_of(capped(row[c], softcap) - m)
        total += np.float64(block)
    block = element(row, 0.0)
    for c in range(n - n % SUM_BLOCK, n):
        block += exp_of(capped(row[c], softcap) - m)
    return total + np.float64(block)


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def exp_sum_in_place(row, m):
    """row <- e^{row - m}; returns its sum in float64, as :func:`exp_sum`."""
    n = row.shape[0]
    total = 0.0
    for start in range(0, n - n % SUM_BLOCK, SUM_BLOCK):
        block = element(row, 0.0)
        for c in range(start, start + SUM_BLOCK):
            e = exp_of(row[c] - m)
            row[c] = e
            block += e
        total += np.float64(block)
    block = element(row, 0.0)
    for c in range(n - n % SUM_BLOCK, n):
        e = exp_of(row[c] - m)
        row[c] = e
        block += e
    return total + np.float64(block)


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def write_gradient(grad, m, softmax_scale, softcap, class_weight, probabilities, probability_scale, constant,
                   hess, inverse_total, square_scale):
    """grad_c <- (softmax_scale e_c - w_c (t_c probability_scale + constant)) (1 - tanh² when soft-capped).

    Without soft-capping ``grad`` holds e_c = e^{z_c - m}; with it, the capped logit v_c, and
    e_c = e^{v_c - m} is recomputed. ``class_weight`` None means w = 1, ``probabilities`` None t = 0.
    ``hess`` (None: not asked) receives the Hessian's diagonal, with p_c = e_c ``inverse_total``:
    softmax_scale e_c (1 - p_c) + square_scale p_c², and through the soft-cap
    h (1 - t²)² - g 2 t (1 - t²) / softcap (g the gradient before its chain factor).
    """
    one = element(grad, 1.0)
    two = element(grad, 2.0)
    for c in range(grad.shape[0]):
        v = grad[c]
        e = v if softcap is None else exp_of(v - m)
        subtract = constant
        if probabilities is not None:
            subtract = probabilities[c] * probability_scale + constant
        if class_weight is not None:
            subtract = subtract * class_weight[c]
        g = e * softmax_scale - subtract
        if hess is not None:
            p = e * inverse_total
            h = e * softmax_scale * (one - p) + square_scale * p * p
        if softcap is not None:
            t = v / softcap
            slope = one - t * t
            if hess is not None:
                h = h * slope * slope - g * (two * t * slope / softcap)
            g = g * slope
        grad[c] = g
        if hess is not None:
            hess[c] = h


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def row_view(array, r, spatial):
    """Row r of (R, C), or of (N, C, S) as the strided view [r // S, :, r % S]."""
    if array.ndim == 2:
        return array[r]
    return array[r // spatial, :, r % spatial]


def optional_row_view(array, r, spatial):
    """:func:`row_view`, or None when ``array`` is None (chosen at compile time: no Optional type)."""


@overload(optional_row_view)
def _optional_row_view(array, r, spatial):
    if isinstance(array, types.NoneType):
        return lambda array, r, spatial: None
    return lambda array, r, spatial: row_view(array, r, spatial)


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def cross_entropy_row(z, label, probabilities, grad, hess, class_weight, smoothing, z_loss, softcap, scale,
                      z_scale):
    """(cross-entropy, z-loss) of one row not ignored, writing its gradient into ``grad`` unless None.

    ``label`` is the class index (ignored when ``probabilities`` is given), ``class_weight`` the per-class
    weights or None (weights of 1). ``scale`` and ``z_scale`` multiply the cross-entropy and z-loss gradients.
    ``hess`` (None, or a row like ``grad``, which must then be given) receives the Hessian's diagonal.
    """
    n_classes = z.shape[0]
    if n_classes == 0:
        return 0.0, 0.0
    label_logit = 0.0
    label_weight = 0.0
    if probabilities is None:
        label_logit = np.float64(capped(z[label], softcap))  # read before the row is overwritten
        label_weight = 1.0 if class_weight is None else np.float64(class_weight[label])
    # 1. maximum; with a gradient, the (capped) row moves into the gradient buffer, which steps 2-4 use
    if grad is None:
        m = row_max(z, softcap)
    elif grad.ctypes.data == z.ctypes.data:  # in-place: out is input
        m = row_max(grad, None) if softcap is None else cap_row_max_in_place(grad, softcap)
    else:
        m = copy_row_max(z, grad, softcap)
    # 2. Σ q_c (m - z_c) over the smoothing (index target) or every (probability target) coefficient
    uniform = smoothing / n_classes
    gap = 0.0
    smooth_total = 0.0
    if probabilities is not None or smoothing > 0:
        coefficient = element(z, 1.0 - smoothing)
        constant = element(z, uniform)
        if grad is None:
            gap, smooth_total = coefficient_gap_sums(z, m, softcap, class_weight, probabilities, coefficient, constant)
        else:
            gap, smooth_total = coefficient_gap_sums(grad, m, None, class_weight, probabilities, coefficient, constant)
    # 3. S = Σ e^{z_c - m}; without soft-capping the exponentials replace the row in the gradient buffer
    if grad is None:
        total = exp_sum(z, m, softcap)
    elif softcap is None:
        total = exp_sum_in_place(grad, m)
    else:
        total = exp_sum(grad, m, None)
    log_total = math.log(total)
    lse = np.float64(m) + log_total
    label_coefficient = (1.0 - smoothing) * label_weight
    loss = smooth_total * log_total + gap
    if probabilities is None:
        loss += label_coefficient * (lse - label_logit)
    z_term = z_loss * lse * lse if z_loss > 0 else 0.0  # not 0 · inf
    if grad is None:
        return loss, z_term
    # 4. gradient: (scale s + z_scale 2 λ lse) e_c / S - scale q_c
    q_sum = smooth_total + (label_coefficient if probabilities is None else 0.0)
    softmax_weight = scale * q_sum + (z_scale * 2.0 * z_loss * lse if z_loss > 0 else 0.0)
    softmax_scale = element(grad, softmax_weight / total)
    inverse_total = element(grad, 1.0 / total)
    square_scale = element(grad, z_scale * 2.0 * z_loss)
    if probabilities is not None:
        write_gradient(grad, m, softmax_scale, softcap, class_weight, probabilities,
                       element(grad, scale * (1.0 - smoothing)), element(grad, scale * uniform),
                       hess, inverse_total, square_scale)
        return loss, z_term
    if smoothing > 0:
        write_gradient(grad, m, softmax_scale, softcap, class_weight, None,
                       element(grad, 0.0), element(grad, scale * uniform), hess, inverse_total, square_scale)
    else:  # no smoothing: the class weights only enter through the label's coefficient below
        write_gradient(grad, m, softmax_scale, softcap, None, None, element(grad, 0.0), element(grad, 0.0),
                       hess, inverse_total, square_scale)
    label_factor = 1.0
    if softcap is not None:
        t = label_logit / np.float64(softcap)
        label_factor = 1.0 - t * t
        if hess is not None:  # the label's gradient before the chain factor was scale · coefficient lower
            hess[label] += element(hess, scale * label_coefficient * 2.0 * t * label_factor / softcap)
    grad[label] -= element(grad, scale * label_coefficient * label_factor)
    return loss, z_term


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def fill_row(row, value):
    for c in range(row.shape[0]):
        row[c] = value


def chunk_rows(n_classes: int) -> int:
    """Rows per chunk of parallel work: fixed by the row length alone, never by the thread count."""
    return max(1, ELEMENTS_PER_CHUNK // max(n_classes, 1))


@njit(error_model="numpy", cache=True)
def cross_entropy_rows(
    first_row, end_row, logits, labels, probabilities, grad, hess, class_weight, ignore_index, smoothing, z_loss,
    softcap, scale, z_scale, row_upstream, row_loss, row_z_loss,
):
    """Cross-entropy and z-loss of rows [first_row, end_row), each summed in float64, in one thread.

    ``logits`` is (R, C) or (N, C, S) (rows (n, s)); ``labels`` (R,) class indices, or None when
    ``probabilities`` (shaped like ``logits``) is given. ``grad`` (shaped like ``logits``, may be
    ``logits`` itself) receives the gradient, or is None for the loss alone; ``hess`` (shaped like
    ``logits``, another buffer; None: not asked, and needs ``grad``) the Hessian's diagonal. ``class_weight`` (C,) or
    None (weights of 1); ``softcap`` a scalar of the logits' dtype or None. Row r's gradient is scaled by
    ``scale`` (its cross-entropy part) and ``z_scale`` (its z-loss part), each times ``row_upstream[r]``.
    ``row_loss`` / ``row_z_loss`` (R,) float64 receive each row's total loss / z-loss.
    Rows whose label is ``ignore_index`` contribute 0 and get a gradient of exactly 0 (as in PyTorch, even
    when every row is ignored and ``scale`` = 1 / 0).
    """
    spatial = logits.shape[2] if logits.ndim == 3 else 1
    loss_sum = 0.0
    z_loss_sum = 0.0
    for r in range(first_row, end_row):
        upstream = row_upstream[r]
        if labels is not None and labels[r] == ignore_index:
            loss, z_term = 0.0, 0.0
            if grad is not None:
                fill_row(row_view(grad, r, spatial), element(grad, 0.0))
            if hess is not None:
                fill_row(row_view(hess, r, spatial), element(hess, 0.0))
        else:
            label = 0 if labels is None else labels[r]
            loss, z_term = cross_entropy_row(
                row_view(logits, r, spatial), label, optional_row_view(probabilities, r, spatial),
                optional_row_view(grad, r, spatial), optional_row_view(hess, r, spatial), class_weight, smoothing,
                z_loss, softcap, scale * upstream, z_scale * upstream,
            )
        row_loss[r] = loss + z_term
        row_z_loss[r] = z_term
        loss_sum += loss
        z_loss_sum += z_term
    return loss_sum, z_loss_sum


@njit(parallel=True, error_model="numpy", cache=True)
def cross_entropy(
    logits, labels, probabilities, grad, hess, class_weight, ignore_index, smoothing, z_loss, softcap, scale,
    z_scale, row_upstream, row_loss, row_z_loss, rows_per_chunk,
):
    """:func:`cross_entropy_rows` over every row, chunks of ``rows_per_chunk`` rows in parallel.

    The chunks' sums are added in chunk order: the same totals for any number of threads, and the same as
    :func:`cross_entropy_rows` when there is one chunk.
    """
    n_rows = logits.shape[0] * (logits.shape[2] if logits.ndim == 3 else 1)
    n_chunks = (n_rows + rows_per_chunk - 1) // rows_per_chunk
    chunk_loss = np.zeros(n_chunks)
    chunk_z_loss = np.zeros(n_chunks)
    for chunk in prange(n_chunks):
        chunk_loss[chunk], chunk_z_loss[chunk] = cross_entropy_rows(
            chunk * rows_per_chunk, min(n_rows, (chunk + 1) * rows_per_chunk), logits, labels, probabilities, grad,
            hess, class_weight, ignore_index, smoothing, z_loss, softcap, scale, z_scale, row_upstream, row_loss,
            row_z_loss,
        )
    loss_total = 0.0
    z_loss_total = 0.0
    for chunk in range(n_chunks):
        loss_total += chunk_loss[chunk]
        z_loss_total += chunk_z_loss[chunk]
    return loss_total, z_loss_total


SMALL_ROW_CLASSES = 64
"""Rows of at most this many classes may take :func:`small_rows`: a few classes per row (gradient boosting's
(n_samples, n_classes) margins) make the per-row cost of the general kernel's steps dominate."""

SMALL_ROW_BLOCK = 64
""":func:`small_rows` works on blocks of this many rows, transposed class-major into a tile that stays in L1
(64 x 64 float32 is 16 KiB), so its element loops run across rows and vectorise at any number of classes."""


@njit(fastmath=ROW_FASTMATH, error_model="numpy", cache=True)
def small_rows(first_row, end_row, logits, labels, grad, hess, class_weight, ignore_index, scale, row_upstream,
               row_loss):
    """Plain cross-entropy of short (R, C) rows [first_row, end_row), vectorised across rows.

    The case of :func:`cross_entropy_row` without label smoothing, z-loss, soft-capping or probability
    targets, with the same formulas: e_c = e^{z_c - m}, g_c = a e_c / S - a [c = y],
    h_c = a e_c / S (1 - e_c / S) with a = scale · upstream · w_y, S summed in the logits' dtype over the
    row's C terms and the row's loss w_y (m + log S - z_y) in float64. Rows go by blocks of
    :data:`SMALL_ROW_BLOCK`: the block is copied into a class-major tile ``values[c, r]``, then the row
    maximum, the exponentials and their sums, and the gradient and Hessian run with the class loop outer
    and the rows inner — contiguous, so LLVM vectorises them (with ``exp32``) over rows whatever C is,
    where a row-at-a-time loop of 10 classes is mostly scalar tails — and the tile is copied back row by
    row. Each row's arithmetic does not depend on the block or the thread. ``grad`` (required) may be
    ``logits`` itself (a block is read whole before it is written); ``hess`` None or a separate (R, C)
    array. Returns Σ of the rows' losses, in row order.
    """
    n_classes = logits.shape[1]
    block_rows = SMALL_ROW_BLOCK
    values = np.empty((n_classes, block_rows), dtype=logits.dtype)
    second = np.empty((n_classes if hess is not None else 0, block_rows), dtype=logits.dtype)
    row_max = np.empty(block_rows, dtype=logits.dtype)
    row_total = np.empty(block_rows, dtype=logits.dtype)
    softmax_scale = np.empty(block_rows, dtype=logits.dtype)
    inverse_total = np.empty(block_rows, dtype=logits.dtype)
    coefficient = np.empty(block_rows, dtype=logits.dtype)
    label_logit = np.empty(block_rows)
    one = element(grad, 1.0)
    loss_sum = 0.0
    for start in range(first_row, end_row, block_rows):
        rows = min(block_rows, end_row - start)
        for r in range(rows):
            for c in range(n_classes):
                values[c, r] = logits[start + r, c]
            y = labels[start + r]
            label_logit[r] = 0.0 if y == ignore_index or n_classes == 0 else np.float64(logits[start + r, y])
            row_max[r] = element(grad, -np.inf)
            row_total[r] = element(grad, 0.0)
        for c in range(n_classes):
            for r in range(rows):
                row_max[r] = maximum(row_max[r], values[c, r])
        for c in range(n_classes):
            for r in range(rows):
                e = exp_of(values[c, r] - row_max[r])
                values[c, r] = e
                row_total[r] += e
        for r in range(rows):
            y = labels[start + r]
            if y == ignore_index or n_classes == 0:
                row_loss[start + r] = 0.0
                softmax_scale[r] = element(grad, 0.0)
                inverse_total[r] = element(grad, 0.0)
                continue
            total = np.float64(row_total[r])
            label_weight = 1.0 if class_weight is None else np.float64(class_weight[y])
            loss = label_weight * (np.float64(row_max[r]) + math.log(total) - label_logit[r])
            row_loss[start + r] = loss
            loss_sum += loss
            a = scale * row_upstream[start + r] * label_weight
            coefficient[r] = element(grad, a)
            softmax_scale[r] = element(grad, a / total)
            inverse_total[r] = element(grad, 1.0 / total)
        if hess is None:
            for c in range(n_classes):
                for r in range(rows):
                    values[c, r] = values[c, r] * softmax_scale[r]
        else:
            for c in range(n_classes):
                for r in range(rows):
                    e = values[c, r]
                    g = e * softmax_scale[r]
                    values[c, r] = g
                    second[c, r] = g * (one - e * inverse_total[r])
        for r in range(rows):
            row = start + r
            y = labels[row]
            if y == ignore_index or n_classes == 0:
                for c in range(n_classes):
                    grad[row, c] = element(grad, 0.0)
                    if hess is not None:
                        hess[row, c] = element(grad, 0.0)
                continue
            for c in range(n_classes):
                grad[row, c] = values[c, r]
            grad[row, y] -= coefficient[r]
            if hess is not None:
                for c in range(n_classes):
                    hess[row, c] = second[c, r]
    return loss_sum


@njit(parallel=True, error_model="numpy", cache=True)
def small_rows_parallel(logits, labels, grad, hess, class_weight, ignore_index, scale, row_upstream, row_loss,
                        rows_per_chunk):
    """:func:`small_rows` over every row, chunks in parallel, summed in chunk order (see :func:`cross_entropy`)."""
    n_rows = logits.shape[0]
    n_chunks = (n_rows + rows_per_chunk - 1) // rows_per_chunk
    chunk_loss = np.zeros(n_chunks)
    for chunk in prange(n_chunks):
        chunk_loss[chunk] = small_rows(
            chunk * rows_per_chunk, min(n_rows, (chunk + 1) * rows_per_chunk), logits, labels, grad, hess,
            class_weight, ignore_index, scale, row_upstream, row_loss,
        )
    total = 0.0
    for chunk in range(n_chunks):
        total += chunk_loss[chunk]
    return total


@njit(error_model="numpy", cache=True)
def label_weight_sums(labels, class_weight, ignore_index):
    """(Σ w_y, number of rows) over the rows whose label is not ``ignore_index``: the 'mean' divisors."""
    weight_sum = 0.0
    kept = 0.0
    for r in range(labels.shape[0]):
        y = labels[r]
        if y != ignore_index:
            kept += 1.0
            weight_sum += 1.0 if class_weight is None else np.float64(class_weight[y])
    return weight_sum, kept


@njit(error_model="numpy", cache=True)
def write_label_gradient(row, label, value):
    """row <- value · onehot(label) (all zeros for a label outside the row: an ignored row)."""
    for c in range(row.shape[0]):
        row[c] = value if c == label else element(row, 0.0)


@njit(error_model="numpy", cache=True)
def nll_loss_rows(first_row, end_row, log_probabilities, labels, grad, class_weight, ignore_index, scale,
                  row_upstream, row_loss):
    """Σ -w_y x_{r,y} over rows [first_row, end_row) not ignored (float64), their losses and gradients.

    The gradient row is -scale w_y onehot(y) (0 for ignored rows); layout and arguments as in
    :func:`cross_entropy_rows`; ``grad`` may be ``log_probabilities`` itself.
    """
    spatial = log_probabilities.shape[2] if log_probabilities.ndim == 3 else 1
    loss_sum = 0.0
    for r in range(first_row, end_row):
        y = labels[r]
        loss = 0.0
        label_weight = 0.0
        if y != ignore_index:
            label_weight = 1.0 if class_weight is None else np.float64(class_weight[y])
            loss = -label_weight * np.float64(row_view(log_probabilities, r, spatial)[y])
        if grad is not None:
            label = y if y != ignore_index else -1  # -1: an all-zero row
            value = element(grad, -label_weight * scale * row_upstream[r])
            write_label_gradient(row_view(grad, r, spatial), label, value)
        row_loss[r] = loss
        loss_sum += loss
    return loss_sum


@njit(parallel=True, error_model="numpy", cache=True)
def nll_loss(log_probabilities, labels, grad, class_weight, ignore_index, scale, row_upstream, row_loss,
             rows_per_chunk):
    """:func:`nll_loss_rows` over every row, chunks in parallel, summed in chunk order (see :func:`cross_entropy`)."""
    n_rows = log_probabilities.shape[0] * (log_probabilities.shape[2] if log_probabilities.ndim == 3 else 1)
    n_chunks = (n_rows + rows_per_chunk - 1) // rows_per_chunk
    chunk_loss = np.zeros(n_chunks)
    for chunk in prange(n_chunks):
        chunk_loss[chunk] = nll_loss_rows(
            chunk * rows_per_chunk, min(n_rows, (chunk + 1) * rows_per_chunk), log_probabilities, labels, grad,
            class_weight, ignore_index, scale, row_upstream, row_loss,
        )
    total = 0.0
    for chunk in range(n_chunks):
        total += chunk_loss[chunk]
    return total
