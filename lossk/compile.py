"""Compile lossk's Numba kernels ahead of time, into Numba's on-disk cache: ``python -m lossk.compile``.

A kernel is compiled on its first call in a process for each new combination of argument types (dtype,
weighted or not, reduced or not, gradient, Hessian, in place) and cached on disk (``cache=True``), so that
later processes load it instead (tens of milliseconds instead of seconds). This command makes those first
calls for the combinations the public API produces, for every loss: run it when building a container image or
a CI cache, so that no process pays the compilation. The cache lives beside the kernels
(``lossk/_kernels/numba/__pycache__``) or in ``NUMBA_CACHE_DIR``.

Each loss compiles in its own process (``--jobs`` at a time): the kernels of one loss share a cache index,
the losses do not.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

DTYPES = (np.float32, np.float64)
CLASSIFICATION = ("cross_entropy", "nll_loss")


def loss_names() -> list[str]:
    """Every loss with a Numba kernel: the elementwise losses of the spec table, cross-entropy and NLL."""
    from lossk._losses import ELEMENTWISE_LOSSES

    return [*ELEMENTWISE_LOSSES, *CLASSIFICATION]


def _elementwise_calls(name: str, rng: np.random.Generator) -> Iterator[tuple[Callable[..., Any], tuple, dict]]:
    import lossk
    from lossk._hessian import derivatives
    from lossk._losses import ELEMENTWISE_LOSSES
    from lossk._spec import ARRAY_KIND, flag_combinations

    spec = ELEMENTWISE_LOSSES[name]
    function = getattr(lossk, name)
    shape = (4, 5)
    arrays = spec.domain.draw(rng, shape, {}, False)
    options = {o.name: o.draw(rng, shape) for o in spec.options if o.kind == ARRAY_KIND and o.draw is not None}
    weights = [None, options.pop("weight")] if "weight" in options else [None]
    for dtype in DTYPES:
        x, *rest = (np.asarray(a, dtype) for a in arrays.values())
        extra = {k: np.asarray(v, dtype) for k, v in options.items()}
        for weight in weights:
            kw = dict(extra, backend="numba", **({} if weight is None else {"weight": np.asarray(weight, dtype)}))
            for reduction in ("mean", "none"):
                yield function, (x, *rest), dict(kw, reduction=reduction)
                yield function.value_and_grad, (x, *rest), dict(kw, reduction=reduction)
            yield function.value_and_grad, (x.copy(), *rest), dict(kw, inplace=True)
            if hasattr(function, "value_grad_hessian"):
                for reduction in ("mean", "none"):
                    yield function.value_grad_hessian, (x, *rest), dict(kw, reduction=reduction)
            for flags in flag_combinations(spec)[1:]:  # the kernels of the other flag values
                for reduction in ("mean", "none"):
                    yield function.value_and_grad, (x, *rest), dict(kw, reduction=reduction, **flags)
            # lossk.boosting's surrogate Hessian: without sample weights ('sum'), with them ('none', grad_output)
            surrogate = functools.partial(derivatives, function, out=None, hess_out=None, surrogate=True)
            yield surrogate, (x, *rest), dict(kw, reduction="sum", grad_output=None)
            yield surrogate, (x, *rest), dict(kw, reduction="none", grad_output=np.ones_like(x))


def _classification_calls(name: str, rng: np.random.Generator) -> Iterator[tuple[Callable[..., Any], tuple, dict]]:
    import lossk

    function = getattr(lossk, name)
    # rows of a few classes take the short-row kernels, long rows the general ones; one row or many
    for rows, classes in ((1, 5), (64, 5), (1, 300), (64, 300)):
        labels = rng.integers(0, classes, rows)
        for dtype in DTYPES:
            z = rng.standard_normal((rows, classes)).astype(dtype)
            if name == "nll_loss":
                z = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            for weight in (None, rng.uniform(0.5, 2, classes).astype(dtype)):
                kw = {"backend": "numba", "weight": weight}
                for reduction in ("mean", "none"):
                    yield function, (z, labels), dict(kw, reduction=reduction)
                    yield function.value_and_grad, (z, labels), dict(kw, reduction=reduction)
                if hasattr(function, "value_grad_hessian"):
                    yield function.value_grad_hessian, (z, labels), kw
                if name == "cross_entropy":
                    probabilities = np.exp(z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(dtype)
                    yield function.value_and_grad, (z, probabilities), kw
                    yield function.value_and_grad, (z, labels), dict(kw, z_loss=1e-4)
                    yield function.value_and_grad, (z, labels), dict(kw, softcap=30.0)


def compile_loss(name: str) -> tuple[str, int, float]:
    """Make the first calls of ``name``'s kernels; returns ``(name, calls made, seconds)``."""
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    calls = _classification_calls(name, rng) if name in CLASSIFICATION else _elementwise_calls(name, rng)
    count = 0
    for function, args, kwargs in calls:
        function(*args, **kwargs)
        count += 1
    return name, count, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lossk.compile", description=__doc__.split("\n\n")[0])
    parser.add_argument("losses", nargs="*", help="losses to compile (default: every loss with a Numba kernel)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="losses compiled at once")
    args = parser.parse_args(argv)
    names = args.losses or loss_names()
    unknown = sorted(set(names) - set(loss_names()))
    if unknown:
        parser.error(f"no Numba kernel for {', '.join(unknown)}; choose from {', '.join(loss_names())}")
    from lossk._dispatch import is_available

    if not is_available("numba"):
        print("lossk.compile: the numba backend is unavailable here (pip install \"lossk[numba]\")", file=sys.stderr)
        return 1
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, count, seconds in pool.map(compile_loss, names):
            print(f"{name:40s} {count:3d} calls {seconds:7.2f} s")
    print(f"compiled {len(names)} losses in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
