"""Write the Numba kernel module of every elementwise loss from its spec: ``python -m lossk._losses.generate``.

One module per loss, ``kernels/numba/pointwise/<name>.py``, committed: a real file, so that Numba's
``cache=True`` works across processes (a kernel made by a closure factory recompiles in every process,
numba#6264), and so that a call loads only the kernel it needs. Each module holds the loss's scalar
formulation (its spec's ``element``, copied verbatim with the constants and ``scalar_helpers`` it reads), the
floor of its surrogate Hessian (``hessian_floor_element``, or 0) and one chunked ``prange`` loop, the same for
every loss (see ``kernels/numba/elementwise.py``), once per combination of the loss's flags with their values
compiled in. ``--check`` exits 1 when a committed module differs from what the generator writes (the tests check the same).

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
from typing import Any

from .._spec import ARRAY_KIND, ElementwiseLoss, check_supported, flag_combinations, is_multi_input, kernel_name
from . import ELEMENTWISE_LOSSES, FAMILY_OF, multi_input, scalar

PACKAGE = "pointwise"
"""The kernel modules' package, inside ``kernels/numba`` (``lossk._kernels.numba.pointwise``)."""

BUILTINS = {"abs", "max", "min"}
"""Python builtins a scalar formulation may call (Numba compiles them to selects)."""

_MODULE = '''"""Fused Numba kernel of ``{name}``: GENERATED from its spec in ``lossk/_losses/{family}.py`` — do not edit.

{about}
Kernel sources inlined ({inlined}), SHA-256:
{digest}
"""

import numpy as np
from numba import njit, prange

from ..elementwise import (
    ELEMENT, FUSED, chunk_bounds, chunk_count, chunk_losses, chunk_sum, {emit}option_at, sum_in_order,
)
{helpers}{constants}

@njit(**ELEMENT)
{element}{kernels}'''

_FLOOR_NONE = '''def hessian_floor({parameters}):
    return cast_like(0.0, x)
'''
"""The floor of a loss without :attr:`~lossk._spec.ElementwiseLoss.hessian_floor_element`: 0."""

_KERNEL = '''

@njit(**FUSED)
def {kernel}(x, y, weight, {options}scale, upstream, grad, hess, surrogate, loss_out):
    """{summary}"""
    n = x.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x)
        for i in range(start, stop):
            loss, d1, d2 = element(x[i], y[i]{arguments})
            if surrogate is not None:
                floor = hessian_floor(x[i], y[i]{arguments})
                d2 = floor if d2 < floor else d2
            losses[i - start] = emit(i, x, loss, d1, d2, weight, scale, upstream, grad, hess)
        partial[c] = chunk_sum(losses, loss_out)
    return sum_in_order(partial)
'''
"""The loop of a two-array kernel. ``surrogate``: ``None`` for the exact second derivative, ``True`` for the
surrogate (raised to ``hessian_floor``); Numba compiles each as its own specialisation, as for ``grad=None``."""


