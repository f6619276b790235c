"""The multi-input losses' CUDA kernels on a GPU against the reference (``pytest -m gpu``).

``gaussian_nll_loss`` and ``margin_ranking_loss`` (``kernels/cuda/multi_input.cu``: both gradients in one
pass) and ``multilabel_soft_margin_loss`` (the elementwise template, averaged per row), in every dtype and
reduction, on CuPy arrays and PyTorch CUDA tensors, with inputs broadcast as PyTorch allows, against the
float64 reference (``backend="array_api"``) on the same rounded values. Run by ``bench/gpu_check.sh`` with
``tests/test_cuda_gpu.py``, whose helpers and tolerances it shares. Where there is no GPU (CI) every test is
collected and skipped, with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_cuda_gpu import DTYPES, LIBRARIES, TOLERANCES, assert_close, rounded, to_device, to_host

import lossk
from lossk import _dispatch
from lossk._losses.multi_input import LOSSES

pytestmark = pytest.mark.gpu

SPECS = {spec.name: spec for spec in LOSSES}

CASES = [
    # (loss, full shape, {input: its own shape where broadcast}, options)
    ("gaussian_nll_loss", (1031,), {}, {}),
    ("gaussian_nll_loss", (37, 129), {"var": (37,)}, {"full": True}),  # var without the last dimension
    ("gaussian_nll_loss", (37, 129), {"var": (37, 1)}, {"eps": 0.5}),  # across the clamp
    ("gaussian_nll_loss", (5, 7, 33), {"var": (5, 1, 33)}, {}),  # a middle dimension of size 1
    ("margin_ranking_loss", (1031,), {}, {"margin": 0.5}),
    ("margin_ranking_loss", (37, 129), {"input2": (1, 129), "target": (37, 1)}, {}),
    ("multilabel_soft_margin_loss", (37, 129), {}, {"weight": (129,)}),
    ("multilabel_soft_margin_loss", (1, 5), {}, {}),
    ("gaussian_nll_loss", (0,), {}, {}),
]


@pytest.fixture(autouse=True)
def _gpu() -> None:
    if not _dispatch.is_available("cupy"):
        pytest.skip("needs an NVIDIA GPU with CuPy (pip install 'lossk[cuda12]'); none here")


def _draw(loss: str, shape: tuple[int, ...], broadcast: dict[str, tuple[int, ...]], options: dict[str, Any],
          dtype: str, rng: np.random.Generator) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The inputs (rounded to ``dtype``, in float64) and the options, a weight drawn where a shape is given."""
    spec = SPECS[loss]
    scalars = {o.name: options.get(o.name, o.default) for o in spec.keyword_options}
    drawn = spec.domain.draw(rng, shape, scalars, False)
    arrays = []
    for name in spec.inputs:
        value = np.asarray(drawn[name], dtype=np.float64)
        if name in broadcast:
            own = broadcast[name]
            value = value[tuple(slice(0, d) for d in (*own, *(1,) * (len(shape) - len(own))))].reshape(own)
        arrays.append(rounded(value, dtype))
    options = dict(options)
    if "weight" in options:
        options["weight"] = rounded(rng.uniform(0.0, 2.0, options["weight"]), dtype)
    return arrays, options


def _grads(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def _summed_term_bounds(function: Any, arrays: list[np.ndarray], broadcast: dict, shape: tuple[int, ...],
                        upstream: Any, options: dict[str, Any], dtype: str) -> list[np.ndarray | None]:
    """Per gradient: for a half-precision argument given broadcast, sum |term| over its broadcast axes (the
    scale of the rounding error of its summed gradient); None where the elementwise tolerance applies."""
    spec = SPECS[function.__name__]
    names = spec.differentiable
    if dtype not in ("float16", "bfloat16") or not any(n in broadcast for n in names):
        return [None] * len(names)
    full = [np.broadcast_to(a.reshape(spec.input_shape(n, shape, a.shape)) if spec.input_shape and k else a, shape).copy()
            for k, (n, a) in enumerate(zip(spec.inputs, arrays))]
    _, terms = function.value_and_grad(*full, backend="array_api", grad_output=upstream, **options)
    bounds: list[np.ndarray | None] = []
    for name, term in zip(names, _grads(terms)):
        if name not in broadcast:
            bounds.append(None)
            continue
        own = broadcast[name]
        expanded = spec.input_shape(name, shape, own)
        axes = tuple(i for i, (e, f) in enumerate(zip(expanded, shape)) if e == 1 and f != 1)
        bounds.append(np.abs(term).sum(axis=axes).reshape(own))
    return bounds


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("loss", "shape", "broadcast", "options"), CASES,
                         ids=[f"{c[0]}-{'x'.join(map(str, c[1]))}-{k}" for k, c in enumerate(CASES)])
