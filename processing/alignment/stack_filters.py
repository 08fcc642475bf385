"""Stack validation, SDSD parameters (declared once) and the pre-filter that turns each frame into a band-limited
spectrum ready for pair correlation (:mod:`processing.alignment.sdsd`).

Pre-filter of one frame (seed 001, step 1), in this order: crop to the region; optional median filter; optional
Sobel edge magnitude; subtract the mean; multiply by a window (Hann, Tukey 25 %, none); FFT; multiply by the
Gaussian band-pass ``exp(-2 pi^2 sl^2 k^2) - exp(-2 pi^2 sh^2 k^2)`` (the same low/high-pass pair as
:func:`processing.alignment.registration.prefilter`, done in Fourier space where it is free); keep only the
frequencies where a pair's cross spectrum (low-pass squared) keeps >= 5 %, so each pair correlation costs a
small inverse FFT.
"""
from __future__ import annotations

import dataclasses
import math
import typing

import cv2
import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.signal.windows
from numpy.typing import NDArray

from processing.base import InputError, Parameter, ParameterError

__all__ = ["SDSD_PARAMETERS", "PairSpectra", "sdsd_options", "validate_stack", "parse_region", "prefilter_spectra",
           "prepare_frame", "gaussian_band"]

Float32Array = NDArray[np.float32]
FloatArray = NDArray[np.float64]

#: The SDSD options, declared once (Python call, Swift computation inspector, command line).
SDSD_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("reference", "Pairs", "choice", "all", choices=("all", "banded", "first", "previous"),
              description="all N(N-1)/2 pairs (SDSD), each frame against its K neighbours (banded), or the "
                          "classic references for comparison (first frame, previous frame)"),
    Parameter("band_k", "Band K", "integral", 10, 1, 1000, description="neighbours per frame in banded mode"),
    Parameter("region", "Region (t,l,b,r px)", "string", "",
              description="correlate on this region only: 'top,left,bottom,right' in px; empty = whole frame"),
    Parameter("window", "Window", "choice", "tukey", choices=("tukey", "hann", "none"),
              description="apodisation before the FFT (Tukey: flat top, 25 % cosine edges)"),
    Parameter("median_px", "Median filter", "integral", 0, 0, 15, "px", description="0 = off; 3 or 5 typical"),
    Parameter("edge_filter", "Edge filter", "boolean", False, description="Sobel gradient magnitude"),
    Parameter("lowpass_sigma_px", "Low-pass sigma", "real", 2.0, 0.0, 50.0, "px",
              description="Gaussian low-pass against shot noise (0 = off)"),
    Parameter("lowpass_auto", "Low-pass from data", "boolean", False,
              description="choose the low-pass from the stack itself (after a first pass at the low-pass sigma "
                          "above): the band where the signal common to the frame pairs is most precise, refused "
                          "where it would let lattice aliases compete with the true shift; see docs/stack.md"),
    Parameter("highpass_sigma_px", "High-pass sigma", "real", 30.0, 0.0, 1000.0, "px",
              description="remove background wider than this (0 = off)"),
    Parameter("subpixel_px", "Precision", "real", 0.02, 0.001, 0.5, "px", description="sub-pixel step of the peak search"),
    Parameter("max_shift_px", "Max shift", "real", 0.0, 0.0, 10000.0, "px",
              description="largest pair shift searched (0 = 45 % of the frame)"),
    Parameter("inverted_contrast", "Contrast reversals", "boolean", False,
              description="use the peak of |correlation|: pairs whose contrast is reversed (EFTEM, focal series)"),
    Parameter("weighting", "Pair weights", "choice", "variance", choices=("variance", "correlation"),
              description="least-squares weight of a pair: inverse variance from its correlation maximum and peak "
                          "sharpness, or the correlation maximum itself (the seed's rule)"),
    Parameter("reject_sigma", "Reject at", "real", 3.0, 0.0, 100.0, "sigma",
              description="reject pairs whose residual exceeds this many robust sigmas (0 = never)"),
    Parameter("drift_prior", "Drift prior", "choice", "off", choices=("off", "random-walk"),
              description="smooth the shifts by a linear-drift + random-walk prior whose strength is estimated "
                          "from the series (robust: jumps kept); see docs/stack.md"),
)

