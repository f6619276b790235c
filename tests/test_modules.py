"""The classes with PyTorch's names: ``crit(input, target)`` and ``crit.backward(grad_output)`` against torch.nn."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from loss_cases import draw_elementwise
from torch_oracle import to_torch

import lossk
from lossk._losses import ELEMENTWISE_LOSSES
from lossk._spec import ARRAY_KIND

def _elementwise_classes() -> list[tuple[str, dict, str]]:
    """Each spec's class with torch.nn's namesake: scalar options at their first example, the array options
    torch.nn's class takes drawn per row."""
    classes = []
    for spec in ELEMENTWISE_LOSSES.values():
        torch_class = getattr(torch.nn, spec.class_name, None)
        if torch_class is None:
            continue
        accepted = inspect.signature(torch_class.__init__).parameters
        options = {
            o.name: "row" if o.kind == ARRAY_KIND else (o.examples[0] if o.examples else o.default)
            for o in spec.keyword_options if o.name in accepted
        }
        classes.append((spec.class_name, options, spec.name))
    return classes


CLASSES = [
    *_elementwise_classes(),
    ("CrossEntropyLoss", {"weight": "class", "ignore_index": 2, "label_smoothing": 0.1}, "index"),
    ("NLLLoss", {"weight": "class", "ignore_index": 0}, "index"),
]


def data(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "index":
        return rng.normal(size=(6, 5)), rng.integers(0, 5, 6)
    spec = ELEMENTWISE_LOSSES[kind]
    input, target, _ = draw_elementwise(spec, (6, 5), {}, (), rng)
    return input, target


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(("name", "option_kinds", "kind"), CLASSES, ids=[c[0] for c in CLASSES])
# PyTorch's own KLDivLoss(reduction="mean") warns that 'mean' is not 'batchmean' (lossk computes what torch does)
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")
def test_class_matches_torch_nn(name, option_kinds, kind, reduction, rng, seed):
    input, target = data(kind, rng)
    options = {
        key: rng.uniform(0.5, 2, 5) if value in ("row", "class") else value for key, value in option_kinds.items()
    }
    criterion = getattr(lossk, name)(reduction=reduction, **options)
    torch_criterion = getattr(torch.nn, name)(reduction=reduction, **{k: to_torch(v) for k, v in options.items()})
    x = to_torch(input).requires_grad_(True)
    expected = torch_criterion(x, to_torch(target))
    loss = criterion(input, target)
    np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-10, err_msg=f"LOSSK_SEED={seed}")

    # backward without grad_output: ones
    (expected_grad,) = torch.autograd.grad(expected, x, torch.ones_like(expected), retain_graph=True)
    np.testing.assert_allclose(criterion.backward(), expected_grad.numpy(), rtol=1e-10, atol=1e-14)

    # backward with grad_output: a scalar for mean/sum, an array of the loss's shape for 'none'
    upstream = rng.normal(size=expected.shape) if reduction == "none" else 0.3
    (expected_grad,) = torch.autograd.grad(expected, x, torch.as_tensor(upstream, dtype=torch.float64).expand_as(expected))
    np.testing.assert_allclose(criterion.backward(upstream), expected_grad.numpy(), rtol=1e-10, atol=1e-14)


def test_backward_is_for_the_last_call(rng):
    criterion = lossk.MSELoss()
    a, b = rng.normal(size=4), rng.normal(size=4)
    criterion(a, np.zeros(4))
    criterion(b, np.zeros(4))
    np.testing.assert_allclose(criterion.backward(), 2 * b / 4)


def test_backward_before_a_call():
    with pytest.raises(RuntimeError, match="call the CrossEntropyLoss on an input before"):
        lossk.CrossEntropyLoss().backward()


def test_repr_shows_the_options():
    assert repr(lossk.HuberLoss(delta=2.0)) == "HuberLoss(reduction='mean', delta=2.0, weight=None)"


def test_positional_arguments_follow_torch():
    """Where torch.nn's first arguments are not deprecated, lossk's are the same: BCELoss(weight), HuberLoss(reduction, delta)."""
    weight = np.array([1.0, 2.0])
    assert lossk.BCELoss(weight).options["weight"] is weight
    assert lossk.HuberLoss("sum", 0.5).options["delta"] == 0.5
    assert lossk.CrossEntropyLoss(None, 3).options["ignore_index"] == 3
