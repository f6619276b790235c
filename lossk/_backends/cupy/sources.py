"""The CUDA C sources of ``lossk._kernels.cuda``, read through ``importlib.resources`` (pure Python).

NVRTC compiles a source string, so the local headers a ``.cu`` file includes (``#include "common.cuh"``)
are inlined here, once each, in include order; nvcc, in the compile test, finds the same headers with -I.
The text handed on is ASCII: CuPy writes a source to its cache in the locale's encoding, so a character
outside ASCII in a comment could fail under a non-UTF-8 locale; any such character is spelt in ASCII here.

The sources are read through the package ``lossk._kernels.cuda`` (an install maps it to ``kernels/cuda``).
Where that package cannot be imported - a checkout used without an install - they are read from the
``kernels/cuda`` folder beside the ``lossk`` package.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import unicodedata
from importlib.abc import Traversable
from pathlib import Path

PACKAGE = "lossk._kernels.cuda"
CHECKOUT_FOLDER = Path(__file__).resolve().parents[3] / "kernels" / "cuda"

_LOCAL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.MULTILINE)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_ASCII_SPELLING = {"\u00bd": "1/2", "\u00b2": "^2", "\u00b1": "+-", "\u2014": "-", "\u2013": "-", "\u00d7": "x",
                   "\u2264": "<=", "\u2265": ">=", "\u2212": "-", "\u2248": "~", "\u2192": "->", "\u00b7": "*"}


@functools.cache
def folder() -> Traversable:
    """Where the sources are: the package ``lossk._kernels.cuda``, else the checkout's ``kernels/cuda``."""
    try:
        return importlib.resources.files(PACKAGE)
    except ModuleNotFoundError:
        return CHECKOUT_FOLDER


def ascii_text(text: str) -> str:
    """``text`` with every character outside ASCII spelt in ASCII (they occur in comments only)."""

    def spell(match: re.Match[str]) -> str:
        character = match.group(0)
        if character in _ASCII_SPELLING:
            return _ASCII_SPELLING[character]
        decomposed = unicodedata.normalize("NFKD", character).encode("ascii", "ignore").decode()
        return decomposed or "?"

    return _NON_ASCII.sub(spell, text)


def read_text(name: str) -> str:
    """The text of ``name`` (a file of ``lossk._kernels.cuda``)."""
    return folder().joinpath(name).read_text(encoding="utf-8")


@functools.cache
def kernel_source(name: str) -> str:
    """``name`` with its local includes inlined, each header once (its ``#pragma once`` dropped: in a single
    translation unit compilers warn about it), in ASCII."""
    included: set[str] = set()

    def expand(text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            header = match.group(1)
            if header in included:
                return f"// {header}: already included"
            included.add(header)
            body = _PRAGMA_ONCE.sub("", read_text(header))
            return f"// ---- {header}\n{expand(body)}\n// ---- end of {header}"

        return _LOCAL_INCLUDE.sub(replace, text)

    return ascii_text(expand(read_text(name)))


def cuda_sources() -> list[str]:
    """Every ``.cu`` file of the package (the compile test builds each)."""
    return sorted(p.name for p in folder().iterdir() if p.name.endswith(".cu"))
