"""Fused CPU kernels in Numba: loss and gradient in one pass over memory, parallel over cores."""
