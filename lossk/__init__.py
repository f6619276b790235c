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
from . import binary, divergence, glm, margin, regression
from ._losses import ELEMENTWISE_LOSSES, FAMILY_OF
from ._modules import ELEMENTWISE_CLASSES, CrossEntropyLoss, Loss, NLLLoss
from .classification import cross_entropy, nll_loss
from .linear import linear_cross_entropy

# the elementwise losses and their classes, from the loss-spec table (lossk._losses)
globals().update({name: getattr(globals()[FAMILY_OF[name]], name) for name in ELEMENTWISE_LOSSES})
globals().update(ELEMENTWISE_CLASSES)
from ._multi_input import public as _multi_input_public

MULTI_INPUT_LOSSES, MULTI_INPUT_CLASSES = _multi_input_public()
globals().update(MULTI_INPUT_LOSSES)
globals().update(MULTI_INPUT_CLASSES)

__version__ = "0.1.0"

__all__ = sorted(
    [
        "BackendUnavailableError",
        "BackendUnavailableWarning",
        "CrossEntropyLoss",
        "Loss",
        "LossFunction",
        "NLLLoss",
        "cross_entropy",
        "linear_cross_entropy",
        "nll_loss",
        *ELEMENTWISE_LOSSES,
        *ELEMENTWISE_CLASSES,
        *MULTI_INPUT_LOSSES,
        *MULTI_INPUT_CLASSES,
    ]
)
