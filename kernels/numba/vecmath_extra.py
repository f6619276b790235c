"""A NaN-propagating maximum that LLVM vectorises as a reduction.

``max(a, b)`` and ``a if a > b else b`` lower to compare-and-select, which LLVM does not turn into a
vector max reduction (the select carries no fast-math flags), so a row maximum runs one scalar compare
per element. The ``llvm.maximum`` intrinsic is IEEE 754-2019 ``maximum``: NaN if either operand is NaN,
+0 above -0; LLVM vectorises a loop reducing with it (about 10x faster than the select on AVX2).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def maximum(typingctx, a, b):
    """The larger of two floats of one type; NaN if either is NaN (``llvm.maximum``)."""
    if a != b or a not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        value_type = args[0].type
        function_type = ir.FunctionType(value_type, [value_type, value_type])
        function = builder.module.declare_intrinsic("llvm.maximum", [value_type], function_type)
        return builder.call(function, args)

    return a(a, b), codegen
