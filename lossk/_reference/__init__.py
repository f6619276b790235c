"""The reference implementations: pure Array API, the specification every fused kernel is checked against.

Each function here takes validated arrays and an ``xp`` namespace, performs no validation, and is
registered as the ``array_api`` backend of the public loss of the same name (see ``lossk._dispatch``).
No boolean-mask indexing and no data-dependent shapes: everything is ``where``, so lazy libraries
(Dask) stay lazy.
"""
