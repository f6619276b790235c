"""The multi-input losses (``lossk._losses.multi_input``: more arrays than ``(input, target)``, two gradients),
checked from their specs with no per-loss code: PyTorch float64 autograd (the gradients of both arguments),
central differences of d1 and d2 for both arguments, the scalar formulation against the array one, the fused
kernels against the reference, the return order, ``out``/``inplace``, broadcasting, errors and signatures.
Their Hessian diagonals (``.hessian``, ``.value_grad_hessian``) through the public entry points: central
differences of the public gradient, ``torch.func.hessian``'s diagonal, fused against the reference,
``out``/``hess_out``.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import lossk
from lossk import _dispatch
from lossk._losses import generate, multi_input
from lossk._multi_input import evaluate

SPECS = multi_input.LOSSES
BACKENDS = [b for b in ("array_api", "numba") if _dispatch.is_available(b)]


def _options(spec, which="default"):
    """The default options, or each scalar/flag option at its first example."""
    options = {o.name: o.default for o in spec.keyword_options}
    if which == "examples":
        options |= {o.name: o.examples[0] for o in spec.keyword_options if o.examples}
    return options


def _draw(spec, rng, shape, options, differentiable=False):
    arrays = spec.domain.draw(rng, shape, options, differentiable)
    return [np.asarray(arrays[name], dtype=np.float64) for name in spec.inputs]


def _tuple(grads):
    """A single gradient (one differentiable argument) as a 1-tuple."""
    return grads if isinstance(grads, tuple) else (grads,)


def _torch(spec, arrays, reduction, options):
    torch = pytest.importorskip("torch")
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=n in spec.differentiable)
               for n, a in zip(spec.inputs, arrays)]
    function = getattr(torch.nn.functional, spec.torch_function)
    loss = function(*tensors, reduction=reduction, **options)
    upstream = torch.ones_like(loss)
    grads = torch.autograd.grad(loss, [t for t in tensors if t.requires_grad], upstream)
    return loss.detach().numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("which", ["default", "examples"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_torch_autograd(spec, reduction, which, backend, rng):
    options = _options(spec, which)
    arrays = _draw(spec, rng, (5, 7), options)
    expected_loss, expected_grads = _torch(spec, arrays, reduction, options)
    loss, grads = getattr(lossk, spec.name).value_and_grad(*arrays, reduction=reduction, backend=backend, **options)
    grads = _tuple(grads)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12, atol=1e-12)
    assert len(grads) == len(spec.differentiable)
    for name, got, expected in zip(spec.differentiable, grads, expected_grads):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_first_and_second_derivatives_match_central_differences(spec, rng):
    options = _options(spec, "examples")
    arrays = _draw(spec, rng, (3, 4), options, differentiable=True)

    def derivatives(values, order):
        return evaluate(spec, *values, xp=np, reduction="none", grad_output=None, order=order, **options)

    _, d1, d2 = derivatives(arrays, 2)
    step = 1e-6
    for k, name in enumerate(spec.differentiable):
        index = spec.inputs.index(name)
        plus, minus = list(arrays), list(arrays)
        plus[index], minus[index] = arrays[index] + step, arrays[index] - step
        (loss_plus, grad_plus, _), (loss_minus, grad_minus, _) = derivatives(plus, 1), derivatives(minus, 1)
        np.testing.assert_allclose(d1[k], (loss_plus - loss_minus) / (2 * step), rtol=1e-6, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(
            d2[k], (grad_plus[k] - grad_minus[k]) / (2 * step), rtol=1e-6, atol=1e-6, err_msg=name
        )


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_scalar_formulation_matches_array_formulation(spec, rng):
    options = _options(spec, "examples")
    arrays = _draw(spec, rng, (31,), options)
    formula_options = [options[o.name] for o in spec.formula_options]
    with np.errstate(all="ignore"):
        loss, d1, d2 = spec.formula(np, *arrays, order=2, **{o.name: options[o.name] for o in spec.formula_options})
    d1, d2 = _tuple(d1), _tuple(d2)
    expected = np.stack([np.broadcast_to(a, loss.shape) for a in (loss, *d1, *d2)])
    got = np.array([spec.element(*(float(a[i]) for a in arrays), *formula_options) for i in range(loss.size)]).T
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend not installed")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@pytest.mark.parametrize("shape", [(0,), (1,), (4, 7, 3), (70001,)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_fused_matches_reference(spec, shape, dtype, rng):
    options = _options(spec, "examples")
    arrays = [a.astype(dtype) for a in _draw(spec, rng, shape, options)]
    if len(shape) == 3:  # non-contiguous views
        arrays = [np.asfortranarray(a) for a in arrays]
    function = getattr(lossk, spec.name)
    for reduction in ("mean", "sum", "none"):
        loss_shape = shape[:-1] if spec.row_mean else shape
        upstream = rng.normal(size=loss_shape).astype(dtype) if reduction == "none" else 0.5
        expected = function.value_and_grad(*arrays, reduction=reduction, grad_output=upstream, backend="array_api", **options)
        got = function.value_and_grad(*arrays, reduction=reduction, grad_output=upstream, backend="numba", **options)
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got[0], expected[0], rtol=rtol, atol=rtol)
        assert got[0].dtype == expected[0].dtype == dtype
        for g, e in zip(_tuple(got[1]), _tuple(expected[1])):
            assert g.dtype == dtype and g.shape == shape
            np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol)
        # the Hessian streams, written by the same kernel pass as the loss and the gradients: float32 with an
        # upstream array, float64 with a scalar scale (each a kernel specialisation to compile: not all four)
        if (reduction == "none") != (dtype == np.float32):
            continue
        call = {"reduction": reduction, "grad_output": upstream, **options}
        expected = function.value_grad_hessian(*arrays, backend="array_api", **call)
        got = function.value_grad_hessian(*arrays, backend="numba", **call)
        np.testing.assert_allclose(got[0], expected[0], rtol=rtol, atol=rtol)
        for g, e in zip((*_tuple(got[1]), *_tuple(got[2])), (*_tuple(expected[1]), *_tuple(expected[2]))):
            assert g.dtype == dtype and g.shape == shape
            np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("var_shape", [(4,), (4, 1), (1, 3), (4, 3), None], ids=str)
def test_gaussian_var_shapes_and_float_var_as_torch(var_shape, backend, rng):
    """torch accepts var of input's shape, input.shape[:-1], or one axis of size 1; its gradient is summed back."""
    torch = pytest.importorskip("torch")
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    var = 0.7 if var_shape is None else rng.uniform(0.1, 2.0, var_shape)
    tx = torch.tensor(x, requires_grad=True)
    tv = var if var_shape is None else torch.tensor(var, requires_grad=True)
    loss = torch.nn.functional.gaussian_nll_loss(tx, torch.tensor(y), tv, full=True)
    loss.backward()
    value, (grad_input, grad_var) = lossk.gaussian_nll_loss.value_and_grad(x, y, var, full=True, backend=backend)
    np.testing.assert_allclose(value, loss.item(), rtol=1e-12)
    np.testing.assert_allclose(grad_input, tx.grad.numpy(), rtol=1e-12, atol=1e-15)
    if var_shape is None:
        assert grad_var is None
    else:
        assert grad_var.shape == var_shape
        np.testing.assert_allclose(grad_var, tv.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("var_shape", [(1, 1), (3,), (2, 3)], ids=str)
def test_gaussian_rejects_var_shapes_torch_rejects(var_shape):
    with pytest.raises(ValueError, match="var of shape .* incorrect size"):
        lossk.gaussian_nll_loss(np.zeros((4, 3)), np.zeros((4, 3)), np.ones(var_shape))


def test_gaussian_clamp_passes_the_gradient_and_negative_var_raises():
    torch = pytest.importorskip("torch")
    var = np.array([0.0, 1e-9, 0.5])
    tv = torch.tensor(var, requires_grad=True)
    torch.nn.functional.gaussian_nll_loss(torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                                          tv).backward()
    for backend in BACKENDS:
        _, grad_var = lossk.gaussian_nll_loss.grad(np.ones(3), np.zeros(3), var, backend=backend)
        np.testing.assert_allclose(grad_var, tv.grad.numpy(), rtol=1e-12)
    for var in (np.array([1.0, -0.1]), -1.0, np.array([np.nan, -0.1]), np.array([-0.1, np.nan])):
        with pytest.raises(ValueError, match="var has negative entry"):
            torch.nn.functional.gaussian_nll_loss(torch.zeros(2), torch.zeros(2), torch.as_tensor(var))
        with pytest.raises(ValueError, match="var has negative entry"):
            lossk.gaussian_nll_loss(np.zeros(2), np.zeros(2), var)
    assert np.isnan(lossk.gaussian_nll_loss(np.zeros(2), np.zeros(2), np.array([np.nan, 0.1])))


BROADCAST_CASES = [
    # loss, the shape of each input (PyTorch 2.13 accepts them all; the loss has the shape they broadcast to)
    ("margin_ranking_loss", ((4, 1), (4, 3), (4, 3))),  # input1 smaller than input2
    ("margin_ranking_loss", ((2, 1, 3), (1, 4, 3), (2, 4, 1))),  # each broadcast along a different axis
    ("margin_ranking_loss", ((1,), (5,), (1,))),
    ("margin_ranking_loss", ((3, 4), (1, 4), (3, 1))),
    ("gaussian_nll_loss", ((3,), (4, 3), (3,))),  # input broadcast by target, var shaped like input
    ("gaussian_nll_loss", ((4, 1), (4, 3), (4,))),  # var one per row of input's, input broadcast by target
    ("gaussian_nll_loss", ((1, 3), (4, 3), (1, 1))),
    ("gaussian_nll_loss", ((4, 3), (4, 3), (4, 1))),
    ("gaussian_nll_loss", ((2, 4, 3), (2, 4, 3), (2, 1, 3))),  # var's one axis of size 1 not the last
    ("multilabel_soft_margin_loss", ((1, 3), (4, 3))),  # input broadcast along the rows
    ("multilabel_soft_margin_loss", ((4, 3), (3,))),  # one target row for every row
    ("multilabel_soft_margin_loss", ((4, 3), (4, 1))),  # one label per row for every class
]


def _broadcast_arrays(spec, shapes, rng):
    """Inputs of the given shapes from the spec's domain (drawn at the shape they broadcast to, sliced)."""
    from lossk._multi_input import broadcast_shapes

    expanded, full = broadcast_shapes(spec, dict(zip(spec.inputs, shapes)))
    drawn = _draw(spec, rng, full, _options(spec, "examples"), differentiable=True)
    own = [(1,) * (len(full) - len(expanded[n])) + expanded[n] for n in spec.inputs]
    return [np.ascontiguousarray(a[tuple(slice(0, n) for n in o)].reshape(s))
            for a, o, s in zip(drawn, own, shapes)], full


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "shapes"), BROADCAST_CASES, ids=[f"{n}-{s}" for n, s in BROADCAST_CASES])
def test_broadcast_inputs_match_torch_autograd(name, shapes, backend, rng):
    """Every input may broadcast against the others as PyTorch allows, the first included: the unreduced loss
    has the shape they broadcast to, each gradient (and Hessian diagonal) its argument's own shape, summed over
    the axes it was broadcast along: against PyTorch float64 autograd for every reduction and a random upstream
    gradient (the Hessians against the reference's on the same inputs expanded to the full shape, summed)."""
    torch = pytest.importorskip("torch")
    spec = getattr(multi_input, name.upper())
    arrays, full = _broadcast_arrays(spec, shapes, rng)
    options = _options(spec, "examples")
    if spec.weighted:
        options["weight"] = rng.uniform(0.5, 2.0, full[-1])
    function = getattr(lossk, name)
    for reduction in ("mean", "sum", "none"):
        tensors = [torch.tensor(a, requires_grad=n in spec.differentiable) for n, a in zip(spec.inputs, arrays)]
        torch_options = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
        expected = getattr(torch.nn.functional, spec.torch_function)(*tensors, reduction=reduction, **torch_options)
        upstream = rng.uniform(0.5, 2.0, tuple(expected.shape)) if reduction == "none" else 1.7
        expected_grads = torch.autograd.grad(expected, [t for t in tensors if t.requires_grad],
                                             torch.as_tensor(upstream, dtype=torch.float64))
        call = {"reduction": reduction, "grad_output": upstream, "backend": backend, **options}
        loss, grads, hessians = function.value_grad_hessian(*arrays, **call)
        assert np.shape(loss) == tuple(expected.shape)
        np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-12, atol=1e-14)
        for k, (got, want) in enumerate(zip(_tuple(grads), expected_grads)):
            argument = arrays[spec.inputs.index(spec.differentiable[k])]
            assert got.shape == argument.shape, spec.differentiable[k]
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-14, err_msg=spec.differentiable[k])
        plain = function(*arrays, **{k: v for k, v in call.items() if k != "grad_output"})
        np.testing.assert_allclose(plain, loss, rtol=1e-14, atol=0)
        expanded = [np.ascontiguousarray(np.broadcast_to(a.reshape(own), full)) for a, own in zip(
            arrays, _own_shapes(spec, shapes))]
        _, _, full_hessians = function.value_grad_hessian(*expanded, **{**call, "backend": "array_api"})
        for k, (got, whole) in enumerate(zip(_tuple(hessians), _tuple(full_hessians))):
            argument = arrays[spec.inputs.index(spec.differentiable[k])]
            own = _own_shapes(spec, shapes)[spec.inputs.index(spec.differentiable[k])]
            axes = tuple(i for i, (e, f) in enumerate(zip((1,) * (len(full) - len(own)) + own, full)) if e != f)
            summed = np.sum(whole, axis=axes, keepdims=True).reshape(argument.shape)
            assert got.shape == argument.shape
            np.testing.assert_allclose(got, summed, rtol=1e-12, atol=1e-14)


