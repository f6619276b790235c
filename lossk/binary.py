"""Binary classification losses: BCE on probabilities and on logits, with PyTorch's signatures.

The functions are built from their specs (``lossk._losses.binary``; see :mod:`lossk.regression`).
"""

from __future__ import annotations

from ._loss_function import elementwise_loss_function
from ._losses import binary as _definitions

__all__ = [spec.name for spec in _definitions.LOSSES]

globals().update({spec.name: elementwise_loss_function(spec, __name__) for spec in _definitions.LOSSES})
