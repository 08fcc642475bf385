"""The first three live processors: copy (the template), noise reduction, live difference.

Pure functions first (``gaussian_blur``, ``median_blur``, ``ewma_update``, ``measure_shift_px``), thin processor
classes second. Kernels are single-threaded and release the GIL (OpenCV with one thread, numba ``nogil``), so the
live engine's worker threads use both cores.
"""
from __future__ import annotations

import math
import typing

import cv2
import numba
import numpy as np
import scipy.ndimage
from numpy.typing import NDArray

from processing import warmup
from processing.base import Context, Frame, ImageOutput, Outputs, Parameter, ParameterError, Processor
from processing.alignment.registration import phase_correlation_shift_px

FloatArray = NDArray[np.float32]

__all__ = ["gaussian_kernel_1d", "gaussian_blur", "median_blur", "ewma_span_weight", "ewma_update",
           "CopyProcessor", "NoiseReductionProcessor", "LiveDifferenceProcessor"]


# --------------------------------------------------------------------------------------------------- noise filters

def gaussian_kernel_1d(sigma_px: float, *, truncate: float = 4.0) -> NDArray[np.float64]:
    """The 1-D Gaussian kernel scipy.ndimage.gaussian_filter uses (radius ``int(truncate*sigma+0.5)``), summing to 1."""
    radius = int(truncate * sigma_px + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma_px) ** 2)
    return typing.cast(NDArray[np.float64], kernel / kernel.sum())


def gaussian_blur(image: FloatArray, sigma_px: float) -> FloatArray:
    """Gaussian blur of a (H, W) float32 image, equal to ``scipy.ndimage.gaussian_filter(mode='reflect')``.

    sigma_px: standard deviation in pixels (> 0). Returns a new float32 array.
    """
    if sigma_px <= 0:
        raise ParameterError(f"sigma_px must be > 0; got {sigma_px}. Use sigma_px > 0 or disable the Gaussian.")
    kernel = gaussian_kernel_1d(sigma_px).astype(np.float32)
    radius = kernel.size // 2
    if radius >= min(image.shape):  # OpenCV's reflect border needs the kernel to fit; scipy handles any size
        return typing.cast(FloatArray, scipy.ndimage.gaussian_filter(image, sigma_px, mode="reflect"))
    return typing.cast(FloatArray, cv2.sepFilter2D(image, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_REFLECT))


def median_blur(image: FloatArray, size_px: int) -> FloatArray:
    """Median filter of a (H, W) float32 image over a ``size_px`` x ``size_px`` window (odd size).

    Equal to ``scipy.ndimage.median_filter(mode='reflect')``; sizes 3 and 5 use OpenCV (about 300x faster).
    """
    if size_px < 1 or size_px % 2 == 0:
        raise ParameterError(f"median size must be an odd number of pixels >= 1; got {size_px}.")
    if size_px == 1:
        return image.copy()
    if size_px == 3 and min(image.shape) >= 2:
        # OpenCV replicates the border; for a 3x3 window that equals scipy's 'reflect' ('abc|cba').
        return typing.cast(FloatArray, cv2.medianBlur(image, 3))
    if size_px == 5 and min(image.shape) >= 3:
        padded = cv2.copyMakeBorder(image, 2, 2, 2, 2, cv2.BORDER_REFLECT)
        return typing.cast(FloatArray, np.ascontiguousarray(cv2.medianBlur(padded, 5)[2:-2, 2:-2]))
    return typing.cast(FloatArray, scipy.ndimage.median_filter(image, size=size_px, mode="reflect"))


# --------------------------------------------------------------------------------------------------- EWMA difference

def ewma_span_weight(span_frames: float) -> float:
    """Weight of the old average for an EWMA of span N frames: p = (N - 1) / (N + 1) (alpha = 2 / (N + 1))."""
    return (span_frames - 1.0) / (span_frames + 1.0)


@numba.njit(cache=True, nogil=True, fastmath=False)
def _ewma_difference_kernel(frame: FloatArray, fast: NDArray[np.float64], slow: NDArray[np.float64], out: FloatArray,
                            p_fast: float, p_slow: float) -> None:  # pragma: no cover - compiled
    q_fast = 1.0 - p_fast
    q_slow = 1.0 - p_slow
    f = frame.ravel()
    a = fast.ravel()
    b = slow.ravel()
    o = out.ravel()
    for i in range(f.size):
        x = np.float64(f[i])
        af = p_fast * a[i] + q_fast * x
        bs = p_slow * b[i] + q_slow * x
        a[i] = af
        b[i] = bs
        o[i] = np.float32(abs(af - bs))


