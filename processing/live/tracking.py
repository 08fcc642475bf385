"""Threshold + region tracking: Otsu (or manual) threshold, binary opening/closing, the largest (or the nearest)
contiguous bright region, its centroid, area and convex area.

Pure functions and :class:`ThresholdTrackingProcessor` (``insitu.threshold_tracking``). The results equal the
plain scikit-image recipe (:func:`processing.live.reference.ref_threshold_tracking`): the histogram, Otsu threshold,
morphology with ``disk(r)`` and border mode 'ignore', 8-connected labels and ``area_convex`` (pixel centres on or
inside the hull of the pixel-edge midpoints, in exact integer arithmetic) are reproduced exactly; only the speed
differs (numba + OpenCV, GIL-free, about 20x faster).

OpenCV's thread count is left as the application set it (importing this module changes no process-wide setting).
"""
from __future__ import annotations

import dataclasses
import math
import typing

import cv2
import numpy as np
from numpy.typing import NDArray

from processing import warmup
from processing.live import _tracking_kernels
from processing.execution import parallel
from processing.base import (CircleAnnotation, Context, Frame, ImageOutput, InputError, Notice, Outputs, Parameter,
                             Processor, TimeSeriesOutput)

__all__ = ["otsu_threshold", "open_close", "prepare", "Region", "Regions", "TrackResult", "convex_area_px", "find_regions",
           "track_region", "ThresholdTrackingProcessor"]

F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]


#: beyond this |value| Otsu's histogram arithmetic would overflow float32; such frames are scaled (exactly) first
_SAFE_MAGNITUDE = 2.0 ** 40


def _finite_range(data: F32) -> tuple[float, float]:
    lo, hi = float(data.min()), float(data.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError("threshold: the frame contains NaN or infinite pixels; mask or replace them first "
                         "(dead or saturated detector pixels).")
    return lo, hi


def otsu_threshold(data: F32, *, nbins: int = 256) -> float:
    """Otsu's threshold of a float32 (H, W) frame, equal to ``skimage.filters.threshold_otsu(data)``.

    Raises :class:`InputError` for NaN/inf pixels. A flat frame returns its value (nothing lies above it).
    """
    from skimage.filters import threshold_otsu

    data = np.ascontiguousarray(data, dtype=np.float32)
    lo, hi = _finite_range(data)
    if lo == hi:
        return lo
    magnitude = max(hi, -lo)
    if magnitude > _SAFE_MAGNITUDE:
        # bin centres and Otsu's class means overflow float32 near its limit (every pixel came out 'bright'):
        # threshold the frame scaled by an exact power of two and scale the level back (same bins, same result)
        k = math.frexp(magnitude)[1] - 40
        return float(np.float32(otsu_threshold(data * np.float32(2.0 ** -k), nbins=nbins)) * np.float32(2.0 ** k))
    # numpy.histogram's bin edges for this min/max (same dtype rules), computed on a 2-element array
    edges = np.histogram(np.array([data.min(), data.max()], np.float32), bins=nbins)[1].astype(np.float32)
    n_tasks = 2 * parallel.workers()
    bounds = np.linspace(0, data.shape[0], n_tasks + 1).astype(int)

    def part(rows: tuple[int, int]) -> NDArray[np.int64]:
        counts = np.zeros(nbins, np.int64)
        _tracking_kernels.histogram_f32(data[rows[0]:rows[1]], edges, counts)
        return counts

    counts = np.sum(parallel.map_chunks(part, [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]),
                    axis=0)
    centres = (edges[:-1] + edges[1:]) / 2.0
    return float(threshold_otsu(hist=(counts, centres)))  # type: ignore[no-untyped-call]


def _footprint(radius_px: int) -> U8:
    from skimage.morphology import disk
    return typing.cast(U8, disk(radius_px).astype(np.uint8))  # type: ignore[no-untyped-call]


def open_close(mask: U8, radius_px: int) -> U8:
    """Binary opening then closing of a uint8 (H, W) mask (nonzero = foreground) with ``disk(radius_px)``; border
    mode 'ignore' (scikit-image's default). Returns uint8 0/255."""
    if radius_px <= 0:
        return typing.cast(U8, np.where(mask != 0, np.uint8(255), np.uint8(0)))
    fp = _footprint(radius_px)
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, fp)
    return typing.cast(U8, cv2.morphologyEx(opened, cv2.MORPH_CLOSE, fp))


