"""Write the Numba kernel module of every elementwise loss from its spec: ``python -m lossk._losses.generate``.

One module per loss, ``kernels/numba/pointwise/<name>.py``, committed: a real file, so that Numba's
``cache=True`` works across processes (a kernel made by a closure factory recompiles in every process,
numba#6264), and so that a call loads only the kernel it needs. Each module holds the loss's scalar
formulation (its spec's ``element``, copied verbatim with the constants it reads) and one chunked
``prange`` loop, the same for every loss (see ``kernels/numba/elementwise.py``). ``--check`` exits 1 when a
committed module differs from what the generator writes (the tests check the same).

Numba's cache of a module is keyed on that file alone (its modification time and size), not on the kernel
sources it inlines (``elementwise.py`` and what it imports). So each module's header carries a SHA-256 of
those sources (:func:`inlined_sources_digest`): editing them changes every generated module, the
regenerate-and-compare test fails until ``python -m lossk._losses.generate`` rewrites them, and the
rewritten files miss the stale cache.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import inspect
import sys
import textwrap
from pathlib import Path

from .._spec import ARRAY_KIND, ElementwiseLoss, check_supported, is_multi_input
from . import ELEMENTWISE_LOSSES, FAMILY_OF, multi_input, scalar

PACKAGE = "pointwise"
"""The kernel modules' package, inside ``kernels/numba`` (``lossk._kernels.numba.pointwise``)."""

BUILTINS = {"abs", "max", "min"}
"""Python builtins a scalar formulation may call (Numba compiles them to selects)."""

_MODULE = '''"""Fused Numba kernel of ``{name}``: GENERATED from its spec in ``lossk/_losses/{family}.py`` — do not edit.

Regenerate with ``python -m lossk._losses.generate``. ``element`` is the spec's scalar formulation,
``kernel`` the loop every elementwise loss shares (``kernels/numba/elementwise.py`` documents its arguments).
Kernel sources inlined ({inlined}), SHA-256:
{digest}
"""

import numpy as np
from numba import njit, prange

from ..elementwise import ELEMENT, FUSED, chunk_bounds, chunk_count, emit, option_at, sum_in_order
{helpers}{constants}

@njit(**ELEMENT)
{element}
@njit(**FUSED)
def kernel(x, y, weight, {options}scale, upstream, grad, hess, loss_out):
    """{summary}"""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i]{arguments})
            total += emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess, loss_out)
        partial[c] = total
    return sum_in_order(partial)
'''


_MULTI_KERNEL = '''
@njit(**FUSED)
def kernel({arrays}, weight, {options}scale, upstream, grad_0, grad_1, hess_0, hess_1, loss_out):
    """{summary}"""
    n = x0.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        total = 0.0
        start, stop = chunk_bounds(c, n)
        for i in range(start, stop):
            loss, d1_0, d1_1, d2_0, d2_1 = element({elements}{arguments})
            total += emit(i, x0, loss, d1_0, d2_0, weight, scale, upstream, grad_0, hess_0, loss_out)
            emit_derivative(i, d1_1, d2_1, weight, scale, upstream, grad_1, hess_1)
        partial[c] = total
    return sum_in_order(partial)
'''
"""The loop of a multi-input kernel (``lossk._spec.is_multi_input``, two differentiable arguments): one array
per input, ``x0`` the first, and a gradient and Hessian stream per differentiable argument, in its order."""


INLINED_ROOTS = ("elementwise", "typed_math")
"""The modules of ``kernels/numba`` that a generated module imports; with their own relative imports, the
sources Numba compiles into every kernel."""


def kernels_directory() -> Path:
    """``kernels/numba/pointwise`` of this checkout (the generator runs from a source tree)."""
    return Path(__file__).resolve().parents[2] / "kernels" / "numba" / PACKAGE


def inlined_modules() -> list[str]:
    """:data:`INLINED_ROOTS` and every ``kernels/numba`` module they import (relative imports), sorted."""
    found: set[str] = set()
    pending = list(INLINED_ROOTS)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        tree = ast.parse((kernels_directory().parent / f"{name}.py").read_text(encoding="utf-8"))
        pending += [node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module]
    return sorted(found)


@functools.cache
def inlined_sources_digest() -> str:
    """SHA-256 of the sources of :func:`inlined_modules` (names and bytes, in order)."""
    digest = hashlib.sha256()
    for name in inlined_modules():
        digest.update(f"{name}.py\0".encode())
        digest.update((kernels_directory().parent / f"{name}.py").read_bytes())
    return digest.hexdigest()


