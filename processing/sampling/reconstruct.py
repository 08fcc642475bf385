"""Reconstruction of a full SI from a sparse one: inpainting in the PCA subspace, and a TV-regularised version.

Both work in the PCA subspace of the sampled spectra (a streaming PCA refined to the batch result,
:mod:`processing.decomposition.pca`): the k score maps are known at the sampled pixels only.

* :func:`inpaint_pca` (fast): the score maps are interpolated (Delaunay-linear, nearest outside the hull) and the SI
  is rebuilt as ``mean + scores V``; the noise outside the k components is gone (PCA denoising) as well.
* :func:`inpaint_tv` (regularised, better on piecewise-smooth specimens): every score map minimises
  ``1/2 sum_sampled (u - s)^2 + lambda HuberTV_alpha(u)`` (isotropic total variation, quadratic for gradients below
  ``alpha``, so smooth thickness variations are interpolated smoothly and interfaces stay sharp; Chambolle-Pock
  primal-dual, started from the linear interpolation; Chambolle & Pock 2011, DOI 10.1007/s10851-010-0251-1),
  ``lambda = tv_weight * std(s)``, ``alpha = huber * std(s)``. Defaults (0.01, 3.0) were chosen on one two-phase
  simulation (seed 0); bench/bench_sparse.py measures other seeds.

Positions are (row, column) pixels (see :mod:`processing.sampling.patterns`).
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
import scipy.interpolate
from numpy.typing import NDArray

from processing.base import InputError, ParameterError
from processing.decomposition._validate import check_components
from processing.decomposition.pca import PCAModel, StreamingPCA
from processing.sampling.patterns import check_positions

__all__ = ["SparseReconstruction", "inpaint_pca", "inpaint_tv", "interpolate_maps", "tv_inpaint_maps"]

F64 = NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class SparseReconstruction:
    """si: (ny, nx, d) reconstructed counts; score_maps: (ny, nx, k); mask: (ny, nx) sampled pixels; model: the
    PCA of the sampled spectra; method: "pca" | "tv"."""

    si: NDArray[np.float32]
    score_maps: F64
    mask: NDArray[np.bool_]
    model: PCAModel
    method: str


def _check(spectra: typing.Any, positions: typing.Any, shape: typing.Sequence[int]
           ) -> tuple[NDArray[np.float32], NDArray[np.int64], tuple[int, int]]:
    x = np.asarray(spectra, np.float32)
    p = check_positions(positions, shape)
    if x.ndim != 2 or x.shape[0] != p.shape[0]:
        raise InputError(f"spectra must be (m, d) with one spectrum per position; got {x.shape} for "
                         f"{p.shape[0]} positions.")
    if not np.isfinite(x).all():
        raise InputError("the sparse spectra contain NaN/inf; leave out positions that were not acquired.")
    flat = p[:, 0] * int(shape[1]) + p[:, 1]
    if np.unique(flat).size != flat.size:
        raise InputError("a position appears twice; average the repeated spectra first (one spectrum per pixel).")
    return x, p, (int(shape[0]), int(shape[1]))


def _pca(x: NDArray[np.float32], n_components: int, poisson: bool, seed: int) -> PCAModel:
    k = check_components(n_components, x.shape[0], x.shape[1])
    pca = StreamingPCA(x.shape[1], n_components=k, poisson=poisson, seed=seed)
    for block in np.array_split(x, max(1, x.shape[0] // 256)):
        pca.partial_fit(block)
    return pca.refined_model(x)


def interpolate_maps(values: F64, positions: NDArray[np.int64], shape: tuple[int, int]) -> F64:
    """Values (m, c) known at positions -> (ny, nx, c) maps: Delaunay-linear inside the hull, nearest outside."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    grid = np.stack([yy.ravel(), xx.ravel()], axis=-1).astype(np.float64)
    pts = positions.astype(np.float64)
    if positions.shape[0] >= 3 and np.linalg.matrix_rank(pts - pts.mean(axis=0)) == 2:
        out = scipy.interpolate.LinearNDInterpolator(pts, values)(grid)
    else:
        out = np.full((grid.shape[0], values.shape[1]), np.nan)
    missing = ~np.isfinite(out).all(axis=1)
    if missing.any():
        out[missing] = scipy.interpolate.NearestNDInterpolator(pts, values)(grid[missing])
    return np.asarray(out.reshape(ny, nx, values.shape[1]), np.float64)


def _grad(u: F64) -> tuple[F64, F64]:
    gy = np.zeros_like(u)
    gx = np.zeros_like(u)
    gy[:-1] = u[1:] - u[:-1]
    gx[:, :-1] = u[:, 1:] - u[:, :-1]
    return gy, gx


