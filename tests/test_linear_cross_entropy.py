"""linear_cross_entropy against PyTorch: matmul + the cross-entropy formula under float64 autograd, and
PyTorch's own ``F.linear_cross_entropy``; on every backend, with chunk sizes that do not divide N; and a
fresh-process check that its peak memory stays far below the full logits'.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_cross_entropy_zloss_softcap import z_loss_cross_entropy_formula
from torch_oracle import assert_close, to_torch

import lossk

N_TOKENS, N_FEATURES, N_CLASSES = 10, 6, 13


def draw(rng: np.random.Generator, *, bias: bool, class_weight: bool, ignored: bool) -> dict[str, Any]:
    """input (N, H), linear_weight (V, H), target (N,) and the optional linear_bias and weight, in float64."""
    arrays = {
        "input": rng.normal(0, 1, (N_TOKENS, N_FEATURES)),
        "linear_weight": rng.normal(0, 1, (N_CLASSES, N_FEATURES)),
        "target": rng.integers(0, N_CLASSES, N_TOKENS),
    }
    if ignored:
        arrays["target"][rng.random(N_TOKENS) < 0.3] = -100
        arrays["target"][0] = -100
    if bias:
        arrays["linear_bias"] = rng.normal(0, 1, N_CLASSES)
    if class_weight:
        arrays["weight"] = rng.uniform(0.2, 2, N_CLASSES)
    return arrays


def torch_linear_cross_entropy(
    arrays: dict[str, Any], *, grad_output: Any = None, **options: Any
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(loss, z-term, (d_input, d_linear_weight, d_linear_bias)) by float64 autograd through matmul + formula."""
    x = to_torch(arrays["input"]).requires_grad_(True)
    w = to_torch(arrays["linear_weight"]).requires_grad_(True)
    b = None if "linear_bias" not in arrays else to_torch(arrays["linear_bias"]).requires_grad_(True)
    logits = x @ w.T + (0 if b is None else b)
    loss, z_term = z_loss_cross_entropy_formula(
        logits, to_torch(arrays["target"]), weight=to_torch(arrays.get("weight")), **options
    )
    upstream = torch.ones_like(loss) if grad_output is None else torch.as_tensor(np.asarray(grad_output, np.float64))
    leaves = [x, w] + ([] if b is None else [b])
    grads = torch.autograd.grad(loss, leaves, upstream.expand_as(loss))
    d_bias = None if b is None else grads[2].numpy()
    return loss.detach().numpy(), z_term.detach().numpy(), (grads[0].numpy(), grads[1].numpy(), d_bias)


def as_dtype(arrays: dict[str, Any], dtype: Any, backend: Any) -> dict[str, Any]:
    return {
        name: backend.asarray(a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a)
        for name, a in arrays.items()
    }


def call_arguments(arrays: dict[str, Any]) -> tuple[tuple[Any, Any, Any], dict[str, Any]]:
    positional = (arrays["input"], arrays["linear_weight"], arrays["target"])
    keywords = {name: arrays[name] for name in ("linear_bias", "weight") if name in arrays}
    return positional, keywords


def assert_gradients_close(grads: tuple, expected: tuple, dtype: Any, seed: int, what: str = "") -> None:
    for name, actual, wanted in zip(("d_input", "d_linear_weight", "d_linear_bias"), grads, expected, strict=True):
        if wanted is None:
            assert actual is None, f"{name} must be None without a linear_bias"
        else:
            assert_close(actual, wanted, dtype, name + what, seed)


