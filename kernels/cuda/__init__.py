"""CUDA C sources of the fused GPU kernels, compiled by CuPy on first use."""
