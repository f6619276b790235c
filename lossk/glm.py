"""Count and positive-valued regression: PyTorch's Poisson NLL; scikit-learn's Tweedie, Gamma and Poisson deviances
with a log link.

The functions are built from their specs (``lossk._losses.glm``): each validates its arguments and
dispatches (``lossk._dispatch``); the spec's formula is the specification every fused kernel reproduces.
"""

from __future__ import annotations

from ._loss_function import elementwise_loss_function
from ._losses import glm as _definitions

__all__ = [spec.name for spec in _definitions.LOSSES]

globals().update({spec.name: elementwise_loss_function(spec, __name__) for spec in _definitions.LOSSES})
