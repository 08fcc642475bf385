"""Plain numpy/scipy/scikit-image reference implementations of the seven live processors.

Faithful to ``docs/live-processors-reference.md`` (the DM/BenMillerScripts algorithms and defaults), written the
straightforward way: whole tile stacks, ``numpy.fft``, ``scipy.ndimage``, ``skimage.measure.regionprops``. They are
slow (about 1.2 s per 870² frame for all seven, 2.6 GiB transient memory at 2048²) and exist only as the yardstick
of :mod:`bench.bench_live_processors` and of the agreement tests. Never call them in a live path.

Where the reference material is silent, the choices are those of the fast processors (documented there):
radial profile of the *power* |F|^2 over integer radius bins 0..N/2 of the smaller axis; the colour map's centre
mask is :func:`processing.live.tiles.centre_mask`.
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
import scipy.ndimage as ndi
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

__all__ = ["ref_copy", "ref_noise_reduction", "RefLiveDifference", "RefRegion", "ref_threshold_tracking",
           "ref_tile_stack_power", "ref_max_fft", "ref_radial_profile", "RefOrientation", "ref_orientation_map"]

F32 = NDArray[np.float32]


def ref_copy(data: F32) -> F32:
    """1. Template: copy of the ROI."""
    return data.copy()


def ref_noise_reduction(data: F32, *, median_size: int = 3, sigma_px: float = 2.0) -> F32:
    """2. Noise reduction: ``median_filter(size=3)`` then ``gaussian_filter(sigma=2)`` (scipy defaults, 'reflect')."""
    return typing.cast(F32, ndi.gaussian_filter(ndi.median_filter(data, size=median_size), sigma=sigma_px))


class RefLiveDifference:
    """3. Live difference: two EWMAs ``avg = p*avg + (1-p)*frame`` with ``p = (N-1)/(N+1)``; output |fast - slow|."""

    def __init__(self, *, n_fast: int = 2, n_slow: int = 20) -> None:
        self.p_fast = (n_fast - 1) / (n_fast + 1)
        self.p_slow = (n_slow - 1) / (n_slow + 1)
        self.fast: F32 | None = None
        self.slow: F32 | None = None

    def __call__(self, data: F32) -> F32:
        if self.fast is None or self.slow is None:
            self.fast = data.copy()
            self.slow = data.copy()
        else:
            self.fast = self.p_fast * self.fast + (1 - self.p_fast) * data
            self.slow = self.p_slow * self.slow + (1 - self.p_slow) * data
        return typing.cast(F32, np.abs(self.fast - self.slow))


@dataclasses.dataclass(frozen=True)
class RefRegion:
    """4. Threshold result: threshold, cleaned mask (H, W) bool, the largest region's centroid (y, x) px, area px,
    convex area px (None when no region)."""

    threshold: float
    mask: NDArray[np.bool_]
    centroid_px: tuple[float, float] | None
    area_px: int
    area_convex_px: int


def ref_threshold_tracking(data: F32, *, radius_px: int = 2, dark: bool = False,
                           smooth_sigma_px: float = 0.0) -> RefRegion:
    """4. Otsu threshold, binary opening then closing with ``disk(radius)`` (skimage's border mode 'ignore'),
    8-connected labels, largest region by area -> centroid and ``area_convex`` (regionprops). Options of the fast
    processor: ``smooth_sigma_px`` (``gaussian_filter`` first) and ``dark`` (threshold ``-data``)."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label, regionprops
    from skimage.morphology import disk

    if smooth_sigma_px > 0:
        data = ndi.gaussian_filter(data, smooth_sigma_px)
    if dark:
        data = -data
    threshold = float(threshold_otsu(data))  # type: ignore[no-untyped-call]
    mask = data > threshold
    fp = disk(radius_px).astype(bool)  # type: ignore[no-untyped-call]
    mask = ndi.binary_dilation(ndi.binary_erosion(mask, fp, border_value=1), fp, border_value=0)
    mask = ndi.binary_erosion(ndi.binary_dilation(mask, fp, border_value=0), fp, border_value=1)
    regions = regionprops(label(mask))  # type: ignore[no-untyped-call]
    if not regions:
        return RefRegion(threshold, mask, None, 0, 0)
    largest = max(regions, key=lambda r: r.area)
    cy, cx = largest.centroid
    return RefRegion(threshold, mask, (float(cy), float(cx)), int(largest.area), int(largest.area_convex))


def ref_tile_stack_power(data: F32, *, tile_px: int = 128, step_px: int = 32) -> F32:
    """(n_y, n_x, T, T) float32 ``fftshift(|fft2(sqrt-Hann window * tiles)|**2)`` of the strided tile view."""
    h, w = data.shape
    n_y, n_x = (h - tile_px) // step_px + 1, (w - tile_px) // step_px + 1
    s0, s1 = data.strides
    tiles = as_strided(data, shape=(n_y, n_x, tile_px, tile_px), strides=(s0 * step_px, s1 * step_px, s0, s1),
                       writeable=False)
    window = np.sqrt(np.outer(np.hanning(tile_px), np.hanning(tile_px))).astype(np.float32)
    spectra = np.fft.fft2(window * tiles)
    return typing.cast(F32, np.fft.fftshift(np.abs(spectra) ** 2, axes=(2, 3)).astype(np.float32))


def ref_max_fft(data: F32, *, tile_px: int = 128, step_px: int = 32) -> F32:
    """5. Max-FFT: ``log(fftshift(|fft2(window*tiles)|**2)).max(axis=(0, 1))``, (T, T) float32."""
    with np.errstate(divide="ignore"):
        return typing.cast(F32, np.log(ref_tile_stack_power(data, tile_px=tile_px, step_px=step_px)).max(axis=(0, 1)))


def ref_radial_profile(data: F32, *, statistic: str = "mean") -> NDArray[np.float64]:
    """6. Radial profile of the FFT power: ``|fftshift(fft2(frame))|**2`` averaged (or maximised) over integer
    radius bins; bin b holds spatial frequencies [b, b+1)/N cycles/px, N = min(H, W); bins 0..N//2."""
    h, w = data.shape
    n = min(h, w)
    power = np.abs(np.fft.fftshift(np.fft.fft2(data))) ** 2
    y, x = np.indices((h, w))
    q = ((y - h // 2) * w).astype(np.float64) ** 2 + ((x - w // 2) * h).astype(np.float64) ** 2
    r = np.floor(np.sqrt(q) * n / (h * w)).astype(np.int64)
    n_bins = n // 2 + 1
    if statistic == "max":
        out = np.zeros(int(r.max()) + 1)
        np.maximum.at(out, r.ravel(), power.ravel().astype(np.float64))
        return out[:n_bins]
    sums = np.bincount(r.ravel(), power.ravel().astype(np.float64))
    counts = np.bincount(r.ravel())
    profile: NDArray[np.float64] = (sums / counts)[:n_bins]
    return profile


@dataclasses.dataclass(frozen=True)
class RefOrientation:
    """7. Per-tile peak (n_y, n_x): orientation deg [0, 180), spacing cycles/px, intensity (smoothed log power)."""

    theta_deg: F32
    spacing_cpp: F32
    intensity: F32


def ref_orientation_map(data: F32, *, tile_px: int = 128, step_px: int = 32, mask_percent: float = 10.0,
                        bar_width_px: int = 2, pre_filter: bool = True) -> RefOrientation:
    """7. FFT colour map (BenMillerScripts ``FFTArrayAnalysis``): log power cube, 5x5 Gaussian (sigma 1, truncate
    2), centre mask set to ``median(min over tiles)``, peak in the upper half (rows 0..T/2-1), first maximum."""
    from processing.live.tiles import centre_mask

    cube = np.log(ref_tile_stack_power(data, tile_px=tile_px, step_px=step_px))
    if pre_filter:
        cube = ndi.gaussian_filter(cube, sigma=(0, 0, 1, 1), truncate=2)
    mask = centre_mask(tile_px, mask_percent, bar_width_px)
    cube[:, :, mask] = np.median(cube.min(axis=(0, 1)))
    h = tile_px // 2
    upper = cube[:, :, :h, :].reshape(cube.shape[0], cube.shape[1], -1)
    idx = upper.argmax(axis=2)
    row, col = np.divmod(idx, tile_px)
    x = (col - h).astype(np.float64)
    y = -(row - h).astype(np.float64)
    theta = np.degrees(np.arctan2(y, x)) % 180.0
    spacing = np.hypot(x, y) / tile_px
    intensity = upper.max(axis=2)
    return RefOrientation(theta.astype(np.float32), spacing.astype(np.float32), intensity.astype(np.float32))