@dataclasses.dataclass(frozen=True)
class Region:
    """One 8-connected region: index (raster order of its first pixel), centroid (y, x) px in the frame, area px,
    bbox (top, left, height, width)."""

    index: int
    centroid_px: tuple[float, float]
    area_px: int
    bbox: tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class Regions:
    """All regions of a mask as row runs (run_y, run_x0, run_x1 inclusive, run_region) and per-region arrays."""

    shape: tuple[int, int]
    run_y: NDArray[np.int32]
    run_x0: NDArray[np.int32]
    run_x1: NDArray[np.int32]
    run_region: NDArray[np.int32]
    area_px: NDArray[np.int64]
    sum_y: NDArray[np.float64]
    sum_x: NDArray[np.float64]
    bbox: NDArray[np.int64]  # (m, 4) top, left, bottom, right (inclusive)

    def __len__(self) -> int:
        return int(self.area_px.size)

    def region(self, index: int) -> Region:
        top, left, bottom, right = (int(v) for v in self.bbox[index])
        area = int(self.area_px[index])
        return Region(index, (float(self.sum_y[index] / area), float(self.sum_x[index] / area)), area,
                      (top, left, bottom - top + 1, right - left + 1))

    def image(self, chosen: int | None) -> U8:
        """uint8 (H, W): 0 background, 1 other regions, 2 the region ``chosen``."""
        out = np.zeros(self.shape, np.uint8)
        _tracking_kernels.paint_runs(self.run_y, self.run_x0, self.run_x1, self.run_region,
                                     -1 if chosen is None else chosen, out)
        return out


def find_regions(mask: U8) -> Regions:
    """8-connected regions of a uint8 (H, W) mask (nonzero = foreground), numbered like ``skimage.measure.label``."""
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    return Regions(typing.cast(tuple[int, int], mask.shape), *_tracking_kernels.label_runs(mask))


def convex_area_px(regions: Regions, index: int) -> int:
    """``regionprops(...).area_convex`` of region ``index``, exactly: pixel centres on or inside the convex hull of
    the region's pixel-edge midpoints (integer arithmetic on doubled coordinates)."""
    top, left, bottom, right = (int(v) for v in regions.bbox[index])
    candidates = _tracking_kernels.region_hull_candidates(regions.run_y, regions.run_x0, regions.run_x1,
                                                          regions.run_region, index, top, left, bottom, right)
    if candidates.shape[0] == 0:
        return 0
    return int(_tracking_kernels.count_pixels_in_hull(_tracking_kernels.convex_hull_doubled(candidates)))


@dataclasses.dataclass(frozen=True)
class TrackResult:
    """One frame's result. ``region`` is None when nothing lies above the threshold.

    threshold: the level used; mask: uint8 (H, W) after morphology (0/255); regions: all regions of the mask;
    region: the chosen region; area_convex_px: its convex area.
    """

    threshold: float
    mask: U8
    regions: Regions
    region: Region | None
    area_convex_px: int

    @property
    def n_regions(self) -> int:
        return len(self.regions)

    @property
    def radius_px(self) -> float:
        """Radius of the circle with the region's convex area: sqrt(area_convex / pi)."""
        return math.sqrt(self.area_convex_px / math.pi)

    def image(self) -> U8:
        """uint8 (H, W): 0 background, 1 other regions, 2 the tracked region."""
        return self.regions.image(self.region.index if self.region else None)


def prepare(data: F32, *, dark: bool = False, smooth_sigma_px: float = 0.0) -> F32:
    """The image the threshold is applied to: optionally Gaussian-smoothed (sigma px, scipy's 'reflect' border and
    4-sigma kernel) and negated for dark regions (bright-field particles), as float32 (H, W)."""
    data = np.ascontiguousarray(data, dtype=np.float32)
    if smooth_sigma_px > 0:
        half = int(4.0 * smooth_sigma_px + 0.5)
        data = typing.cast(F32, cv2.GaussianBlur(data, (2 * half + 1, 2 * half + 1), smooth_sigma_px,
                                                 borderType=cv2.BORDER_REFLECT))
    if dark:
        data = np.negative(data)
    return data


