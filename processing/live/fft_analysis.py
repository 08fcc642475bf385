"""FFT analysis processors: Max-FFT, radial-profile kymograph, FFT orientation colour map.

Pure functions (numpy in, numpy out) and the live processors built on them:

* :func:`max_fft` / :class:`MaxFFTProcessor` (``insitu.max_fft``): per-pixel maximum of the power spectra of
  overlapping sqrt-Hann-windowed tiles (128 px every 32 px by default), natural log, fftshifted, with calibrated
  spatial-frequency axes.
* :func:`radial_profile` / :class:`RadialKymographProcessor` (``insitu.radial_kymograph``): the azimuthal mean (or
  maximum) of each frame's FFT power as one column of a kymograph (x = time, y = spatial frequency) with a rolling
  window of frames.
* :func:`orientation_map` / :func:`orientation_rgb` / :class:`OrientationMapProcessor` (``insitu.fft_orientation``):
  each tile's strongest lattice peak (BenMillerScripts ``FFTArrayAnalysis``): orientation 0-180 deg as hue (or its
  spacing), strength as brightness, a colour-wheel legend, optionally blended over the image.

Max-FFT and the orientation map share one tile pass per frame through ``Context.memo`` (see
:func:`shared_tile_pass`). Speed and agreement with :mod:`processing.live.reference`: see ``bench/``.
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
from processing.live import tiles
from processing.base import (Calibration, Context, Frame, ImageOutput, InputError, KymographOutput, Notice,
                             Outputs, Parameter, Processor, RGBImageOutput)

__all__ = ["max_fft", "radial_profile", "RadialProfile", "orientation_map", "OrientationMap", "orientation_rgb",
           "colour_wheel_legend", "spacing_legend", "brightness", "blend_over_image", "shared_tile_pass", "frequency_units",
           "MaxFFTProcessor", "RadialKymographProcessor", "OrientationMapProcessor"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
U8 = NDArray[np.uint8]

_TILE_PARAMETERS = (
    Parameter("tile_size_px", "Tile size", "integral", 128, 16, 1024, "px",
              description="Side of the square tiles (a power of two); about the diameter of the crystalline regions "
                          "to find (see docs/processors-ground-truth.md)."),
    Parameter("step_px", "Tile step", "integral", 32, 1, 1024, "px",
              description="Distance between neighbouring tiles; smaller than the tile size means overlap."),
)


def frequency_units(units: str) -> str:
    """Units of spatial frequency for a spatial calibration in ``units`` ("nm" -> "1/nm", "" -> "1/px")."""
    return f"1/{units}" if units else "1/px"


def _pixel_size(calibration: Calibration) -> float:
    return abs(calibration.scale) if calibration.scale else 1.0


def _check_finite(value: NDArray[typing.Any], what: str) -> None:
    if not np.isfinite(value).all():
        raise InputError(f"{what}: the frame contains NaN or infinite pixels, so the result would be NaN; "
                         f"mask or replace the bad pixels (dead/saturated detector pixels) first.")


def _check_tile_parameters(tile_px: int, step_px: int) -> None:
    if tile_px < 8 or tile_px & (tile_px - 1):
        from processing.base import ParameterError
        raise ParameterError(f"tile size {tile_px} px must be a power of two (16, 32, 64, 128, 256, 512 or 1024); "
                             f"use e.g. 128.")


# ----------------------------------------------------------------------------------------------------------------
# shared tile pass

def _peak_spec_in_demand(tile_px: int, step_px: int, context: Context) -> tiles.PeakSpec | None:
    """The peak spec of an orientation processor fed the same frames with the same tiling (``context.peers``), so
    Max-FFT computes the one pass both use."""
    for p in context.peers:
        if isinstance(p, OrientationMapProcessor) and p.tile_size_px == tile_px and p.step_px == step_px:
            return p.peak_spec
    return None


def shared_tile_pass(frame: Frame, context: Context, *, tile_px: int, step_px: int,
                     peaks: tiles.PeakSpec | None) -> tiles.TilePass:
    """The frame's tile pass, computed once per frame and region and shared through ``context.memo``."""
    key = ("processing.live.tiles.tile_pass", frame.origin_px, frame.shape, tile_px, step_px, peaks)
    job = typing.cast(tiles.TilePassJob, context.memo(
        key, lambda: tiles.TilePassJob(frame.data, tile_px=tile_px, step_px=step_px, peaks=peaks)))
    return job.result()  # every processor sharing the pass works on it: nobody idles waiting


