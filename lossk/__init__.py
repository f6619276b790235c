"""lossk: loss functions and their gradients, written once on the Array API, fused on CPU and GPU.

Every loss mirrors its ``torch.nn.functional`` namesake and has three entry points::

    lossk.mse_loss(input, target)                  # the loss
    lossk.mse_loss.grad(input, target)             # d loss / d input
    lossk.mse_loss.value_and_grad(input, target)   # both, in one pass where the backend fuses them

and a class with PyTorch's name (``lossk.MSELoss``) for hand-written training loops.
"""

from . import _source_tree  # noqa: F401  (first: in a checkout, maps kernels/ to lossk._kernels as installs do)
from ._dispatch import BackendUnavailableError, BackendUnavailableWarning
from ._loss_function import LossFunction
from ._modules import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .binary import binary_cross_entropy, binary_cross_entropy_with_logits
from .classification import cross_entropy, nll_loss
from .divergence import kl_div
from .linear import linear_cross_entropy
from .regression import huber_loss, l1_loss, mse_loss, smooth_l1_loss

__version__ = "0.1.0"

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "BackendUnavailableError",
    "BackendUnavailableWarning",
    "CrossEntropyLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "Loss",
    "LossFunction",
    "MSELoss",
    "NLLLoss",
    "SmoothL1Loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "linear_cross_entropy",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
]