_BY_NAME = {p.name: p for p in SDSD_PARAMETERS}


def sdsd_options(**options: typing.Any) -> dict[str, typing.Any]:
    """All SDSD options, validated, defaults filled in; ``region`` may also be a (top, left, bottom, right) tuple."""
    unknown = sorted(set(options) - set(_BY_NAME))
    if unknown:
        raise ParameterError(f"unknown SDSD option(s) {unknown}; known: {sorted(_BY_NAME)}.")
    out: dict[str, typing.Any] = {}
    for p in SDSD_PARAMETERS:
        value = options.get(p.name, p.default)
        if p.name == "region" and value is not None and not isinstance(value, str):
            value = ",".join(str(int(v)) for v in value)
        out[p.name] = p.validate("" if value is None else value)
    if out["highpass_sigma_px"] and out["highpass_sigma_px"] <= out["lowpass_sigma_px"]:
        raise ParameterError(f"highpass_sigma_px ({out['highpass_sigma_px']}) must exceed lowpass_sigma_px "
                             f"({out['lowpass_sigma_px']}), or be 0 (off). Choose e.g. 2 and 30.")
    return out


def validate_stack(frames: typing.Any) -> Float32Array:
    """(N, H, W) float32 from an array-like stack or a list of frames, or :class:`InputError` saying why not."""
    if isinstance(frames, (list, tuple)):
        shapes = sorted({tuple(np.shape(f)) for f in frames})
        if len(shapes) > 1:
            raise InputError(f"the frames have different shapes {shapes[:4]}; a stack needs frames of one shape. "
                             f"Crop or bin them to a common shape first.")
    array = np.asarray(frames)
    if array.dtype == object or np.iscomplexobj(array) or array.ndim != 3:
        raise InputError(f"a stack must be a real (N, H, W) array; got shape {array.shape}, dtype {array.dtype}. "
                         f"Pass an image sequence.")
    n, h, w = array.shape
    if n < 2:
        raise InputError(f"the stack has {n} frame(s); alignment needs at least 2. Acquire or load more frames.")
    if min(h, w) < 16:
        raise InputError(f"the frames are {h}x{w} px; alignment needs at least 16x16 px.")
    out = np.empty((n, h, w), dtype=np.float32)
    bad: list[int] = []
    flat: list[int] = []
    for k in range(n):
        out[k] = array[k]
        if not np.isfinite(out[k]).all():
            bad.append(k)
        elif float(out[k].max()) == float(out[k].min()):
            flat.append(k)
    if bad:
        raise InputError(f"frame(s) {bad[:10]} contain NaN/inf; alignment needs finite data. Replace the invalid "
                         f"pixels (camera corrections) or remove those frames.")
    if flat:
        raise InputError(f"frame(s) {flat[:10]} are constant (e.g. all zero): they carry no structure to align "
                         f"on. Remove them (beam blanked or acquisition failed) and align the rest.")
    return out


