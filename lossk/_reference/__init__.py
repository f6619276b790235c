"""The reference implementations: pure Array API, the specification every fused kernel is checked against.

Each function here takes validated arrays and an ``xp`` namespace, performs no validation, and is
registered as the ``array_api`` backend of the public loss of the same name (see ``lossk._dispatch``):
importing this package registers them. The elementwise losses are their specs' array formulas
(``lossk._losses``, evaluated by :mod:`._elementwise`); cross-entropy and NLL are written out in
:mod:`.classification`. No boolean-mask indexing and no data-dependent shapes: everything is ``where``,
so lazy libraries (Dask) stay lazy.
"""

from .._dispatch import register
from .._hessian import key as hessian_key
from . import _elementwise, classification, linear
from .. import _multi_input

register("cross_entropy", "array_api")(classification.cross_entropy)
register("nll_loss", "array_api")(classification.nll_loss)
register(hessian_key("cross_entropy"), "array_api")(classification.cross_entropy_derivatives)
register(hessian_key("nll_loss"), "array_api")(classification.nll_loss_derivatives)
register(linear.PRODUCTS, "array_api")(linear.chunk_products)
_elementwise.register_all()
_multi_input.register_all()
