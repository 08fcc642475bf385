"""Live processors: the frame-by-frame algorithms behind the live processors and their numba kernels."""
