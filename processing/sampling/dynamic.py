"""Dynamic sampling in the spirit of SLADS (Godaliyadda et al. 2018): a first sparse pass, then batches of
positions where the current reconstruction is least certain.

The "expected reduction in distortion" of measuring pixel q is approximated, without a trained regression, by
``ERD(q) = G(q) * D(q)``: ``G`` the local variation of the reconstructed score maps (gradient magnitude, each map
scaled by its spread, smoothed over 1 px) and ``D`` the distance to the nearest measured pixel (0 where measured).
Each batch takes the largest ERD greedily, blocking a disc around each pick so a batch spreads out. The
acquisition is a callable ``acquire(positions (b, 2)) -> spectra (b, d)`` (the simulated sparse scan, or a real
scan driven position by position), so the policy runs unchanged on the simulator and on a microscope.
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import scipy.ndimage
from numpy.typing import NDArray

from processing.base import ParameterError
from processing.sampling.patterns import check_fraction, jittered_grid_pattern
from processing.sampling.reconstruct import SparseReconstruction, inpaint_pca

__all__ = ["DynamicSampling", "expected_reduction", "next_positions", "dynamic_sampling"]


@dataclasses.dataclass(frozen=True)
class DynamicSampling:
    """positions: (m, 2) in acquisition order; spectra: (m, d); batches: positions per batch (first pass first);
    reconstruction: the PCA inpainting from all of them."""

    positions: NDArray[np.int64]
    spectra: NDArray[np.float32]
    batches: tuple[int, ...]
    reconstruction: SparseReconstruction


def expected_reduction(score_maps: NDArray[np.float64], mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """ERD map (ny, nx) (see module doc); 0 at measured pixels."""
    g = np.zeros(mask.shape)
    for c in range(score_maps.shape[-1]):
        u = score_maps[..., c]
        spread = float(np.std(u)) or 1.0
        gy, gx = np.gradient(u / spread)
        g += gy * gy + gx * gx
    g = scipy.ndimage.gaussian_filter(np.sqrt(g), 1.0)
    dist = scipy.ndimage.distance_transform_edt(~mask)
    return np.asarray((g + 1e-3 * float(g.max() or 1.0)) * dist, np.float64)


def next_positions(erd: NDArray[np.float64], count: int, *, density: float) -> NDArray[np.int64]:
    """``count`` pixels of largest ERD, each blocking a disc of radius ~ half the mean spacing at ``density``."""
    ny, nx = erd.shape
    radius = max(1.0, 0.5 / math.sqrt(max(density, 1e-6)))
    order = np.argsort(erd, axis=None)[::-1]
    blocked = erd <= 0
    picks: list[tuple[int, int]] = []
    r = int(math.ceil(radius))
    for flat in order:
        if len(picks) >= count:
            break
        y, x = divmod(int(flat), nx)
        if blocked[y, x]:
            continue
        picks.append((y, x))
        y0, y1, x0, x1 = max(0, y - r), min(ny, y + r + 1), max(0, x - r), min(nx, x + r + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        blocked[y0:y1, x0:x1] |= (yy - y) ** 2 + (xx - x) ** 2 <= radius * radius
    if len(picks) < count:                                   # discs too large: fill with the best remaining
        taken = {p for p in picks}
        for flat in order:
            if len(picks) >= count:
                break
            y, x = divmod(int(flat), nx)
            if erd[y, x] > 0 and (y, x) not in taken:
                picks.append((y, x))
                taken.add((y, x))
    return np.asarray(picks, np.int64).reshape(-1, 2)


def dynamic_sampling(acquire: typing.Callable[[NDArray[np.int64]], typing.Any], shape: typing.Sequence[int], *,
                     fraction: float, first_fraction: float | None = None, n_batches: int = 4,
                     n_components: int = 3, seed: int = 0) -> DynamicSampling:
    """Acquire ``fraction`` of the field: a jittered first pass (``first_fraction``, default half), then
    ``n_batches`` ERD-chosen batches; returns the positions, spectra and the final reconstruction."""
    f = check_fraction(fraction)
    f0 = check_fraction(first_fraction if first_fraction is not None else f / 2)
    if f0 > f:
        raise ParameterError(f"first_fraction ({f0}) must not exceed fraction ({f}).")
    if int(n_batches) != n_batches or n_batches < 1:
        raise ParameterError(f"n_batches must be a whole number >= 1; got {n_batches!r}.")
    ny, nx = (int(v) for v in shape)
    total = max(1, int(round(f * ny * nx)))
    positions = jittered_grid_pattern((ny, nx), f0, seed=seed)
    spectra = np.asarray(acquire(positions), np.float32)
    batches = [positions.shape[0]]
    remaining = total - positions.shape[0]
    for b in range(int(n_batches)):
        if remaining <= 0:
            break
        count = int(math.ceil(remaining / (n_batches - b)))
        recon = inpaint_pca(spectra, positions, (ny, nx), n_components=n_components, seed=seed)
        new = next_positions(expected_reduction(recon.score_maps, recon.mask), count,
                             density=count / (ny * nx))
        if new.shape[0] == 0:
            break
        spectra = np.vstack([spectra, np.asarray(acquire(new), np.float32)])
        positions = np.vstack([positions, new])
        batches.append(new.shape[0])
        remaining -= new.shape[0]
    recon = inpaint_pca(spectra, positions, (ny, nx), n_components=n_components, seed=seed)
    return DynamicSampling(positions=positions, spectra=spectra, batches=tuple(batches), reconstruction=recon)
