"""Shared tile-FFT engine: one pass over overlapping windowed tiles feeds Max-FFT and the orientation map.

Tiles are ``tile_px`` squares every ``step_px`` (the reference's strided view: ``n = (W - T)//step + 1`` per axis),
windowed by the separable sqrt-Hann window ``sqrt(outer(hanning(T), hanning(T)))``. Per tile the engine yields the
power spectrum ``|fft2(window * tile)|**2`` (float32) and reduces it at once (nothing the size of the tile stack is
ever stored):

* the per-pixel maximum over all tiles (Max-FFT),
* optionally the reference colour-map peak of each tile (orientation, spacing, strength; see :class:`PeakSpec`).

How (same numbers as the plain per-tile FFT up to float32 rounding):

* **row sharing**: the window is separable, so each ``T``-long row segment times ``w_x`` gets one real FFT that
  the ``T/step`` vertically overlapping tiles reuse (kept in a ring buffer of ``T`` rows); ``w_y`` is applied
  afterwards (linearity), then one ``T``-point complex FFT per column. In ring order a tile's rows are circularly
  rotated, which only changes the phase, never the power.
* **half plane**: only ``kx = 0..T/2`` is computed (real input); the rest follows from Hermitian symmetry.
* **in cache**: one numba kernel per row of tiles does, tile by tile, the gather with ``w_y``, a radix-2/4 column
  FFT vectorised across the ``T/2+1`` columns (T must be a power of two), the power, the running maximum and the
  peak search (fast float32 log, float32 5-tap smoothing), all in ~200 KiB of per-tile scratch (L2).
* **two cores**: bands of tile rows are tasks of a :class:`processing.execution.parallel.TaskGroup`; every kernel releases
  the GIL (numba ``nogil``, ``scipy.fft`` with ``workers=1``). :class:`TilePassJob` lets several processors
  (Max-FFT and the orientation map, via ``Context.memo``) work on the same pass instead of waiting for it.

Memory per frame: ~1 MiB of row blocks per band plus the (T, n_x, T/2+1) ring per thread (4 MiB at T=128,
2048 px wide), kept per thread between frames.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import threading
import typing

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from processing import warmup
from processing.live import _kernels
from processing.execution import parallel
from processing.base import InputError, ParameterError

__all__ = ["PeakSpec", "TilePass", "tile_grid", "MIN_TILE_PX", "SAFE_MAGNITUDE", "overflow_safe", "tile_size_advice", "flat_tiles", "sqrt_hann", "centre_mask", "gaussian_taps", "tile_pass",
           "full_shifted_plane", "frequency_calibration_scale", "TilePassJob"]

F32 = NDArray[np.float32]

#: minimum tile rows per band task: larger bands repeat fewer row FFTs at band edges (each band recomputes T - step
#: image rows), smaller ones balance the cores better
BAND_TILE_ROWS = 4

#: smallest tile the processors accept (their ``tile_size_px`` parameter minimum)
MIN_TILE_PX = 16

#: frames whose largest |value| exceeds this are scaled by an exact power of two before any FFT: a T x T tile's
#: power is at most (T**2 max|x|)**2, which overflows float32 (3.4e38) from max|x| ~ 1e13 at T = 1024; the log
#: outputs are corrected by the exact factor (:func:`overflow_safe`)
SAFE_MAGNITUDE = 2.0 ** 30


def overflow_safe(data: F32) -> tuple[F32, float]:
    """``(data * 2**-k, 2 k ln 2)``: the frame scaled so max|x| <= SAFE_MAGNITUDE (k = 0, the same array, for
    ordinary data) and what to add to a natural-log power computed from the scaled frame. Exact (power of two),
    so finite data up to float32's maximum gives finite, correct log powers. NaN/inf data is returned unchanged
    (the callers report it)."""
    hi = max(float(np.max(data)), -float(np.min(data))) if data.size else 0.0
    if not math.isfinite(hi) or hi <= SAFE_MAGNITUDE:
        return data, 0.0
    k = math.frexp(hi)[1] - 30
    return typing.cast(F32, data * np.float32(2.0 ** -k)), 2.0 * k * math.log(2.0)


def tile_size_advice(shape: tuple[int, int], tile_px: int) -> str:
    """The sentence telling the user what to do when a (H, W) frame is smaller than one ``tile_px`` tile."""
    h, w = shape
    side = min(h, w)
    if side >= MIN_TILE_PX:
        best = 1 << (side.bit_length() - 1)  # largest power of two that fits
        return (f"the frame ({h}x{w} px) is smaller than one {tile_px} px tile; choose a tile size of at most "
                f"{best} px (a power of two) or enlarge the region of interest.")
    return (f"the frame ({h}x{w} px) is too small for the tile FFT: the smallest tile is {MIN_TILE_PX} px, so the "
            f"region of interest must be at least {MIN_TILE_PX}x{MIN_TILE_PX} px; enlarge it (or remove it to use "
            f"the whole frame).")


@dataclasses.dataclass(frozen=True)
class PeakSpec:
    """The reference colour map's per-tile peak search (BenMillerScripts ``FFTArrayAnalysis`` defaults).

    mask_percent: diameter of the masked centre disc in % of the tile (radius ``int(mask_percent/100 * T/2)`` px).
    bar_width_px: ``maskC_width``; the horizontal and vertical bars through the centre are ``2*w-1`` px wide.
    smooth: the 5x5 Gaussian pre-filter (sigma 1 px, truncate 2) on the log power before the search.
    """

    mask_percent: float = 10.0
    bar_width_px: int = 2
    smooth: bool = True


@dataclasses.dataclass(frozen=True)
class TilePass:
    """Result of one tile pass.

    max_power_half: (T, T//2+1) float32, per-pixel maximum of |F|^2 over all tiles, unshifted half plane.
    theta_deg, spacing_cpp, strength: (n_y, n_x) float32 per tile (None without a :class:`PeakSpec`): the peak's
    orientation in degrees [0, 180) (counter-clockwise from +x with y up), its spatial frequency in cycles/px, and
    the smoothed natural-log power at the peak (of the frame as given: corrected by ``log_gain``).
    log_gain: add it to ``log(max_power_half)`` to get the frame's log power (non-zero only for frames scaled by
    :func:`overflow_safe`). flat: (n_y, n_x) bool, True for exactly flat tiles (all pixels equal, e.g. behind a
    beam stop): their strength is float rounding or the FLT_MIN floor, not a measurement (:func:`flat_tiles`).
    """

    tile_px: int
    step_px: int
    grid: tuple[int, int]
    max_power_half: F32
    theta_deg: F32 | None = None
    spacing_cpp: F32 | None = None
    strength: F32 | None = None
    log_gain: float = 0.0
    flat: NDArray[np.bool_] | None = None


def flat_tiles(data: F32, tile_px: int, step_px: int, grid: tuple[int, int]) -> NDArray[np.bool_]:
    """(n_y, n_x) bool: True where every pixel of the tile has the same value. One pass of block minima and maxima
    over blocks of gcd(T, step) px (tiles are unions of whole blocks), then the tiles' extremes from the small block
    grid: ~1 ms at 1024² with the default tiling."""
    g = math.gcd(tile_px, step_px)
    n_y, n_x = grid
    h, w = (n_y - 1) * step_px + tile_px, (n_x - 1) * step_px + tile_px
    blocks = np.ascontiguousarray(data[:h, :w]).reshape(h // g, g, w // g, g)
    lo, hi = blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3))
    k, s = tile_px // g, step_px // g
    window = np.lib.stride_tricks.sliding_window_view
    tile_lo = window(lo, (k, k))[::s, ::s].min(axis=(2, 3))[:n_y, :n_x]
    tile_hi = window(hi, (k, k))[::s, ::s].max(axis=(2, 3))[:n_y, :n_x]
    return typing.cast(NDArray[np.bool_], tile_lo == tile_hi)


def tile_grid(shape: tuple[int, int], tile_px: int, step_px: int) -> tuple[int, int]:
    """Number of tiles (n_y, n_x) of a (H, W) frame; :class:`InputError` if the frame is smaller than one tile."""
    if tile_px < 8 or tile_px & (tile_px - 1):
        raise ParameterError(f"tile size {tile_px} px must be a power of two of at least 8 px; use e.g. 128.")
    if step_px < 1:
        raise ParameterError(f"tile step {step_px} px must be at least 1 px; use e.g. 32.")
    h, w = shape
    if h < tile_px or w < tile_px:
        raise InputError(tile_size_advice(shape, tile_px))
    return (h - tile_px) // step_px + 1, (w - tile_px) // step_px + 1


@functools.lru_cache(maxsize=16)
def sqrt_hann(tile_px: int) -> F32:
    """The 1-D factor of the reference window, ``sqrt(hanning(T))`` as float32 (T,); read-only."""
    w = np.sqrt(np.hanning(tile_px)).astype(np.float32)
    w.flags.writeable = False
    return w


@functools.lru_cache(maxsize=16)
def centre_mask(tile_px: int, mask_percent: float, bar_width_px: int) -> NDArray[np.bool_]:
    """(T, T) bool, True where the reference masks the fftshifted plane: the disc of radius
    ``int(mask_percent/100 * T/2)`` px around (T/2, T/2) and the two bars ``2*bar_width_px - 1`` px wide."""
    h = tile_px // 2
    radius = int(mask_percent / 100.0 * h)
    yy, xx = np.mgrid[0:tile_px, 0:tile_px]
    mask = (yy - h) ** 2 + (xx - h) ** 2 <= radius ** 2
    if bar_width_px > 0:
        mask |= np.abs(yy - h) <= bar_width_px - 1
        mask |= np.abs(xx - h) <= bar_width_px - 1
    mask.flags.writeable = False
    return typing.cast(NDArray[np.bool_], mask)


@functools.lru_cache(maxsize=4)
def gaussian_taps(sigma: float = 1.0, truncate: float = 2.0) -> NDArray[np.float64]:
    """scipy.ndimage's 1-D Gaussian weights (float64); 5 taps for the defaults."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / sigma ** 2 * x ** 2)
    return typing.cast(NDArray[np.float64], phi / phi.sum())


