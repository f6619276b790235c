"""cross_entropy's z_loss, softcap and return_z_loss against the formulas written out in PyTorch float64 autograd.

The oracle soft-caps the logits (c tanh(z / c)), calls ``F.cross_entropy`` on them and adds
z_loss * logsumexp² per row that is not ignored, the mean dividing that part by the number of such rows;
autograd then gives the exact gradient. Every case runs on every backend that implements cross_entropy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_oracle import assert_close, to_numpy, to_torch

import lossk

SATURATED = 1e4


def z_loss_cross_entropy_formula(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    reduction: str,
    z_loss: float,
    softcap: float | None,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, z-term) as differentiable torch tensors, from the formulas of lossk.cross_entropy's docstring."""
    z = logits if softcap is None else softcap * torch.tanh(logits / softcap)
    class_axis = 0 if z.ndim == 1 else 1
    cross_entropy = F.cross_entropy(
        z, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction
    )
    lse = torch.logsumexp(z, dim=class_axis)
    kept = torch.ones_like(lse) if target.is_floating_point() else (target != ignore_index).to(lse.dtype)
    z_row = z_loss * lse**2 * kept
    z_term = {"none": z_row, "sum": z_row.sum(), "mean": z_row.sum() / kept.sum()}[reduction]
    return cross_entropy + z_term, z_term