def ewma_update(frame: FloatArray, fast: NDArray[np.float64], slow: NDArray[np.float64], *, p_fast: float,
                p_slow: float, out: FloatArray | None = None) -> FloatArray:
    """Update two EWMAs (H, W) float64 in place with ``frame`` (H, W) float32 and return ``|fast - slow|`` as float32.

    avg <- p * avg + (1 - p) * frame, in float64, in that order (bit-identical to the numpy expression). The averages
    are float64 so a run split into chunks merges to the same state (the recursion is linear, see
    :meth:`LiveDifferenceProcessor.merge_states`) to far better than the float32 output's precision.
    """
    if out is None:
        out = np.empty(frame.shape, np.float32)
    _ewma_difference_kernel(frame, fast, slow, out, float(p_fast), float(p_slow))
    return out


# --------------------------------------------------------------------------------------------------- processors

class CopyProcessor(Processor):
    """Copy the region of interest into a new live image: the template for custom processors."""

    split = "frame"

    processor_id = "insitu.copy"
    title = "Copy (ROI)"
    description = "Copies the region of interest of each frame into a new live image."

    def process(self, frame: Frame, context: Context) -> Outputs:
        return (ImageOutput("image", frame.data.copy(), frame.calibrations, frame.intensity_units),)


class NoiseReductionProcessor(Processor):
    """Median filter and/or Gaussian blur, in that order."""

    processor_id = "insitu.noise_reduction"
    split = "frame"
    title = "Noise Reduction"
    description = "Median filter (size in px) then Gaussian blur (sigma in px); set either to 0 to skip it."
    PARAMETERS = (
        Parameter("median_size_px", "Median size", "integral", 3, 0, 15, "px",
                  description="odd window size; 0 or 1 = no median"),
        Parameter("sigma_px", "Gaussian sigma", "real", 2.0, 0.0, 50.0, "px", description="0 = no Gaussian"),
    )
    median_size_px: int
    sigma_px: float

    def __init__(self, **params: typing.Any) -> None:
        super().__init__(**params)
        if self.median_size_px > 1 and self.median_size_px % 2 == 0:
            raise ParameterError(f"Median size must be odd (3, 5, 7...); got {self.median_size_px}. "
                                 f"Use {self.median_size_px + 1}.")

    def process(self, frame: Frame, context: Context) -> Outputs:
        image = frame.data
        if self.median_size_px > 1:
            image = median_blur(image, self.median_size_px)
        if self.sigma_px > 0:
            image = gaussian_blur(image, self.sigma_px)
        elif image is frame.data:
            image = image.copy()
        return (ImageOutput("image", image, frame.calibrations, frame.intensity_units),)


