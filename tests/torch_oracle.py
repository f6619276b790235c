"""PyTorch autograd in float64 as the oracle every lossk backend is checked against.

``torch_value_and_grad`` evaluates the loss's oracle — ``torch.nn.functional.<name>``, or for a loss PyTorch
lacks the small torch-written formula its spec names (``ElementwiseLoss.oracle``) — on float64 copies of
NumPy inputs and returns the loss and d loss / d input as NumPy float64 arrays; ``assert_close`` compares a
lossk result with it under the tolerance of the dtype lossk computed in. :data:`TOLERANCES` is the one
per-dtype tolerance table of the elementwise tests.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lossk._losses import ELEMENTWISE_LOSSES

TOLERANCES: dict[Any, dict[str, float]] = {
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
    np.dtype(np.float32): {"rtol": 2e-5, "atol": 2e-6},
    np.dtype(np.float16): {"rtol": 2e-3, "atol": 2e-3},
}
"""Per-dtype tolerances of a lossk result against the float64 oracle (atol is relative to the result's scale),
and of a fused kernel against the reference (``tests/test_numba_elementwise.py``, rtol)."""

TORCH_DTYPES: dict[Any, Any] = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
"""The torch dtype of each NumPy floating dtype lossk is compared in (``assert_close``'s ``peer``)."""


def oracle(name: str) -> Any:
    """``oracle(input, target, *, reduction, **options)``: the torch function computing the loss ``name``."""
    spec = ELEMENTWISE_LOSSES.get(name)
    if spec is None or isinstance(spec.oracle, str):
        return getattr(F, name if spec is None else spec.oracle.rsplit(".", 1)[1])
    return lambda *arrays, **options: spec.oracle(torch, *arrays, **options)


def to_torch(x: Any, floating: Any = torch.float64) -> Any:
    """NumPy array -> torch tensor: floating data in ``floating`` (float64), integer data (class indices) in int64."""
    if x is None or isinstance(x, (bool, int, float)):
        return x
    x = np.asarray(x)
    dtype = floating if np.issubdtype(x.dtype, np.floating) else torch.int64
    return torch.tensor(np.array(x, order="C"), dtype=dtype)  # np.ascontiguousarray would make 0-d 1-d


def torch_value_and_grad(
    name: str, input: np.ndarray, target: np.ndarray, *, reduction: str, grad_output: Any = None,
    torch_dtype: Any = torch.float64, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """(loss, d loss / d input) of the oracle of ``name`` in ``torch_dtype`` (float64), as NumPy arrays."""
    x = to_torch(input, torch_dtype).requires_grad_(True)
    with warnings.catch_warnings():  # kl_div's notice that 'mean' is not 'batchmean'
        warnings.simplefilter("ignore", UserWarning)
        loss = oracle(name)(
            x, to_torch(target, torch_dtype), reduction=reduction,
            **{k: to_torch(v, torch_dtype) for k, v in options.items()},
        )
    if grad_output is None:
        upstream = torch.ones_like(loss)
    else:
        upstream = torch.as_tensor(np.asarray(grad_output), dtype=torch_dtype).expand_as(loss)
    (grad,) = torch.autograd.grad(loss, x, upstream, allow_unused=True)
    if grad is None:  # e.g. an empty input: nothing depends on it
        grad = torch.zeros_like(x)
    return loss.detach().numpy(), grad.numpy()


def to_numpy(x: Any) -> np.ndarray:
    """Any lossk result (NumPy, torch, CuPy, Dask, array-api-strict) as a NumPy array on the host."""
    module = type(x).__module__
    if module.startswith("torch"):
        return x.detach().cpu().numpy()
    if module.startswith("cupy"):
        return x.get()
    if module.startswith("dask"):
        return np.asarray(x.compute())
    if module.startswith("array_api_strict"):
        return np.from_dlpack(x)
    return np.asarray(x)


def less_peer_error(actual: np.ndarray, expected: np.ndarray, peer: np.ndarray) -> np.ndarray:
    """``actual`` moved towards ``expected`` by the peer's error ``|peer - expected|`` (not past it), in float64:
    what remains of lossk's difference from the oracle beyond the error of a peer computing in the same dtype.
    Where either difference is not finite (inf - inf, NaN) ``actual`` is unchanged."""
    actual = np.asarray(actual, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite: no allowance there
        allowance = np.abs(np.asarray(peer, dtype=np.float64) - expected)
        difference = actual - expected
    beyond = np.sign(difference) * np.maximum(np.abs(difference) - allowance, 0.0)
    return np.where(np.isfinite(difference) & np.isfinite(allowance), expected + beyond, actual)


def assert_close(
    actual: Any, expected: np.ndarray, dtype: Any, what: str, seed: int | None = None, peer: np.ndarray | None = None
) -> None:
    """``actual`` (lossk, computed in ``dtype``) matches the float64 oracle ``expected``; NaN where it has NaN.

    ``peer``, PyTorch's own result computed in ``dtype``, adds PyTorch's error to the absolute tolerance of each
    element: where the formula is ill-conditioned (BCE on a logit of -1e4 with a target of 1e-3 cancels two
    terms of 1e4 to 10, and float32 rounding of 1e4 is 5e-4), lossk may err as much as PyTorch does, no more.
    """
    actual = to_numpy(actual)
    assert actual.shape == expected.shape, f"{what} has shape {actual.shape}, PyTorch's has {expected.shape}"
    tolerance = TOLERANCES[np.dtype(dtype)]
    with np.errstate(over="ignore"):  # the oracle rounded to lossk's dtype: beyond float16's range is ±inf
        expected = expected.astype(dtype).astype(np.float64)
    # absolute tolerance relative to the typical magnitude (the median: BCE's clamped 1e12 gradients must not
    # loosen the check of every other element)
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(np.median(finite))) if finite.size else 1.0
    actual = actual.astype(np.float64) if peer is None else less_peer_error(actual, expected, peer)
    np.testing.assert_allclose(
        actual,
        expected,
        rtol=tolerance["rtol"],
        atol=tolerance["atol"] * scale,
        equal_nan=True,
        err_msg=f"{what} differs from PyTorch (float64 oracle)" + ("" if seed is None else f"; LOSSK_SEED={seed}"),
    )
