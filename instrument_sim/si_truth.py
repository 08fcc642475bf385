"""Ground truth of spectrum-image runs on the simulated STEM: which sample point each SI pixel really saw.

:class:`ScanTruthRecorder` keeps the :class:`~instrument_sim.stem_scan.FrameTruth` of every frame the simulated scan
renders (SI sections, drift-reference sub-scans), through the scan simulator's public ``prepare_frame`` /
``current_frame_truth``. :func:`si_residual_px` turns the section frames of one SI back into a per-pixel
*residual*: how far (in SI pixels, (dy, dx)) the sample point seen by each pixel is from the drift-free point of
that pixel (the point it would have seen with no drift and no correction). This is the registration error of any
map made from the SI, pixel by pixel, whatever the correction method (ours, Swift's ``DriftTracker``, none).

Convention: residual ``r = (nominal - sample) / pixel_size``; a pixel with residual r shows the drift-free content
of position ``q - r``.
"""
from __future__ import annotations

import dataclasses
import threading
import typing

import numpy as np
from numpy.typing import NDArray

from instrument_sim.errors import SimulatorParameterError
from instrument_sim.stem_scan import FrameTruth, ScanGeometry, SimScanSimulator

__all__ = ["ScanTruthRecorder", "SIGeometry", "si_residual_px", "effective_residual_px", "rms_px"]

FloatArray = NDArray[np.float64]


class ScanTruthRecorder:
    """Record the ground truth of every frame rendered by a :class:`SimScanSimulator` (context manager).

    >>> with ScanTruthRecorder(simulator) as rec:          # doctest: +SKIP
    ...     run_acquisition()
    >>> frames = rec.frames                                # FrameTruth objects, oldest first
    """

    def __init__(self, simulator: SimScanSimulator) -> None:
        self._sim = simulator
        self._frames: list[FrameTruth] = []
        self._lock = threading.Lock()
        self._original: typing.Any = None
        self._stale: tuple[ScanGeometry, float | None] | None = None

    def __enter__(self) -> ScanTruthRecorder:
        stale = self._sim.current_frame_truth()  # a frame scanned before recording started is not recorded
        self._stale = None if stale is None else (stale.geometry, float(np.nanmin(stale.times_s))
                                                  if np.isfinite(stale.times_s).any() else None)
        original_prepare = self._sim.prepare_frame
        original_reset = self._sim.reset_frame
        self._original = (original_prepare, original_reset)

        def prepare_frame(geometry: ScanGeometry) -> None:
            self._snapshot(new_geometry=geometry)
            original_prepare(geometry)

        def reset_frame() -> None:
            self._snapshot(new_geometry=None)
            original_reset()

        setattr(self._sim, "prepare_frame", prepare_frame)
        setattr(self._sim, "reset_frame", reset_frame)
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        self._snapshot(new_geometry=None)
        if self._original is not None:
            for name in ("prepare_frame", "reset_frame"):
                try:
                    delattr(self._sim, name)
                except AttributeError:
                    pass
            self._original = None

    def _snapshot(self, *, new_geometry: ScanGeometry | None) -> None:
        truth = self._sim.current_frame_truth()
        if truth is None or (new_geometry is not None and truth.geometry == new_geometry):
            return
        if not np.isfinite(truth.times_s).any():  # nothing rendered yet
            return
        if self._stale is not None and self._stale == (truth.geometry, float(np.nanmin(truth.times_s))):
            return
        with self._lock:
            if self._frames and self._frames[-1].geometry == truth.geometry and np.array_equal(
                    self._frames[-1].times_s[:1], truth.times_s[:1], equal_nan=True):
                self._frames[-1] = truth  # the same frame, further along
                return
            self._frames.append(truth)

    @property
    def frames(self) -> list[FrameTruth]:
        self._snapshot(new_geometry=None)
        with self._lock:
            return list(self._frames)


@dataclasses.dataclass(frozen=True)
class SIGeometry:
    """Nominal (drift-free) geometry of an SI: shape (H, W) px, scan field (nm) and its centre (nm)."""

    shape_px: tuple[int, int]
    field_size_nm: tuple[float, float]
    field_center_nm: tuple[float, float]
    #: scan rotation (rad): the SI grid is rotated about its centre (nion Geometry convention); residuals are then
    #: reported in the SI's own (scan) axes
    rotation_rad: float = 0.0

    @property
    def pixel_size_nm(self) -> tuple[float, float]:
        return self.field_size_nm[0] / self.shape_px[0], self.field_size_nm[1] / self.shape_px[1]

    def nominal_positions_nm(self) -> tuple[FloatArray, FloatArray]:
        """Drift-free sample positions (y, x) nm of the SI pixels, each (H, W)."""
        from instrument_sim.samples import scan_positions_nm
        return scan_positions_nm(self.shape_px, fov_size_nm=self.field_size_nm, center_nm=self.field_center_nm,
                                 rotation_rad=self.rotation_rad)

    def to_scan_axes(self, vectors: FloatArray) -> FloatArray:
        """(..., 2) sample-axis (y, x) vectors in the SI's scan axes (inverse rotation)."""
        c, s = np.cos(-self.rotation_rad), np.sin(-self.rotation_rad)
        y, x = vectors[..., 0], vectors[..., 1]
        return np.stack([s * x + c * y, c * x - s * y], axis=-1)