def _div(py: F64, px: F64) -> F64:
    d = np.zeros_like(py)
    d[:-1] += py[:-1]
    d[1:] -= py[:-1]
    d[:, :-1] += px[:, :-1]
    d[:, 1:] -= px[:, :-1]
    return d


def tv_inpaint_maps(values: F64, positions: NDArray[np.int64], shape: tuple[int, int], *, tv_weight: float = 0.01,
                    huber: float = 3.0, n_iter: int = 300) -> F64:
    """TV-regularised inpainting of maps (see module doc): values (m, c) at positions -> (ny, nx, c)."""
    if not (tv_weight >= 0 and np.isfinite(tv_weight)):
        raise ParameterError(f"tv_weight must be >= 0; got {tv_weight!r}.")
    ny, nx = shape
    mask = np.zeros((ny, nx), bool)
    mask[positions[:, 0], positions[:, 1]] = True
    start = interpolate_maps(values, positions, shape)
    out = np.empty_like(start)
    tau = sigma = 0.35                                     # tau sigma ||grad||^2 <= 1 (||grad||^2 <= 8)
    for c in range(values.shape[1]):
        data = np.zeros((ny, nx))
        data[positions[:, 0], positions[:, 1]] = values[:, c]
        spread = float(np.std(values[:, c])) + 1e-12
        lam = tv_weight * spread
        alpha = huber * spread / lam                        # Huber threshold huber * spread, dual scaling
        u = start[..., c].copy()
        u_bar = u.copy()
        py = np.zeros_like(u)
        px = np.zeros_like(u)
        m = mask.astype(np.float64)
        for _ in range(int(n_iter)):
            gy, gx = _grad(u_bar)
            py = (py + sigma * gy) / (1.0 + sigma * alpha)    # Huber-TV: quadratic below alpha
            px = (px + sigma * gx) / (1.0 + sigma * alpha)
            norm = np.maximum(1.0, np.hypot(py, px) / lam)
            py /= norm
            px /= norm
            u_old = u
            v = u + tau * _div(py, px)
            u = (v + tau * m * data) / (1.0 + tau * m)     # prox of the data term (sampled pixels only)
            u_bar = 2 * u - u_old
        out[..., c] = u
    return out


def _rebuild(model: PCAModel, maps: F64, weights: F64 | None, shape: tuple[int, int]) -> NDArray[np.float32]:
    ny, nx = shape
    k = maps.shape[-1]
    y = model.mean + maps.reshape(-1, k) @ model.components[:k]
    x = y / model.channel_weight[None, :]
    if weights is not None:
        x = x / np.maximum(weights.reshape(-1, 1), 1e-12)
    return np.asarray(x.reshape(ny, nx, -1), np.float32)


def _reconstruct(spectra: typing.Any, positions: typing.Any, shape: typing.Sequence[int], *, n_components: int,
                 poisson: bool, seed: int, method: str, tv_weight: float, huber: float,
                 n_iter: int) -> SparseReconstruction:
    x, p, field = _check(spectra, positions, shape)
    model = _pca(x, n_components, poisson, seed)
    k = model.components.shape[0]
    scores = model.transform(x, k)
    values = np.hstack([scores, model.row_weight(x)[:, None]]) if poisson else scores
    if method == "tv":
        maps = tv_inpaint_maps(values, p, field, tv_weight=tv_weight, huber=huber, n_iter=n_iter)
    else:
        maps = interpolate_maps(values, p, field)
    weights = maps[..., k] if poisson else None
    mask = np.zeros(field, bool)
    mask[p[:, 0], p[:, 1]] = True
    return SparseReconstruction(si=_rebuild(model, maps[..., :k], weights, field), score_maps=maps[..., :k],
                                mask=mask, model=model, method=method)


def inpaint_pca(spectra: typing.Any, positions: typing.Any, shape: typing.Sequence[int], *, n_components: int = 3,
                poisson: bool = False, seed: int = 0) -> SparseReconstruction:
    """Full SI (ny, nx, d) from spectra (m, d) at positions (m, 2) by interpolation in the PCA subspace."""
    return _reconstruct(spectra, positions, shape, n_components=n_components, poisson=poisson, seed=seed,
                        method="pca", tv_weight=0.0, huber=0.0, n_iter=0)


def inpaint_tv(spectra: typing.Any, positions: typing.Any, shape: typing.Sequence[int], *, n_components: int = 3,
               poisson: bool = False, tv_weight: float = 0.01, huber: float = 3.0, n_iter: int = 300,
               seed: int = 0) -> SparseReconstruction:
    """Full SI (ny, nx, d) from spectra (m, d) at positions (m, 2), TV-regularised score maps."""
    return _reconstruct(spectra, positions, shape, n_components=n_components, poisson=poisson, seed=seed,
                        method="tv", tv_weight=tv_weight, huber=huber, n_iter=n_iter)
