"""Reference multi-class losses: cross-entropy and negative log-likelihood (see ``lossk.classification``).

Both work with the class axis moved last, so that input (C,), (N, C) and (N, C, d1, ...) share one code
path. Cross-entropy with every option is one formula: with per-class coefficients q (the target's
weighted, smoothed distribution) and s = Σ_c q_c,

    loss = -Σ_c q_c log softmax(z)_c,      d loss / d z = s · softmax(z) - q.

Class-index target y:      q = (1 - ε) w_y onehot(y) + (ε / C) w, zero on ignored rows; the mean divides
                           by Σ w_y over non-ignored rows (PyTorch's weighted mean).
Class-probability target t: q = w ((1 - ε) t + ε / C); the mean divides by the number of rows.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._array_api import Array, device, size
from .._reduction import apply_reduction, compute_dtype, upstream_scale


def class_last(xp: ModuleType, x: Array) -> Array:
    """(N, C, d1, ...) -> (N, d1, ..., C); (C,) and (N, C) unchanged."""
    return xp.moveaxis(x, 1, -1) if x.ndim > 2 else x


def class_back(xp: ModuleType, x: Array) -> Array:
    """Inverse of :func:`class_last`."""
    return xp.moveaxis(x, -1, 1) if x.ndim > 2 else x


def log_softmax(xp: ModuleType, logits: Array) -> Array:
    """log softmax over the last axis, shifted by the row maximum so that exp never overflows."""
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def target_rows(
    xp: ModuleType, target: Array, n_classes: int, weight: Array | None, ignore_index: int, dtype: Any, dev: Any
) -> tuple[Array, Array, Array]:
    """For class indices: (is_target one-hot mask (..., C), w_y per row with 0 on ignored rows, kept rows 0/1)."""
    ignored = target == ignore_index
    safe_target = xp.where(ignored, xp.zeros_like(target), target)
    is_target = xp.arange(n_classes, dtype=target.dtype, device=dev) == safe_target[..., None]
    kept = xp.where(ignored, xp.asarray(0, dtype=dtype, device=dev), xp.asarray(1, dtype=dtype, device=dev))
    if weight is None:
        return is_target, kept, kept
    w_y = xp.reshape(xp.take(weight, xp.reshape(safe_target, (-1,))), safe_target.shape)
    return is_target, w_y * kept, kept


def cross_entropy(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
    weight: Array | None, ignore_index: int, label_smoothing: float,
) -> tuple[Array, Array | None]:
    """See the module docstring for the formula; the public function is ``lossk.cross_entropy``."""
    dtype = compute_dtype(xp, input.dtype)
    dev = device(input)
    z = class_last(xp, xp.astype(input, dtype))
    n_classes = z.shape[-1]
    w = None if weight is None else xp.astype(weight, dtype)
    log_p = log_softmax(xp, z)
    eps = label_smoothing
    if xp.isdtype(target.dtype, "integral"):
        is_target, w_y, kept = target_rows(xp, target, n_classes, w, ignore_index, dtype, dev)
        # where() rather than a product with the one-hot: a -inf logit elsewhere must not give 0 * -inf
        nll = -xp.sum(xp.where(is_target, log_p, xp.zeros_like(log_p)), axis=-1)
        loss = (1 - eps) * w_y * nll
        smooth_weight = kept[..., None] * (1.0 if w is None else w)
        if eps > 0:
            loss = loss + (eps / n_classes) * -xp.sum(smooth_weight * log_p, axis=-1)
        divisor = xp.sum(w_y)
        if compute_grad:
            q = (1 - eps) * xp.where(is_target, w_y[..., None], xp.zeros_like(log_p))
            q = q + (eps / n_classes) * smooth_weight
    else:
        t = class_last(xp, xp.astype(target, dtype))
        if eps > 0:
            t = (1 - eps) * t + eps / n_classes
        q = t if w is None else w * t
        loss = -xp.sum(q * log_p, axis=-1)
        divisor = size(loss)
    value = xp.astype(apply_reduction(xp, loss, reduction, divisor), input.dtype)
    if not compute_grad:
        return value, None
    scale = upstream_scale(reduction, grad_output, divisor)
    if reduction == "none" and grad_output is not None:
        scale = xp.astype(scale, dtype)[..., None]
    grad = (xp.sum(q, axis=-1, keepdims=True) * xp.exp(log_p) - q) * scale
    return value, class_back(xp, xp.astype(grad, input.dtype))


def nll_loss(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
    weight: Array | None, ignore_index: int,
) -> tuple[Array, Array | None]:
    """-w_y x_y per row (x holds log-probabilities), 0 on ignored rows; gradient -w_y onehot(y)."""
    dtype = compute_dtype(xp, input.dtype)
    dev = device(input)
    x = class_last(xp, xp.astype(input, dtype))
    w = None if weight is None else xp.astype(weight, dtype)
    is_target, w_y, _ = target_rows(xp, target, x.shape[-1], w, ignore_index, dtype, dev)
    loss = -w_y * xp.sum(xp.where(is_target, x, xp.zeros_like(x)), axis=-1)
    divisor = xp.sum(w_y)
    value = xp.astype(apply_reduction(xp, loss, reduction, divisor), input.dtype)
    if not compute_grad:
        return value, None
    scale = upstream_scale(reduction, grad_output, divisor)
    if reduction == "none" and grad_output is not None:
        scale = xp.astype(scale, dtype)
    grad = xp.where(is_target, (-w_y * scale)[..., None], xp.zeros_like(x))
    return value, class_back(xp, xp.astype(grad, input.dtype))
