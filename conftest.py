"""pytest's doctest collection (``--doctest-modules``) imports every module under ``lossk/``.

A backend's adapters import its library, so where that library is not installed, or its import fails (an
llvmlite that does not load), their directory is left out of the collection instead of failing it; lossk
itself leaves such a backend out the same way (``lossk._dispatch.status``).
"""

import importlib


def _imports(library: str) -> bool:
    try:
        importlib.import_module(library)
    except Exception:  # noqa: BLE001 - not installed, or broken: either way its adapters cannot be imported
        return False
    return True


collect_ignore = [f"lossk/_backends/{backend}" for backend in ("numba", "cupy") if not _imports(backend)]
