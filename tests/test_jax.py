"""``lossk.jax``: custom_vjp losses under ``jit``, ``vmap`` and ``grad``, against ``jax.grad`` of plain
``jax.numpy`` formulations and against optax.

Every configuration of ``tests/loss_cases.py`` is checked against PyTorch's values through lossk's own
reference (the jax.numpy formulation of each loss is lossk's reference traced by JAX, an independent
implementation from the fused forward pass that runs here); optax is the outside oracle where it has the loss.
The multi-input losses are checked against ``jax.grad`` of plain ``jax.numpy`` formulations written here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

import lossk  # noqa: E402
import lossk.jax as lj  # noqa: E402
from lossk import _autodiff  # noqa: E402

from lossk._losses.multi_input import LOSSES as MULTI_INPUT  # noqa: E402
from lossk._multi_input import MultiInputLossFunction  # noqa: E402

from loss_cases import CASES, LARGE, draw, reductions  # noqa: E402

JAX_CASES = [c for c in CASES if np.prod(c.shape) <= LARGE and c.target != "all_ignored"]


@pytest.fixture(autouse=True)
def _quiet_reference() -> None:
    warnings.filterwarnings("ignore", module="lossk")
    warnings.filterwarnings("ignore", module="array_api_compat")


@pytest.fixture(params=[False, True], ids=["reference", "host_kernels"])
def path(request, monkeypatch):
    """Each forward path: lossk's reference traced by JAX, and the fused Numba kernels through a callback."""
    monkeypatch.setattr(lj, "HOST_KERNEL_MIN_SIZE", 0 if request.param else None)
    return request.param


def test_every_loss_is_wrapped():
    assert set(_autodiff.loss_functions()) <= set(lj.__all__)
    assert {spec.name for spec in MULTI_INPUT} <= set(lj.__all__)


@pytest.mark.parametrize("case", JAX_CASES, ids=lambda c: c.id)
def test_value_and_gradients_match_the_numpy_reference(case, path, seed):
    """float64 (x64 on): lossk.jax under jit(grad) equals lossk's NumPy value_and_grad, for the input and a
    floating target, with a random upstream gradient."""
    rng = np.random.default_rng(seed)
    input, target, arrays = draw(case, rng, differentiable=True)
    loss = getattr(lj, case.loss)
    with jax.enable_x64(True):
        for reduction in reductions(case.loss):
            expected_loss = getattr(lossk, case.loss)(input, target, reduction=reduction, backend="array_api",
                                                      **case.options, **arrays)
            upstream = rng.uniform(0.5, 1.5, np.shape(expected_loss))
            expected_grad = getattr(lossk, case.loss).grad(
                input, target, reduction=reduction, grad_output=upstream if reduction == "none" else float(upstream),
                backend="array_api", **case.options, **arrays)
            jax_arrays = {k: jnp.asarray(v) for k, v in arrays.items()}

            def weighted(x, t):
                return jnp.sum(loss(x, t, reduction=reduction, **case.options, **jax_arrays) * upstream)

            value = jax.jit(lambda x, t: loss(x, t, reduction=reduction, **case.options, **jax_arrays))(
                jnp.asarray(input), jnp.asarray(target))
            np.testing.assert_allclose(value, expected_loss, rtol=1e-12, atol=1e-14)
            floating = np.issubdtype(target.dtype, np.floating)
            argnums = (0, 1) if floating else 0
            grads = jax.jit(jax.grad(weighted, argnums=argnums))(jnp.asarray(input), jnp.asarray(target))
            d_input = grads[0] if floating else grads
            np.testing.assert_allclose(d_input, expected_grad, rtol=1e-10, atol=1e-14)
            if floating:  # the target's gradient against jax.grad of the reference traced by JAX
                plain = jax.jit(jax.grad(lambda x, t, a: jnp.sum(getattr(lossk, case.loss)(
                    x, t, reduction=reduction, backend="array_api", **case.options, **a
                ) * upstream), argnums=1))(jnp.asarray(input), jnp.asarray(target), jax_arrays)
                np.testing.assert_allclose(grads[1], plain, rtol=1e-10, atol=1e-14)


def _optax():
    return pytest.importorskip("optax")


