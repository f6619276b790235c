"""``lossk.torch``: PyTorch's signatures, autograd against ``torch.nn.functional``, gradcheck, torch.compile,
in-place mode and a training run that must end with PyTorch's own weights.

The configurations are those of ``tests/loss_cases.py`` (every loss, odd and empty shapes, weights, ignored
rows, probability targets, saturated logits); every loss lossk exports must have one. The multi-input losses
(``lossk._losses.multi_input``) are drawn from their specs' domains instead.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import lossk  # noqa: E402
import lossk.torch as lt  # noqa: E402
from lossk import _autodiff, _dispatch  # noqa: E402
from lossk._losses.multi_input import LOSSES as MULTI_INPUT  # noqa: E402
from lossk._multi_input import MultiInputLoss, MultiInputLossFunction  # noqa: E402
from lossk._spec import ARRAY_KIND  # noqa: E402

from loss_cases import CASES, LARGE, draw, reductions, strided  # noqa: E402

try:
    from catalogue_oracles import ORACLES, stable_soft_margin_loss  # torch-written oracles
except ImportError:  # pragma: no cover - before the catalogue
    ORACLES, stable_soft_margin_loss = {}, None

NUMBA = _dispatch.is_available("numba")
BACKENDS = (pytest.param("numba", marks=pytest.mark.skipif(not NUMBA, reason="numba is not installed")), "array_api")
# The backend of the tests that run once: the fused kernels where Numba is installed, else the reference.
FUSED = "numba" if NUMBA else "array_api"
TORCH_CASES = [case for case in CASES if np.prod(case.shape) <= LARGE]


@pytest.fixture(autouse=True)
def _quiet_reference() -> None:
    # lossk's reference on torch tensors (the target gradients, backend="array_api") may warn about the
    # namespace it runs in; that is lossk's business (issue 9), not what these tests check.
    warnings.filterwarnings("ignore", module="lossk")
    warnings.filterwarnings("ignore", module="array_api_compat")


def _tensors(case, rng, *, differentiable=False, dtype=torch.float64):
    input, target, arrays = draw(case, rng, differentiable=differentiable)
    as_tensor = lambda a: torch.from_numpy(a).to(dtype) if np.issubdtype(a.dtype, np.floating) else torch.from_numpy(a)  # noqa: E731
    return as_tensor(input), as_tensor(target), {k: as_tensor(v) for k, v in arrays.items()}


def _upstream(loss, rng):
    """A random upstream gradient shaped like the loss."""
    return torch.from_numpy(rng.uniform(0.5, 1.5, tuple(loss.shape))).to(loss.dtype)


def test_every_lossk_loss_is_wrapped_with_pytorchs_signature():
    for name in _autodiff.loss_functions():
        assert name in lt.__all__
        namesake = getattr(F, name, None)
        if namesake is None:
            continue
        ours = inspect.signature(getattr(lt, name)).parameters
        theirs = inspect.signature(namesake).parameters
        assert list(ours)[: len(theirs)] == list(theirs), name
        for p in theirs.values():
            assert ours[p.name].default == p.default and ours[p.name].kind == p.kind, (name, p.name)
    classes = {n for n in lossk.__all__
               if isinstance(c := getattr(lossk, n), type) and issubclass(c, (lossk.Loss, MultiInputLoss))}
    assert classes - {"Loss"} <= set(lt.__all__)
    assert {spec.class_name for spec in MULTI_INPUT} <= classes


def test_every_loss_has_a_case():
    multi_input = {n for n, f in _autodiff.loss_functions().items() if isinstance(f, MultiInputLossFunction)}
    assert multi_input == {spec.name for spec in MULTI_INPUT}  # their tests below run over the specs
    assert set(_autodiff.loss_functions()) - multi_input <= {case.loss for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_unreduced_shape_rule(case, seed):
    """The fake implementations' shape rule agrees with lossk for every configuration."""
    input, target, arrays = draw(case, np.random.default_rng(seed))
    loss = getattr(lossk, case.loss)(input, target, reduction="none", **case.options, **arrays)
    assert tuple(loss.shape) == _autodiff.unreduced_shape(case.loss, input.shape)