def _own_shapes(spec, shapes):
    from lossk._multi_input import broadcast_shapes

    expanded, _ = broadcast_shapes(spec, dict(zip(spec.inputs, shapes)))
    return [expanded[n] for n in spec.inputs]


@pytest.mark.parametrize(("name", "shapes", "message"), [
    ("margin_ranking_loss", ((2, 3), (3,), (2, 3)), "input2 must have input1's number of dimensions"),
    ("margin_ranking_loss", ((3,), (2, 3), (2, 3)), "input2 must have input1's number of dimensions"),
    ("margin_ranking_loss", ((2, 3), (2, 3), (3,)), "target must have input1's number of dimensions"),
    ("margin_ranking_loss", ((4, 3), (5, 3), (4, 3)), r"input1 of shape \(4, 3\), input2 of shape \(5, 3\), "
                                                       r"target of shape \(4, 3\) do not broadcast together"),
    ("gaussian_nll_loss", ((4, 3), (5, 3), (4, 3)), "do not broadcast together"),
    ("gaussian_nll_loss", ((4, 3), (4, 3), (1, 1)), "var of shape .* incorrect size"),
])
def test_broadcast_shapes_torch_rejects_are_rejected(name, shapes, message):
    """Shapes PyTorch 2.13 refuses are refused, the error naming the arguments."""
    torch = pytest.importorskip("torch")
    arrays = [np.ones(s) for s in shapes]
    with pytest.raises((RuntimeError, ValueError)):
        getattr(torch.nn.functional, name)(*(torch.from_numpy(a) for a in arrays))
    for backend in BACKENDS:
        with pytest.raises(ValueError, match=message):
            getattr(lossk, name)(*arrays, backend=backend)