def test_against_optax(path, seed):
    optax = _optax()
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(0, 2, (33, 17)), dtype=jnp.float32)
    labels = jnp.asarray(rng.integers(0, 17, 33))
    y = jnp.asarray(rng.uniform(0, 1, (33, 17)), dtype=jnp.float32)
    z = jnp.asarray(rng.normal(0, 2, (33, 17)), dtype=jnp.float32)
    log_p = jax.nn.log_softmax(logits)
    q = jax.nn.softmax(z)
    pairs = [
        (lambda x, t: lj.cross_entropy(x, t, reduction="sum"),
         lambda x, t: optax.softmax_cross_entropy_with_integer_labels(x, t).sum(), logits, labels, (0,)),
        (lambda x, t: lj.binary_cross_entropy_with_logits(x, t, reduction="sum"),
         lambda x, t: optax.sigmoid_binary_cross_entropy(x, t).sum(), logits, y, (0, 1)),
        (lambda x, t: lj.huber_loss(x, t, delta=0.7, reduction="sum"),
         lambda x, t: optax.huber_loss(x, t, delta=0.7).sum(), logits, z, (0, 1)),
        (lambda x, t: lj.mse_loss(x, t, reduction="sum") / 2,
         lambda x, t: optax.l2_loss(x, t).sum(), logits, z, (0, 1)),
        (lambda x, t: lj.kl_div(x, t, reduction="batchmean"),
         lambda x, t: optax.kl_divergence(x, t).mean(), log_p, q, (0, 1)),
    ]
    for ours, theirs, x, t, argnums in pairs:
        np.testing.assert_allclose(jax.jit(ours)(x, t), theirs(x, t), rtol=2e-5)
        for a, b in zip(jax.jit(jax.grad(ours, argnums))(x, t), jax.grad(theirs, argnums)(x, t)):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_vmap(path, seed):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(0, 2, (5, 8, 6)), dtype=jnp.float32)
    labels = jnp.asarray(rng.integers(0, 6, (5, 8)))
    per_batch = jax.vmap(lambda x, t: lj.cross_entropy(x, t, label_smoothing=0.1))(logits, labels)
    expected = [lossk.cross_entropy(np.asarray(x), np.asarray(t), label_smoothing=0.1) for x, t in zip(logits, labels)]
    np.testing.assert_allclose(per_batch, expected, rtol=1e-6)
    grads = jax.jit(jax.vmap(jax.grad(lambda x, t: lj.cross_entropy(x, t))))(logits, labels)
    expected = [lossk.cross_entropy.grad(np.asarray(x), np.asarray(t)) for x, t in zip(logits, labels)]
    np.testing.assert_allclose(grads, np.stack(expected), rtol=1e-5, atol=1e-7)


def test_weight_gradient(path, seed):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(0, 2, (7, 5)), dtype=jnp.float32)
    t = jnp.asarray(rng.normal(0, 2, (7, 5)), dtype=jnp.float32)
    w = jnp.asarray(rng.uniform(0.5, 2, (7, 5)), dtype=jnp.float32)
    ours = jax.grad(lambda w: lj.mse_loss(x, t, weight=w, reduction="sum"))(w)
    np.testing.assert_allclose(ours, (x - t) ** 2, rtol=1e-6)


def test_unknown_option():
    with pytest.raises(TypeError, match="unexpected option"):
        lj.mse_loss(jnp.zeros(3), jnp.zeros(3), delta=1.0)


# --- the multi-input losses: plain jax.numpy formulations of PyTorch's definitions ----------------------------


def _reduce(loss, reduction):
    return {"mean": jnp.mean, "sum": jnp.sum, "none": lambda v: v}[reduction](loss)


def _plain_gaussian_nll_loss(x, y, var, *, full=False, eps=1e-6, reduction="mean"):
    if var.ndim == x.ndim - 1:
        var = var[..., None]
    # PyTorch clamps a clone of var under no_grad: the value is clamped, the gradient passes as the identity
    clamped = var + jax.lax.stop_gradient(jnp.maximum(var, eps) - var)
    loss = 0.5 * (jnp.log(clamped) + (x - y) ** 2 / clamped) + (0.5 * np.log(2 * np.pi) if full else 0.0)
    return _reduce(loss, reduction)


def _plain_margin_ranking_loss(x1, x2, y, *, margin=0.0, reduction="mean"):
    h = -y * (x1 - x2) + margin
    return _reduce(jnp.where(h >= 0, h, 0.0), reduction)


def _plain_multilabel_soft_margin_loss(x, y, weight=None, *, reduction="mean"):
    loss = -(y * jax.nn.log_sigmoid(x) + (1 - y) * jax.nn.log_sigmoid(-x))
    loss = loss if weight is None else loss * weight
    return _reduce(jnp.mean(loss, axis=-1), reduction)


PLAIN = {"gaussian_nll_loss": _plain_gaussian_nll_loss, "margin_ranking_loss": _plain_margin_ranking_loss,
         "multilabel_soft_margin_loss": _plain_multilabel_soft_margin_loss}


def test_every_multi_input_loss_has_a_plain_formulation():
    multi_input = {n for n, f in _autodiff.loss_functions().items() if isinstance(f, MultiInputLossFunction)}
    assert multi_input == set(PLAIN)


