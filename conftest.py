"""pytest's doctest collection (``--doctest-modules``) imports every module under ``lossk/``.

A backend's adapters import its library, so where that library is not installed (Numba, CuPy) their
directory is left out of the collection instead of failing it; the backends themselves are imported
only when available (``lossk._dispatch.is_available``).
"""

import importlib.util

collect_ignore = [
    f"lossk/_backends/{backend}" for backend in ("numba", "cupy") if importlib.util.find_spec(backend) is None
]