@pytest.mark.parametrize("shapes", [((4, 1), (4, 3)), ((3,), (4, 3)), ((4, 3), (2, 4, 3))], ids=str)
def test_multilabel_refuses_a_target_that_broadcasts_the_class_axis(shapes):
    """PyTorch 2.13 accepts these, but its result is then no per-row mean over the classes: it divides by
    ``input.shape[-1]`` (1 for an (N, 1) input: a sum over the broadcast classes) and sums over the axis
    ``input.ndim - 1`` of the broadcast shape (the rows, for a 1-d input against a 2-d target). lossk refuses
    them, saying which axes may broadcast."""
    x, y = (np.ones(s) for s in shapes)
    for backend in BACKENDS:
        with pytest.raises(ValueError, match="may broadcast along its other axes only"):
            lossk.multilabel_soft_margin_loss(x, y, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_and_inplace(backend, rng):
    x, y, var = rng.normal(size=(5, 6)), rng.normal(size=(5, 6)), rng.uniform(0.5, 2, (5, 6))
    expected = lossk.gaussian_nll_loss.grad(x, y, var, backend=backend)
    out_input, out_var = np.empty_like(x), np.empty_like(var)
    got = lossk.gaussian_nll_loss.grad(x, y, var, out=(out_input, out_var), backend=backend)
    assert got[0] is out_input and got[1] is out_var
    np.testing.assert_array_equal(out_input, expected[0])
    np.testing.assert_array_equal(out_var, expected[1])
    only_first = lossk.gaussian_nll_loss.grad(x, y, var, out=out_input, backend=backend)
    assert only_first[0] is out_input and only_first[1] is not out_var
    overwritten = x.copy()
    grads = lossk.gaussian_nll_loss.grad(overwritten, y, var, inplace=True, backend=backend)
    assert grads[0] is overwritten
    np.testing.assert_array_equal(overwritten, expected[0])
    np.testing.assert_array_equal(grads[1], expected[1])
    with pytest.raises(ValueError, match="tuple of 2"):
        lossk.gaussian_nll_loss.grad(x, y, var, out=(out_input,))
    with pytest.raises(ValueError, match="out for var"):
        lossk.gaussian_nll_loss.grad(x, y, 1.0, out=(None, out_var))
    with pytest.raises(ValueError, match="shape"):
        lossk.gaussian_nll_loss.grad(x, y, var, out=(None, np.empty(3)))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_signatures_docstrings_and_classes(spec, rng):
    function = getattr(lossk, spec.name)
    options = [o.name for o in spec.options]
    assert list(inspect.signature(function).parameters) == [*spec.inputs, *options, "backend"]
    for entry in (function.grad, function.value_and_grad):
        assert list(inspect.signature(entry).parameters) == [
            *spec.inputs, *options, "grad_output", "out", "inplace", "backend"
        ]
    assert list(inspect.signature(function.hessian).parameters) == [*spec.inputs, *options, "grad_output", "out",
                                                                    "backend"]
    assert list(inspect.signature(function.value_grad_hessian).parameters) == [
        *spec.inputs, *options, "grad_output", "out", "hess_out", "backend"
    ]
    for entry in (function.grad, function.hessian):
        assert ("tuple" in str(inspect.signature(entry).return_annotation)) == (len(spec.differentiable) > 1)
    for section in ("Parameters\n----------", "Returns\n-------", "Examples\n--------"):
        assert section in function.__doc__
    for name in spec.differentiable[1:]:
        assert f"grad_{name}" in function.__doc__
    with pytest.raises(TypeError, match="nonsense"):
        function(*(np.zeros(2) for _ in spec.inputs), nonsense=1)
    cls = getattr(lossk, spec.class_name)
    positional = [p.name for p in inspect.signature(cls).parameters.values()
                  if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == list(spec.class_positional)
    arrays = _draw(spec, rng, (6,), _options(spec))
    criterion = cls(reduction="sum")
    loss = criterion(*arrays)
    np.testing.assert_allclose(loss, function(*arrays, reduction="sum"))
    expected_grads = _tuple(function.grad(*arrays, reduction="sum", grad_output=2.0))
    for got, expected in zip(_tuple(criterion.backward(2.0)), expected_grads):
        np.testing.assert_allclose(got, expected)


def test_generated_kernels_are_committed():
    for path, text in generate.expected_files().items():
        if path.stem in {spec.name for spec in SPECS}:
            assert path.read_text(encoding="utf-8") == text, f"stale: {path} (python -m lossk._losses.generate)"


def test_doctests():
    import doctest

    for spec in SPECS:
        test = doctest.DocTestParser().get_doctest(getattr(lossk, spec.name).__doc__, {}, spec.name, None, 0)
        assert test.examples and doctest.DocTestRunner().run(test).failed == 0, spec.name


@pytest.mark.parametrize("spec", [s for s in SPECS if s.domain.extremes], ids=lambda s: s.name)
@pytest.mark.parametrize("backend", BACKENDS)
def test_extreme_inputs_give_finite_losses_and_gradients(spec, backend, rng):
    """The domain's extremes (saturated logits) mixed into the first input: loss and gradients stay finite."""
    arrays = _draw(spec, rng, (4, 6), _options(spec))
    arrays[0][:, :len(spec.domain.extremes)] = spec.domain.extremes
    for dtype in (np.float32, np.float64):
        loss, grads = getattr(lossk, spec.name).value_and_grad(
            *(a.astype(dtype) for a in arrays), reduction="none", backend=backend
        )
        assert np.isfinite(loss).all()
        assert all(np.isfinite(g).all() for g in _tuple(grads))


# ---- Hessian diagonals ------------------------------------------------------------------------------------

HESSIAN_CASES = [
    # spec, shapes of its inputs (broadcast to the first's), reduction
    (multi_input.GAUSSIAN_NLL_LOSS, ((4, 3), (4, 3), (4, 1)), "mean"),
    (multi_input.GAUSSIAN_NLL_LOSS, ((5, 3), (5, 3), (5, 3)), "none"),
    (multi_input.MARGIN_RANKING_LOSS, ((4, 3), (1, 3), (4, 3)), "sum"),
    (multi_input.MULTILABEL_SOFT_MARGIN_LOSS, ((4, 5), (4, 5)), "none"),
    (multi_input.MULTILABEL_SOFT_MARGIN_LOSS, ((4, 5), (4, 5)), "sum"),
]
HESSIAN_IDS = [f"{spec.name}-{reduction}" for spec, _, reduction in HESSIAN_CASES]


def _hessian_arguments(spec, shapes, reduction, rng):
    """Inputs from the differentiable domain at the given shapes, the examples' options (a class weight where
    the loss has one) and an upstream gradient."""
    options = _options(spec, "examples")
    full = _draw(spec, rng, shapes[0], options, differentiable=True)
    arrays = [np.ascontiguousarray(a[tuple(slice(0, n) for n in shape)]) for a, shape in zip(full, shapes)]
    if spec.weighted:
        options["weight"] = rng.uniform(0.5, 2.0, shapes[0][-1])
    loss_shape = shapes[0][:-1] if spec.row_mean else shapes[0]
    upstream = rng.uniform(0.5, 2.0, loss_shape) if reduction == "none" else 1.7
    return arrays, {"reduction": reduction, "grad_output": upstream, **options}


@pytest.mark.parametrize(("spec", "shapes", "reduction"), HESSIAN_CASES, ids=HESSIAN_IDS)
def test_hessian_matches_central_differences_of_the_gradient(spec, shapes, reduction, rng):
    """``.hessian`` against (grad(a + h) - grad(a - h)) / 2h of the public gradient, float64, for each
    differentiable argument (broadcast ones included), on the reference (the fused kernels are checked against
    it in ``test_fused_matches_reference``). Every element's gradient depends on that element's entries only,
    so all entries of one argument are stepped at once."""
    backend = "array_api"
    arrays, call = _hessian_arguments(spec, shapes, reduction, rng)
    function = getattr(lossk, spec.name)
    hessians = _tuple(function.hessian(*arrays, backend=backend, **call))
    assert len(hessians) == len(spec.differentiable)
    step = 1e-6
    for k, name in enumerate(spec.differentiable):
        index = spec.inputs.index(name)
        plus, minus = list(arrays), list(arrays)
        plus[index], minus[index] = arrays[index] + step, arrays[index] - step
        numeric = (_tuple(function.grad(*plus, backend=backend, **call))[k]
                   - _tuple(function.grad(*minus, backend=backend, **call))[k]) / (2 * step)
        assert hessians[k].shape == arrays[index].shape
        np.testing.assert_allclose(hessians[k], numeric, rtol=1e-6, atol=1e-7, err_msg=name)
    if spec is multi_input.MARGIN_RANKING_LOSS:
        assert not any(np.any(h) for h in hessians), "piecewise linear: exactly 0"


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # inside torch.func
@pytest.mark.parametrize(("spec", "shapes", "reduction"), HESSIAN_CASES, ids=HESSIAN_IDS)
def test_hessian_matches_torch_func_hessian(spec, shapes, reduction, rng):
    """The diagonal of ``torch.func.hessian`` of PyTorch's own function, for each differentiable argument."""
    torch = pytest.importorskip("torch")
    arrays, call = _hessian_arguments(spec, shapes, reduction, rng)
    hessians = _tuple(getattr(lossk, spec.name).hessian(*arrays, backend="array_api", **call))
    options = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in call.items()}
    factor = torch.as_tensor(options.pop("grad_output"), dtype=torch.float64)
    tensors = [torch.from_numpy(a) for a in arrays]
    function = getattr(torch.nn.functional, spec.torch_function)
    for k, name in enumerate(spec.differentiable):
        index = spec.inputs.index(name)

        def scalar(argument):
            return (factor * function(*tensors[:index], argument, *tensors[index + 1:], **options)).sum()

        full = torch.func.hessian(scalar)(tensors[index])
        n = arrays[index].size
        diagonal = full.reshape(n, n).diagonal().reshape(arrays[index].shape).numpy()
        np.testing.assert_allclose(hessians[k], diagonal, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hessian_out_and_hess_out(backend, rng):
    """``.hessian(out=)`` and ``.value_grad_hessian(out=, hess_out=)``: arrays or tuples, filled in place
    (contiguous destinations by the kernel itself), errors naming the argument; a float var has none."""
    x, y, var = rng.normal(size=(5, 6)), rng.normal(size=(5, 6)), rng.uniform(0.5, 2, (5, 6))
    function = lossk.gaussian_nll_loss
    loss, grads, hessians = function.value_grad_hessian(x, y, var, reduction="sum", backend=backend)
    np.testing.assert_array_equal(loss, function(x, y, var, reduction="sum", backend=backend))
    for got, expected in zip(grads, function.grad(x, y, var, reduction="sum", backend=backend)):
        np.testing.assert_allclose(got, expected, rtol=1e-13)
    out = (np.empty_like(x), np.empty((6, 5)).T)  # the second strided: copied into
    hess_out = (np.empty_like(x), np.empty_like(var))
    result = function.value_grad_hessian(x, y, var, reduction="sum", out=out, hess_out=hess_out, backend=backend)
    assert all(a is b for a, b in zip((*result[1], *result[2]), (*out, *hess_out)))
    for got, expected in zip((*out, *hess_out), (*grads, *hessians)):
        np.testing.assert_array_equal(got, expected)
    only_input = np.empty_like(x)
    got = function.hessian(x, y, var, reduction="sum", out=only_input, backend=backend)
    assert got[0] is only_input
    np.testing.assert_array_equal(got[1], hessians[1])
    hess_input, hess_var = function.hessian(x, y, 0.7, backend=backend)
    assert hess_var is None and hess_input.shape == x.shape
    with pytest.raises(ValueError, match="different arrays"):
        function.value_grad_hessian(x, y, var, out=only_input, hess_out=only_input)
    with pytest.raises(ValueError, match="hess_out must be an array or a tuple of 2"):
        function.value_grad_hessian(x, y, var, hess_out=(only_input,))
    with pytest.raises(ValueError, match="out for var"):
        function.hessian(x, y, 1.0, out=(None, np.empty_like(var)))
    with pytest.raises(TypeError, match="hess_out for input"):
        function.value_grad_hessian(x, y, var, hess_out=np.empty(x.shape, np.float32))