OPTION_SETS = [
    {},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-2},
    {"z_loss": 0.1, "softcap": 3.0, "label_smoothing": 0.2},
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("chunk_size", [None, 1, 3, 64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("ignored", [False, True], ids=["all-kept", "some-ignored"])
@pytest.mark.parametrize("class_weight", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("options", OPTION_SETS, ids=["plain", "smoothing", "z-loss", "softcap-z-smoothing"])
def test_matches_matmul_and_cross_entropy(
    options, bias, class_weight, ignored, reduction, chunk_size, dtype, backend, rng, seed
):
    backend.require("cross_entropy")
    arrays64 = draw(rng, bias=bias, class_weight=class_weight, ignored=ignored)
    arrays = as_dtype(arrays64, dtype, backend)
    positional, keywords = call_arguments(arrays)
    settings = {"reduction": reduction, "z_loss": 0.0, "softcap": None, **options}
    exact = {
        name: a.astype(dtype).astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a
        for name, a in arrays64.items()
    }  # the oracle sees the values lossk sees
    expected_loss, expected_z, expected_grads = torch_linear_cross_entropy(exact, **settings)
    call = {**keywords, **settings, "chunk_size": chunk_size, "backend": backend.name}

    (loss, z_term), grads = lossk.linear_cross_entropy.value_and_grad(*positional, return_z_loss=True, **call)
    for name, result, expected in (("loss", loss, expected_loss), ("z-term", z_term, expected_z)):
        assert type(result) is type(positional[0]) and result.dtype == positional[0].dtype
        assert_close(result, expected, dtype, name, seed)
    assert_gradients_close(grads, expected_grads, dtype, seed)
    for name, grad, like in zip(
        ("d_input", "d_linear_weight", "d_linear_bias"), grads, positional[:2] + (arrays.get("linear_bias"),)
    ):
        if like is not None:
            assert type(grad) is type(like) and grad.dtype == like.dtype and grad.shape == like.shape, name
    assert_close(lossk.linear_cross_entropy(*positional, **call), expected_loss, dtype, "forward-only loss", seed)

    if reduction == "none":
        upstream = rng.normal(0, 1, N_TOKENS).astype(dtype)
        grad_output = backend.asarray(upstream)
    else:
        upstream = grad_output = float(rng.normal(0, 2))
    _, _, expected_grads = torch_linear_cross_entropy(exact, grad_output=upstream, **settings)
    _, grads = lossk.linear_cross_entropy.value_and_grad(*positional, grad_output=grad_output, **call)
    assert_gradients_close(grads, expected_grads, dtype, seed, f" with grad_output={upstream}")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    ("label_smoothing", "chunked"),
    [(0.0, False), (0.0, True), (0.15, False)],  # PyTorch's chunked path has no label smoothing
    ids=["torch-reference", "torch-chunked", "torch-reference-smoothing"],
)
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_matches_torch_linear_cross_entropy(bias, label_smoothing, chunked, reduction, rng, seed):
    """PyTorch 2.13's own fused function, reference and chunked paths, with weights and ignored tokens."""
    arrays = draw(rng, bias=bias, class_weight=True, ignored=True)
    tensors = {name: to_torch(a) for name, a in arrays.items()}
    x = tensors["input"].requires_grad_(True)
    w = tensors["linear_weight"].requires_grad_(True)
    b = tensors.get("linear_bias")
    if b is not None:
        b.requires_grad_(True)
    expected = F.linear_cross_entropy(
        x,
        w,
        tensors["target"],
        linear_bias=b,
        weight=tensors["weight"],
        reduction=reduction,
        ignore_index=-100,
        label_smoothing=label_smoothing,
        options=torch.nn.LinearCrossEntropyOptions() if chunked else None,
    )
    leaves = [x, w] + ([] if b is None else [b])
    expected_grads = [g.numpy() for g in torch.autograd.grad(expected, leaves, torch.ones_like(expected))]
    if b is None:
        expected_grads.append(None)
    positional, keywords = call_arguments(arrays)
    loss, grads = lossk.linear_cross_entropy.value_and_grad(
        *positional, **keywords, reduction=reduction, label_smoothing=label_smoothing, chunk_size=4
    )
    assert_close(loss, expected.detach().numpy(), np.float64, "loss", seed)
    assert_gradients_close(grads, tuple(expected_grads), np.float64, seed)


def test_every_token_ignored_is_nan_with_zero_gradients_like_pytorch(rng):
    """The mean over no tokens is NaN; matmul + F.cross_entropy gives zero gradients there, and so does lossk."""
    arrays = draw(rng, bias=True, class_weight=False, ignored=False)
    arrays["target"][:] = -100
    positional, keywords = call_arguments(arrays)
    (loss, z_term), grads = lossk.linear_cross_entropy.value_and_grad(
        *positional, **keywords, z_loss=0.1, return_z_loss=True, chunk_size=3
    )
    assert np.isnan(loss) and np.isnan(z_term)
    for grad in grads:
        np.testing.assert_array_equal(grad, 0.0)


def test_no_tokens(rng):
    x = np.zeros((0, N_FEATURES))
    w = rng.normal(0, 1, (N_CLASSES, N_FEATURES))
    loss, (d_x, d_w, _) = lossk.linear_cross_entropy.value_and_grad(x, w, np.zeros(0, dtype=np.int64))
    assert np.isnan(loss) and d_x.shape == (0, N_FEATURES)
    np.testing.assert_array_equal(d_w, 0.0)
    assert lossk.linear_cross_entropy(x, w, np.zeros(0, dtype=np.int64), reduction="none").shape == (0,)


def test_torch_cpu_tensors(rng, seed):
    arrays = draw(rng, bias=True, class_weight=True, ignored=True)
    settings = {"reduction": "mean", "z_loss": 0.05, "softcap": 4.0}
    expected_loss, _, expected_grads = torch_linear_cross_entropy(arrays, **settings)
    tensors = {name: torch.from_numpy(a) for name, a in arrays.items()}
    positional, keywords = call_arguments(tensors)
    loss, grads = lossk.linear_cross_entropy.value_and_grad(*positional, **keywords, **settings, chunk_size=4)
    assert isinstance(loss, torch.Tensor) and all(isinstance(g, torch.Tensor) for g in grads)
    assert_close(loss, expected_loss, np.float64, "loss", seed)
    assert_gradients_close(grads, expected_grads, np.float64, seed)


def test_array_api_strict(rng, seed):
    xp = pytest.importorskip("array_api_strict")
    arrays = draw(rng, bias=True, class_weight=True, ignored=True)
    settings = {"reduction": "sum", "z_loss": 0.05, "softcap": 4.0, "label_smoothing": 0.1}
    expected_loss, _, expected_grads = torch_linear_cross_entropy(arrays, **settings)
    positional, keywords = call_arguments({name: xp.asarray(a) for name, a in arrays.items()})
    loss, grads = lossk.linear_cross_entropy.value_and_grad(*positional, **keywords, **settings, chunk_size=3)
    assert_close(loss, expected_loss, np.float64, "loss", seed)
    assert_gradients_close(grads, expected_grads, np.float64, seed)


def refuse_to_compute(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("linear_cross_entropy computed a Dask graph (a float() or bool() of an array)")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_dask_stays_lazy(reduction, rng, seed):
    """The mean's divisors (Σ w_y, tokens kept) stay 0-d arrays: on Dask nothing is computed until the caller
    computes the results (on a GPU, nothing synchronises)."""
    da = pytest.importorskip("dask.array")
    import dask

    arrays = draw(rng, bias=True, class_weight=True, ignored=True)
    settings = {"reduction": reduction, "z_loss": 0.05, "softcap": None, "label_smoothing": 0.1}
    expected_loss, expected_z, expected_grads = torch_linear_cross_entropy(arrays, grad_output=1.5, **settings)
    lazy = {name: da.from_array(a, chunks=4) for name, a in arrays.items()}
    positional, keywords = call_arguments(lazy)
    with dask.config.set(scheduler=refuse_to_compute):
        (loss, z_term), grads = lossk.linear_cross_entropy.value_and_grad(
            *positional, **keywords, **settings, grad_output=1.5, return_z_loss=True, chunk_size=3
        )
        forward = lossk.linear_cross_entropy(*positional, **keywords, **settings, chunk_size=3)
    for result in (loss, z_term, forward, *grads):
        assert isinstance(result, da.Array), type(result)
    assert_close(loss.compute(), expected_loss, np.float64, "loss", seed)
    assert_close(z_term.compute(), expected_z, np.float64, "z-term", seed)
    assert_close(forward.compute(), expected_loss, np.float64, "forward-only loss", seed)
    assert_gradients_close(tuple(g.compute() for g in grads), expected_grads, np.float64, seed)


def test_float16_matches_float32_reference(rng):
    """Half precision: products in float16, cross-entropy in float32; within float16's resolution."""
    arrays = draw(rng, bias=True, class_weight=False, ignored=True)
    positional, keywords = call_arguments({n: a.astype(np.float16) if n != "target" else a for n, a in arrays.items()})
    loss, grads = lossk.linear_cross_entropy.value_and_grad(*positional, **keywords, chunk_size=4)
    exact = {n: a.astype(np.float16).astype(np.float64) if n != "target" else a for n, a in arrays.items()}
    expected_loss, _, expected_grads = torch_linear_cross_entropy(exact, reduction="mean", z_loss=0.0, softcap=None)
    assert loss.dtype == np.float16 and all(g.dtype == np.float16 for g in grads)
    np.testing.assert_allclose(loss.astype(np.float64), expected_loss, rtol=5e-3)
    for grad, expected in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(grad.astype(np.float64), expected, rtol=2e-2, atol=5e-3 * np.abs(expected).max())


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"input": np.zeros((4, 3, 6))}, ValueError, "input must have shape"),
        ({"linear_weight": np.zeros((N_CLASSES, 5))}, ValueError, "linear_weight must have shape"),
        (
            {"linear_weight": np.zeros((N_CLASSES, N_FEATURES), np.float32)},
            TypeError,
            "linear_weight must have the input's dtype",
        ),
        ({"linear_bias": np.zeros(N_CLASSES + 1)}, ValueError, "linear_bias must have shape"),
        ({"weight": np.zeros(3)}, ValueError, "weight must have shape"),
        ({"target": np.zeros(N_TOKENS + 1, dtype=np.int64)}, ValueError, "target must have shape"),
        ({"target": np.zeros((N_TOKENS, N_CLASSES))}, TypeError, "target must hold integer class indices"),
        ({"target": np.full(N_TOKENS, N_CLASSES)}, ValueError, "outside"),
        ({"linear_weight": torch.zeros(N_CLASSES, N_FEATURES, dtype=torch.float64)}, TypeError, "one library"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"chunk_size": 2.5}, ValueError, "chunk_size"),
        ({"z_loss": -1.0}, ValueError, "z_loss"),
        ({"softcap": 0.0}, ValueError, "softcap"),
        ({"reduction": "batchmean"}, ValueError, "reduction"),
        ({"backend": "nonsense"}, ValueError, "backend"),
        ({"backend": "cupy"}, (lossk.BackendUnavailableError, TypeError), "cupy"),
    ],
)
def test_invalid_arguments_raise(change, error, message, rng):
    arrays = draw(rng, bias=True, class_weight=True, ignored=False)
    arrays.update({name: value for name, value in change.items() if name in arrays})
    options = {name: value for name, value in change.items() if name not in arrays}
    positional, keywords = call_arguments(arrays)
    with pytest.raises(error, match=message):
        lossk.linear_cross_entropy(*positional, **keywords, **options)


MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import lossk

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    n, h, v, backend = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h), dtype=np.float32)
    w = rng.standard_normal((v, h), dtype=np.float32) * np.float32(0.05)
    target = rng.integers(0, v, n)
    lossk.linear_cross_entropy.value_and_grad(x[:8], w, target[:8], backend=backend)  # imports, JIT compiles
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident set size (VmHWM)
    before = status("VmRSS")
    loss, grads = lossk.linear_cross_entropy.value_and_grad(x, w, target, backend=backend)
    print(json.dumps({"growth": status("VmHWM") - before, "loss": float(loss)}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", ["auto", "array_api"])
def test_peak_memory_stays_far_below_the_logits(backend_name, tmp_path):
    """value_and_grad at N=4096, V=32768 (512 MiB of float32 logits) in a fresh process: the peak resident
    memory grows by the gradients (9 MiB), about one 32 MiB chunk and the BLAS's buffers, far below the
    logits' size (a single chunk of all 4096 tokens grows it by about 600 MiB)."""
    n, h, v = 4096, 64, 32768
    logits_bytes = n * v * 4
    script = tmp_path / "probe.py"
    script.write_text(MEMORY_PROBE)
    done = subprocess.run(
        [sys.executable, str(script), str(n), str(h), str(v), backend_name],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert np.isfinite(result["loss"])
    assert result["growth"] < logits_bytes / 4, (
        f"peak memory grew by {result['growth'] / 2**20:.0f} MiB; full logits {logits_bytes / 2**20:.0f} MiB"
    )


# ---- second derivatives ---------------------------------------------------------------------------------------

HESSIAN_OPTION_SETS = [*OPTION_SETS, {"softcap": 2.0}]


def torch_hessian_diagonals(arrays: dict[str, Any], *, grad_output: Any = None, **options: Any) -> tuple:
    """The diagonals of the float64 Hessian of ``sum(grad_output * loss)`` with respect to input, linear_weight
    and linear_bias (None without one), from ``torch.autograd.functional.hessian`` of matmul + the formula."""
    names = [n for n in ("input", "linear_weight", "linear_bias") if n in arrays]
    leaves = tuple(to_torch(arrays[n]) for n in names)
    target, weight = to_torch(arrays["target"]), to_torch(arrays.get("weight"))

    def scalar(*leaves: torch.Tensor) -> torch.Tensor:
        logits = leaves[0] @ leaves[1].T + (leaves[2] if len(leaves) > 2 else 0)
        loss, _ = z_loss_cross_entropy_formula(logits, target, weight=weight, **options)
        upstream = 1.0 if grad_output is None else torch.as_tensor(np.asarray(grad_output, np.float64))
        return (loss * upstream).sum()

    blocks = torch.autograd.functional.hessian(scalar, leaves)
    diagonals = [torch.diagonal(blocks[i][i].reshape(leaf.numel(), leaf.numel())).reshape(leaf.shape).numpy()
                 for i, leaf in enumerate(leaves)]
    return tuple(diagonals) + (None,) * (3 - len(diagonals))


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("extras", [False, True], ids=["plain-call", "bias-weighted-ignored"])
@pytest.mark.parametrize("options", HESSIAN_OPTION_SETS, ids=["plain", "smoothing", "z-loss", "softcap-z-smoothing",
                                                              "softcap"])
def test_hessian_diagonals_match_torch(options, extras, reduction, chunk_size, rng, seed):
    """h_input, h_linear_weight and h_linear_bias against the float64 autograd Hessian of matmul + the formula;
    the loss and gradients of value_grad_hessian are value_and_grad's."""
    arrays = draw(rng, bias=extras, class_weight=extras, ignored=extras)
    grad_output = rng.uniform(0.5, 2, N_TOKENS) if reduction == "none" else 1.5
    settings = {"reduction": reduction, "z_loss": 0.0, "softcap": None, **options}
    expected = torch_hessian_diagonals(arrays, grad_output=grad_output, **settings)
    positional, keywords = call_arguments(arrays)
    loss, grads, hessians = lossk.linear_cross_entropy.value_grad_hessian(
        *positional, **keywords, **settings, grad_output=grad_output, chunk_size=chunk_size)
    expected_loss, _, expected_grads = torch_linear_cross_entropy(arrays, grad_output=grad_output, **settings)
    assert_close(loss, expected_loss, np.float64, "loss", seed)
    assert_gradients_close(grads, expected_grads, np.float64, seed)
    for name, actual, wanted in zip(("h_input", "h_linear_weight", "h_linear_bias"), hessians, expected, strict=True):
        if wanted is None:
            assert actual is None, f"{name} must be None without a linear_bias"
        else:
            assert_close(actual, wanted, np.float64, name, seed)
    only = lossk.linear_cross_entropy.hessian(*positional, **keywords, **settings, grad_output=grad_output,
                                              chunk_size=chunk_size)
    for actual, wanted in zip(only, hessians, strict=True):
        assert (actual is None) == (wanted is None)
        if wanted is not None:
            np.testing.assert_array_equal(actual, wanted)


def test_hessian_matches_finite_differences_of_the_gradient(rng):
    """Each diagonal entry against the central difference of lossk's own analytic gradient (float64), every
    option on: an oracle independent of PyTorch."""
    arrays = draw(rng, bias=True, class_weight=True, ignored=True)
    positional, keywords = call_arguments(arrays)
    settings = {"reduction": "mean", "z_loss": 0.1, "softcap": 2.5, "label_smoothing": 0.1, "chunk_size": 4}
    _, _, hessians = lossk.linear_cross_entropy.value_grad_hessian(*positional, **keywords, **settings)
    step = 1e-5
    for index, name in enumerate(("input", "linear_weight", "linear_bias")):
        base = arrays[name]
        differences = np.empty_like(base)
        for k in np.ndindex(base.shape):
            sides = []
            for sign in (1, -1):
                moved = dict(arrays, **{name: base.copy()})
                moved[name][k] += sign * step
                moved_positional, moved_keywords = call_arguments(moved)
                _, grads = lossk.linear_cross_entropy.value_and_grad(*moved_positional, **moved_keywords, **settings)
                sides.append(grads[index][k])
            differences[k] = (sides[0] - sides[1]) / (2 * step)
        np.testing.assert_allclose(hessians[index], differences, rtol=1e-6, atol=1e-9, err_msg=name)


def test_hessian_in_float32_and_float16(rng):
    """The input's dtype throughout; float32 within its resolution of the float64 result, float16 within its own."""
    arrays = draw(rng, bias=True, class_weight=True, ignored=True)
    settings = {"reduction": "mean", "z_loss": 0.05, "softcap": 4.0, "chunk_size": 3}
    positional, keywords = call_arguments(arrays)
    _, _, exact = lossk.linear_cross_entropy.value_grad_hessian(*positional, **keywords, **settings)
    for dtype, rtol in ((np.float32, 1e-4), (np.float16, 3e-2)):
        low = {n: a.astype(dtype) if n != "target" else a for n, a in arrays.items()}
        positional, keywords = call_arguments(low)
        _, grads, hessians = lossk.linear_cross_entropy.value_grad_hessian(*positional, **keywords, **settings)
        assert all(h.dtype == dtype for h in hessians) and all(g.dtype == dtype for g in grads)
        for actual, wanted in zip(hessians, exact, strict=True):
            np.testing.assert_allclose(actual.astype(np.float64), wanted, rtol=rtol,
                                       atol=rtol * np.abs(wanted).max())


def test_hessian_of_no_tokens_and_of_ignored_tokens(rng):
    w = rng.normal(0, 1, (N_CLASSES, N_FEATURES))
    loss, _, (h_x, h_w, h_b) = lossk.linear_cross_entropy.value_grad_hessian(
        np.zeros((0, N_FEATURES)), w, np.zeros(0, dtype=np.int64), linear_bias=np.zeros(N_CLASSES))
    assert np.isnan(loss) and h_x.shape == (0, N_FEATURES)
    np.testing.assert_array_equal(h_w, 0.0)
    np.testing.assert_array_equal(h_b, 0.0)
    arrays = draw(rng, bias=False, class_weight=False, ignored=True)
    positional, keywords = call_arguments(arrays)
    _, _, (h_x, _, _) = lossk.linear_cross_entropy.value_grad_hessian(*positional, z_loss=0.1, reduction="sum")
    ignored = arrays["target"] == -100
    np.testing.assert_array_equal(h_x[ignored], 0.0)
    assert np.all(h_x[~ignored] > 0)


def test_hessian_on_torch_array_api_strict_and_lazy_dask(rng, seed):
    """Any Array-API library, the input's library out; on Dask nothing is computed until the caller asks."""
    arrays = draw(rng, bias=True, class_weight=True, ignored=True)
    settings = {"reduction": "mean", "z_loss": 0.05, "softcap": 4.0, "label_smoothing": 0.1}
    expected = torch_hessian_diagonals(arrays, **settings)
    libraries = [(torch.from_numpy, torch.Tensor)]
    xps = pytest.importorskip("array_api_strict")
    libraries.append((xps.asarray, type(xps.asarray(0.0))))
    da = pytest.importorskip("dask.array")
    import dask

    libraries.append((lambda a: da.from_array(a, chunks=4), da.Array))
    for convert, kind in libraries:
        positional, keywords = call_arguments({name: convert(a) for name, a in arrays.items()})
        with dask.config.set(scheduler=refuse_to_compute):
            hessians = lossk.linear_cross_entropy.hessian(*positional, **keywords, **settings, chunk_size=3)
        assert all(isinstance(h, kind) for h in hessians), kind
        for name, actual, wanted in zip(("h_input", "h_linear_weight", "h_linear_bias"), hessians, expected):
            actual = actual.compute() if kind is da.Array else actual
            assert_close(actual, wanted, np.float64, f"{name} ({kind.__module__})", seed)


def test_jax_arrays(rng, seed):
    """JAX arrays are immutable: the chunks' gradient rows are concatenated and the sums added (no in-place
    cross-entropy), with the values of every other library; the results are JAX arrays."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    arrays = draw(rng, bias=True, class_weight=True, ignored=True)
    settings = {"reduction": "mean", "z_loss": 0.05, "softcap": 4.0, "label_smoothing": 0.1}
    expected_loss, _, expected_grads = torch_linear_cross_entropy(arrays, **settings)
    expected_hessians = torch_hessian_diagonals(arrays, **settings)
    with jax.enable_x64(True):
        positional, keywords = call_arguments({name: jnp.asarray(a) for name, a in arrays.items()})
        loss, grads = lossk.linear_cross_entropy.value_and_grad(*positional, **keywords, **settings, chunk_size=3)
        forward = lossk.linear_cross_entropy(*positional, **keywords, **settings, chunk_size=3)
        _, _, hessians = lossk.linear_cross_entropy.value_grad_hessian(*positional, **keywords, **settings,
                                                                       chunk_size=4)
    for result in (loss, forward, *grads, *hessians):
        assert isinstance(result, jax.Array), type(result)
    assert_close(np.asarray(loss), expected_loss, np.float64, "loss", seed)
    assert_close(np.asarray(forward), expected_loss, np.float64, "forward-only loss", seed)
    assert_gradients_close(tuple(np.asarray(g) for g in grads), expected_grads, np.float64, seed)
    for name, actual, wanted in zip(("h_input", "h_linear_weight", "h_linear_bias"), hessians, expected_hessians):
        assert_close(np.asarray(actual), wanted, np.float64, name, seed)
    loss, (d_input, d_weight, _) = lossk.linear_cross_entropy.value_and_grad(
        jnp.zeros((0, N_FEATURES)), jnp.asarray(arrays["linear_weight"], dtype=jnp.float32), jnp.zeros(0, jnp.int32))
    assert np.isnan(loss) and d_input.shape == (0, N_FEATURES) and d_input.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(d_weight), 0.0)