def test_kernel_matches_the_reference(loss: str, shape: tuple[int, ...], broadcast: dict, options: dict, dtype: str,
                                      library: str, rng: np.random.Generator) -> None:
    arrays, options = _draw(loss, shape, broadcast, options, dtype, rng)
    function = getattr(lossk, loss)
    loss_shape = shape[:-1] if SPECS[loss].row_mean else shape
    for reduction in ("mean", "sum", "none"):
        upstream = rounded(rng.normal(size=loss_shape), dtype) if reduction == "none" else 2.5
        host_options = {**options, "reduction": reduction}
        expected_loss, expected_grads = function.value_and_grad(*arrays, backend="array_api", grad_output=upstream,
                                                                **host_options)
        device_options = {k: to_device(v, dtype, library) if isinstance(v, np.ndarray) else v
                          for k, v in host_options.items()}
        device_upstream = to_device(upstream, dtype, library) if reduction == "none" else upstream
        value, grads = function.value_and_grad(*(to_device(a, dtype, library) for a in arrays), backend="cupy",
                                               grad_output=device_upstream, **device_options)
        assert type(value).__module__.split(".")[0] == library
        assert_close(value, expected_loss, dtype, f"{loss} {reduction} loss")
        summed = _summed_term_bounds(function, arrays, broadcast, shape, upstream, host_options, dtype)
        for k, (grad, expected) in enumerate(zip(_grads(grads), _grads(expected_grads), strict=True)):
            assert type(grad).__module__.split(".")[0] == library
            if summed[k] is None:
                assert_close(grad, expected, dtype, f"{loss} {reduction} gradient {k}")
            else:  # a sum of half-precision terms: each term's rounding error adds up
                error = np.abs(to_host(grad) - expected)
                bound = 4 * TOLERANCES[dtype][0] * summed[k]
                assert grad.shape == expected.shape and np.all(error <= bound), (
                    f"{loss} {reduction} gradient {k} (summed over broadcast axes): {np.max(error - bound)} above")
        forward_only = function(*(to_device(a, dtype, library) for a in arrays), backend="cupy", **device_options)
        assert_close(forward_only, expected_loss, dtype, f"{loss} {reduction} loss without gradient")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("loss", "shape", "broadcast", "options"), CASES[:-1],
                         ids=[f"{c[0]}-{'x'.join(map(str, c[1]))}-{k}" for k, c in enumerate(CASES[:-1])])
def test_second_derivatives_match_the_reference(loss: str, shape: tuple[int, ...], broadcast: dict, options: dict,
                                                dtype: str, rng: np.random.Generator) -> None:
    function = getattr(lossk, loss)
    if not hasattr(function, "value_grad_hessian"):
        pytest.skip(f"lossk.{loss} has no value_grad_hessian yet")
    arrays, options = _draw(loss, shape, broadcast, options, dtype, rng)
    try:
        expected = function.value_grad_hessian(*arrays, backend="array_api", **options)
    except NotImplementedError as missing:
        pytest.skip(f"the reference has no second derivative of {loss} yet: {missing}")
    device_options = {k: to_device(v, dtype, "cupy") if isinstance(v, np.ndarray) else v for k, v in options.items()}
    actual = function.value_grad_hessian(*(to_device(a, dtype, "cupy") for a in arrays), backend="cupy",
                                         **device_options)
    assert_close(actual[0], expected[0], dtype, f"{loss} loss")
    for part, name in ((1, "gradient"), (2, "second derivative")):
        for k, (a, e) in enumerate(zip(_grads(actual[part]), _grads(expected[part]), strict=True)):
            assert_close(a, e, dtype, f"{loss} {name} {k}")


@pytest.mark.parametrize("loss", ["gaussian_nll_loss", "margin_ranking_loss"])
def test_in_place_and_out(loss: str, rng: np.random.Generator) -> None:
    import cupy

    arrays, options = _draw(loss, (1031,), {}, {}, "float32", rng)
    expected = getattr(lossk, loss).grad(*arrays, backend="array_api", **options)
    device = [cupy.asarray(a, dtype=np.float32) for a in arrays]
    out = (cupy.full(1031, cupy.nan, np.float32), cupy.full(1031, cupy.nan, np.float32))
    grads = getattr(lossk, loss).grad(*device, backend="cupy", out=out, **options)
    assert grads[0] is out[0] and grads[1] is out[1]
    for grad, e in zip(grads, expected):
        assert_close(grad, e, "float32", f"{loss} into out")
    first = device[0]
    grads = getattr(lossk, loss).grad(*device, backend="cupy", inplace=True, **options)
    assert grads[0] is first
    assert_close(grads[0], expected[0], "float32", f"{loss} in place")


@pytest.mark.parametrize("loss", ["gaussian_nll_loss", "margin_ranking_loss"])
def test_repeated_runs_are_bit_identical(loss: str, rng: np.random.Generator) -> None:
    import cupy

    arrays, options = _draw(loss, (2**20 + 7,), {}, {}, "float32", rng)
    device = [cupy.asarray(a, dtype=np.float32) for a in arrays]
    runs = [getattr(lossk, loss).value_and_grad(*device, backend="cupy", **options) for _ in range(3)]
    assert len({r[0].get().tobytes() for r in runs}) == 1
    assert len({b"".join(g.get().tobytes() for g in r[1]) for r in runs}) == 1