# ----------------------------------------------------------------------------------------------------------------
# Max-FFT

def max_fft_from_pass(tile_pass: tiles.TilePass) -> F32:
    """(T, T) float32 natural log of the per-pixel maximum tile power, fftshifted (zero frequency at T/2)."""
    plane = tiles.full_shifted_plane(tile_pass.max_power_half)
    np.maximum(plane, _kernels.FLT_MIN, out=plane)
    log_plane = np.log(plane)
    if tile_pass.log_gain:  # the frame was scaled down (values near float32's limit): exact correction
        log_plane += np.float32(tile_pass.log_gain)
    return typing.cast(F32, log_plane)


def max_fft(data: F32, *, tile_px: int = 128, step_px: int = 32) -> F32:
    """Max-FFT of a float32 (H, W) frame: ``log(max over tiles of |fft2(sqrt-Hann * tile)|**2)``, (T, T) float32,
    fftshifted. Zero power is clamped to FLT_MIN (log -87.3) instead of -inf.

    Raises :class:`InputError` for frames smaller than one tile or with NaN pixels.
    """
    _check_tile_parameters(tile_px, step_px)
    result = max_fft_from_pass(tiles.tile_pass(np.asarray(data, np.float32), tile_px=tile_px, step_px=step_px))
    _check_finite(result, "Max-FFT")
    return result