@pytest.mark.parametrize("name", sorted(_autodiff.LABEL_TARGETS))
def test_a_label_target_that_requires_grad_is_refused(name):
    x, t = torch.zeros(3, requires_grad=True), torch.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match=f"lossk.torch.{name}: target holds labels"):
        getattr(lt, name)(x, t)
    getattr(lt, name)(x, t.detach()).sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c.id)
# F.kl_div(reduction="mean") warns that 'mean' is not 'batchmean' (lossk.torch computes what it computes)
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")
def test_value_and_gradients_match_torch(case, backend, seed):
    rng = np.random.default_rng(seed)
    input, target, arrays = _tensors(case, rng)
    floating_target = target.is_floating_point()
    differentiable_target = floating_target and case.loss not in _autodiff.LABEL_TARGETS
    for reduction in reductions(case.loss):
        leaves = [input.clone().requires_grad_(), target.clone().requires_grad_(differentiable_target)]
        ours = getattr(lt, case.loss)(*leaves, reduction=reduction, backend=backend, **case.options, **arrays)
        mirror = [leaf.detach().clone().requires_grad_(leaf.requires_grad) for leaf in leaves]
        torch_target = mirror[1] if floating_target else mirror[1].long()  # PyTorch takes int64 indices only
        oracle = getattr(F, case.loss, None) or ORACLES[case.loss]
        if case.loss == "soft_margin_loss" and case.saturated:
            oracle = stable_soft_margin_loss  # F.soft_margin_loss's log1p(exp(-y x)) overflows beyond 709
        theirs = oracle(mirror[0], torch_target, reduction=reduction, **case.options, **arrays)
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12, equal_nan=True)
        upstream = _upstream(theirs, rng)
        wanted = [leaf for leaf in leaves if leaf.requires_grad]
        grads = torch.autograd.grad(ours, wanted, upstream, allow_unused=False)
        expected = torch.autograd.grad(theirs, [m for m in mirror if m.requires_grad], upstream)
        if case.loss == "binary_cross_entropy" and len(grads) == 2:
            # d/d target at a probability of exactly 0 or 1: PyTorch differentiates the unclamped logs
            # (inf), lossk the loss it computes (logs clamped at -100)
            clamped = (input == 0) | (input == 1)
            grads, expected = (grads[0], grads[1][~clamped]), (expected[0], expected[1][~clamped])
        if case.loss == "kl_div" and len(grads) == 2 and not case.options["log_target"]:
            # d/d target of y log y at y = 0 (-inf) is no number for either library
            grads, expected = (grads[0], grads[1][target != 0]), (expected[0], expected[1][target != 0])
        if case.loss == "poisson_nll_loss" and case.options.get("full") and len(grads) == 2:
            # d/d target at y = 0: PyTorch differentiates Stirling's term before masking it (0 * log 0 = NaN),
            # lossk the loss it computes (no term for targets <= 1)
            grads, expected = (grads[0], grads[1][target != 0]), (expected[0], expected[1][target != 0])
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("case", [c for c in TORCH_CASES if np.prod(c.shape) and not c.saturated], ids=lambda c: c.id)
def test_gradcheck(case, seed):
    rng = np.random.default_rng(seed)
    input, target, arrays = _tensors(case, rng, differentiable=True)
    loss = getattr(lt, case.loss)
    # kl_div's probability target lives on [0, inf): finite differences around small values leave it
    target_differentiable = (
        target.is_floating_point() and case.options.get("log_target", True) and case.loss not in _autodiff.LABEL_TARGETS
        # PyTorch's Stirling term starts at target 1 with a jump: no derivative there for integer count targets
        and not (case.loss == "poisson_nll_loss" and case.options.get("full"))
    )
    inputs = (input.requires_grad_(), target.requires_grad_(target_differentiable))
    for reduction in reductions(case.loss):
        if reduction == "mean" and case.target == "all_ignored":
            continue  # a mean over no rows is NaN, as in PyTorch (test_value_and_gradients_match_torch)
        assert torch.autograd.gradcheck(
            lambda x, t: loss(x, t, reduction=reduction, backend=FUSED, **case.options, **arrays), inputs
        )


@pytest.mark.parametrize(("name", "option"), [("mse_loss", "weight"), ("binary_cross_entropy_with_logits", "pos_weight"),
                                              ("cross_entropy", "weight")])