def track_region(data: F32, *, threshold: float | None = None, radius_px: int = 2,
                 previous_centre_px: tuple[float, float] | None = None, dark: bool = False,
                 smooth_sigma_px: float = 0.0) -> TrackResult:
    """Threshold a float32 (H, W) frame (Otsu when ``threshold`` is None), open and close with ``disk(radius_px)``,
    and pick the largest 8-connected region (or, given ``previous_centre_px`` (y, x), the region whose centroid is
    nearest to it). ``dark``: track regions darker than the threshold; everything (Otsu, a manual ``threshold``,
    the returned ``threshold``) then refers to the negated image ``-data``. ``smooth_sigma_px``: Gaussian
    pre-smoothing (see :func:`prepare`). Raises :class:`InputError` for NaN/inf pixels."""
    data = prepare(data, dark=dark, smooth_sigma_px=smooth_sigma_px)
    if threshold is None:
        level = otsu_threshold(data)
    else:
        _finite_range(data)
        level = float(threshold)
    if data.size < 16:  # OpenCV takes a 1x1 (or 4-element) array for a scalar: compare with numpy
        mask = typing.cast(U8, np.where(data > np.float32(level), np.uint8(255), np.uint8(0)))
    else:
        mask = typing.cast(U8, cv2.compare(data, np.float64(np.float32(level)), cv2.CMP_GT))  # type: ignore[call-overload]
    mask = open_close(mask, radius_px)
    regions = find_regions(mask)
    if len(regions) == 0:
        return TrackResult(level, mask, regions, None, 0)
    if previous_centre_px is None:
        index = int(np.argmax(regions.area_px))  # first of equals (raster order), like max() in the reference
    else:
        py, px = previous_centre_px
        cy = regions.sum_y / regions.area_px
        cx = regions.sum_x / regions.area_px
        index = int(np.argmin((cy - py) ** 2 + (cx - px) ** 2))
    return TrackResult(level, mask, regions, regions.region(index), convex_area_px(regions, index))


