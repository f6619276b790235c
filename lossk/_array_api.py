"""The one place that imports array-api-compat, with lossk's typing aliases.

Every other module asks this one for an array's namespace and device, so that
the rules for mixing libraries live in a single function.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any, TypeAlias

import array_api_compat
import numpy as np
from array_api_compat import device, is_array_api_obj, is_writeable_array, size

__all__ = [
    "Array",
    "as_array",
    "device",
    "ieee_arithmetic",
    "is_array_api_obj",
    "is_cpu_eager",
    "is_numpy_namespace",
    "is_writeable_array",
    "library_name",
    "namespace_of",
    "size",
]

Array: TypeAlias = Any
"""Any array of a library that array-api-compat understands."""


def library_name(x: Array) -> str:
    """The top-level package of an array's type, for error messages: 'numpy', 'torch', ..."""
    return type(x).__module__.split(".")[0]


def as_array(xp: ModuleType, x: Any) -> Array:
    """``x`` as an array of ``xp``: a NumPy scalar (what NumPy returns for 0-d results) becomes a 0-d array;
    an array is returned as it is.

    Not ``xp.asarray`` for arrays: on a PyTorch tensor that requires grad, ``torch.asarray`` warns about its
    ``requires_grad`` default (torch 2.13). Returning the tensor keeps its autograd history, which the
    PyTorch wrappers' reference gradients differentiate through.
    """
    if isinstance(x, np.generic) or not is_array_api_obj(x):
        return xp.asarray(x)
    return x


def namespace_of(**arrays: Array | None) -> ModuleType:
    """The Array API namespace shared by the named arrays (``None`` entries are skipped).

    Raises
    ------
    TypeError
        If an entry is not an array, or if the arrays come from two different libraries.
    """
    present = {name: a for name, a in arrays.items() if a is not None}
    for name, a in present.items():
        if not is_array_api_obj(a):
            raise TypeError(
                f"{name} must be an array (NumPy, CuPy, PyTorch, Dask, array-api-strict, ...), "
                f"got {type(a).__name__}"
            )
    libraries = {name: library_name(a) for name, a in present.items()}
    if len(set(libraries.values())) > 1:
        listing = ", ".join(f"{name} is a {lib} array" for name, lib in libraries.items())
        raise TypeError(f"all arrays of one call must come from one library: {listing}")
    try:
        return array_api_compat.array_namespace(*present.values())
    except TypeError as error:  # same library, different devices or flavours
        raise TypeError(f"the arrays of one call are not compatible: {error}") from error


def is_numpy_namespace(xp: ModuleType) -> bool:
    """Whether ``xp`` is NumPy's namespace (the array-api-compat wrapper or NumPy itself)."""
    return array_api_compat.is_numpy_namespace(xp)


def is_cpu_eager(x: Array) -> bool:
    """Whether the values of ``x`` can be read on the host now, without a device sync or a lazy graph.

    Data-dependent checks (class indices in range, probabilities in [0, 1]) run only where this holds:
    on a GPU they would cost a synchronisation, and on Dask they would force a computation.
    """
    if array_api_compat.is_numpy_array(x) or array_api_compat.is_array_api_strict_namespace(
        array_api_compat.array_namespace(x)
    ):
        return True
    if array_api_compat.is_torch_array(x):
        return x.device.type == "cpu"
    return False


def ieee_arithmetic(xp: ModuleType) -> contextlib.AbstractContextManager[Any]:
    """The context every loss implementation runs in (``lossk._dispatch``): IEEE arithmetic without warnings.

    For NumPy, and the libraries that compute with it (array-api-strict), ``np.errstate`` ignoring divide,
    invalid and overflow: ``log(0) = -inf``, ``0 / 0 = NaN`` and a float16 overflow to ``inf`` are silent, as in
    PyTorch. The values are IEEE's either way; NumPy's default is to warn about them. Other libraries do not
    warn: nothing.
    """
    if array_api_compat.is_numpy_namespace(xp) or array_api_compat.is_array_api_strict_namespace(xp):
        return np.errstate(divide="ignore", invalid="ignore", over="ignore")
    return contextlib.nullcontext()
