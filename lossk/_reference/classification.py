"""Reference multi-class losses: cross-entropy and negative log-likelihood (see ``lossk.classification``).

Both work with the class axis moved last, so that input (C,), (N, C) and (N, C, d1, ...) share one code
path. Cross-entropy with every option is one formula: with per-class coefficients q (the target's
weighted, smoothed distribution) and s = Σ_c q_c,

    loss = -Σ_c q_c log softmax(z)_c,      d loss / d z = s · softmax(z) - q.

Class-index target y:      q = (1 - ε) w_y onehot(y) + (ε / C) w, zero on ignored rows; the mean divides
                           by Σ w_y over non-ignored rows (PyTorch's weighted mean).
Class-probability target t: q = w ((1 - ε) t + ε / C); the mean divides by the number of rows.

Two options for LLM training act before and after that formula:

- soft-capping (Gemma 2), ``softcap`` c: the logits become c · tanh(z / c) before everything else (the
  logsumexp included); the gradient is chained with d(c tanh(z / c)) / dz = 1 - tanh²(z / c).
- z-loss (PaLM), ``z_loss`` λ: each row r not ignored (every row for probability targets) adds
  λ · lse_r², lse_r = logsumexp of its (soft-capped) logits, with no class weight or smoothing; its
  gradient with respect to the soft-capped logits is 2 λ lse_r softmax_r. The mean divides this part by the
  number of rows not ignored (rows for probability targets), the cross-entropy part by its own divisor
  above — as Liger-Kernel does. With ``return_z_loss=True`` the loss slot of the result is the pair
  (loss, z-term), the z-term being the λ · lse² part alone, reduced the same way (the loss includes it).

The diagonal of the Hessian (what gradient boosting needs, :func:`cross_entropy_derivatives`), with
p = softmax(v) of the (soft-capped) logits v and the gradient's softmax coefficient a = scale · s +
z_scale · 2 λ lse:

    d loss / d v_c = a p_c - scale q_c,
    d² loss / d v_c² = a p_c (1 - p_c) + z_scale · 2 λ p_c²,

since d p_c / d v_c = p_c (1 - p_c) and d lse / d v_c = p_c. Label smoothing and class weights enter only
through s = Σ_c q_c (q is constant in v); ignored rows get 0. Soft-capping chains both derivatives through
v = c tanh(z / c), with t = tanh(z / c), dv/dz = 1 - t² and d²v/dz² = -2 t (1 - t²) / c:

    d² loss / d z_c² = d² loss / d v_c² (1 - t²)² - d loss / d v_c · 2 t (1 - t²) / c,

which may be negative (the cap bends the logit). NLL's Hessian with respect to its input is 0: the loss is
linear in the log-probabilities.

The whole Hessian of a row, not only its diagonal, is a diagonal plus a rank-one term (what
``lossk.linear_cross_entropy``'s second derivatives need, its logits being a linear map of its input): with
sq = z_scale · 2 λ (0 without a z-loss), d p_c / d v_k = p_c (δ_ck - p_k) and d a / d v_k = sq p_k,

    d² loss / d v_c d v_k = a p_c δ_ck + (sq - a) p_c p_k,

and through the cap, with j = 1 - t² and d loss / d v = g_v,

    d² loss / d z_c d z_k = (a p_c j_c² - g_v,c · 2 t_c (1 - t_c²) / c) δ_ck + (sq - a) (p_c j_c) (p_k j_k):

``hessian_factors=True`` returns the diagonal part D, the row's coefficient sq - a and the vector β = p j.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._array_api import Array, as_array, device, size
from .._reduction import apply_reduction, compute_dtype, upstream_scale


def class_last(xp: ModuleType, x: Array) -> Array:
    """(N, C, d1, ...) -> (N, d1, ..., C); (C,) and (N, C) unchanged."""
    return xp.moveaxis(x, 1, -1) if x.ndim > 2 else x


def class_back(xp: ModuleType, x: Array) -> Array:
    """Inverse of :func:`class_last`."""
    return xp.moveaxis(x, -1, 1) if x.ndim > 2 else x


def log_softmax(xp: ModuleType, logits: Array) -> Array:
    """log softmax over the last axis, shifted by the row maximum so that exp never overflows."""
    return log_softmax_and_logsumexp(xp, logits)[0]


def log_softmax_and_logsumexp(xp: ModuleType, logits: Array) -> tuple[Array, Array]:
    """(log softmax over the last axis, its logsumexp with the last axis dropped), both shifted by the row max.

    Rows of no classes (an empty last axis, where the max has no identity) have an empty log-softmax and a
    logsumexp of 0, so that their loss and z-loss are 0, as in the fused kernels. No rows: both are empty
    (without the max, which Dask fails to take over the class axis of an empty array).
    """
    if logits.shape[-1] == 0 or size(logits) == 0:
        return logits, xp.zeros(logits.shape[:-1], dtype=logits.dtype, device=device(logits))
    row_max = xp.max(logits, axis=-1, keepdims=True)
    shifted = logits - row_max
    log_sum = xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
    return shifted - log_sum, (row_max + log_sum)[..., 0]


def target_rows(
    xp: ModuleType, target: Array, n_classes: int, weight: Array | None, ignore_index: int, dtype: Any, dev: Any
) -> tuple[Array, Array, Array]:
    """For class indices: (is_target one-hot mask (..., C), w_y per row with 0 on ignored rows, kept rows 0/1)."""
    ignored = target == ignore_index
    safe_target = xp.where(ignored, xp.zeros_like(target), target)
    is_target = xp.arange(n_classes, dtype=target.dtype, device=dev) == safe_target[..., None]
    kept = xp.where(ignored, xp.asarray(0, dtype=dtype, device=dev), xp.asarray(1, dtype=dtype, device=dev))
    if weight is None or n_classes == 0:  # no classes: every row is ignored (validated), so kept is 0
        return is_target, kept, kept
    w_y = xp.reshape(xp.take(weight, xp.reshape(safe_target, (-1,))), safe_target.shape)
    return is_target, w_y * kept, kept


def kept_rows_only(xp: ModuleType, scale: Any, keep: Array) -> Any:
    """The upstream scale on the rows ``keep`` marks, 0 on ignored rows: every row's gradient is 0 when every
    row is ignored, as in PyTorch, although the mean's scale is then 1 / 0 = inf, and no 0 * inf is evaluated
    (NumPy would warn inside a Dask graph: ``lossk._reduction``). A number scale is finite: kept as it is."""
    if isinstance(scale, (int, float)):
        return scale
    return xp.where(keep, scale, xp.zeros_like(scale))


def cross_entropy(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
    weight: Array | None, ignore_index: int, label_smoothing: float, z_loss: float, softcap: float | None,
    return_z_loss: bool,
) -> tuple[Any, Array | None]:
    """See the module docstring for the formula; the public function is ``lossk.cross_entropy``."""
    value, grad, _ = cross_entropy_derivatives(
        input, target, xp=xp, reduction=reduction, grad_output=grad_output, order=int(compute_grad),
        weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss,
        softcap=softcap, return_z_loss=return_z_loss,
    )
    return value, grad


def cross_entropy_derivatives(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, order: int,
    weight: Array | None, ignore_index: int, label_smoothing: float, z_loss: float, softcap: float | None,
    return_z_loss: bool, hessian_factors: bool = False,
) -> tuple[Any, Array | None, Array | None]:
    """``(loss, grad, hess)``: ``grad`` from ``order`` 1 on, the Hessian's diagonal ``hess`` at ``order`` 2.

    ``hess`` is scaled by the reduction and ``grad_output`` like ``grad`` (module docstring).
    ``hessian_factors=True`` (``order`` 2) appends ``(D, c, beta)``, each row's whole Hessian
    ``diag(D) + c beta beta^T`` (module docstring): class axis last, the compute dtype, 0 on ignored rows.
    """
    compute_grad = order >= 1
    dtype = compute_dtype(xp, input.dtype)
    dev = device(input)
    z = class_last(xp, xp.astype(input, dtype))
    if softcap is not None:
        capped = xp.tanh(z / softcap)
        z = softcap * capped
    n_classes = z.shape[-1]
    w = None if weight is None else xp.astype(weight, dtype)
    log_p, lse = log_softmax_and_logsumexp(xp, z)
    eps = label_smoothing
    eps_per_class = eps / n_classes if n_classes else 0.0  # no classes: nothing to smooth over
    if xp.isdtype(target.dtype, "integral"):
        is_target, w_y, kept = target_rows(xp, target, n_classes, w, ignore_index, dtype, dev)
        # where() rather than a product with the one-hot: a -inf logit elsewhere must not give 0 * -inf
        nll = -xp.sum(xp.where(is_target, log_p, xp.zeros_like(log_p)), axis=-1)
        loss = (1 - eps) * w_y * nll
        smooth_weight = kept[..., None] * (1.0 if w is None else w)
        if eps > 0:  # where(): an ignored row's -inf logit gives 0 * -inf; PyTorch fills those rows with 0
            smooth = -xp.sum(smooth_weight * log_p, axis=-1)
            loss = loss + eps_per_class * xp.where(kept != 0, smooth, xp.zeros_like(smooth))
        divisor = xp.sum(w_y)
        z_divisor = xp.sum(kept)
        if compute_grad:
            q = (1 - eps) * xp.where(is_target, w_y[..., None], xp.zeros_like(log_p))
            q = q + eps_per_class * smooth_weight
    else:
        t = class_last(xp, xp.astype(target, dtype))
        if eps > 0:
            t = (1 - eps) * t + eps_per_class
        q = t if w is None else w * t
        loss = -xp.sum(q * log_p, axis=-1)
        kept = xp.ones_like(loss)
        divisor = z_divisor = size(loss)
    # where() on ignored rows: their logsumexp may be infinite, and 0 * inf would be NaN
    z_row = xp.where(kept != 0, z_loss * lse**2, xp.zeros_like(lse))
    z_term = apply_reduction(xp, z_row, reduction, z_divisor)
    # as_array: NumPy adds two 0-d arrays into a NumPy scalar
    value = xp.astype(as_array(xp, apply_reduction(xp, loss, reduction, divisor) + z_term), input.dtype)
    if return_z_loss:
        value = (value, xp.astype(z_term, input.dtype))
    if not compute_grad:
        return value, None, None
    keep = kept[..., None] != 0
    scale = upstream_scale(reduction, grad_output, divisor)
    if reduction == "none" and grad_output is not None:
        scale = xp.astype(scale, dtype)[..., None]
    scale = kept_rows_only(xp, scale, keep)
    p = xp.exp(log_p)
    softmax_coefficient = xp.sum(q, axis=-1, keepdims=True) * scale
    square_coefficient = None
    if z_loss > 0:
        z_scale = upstream_scale(reduction, grad_output, z_divisor)
        if reduction == "none" and grad_output is not None:
            z_scale = xp.astype(z_scale, dtype)[..., None]
        z_scale = kept_rows_only(xp, z_scale, keep)
        softmax_coefficient = softmax_coefficient + (2 * z_loss) * lse[..., None] * z_scale
        square_coefficient = (2 * z_loss) * z_scale
    grad = softmax_coefficient * p - q * scale
    # ignored rows get exactly 0, as in PyTorch (a NaN or infinite logit there too)
    hess = factors = None
    if order >= 2:
        hess = softmax_coefficient * p * (1 - p)
        if square_coefficient is not None:
            hess = hess + square_coefficient * p * p
        if hessian_factors:
            diagonal, beta = softmax_coefficient * p, p
            coefficient = -softmax_coefficient
            if square_coefficient is not None:
                coefficient = square_coefficient + coefficient
        if softcap is not None:
            bend = 2 * capped * (1 - capped**2) / softcap
            hess = hess * (1 - capped**2) ** 2 - grad * bend
            if hessian_factors:
                diagonal, beta = diagonal * (1 - capped**2) ** 2 - grad * bend, beta * (1 - capped**2)
        if hessian_factors:
            factors = tuple(xp.where(keep, f, xp.zeros_like(f)) for f in (diagonal, coefficient, beta))
        hess = class_back(xp, xp.astype(xp.where(keep, hess, xp.zeros_like(hess)), input.dtype))
    grad = xp.where(keep, grad, xp.zeros_like(grad))
    if softcap is not None:
        grad = grad * (1 - capped**2)
    if factors is not None:
        return value, class_back(xp, xp.astype(grad, input.dtype)), hess, factors
    return value, class_back(xp, xp.astype(grad, input.dtype)), hess


def nll_loss_derivatives(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, order: int,
    weight: Array | None, ignore_index: int,
) -> tuple[Array, Array | None, Array | None]:
    """``(loss, grad, hess)`` of :func:`nll_loss`; ``hess`` (``order`` 2) is 0: the loss is linear in ``input``."""
    value, grad = nll_loss(input, target, xp=xp, reduction=reduction, grad_output=grad_output,
                           compute_grad=order >= 1, weight=weight, ignore_index=ignore_index)
    return value, grad, xp.zeros_like(input) if order >= 2 else None


def nll_loss(
    input: Array, target: Array, *, xp: ModuleType, reduction: str, grad_output: Any, compute_grad: bool,
    weight: Array | None, ignore_index: int,
) -> tuple[Array, Array | None]:
    """-w_y x_y per row (x holds log-probabilities), 0 on ignored rows; gradient -w_y onehot(y)."""
    dtype = compute_dtype(xp, input.dtype)
    dev = device(input)
    x = class_last(xp, xp.astype(input, dtype))
    w = None if weight is None else xp.astype(weight, dtype)
    is_target, w_y, kept = target_rows(xp, target, x.shape[-1], w, ignore_index, dtype, dev)
    loss = -w_y * xp.sum(xp.where(is_target, x, xp.zeros_like(x)), axis=-1)
    divisor = xp.sum(w_y)
    value = xp.astype(apply_reduction(xp, loss, reduction, divisor), input.dtype)
    if not compute_grad:
        return value, None
    scale = upstream_scale(reduction, grad_output, divisor)
    if reduction == "none" and grad_output is not None:
        scale = xp.astype(scale, dtype)
    keep = kept != 0
    scale = kept_rows_only(xp, scale, keep)
    kept_target = is_target & keep[..., None]
    grad = xp.where(kept_target, (-w_y * scale)[..., None], xp.zeros_like(x))
    return value, class_back(xp, xp.astype(grad, input.dtype))
