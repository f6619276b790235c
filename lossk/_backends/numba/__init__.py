"""The ``numba`` backend: host-side adapters that register the fused CPU kernels of ``lossk._kernels.numba``."""

from . import classification  # noqa: F401  (registers cross_entropy and nll_loss)
from . import elementwise  # noqa: F401  (registers the fused elementwise losses)
