"""numba kernel of the TV proximal step (FGP, Beck & Teboulle 2009): the hot loop of fusion, fused per pixel.

Same algorithm and boundary conventions as :func:`processing.fusion.model.tv_prox_numpy` (the reference the
tests compare it with): forward differences with a zero difference across the last row/column, isotropic
projection of the dual onto the unit ball, FISTA momentum on the dual, non-negativity. ``@njit(cache=True,
nogil=True)``: compiled once per machine (disk cache), runs without the GIL.
"""
from __future__ import annotations

import math
import typing

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = ["fgp_tv"]

_F = typing.TypeVar("_F", bound=typing.Callable[..., typing.Any])


def _kernel(fn: _F) -> _F:
    return typing.cast(_F, numba.njit(cache=True, nogil=True, error_model="numpy")(fn))


@_kernel
def _primal(v: NDArray[np.float32], weight: float, qy: NDArray[np.float32], qx: NDArray[np.float32],
            x: NDArray[np.float32]) -> None:
    """x = max(v + weight * div(q), 0)."""
    n, h, w = v.shape
    wt = np.float32(weight)
    for k in range(n):
        for i in range(h):
            for j in range(w):
                d = np.float32(0.0)
                if i < h - 1:
                    d += qy[k, i, j]
                if i > 0:
                    d -= qy[k, i - 1, j]
                if j < w - 1:
                    d += qx[k, i, j]
                if j > 0:
                    d -= qx[k, i, j - 1]
                value = v[k, i, j] + wt * d
                x[k, i, j] = value if value > 0 else np.float32(0.0)


@_kernel
def fgp_tv(v: NDArray[np.float32], weight: float, py: NDArray[np.float32], px: NDArray[np.float32],
           iterations: int, delta: float = 0.0) -> NDArray[np.float32]:
    """argmin_{x >= 0} 1/2 ||x - v||^2 + weight * TV(x) by FGP (``delta`` > 0: the Huber-TV
    sum H_delta(|grad x|) = max_{|p| <= 1} p . grad x - delta/2 |p|^2, the dual step gets the -delta p term);
    ``py``, ``px`` (the dual, (n, H, W)) are the warm start and are updated in place. Returns x (n, H, W) float32."""
    n, h, w = v.shape
    ry = py.copy()
    rx = px.copy()
    x = np.empty_like(v)
    step = np.float32(1.0 / (8.0 * weight + delta))
    dl = np.float32(delta)
    t = 1.0
    for _ in range(iterations):
        _primal(v, weight, ry, rx, x)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = np.float32((t - 1.0) / t_next)
        for k in range(n):
            for i in range(h):
                for j in range(w):
                    gy = x[k, i + 1, j] - x[k, i, j] if i < h - 1 else np.float32(0.0)
                    gx = x[k, i, j + 1] - x[k, i, j] if j < w - 1 else np.float32(0.0)
                    ny = ry[k, i, j] + step * (gy - dl * ry[k, i, j])
                    nx = rx[k, i, j] + step * (gx - dl * rx[k, i, j])
                    norm = math.sqrt(ny * ny + nx * nx)
                    if norm > 1.0:
                        ny = np.float32(ny / norm)
                        nx = np.float32(nx / norm)
                    ry[k, i, j] = ny + beta * (ny - py[k, i, j])
                    rx[k, i, j] = nx + beta * (nx - px[k, i, j])
                    py[k, i, j] = ny
                    px[k, i, j] = nx
        t = t_next
    _primal(v, weight, py, px, x)
    return x

