"""lossk's fused kernels, installed as ``lossk._kernels``: Numba modules (``numba/``) and CUDA C sources (``cuda/``).

Nothing here compiles at import: Numba kernels compile on first use (and are cached on disk), CUDA
sources are read through ``importlib.resources`` and compiled by CuPy on first use.
"""