def parse_region(region: str | typing.Sequence[int] | None, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) px inside ``shape`` from 't,l,b,r' or a tuple; empty/None = whole frame."""
    h, w = shape
    if region is None or (isinstance(region, str) and not region.strip()):
        return 0, 0, h, w
    try:
        values = [int(round(float(v))) for v in (region.split(",") if isinstance(region, str) else region)]
        top, left, bottom, right = values
    except (ValueError, TypeError):
        raise ParameterError(f"region must be 'top,left,bottom,right' in px; got {region!r}.") from None
    if not (0 <= top < bottom <= h and 0 <= left < right <= w):
        raise ParameterError(f"region {region!r} is not inside the {h}x{w} px frame (need 0 <= top < bottom <= {h}, "
                             f"0 <= left < right <= {w}); move it inside the image.")
    if bottom - top < 16 or right - left < 16:
        raise ParameterError(f"region {region!r} is smaller than 16x16 px; enlarge it.")
    return top, left, bottom, right


@dataclasses.dataclass(frozen=True, eq=False)
class PairSpectra:
    """Band-limited spectra of the pre-filtered frames.

    spectra : (N, My, Mxh) complex64, rows = frequencies ky/H for ky in [0, My/2) then [-My/2, 0), columns kx/W.
    fy, fx : (My,), (Mxh,) frequencies in cycles/px. column_weights : (Mxh,) 1 for kx = 0, else 2 (the rfft half).
    norms : (N,) sqrt(sum of the filtered frame squared). inverse_scale : 1 / (H W) (Parseval).
    envelope_y, envelope_x : (H,), (W,) circular autocorrelation of the window along y and x (1 at shift 0), by
    shift mod H (W): a pair shifted by s correlates over the window overlap E_y(s_y) E_x(s_x) only (its share of
    the information, used in the pair weight).
    grid_shape : (Gy, Gx) of the coarse correlation grid (the integer peak search), computed from the lower part of
    the band: rows ``coarse_rows`` and the first ``coarse_columns`` columns of ``spectra``; grid_step_px :
    (H / Gy, W / Gx).
    """

    spectra: NDArray[np.complex64]
    fy: NDArray[np.float64]
    fx: NDArray[np.float64]
    column_weights: NDArray[np.complex64]
    norms: NDArray[np.float64]
    inverse_scale: float
    grid_shape: tuple[int, int]
    grid_step_px: tuple[float, float]
    coarse_rows: NDArray[np.intp]
    coarse_columns: int
    envelope_y: FloatArray
    envelope_x: FloatArray
    frame_shape: tuple[int, int]
    notes: list[str]


def _window_1d(kind: str, n: int) -> FloatArray:
    if kind == "none":
        return np.ones(n)
    if kind == "hann":
        return np.asarray(np.hanning(n), dtype=np.float64)
    return np.asarray(scipy.signal.windows.tukey(n, 0.25), dtype=np.float64)


def _window(kind: str, h: int, w: int) -> Float32Array:
    return np.outer(_window_1d(kind, h), _window_1d(kind, w)).astype(np.float32)


def _envelope(window: FloatArray) -> FloatArray:
    """Circular autocorrelation of a 1-D window, normalised to 1 at zero shift: (n,) indexed by shift mod n."""
    spectrum = np.fft.rfft(window)
    auto = np.fft.irfft(np.abs(spectrum) ** 2, n=len(window))
    return np.asarray(auto / max(float(auto[0]), 1e-30), dtype=np.float64)


def _band_size(n: int, k_cut: float) -> int:
    """Even, FFT-friendly number of frequency rows/columns covering |k| < ``k_cut`` cycles/px of an ``n``-px axis."""
    m = 2 * int(math.ceil(k_cut * n))
    if m >= n - 1:
        return n
    m = max(m, 16)
    while m % 2 or scipy.fft.next_fast_len(m) != m:
        m += 1
    return n if m >= n - 1 else m


def prepare_frame(frame: Float32Array, options: typing.Mapping[str, typing.Any], window: Float32Array,
                  ) -> Float32Array:
    """One (H, W) float32 frame (already cropped to the region) before its FFT: the optional median and Sobel
    filters, the mean subtracted, times ``window`` (H, W)."""
    median = int(options["median_px"])
    if median > 1:
        size = median | 1
        frame = (cv2.medianBlur(frame, size) if size <= 5 else
                 scipy.ndimage.median_filter(frame, size=size)).astype(np.float32)
    if options["edge_filter"]:
        gy = cv2.Sobel(frame, cv2.CV_32F, 0, 1, ksize=3)
        gx = cv2.Sobel(frame, cv2.CV_32F, 1, 0, ksize=3)
        frame = np.sqrt(gy * gy + gx * gx)
    return np.asarray((frame - frame.mean()) * window, dtype=np.float32)


def gaussian_band(k2: FloatArray, lowpass_sigma_px: float, highpass_sigma_px: float) -> FloatArray:
    """The pre-filter's band-pass at squared frequencies ``k2`` (cycles/px)^2: Gaussian low-pass minus Gaussian
    high-pass (either 0 = off), 0 at k = 0."""
    band = np.exp(-2 * math.pi ** 2 * lowpass_sigma_px ** 2 * k2) if lowpass_sigma_px > 0 else np.ones_like(k2)
    if highpass_sigma_px > 0:
        band = band - np.exp(-2 * math.pi ** 2 * highpass_sigma_px ** 2 * k2)
    return np.where(k2 == 0, 0.0, band)


def prefilter_spectra(stack: Float32Array, options: typing.Mapping[str, typing.Any]) -> PairSpectra:
    """Pre-filter every frame of ``stack`` (N, H, W) float32 with ``options`` (see :func:`sdsd_options`)."""
    n = stack.shape[0]
    top, left, bottom, right = parse_region(options["region"], (stack.shape[1], stack.shape[2]))
    h, w = bottom - top, right - left
    window = _window(str(options["window"]), h, w)
    sl, sh = float(options["lowpass_sigma_px"]), float(options["highpass_sigma_px"])
    # a pair's cross spectrum carries the low-pass twice (band^2): keep the frequencies where band^2 >= 5 %
    k_cut = min(0.5, math.sqrt(math.log(20.0) / (4 * math.pi ** 2)) / sl) if sl > 0 else 0.5
    my, mx = _band_size(h, k_cut), _band_size(w, k_cut)
    rows = np.r_[0:my // 2, h - my // 2:h] if my < h else np.arange(h)
    mxh = mx // 2 + 1 if mx < w else w // 2 + 1
    ky = np.where(rows < (h + 1) // 2, rows, rows - h).astype(np.float64) / h
    kx = np.arange(mxh, dtype=np.float64) / w
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    band = gaussian_band(k2, sl, sh)
    band32 = band.astype(np.float32)
    spectra = np.empty((n, len(rows), mxh), dtype=np.complex64)
    chunk = 16
    for start in range(0, n, chunk):
        block = stack[start:start + chunk, top:bottom, left:right].astype(np.float32, copy=True)
        for k in range(block.shape[0]):
            block[k] = prepare_frame(block[k], options, window)
        # rfft along x, then the y transform of the kept columns only
        half = scipy.fft.rfft(block, axis=-1, workers=-1)[:, :, :mxh]
        full = scipy.fft.fft(half, axis=-2, workers=-1)
        spectra[start:start + chunk] = full[:, rows, :] * band32
    weights = np.full(mxh, 2.0, dtype=np.float32)
    weights[0] = 1.0
    if mxh == w // 2 + 1 and w % 2 == 0:
        weights[-1] = 1.0
    inverse_scale = 1.0 / (h * w)
    power = (np.abs(spectra) ** 2 * weights[None, None, :]).sum(axis=(1, 2)) * inverse_scale
    notes: list[str] = []
    # the integer peak is searched on the lower part of the band (band^2 >= 20 %: a smaller inverse FFT per pair);
    # the sub-pixel refinement then uses the whole band
    k_coarse = k_cut * math.sqrt(math.log(5.0) / math.log(20.0))
    cy, cx = min(_band_size(h, k_coarse), len(rows)), min(_band_size(w, k_coarse), mx if mx < w else w)
    coarse_rows = (np.r_[0:cy // 2, len(rows) - cy // 2:len(rows)] if cy < len(rows)
                   else np.arange(len(rows))).astype(np.intp)
    coarse_columns = cx // 2 + 1 if cx < (mx if mx < w else w) else mxh
    grid = (len(coarse_rows), 2 * (coarse_columns - 1) if cx < w else w)
    return PairSpectra(spectra=spectra, fy=ky, fx=kx, column_weights=weights.astype(np.complex64),
                       norms=np.sqrt(np.maximum(power, 0.0)), inverse_scale=inverse_scale, grid_shape=grid,
                       grid_step_px=(h / grid[0], w / grid[1]), coarse_rows=coarse_rows,
                       coarse_columns=coarse_columns, envelope_y=_envelope(_window_1d(str(options["window"]), h)),
                       envelope_x=_envelope(_window_1d(str(options["window"]), w)), frame_shape=(h, w), notes=notes)