def si_residual_px(frames: typing.Sequence[FrameTruth], geometry: SIGeometry, *, section_lines: int,
                   section_rows: typing.Sequence[int] | None = None,
                   section_windows: typing.Sequence[tuple[int, int, float, float]] | None = None
                   ) -> tuple[FloatArray, FloatArray]:
    """Per-pixel residual (H, W, 2) of an SI acquired in sections of ``section_lines`` rows, and its times (H, W).

    The SI's section frames are the recorded frames whose shape is (rows, W) with the SI's pixel size (drift-
    reference sub-scans and other frames are skipped). ``section_rows``: first row of each section in acquisition
    order (a section scanned again appears twice; the later scan wins); default consecutive sections.
    Pixels never visited are NaN. ``section_windows``: (row0, rows, t_start_s, t_end_s) of each section in
    acquisition order (variable heights; the frame whose first visit time lies in the window is the section's),
    which replaces ``section_lines`` / ``section_rows``.
    """
    h, w = geometry.shape_px
    sy, sx = geometry.pixel_size_nm
    ny, nx = geometry.nominal_positions_nm()
    residual = np.full((h, w, 2), np.nan)
    times = np.full((h, w), np.nan)
    if section_windows is not None:
        matched = 0
        for row0, rows, t0, t1 in section_windows:
            for f in frames:
                fr, fw = f.geometry.shape_px
                first = f.times_s[np.isfinite(f.times_s)]
                if fr != rows or fw != w or first.size == 0 or not (t0 - 1e-9 <= first.min() <= t1 + 1e-9):
                    continue
                if not np.isclose(f.geometry.fov_size_nm[1] / fw, sx, rtol=1e-6):
                    continue
                pos = f.positions_nm.reshape(rows, fw, 2)
                off = f.content_offset_nm.reshape(rows, fw, 2)
                residual[row0:row0 + rows, :, 0] = (ny[row0:row0 + rows] - (pos[..., 0] - off[..., 0])) / sy
                residual[row0:row0 + rows, :, 1] = (nx[row0:row0 + rows] - (pos[..., 1] - off[..., 1])) / sx
                times[row0:row0 + rows] = f.times_s.reshape(rows, fw)
                matched += 1
                break
        if matched == 0:
            raise SimulatorParameterError("no recorded frame matches any of the SI sections' time windows; record "
                                          "the run with a ScanTruthRecorder.")
        return _in_scan_axes(residual, geometry), times
    starts = list(section_rows) if section_rows is not None else list(range(0, h, section_lines))
    k = 0
    matched = 0
    for f in frames:
        rows, width = f.geometry.shape_px
        if k >= len(starts):
            break
        row0 = starts[k]
        expected_rows = min(section_lines, h - row0)
        if width != w or rows != expected_rows:
            continue
        if not np.isclose(f.geometry.fov_size_nm[1] / width, sx, rtol=1e-6):
            continue
        k += 1
        matched += 1
        pos = f.positions_nm.reshape(rows, width, 2)
        off = f.content_offset_nm.reshape(rows, width, 2)
        sample_y = pos[..., 0] - off[..., 0]
        sample_x = pos[..., 1] - off[..., 1]
        residual[row0:row0 + rows, :, 0] = (ny[row0:row0 + rows] - sample_y) / sy
        residual[row0:row0 + rows, :, 1] = (nx[row0:row0 + rows] - sample_x) / sx
        times[row0:row0 + rows] = f.times_s.reshape(rows, width)
    if matched == 0:
        raise SimulatorParameterError(
            f"no recorded frame matches an SI section of ({section_lines}, {w}) px; record the run with a "
            f"ScanTruthRecorder and pass the SI geometry and section height used.")
    return _in_scan_axes(residual, geometry), times


def _in_scan_axes(residual_sample: FloatArray, geometry: SIGeometry) -> FloatArray:
    """Residual (H, W, 2) from sample axes (nm / pixel size) to the SI's scan axes (SI pixels)."""
    if geometry.rotation_rad == 0.0:
        return residual_sample
    sy, sx = geometry.pixel_size_nm
    nm = residual_sample * np.array([sy, sx])
    return np.asarray(geometry.to_scan_axes(nm) / np.array([sy, sx]), dtype=np.float64)


def effective_residual_px(residual_px: typing.Any, correction_px: typing.Any) -> FloatArray:
    """Residual (H, W, 2) after a resampling correction ``out[q] = raw[q + c(q)]``: ``r(q + c(q)) - c(q)``.

    ``residual_px`` is the raw SI's per-pixel residual (:func:`si_residual_px`), interpolated bilinearly at
    ``q + c``; NaN (unvisited) pixels stay NaN.
    """
    r = np.asarray(residual_px, dtype=np.float64)
    c = np.asarray(correction_px, dtype=np.float64)
    if r.shape != c.shape or r.ndim != 3 or r.shape[-1] != 2:
        raise SimulatorParameterError(f"residual {r.shape} and correction {c.shape} must both be (H, W, 2).")
    h, w, _ = r.shape
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    sy = np.clip(yy + c[..., 0], 0, h - 1)
    sx = np.clip(xx + c[..., 1], 0, w - 1)
    y0 = np.clip(np.floor(sy).astype(np.int64), 0, max(h - 2, 0))
    x0 = np.clip(np.floor(sx).astype(np.int64), 0, max(w - 2, 0))
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]
    at = ((1 - fy) * (1 - fx) * r[y0, x0] + (1 - fy) * fx * r[y0, x1] + fy * (1 - fx) * r[y1, x0]
          + fy * fx * r[y1, x1])
    return np.asarray(at - c, dtype=np.float64)


def rms_px(residual_px: typing.Any, *, remove_mean: bool = False) -> float:
    """RMS length of the (dy, dx) residual over the visited pixels (NaN skipped), optionally about its mean."""
    r = np.asarray(residual_px, dtype=np.float64).reshape(-1, 2)
    r = r[np.isfinite(r).all(axis=1)]
    if r.size == 0:
        return float("nan")
    if remove_mean:
        r = r - r.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(r * r, axis=1))))