_MULTI_KERNEL = '''

@njit(**FUSED)
def {kernel}({arrays}, weight, {options}scale, upstream, grad_0, grad_1, hess_0, hess_1, loss_out):
    """{summary}"""
    n = x0.size
    partial = np.zeros(chunk_count(n))
    for c in prange(partial.size):
        start, stop = chunk_bounds(c, n)
        losses = chunk_losses(loss_out, start, stop, x0)
        for i in range(start, stop):
            loss, d1_0, d1_1, d2_0, d2_1 = element({elements}{arguments})
            losses[i - start] = emit(i, x0, loss, d1_0, d2_0, weight, scale, upstream, grad_0, hess_0)
            emit_derivative(i, d1_1, d2_1, weight, scale, upstream, grad_1, hess_1)
        partial[c] = chunk_sum(losses, loss_out)
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


def scalar_source(spec: ElementwiseLoss, function: Any, name: str) -> str:
    """``function``'s source (a scalar formulation of ``spec``), dedented and renamed ``name``; checks the names
    it reads."""
    check_supported(spec, multi_input=is_multi_input(spec))
    code = function.__code__
    own = {helper.__name__ for helper in spec.scalar_helpers}
    unknown = set(code.co_names) - set(scalar.__all__) - set(spec.constants) - BUILTINS - own
    if unknown:
        raise ValueError(
            f"{spec.name}'s {function.__name__} reads {sorted(unknown)}: a scalar formulation may use only "
            f"lossk._losses.scalar's helpers, {sorted(BUILTINS)}, its spec's constants and scalar_helpers"
        )
    source = textwrap.dedent(inspect.getsource(function))
    header, body = source.split("\n", 1)
    if not header.startswith(f"def {function.__name__}("):
        raise ValueError(f"{spec.name}'s {function.__name__} must be a plain function (no decorator), got {header!r}")
    return header.replace(f"def {function.__name__}(", f"def {name}(", 1) + "\n" + body.rstrip() + "\n"


def element_source(spec: ElementwiseLoss) -> str:
    """``spec.element``'s source, dedented and renamed ``element``; checks the names it reads."""
    return scalar_source(spec, spec.element, "element")


def module_source(spec: ElementwiseLoss) -> str:
    """The generated kernel module of ``spec``: one kernel per combination of its flags' values
    (:func:`lossk._spec.kernel_name`), each passing them to the inlined ``element`` as constants, so that LLVM
    drops the branches they decide (a run-time flag costs both sides of each branch in a vectorised loop)."""
    multi = is_multi_input(spec)
    floor = spec.hessian_floor_element
    scalars = [spec.element, *spec.scalar_helpers, *([] if multi or floor is None else [floor])]
    used = set().union(*(function.__code__.co_names for function in scalars))
    needs_cast = any(o.kind == ARRAY_KIND for o in spec.formula_options) or (not multi and floor is None)
    helpers = sorted(used & set(scalar.__all__) | ({"cast_like"} if needs_cast else set()))
    options = spec.formula_options
    first = "x0" if multi else "x"
    kernels = []
    for flags in flag_combinations(spec):
        arguments = "".join(
            f", option_at({o.name}, i, cast_like({o.neutral!r}, {first}[i]))" if o.kind == ARRAY_KIND
            else f", {flags[o.name]!r}" if o.name in flags else f", {o.name}"
            for o in options
        )
        compiled_in = ", ".join(f"{name}={value!r}" for name, value in flags.items())
        fields = {
            "kernel": kernel_name(spec, flags),
            "options": "".join(f"{o.name}, " for o in options if o.name not in flags),
            "arguments": arguments,
        }
        if multi:
            if len(spec.differentiable) != 2:
                raise NotImplementedError(f"{spec.name}: the multi-input kernel has two differentiable arguments")
            arrays = [f"x{k}" for k in range(len(spec.inputs))]
            summary = (f"Loss and the derivatives for {', '.join(spec.differentiable)} of lossk.{spec.name}, "
                       "weighted, scaled and stored" + (f" ({compiled_in})." if flags else "."))
            kernels.append(_MULTI_KERNEL.format(
                **fields, arrays=", ".join(arrays), elements=", ".join(f"{a}[i]" for a in arrays), summary=summary,
            ))
        else:
            summary = f"Loss, d1 and d2 of lossk.{spec.name}, weighted, scaled and stored " + (
                f"({compiled_in})." if flags else "(see the module docstring).")
            kernels.append(_KERNEL.format(**fields, summary=summary))
    parameters = list(inspect.signature(spec.element).parameters)
    if multi:
        floor_source = ""
    elif floor is not None:
        # Numba's inliner takes no *args: the floor gets the element's parameters (its own named ones first)
        named = [p.name for p in inspect.signature(floor).parameters.values() if p.kind != p.VAR_POSITIONAL]
        if named != parameters[:len(named)]:
            raise ValueError(f"{spec.name}'s hessian_floor_element takes {named}: the first of its element's "
                             f"parameters {parameters}, then *options")
        _, body = scalar_source(spec, floor, "hessian_floor").split("\n", 1)
        floor_source = f"\n\n@njit(**ELEMENT)\ndef hessian_floor({', '.join(parameters)}):\n{body}"
    else:
        floor_source = "\n\n@njit(**ELEMENT)\n" + _FLOOR_NONE.format(parameters=", ".join(parameters))
    flag_names = " and ".join(f"``{o.name}``" for o in spec.flag_options)
    return _MODULE.format(
        **_inlined_header(),
        name=spec.name,
        family=FAMILY_OF.get(spec.name, "multi_input"),
        about=textwrap.fill(
            "Regenerate with ``python -m lossk._losses.generate``. ``element`` is the spec's scalar formulation, "
            + ("" if multi else "``hessian_floor`` the floor of its surrogate Hessian, ")
            + "``kernel`` the loop every elementwise loss shares (``kernels/numba/elementwise.py`` documents its "
            + "arguments)" + (f"; one ``kernel_*`` per combination of {flag_names}, their values compiled in "
                              "(``lossk._spec.kernel_name``)." if spec.flag_options else "."),
            width=115, break_on_hyphens=False, break_long_words=False),
        emit="emit, emit_derivative, " if multi else "emit, ",
        helpers=f"from ..typed_math import {', '.join(helpers)}\n" if helpers else "",
        constants="".join(["\n", *(f"{name} = {value!r}\n" for name, value in spec.constants.items())])
        if spec.constants else "",
        element="".join(f"{scalar_source(spec, helper, helper.__name__)}\n\n@njit(**ELEMENT)\n"
                        for helper in spec.scalar_helpers) + element_source(spec) + floor_source,
        kernels="".join(kernels),
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