def test_gradcheck_of_a_weight(name, option, seed):
    rng = np.random.default_rng(seed)
    shape = (5, 4)
    input = torch.from_numpy(rng.normal(0, 2, shape)).requires_grad_()
    if name == "cross_entropy":
        target = torch.from_numpy(rng.integers(0, 4, 5))
    else:
        target = torch.from_numpy(rng.uniform(0, 1, shape))
    weight = torch.from_numpy(rng.uniform(0.5, 2, shape if name == "mse_loss" else (4,))).requires_grad_()
    loss = getattr(lt, name)
    assert torch.autograd.gradcheck(lambda x, w: loss(x, target, **{option: w}), (input, weight))


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_and_float32(backend, seed):
    rng = np.random.default_rng(seed)
    x = strided(rng.normal(0, 2, (37, 41)).astype(np.float32))
    y = strided(rng.normal(0, 2, (37, 41)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 41, 37))
    for name, target in (("huber_loss", torch.from_numpy(y)), ("cross_entropy", labels)):
        leaf = torch.from_numpy(x).requires_grad_()
        assert not leaf.is_contiguous()
        getattr(lt, name)(leaf, target, backend=backend).backward()
        mirror = torch.from_numpy(x).requires_grad_()
        getattr(F, name)(mirror, target).backward()
        torch.testing.assert_close(leaf.grad, mirror.grad, rtol=1e-5, atol=1e-7)


def test_bfloat16(seed):
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy(rng.normal(0, 2, (9, 11))).to(torch.bfloat16)
    labels = torch.from_numpy(rng.integers(0, 11, 9))
    ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    lt.cross_entropy(ours, labels, backend=FUSED).backward()
    F.cross_entropy(theirs, labels).backward()
    assert ours.grad.dtype == torch.bfloat16
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=2e-2, atol=2e-3)


def test_module_classes_match_torch(seed):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(0, 2, (6, 5)))
    labels = torch.from_numpy(rng.integers(0, 5, 6))
    y = torch.from_numpy(rng.uniform(0, 1, (6, 5)))
    weight = torch.from_numpy(rng.uniform(0.5, 2, 5))
    for ours, theirs, target in (
        (lt.CrossEntropyLoss(weight, label_smoothing=0.1, reduction="sum"),
         torch.nn.CrossEntropyLoss(weight, label_smoothing=0.1, reduction="sum"), labels),
        (lt.HuberLoss("none", 0.5), torch.nn.HuberLoss("none", 0.5), y),
        (lt.BCEWithLogitsLoss(pos_weight=weight), torch.nn.BCEWithLogitsLoss(pos_weight=weight), y),
        (lt.KLDivLoss(reduction="batchmean"), torch.nn.KLDivLoss(reduction="batchmean"), y),
    ):
        assert isinstance(ours, type(theirs))
        torch.testing.assert_close(ours(x, target), theirs(x, target))
    assert lt.CrossEntropyLoss(z_loss=1e-4).lossk_options["z_loss"] == 1e-4


def test_module_classes_of_losses_pytorch_lacks(seed):
    rng = np.random.default_rng(seed)
    # targets in (0, 1): inside every catalogue loss's domain (soft labels, positive Gamma/Poisson targets)
    x, y = torch.from_numpy(rng.normal(0, 1, (4, 3))), torch.from_numpy(rng.uniform(0.1, 0.9, (4, 3)))
    lacking = [n for n in lt.__all__ if isinstance(getattr(lt, n), type) and not hasattr(torch.nn, n)]
    for class_name in lacking:
        module = getattr(lt, class_name)("sum")
        assert isinstance(module, torch.nn.Module)
        name = getattr(lossk, class_name).function.__name__
        torch.testing.assert_close(module(x, y), getattr(lt, name)(x, y, reduction="sum"))


def test_linear_cross_entropy(seed):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(0, 1, (7, 4))).requires_grad_()
    w = torch.from_numpy(rng.normal(0, 1, (9, 4))).requires_grad_()
    b = torch.from_numpy(rng.normal(0, 1, 9)).requires_grad_()
    labels = torch.from_numpy(rng.integers(0, 9, 7))
    for reduction in ("mean", "sum", "none"):
        options = {"linear_bias": b, "reduction": reduction, "label_smoothing": 0.1}
        assert torch.autograd.gradcheck(
            lambda x, w, b: lt.linear_cross_entropy(x, w, labels, **{**options, "linear_bias": b}, chunk_size=3),
            (x, w, b),
        )
        torch.testing.assert_close(
            lt.linear_cross_entropy(x, w, labels, **options), F.linear_cross_entropy(x, w, labels, **options)
        )