def torch_z_loss_cross_entropy(
    input: np.ndarray,
    target: np.ndarray,
    *,
    grad_output: Any = None,
    weight: np.ndarray | None = None,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(loss, z-term, d loss / d input) in float64 by autograd through :func:`z_loss_cross_entropy_formula`."""
    x = to_torch(input).requires_grad_(True)
    loss, z_term = z_loss_cross_entropy_formula(x, to_torch(target), weight=to_torch(weight), **options)
    upstream = torch.ones_like(loss) if grad_output is None else torch.as_tensor(np.asarray(grad_output, np.float64))
    (grad,) = torch.autograd.grad(loss, x, upstream.expand_as(loss))
    return loss.detach().numpy(), z_term.detach().numpy(), grad.numpy()


# (input shape, target kind, options): target kinds 'index', 'ignored' (30% of the rows ignored), 'probability'
CASES = [
    ((7, 5), "index", {}),
    ((5,), "index", {}),
    ((3, 4, 2, 3), "index", {}),
    ((9, 6), "ignored", {"ignore_index": -100}),
    ((9, 6), "ignored", {"ignore_index": 2, "weight": True}),
    ((9, 6), "index", {"label_smoothing": 0.1}),
    ((3, 5, 2, 3), "ignored", {"ignore_index": 1, "label_smoothing": 0.3, "weight": True}),
    ((7, 5), "probability", {}),
    ((3, 4, 2, 3), "probability", {"label_smoothing": 0.25, "weight": True}),
]
SETTINGS = [  # (z_loss, softcap)
    (0.0, None),
    (1e-4, None),
    (0.5, None),
    (0.0, 1.5),
    (0.3, 2.0),
    (1e-4, 30.0),
]


def draw(shape: tuple[int, ...], target_kind: str, options: dict[str, Any], rng: np.random.Generator) -> tuple:
    class_axis = 0 if len(shape) == 1 else 1
    n_classes = shape[class_axis]
    loss_shape = shape[:class_axis] + shape[class_axis + 1 :]
    input = rng.normal(0, 3, shape)
    if target_kind == "probability":
        target = rng.dirichlet(np.ones(n_classes), loss_shape)
        target = np.moveaxis(target, -1, class_axis)
    else:
        target = rng.integers(0, n_classes, loss_shape)
        if target_kind == "ignored":
            target[rng.random(loss_shape) < 0.3] = options["ignore_index"]
            # At least one row counts. Over no rows PyTorch's mean is NaN with a zero gradient (lossk too, checked
            # in test_torch_autograd's all_ignored cases); the autograd oracle here would give a NaN gradient.
            flat = target.reshape(-1)
            if flat.size and np.all(flat == options["ignore_index"]):
                flat[0] = 0 if options["ignore_index"] != 0 else 1
    resolved = dict(options)
    if options.get("weight"):
        resolved["weight"] = rng.uniform(0.2, 2, (n_classes,))
    return input, target, resolved


def as_dtype(x: Any, dtype: Any) -> Any:
    return x.astype(dtype) if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating) else x


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(("z_loss", "softcap"), SETTINGS, ids=[f"z{z}-cap{c}" for z, c in SETTINGS])
@pytest.mark.parametrize(
    ("shape", "target_kind", "options"),
    CASES,
    ids=["x".join(map(str, s)) + f"-{k}-" + "-".join(o) for s, k, o in CASES],
)
def test_matches_torch_formula(shape, target_kind, options, z_loss, softcap, reduction, dtype, backend, rng, seed):
    backend.require("cross_entropy")
    input64, target64, options64 = draw(shape, target_kind, options, rng)
    input, target = as_dtype(input64, dtype), as_dtype(target64, dtype)
    options = {name: as_dtype(value, dtype) for name, value in options64.items()}
    call_options = {name: backend.asarray(value) for name, value in options.items()}
    x, t = backend.asarray(input), backend.asarray(target)
    settings = {"z_loss": z_loss, "softcap": softcap, "reduction": reduction}

    expected_loss, expected_z, expected_grad = torch_z_loss_cross_entropy(input, target, **settings, **options)
    (loss, z_term), grad = lossk.cross_entropy.value_and_grad(
        x, t, return_z_loss=True, backend=backend.name, **settings, **call_options
    )
    for name, result, expected in (("loss", loss, expected_loss), ("z-term", z_term, expected_z)):
        assert type(result) is type(x), f"{name} is a {type(result)}, not the input's array type"
        assert result.dtype == input.dtype
        assert_close(result, expected, dtype, name, seed)
    assert_close(grad, expected_grad, dtype, "gradient", seed)
    plain = lossk.cross_entropy(x, t, backend=backend.name, **settings, **call_options)
    assert_close(plain, expected_loss, dtype, "forward-only loss", seed)

    if reduction == "none":
        upstream = rng.normal(0, 1, expected_loss.shape).astype(dtype)
        grad_output = backend.asarray(upstream)
    else:
        upstream = grad_output = float(rng.normal(0, 2))
    *_, expected_grad = torch_z_loss_cross_entropy(input, target, **settings, grad_output=upstream, **options)
    grad = lossk.cross_entropy.grad(x, t, grad_output=grad_output, backend=backend.name, **settings, **call_options)
    assert_close(grad, expected_grad, dtype, f"gradient with grad_output={upstream}", seed)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_in_place_gradient_with_z_loss_and_softcap(reduction, backend, rng, seed):
    backend.require("cross_entropy")
    input, target, _ = draw((6, 11), "ignored", {"ignore_index": -100}, rng)
    settings = {"z_loss": 0.2, "softcap": 3.0, "reduction": reduction}
    expected_loss, _, expected_grad = torch_z_loss_cross_entropy(input, target, **settings)
    logits = backend.asarray(input.copy())
    loss, grad = lossk.cross_entropy.value_and_grad(
        logits, backend.asarray(target), inplace=True, backend=backend.name, **settings
    )
    assert grad is logits
    assert_close(loss, expected_loss, np.float64, "loss", seed)
    assert_close(logits, expected_grad, np.float64, "gradient written into the logits", seed)


def test_softcap_saturates_gradient_of_huge_logits(backend, rng, seed):
    """Logits of ±1e4 under softcap 20 sit on tanh's flat tails: finite loss, gradient 0 there."""
    backend.require("cross_entropy")
    input, target, _ = draw((5, 7), "index", {}, rng)
    input[:, 3] = SATURATED
    input[:, 5] = -SATURATED
    settings = {"z_loss": 1e-3, "softcap": 20.0, "reduction": "mean"}
    expected_loss, _, expected_grad = torch_z_loss_cross_entropy(input, target, **settings)
    loss, grad = lossk.cross_entropy.value_and_grad(
        backend.asarray(input), backend.asarray(target), backend=backend.name, **settings
    )
    assert np.isfinite(to_numpy(loss))
    np.testing.assert_array_equal(to_numpy(grad)[:, [3, 5]], 0.0)
    assert_close(loss, expected_loss, np.float64, "loss", seed)
    assert_close(grad, expected_grad, np.float64, "gradient", seed)


def test_all_rows_ignored_mean_is_nan_gradient_zero_like_pytorch(backend):
    """PyTorch's mean over no rows is NaN, and F.cross_entropy's gradient on ignored rows is 0 even then."""
    backend.require("cross_entropy")
    input = backend.asarray(np.zeros((3, 4)))
    target = backend.asarray(np.full(3, -100))
    (loss, z_term), grad = lossk.cross_entropy.value_and_grad(
        input, target, z_loss=0.1, softcap=2.0, return_z_loss=True, backend=backend.name
    )
    assert np.isnan(to_numpy(loss)) and np.isnan(to_numpy(z_term))
    np.testing.assert_array_equal(to_numpy(grad), 0.0)
    total, z_sum = lossk.cross_entropy(
        input, target, z_loss=0.1, return_z_loss=True, reduction="sum", backend=backend.name
    )
    assert to_numpy(total) == 0.0 and to_numpy(z_sum) == 0.0


def test_z_term_is_zero_without_z_loss(rng):
    input, target, _ = draw((4, 6), "index", {}, rng)
    loss, z_term = lossk.cross_entropy(input, target, return_z_loss=True)
    assert to_numpy(z_term) == 0.0
    assert to_numpy(loss) == to_numpy(lossk.cross_entropy(input, target))


def test_module_returns_the_z_term(rng, seed):
    input, target, _ = draw((6, 5), "index", {}, rng)
    criterion = lossk.CrossEntropyLoss(z_loss=0.1, softcap=4.0, return_z_loss=True)
    loss, z_term = criterion(input, target)
    expected_loss, expected_z, expected_grad = torch_z_loss_cross_entropy(
        input, target, reduction="mean", z_loss=0.1, softcap=4.0
    )
    assert_close(loss, expected_loss, np.float64, "loss", seed)
    assert_close(z_term, expected_z, np.float64, "z-term", seed)
    assert_close(criterion.backward(), expected_grad, np.float64, "gradient", seed)
    assert_close(criterion.backward(2.0), 2.0 * expected_grad, np.float64, "gradient times 2", seed)


def test_torch_cpu_tensors_through_the_reference(rng, seed):
    input, target, _ = draw((5, 8), "ignored", {"ignore_index": -100}, rng)
    settings = {"z_loss": 0.05, "softcap": 2.5, "reduction": "mean"}
    expected_loss, expected_z, expected_grad = torch_z_loss_cross_entropy(input, target, **settings)
    (loss, z_term), grad = lossk.cross_entropy.value_and_grad(
        torch.from_numpy(input), torch.from_numpy(target), return_z_loss=True, **settings
    )
    assert isinstance(loss, torch.Tensor) and isinstance(z_term, torch.Tensor)
    assert_close(loss, expected_loss, np.float64, "loss", seed)
    assert_close(z_term, expected_z, np.float64, "z-term", seed)
    assert_close(grad, expected_grad, np.float64, "gradient", seed)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"z_loss": -0.1}, ValueError, "z_loss"),
        ({"z_loss": float("nan")}, ValueError, "z_loss"),
        ({"z_loss": float("inf")}, ValueError, "z_loss"),
        ({"softcap": 0.0}, ValueError, "softcap"),
        ({"softcap": -1.0}, ValueError, "softcap"),
        ({"softcap": float("inf")}, ValueError, "softcap"),
        ({"return_z_loss": 1}, TypeError, "return_z_loss"),
    ],
)
def test_invalid_options_raise(options, error, message):
    with pytest.raises(error, match=message):
        lossk.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), **options)
