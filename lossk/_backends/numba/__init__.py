"""The ``numba`` backend: host-side adapters that register the fused CPU kernels of ``lossk._kernels.numba``.

Registering imports no kernel module: each loads on its loss's first call (:func:`lazy_module`, and
``elementwise.kernel_of``), so a process pays only for the kernels it calls.
"""

import importlib.util
import sys
from types import ModuleType

# The backend's probe: Numba itself is imported here, so that a Numba or llvmlite that cannot load makes the
# backend unavailable when it registers (lossk._dispatch), not in the middle of a call.
import numba  # noqa: F401


def lazy_module(name: str) -> ModuleType:
    """The module ``name``, executed on its first attribute access (:class:`importlib.util.LazyLoader`)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


from . import classification  # noqa: F401  (registers cross_entropy and nll_loss)
from . import elementwise  # noqa: F401  (registers the fused elementwise losses)
from . import linear  # noqa: F401,E402  (registers linear_cross_entropy's NumPy chunk products)
from . import multi_input  # noqa: F401,E402  (registers the fused multi-input losses)