def test_double_backward_raises():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(lt.mse_loss(x, torch.zeros_like(x)), x)  # first order works
    assert grad.shape == x.shape
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(lt.mse_loss(x, torch.zeros_like(x)), x, create_graph=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_backward_through_a_retained_graph(backend, seed):
    """The backward pass hands its saved gradient on (upstream 1) or scales it in place only on the graph's
    last pass: passes with retain_graph=True, upstream gradients of 1, of another scalar and per row, a
    gradient already accumulated in .grad, and a further pass after the graph is freed (PyTorch's error)."""
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy(rng.normal(0, 2, (9, 7)))
    labels = torch.from_numpy(rng.integers(0, 7, 9))
    upstreams = {"mean": (None, torch.tensor(2.5, dtype=torch.float64)), "none": (_upstream(torch.empty(9), rng),)}
    for reduction, gradients in upstreams.items():
        for upstream in gradients:
            expected_input = logits.clone().requires_grad_()
            expected = F.cross_entropy(expected_input, labels, reduction=reduction, label_smoothing=0.1)
            (single,) = torch.autograd.grad(expected, expected_input, upstream)
            x = logits.clone().requires_grad_()
            loss = lt.cross_entropy(x, labels, reduction=reduction, label_smoothing=0.1, backend=backend)
            for passes in range(1, 4):
                loss.backward(upstream, retain_graph=True)
                torch.testing.assert_close(x.grad, passes * single, rtol=1e-12, atol=1e-14)
            loss.backward(upstream)  # the last pass may take the saved buffer
            torch.testing.assert_close(x.grad, 4 * single, rtol=1e-12, atol=1e-14)
            with pytest.raises(RuntimeError, match="second time"):
                loss.backward(upstream)
            # a non-leaf input (the logits of a model): the gradient flows on through the graph
            weight = torch.ones(7, dtype=torch.float64, requires_grad=True)
            loss = lt.cross_entropy(logits * weight, labels, reduction=reduction, label_smoothing=0.1, backend=backend)
            loss.backward(upstream, retain_graph=True)
            loss.backward(upstream)
            torch.testing.assert_close(weight.grad, 2 * (single * logits).sum(0), rtol=1e-10, atol=1e-12)


def test_opcheck():
    x = torch.randn(6, 5, dtype=torch.float64)
    labels = torch.randint(0, 5, (6,))
    for reduction in ("mean", "none"):
        args = (x.clone().requires_grad_(), labels, None, -100, reduction, 0.1, 0.0, None, "auto")
        torch.library.opcheck(torch.ops.lossk.cross_entropy.default, args)


def test_inplace_overwrites_the_logits_with_their_gradient(seed):
    rng = np.random.default_rng(seed)
    hidden = torch.from_numpy(rng.normal(0, 1, (8, 4))).requires_grad_()
    head = torch.from_numpy(rng.normal(0, 1, (6, 4))).requires_grad_()
    labels = torch.from_numpy(rng.integers(0, 6, 8))
    logits = hidden @ head.T
    loss = lt.cross_entropy(logits, labels, inplace=True, label_smoothing=0.1)
    expected_grad = lossk.cross_entropy.grad(
        (hidden @ head.T).detach().numpy(), labels.numpy(), label_smoothing=0.1
    )
    np.testing.assert_allclose(logits.detach().numpy(), expected_grad, rtol=1e-12)
    (loss * 2).backward()
    reference_hidden, reference_head = hidden.detach().clone().requires_grad_(), head.detach().clone().requires_grad_()
    (2 * F.cross_entropy(reference_hidden @ reference_head.T, labels, label_smoothing=0.1)).backward()
    torch.testing.assert_close(hidden.grad, reference_hidden.grad)
    torch.testing.assert_close(head.grad, reference_head.grad)
    with pytest.raises(RuntimeError, match="leaf"):
        lt.cross_entropy(torch.randn(3, 6, requires_grad=True), labels[:3], inplace=True)
    saved_by_exp = torch.randn(3, 6, requires_grad=True).exp()  # exp saves its output for its backward
    loss = lt.cross_entropy(saved_by_exp, labels[:3], inplace=True)
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()


def _train(loss_function, dtype, steps=100):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)).to(dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(64, 12, generator=generator, dtype=dtype)
        labels = torch.randint(0, 10, (64,), generator=generator)
        optimizer.zero_grad()
        loss_function(model(x), labels, label_smoothing=0.05).backward()
        optimizer.step()
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_training_ends_with_pytorchs_weights(dtype, rtol):
    ours = _train(lambda *a, **k: lt.cross_entropy(*a, **k, backend=FUSED), dtype)
    theirs = _train(F.cross_entropy, dtype)
    initial = _train(F.cross_entropy, dtype, steps=0)
    assert any(not torch.equal(a, b) for a, b in zip(theirs, initial))  # training moved the weights
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * float(b.abs().max()))