def element_source(spec: ElementwiseLoss) -> str:
    """``spec.element``'s source, dedented and renamed ``element``; checks the names it reads."""
    check_supported(spec, multi_input=is_multi_input(spec))
    code = spec.element.__code__
    unknown = set(code.co_names) - set(scalar.__all__) - set(spec.constants) - BUILTINS
    if unknown:
        raise ValueError(
            f"{spec.name}'s element reads {sorted(unknown)}: a scalar formulation may use only "
            f"lossk._losses.scalar's helpers, {sorted(BUILTINS)} and its spec's constants"
        )
    source = textwrap.dedent(inspect.getsource(spec.element))
    header, body = source.split("\n", 1)
    name = spec.element.__name__
    if not header.startswith(f"def {name}("):
        raise ValueError(f"{spec.name}'s element must be a plain function (no decorator), got {header!r}")
    return header.replace(f"def {name}(", "def element(", 1) + "\n" + body.rstrip() + "\n"


def module_source(spec: ElementwiseLoss) -> str:
    """The generated kernel module of ``spec``."""
    used = set(spec.element.__code__.co_names)
    helpers = sorted(used & set(scalar.__all__) | ({"cast_like"} if any(o.kind == ARRAY_KIND for o in spec.formula_options) else set()))
    options = spec.formula_options
    arguments = "".join(
        f", option_at({o.name}, i, cast_like({o.neutral!r}, x[i]))" if o.kind == ARRAY_KIND else f", {o.name}" for o in options
    )
    constants = "".join(f"{name} = {value!r}\n" for name, value in spec.constants.items())
    if is_multi_input(spec):
        if len(spec.differentiable) != 2:
            raise NotImplementedError(f"{spec.name}: the multi-input kernel has two differentiable arguments")
        head, _ = _MODULE.split("@njit(**FUSED)")
        head = head.replace("emit, option_at", "emit, emit_derivative, option_at")
        arrays = [f"x{k}" for k in range(len(spec.inputs))]
        return head.format(
            **_inlined_header(),
            name=spec.name,
            family=FAMILY_OF.get(spec.name, "multi_input"),
            helpers=f"from ..typed_math import {', '.join(helpers)}\n" if helpers else "",
            constants=f"\n{constants}" if constants else "",
            element=element_source(spec),
        ).rstrip("\n") + "\n\n" + _MULTI_KERNEL.format(
            arrays=", ".join(arrays),
            options="".join(f"{o.name}, " for o in options),
            summary=f"Loss and the derivatives for {', '.join(spec.differentiable)} of lossk.{spec.name}, "
                    "weighted, scaled and stored.",
            elements=", ".join(f"{a}[i]" for a in arrays),
            arguments=arguments.replace("x[i]", "x0[i]"),
        ).lstrip("\n")
    return _MODULE.format(
        **_inlined_header(),
        name=spec.name,
        family=FAMILY_OF.get(spec.name, "multi_input"),
        helpers=f"from ..typed_math import {', '.join(helpers)}\n" if helpers else "",
        constants=f"\n{constants}" if constants else "",
        element=element_source(spec),
        options="".join(f"{o.name}, " for o in options),
        summary=f"Loss, d1 and d2 of lossk.{spec.name}, weighted, scaled and stored (see the module docstring).",
        arguments=arguments,
    )


def _inlined_header() -> dict[str, str]:
    return {"inlined": ", ".join(f"``{name}.py``" for name in inlined_modules()), "digest": inlined_sources_digest()}


def expected_files() -> dict[Path, str]:
    """Every generated module, by path."""
    specs = (*ELEMENTWISE_LOSSES.values(), *multi_input.LOSSES)
    return {kernels_directory() / f"{spec.name}.py": module_source(spec) for spec in specs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_files().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    generated = {path.name for path in expected_files()}
    orphans = [p for p in kernels_directory().glob("*.py") if p.name != "__init__.py" and p.name not in generated]
    for path in stale:
        print(("stale: " if args.check else "wrote ") + str(path))
    for path in orphans:
        print(f"not generated from any spec (delete it): {path}")
    return 1 if (args.check and stale) or orphans else 0


if __name__ == "__main__":
    sys.exit(main())
