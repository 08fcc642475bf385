"""FFT analysis processors: Max-FFT and the radial-profile kymograph (the orientation map is in
:mod:`processing.live.orientation`, re-exported here).

Pure functions (numpy in, numpy out) and the live processors built on them:

* :func:`max_fft` / :class:`MaxFFTProcessor` (``insitu.max_fft``): per-pixel maximum of the power spectra of
  overlapping sqrt-Hann-windowed tiles (128 px every 32 px by default), natural log, fftshifted, with calibrated
  spatial-frequency axes.
* :func:`radial_profile` / :class:`RadialKymographProcessor` (``insitu.radial_kymograph``): the azimuthal mean (or
  maximum) of each frame's FFT power as one column of a kymograph (x = time, y = spatial frequency) with a rolling
  window of frames.
* :mod:`processing.live.orientation` (``insitu.fft_orientation``): each tile's strongest lattice peak as a colour map.

Max-FFT and the orientation map share one tile pass per frame through ``Context.memo`` (see
:func:`processing.live.fft_common.shared_tile_pass`). Speed and agreement with :mod:`processing.live.reference`: see
``bench/``.
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
from processing.live.fft_common import (TILE_PARAMETERS, check_finite, check_tile_parameters, frequency_units,
                                        pixel_size, shared_tile_pass)
from processing.live.orientation import (OrientationMap, OrientationMapProcessor, blend_over_image, brightness,
                                         colour_wheel_legend, map_calibrations, orientation_map, orientation_rgb,
                                         spacing_legend)
from processing.base import (Calibration, Context, Frame, ImageOutput, InputError, KymographOutput, Notice, Outputs,
                             Parameter, Processor)

__all__ = ["max_fft", "radial_profile", "RadialProfile", "orientation_map", "OrientationMap", "orientation_rgb",
           "colour_wheel_legend", "spacing_legend", "brightness", "blend_over_image", "map_calibrations",
           "shared_tile_pass", "frequency_units", "MaxFFTProcessor", "RadialKymographProcessor",
           "OrientationMapProcessor"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

# ----------------------------------------------------------------------------------------------------------------
# the pass Max-FFT shares with an orientation map

def _peak_spec_in_demand(tile_px: int, step_px: int, context: Context) -> tiles.PeakSpec | None:
    """The peak spec of an orientation processor fed the same frames with the same tiling (``context.peers``), so
    Max-FFT computes the one pass both use."""
    for p in context.peers:
        if isinstance(p, OrientationMapProcessor) and p.tile_size_px == tile_px and p.step_px == step_px:
            return p.peak_spec
    return None


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
    check_tile_parameters(tile_px, step_px)
    result = max_fft_from_pass(tiles.tile_pass(np.asarray(data, np.float32), tile_px=tile_px, step_px=step_px))
    check_finite(result, "Max-FFT")
    return result


def fft_calibrations(tile_px: int, calibrations: tuple[Calibration, Calibration],
                     ) -> tuple[Calibration, Calibration]:
    """Spatial-frequency calibrations (y, x) of an fftshifted T-point spectrum of a frame with ``calibrations``."""
    out = []
    for cal in calibrations:
        scale = tiles.frequency_calibration_scale(tile_px, pixel_size(cal))
        out.append(Calibration(-(tile_px // 2) * scale, scale, frequency_units(cal.units)))
    return out[0], out[1]


class MaxFFTProcessor(Processor):
    """Max-FFT: the strongest power of every spatial frequency over all overlapping tiles, so a small crystalline
    patch stands out of the background far more than in the full-frame FFT. Log scale, axes in 1/units."""

    processor_id = "insitu.max_fft"
    split = "frame"
    title = "Max FFT"
    description = "Per-pixel maximum of the power spectra of overlapping windowed tiles (log scale)."
    PARAMETERS = TILE_PARAMETERS
    OUTPUTS = (("image", "image"),)

    tile_size_px: int
    step_px: int

    def __init__(self, **params: typing.Any) -> None:
        super().__init__(**params)
        check_tile_parameters(self.tile_size_px, self.step_px)
        warmup.warm_up_in_background()

    def process(self, frame: Frame, context: Context) -> Outputs:
        peaks = _peak_spec_in_demand(self.tile_size_px, self.step_px, context)
        tp = shared_tile_pass(frame, context, tile_px=self.tile_size_px, step_px=self.step_px, peaks=peaks)
        result = max_fft_from_pass(tp)
        check_finite(result, self.title)
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
        check_finite(profile, self.title)
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
        step = tiles.frequency_calibration_scale(n, pixel_size(cal))
        dt = (self._times[-1] - self._times[0]) / (count - 1) if count > 1 else 1.0
        out = KymographOutput("kymograph", data, Calibration(0.0, step, frequency_units(cal.units)),
                              Calibration(self._times[0], dt if dt > 0 else 1.0, "s"),
                              "log(power)" if self.log_scale else "power", "Radial profile kymograph")
        return (out, *notices)



def _warm_up_kernels() -> None:
    """The radial-profile kernels on writable and read-only frames (the warm-up registry)."""
    frame = np.random.default_rng(0).normal(size=(48, 40)).astype(np.float32)
    readonly = frame.copy()
    readonly.flags.writeable = False
    for data in (frame, readonly):
        radial_profile(data)


warmup.register("processing.live.fft_analysis", _warm_up_kernels)