class LiveDifferenceProcessor(Processor):
    """|EWMA_fast - EWMA_slow|: shows where the sample changes, hides what stays.

    Time constants are spans in frames (alpha = 2 / (N + 1)) or, with ``time_in_seconds``, time constants tau in
    seconds (alpha = 1 - exp(-dt / tau), dt from the frame timestamps, so skipped frames are accounted for).
    With ``align`` each frame is first shifted onto the slow average (phase correlation), so sample drift does not
    show up as change.
    """

    processor_id = "insitu.live_difference"
    title = "Live Difference"
    description = "Absolute difference of a fast and a slow exponentially weighted moving average."
    stateful = True
    PARAMETERS = (
        Parameter("fast", "Fast time constant", "real", 2.0, 0.001, 10000.0, "frames or s"),
        Parameter("slow", "Slow time constant", "real", 20.0, 0.001, 100000.0, "frames or s"),
        Parameter("time_in_seconds", "Time constants in seconds", "boolean", False),
        Parameter("align", "Align frames (drift-robust)", "boolean", False),
    )
    fast: float
    slow: float
    time_in_seconds: bool
    align: bool

    def __init__(self, **params: typing.Any) -> None:
        super().__init__(**params)
        if not self.time_in_seconds and min(self.fast, self.slow) < 1.0:
            raise ParameterError(f"spans in frames must be >= 1 (fast={self.fast}, slow={self.slow}); "
                                 f"use spans >= 1 frame or tick 'Time constants in seconds'.")
        if self.fast >= self.slow:
            raise ParameterError(f"the fast time constant ({self.fast}) must be smaller than the slow one "
                                 f"({self.slow}); swap them.")
        self.reset()

    split = "merge"  # the two EWMAs are linear recursions (with ``align``: sequential, see split_kind)

    def reset(self) -> None:
        self._fast: NDArray[np.float64] | None = None  # float64: chunks merge exactly (see ewma_update)
        self._slow: NDArray[np.float64] | None = None
        self._last_time_s: float | None = None
        self._shape: tuple[int, int] | None = None
        self.frames_integrated = 0
        self.last_shift_px = (0.0, 0.0)
        # partial mode (split contract): avg_end = A * avg_after_first + B over the chunk, the first frame kept
        self._partial: dict[str, typing.Any] | None = None

    def split_kind(self) -> typing.Literal["frame", "merge", "sequential"]:
        return "sequential" if self.align else "merge"  # the alignment shift depends on the slow average

    def start_partial(self) -> None:
        self.reset()
        self._partial = {"first": None, "first_time_s": 0.0, "restarted": False,
                         "a_fast": 1.0, "a_slow": 1.0, "b_fast": None, "b_slow": None}

    def _process_partial(self, frame: Frame) -> None:
        part = self._partial
        assert part is not None
        data = frame.data
        if part["first"] is not None and self._shape != frame.shape:  # as reset() on a new geometry
            part.update(first=None, restarted=True, a_fast=1.0, a_slow=1.0)
        if part["first"] is None:
            part.update(first=np.array(data, np.float32), first_time_s=frame.timestamp_s,
                        b_fast=np.zeros(data.shape, np.float64), b_slow=np.zeros(data.shape, np.float64))
            self._shape = frame.shape
        else:
            p_fast, p_slow = self._weights(frame.timestamp_s)
            x = data.astype(np.float64)
            part["a_fast"] *= p_fast
            part["a_slow"] *= p_slow
            part["b_fast"] = p_fast * part["b_fast"] + (1.0 - p_fast) * x
            part["b_slow"] = p_slow * part["b_slow"] + (1.0 - p_slow) * x
        self._last_time_s = frame.timestamp_s
        self.frames_integrated += 1

    def merge_states(self, earlier: dict[str, typing.Any], partial: dict[str, typing.Any],
                     partial_frames: int) -> dict[str, typing.Any]:
        part = partial.get("_partial")
        if not part or part["first"] is None:
            return dict(earlier)
        first = part["first"].astype(np.float64)
        previous_fast, previous_slow = earlier.get("_fast"), earlier.get("_slow")
        if part["restarted"] or previous_fast is None or previous_slow is None or earlier.get("_shape") != first.shape:
            fast1, slow1 = first, first
        else:
            if self.time_in_seconds:
                last = earlier.get("_last_time_s")
                dt_s = 0.0 if last is None else max(part["first_time_s"] - last, 0.0)
                p_fast, p_slow = math.exp(-dt_s / self.fast), math.exp(-dt_s / self.slow)
            else:
                p_fast, p_slow = ewma_span_weight(self.fast), ewma_span_weight(self.slow)
            fast1 = p_fast * previous_fast.astype(np.float64) + (1.0 - p_fast) * first
            slow1 = p_slow * previous_slow.astype(np.float64) + (1.0 - p_slow) * first
        state = dict(earlier)
        state.update(_fast=part["a_fast"] * fast1 + part["b_fast"], _slow=part["a_slow"] * slow1 + part["b_slow"],
                     _last_time_s=partial["_last_time_s"], _shape=tuple(first.shape), _partial=None,
                     frames_integrated=int(earlier.get("frames_integrated", 0)) + int(partial_frames),
                     last_shift_px=partial.get("last_shift_px", (0.0, 0.0)))
        return state

    def _weights(self, timestamp_s: float) -> tuple[float, float]:
        if not self.time_in_seconds:
            return ewma_span_weight(self.fast), ewma_span_weight(self.slow)
        dt_s = 0.0 if self._last_time_s is None else max(timestamp_s - self._last_time_s, 0.0)
        return math.exp(-dt_s / self.fast), math.exp(-dt_s / self.slow)

    def process(self, frame: Frame, context: Context) -> Outputs:
        data = frame.data
        if self._partial is not None:
            self._process_partial(frame)  # pass 1 of a chunked run: its outputs are not used
            return (ImageOutput("image", np.zeros_like(data), frame.calibrations, frame.intensity_units),)
        if self._shape != frame.shape:
            self.reset()  # ROI or binning changed: start over rather than mixing geometries
        if self._fast is None or self._slow is None:
            self._fast, self._slow = data.astype(np.float64), data.astype(np.float64)
            self._shape = frame.shape
            out = np.zeros_like(data)
        else:
            if self.align:
                dy, dx = phase_correlation_shift_px(self._slow, data)
                self.last_shift_px = (dy, dx)
                data = typing.cast(FloatArray, scipy.ndimage.shift(data, (dy, dx), order=1, mode="nearest"))
            p_fast, p_slow = self._weights(frame.timestamp_s)
            out = ewma_update(np.ascontiguousarray(data, np.float32), self._fast, self._slow,
                              p_fast=p_fast, p_slow=p_slow)
        self._last_time_s = frame.timestamp_s
        self.frames_integrated += 1
        return (ImageOutput("image", out, frame.calibrations, frame.intensity_units),)


def _warm_up_kernels() -> None:
    """The EWMA kernel with the live path's argument types (writable and read-only frames)."""
    frame = np.zeros((2, 2), np.float32)
    readonly = frame.copy()
    readonly.flags.writeable = False  # frames from Swift can be read-only: a second signature
    for data in (frame, readonly):
        ewma_update(data, np.zeros((2, 2)), np.zeros((2, 2)), p_fast=0.5, p_slow=0.9)


warmup.register("processing.live.filters.ewma", _warm_up_kernels)
