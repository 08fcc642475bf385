"""Apply per-frame shifts to a stack (Fourier or cubic spline), crop to the common area or pad, sum/average; and a
running-reference registration for live or played-back streams.

Shifts follow :mod:`processing.alignment.sdsd`: ``shifts_px[k]`` (dy, dx) is where frame ``k``'s content sits
relative to frame 0, so aligning moves frame ``k`` by ``-shifts_px[k]``.
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import scipy.fft
import scipy.ndimage
from numpy.typing import NDArray

from processing.base import InputError, ParameterError

__all__ = ["AlignedStack", "AlignedGeometry", "aligned_geometry", "align_frame", "apply_shifts", "common_area",
           "RunningReference"]

Float32Array = NDArray[np.float32]
FloatArray = NDArray[np.float64]


@dataclasses.dataclass(frozen=True, eq=False)
class AlignedStack:
    """Aligned frames (N, h, w) float32 (NaN outside a frame's data when padded), their sum and average (h, w),
    and the origin ``(y0, x0)`` px of the output in frame-0 pixel coordinates (for the calibration offsets)."""

    frames: Float32Array
    total: Float32Array
    average: Float32Array
    origin_px: tuple[int, int]
    coverage: NDArray[np.int32]


def common_area(shape: tuple[int, int], shifts_px: FloatArray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) in frame-0 px covered by every frame after alignment."""
    h, w = shape
    s = np.asarray(shifts_px, dtype=np.float64)
    # aligned frame k at x holds frame_k(x + s_k): data for -s_k <= x < size - s_k
    top = int(math.ceil(max(0.0, -float(np.min(s[:, 0])))))
    left = int(math.ceil(max(0.0, -float(np.min(s[:, 1])))))
    bottom = int(math.floor(min(float(h), h - float(np.max(s[:, 0])))))
    right = int(math.floor(min(float(w), w - float(np.max(s[:, 1])))))
    if bottom - top < 1 or right - left < 1:
        raise InputError(f"the frames share no common area after alignment (shifts up to "
                         f"{float(np.abs(s).max()):.1f} px on a {h}x{w} frame); use crop='pad'.")
    return top, left, bottom, right


def _shift_one(frame: Float32Array, shift: tuple[float, float], method: str) -> Float32Array:
    if method == "fourier":
        spectrum = scipy.fft.rfft2(frame)
        fy = scipy.fft.fftfreq(frame.shape[0])[:, None]
        fx = scipy.fft.rfftfreq(frame.shape[1])[None, :]
        spectrum *= np.exp(-2j * np.pi * (fy * shift[0] + fx * shift[1]))
        return np.asarray(scipy.fft.irfft2(spectrum, s=frame.shape), dtype=np.float32)
    return np.asarray(scipy.ndimage.shift(frame, shift, order=3, mode="nearest"), dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class AlignedGeometry:
    """Where aligned frames go: output (h, w), its origin (y0, x0) in frame-0 px, ``crop`` ("crop"/"pad"), the
    input frame shape (H, W) and, for "crop", the common area (top, left, bottom, right)."""

    out_shape: tuple[int, int]
    origin_px: tuple[int, int]
    crop: str
    frame_shape: tuple[int, int]


def aligned_geometry(shape: tuple[int, int], shifts_px: typing.Any, crop: str) -> AlignedGeometry:
    """The output geometry of frames of ``shape`` (H, W) aligned by ``-shifts_px`` (N, 2) (see :func:`apply_shifts`)."""
    if crop not in ("crop", "pad"):
        raise ParameterError(f"crop must be 'crop' or 'pad'; got {crop!r}.")
    h, w = shape
    shifts = np.asarray(shifts_px, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(shifts).all():
        raise InputError(f"need one finite (dy, dx) shift per frame; got non-finite shifts {shifts[:4].tolist()}.")
    if crop == "crop":
        top, left, bottom, right = common_area((h, w), shifts)
    else:
        top = int(math.floor(min(0.0, -float(np.max(shifts[:, 0])))))
        left = int(math.floor(min(0.0, -float(np.max(shifts[:, 1])))))
        bottom = int(math.ceil(max(float(h), h - float(np.min(shifts[:, 0])))))
        right = int(math.ceil(max(float(w), w - float(np.min(shifts[:, 1])))))
    return AlignedGeometry((bottom - top, right - left), (top, left), crop, (h, w))


def align_frame(frame: typing.Any, shift_px: typing.Any, geometry: AlignedGeometry, method: str) -> Float32Array:
    """One frame (H, W) moved by ``-shift_px`` onto the output of ``geometry`` (h, w) float32 (NaN where it has no
    data when padded)."""
    if method not in ("spline", "fourier"):
        raise ParameterError(f"method must be 'spline' or 'fourier'; got {method!r}.")
    data = np.asarray(frame, dtype=np.float32)
    dy, dx = float(shift_px[0]), float(shift_px[1])
    top, left = geometry.origin_px
    if geometry.crop == "crop":
        shifted = _shift_one(data, (-dy, -dx), method)
        return np.ascontiguousarray(shifted[top:top + geometry.out_shape[0], left:left + geometry.out_shape[1]])
    # integer part by placement on the canvas, fractional part by resampling
    h, w = geometry.frame_shape
    out = np.full(geometry.out_shape, np.nan, dtype=np.float32)
    iy, ix = int(math.floor(dy)), int(math.floor(dx))
    y0, x0 = -iy - top, -ix - left
    out[y0:y0 + h, x0:x0 + w] = _shift_one(data, (-(dy - iy), -(dx - ix)), method)
    return out


def apply_shifts(frames: typing.Any, shifts_px: typing.Any, *, method: str = "spline", crop: str = "crop",
                 ) -> AlignedStack:
    """Align ``frames`` (N, H, W) by ``-shifts_px`` (N, 2), in memory (block by block for large stacks:
    :func:`processing.alignment.sdsd_blocks.aligned_blocks`).

    method : "spline" (cubic, edges repeat) or "fourier" (exact for band-limited data, wraps at the edges).
    crop : "crop" keeps the area every frame covers; "pad" keeps everything on a larger canvas, NaN where a frame
        has no data (the average then uses only the frames that cover each pixel).
    """
    if method not in ("spline", "fourier"):
        raise ParameterError(f"method must be 'spline' or 'fourier'; got {method!r}.")
    n, h, w = np.shape(frames)
    shifts = np.asarray(shifts_px, dtype=np.float64).reshape(-1, 2)
    if shifts.shape[0] != n or not np.isfinite(shifts).all():
        raise InputError(f"need one finite (dy, dx) shift per frame: {n} frames, shifts of shape {shifts.shape}.")
    geometry = aligned_geometry((h, w), shifts, crop)
    out = np.empty((n,) + geometry.out_shape, dtype=np.float32)
    for k in range(n):
        out[k] = align_frame(frames[k], shifts[k], geometry, method)
    coverage = np.asarray(np.sum(np.isfinite(out), axis=0), dtype=np.int32)
    total = np.nansum(out, axis=0).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        average = np.where(coverage > 0, total / np.maximum(coverage, 1), np.nan).astype(np.float32)
    return AlignedStack(out, total, average, geometry.origin_px, coverage)


class RunningReference:
    """Register each new frame to a running reference (the aligned average of the frames so far), for live or
    played-back drift correction (the In-situ Player).

    ``update(frame)`` returns the frame's shift (dy, dx) px relative to the first frame and adds the frame,
    aligned, to the reference (exponentially weighted with ``memory_frames``, so slow contrast changes are
    followed). The pair is correlated exactly as SDSD pairs are (:func:`processing.alignment.sdsd.measure_pairs`,
    same pre-filter options); ``update`` also records the correlation maximum in :attr:`last_correlation`.

    >>> import numpy as np, scipy.ndimage
    >>> base = scipy.ndimage.gaussian_filter(np.random.default_rng(0).normal(size=(64, 64)), 2, mode="wrap")
    >>> ref = RunningReference(lowpass_sigma_px=1.0, window="none")
    >>> ref.update(base)
    (0.0, 0.0)
    >>> [round(v, 1) for v in ref.update(np.roll(base, (2, -3), axis=(0, 1)))]
    [2.0, -3.0]
    """

    def __init__(self, *, memory_frames: int = 10, **sdsd_options: typing.Any) -> None:
        from processing.alignment.stack_filters import sdsd_options as _options
        if memory_frames < 1:
            raise ParameterError(f"memory_frames must be >= 1; got {memory_frames}.")
        self.options = _options(**sdsd_options)
        self.memory_frames = int(memory_frames)
        self.last_correlation = 1.0
        self.__reference: FloatArray | None = None
        self.__count = 0

    def reset(self) -> None:
        self.__reference = None
        self.__count = 0

    def update(self, frame: typing.Any) -> tuple[float, float]:
        data = np.asarray(frame, dtype=np.float64)
        if data.ndim != 2 or not np.isfinite(data).all():
            raise InputError(f"RunningReference needs a finite 2-D frame; got shape {data.shape}.")
        from processing.alignment.sdsd import measure_pairs
        from processing.alignment.stack_filters import prefilter_spectra, validate_stack
        if self.__reference is None:
            validate_stack(np.stack([data, data + np.arange(data.shape[1])]))  # shape / finiteness messages
            self.__reference = data
            self.__count = 1
            return 0.0, 0.0
        if self.__reference.shape != data.shape:
            raise InputError(f"frame shape {data.shape} differs from the reference {self.__reference.shape}; "
                             f"reset() the reference when the frame size changes.")
        spectra = prefilter_spectra(validate_stack(np.stack([self.__reference, data])), self.options)
        pair = measure_pairs(spectra, [(0, 1)], subpixel_px=float(self.options["subpixel_px"]),
                             max_shift_px=float(self.options["max_shift_px"]) or None)[0]
        shift = pair.shift_px
        self.last_correlation = pair.correlation
        aligned = scipy.ndimage.shift(data, (-shift[0], -shift[1]), order=1, mode="nearest")
        self.__count += 1
        weight = 1.0 / min(self.__count, self.memory_frames)
        self.__reference = (1.0 - weight) * self.__reference + weight * aligned
        return shift
