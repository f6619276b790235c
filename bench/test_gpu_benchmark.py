"""``bench/gpu_benchmark.py`` without a GPU: its goals build, its peers are those of ``bench/providers.py``
built from ``bench/cases.py`` (the loss-spec table), and the torch.compile peer of an elementwise loss computes
what the case's several-pass NumPy formulation computes (traced by Dynamo, run by its eager backend: Inductor's
code generation is what a GPU run times, and takes half a minute per loss on a 2-core CPU).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import gpu_benchmark
from bench.providers import PROVIDERS

torch = pytest.importorskip("torch")

# torch.compile imports torch.jit code that warns (torch 2.13): the warning is PyTorch's, about itself
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning")


def test_goals_are_distinct_and_every_elementwise_loss_has_a_case():
    labels = [label for label, _ in gpu_benchmark.goals(headline_only=False)]
    assert len(labels) == len(set(labels))
    for loss in gpu_benchmark.ELEMENTWISE:
        case = gpu_benchmark.elementwise_case(loss)
        assert case.lossk_name == loss and case.torch_name == loss


@pytest.mark.parametrize("loss", gpu_benchmark.ELEMENTWISE)
def test_elementwise_peers_compute_the_several_pass_formulation(loss):
    case = gpu_benchmark.elementwise_case(loss)
    x, y = case.layout.inputs((257,), np.random.default_rng(0))
    expected_loss, expected_grad = case.several_pass(np, x.astype(np.float64), y.astype(np.float64), **case.options)
    x_tensor, y_tensor = torch.from_numpy(x), torch.from_numpy(y)

    calls = gpu_benchmark.elementwise_providers(None, loss, x_tensor, y_tensor, torch.empty_like(x_tensor))
    assert set(calls) == {"lossk.cupy (out=)", "torch", "torch.compile.formula"}
    calls["torch"]()  # eager F.<loss> and backward on the benchmark's own tensors

    compiled = PROVIDERS["torch.compile.formula"].value_and_grad(case, compile_backend="eager")
    value, grad = compiled(x_tensor, y_tensor)
    np.testing.assert_allclose(value.item(), expected_loss, rtol=1e-5)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-4, atol=1e-6 * np.abs(expected_grad).max())


def test_cross_entropy_peers_are_built_from_its_case():
    logits = torch.randn(4, 7)
    target = torch.randint(0, 7, (4,))
    calls = gpu_benchmark.cross_entropy_providers(None, logits, target, {})
    assert {"torch", "torch.compile"} <= set(calls)
    calls["torch"]()
