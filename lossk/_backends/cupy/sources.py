"""The CUDA C sources of ``lossk._kernels.cuda``, read through ``importlib.resources`` (pure Python).

NVRTC compiles a source string, so the local headers a ``.cu`` file includes (``#include "common.cuh"``)
are inlined here, once each, in include order; nvcc, in the compile test, finds the same headers with -I.
"""

from __future__ import annotations

import functools
import importlib.resources
import re

PACKAGE = "lossk._kernels.cuda"

_LOCAL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.MULTILINE)


def read_text(name: str) -> str:
    """The text of ``name`` (a file of ``lossk._kernels.cuda``)."""
    return importlib.resources.files(PACKAGE).joinpath(name).read_text(encoding="utf-8")


@functools.cache
def kernel_source(name: str) -> str:
    """``name`` with its local includes inlined, each header once (its ``#pragma once`` dropped: in a single
    translation unit compilers warn about it)."""
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

    return expand(read_text(name))


def cuda_sources() -> list[str]:
    """Every ``.cu`` file of the package (the compile test builds each)."""
    return sorted(p.name for p in importlib.resources.files(PACKAGE).iterdir() if p.name.endswith(".cu"))
