"""The Kullback-Leibler divergence, with PyTorch's signature.

Built from its spec (``lossk._losses.divergence``; see :mod:`lossk.regression`).
"""

from __future__ import annotations

from ._loss_function import elementwise_loss_function
from ._losses import divergence as _definitions

__all__ = [spec.name for spec in _definitions.LOSSES]

globals().update({spec.name: elementwise_loss_function(spec, __name__) for spec in _definitions.LOSSES})
