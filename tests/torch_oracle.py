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


def oracle(name: str) -> Any:
    """``oracle(input, target, *, reduction, **options)``: the torch function computing the loss ``name``."""
    spec = ELEMENTWISE_LOSSES.get(name)
    if spec is None or isinstance(spec.oracle, str):
        return getattr(F, name if spec is None else spec.oracle.rsplit(".", 1)[1])
    return lambda *arrays, **options: spec.oracle(torch, *arrays, **options)


def to_torch(x: Any) -> Any:
    """NumPy array -> torch tensor: floating data in float64, integer data (class indices) in int64."""
    if x is None or isinstance(x, (bool, int, float)):
        return x
    x = np.asarray(x)
    dtype = torch.float64 if np.issubdtype(x.dtype, np.floating) else torch.int64
    return torch.tensor(np.array(x, order="C"), dtype=dtype)  # np.ascontiguousarray would make 0-d 1-d


def torch_value_and_grad(
    name: str, input: np.ndarray, target: np.ndarray, *, reduction: str, grad_output: Any = None, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """(loss, d loss / d input) of the oracle of ``name`` in float64, as NumPy arrays."""
    x = to_torch(input).requires_grad_(True)
    with warnings.catch_warnings():  # kl_div's notice that 'mean' is not 'batchmean'
        warnings.simplefilter("ignore", UserWarning)
        loss = oracle(name)(x, to_torch(target), reduction=reduction, **{k: to_torch(v) for k, v in options.items()})
    if grad_output is None:
        upstream = torch.ones_like(loss)
    else:
        upstream = torch.as_tensor(np.asarray(grad_output, dtype=np.float64)).expand_as(loss)
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


def assert_close(actual: Any, expected: np.ndarray, dtype: Any, what: str, seed: int | None = None) -> None:
    """``actual`` (lossk, computed in ``dtype``) matches the float64 oracle ``expected``; NaN where it has NaN."""
    actual = to_numpy(actual)
    assert actual.shape == expected.shape, f"{what} has shape {actual.shape}, PyTorch's has {expected.shape}"
    tolerance = TOLERANCES[np.dtype(dtype)]
    with np.errstate(over="ignore"):  # the oracle rounded to lossk's dtype: beyond float16's range is ±inf
        expected = expected.astype(dtype).astype(np.float64)
    # absolute tolerance relative to the typical magnitude (the median: BCE's clamped 1e12 gradients must not
    # loosen the check of every other element)
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(np.median(finite))) if finite.size else 1.0
    np.testing.assert_allclose(
        actual.astype(np.float64),
        expected,
        rtol=tolerance["rtol"],
        atol=tolerance["atol"] * scale,
        equal_nan=True,
        err_msg=f"{what} differs from PyTorch (float64 oracle)" + ("" if seed is None else f"; LOSSK_SEED={seed}"),
    )
