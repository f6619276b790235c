"""Forward+backward of every loss on every provider: the matrix of ``python -m bench`` as pytest-benchmark tests.

With ``--benchmark-only`` each test times the default sweep of sizes (pytest-benchmark groups the
providers of one loss and size together); otherwise each runs once on a small input. Either way the
result is checked against float64 NumPy, so a provider that computes the wrong thing fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import hardware
from bench.cases import CASES, Case, Shape, parse_size, size_label
from bench.conftest import benchmarking
from bench.providers import PROVIDERS, NotApplicable, Provider, to_numpy

SMOKE_SIZE = parse_size("16x256")
"""4096 elements; 16 rows of 256 classes for cross-entropy."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "shape" not in metafunc.fixturenames:
        return
    gpu = benchmarking(metafunc.config) and hardware.gpu_model() is not None
    params = [
        pytest.param(case, provider, shape, id=f"{case.name}-{provider.name}-{size_label(shape)}")
        for case in CASES.values()
        for shape in (
            case.layout.sweep(quick=True, gpu=gpu) if benchmarking(metafunc.config) else [case.layout.shape(SMOKE_SIZE)]
        )
        for provider in PROVIDERS.values()
    ]
    metafunc.parametrize(("case", "provider", "shape"), params)


def test_forward_backward(timed, case: Case, provider: Provider, shape: Shape, device: str) -> None:
    reason = provider.unavailable(device) or provider.not_by_default(device)
    if reason:
        pytest.skip(f"{provider.name}: {reason}")
    arrays = case.layout.inputs(shape, np.random.default_rng(0))
    try:
        call = provider.prepare(case, arrays, device)
    except NotApplicable as not_applicable:
        pytest.skip(str(not_applicable))
    call()  # compile outside the timing
    timed.group = f"{case.name} {size_label(shape)}"
    timed.extra_info.update(min_bytes=case.layout.min_bytes(shape), elements=case.layout.elements(shape))

    loss, grad = timed(call)

    float64 = tuple(a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays)
    expected_loss, expected_grad = case.several_pass(np, *float64, **case.options)
    np.testing.assert_allclose(float(to_numpy(loss)), expected_loss, rtol=1e-4)
    grads, expected_grads = (grad, expected_grad) if len(case.differentiable) > 1 else ((grad,), (expected_grad,))
    assert len(grads) == len(expected_grads)
    for actual, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(to_numpy(actual), expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_torch_peer_wherever_pytorch_has_the_loss() -> None:
    """Every case whose loss ``torch.nn.functional`` has is timed against it: by its spec's oracle, by the loss
    of PyTorch's that is exactly it at its defaults (poisson: ``F.poisson_nll_loss``), or by lossk's name for
    it, which is PyTorch's (soft_margin: its spec's oracle is a torch-written formula, not ``F.*``). The others
    are skipped as PyTorch has no such loss."""
    functional = pytest.importorskip("torch.nn.functional")
    for case in CASES.values():
        if hasattr(functional, case.lossk_name):
            assert case.torch_name == case.lossk_name, case.name
    assert CASES["soft_margin"].torch_name == "soft_margin_loss"
    assert CASES["poisson"].torch_name == "poisson_nll_loss"
    eager = PROVIDERS["torch"]
    for case in CASES.values():
        if not hasattr(functional, case.torch_name):
            with pytest.raises(NotApplicable, match="PyTorch has no such loss"):
                eager.loss_function(case)
