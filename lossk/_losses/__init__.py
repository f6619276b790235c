"""The loss-spec table: one :class:`~lossk._spec.ElementwiseLoss` per elementwise loss, by family.

A new elementwise loss is one record in its family's module (``regression``, ``binary``, ``divergence``, ``margin``, ``glm``),
added to that module's ``LOSSES``; then ``python -m lossk._losses.generate`` writes its Numba kernel. The
public function and class, the reference and Numba backends, the docstring and the shared tests all
read :data:`ELEMENTWISE_LOSSES`.
"""

from __future__ import annotations

from types import MappingProxyType

from .._spec import ElementwiseLoss
from . import binary, divergence, glm, margin, regression

FAMILIES = {"regression": regression, "binary": binary, "divergence": divergence, "margin": margin, "glm": glm}
"""The public module (``lossk.<family>``) each definition module's losses are exported from."""

ELEMENTWISE_LOSSES: MappingProxyType[str, ElementwiseLoss] = MappingProxyType(
    {spec.name: spec for module in FAMILIES.values() for spec in module.LOSSES}
)
"""Every elementwise loss by public name, in the order of ``FAMILIES``."""

FAMILY_OF: MappingProxyType[str, str] = MappingProxyType(
    {spec.name: family for family, module in FAMILIES.items() for spec in module.LOSSES}
)