# Inductor's first compile in a process (cold cache) calls the deprecated torch.jit.script_method itself
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_fullgraph():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
    x, labels, y = torch.randn(32, 8), torch.randint(0, 5, (32,)), torch.randn(32, 5)

    def step(x, labels, y):
        out = model(x)
        return lt.cross_entropy(out, labels, label_smoothing=0.1) + lt.huber_loss(out, y, delta=0.5, reduction="sum")

    compiled = torch.compile(step, fullgraph=True)
    loss = compiled(x, labels, y)
    loss.backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    eager = step(x, labels, y)
    eager.backward()
    torch.testing.assert_close(loss, eager)
    for a, p in zip(compiled_grads, model.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_unreduced_loss_under_dynamic_shapes():
    x, labels = torch.randn(6, 5, requires_grad=True), torch.randint(0, 5, (6,))
    weights = torch.arange(6.0)
    compiled = torch.compile(lambda x, t: (lt.cross_entropy(x, t, reduction="none") * weights).sum(),
                             fullgraph=True, dynamic=True, backend="aot_eager")
    compiled(x, labels).backward()
    expected = x.detach().clone().requires_grad_()
    (F.cross_entropy(expected, labels, reduction="none") * weights).sum().backward()
    torch.testing.assert_close(x.grad, expected.grad)


# --- the multi-input losses (gaussian_nll_loss, margin_ranking_loss, multilabel_soft_margin_loss) -----------


def _multi_input_tensors(spec, rng, shape, options, *, differentiable=False):
    """The spec's positional arrays drawn from its domain, and its tensor options (``weight``), float64."""
    drawn = spec.domain.draw(rng, shape, options, differentiable)
    arrays = [torch.tensor(drawn[n], dtype=torch.float64) for n in spec.inputs]
    tensors = {o.name: torch.from_numpy(o.draw(rng, shape)) for o in spec.keyword_options if o.kind == ARRAY_KIND}
    return arrays, tensors


def _example_options(spec):
    """Each scalar and flag option at its first example value (the defaults are F.*'s defaults)."""
    return {o.name: o.examples[0] for o in spec.keyword_options if o.examples}


def _call_with(function, spec, leaves, tensor_names, **options):
    n = len(spec.inputs)
    return function(*leaves[:n], **dict(zip(tensor_names, leaves[n:])), **options)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", MULTI_INPUT, ids=lambda s: s.name)
def test_multi_input_value_and_gradients_match_torch(spec, backend, seed):
    """Every floating argument requires grad (var across its clamp at eps, margin ranking's target, the
    class weight): lossk.torch's gradients of all of them against F.*'s autograd, random upstream gradient."""
    rng = np.random.default_rng(seed)
    for options in ({}, _example_options(spec)):
        arrays, tensors = _multi_input_tensors(spec, rng, (6, 5), options)
        for reduction in ("mean", "sum", "none"):
            leaves = [t.clone().requires_grad_() for t in (*arrays, *tensors.values())]
            mirror = [t.clone().requires_grad_() for t in (*arrays, *tensors.values())]
            ours = _call_with(getattr(lt, spec.name), spec, leaves, tensors, reduction=reduction, backend=backend,
                              **options)
            theirs = _call_with(getattr(F, spec.name), spec, mirror, tensors, reduction=reduction, **options)
            torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
            upstream = _upstream(theirs, rng)
            grads = torch.autograd.grad(ours, leaves, upstream)
            expected = torch.autograd.grad(theirs, mirror, upstream)
            for g, e in zip(grads, expected):
                torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("name", "shapes"), [
    ("gaussian_nll_loss", ((6, 5), (6, 5), (6,))),  # var: one value per row, as PyTorch's homoscedastic case
    ("gaussian_nll_loss", ((6, 5), (1, 5), (6, 1))),
    ("margin_ranking_loss", ((6, 5), (6, 1), (1, 5))),
    ("margin_ranking_loss", ((6, 1), (6, 5), (1, 5))),  # the first array broadcast too
    ("margin_ranking_loss", ((1, 5), (6, 1), (6, 5))),
    ("gaussian_nll_loss", ((5,), (6, 5), (5,))),
    ("gaussian_nll_loss", ((6, 1), (6, 5), (6,))),
    ("multilabel_soft_margin_loss", ((1, 5), (6, 5))),
    ("multilabel_soft_margin_loss", ((6, 5), (5,))),
])
def test_multi_input_broadcast_arguments(name, shapes, seed):
    """Arrays that broadcast together, as PyTorch allows (the first included), get their gradients summed back,
    for every reduction ('none': expanded before the op, so each element's upstream gradient scales its own
    term)."""
    rng = np.random.default_rng(seed)
    draws = {"gaussian_nll_loss": (lambda s: rng.normal(0, 2, s), lambda s: rng.normal(0, 2, s),
                                   lambda s: rng.uniform(0.1, 4, s)),
             "margin_ranking_loss": (lambda s: rng.normal(0, 2, s), lambda s: rng.normal(0, 2, s),
                                     lambda s: np.where(rng.random(s) < 0.5, -1.0, 1.0)),
             "multilabel_soft_margin_loss": (lambda s: rng.normal(0, 3, s), lambda s: rng.uniform(0, 1, s))}[name]
    arrays = [torch.from_numpy(draw(shape)) for draw, shape in zip(draws, shapes)]
    for reduction in ("mean", "sum", "none"):
        leaves = [a.clone().requires_grad_() for a in arrays]
        mirror = [a.clone().requires_grad_() for a in arrays]
        ours = getattr(lt, name)(*leaves, reduction=reduction, backend=FUSED)
        theirs = getattr(F, name)(*mirror, reduction=reduction)
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
        upstream = _upstream(theirs, rng)
        for g, e in zip(torch.autograd.grad(ours, leaves, upstream), torch.autograd.grad(theirs, mirror, upstream)):
            assert g.shape == e.shape
            torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12)