class ThresholdTrackingProcessor(Processor):
    """Threshold + tracking: the largest bright region (or the one nearest the previous one), its centre, area and
    convex area; a circle marker that follows it and a time plot of centre x, y and convex area."""

    processor_id = "insitu.threshold_tracking"
    title = "Threshold Tracking"
    description = "Otsu (or manual) threshold, opening/closing, largest region: centre, convex area versus time."
    PARAMETERS = (
        Parameter("threshold_mode", "Threshold", "choice", "otsu", choices=("otsu", "manual"),
                  description="Otsu's automatic level, or the manual level below."),
        Parameter("manual_level", "Manual level", "real", 0.0,
                  description="Intensity level used when Threshold is 'manual' (pixels above it are bright)."),
        Parameter("polarity", "Region", "choice", "bright", choices=("bright", "dark"),
                  description="Track regions brighter than the threshold, or darker (particles in bright field)."),
        Parameter("smooth_sigma_px", "Pre-smoothing", "real", 0.0, 0.0, 20.0, "px",
                  description="Gaussian sigma applied before thresholding (0: none, the reference recipe)."),
        Parameter("radius_px", "Opening/closing radius", "integral", 2, 0, 50, "px",
                  description="Radius of the disc used for the binary opening and closing (0: none)."),
        Parameter("track", "Track", "choice", "largest", choices=("largest", "nearest"),
                  description="Follow the largest region, or the region nearest the previous one."),
        Parameter("history_points", "History", "integral", 10000, 2, 1_000_000, "points",
                  description="Number of most recent points kept in the time plot."),
    )
    OUTPUTS = (("image", "image"), ("marker", "circle"), ("track", "timeseries"), ("status", "notice"))
    stateful = True
    #: "largest": the time plot is an append-only history and the marker the last region seen, so chunks merge
    #: exactly; "nearest" follows the previous centre: sequential (see split_kind)
    split = "merge"

    threshold_mode: str
    manual_level: float
    polarity: str
    smooth_sigma_px: float
    radius_px: int
    track: str
    history_points: int

    def __init__(self, **params: typing.Any) -> None:
        super().__init__(**params)
        self.reset()
        warmup.warm_up_in_background()

    def reset(self) -> None:
        self._history = np.empty((4, 256), np.float64)  # rows: time s, x, y, convex area; columns: points
        self._count = 0
        self._previous_px: tuple[float, float] | None = None
        self._last_marker_px: tuple[float, float] = (0.0, 0.0)
        self._units: tuple[str, str, str] = ("", "", "")
        self._partial: dict[str, typing.Any] | None = None  # split contract: what a chunk needs from before it

    def split_kind(self) -> typing.Literal["frame", "merge", "sequential"]:
        return "sequential" if self.track == "nearest" else "merge"

    def start_partial(self) -> None:
        self.reset()
        self._partial = {"first_units": None, "restarted": False, "found": False}

    def merge_states(self, earlier: dict[str, typing.Any], partial: dict[str, typing.Any],
                     partial_frames: int) -> dict[str, typing.Any]:
        part = partial.get("_partial")
        if not part or part["first_units"] is None:
            return dict(earlier)
        keep = not part["restarted"] and tuple(earlier.get("_units", ("", "", ""))) == part["first_units"]
        history = partial["_history"][:, :partial["_count"]]
        if keep and earlier.get("_count", 0):
            history = np.concatenate((earlier["_history"][:, :earlier["_count"]], history), axis=1)
        history = history[:, -self.history_points:]
        buffer = np.empty((4, max(256, history.shape[1])), np.float64)
        buffer[:, :history.shape[1]] = history
        state = dict(partial)
        state.update(_history=buffer, _count=int(history.shape[1]), _partial=None,
                     _last_marker_px=partial["_last_marker_px"] if part["found"]
                     else earlier.get("_last_marker_px", (0.0, 0.0)))
        return state

    def _append(self, point: tuple[float, float, float, float]) -> None:
        """Add one (t, x, y, area) point, keeping the last ``history_points`` (amortised O(1))."""
        if self._count >= self.history_points:
            keep = self.history_points - 1
            self._history[:, :keep] = self._history[:, self._count - keep:self._count]
            self._count = keep
        if self._count == self._history.shape[1]:
            grown = np.empty((4, min(2 * self._count, max(self.history_points, 1))), np.float64)
            grown[:, :self._count] = self._history[:, :self._count]
            self._history = grown
        self._history[:, self._count] = point
        self._count += 1

    def process(self, frame: Frame, context: Context) -> Outputs:
        previous = self._previous_px if self.track == "nearest" else None
        dark = self.polarity == "dark"
        level = None if self.threshold_mode == "otsu" else (-self.manual_level if dark else self.manual_level)
        result = track_region(frame.data, threshold=level, radius_px=self.radius_px, previous_centre_px=previous,
                              dark=dark, smooth_sigma_px=self.smooth_sigma_px)
        image = result.image()
        cal_y, cal_x = frame.calibrations
        units = (cal_x.units, cal_y.units, f"{cal_x.units}²" if cal_x.units else "px²")
        if self._partial is not None:  # partial mode: record what the merge needs to know about the chunk's start
            if self._partial["first_units"] is None:
                self._partial["first_units"] = units
            elif units != self._units:
                self._partial["restarted"] = True
            self._partial["found"] = self._partial["found"] or result.region is not None
        if units != self._units:
            self._count = 0
        self._units = units
        notices: list[Notice] = []
        if result.region is None:
            self._previous_px = None
            marker = CircleAnnotation("marker", self._last_marker_px, 0.0, "region", visible=False)
            notices.append(Notice("status", f"no region above the threshold {result.threshold:.6g} (after opening "
                                            f"and closing with radius {self.radius_px} px) in frame "
                                            f"{frame.frame_number}; tracking resumes when one appears."))
        else:
            cy, cx = result.region.centroid_px
            self._previous_px = (cy, cx)
            centre = (cy + frame.origin_px[0], cx + frame.origin_px[1])
            self._last_marker_px = centre
            marker = CircleAnnotation("marker", centre, result.radius_px, "region")
            area = result.area_convex_px * abs(cal_x.scale * cal_y.scale)
            self._append((frame.timestamp_s, cal_x.offset + cal_x.scale * cx, cal_y.offset + cal_y.scale * cy, area))
        history = self._history[:, :self._count]
        series = TimeSeriesOutput("track", history[0].copy(), history[1:].copy(),
                                  ("centre x", "centre y", "convex area"), units, "Tracked region")
        # float32 labels, not uint8: Swift reads a uint8 (H, 3 or 4) image as RGB(A) (frames or ROIs 3-4 px wide)
        main = ImageOutput("image", image.astype(np.float32), frame.calibrations, "", "Threshold regions (2 = tracked)")
        return (main, marker, series, *notices)


def _warm_up_kernels() -> None:
    """The labelling, hull and histogram kernels on writable and read-only frames (the warm-up registry)."""
    frame = np.random.default_rng(0).normal(size=(48, 40)).astype(np.float32)
    frame[10:20, 12:22] += 5.0
    readonly = frame.copy()
    readonly.flags.writeable = False
    for data in (frame, readonly):
        track_region(data).image()


warmup.register("processing.live.tracking", _warm_up_kernels)
