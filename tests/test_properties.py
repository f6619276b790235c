"""Hypothesis: random shapes (0-size and size-1 included), reductions and options, on every backend.

Each example is checked against PyTorch in float64 and for the properties that tie the three entry points
together: 'sum' is the sum of 'none', ``value_and_grad`` is ``(loss, grad)``, and ``grad`` is linear in
``grad_output`` ('none' with ``grad_output=ones`` is the gradient of 'sum').
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes
from loss_cases import draw_elementwise
from torch_oracle import assert_close, to_numpy, torch_value_and_grad

import lossk
from lossk._losses import ELEMENTWISE_LOSSES
from lossk._spec import ARRAY_KIND

SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=False
)
SHAPES = array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
SEEDS = st.integers(0, 2**32 - 1)


def check_properties(backend, name, input, target, reduction, seed, options):
    """Oracle agreement plus the relations between reductions and entry points."""
    function = getattr(lossk, name)
    args = (backend.asarray(input), backend.asarray(target))
    call_options = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    run = dict(backend=backend.name, **call_options)

    expected_loss, expected_grad = torch_value_and_grad(name, input, target, reduction=reduction, **options)
    loss, grad = function.value_and_grad(*args, reduction=reduction, **run)
    assert_close(loss, expected_loss, np.float64, "loss", seed)
    assert_close(grad, expected_grad, np.float64, "gradient", seed)
    assert to_numpy(grad).shape == input.shape
    # the forward-only and gradient-only paths may sum in another order than value_and_grad, not to another value
    np.testing.assert_allclose(to_numpy(function(*args, reduction=reduction, **run)), to_numpy(loss), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(function.grad(*args, reduction=reduction, **run)), to_numpy(grad), rtol=1e-12)

    unreduced_shape = to_numpy(function(*args, reduction="none", **run)).shape
    ones = backend.asarray(np.ones(unreduced_shape))
    unreduced, unreduced_grad = function.value_and_grad(*args, reduction="none", grad_output=ones, **run)
    total, total_grad = function.value_and_grad(*args, reduction="sum", **run)
    np.testing.assert_allclose(to_numpy(total), np.sum(to_numpy(unreduced)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_numpy(unreduced_grad), to_numpy(total_grad), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        to_numpy(function.grad(*args, reduction="sum", grad_output=-2.5, **run)), -2.5 * to_numpy(total_grad),
        rtol=1e-12, atol=1e-14,
    )


@SETTINGS
@given(
    name=st.sampled_from(list(ELEMENTWISE_LOSSES)),
    shape=SHAPES,
    reduction=st.sampled_from(["none", "mean", "sum"]),
    weighted=st.booleans(),
    option_choice=st.integers(0, 3),
    seed=SEEDS,
)
def test_elementwise_losses(backend, name, shape, reduction, weighted, option_choice, seed):
    """Every loss of the spec table, its data drawn from its domain, each scalar option at its default or one
    of its examples, and (``weighted``) every array option drawn."""
    backend.require(name)
    spec = ELEMENTWISE_LOSSES[name]
    rng = np.random.default_rng(seed)
    options = {
        o.name: (o.default, *o.examples)[option_choice % (1 + len(o.examples))]
        for o in spec.keyword_options if o.kind != ARRAY_KIND
    }
    arrays = tuple(o.name for o in spec.keyword_options if o.kind == ARRAY_KIND) if weighted else ()
    input, target, array_options = draw_elementwise(spec, shape, options, arrays, rng)
    check_properties(backend, name, input, target, reduction, seed, {**options, **array_options})


@SETTINGS
@given(
    name=st.sampled_from(["cross_entropy", "nll_loss"]),
    batch=st.one_of(st.just(()), array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)),
    n_classes=st.integers(1, 6),
    reduction=st.sampled_from(["none", "mean", "sum"]),
    weighted=st.booleans(),
    ignore_index=st.sampled_from([-100, 0, 2]),
    label_smoothing=st.sampled_from([0.0, 0.1, 1.0]),
    probabilities=st.booleans(),
    seed=SEEDS,
)
def test_class_losses(
    backend, name, batch, n_classes, reduction, weighted, ignore_index, label_smoothing, probabilities, seed
):
    backend.require(name)
    rng = np.random.default_rng(seed)
    shape = (n_classes,) if batch == () else (batch[0], n_classes, *batch[1:])
    input = rng.normal(0, 3, shape)
    options: dict = {"ignore_index": ignore_index}
    if probabilities and name == "cross_entropy":
        target = rng.dirichlet(np.ones(n_classes), batch).reshape(batch + (n_classes,))
        target = np.moveaxis(target, -1, 0 if batch == () else 1)
        options = {}
    else:
        target = rng.integers(0, n_classes, batch)
        target[rng.random(batch) < 0.25] = ignore_index
    if name == "cross_entropy":
        options["label_smoothing"] = label_smoothing
    if weighted:
        options["weight"] = rng.uniform(0.1, 2, n_classes)
    check_properties(backend, name, input, np.asarray(target), reduction, seed, options)