def test_gaussian_nll_loss_of_a_float_var(seed):
    rng = np.random.default_rng(seed)
    x, y = torch.from_numpy(rng.normal(0, 2, (4, 3))), torch.from_numpy(rng.normal(0, 2, (4, 3)))
    for reduction in ("mean", "none"):
        ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
        loss = lt.gaussian_nll_loss(ours, y, 0.7, reduction=reduction)
        expected = F.gaussian_nll_loss(theirs, y, 0.7, reduction=reduction)
        torch.testing.assert_close(loss, expected)
        loss.sum().backward()
        expected.sum().backward()
        torch.testing.assert_close(ours.grad, theirs.grad)
    with pytest.raises(ValueError, match="var has negative"):
        lt.gaussian_nll_loss(x, y, -1.0)


@pytest.mark.parametrize("spec", MULTI_INPUT, ids=lambda s: s.name)
def test_multi_input_gradcheck(spec, seed):
    rng = np.random.default_rng(seed)
    options = _example_options(spec)
    arrays, tensors = _multi_input_tensors(spec, rng, (3, 4), options, differentiable=True)
    inputs = tuple(t.requires_grad_() for t in (*arrays, *tensors.values()))
    loss = getattr(lt, spec.name)
    for reduction in ("mean", "sum", "none"):
        # fast mode: v^T J u for random u, v (every argument at once), a fraction of the full Jacobian's calls
        assert torch.autograd.gradcheck(
            lambda *leaves: _call_with(loss, spec, leaves, tensors, reduction=reduction, backend=FUSED, **options),
            inputs, fast_mode=True,
        )


