"""Correct input gives no warning, on every backend and library, including the inputs whose IEEE values NumPy
warns about by default (log(0), 0/0: see "NaN and infinity" in ``lossk._dispatch``).

Every test here turns warnings into errors itself, whatever the pytest configuration says.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lossk

from registry_inputs import every_loss_inputs

torch = pytest.importorskip("torch")


EVERY_LOSS = every_loss_inputs()
"""Every public loss of the registry, each configuration (exact 0/1 probabilities, every target ignored,
empty and saturated inputs included)."""


@pytest.fixture(autouse=True)
def warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("case", EVERY_LOSS, ids=lambda case: case.id)
@pytest.mark.parametrize("reduction", ["none", "mean"])  # "sum" adds no new arithmetic to these
def test_numpy_on_every_backend(case, reduction, backend, rng):
    backend.require(case.loss)
    arrays, options = case.make(rng)
    options = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    getattr(lossk, case.loss).value_and_grad(
        *(backend.asarray(a) for a in arrays), reduction=reduction, backend=backend.name, **options
    )


def _to_dask(x: np.ndarray):
    """Two chunks along the first axis: a graph that combines chunks."""
    da = pytest.importorskip("dask.array")
    return da.from_array(x, chunks=(max(1, (x.shape[0] + 1) // 2), *x.shape[1:]) if x.ndim else ())


@pytest.mark.parametrize("case", EVERY_LOSS, ids=lambda case: case.id)
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_dask_computes_without_warning(case, reduction, rng):
    """Dask computes after lossk's ``ieee_arithmetic`` context has closed, in NumPy's default error state:
    the means over nothing (an empty input, every target ignored) must not divide by zero there
    (``lossk._reduction``), nor a row's 0 * inf be evaluated (``lossk._reference.classification``)."""
    dask = pytest.importorskip("dask")
    arrays, options = case.make(rng)
    options = {k: _to_dask(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    loss, grad = getattr(lossk, case.loss).value_and_grad(
        *(_to_dask(a) for a in arrays), reduction=reduction, **options
    )
    dask.compute(loss, grad)


@pytest.fixture
def torch_warns_always():
    """PyTorch warns some things once per process (``TORCH_WARN_ONCE``); here, every time."""
    before = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    yield
    torch.set_warn_always(before)


@pytest.mark.parametrize("case", EVERY_LOSS, ids=lambda case: case.id)
def test_torch_input_that_requires_grad(case, rng, torch_warns_always):
    """No ``torch.asarray: unspecified requires_grad`` warning (torch 2.13)."""
    arrays, options = case.make(rng)
    tensors = [torch.asarray(a) for a in arrays]
    for tensor in tensors:
        if tensor.is_floating_point():
            tensor.requires_grad_(True)
    options = {k: torch.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    loss_function = getattr(lossk, case.loss)
    loss_function(*tensors, **options)
    loss_function.value_and_grad(*tensors, **options)


def test_binary_cross_entropy_of_exact_zeros():
    loss, grad = lossk.binary_cross_entropy.value_and_grad(np.zeros(5), np.zeros(5), backend="array_api")
    assert float(loss) == 0.0 and np.all(np.isfinite(grad))


def test_nll_loss_with_every_target_ignored_is_nan_as_in_pytorch():
    input, target = np.zeros((3, 4)), np.full(3, -100)
    loss, grad = lossk.nll_loss.value_and_grad(input, target, backend="array_api")
    expected = torch.nn.functional.nll_loss(torch.asarray(input), torch.asarray(target))
    assert np.isnan(float(loss)) and torch.isnan(expected)
    np.testing.assert_array_equal(grad, np.zeros((3, 4)))


def test_nan_propagates_silently():
    input = np.array([0.5, np.nan, 2.0])
    loss, grad = lossk.mse_loss.value_and_grad(input, np.zeros(3), backend="array_api")
    assert np.isnan(float(loss)) and np.isnan(grad[1]) and np.isfinite(grad[[0, 2]]).all()


def test_numpy_error_state_is_restored():
    before = np.geterr()
    lossk.binary_cross_entropy(np.zeros(5), np.zeros(5), backend="array_api")
    assert np.geterr() == before
