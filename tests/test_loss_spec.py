"""The loss-spec table itself: each loss's two formulations agree, and what is derived from a spec tells the truth.

The scalar formulation (``element``, what the kernels inline) is run in plain Python float64 here, through
``lossk._losses.scalar``, and compared with the array formulation (``formula``, the reference) on data drawn
from the loss's domain — independent of Numba. Signatures, docstrings and classes are checked against the spec.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from loss_cases import CASES, draw

import lossk
from lossk._losses import ELEMENTWISE_LOSSES, generate, scalar
from lossk._spec import ARRAY_KIND, prepare_arguments, resolve

SPECS = list(ELEMENTWISE_LOSSES.values())


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.loss in ELEMENTWISE_LOSSES and 0 < c.shape.__len__() and len(c.shape) <= 2],
    ids=lambda c: c.id,
)
@pytest.mark.parametrize("differentiable", [False, True])
def test_scalar_formulation_matches_array_formulation(case, differentiable, rng):
    spec = ELEMENTWISE_LOSSES[case.loss]
    input, target, arrays = draw(case, rng, differentiable=differentiable)
    options = {o.name: o.default for o in spec.options} | case.options | arrays
    _, options = prepare_arguments(spec, {"input": input, "target": target}, options)
    name, options = resolve(spec, options)
    spec = ELEMENTWISE_LOSSES[name]
    values = [
        (o.neutral if options[o.name] is None else np.broadcast_to(options[o.name], input.shape))
        if o.kind == ARRAY_KIND else options[o.name]
        for o in spec.formula_options
    ]
    with np.errstate(all="ignore"):
        expected = spec.formula(np, input, target, order=2, **{o.name: options[o.name] for o in spec.formula_options})
    got = np.zeros((3, *input.shape))
    for index in np.ndindex(input.shape):
        element_options = [v[index] if isinstance(v, np.ndarray) else v for v in values]
        got[(slice(None), *index)] = spec.element(float(input[index]), float(target[index]), *element_options)
    for what, g, e in zip(("loss", "d1", "d2"), got, expected):
        e = np.broadcast_to(e, input.shape)
        # atol: the last bits of libm's and NumPy's exp/log1p differ, which cancellation can expose (log cosh at 0)
        scale = max(1.0, float(np.max(np.abs(e[np.isfinite(e)]), initial=0.0)))
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14 * scale, err_msg=what)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_element_reads_only_the_scalar_helpers(spec):
    """What the kernel generator enforces: the names a scalar formulation reads exist in typed_math too."""
    generate.element_source(spec)
    typed_math = pytest.importorskip("lossk._kernels.numba.typed_math")
    assert all(hasattr(typed_math, name) for name in scalar.__all__)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_signatures_tell_the_truth(spec):
    function = getattr(lossk, spec.name)
    options = [o.name for o in spec.options]
    signature = inspect.signature(function)
    assert list(signature.parameters) == [*spec.inputs, *options, "backend"]
    assert all(signature.parameters[n].kind is inspect.Parameter.POSITIONAL_ONLY for n in spec.inputs)
    assert all(signature.parameters[o.name].default == o.default for o in spec.options)
    for entry in (function.grad, function.value_and_grad):
        assert list(inspect.signature(entry).parameters) == [
            *spec.inputs, *options, "grad_output", "out", "inplace", "backend"
        ]
    with pytest.raises(TypeError, match="unexpected keyword argument 'nonsense'"):
        function(np.zeros(2), np.zeros(2), nonsense=1)


def test_help_shows_the_signature():
    import pydoc

    text = pydoc.render_doc(lossk.mse_loss, renderer=pydoc.plaintext)
    assert ("mse_loss(input: 'Array', target: 'Array', /, *, reduction: 'str' = 'mean', "
            "weight: 'Array | None' = None, backend: 'str' = 'auto') -> 'Array'") in text
    grad_text = pydoc.render_doc(lossk.huber_loss.grad, renderer=pydoc.plaintext)
    assert "grad_output: 'Any' = None, out: 'Array | None' = None, inplace: 'bool' = False" in grad_text


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_docstring_has_numpydoc_sections(spec):
    doc = getattr(lossk, spec.name).__doc__
    for section in ("Parameters\n----------", "Returns\n-------", "Examples\n--------"):
        assert section in doc
    for option in spec.options:
        assert f"\n{option.name} : " in doc


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_class_takes_torch_positional_options(spec):
    cls = getattr(lossk, spec.class_name)
    parameters = list(inspect.signature(cls).parameters.values())
    positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == list(spec.class_positional)
    assert cls().function is getattr(lossk, spec.name)


def test_rewrite_dispatches_to_the_other_loss(rng):
    """smooth_l1_loss(beta=0) runs l1_loss's implementations (the spec's rewrite), on every backend."""
    x, y = rng.normal(size=7), rng.normal(size=7)
    for backend in ("array_api", "numba"):
        if backend == "numba" and not lossk._dispatch.is_available("numba"):
            continue
        np.testing.assert_array_equal(
            lossk.smooth_l1_loss.grad(x, y, beta=0.0, backend=backend), lossk.l1_loss.grad(x, y, backend=backend)
        )


@pytest.mark.parametrize(
    ("spec", "anchor"), [(s, a) for s in SPECS for a in s.anchors], ids=lambda x: getattr(x, "name", "anchor")
)
def test_oracle_and_loss_match_the_anchor_test_values(spec, anchor):
    """A torch-written oracle is checked once against the anchor's own numbers, and so is lossk (every backend)."""
    from torch_oracle import torch_value_and_grad

    arrays = [np.asarray(anchor.arrays[name], dtype=np.float64) for name in spec.inputs]
    expected = np.asarray(anchor.expected)
    oracle_loss, _ = torch_value_and_grad(spec.name, *arrays, reduction="none", **anchor.options)
    np.testing.assert_allclose(oracle_loss, expected, rtol=anchor.rtol, atol=anchor.atol, err_msg=anchor.source)
    for backend in ("array_api", "numba"):
        if lossk._dispatch.is_available(backend):
            value = getattr(lossk, spec.name)(*arrays, reduction="none", backend=backend, **anchor.options)
            np.testing.assert_allclose(
                value, expected, rtol=anchor.rtol, atol=anchor.atol, err_msg=f"{backend}: {anchor.source}"
            )