def full_shifted_plane(half: F32) -> F32:
    """The fftshifted (T, T) plane of a real-input spectrum given as its unshifted half plane (T, T//2+1)."""
    t = half.shape[0]
    full = np.empty((t, t), half.dtype)
    full[:, :t // 2 + 1] = half
    ky = (-np.arange(t)) % t
    kx = t - np.arange(t // 2 + 1, t)
    full[:, t // 2 + 1:] = half[ky][:, kx]
    return typing.cast(F32, np.fft.fftshift(full))


def frequency_calibration_scale(tile_px: int, pixel_size: float) -> float:
    """Spatial-frequency step of a T-point FFT: 1 / (T * pixel_size) (1/units of the pixel size)."""
    return 1.0 / (tile_px * pixel_size) if pixel_size else 1.0 / tile_px


class _ThreadBuffers(threading.local):
    def __init__(self) -> None:
        self.store: dict[tuple[typing.Any, ...], np.ndarray] = {}

    def get(self, key: tuple[typing.Any, ...], shape: tuple[int, ...], dtype: typing.Any) -> np.ndarray:
        full_key = key + (shape, np.dtype(dtype).str)
        buf = self.store.get(full_key)
        if buf is None:
            if len(self.store) > 16:
                self.store.clear()
            buf = np.empty(shape, dtype)
            self.store[full_key] = buf
        return buf


_buffers = _ThreadBuffers()


@dataclasses.dataclass
class _Job:
    data: F32
    tile_px: int
    step_px: int
    grid: tuple[int, int]
    peaks: PeakSpec | None
    negmask: F32
    gauss: NDArray[np.float64]
    theta: F32
    spacing: F32
    strength: F32
    wy: F32


def _band(job: _Job, band: tuple[int, int]) -> F32:
    """Tile rows [i0, i1) of the frame; returns the band's (T, Kx) running maximum of |F|^2."""
    i0, i1 = band
    t, step = job.tile_px, job.step_px
    n_x = job.grid[1]
    kx = t // 2 + 1
    wx = sqrt_hann(t)
    wy = job.wy
    ring = _buffers.get(("ring",), (t, n_x, kx), np.complex64)
    ringf = ring.view(np.float32)
    rows = _buffers.get(("rows",), (min(t, 32), n_x, t), np.float32)
    max_power = np.zeros((t, kx), np.float32)
    filled = i0 * step  # next image row to transform
    want = job.peaks is not None
    smooth = bool(job.peaks is not None and job.peaks.smooth)
    bitrev, tw_re, tw_im = _fft_tables(t)
    for i in range(i0, i1):
        y0 = i * step
        start = max(filled, y0)
        while start < y0 + t:  # row FFTs of the rows this tile row adds
            stop = min(y0 + t, start + rows.shape[0])
            block = rows[:stop - start]
            if _kernels.window_rows(job.data, start, stop, step, n_x, wx, block):
                raise InputError("the frame contains NaN or infinite pixels inside the tiles; the tile FFTs need "
                                 "finite data: mask or replace the bad (dead or saturated) pixels first.")
            _kernels.store_ring(scipy.fft.rfft(block, axis=-1, workers=1), start, ring)
            start = stop
        filled = y0 + t
        _kernels.tile_row(ringf, np.roll(wy, y0 % t), bitrev, tw_re, tw_im, max_power, want, job.negmask, job.gauss,
                          smooth, job.theta, job.spacing, job.strength, i)
    return max_power


@functools.lru_cache(maxsize=8)
def _fft_tables(tile_px: int) -> tuple[NDArray[np.int64], F32, F32]:
    """Bit-reversal permutation and twiddles exp(-2 pi i q / T), q < T/2 (float32), of the radix-2 column FFT."""
    bits = tile_px.bit_length() - 1
    bitrev = np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(tile_px)], np.int64)
    q = np.arange(tile_px // 2)
    tw = np.exp(-2j * np.pi * q / tile_px)
    return bitrev, tw.real.astype(np.float32), tw.imag.astype(np.float32)


class TilePassJob:
    """One frame's tile pass as a shareable job: every thread calling :meth:`result` works on its bands (so two
    processors sharing the pass through ``Context.memo`` both compute instead of one waiting). Validation errors
    are raised by the constructor."""

    def __init__(self, data: F32, *, tile_px: int = 128, step_px: int = 32, peaks: PeakSpec | None = None,
                 band_tile_rows: int | None = None) -> None:
        grid = tile_grid(typing.cast(tuple[int, int], data.shape), tile_px, step_px)
        n_y, n_x = grid
        data, self._log_gain = overflow_safe(np.ascontiguousarray(data, dtype=np.float32))
        if peaks is not None:
            if not 0.0 <= peaks.mask_percent <= 90.0:
                raise ParameterError(f"centre mask {peaks.mask_percent} % must be within [0, 90] %.")
            masked = centre_mask(tile_px, float(peaks.mask_percent), int(peaks.bar_width_px))[:tile_px // 2]
            negmask = np.where(masked, np.float32(-np.inf), np.float32(0.0)).astype(np.float32)
            if masked.all():
                raise ParameterError(f"the centre mask ({peaks.mask_percent} %, bars {peaks.bar_width_px} px) "
                                     f"covers the whole upper half of a {tile_px} px tile; reduce it.")
            theta = np.empty(grid, np.float32)
            spacing = np.empty(grid, np.float32)
            strength = np.empty(grid, np.float32)
        else:
            negmask = np.zeros((tile_px // 2, tile_px), np.float32)
            theta = spacing = strength = np.empty((1, 1), np.float32)
        self._job = _Job(data, tile_px, step_px, grid, peaks, negmask, gaussian_taps(), theta, spacing, strength,
                         sqrt_hann(tile_px).astype(np.float32))
        if band_tile_rows is None:  # ~2 bands per worker, at least BAND_TILE_ROWS rows (band edges repeat row FFTs)
            band_tile_rows = max(BAND_TILE_ROWS, -(-n_y // (2 * parallel.workers())))
        per_band = max(1, int(band_tile_rows))
        bands = [(i, min(n_y, i + per_band)) for i in range(0, n_y, per_band)]
        self._group = parallel.TaskGroup(lambda b: _band(self._job, b), bands)
        self._lock = threading.Lock()
        self._result: TilePass | None = None

    def result(self) -> TilePass:
        partial = self._group.join()
        with self._lock:
            if self._result is None:
                self._result = self._merge(partial)
            return self._result

    def _merge(self, partial: list[F32]) -> TilePass:
        job = self._job
        max_power = partial[0].copy()
        for p in partial[1:]:
            np.maximum(max_power, p, out=max_power)
        if job.peaks is None:
            return TilePass(job.tile_px, job.step_px, job.grid, max_power, log_gain=self._log_gain)
        bad = job.theta < 0
        if bad.any():
            job.theta[bad] = np.nan
            job.spacing[bad] = np.nan
            job.strength[bad] = np.nan
        flat = flat_tiles(job.data, job.tile_px, job.step_px, job.grid)
        if self._log_gain:
            job.strength += np.float32(self._log_gain)
        return TilePass(job.tile_px, job.step_px, job.grid, max_power, job.theta, job.spacing, job.strength,
                        self._log_gain, flat)


def tile_pass(data: F32, *, tile_px: int = 128, step_px: int = 32, peaks: PeakSpec | None = None,
              band_tile_rows: int | None = None) -> TilePass:
    """Run the tile engine on a validated float32 (H, W) frame (see the module docstring).

    Raises :class:`InputError` when the frame is smaller than one tile. The returned maps are in tile units; NaN
    input gives NaN outputs (callers check).
    """
    return TilePassJob(data, tile_px=tile_px, step_px=step_px, peaks=peaks, band_tile_rows=band_tile_rows).result()


def _warm_up_kernels() -> None:
    """The tile-pass kernels (with and without the peak search) on writable and read-only frames."""
    frame = np.random.default_rng(0).normal(size=(48, 40)).astype(np.float32)
    frame[10:20, 12:22] += 5.0
    readonly = frame.copy()
    readonly.flags.writeable = False
    for data in (frame, readonly):
        tile_pass(data, tile_px=16, step_px=8, peaks=PeakSpec())
        tile_pass(data, tile_px=16, step_px=8, peaks=None)


warmup.register("processing.live.tiles", _warm_up_kernels)