def fft_calibrations(tile_px: int, calibrations: tuple[Calibration, Calibration],
                     ) -> tuple[Calibration, Calibration]:
    """Spatial-frequency calibrations (y, x) of an fftshifted T-point spectrum of a frame with ``calibrations``."""
    out = []
    for cal in calibrations:
        scale = tiles.frequency_calibration_scale(tile_px, _pixel_size(cal))
        out.append(Calibration(-(tile_px // 2) * scale, scale, frequency_units(cal.units)))
    return out[0], out[1]


class MaxFFTProcessor(Processor):
    """Max-FFT: the strongest power of every spatial frequency over all overlapping tiles, so a small crystalline
    patch stands out of the background far more than in the full-frame FFT. Log scale, axes in 1/units."""

    processor_id = "insitu.max_fft"
    split = "frame"
    title = "Max FFT"
    description = "Per-pixel maximum of the power spectra of overlapping windowed tiles (log scale)."
    PARAMETERS = _TILE_PARAMETERS
    OUTPUTS = (("image", "image"),)

    tile_size_px: int
    step_px: int

    def __init__(self, **params: typing.Any) -> None:
        super().__init__(**params)
        _check_tile_parameters(self.tile_size_px, self.step_px)
        warmup.warm_up_in_background()

    def process(self, frame: Frame, context: Context) -> Outputs:
        peaks = _peak_spec_in_demand(self.tile_size_px, self.step_px, context)
        tp = shared_tile_pass(frame, context, tile_px=self.tile_size_px, step_px=self.step_px, peaks=peaks)
        result = max_fft_from_pass(tp)
        _check_finite(result, self.title)
        return (ImageOutput("image", result, fft_calibrations(self.tile_size_px, frame.calibrations),
                            "log(power)", "Max FFT"),)


# ----------------------------------------------------------------------------------------------------------------
# radial profile

@dataclasses.dataclass(frozen=True)
class _RadialPlan:
    bins: NDArray[np.int32]      # (H, W//2+1) bin of each half-plane pixel, -1 beyond N/2
    col_weights: F64             # (W//2+1,) 1 or 2 (Hermitian mirror)
    counts: F64                  # (n_bins,) number of full-plane pixels per bin
    n: int


@functools.lru_cache(maxsize=8)
def _radial_plan(h: int, w: int) -> _RadialPlan:
    n = min(h, w)
    kx = w // 2 + 1
    dy = ((np.arange(h) + h // 2) % h) - h // 2
    dx = ((np.arange(kx) + w // 2) % w) - w // 2
    q = (dy[:, None] * w).astype(np.float64) ** 2 + (dx[None, :] * h).astype(np.float64) ** 2
    r = np.floor(np.sqrt(q) * n / (h * w)).astype(np.int64)
    n_bins = n // 2 + 1
    col_weights = np.full(kx, 2.0)
    col_weights[0] = 1.0
    if w % 2 == 0:
        col_weights[-1] = 1.0
    inside = r < n_bins
    counts = np.bincount(r[inside], weights=np.broadcast_to(col_weights, r.shape)[inside],
                         minlength=n_bins).astype(np.float64)
    bins = np.where(inside, r, -1).astype(np.int32)
    for a in (bins, col_weights, counts):
        a.flags.writeable = False
    return _RadialPlan(bins, col_weights, counts, n)


@dataclasses.dataclass(frozen=True)
class RadialProfile:
    """Radial FFT-power profile: values (n_bins,) float64; bin b = spatial frequency b / (N * pixel size)."""

    values: F64
    frequency_step: float
    units: str


class _BufferPool:
    """Reusable complex64 work planes by shape (thread safe), so the frame path does not allocate them anew."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: dict[tuple[int, int], list[NDArray[np.complex64]]] = {}

    def take(self, shape: tuple[int, int]) -> NDArray[np.complex64]:
        with self._lock:
            free = self._free.get(shape)
            if free:
                return free.pop()
            if len(self._free) > 4:
                self._free.clear()
        return np.empty(shape, np.complex64)

    def give(self, buffer: NDArray[np.complex64]) -> None:
        with self._lock:
            free = self._free.setdefault(typing.cast(tuple[int, int], buffer.shape), [])
            if len(free) < 2:
                free.append(buffer)


_half_planes = _BufferPool()


def _radial_rows(data: F32, out: NDArray[np.complex64], rows: tuple[int, int]) -> None:
    for r0 in range(rows[0], rows[1], 256):
        r1 = min(rows[1], r0 + 256)
        out[r0:r1] = scipy.fft.rfft(data[r0:r1], axis=1, workers=1)


def _radial_columns(half: NDArray[np.complex64], plan: _RadialPlan, cols: tuple[int, int]) -> tuple[F64, F64]:
    n_bins = plan.counts.size
    sums = np.zeros(n_bins)
    maxima = np.zeros(n_bins)
    block = scipy.fft.fft(half[:, cols[0]:cols[1]], axis=0, workers=1)
    _kernels.radial_accumulate(block, plan.bins[:, cols[0]:cols[1]], plan.col_weights[cols[0]:cols[1]], sums, maxima)
    return sums, maxima


def radial_profile(data: F32, *, statistic: str = "mean") -> F64:
    """Azimuthal mean (``statistic="mean"``) or maximum (``"max"``) of the FFT power ``|fft2(frame)|**2`` over
    integer radius bins 0..N/2 (N = min(H, W); bin b holds frequencies [b, b+1)/N cycles/px, measured on the
    frequency grid of each axis). Returns (N//2+1,) float64. Half-plane rfft, cached bin table, both cores."""
    if statistic not in ("mean", "max"):
        from processing.base import ParameterError
        raise ParameterError(f"radial statistic must be 'mean' or 'max'; got {statistic!r}.")
    data, log_gain = tiles.overflow_safe(np.ascontiguousarray(data, dtype=np.float32))
    h, w = data.shape
    if min(h, w) < 2:
        raise InputError(f"the frame ({h}x{w} px) is too small for a radial profile; it needs at least 2x2 px "
                         f"(enlarge the region of interest).")
    plan = _radial_plan(h, w)
    kx = w // 2 + 1
    half = _half_planes.take((h, kx))
    try:
        n_tasks = 2 * parallel.workers()
        edges = np.linspace(0, h, n_tasks + 1).astype(int)
        parallel.map_chunks(lambda rr: _radial_rows(data, half, rr),
                            [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a])
        width = max(8, -(-kx // (4 * parallel.workers())))
        parts = parallel.map_chunks(lambda cc: _radial_columns(half, plan, cc),
                                    [(c, min(kx, c + width)) for c in range(0, kx, width)])
    finally:
        _half_planes.give(half)
    gain = math.exp(log_gain)  # exact power of two (1.0 for ordinary data); float64 holds up to 1e308
    if statistic == "max":
        return typing.cast(F64, np.max([p[1] for p in parts], axis=0) * gain)
    return typing.cast(F64, np.sum([p[0] for p in parts], axis=0) / plan.counts * gain)


class RadialKymographProcessor(Processor):
    """Radial-profile kymograph: each frame's azimuthally averaged FFT power becomes one column (x = time in s,
    y = spatial frequency in 1/units); the last ``window_frames`` frames are kept."""

    processor_id = "insitu.radial_kymograph"
    title = "Radial Profile Kymograph"
    description = "Azimuthal mean (or maximum) of the FFT power of each frame, stacked over time."
    PARAMETERS = (
        Parameter("window_frames", "Window", "integral", 256, 2, 10000, "frames",
                  description="Number of most recent frames kept in the kymograph (bounds the memory)."),
        Parameter("statistic", "Statistic", "choice", "mean", choices=("mean", "max"),
                  description="Azimuthal mean or radial maximum of the power."),
        Parameter("log_scale", "Log scale", "boolean", True, description="Show the natural log of the power."),
    )
    OUTPUTS = (("kymograph", "kymograph"), ("status", "notice"))
    stateful = True

    window_frames: int
    statistic: str
    log_scale: bool

    def __init__(self, **params: typing.Any) -> None:
        super().__init__(**params)
        self.reset()
        warmup.warm_up_in_background()

    #: each column is one frame's own profile; the window is an append-only history, so chunks merge exactly
    split = "merge"

    def reset(self) -> None:
        self._columns: F32 | None = None   # (n_bins, window) ring
        self._times: list[float] = []
        self._next = 0
        self._key: tuple[typing.Any, ...] | None = None
        self._restarted = False  # partial mode: the chunk restarted (new geometry), so the earlier window is gone

    def start_partial(self) -> None:
        self.reset()

    def merge_states(self, earlier: dict[str, typing.Any], partial: dict[str, typing.Any],
                     partial_frames: int) -> dict[str, typing.Any]:
        if partial.get("_key") is None:
            return dict(earlier)
        if partial["_restarted"] or earlier.get("_key") != partial["_key"]:
            return dict(partial, _restarted=False)
        window = self.window_frames

        def ordered(state: dict[str, typing.Any]) -> F32:
            count, total, ring = len(state["_times"]), state["_next"], state["_columns"]
            slots = [(total - count + i) % window for i in range(count)]
            return typing.cast(F32, ring[:, slots])

        columns = np.concatenate((ordered(earlier), ordered(partial)), axis=1)[:, -window:]
        total = int(earlier["_next"]) + int(partial["_next"])
        ring = np.zeros((columns.shape[0], window), np.float32)
        ring[:, [(total - columns.shape[1] + i) % window for i in range(columns.shape[1])]] = columns
        times = (list(earlier["_times"]) + list(partial["_times"]))[-window:]
        return {"_columns": ring, "_times": times, "_next": total, "_key": partial["_key"], "_restarted": False}

    def process(self, frame: Frame, context: Context) -> Outputs:
        profile = radial_profile(frame.data, statistic=self.statistic)
        _check_finite(profile, self.title)
        if self.log_scale:
            profile = np.log(np.maximum(profile, np.finfo(np.float32).tiny))
        elif float(profile.max()) > float(np.finfo(np.float32).max):
            raise InputError(f"{self.title}: the FFT power reaches {float(profile.max()):.3g}, beyond the float32 "
                             f"range of the kymograph (3.4e38); turn on 'Log scale' or scale the data down.")
        h, w = frame.shape
        cal = frame.calibrations[1] if w <= h else frame.calibrations[0]
        key = (profile.size, frame.shape, cal)
        notices: list[Notice] = []
        if self._key is not None and key != self._key:
            notices.append(Notice("status", "the frame size or calibration changed; the kymograph restarted."))
            self.reset()
            self._restarted = True
        if self._columns is None:
            self._columns = np.zeros((profile.size, self.window_frames), np.float32)
            self._key = key
        slot = self._next % self.window_frames
        self._columns[:, slot] = profile
        self._next += 1
        self._times.append(frame.timestamp_s)
        if len(self._times) > self.window_frames:
            del self._times[0]
        count = len(self._times)
        if self._next <= self.window_frames:
            data = self._columns[:, :count].copy()
        else:
            start = self._next % self.window_frames
            data = np.concatenate((self._columns[:, start:], self._columns[:, :start]), axis=1)
        n = min(h, w)
        step = tiles.frequency_calibration_scale(n, _pixel_size(cal))
        dt = (self._times[-1] - self._times[0]) / (count - 1) if count > 1 else 1.0
        out = KymographOutput("kymograph", data, Calibration(0.0, step, frequency_units(cal.units)),
                              Calibration(self._times[0], dt if dt > 0 else 1.0, "s"),
                              "log(power)" if self.log_scale else "power", "Radial profile kymograph")
        return (out, *notices)


# ----------------------------------------------------------------------------------------------------------------
# orientation map

@dataclasses.dataclass(frozen=True)
class OrientationMap:
    """Per-tile peak maps (n_y, n_x) float32: orientation deg [0, 180) (counter-clockwise from +x, y up),
    spacing in cycles/px (spatial frequency of the peak) and strength (smoothed natural-log power at the peak)."""

    theta_deg: F32
    spacing_cpp: F32
    strength: F32
    tile_px: int
    step_px: int
    flat: NDArray[np.bool_] | None = None  # exactly flat tiles, all pixels equal (see TilePass.flat)


def orientation_map(data: F32, *, tile_px: int = 128, step_px: int = 32, mask_percent: float = 10.0,
                    bar_width_px: int = 2, smooth: bool = True) -> OrientationMap:
    """Each tile's strongest FFT peak (the reference colour map's search; see :class:`processing.live.tiles.PeakSpec`).

    Raises :class:`InputError` for frames smaller than one tile or with NaN pixels.
    """
    _check_tile_parameters(tile_px, step_px)
    tp = tiles.tile_pass(np.asarray(data, np.float32), tile_px=tile_px, step_px=step_px,
                         peaks=tiles.PeakSpec(mask_percent, bar_width_px, smooth))
    return _map_from_pass(tp, "orientation map")


def _map_from_pass(tp: tiles.TilePass, what: str) -> OrientationMap:
    assert tp.theta_deg is not None and tp.spacing_cpp is not None and tp.strength is not None
    _check_finite(tp.strength, what)
    return OrientationMap(tp.theta_deg, tp.spacing_cpp, tp.strength, tp.tile_px, tp.step_px, tp.flat)


def brightness(omap: OrientationMap) -> F64:
    """(n_y, n_x) float64 in [0, 1]: the strength scaled from its per-frame minimum to its maximum over the tiles
    that hold a measurement. Flat tiles (all pixels equal, :attr:`OrientationMap.flat`) and NaN
    tiles are black (0) and excluded from the range, so an exactly flat region (behind a beam stop) does not
    collapse the contrast of the rest. All tiles equal: 1 (0 if all are flat)."""
    s = omap.strength.astype(np.float64)
    valid = np.isfinite(s)
    if omap.flat is not None:
        valid &= ~omap.flat
    if not valid.any():
        return np.zeros_like(s)
    lo, hi = float(s[valid].min()), float(s[valid].max())
    out = np.clip((s - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.ones_like(s)
    out[~valid] = 0.0
    return out


def _lut(segments: typing.Sequence[tuple[float, tuple[float, float, float]]], n: int = 256) -> F64:
    xs = np.array([s[0] for s in segments])
    cols = np.array([s[1] for s in segments])
    x = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(x, xs, cols[:, k]) for k in range(3)], axis=1)


#: matplotlib's 'gist_rainbow' (the reference's hue for orientation), 256 entries
GIST_RAINBOW = _lut([(0.000, (1.00, 0.00, 0.16)), (0.030, (1.00, 0.00, 0.00)), (0.215, (1.00, 1.00, 0.00)),
                     (0.400, (0.00, 1.00, 0.00)), (0.586, (0.00, 1.00, 1.00)), (0.770, (0.00, 0.00, 1.00)),
                     (0.954, (1.00, 0.00, 1.00)), (1.000, (1.00, 0.00, 0.75))])


def _jet_lut(n: int = 256) -> F64:
    x = np.linspace(0.0, 1.0, n)
    red = np.interp(x, [0, 0.35, 0.66, 0.89, 1], [0, 0, 1, 1, 0.5])
    green = np.interp(x, [0, 0.125, 0.375, 0.64, 0.91, 1], [0, 0, 1, 1, 0, 0])
    blue = np.interp(x, [0, 0.11, 0.34, 0.65, 1], [0.5, 1, 1, 0, 0])
    return np.stack([red, green, blue], axis=1)


#: matplotlib's 'jet' (the reference's colour for spacing), 256 entries
JET = _jet_lut()


def _lut_index(x: NDArray[typing.Any]) -> NDArray[np.intp]:
    """matplotlib's index arithmetic: x in [0, 1] -> int(x * N) clipped to [0, N-1]."""
    x = np.nan_to_num(x, nan=0.0)
    return np.clip((x * 256).astype(np.intp), 0, 255)


def _spacing_range(spacing: F32) -> tuple[float, float]:
    finite = spacing[np.isfinite(spacing)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, (5, 95)))
    return (lo, hi) if hi > lo else (lo, lo + 1e-6)


def orientation_rgb(omap: OrientationMap, *, colour_by: str = "orientation", pad_border: bool = True) -> U8:
    """(n_y', n_x', 3) uint8 RGB of the map: hue = orientation through 'gist_rainbow' over 0-180 deg (or spacing
    through 'jet' over its 5-95 percentiles), brightness = strength scaled from its per-frame minimum to maximum (:func:`brightness`: flat tiles black).
    ``pad_border`` adds ``T//step//2`` black tiles on each side (the reference), so map x step ~ frame size."""
    theta, spacing = omap.theta_deg, omap.spacing_cpp
    if colour_by == "orientation":
        colour = GIST_RAINBOW[_lut_index(theta / 180.0)]
    elif colour_by == "spacing":
        lo, hi = _spacing_range(spacing)
        colour = JET[_lut_index((spacing - lo) / (hi - lo))]
    else:
        from processing.base import ParameterError
        raise ParameterError(f"colour_by must be 'orientation' or 'spacing'; got {colour_by!r}.")
    pad = omap.tile_px // omap.step_px // 2 if pad_border else 0
    bright = brightness(omap)
    if pad:  # the padded border takes the map minimum: black
        bright = np.pad(bright, pad, constant_values=0.0)
        colour = np.pad(colour, ((pad, pad), (pad, pad), (0, 0)))
    return (colour * (bright * 255.0)[..., None]).astype(np.uint8)


def map_calibrations(omap: OrientationMap, calibrations: tuple[Calibration, Calibration], *, pad_border: bool = True,
                     ) -> tuple[Calibration, Calibration]:
    """Calibrations (y, x) of the (padded) tile map: map pixel m is centred on its tile's centre in the frame."""
    pad = omap.tile_px // omap.step_px // 2 if pad_border else 0
    first_px = omap.tile_px / 2 - pad * omap.step_px - omap.step_px / 2
    return typing.cast(tuple[Calibration, Calibration], tuple(
        Calibration(c.offset + c.scale * first_px, c.scale * omap.step_px, c.units) for c in calibrations))


@functools.lru_cache(maxsize=4)
def colour_wheel_legend(size_px: int = 129) -> U8:
    """(size, size, 3) uint8 orientation legend: direction -> hue of that orientation (opposite directions share a
    colour), distance from the centre -> brightness (peak strength). Read-only."""
    c = (size_px - 1) / 2
    yy, xx = np.mgrid[0:size_px, 0:size_px]
    dx, dy = xx - c, c - yy
    rho = np.hypot(dx, dy) / c
    theta = np.degrees(np.arctan2(dy, dx)) % 180.0
    rgb = GIST_RAINBOW[_lut_index(theta / 180.0)] * np.clip(rho, 0, 1)[..., None]
    rgb[rho > 1] = 0.0
    out = (rgb * 255).astype(np.uint8)
    out.flags.writeable = False
    return typing.cast(U8, out)


def spacing_legend(*, height_px: int = 24) -> U8:
    """(height, 256, 3) uint8 colour bar of the spacing colouring ('jet', left = 5th, right = 95th percentile of
    the spatial frequency; the processor's legend output carries that range as its x calibration)."""
    return typing.cast(U8, np.repeat((JET[None, :, :] * 255).astype(np.uint8), height_px, axis=0))


def blend_over_image(rgb_map: U8, strength_map: F64, image: F32, *, tile_px: int, step_px: int,
                     pad_border: bool = True) -> U8:
    """Tint the frame by the map: (H, W, 3) uint8 = grey image (1/99 percentile stretch) x ((1 - s) + s * hue),
    s = sqrt(normalised strength); the map is resampled bilinearly onto the frame (tile centres on tile centres)."""
    import cv2

    h, w = image.shape
    pad = tile_px // step_px // 2 if pad_border else 0
    hue = rgb_map.astype(np.float32)
    norm = np.maximum(hue.max(axis=2, keepdims=True), 1.0)
    hue = hue / norm
    s = np.sqrt(np.clip(strength_map, 0.0, 1.0)).astype(np.float32)
    size = (hue.shape[1] * step_px, hue.shape[0] * step_px)
    hue_up = cv2.resize(hue, size, interpolation=cv2.INTER_LINEAR)
    s_up = cv2.resize(s, size, interpolation=cv2.INTER_LINEAR)
    off = int(round(pad * step_px + step_px / 2 - tile_px / 2))
    pad_y = max(0, off + h - size[1])
    pad_x = max(0, off + w - size[0])
    if off < 0 or pad_y or pad_x:
        lo = max(0, -off)
        hue_up = np.pad(hue_up, ((lo, pad_y), (lo, pad_x), (0, 0)), mode="edge")
        s_up = np.pad(s_up, ((lo, pad_y), (lo, pad_x)), mode="edge")
        off += lo
    hue_up = hue_up[off:off + h, off:off + w]
    s_up = s_up[off:off + h, off:off + w]
    sample = image[::4, ::4]
    p1, p99 = (float(v) for v in np.percentile(sample, (1, 99)))
    grey = np.clip((image - p1) / (p99 - p1), 0.0, 1.0) if p99 > p1 else np.full_like(image, 0.5)
    out = grey[..., None] * ((1.0 - s_up)[..., None] + s_up[..., None] * hue_up)
    return typing.cast(U8, (out * 255.0).astype(np.uint8))


class OrientationMapProcessor(Processor):
    """FFT orientation colour map: per tile, the strongest lattice peak's orientation (0-180 deg) as hue and its
    strength as brightness (or its spacing as colour), with a colour-wheel legend; optionally over the image.
    Strength = the smoothed log power at that peak, searched in the upper half-plane (rows 0..T/2-1 of the shifted
    tile FFT; real data has a symmetric spectrum, so this is the peak shown by the hue). The peer script
    (BenMillerScripts FFTArrayAnalysis) takes the whole plane's maximum instead: identical on lattice tiles, up to
    ~0.5 log units higher on noise-only tiles (where the lower half's border smoothing differs). Brightness = strength
    scaled from its per-frame minimum to maximum over the tiles that are not flat; exactly flat tiles (e.g. behind a
    beam stop) are black and do not compress the others' contrast.

    Details: :func:`brightness`, :class:`processing.live.tiles.PeakSpec`."""

    processor_id = "insitu.fft_orientation"
    split = "frame"
    title = "FFT Orientation Map"
    description = "Orientation (or spacing) and strength of the strongest lattice peak in each tile."
    PARAMETERS = _TILE_PARAMETERS + (
        Parameter("colour_by", "Colour by", "choice", "orientation", choices=("orientation", "spacing"),
                  description="Hue from the peak orientation (0-180 deg) or from its spacing."),
        Parameter("blend_over_image", "Blend over image", "boolean", False,
                  description="Tint the frame with the map instead of showing the tile map."),
        Parameter("mask_percent", "Centre mask", "real", 10.0, 0.0, 50.0, "%",
                  description="Diameter of the masked low-frequency disc, in % of the tile."),
    )
    OUTPUTS = (("image", "rgb"), ("legend", "rgb"))

    tile_size_px: int
    step_px: int
    colour_by: str
    blend_over_image: bool
    mask_percent: float

    def __init__(self, **params: typing.Any) -> None:
        super().__init__(**params)
        _check_tile_parameters(self.tile_size_px, self.step_px)
        warmup.warm_up_in_background()

    @property
    def peak_spec(self) -> tiles.PeakSpec:
        return tiles.PeakSpec(float(self.mask_percent), 2, True)

    def process(self, frame: Frame, context: Context) -> Outputs:
        tp = shared_tile_pass(frame, context, tile_px=self.tile_size_px, step_px=self.step_px,
                              peaks=self.peak_spec)
        omap = _map_from_pass(tp, self.title)
        rgb = orientation_rgb(omap, colour_by=self.colour_by)
        if self.colour_by == "orientation":
            legend = RGBImageOutput("legend", colour_wheel_legend(), title="Orientation legend (0-180 deg)")
        else:
            lo, hi = _spacing_range(omap.spacing_cpp)
            px = _pixel_size(frame.calibrations[1])
            cal = Calibration(lo / px, (hi - lo) / px / 256, frequency_units(frame.calibrations[1].units))
            legend = RGBImageOutput("legend", spacing_legend(), (Calibration(), cal),
                                    title="Spacing legend (spatial frequency)")
        if self.blend_over_image:
            pad = omap.tile_px // omap.step_px // 2
            strength = np.pad(brightness(omap), pad)
            image = blend_over_image(rgb, strength, frame.data, tile_px=omap.tile_px, step_px=omap.step_px)
            main = RGBImageOutput("image", image, frame.calibrations, title="FFT orientation (blended)")
        else:
            main = RGBImageOutput("image", rgb, map_calibrations(omap, frame.calibrations), title="FFT orientation")
        return (main, legend)


def _warm_up_kernels() -> None:
    """The radial-profile kernels on writable and read-only frames (the warm-up registry)."""
    frame = np.random.default_rng(0).normal(size=(48, 40)).astype(np.float32)
    readonly = frame.copy()
    readonly.flags.writeable = False
    for data in (frame, readonly):
        radial_profile(data)


warmup.register("processing.live.fft_analysis", _warm_up_kernels)