@pytest.mark.parametrize("spec", MULTI_INPUT, ids=lambda s: s.name)
def test_multi_input_against_plain_jax(spec, path, seed):
    """float64: value and the gradients of every floating argument (the class weight included) under jit,
    with a random upstream gradient, against jax.grad of the plain formulation."""
    rng = np.random.default_rng(seed)
    options = {o.name: o.examples[0] for o in spec.keyword_options if o.examples}
    drawn = spec.domain.draw(rng, (6, 5), options, True)
    arrays = [drawn[n] for n in spec.inputs]
    if spec.name == "gaussian_nll_loss":
        arrays[2] = arrays[2][:, 0]  # one variance per row: broadcast, its gradient summed back
    weights = {o.name: o.draw(rng, (6, 5)) for o in spec.keyword_options if o.kind == "array"}
    ours, plain = getattr(lj, spec.name), PLAIN[spec.name]
    with jax.enable_x64(True):
        arguments = [jnp.asarray(a) for a in (*arrays, *weights.values())]
        n = len(arrays)
        for reduction in ("mean", "sum", "none"):
            def weighted(function, upstream, *leaves):
                named = dict(zip(weights, leaves[n:]))
                return jnp.sum(function(*leaves[:n], **named, reduction=reduction, **options) * upstream)

            expected = plain(*arguments[:n], **dict(zip(weights, arguments[n:])), reduction=reduction, **options)
            value = jax.jit(lambda *a: ours(*a[:n], **dict(zip(weights, a[n:])), reduction=reduction, **options))(
                *arguments)
            np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-14)
            upstream = rng.uniform(0.5, 1.5, np.shape(expected))
            argnums = tuple(range(len(arguments)))
            grads = jax.jit(jax.grad(lambda *a: weighted(ours, upstream, *a), argnums))(*arguments)
            expected_grads = jax.grad(lambda *a: weighted(plain, upstream, *a), argnums)(*arguments)
            for g, e, a in zip(grads, expected_grads, arguments):
                assert g.shape == a.shape
                np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("name", "shapes"), [
    ("margin_ranking_loss", ((6, 1), (6, 5), (1, 5))),
    ("gaussian_nll_loss", ((5,), (6, 5), (5,))),
    ("gaussian_nll_loss", ((6, 1), (6, 5), (6,))),
    ("multilabel_soft_margin_loss", ((1, 5), (6, 5))),
], ids=str)
def test_multi_input_broadcast_first_array(name, shapes, path, seed):
    """Arrays that broadcast together as PyTorch allows, the first included: the value has the broadcast shape,
    each gradient its argument's shape (summed), against jax.grad of the plain formulation, every reduction."""
    rng = np.random.default_rng(seed)
    spec = getattr(lossk, name).spec
    drawn = spec.domain.draw(rng, (6, 5), {o.name: o.default for o in spec.keyword_options}, True)
    own, _ = _autodiff.broadcast_shapes(getattr(lossk, name), shapes)
    arrays = [np.asarray(drawn[n])[tuple(slice(0, k) for k in (1,) * (2 - len(o)) + o)].reshape(s)
              for n, o, s in zip(spec.inputs, own, shapes)]
    ours, plain = getattr(lj, name), PLAIN[name]
    with jax.enable_x64(True):
        arguments = [jnp.asarray(a) for a in arrays]
        for reduction in ("mean", "sum", "none"):
            expected = plain(*arguments, reduction=reduction)
            value = jax.jit(lambda *a: ours(*a, reduction=reduction))(*arguments)
            assert value.shape == expected.shape
            np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-14)
            upstream = rng.uniform(0.5, 1.5, np.shape(expected))
            argnums = tuple(range(len(arguments)))
            def weighted(function, *leaves):
                return jnp.sum(function(*leaves, reduction=reduction) * upstream)

            grads = jax.jit(jax.grad(lambda *a: weighted(ours, *a), argnums))(*arguments)
            expected_grads = jax.grad(lambda *a: weighted(plain, *a), argnums)(*arguments)
            for g, e, a in zip(grads, expected_grads, arguments):
                assert g.shape == a.shape
                np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-13)


def test_multi_input_vmap(path, seed):
    rng = np.random.default_rng(seed)
    x, y = (jnp.asarray(rng.normal(0, 2, (4, 7, 3)), dtype=jnp.float32) for _ in range(2))
    var = jnp.asarray(rng.uniform(0.2, 2, (4, 7)), dtype=jnp.float32)
    per_batch = jax.vmap(lambda *a: lj.gaussian_nll_loss(*a, full=True))(x, y, var)
    expected = jax.vmap(lambda *a: _plain_gaussian_nll_loss(*a, full=True))(x, y, var)
    np.testing.assert_allclose(per_batch, expected, rtol=1e-5)
    grads = jax.jit(jax.vmap(jax.grad(lambda *a: lj.gaussian_nll_loss(*a), (0, 2))))(x, y, var)
    expected = jax.vmap(jax.grad(lambda *a: _plain_gaussian_nll_loss(*a), (0, 2)))(x, y, var)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7)


def test_multi_input_float_var_and_arity():
    x = jnp.arange(6.0).reshape(2, 3)
    expected = _plain_gaussian_nll_loss(x, x + 1, jnp.full_like(x, 0.5))
    np.testing.assert_allclose(lj.gaussian_nll_loss(x, x + 1, 0.5), expected, rtol=1e-6)
    with pytest.raises(TypeError, match="takes 3 positional arrays"):
        lj.margin_ranking_loss(x, x)
