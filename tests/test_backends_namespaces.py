"""Every loss on NumPy, array-api-strict, PyTorch (CPU) and Dask inputs: each returns its own array type.

The results are checked against PyTorch in float64; float16 inputs compute in float32 and return float16;
Dask inputs stay lazy (computing the graph inside lossk fails the test).
"""

from __future__ import annotations

from typing import Any

import array_api_strict
import dask
import dask.array as da
import numpy as np
import pytest
import torch
from loss_cases import Case, as_dtype, draw
from torch_oracle import assert_close, to_numpy, torch_value_and_grad

import lossk


def to_numpy_library(x: np.ndarray) -> np.ndarray:
    return x


def to_array_api_strict(x: np.ndarray) -> Any:
    return array_api_strict.asarray(x)


def to_torch(x: np.ndarray) -> Any:
    return torch.asarray(x)


def to_dask(x: np.ndarray) -> Any:
    return da.from_array(x, chunks=2 if x.ndim else ())  # several chunks: the graph is not trivial


LIBRARIES = {
    "numpy": (to_numpy_library, np.ndarray),
    "array_api_strict": (to_array_api_strict, type(array_api_strict.asarray(0.0))),
    "torch": (to_torch, torch.Tensor),
    "dask": (to_dask, da.Array),
}

CASES = [
    Case("l1_loss", (4, 5), arrays=("weight",)),
    Case("mse_loss", (7,)),
    Case("huber_loss", (4, 5), {"delta": 0.5}, arrays=("weight",)),
    Case("smooth_l1_loss", (4, 5), {"beta": 0.5}),
    Case("binary_cross_entropy", (4, 5), arrays=("weight",)),
    Case("binary_cross_entropy_with_logits", (4, 5), arrays=("weight", "pos_weight")),
    Case("cross_entropy", (3, 4, 2, 3), {"ignore_index": 1, "label_smoothing": 0.1}, ("weight",), "ignored"),
    Case("cross_entropy", (5, 4), {"label_smoothing": 0.2}, ("weight",), "probability"),
    Case("nll_loss", (6, 5), {"ignore_index": 0}, ("weight",), "ignored"),
    Case("kl_div", (4, 5), {"log_target": True}),
]

DTYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


def refuse_to_compute(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("lossk computed a Dask graph: the reference path must stay lazy")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    ("library", "dtype"),
    [(lib, dtype) for lib in LIBRARIES for dtype in DTYPES if not (lib == "array_api_strict" and dtype == "float16")],
)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_returns_the_input_library(case, library, dtype, reduction, rng, seed):
    convert, array_type = LIBRARIES[library]
    input64, target64, arrays64 = draw(case, rng)
    input, target = as_dtype(input64, DTYPES[dtype]), as_dtype(target64, DTYPES[dtype])
    arrays = {name: a.astype(DTYPES[dtype]) for name, a in arrays64.items()}
    expected_loss, expected_grad = torch_value_and_grad(
        case.loss, input, target, reduction=reduction, grad_output=None, **case.options, **arrays
    )
    upstream = rng.normal(0, 1, expected_loss.shape).astype(DTYPES[dtype]) if reduction == "none" else 1.5
    _, expected_scaled_grad = torch_value_and_grad(
        case.loss, input, target, reduction=reduction, grad_output=upstream, **case.options, **arrays
    )
    function = getattr(lossk, case.loss)
    args = (convert(input), convert(target))
    options = {**case.options, **{name: convert(a) for name, a in arrays.items()}}
    grad_output = convert(upstream) if reduction == "none" else upstream

    with dask.config.set(scheduler=refuse_to_compute):
        loss, grad = function.value_and_grad(*args, reduction=reduction, backend="array_api", **options)
        scaled_grad = function.grad(*args, reduction=reduction, grad_output=grad_output, **options)
        forward = function(*args, reduction=reduction, **options)

    for name, result, expected in [
        ("loss", loss, expected_loss),
        ("forward-only loss", forward, expected_loss),
        ("gradient", grad, expected_grad),
        ("gradient with grad_output", scaled_grad, expected_scaled_grad),
    ]:
        assert isinstance(result, array_type), f"{name} is a {type(result)}, not a {array_type}"
        assert result.dtype == args[0].dtype, f"{name} has dtype {result.dtype}, the input {args[0].dtype}"
        assert_close(result, expected, DTYPES[dtype], name, seed)
    if dtype == "float16":  # computed in float32, rounded once at the end: same library, same backend
        in32 = {k: convert(v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in arrays.items()}
        loss32, grad32 = function.value_and_grad(
            convert(as_dtype(input, np.float32)), convert(as_dtype(target, np.float32)), reduction=reduction,
            backend="array_api", **case.options, **in32,
        )
        with np.errstate(over="ignore"):  # a float32 gradient beyond float16's range rounds to inf, as lossk's does
            np.testing.assert_array_equal(to_numpy(loss), to_numpy(loss32).astype(np.float16))
            np.testing.assert_array_equal(to_numpy(grad), to_numpy(grad32).astype(np.float16))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_float16_on_every_backend(case, backend, rng, seed):
    """float16 in, float16 out, computed in float32: within float16's rounding of the float64 oracle."""
    backend.require(case.loss)
    input64, target64, arrays64 = draw(case, rng)
    input, target = as_dtype(input64, np.float16), as_dtype(target64, np.float16)
    arrays = {name: a.astype(np.float16) for name, a in arrays64.items()}
    expected_loss, expected_grad = torch_value_and_grad(case.loss, input, target, reduction="mean", **case.options, **arrays)
    loss, grad = getattr(lossk, case.loss).value_and_grad(
        backend.asarray(input), backend.asarray(target), reduction="mean", backend=backend.name, **case.options,
        **{name: backend.asarray(a) for name, a in arrays.items()},
    )
    assert loss.dtype == grad.dtype == np.float16
    assert_close(loss, expected_loss, np.float16, "loss", seed)
    assert_close(grad, expected_grad, np.float16, "gradient", seed)