def test_multi_input_opcheck(seed):
    rng = np.random.default_rng(seed)
    x, y = (torch.from_numpy(rng.normal(0, 2, (6, 5))).requires_grad_() for _ in range(2))
    var = torch.from_numpy(rng.uniform(0.1, 2, (6, 5))).requires_grad_()
    # the three-array op whose target's gradient is the input's negated (margin ranking's is by the reference)
    torch.library.opcheck(torch.ops.lossk.gaussian_nll_loss.default, (x, y, var, True, 1e-6, "none", "auto"))


def test_multi_input_module_classes_match_torch(seed):
    rng = np.random.default_rng(seed)
    x, y = torch.from_numpy(rng.normal(0, 2, (6, 5))), torch.from_numpy(rng.normal(0, 2, (6, 5)))
    var, weight = torch.from_numpy(rng.uniform(0.1, 2, (6,))), torch.from_numpy(rng.uniform(0.5, 2, 5))
    labels = torch.from_numpy((rng.random((6, 5)) < 0.5).astype(np.float64))
    signs = 2 * labels - 1
    for ours, theirs, arrays in (
        (lt.GaussianNLLLoss(full=True, eps=0.5, reduction="sum"),
         torch.nn.GaussianNLLLoss(full=True, eps=0.5, reduction="sum"), (x, y, var)),
        (lt.MarginRankingLoss(0.5, reduction="none"), torch.nn.MarginRankingLoss(0.5, reduction="none"),
         (x, y, signs)),
        (lt.MultiLabelSoftMarginLoss(weight), torch.nn.MultiLabelSoftMarginLoss(weight), (x, labels)),
    ):
        assert isinstance(ours, type(theirs))
        torch.testing.assert_close(ours(*arrays), theirs(*arrays))
    assert lt.MarginRankingLoss(backend="array_api").lossk_options["backend"] == "array_api"


def test_multi_input_inplace(seed):
    """inplace=True: input1's gradient overwrites it, input2's is kept as usual; a target that requires grad
    is refused (its gradient would need the overwritten input)."""
    rng = np.random.default_rng(seed)
    a, b = torch.from_numpy(rng.normal(0, 2, (5, 4))), torch.from_numpy(rng.normal(0, 2, (5, 4)))
    t = torch.from_numpy(np.where(rng.random((5, 4)) < 0.5, -1.0, 1.0))
    scale, second = torch.tensor(1.0, dtype=torch.float64, requires_grad=True), b.clone().requires_grad_()
    (3 * lt.margin_ranking_loss(a * scale, second, t, margin=0.5, inplace=True)).backward()
    expected_scale, expected_second = scale.detach().clone().requires_grad_(), b.clone().requires_grad_()
    (3 * F.margin_ranking_loss(a * expected_scale, expected_second, t, margin=0.5)).backward()
    torch.testing.assert_close(scale.grad, expected_scale.grad)
    torch.testing.assert_close(second.grad, expected_second.grad)
    with pytest.raises(ValueError, match="inplace=True overwrites input1"):
        lt.margin_ranking_loss(a * scale, b, t.clone().requires_grad_(), inplace=True)
    for reduction in ("mean", "none"):  # input1 of fewer elements than the loss cannot hold its gradient
        with pytest.raises(ValueError, match=r"needs the other arrays to broadcast to its shape \(5, 1\)"):
            lt.margin_ranking_loss(a[:, :1].clone(), b, t, inplace=True, reduction=reduction)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_multi_input_torch_compile_fullgraph():
    """A model predicting a mean and one variance per row, trained on gaussian_nll_loss(reduction='none')
    under torch.compile(fullgraph=True): the variance is expanded inside the graph."""
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 6)
    x, y, w = torch.randn(16, 8), torch.randn(16, 5), torch.rand(16, 5)

    def step(x, y, w):
        out = model(x)
        mean, var = out[:, :5], F.softplus(out[:, 5])
        return (lt.gaussian_nll_loss(mean, y, var, reduction="none") * w).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    loss = compiled(x, y, w)
    loss.backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    out = model(x)
    expected = (F.gaussian_nll_loss(out[:, :5], y, F.softplus(out[:, 5]), reduction="none") * w).sum()
    expected.backward()
    torch.testing.assert_close(loss, expected)
    for a, p in zip(compiled_grads, model.parameters()):
        torch.testing.assert_close(a, p.grad)
