"""When each pixel of an SI section was scanned, and how many lines a section interval in seconds is.

A synchronized section is clocked by the camera: each camera frame (exposure + read-out) advances the probe by one
slot, ``flyback_pixels`` slots per line are flyback. The true pixel period is therefore longer than the exposure
(the read-out), and the first pixel comes after a start-up delay (stream set-up, camera start). Both are measured:

* from the scan device's report (:class:`ScanTiming` built from its first-pixel time and pixel/line periods) when
  it has one (the simulated scan does; a real scan device reports frame and line times);
* else from the camera deliveries (pixels filled versus time, a straight-line fit) when there are two or more;
* else from the section's measured span: the data of ``rows * (W + flyback)`` clock slots arrived by ``t_end``
  (the pixel period is the span divided by the slots, the start-up delay the one measured on an earlier section).

The nominal exposure is never used as the pixel period when anything measured is available, and the conversion of
a section interval in seconds to lines uses the measured line period (:func:`lines_for_interval`).
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import ParameterError

__all__ = ["ScanTiming", "timing_from_report", "timing_from_deliveries", "lines_for_interval", "bootstrap_wait_s"]

FloatArray = NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class ScanTiming:
    """Raster timing of a section: pixel (i, j) at ``first_pixel_time_s + i * line_period_s + j * pixel_period_s``.

    ``source``: "scan device", "camera deliveries", "section span" or "nominal" (how it was obtained).
    """

    first_pixel_time_s: float
    pixel_period_s: float
    line_period_s: float
    source: str
    #: optional per-line first-pixel times and pixel periods (s) when the device reports them
    line_start_times_s: tuple[float, ...] = ()
    line_pixel_periods_s: tuple[float, ...] = ()

    def pixel_times_s(self, rows: int, width: int) -> FloatArray:
        """(rows, width) scan time of every pixel (s); per-line times where reported, else the regular raster."""
        i = np.arange(rows, dtype=np.float64)
        j = np.arange(width, dtype=np.float64)
        starts = self.first_pixel_time_s + i * self.line_period_s
        periods = np.full(rows, self.pixel_period_s)
        if len(self.line_start_times_s) == rows and len(self.line_pixel_periods_s) == rows:
            reported = np.asarray(self.line_start_times_s, dtype=np.float64)
            reported_p = np.asarray(self.line_pixel_periods_s, dtype=np.float64)
            starts = np.where(np.isfinite(reported), reported, starts)
            periods = np.where(np.isfinite(reported_p) & (reported_p > 0), reported_p, periods)
        return np.asarray(starts[:, None] + j[None, :] * periods[:, None], dtype=np.float64)

    def to_dict(self) -> dict[str, typing.Any]:
        d = dataclasses.asdict(self)
        d.pop("line_start_times_s")
        d.pop("line_pixel_periods_s")
        return d


def timing_from_report(report: typing.Any, shape: tuple[int, int]) -> ScanTiming | None:
    """A :class:`ScanTiming` from a scan device's frame-timing report (an object with ``first_pixel_time_s``,
    ``pixel_period_s``, ``line_period_s`` and optionally ``shape_px``); None if absent or for another frame."""
    if report is None:
        return None
    try:
        first = float(report.first_pixel_time_s)
        pixel = float(report.pixel_period_s)
        line = float(report.line_period_s)
    except (AttributeError, TypeError, ValueError):
        return None
    reported_shape = getattr(report, "shape_px", None)
    if reported_shape is not None and tuple(reported_shape) != tuple(shape):
        return None
    if not (math.isfinite(first) and pixel > 0 and line > 0):
        return None
    starts = tuple(float(v) for v in getattr(report, "line_start_times_s", ()) or ())
    periods = tuple(float(v) for v in getattr(report, "line_pixel_periods_s", ()) or ())
    return ScanTiming(first, pixel, line, "scan device", starts, periods)


def timing_from_deliveries(deliveries: typing.Sequence[tuple[float, int]], shape: tuple[int, int], *,
                           flyback_pixels: int, t_start_s: float, t_end_s: float, nominal_period_s: float,
                           start_delay_s: float | None = None) -> ScanTiming:
    """Timing of a section from the camera deliveries ``(time, pixels filled)`` (see the module docstring).

    ``start_delay_s``: the delay from the call to the first pixel measured on an earlier section (None: unknown).
    """
    rows, width = shape
    if rows < 1 or width < 1:
        raise ParameterError(f"section shape must be >= 1x1; got {shape}.")
    slots_per_line = width + max(int(flyback_pixels), 0)
    points = sorted({c: t for t, c in deliveries if c > 0}.items())
    if len(points) >= 2:
        c = np.array([pt[0] for pt in points], dtype=np.float64)
        t = np.array([pt[1] for pt in points], dtype=np.float64)
        b, a = np.polyfit(c, t, 1)  # t = a + b * pixels (b: time per *pixel*, flyback included)
        if b > 0:
            period = float(b) * width / slots_per_line
            first = float(a) + float(flyback_pixels) * period
            return ScanTiming(first, period, period * slots_per_line, "camera deliveries")
    end = float(points[-1][1]) if points else float(t_end_s)
    slots = rows * slots_per_line
    if start_delay_s is not None and end - (t_start_s + start_delay_s) > 0:
        period = (end - (t_start_s + start_delay_s)) / slots
        return ScanTiming(t_start_s + start_delay_s + flyback_pixels * period, period, period * slots_per_line,
                          "section span")
    period = float(nominal_period_s)
    first = end - slots * period + flyback_pixels * period
    return ScanTiming(first, period, period * slots_per_line, "nominal")


def lines_for_interval(interval_s: float, line_period_s: float, height: int, *, overhead_s: float = 0.0) -> int:
    """Lines per section for a section interval ``interval_s`` (s) at the measured ``line_period_s`` (s):
    the interval includes the section's start-up ``overhead_s``; at least 1, at most ``height``."""
    if not (interval_s > 0 and line_period_s > 0):
        raise ParameterError(f"interval_s ({interval_s}) and line_period_s ({line_period_s}) must be > 0.")
    usable = max(interval_s - max(overhead_s, 0.0), line_period_s)
    return int(np.clip(int(round(usable / line_period_s)), 1, max(height, 1)))


def bootstrap_wait_s(k: int, scan_s: float, max_wait_s: float) -> float:
    """Wait (s) before bootstrap reference scan ``k`` (0-based) after the first reference scan, which took
    ``scan_s`` (s): ``(2**k - 1) * scan_s``, at most ``max_wait_s``, so the baselines between scan starts double
    (one scan, two, four...).

    Why doubling: on a crystal each residual must stay below half a lattice period (0.2 nm for the 0.395 nm
    perovskite); the first baseline is as short as a scan (even 0.8 nm/s, the issue's fastest linear + sinusoidal
    drift, moves ~0.04 nm in 0.05 s), and each later one is predicted from a rate measured over about as long as
    itself, so its miss stays a few times the measurement noise, while the last baseline is long enough to give
    the first section its rate. (A fixed 0.3 s wait made the first baseline ~0.4 s: 0.16-0.2 nm at 0.4-0.5 nm/s,
    half a period, and the chain could start on a rate alias: sweep seed 9015.)"""
    if k < 0 or not (scan_s >= 0.0) or not (max_wait_s >= 0.0):
        raise ParameterError(f"bootstrap_wait_s needs k >= 0, scan_s >= 0 and max_wait_s >= 0; got {k}, {scan_s}, "
                             f"{max_wait_s}.")
    return float(min(max_wait_s, (2 ** k - 1) * scan_s))
