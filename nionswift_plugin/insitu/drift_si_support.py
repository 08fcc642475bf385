"""Parts of the drift-corrected SI engine that are not the acquisition loop: the live analysis hand-over and the
EEGS laser. Mixed into :class:`nionswift_plugin.insitu.drift_si.DriftCorrectedSI` (uses its ``settings``,
``result``, ``analysis_event`` and devices).
"""
from __future__ import annotations

import copy
import logging
import threading
import typing

import numpy as np

from nion.data import DataAndMetadata
from nion.instrumentation import Acquisition
from nion.instrumentation import scan_base
from nion.utils import Geometry

from processing.spectroscopy import live_analysis
from processing.spectroscopy.si_result import PassGeometry, PassResult
from processing.spectroscopy.si_settings import DriftSIError, DriftSISettings, Rect
from processing.spectroscopy.spectrum_alignment import EnergyAxis

if typing.TYPE_CHECKING:
    from nion.utils import Event
    from nionswift_plugin.insitu.drift_si_items import DriftSIResult

__all__ = ["EngineSupport"]


class _TrackingDataChannel(Acquisition.DataAndMetadataDataChannel):
    """Collects the synchronized data like Swift's own channel and remembers how far each channel was filled,
    so that an interrupted section still yields its acquired pixels."""

    def __init__(self, clock: typing.Callable[[], float], timed_segment: str) -> None:
        super().__init__()
        self.filled: dict[Acquisition.Channel, int] = {}
        self.shapes: dict[Acquisition.Channel, tuple[int, ...]] = {}
        self.lock = threading.Lock()
        self._clock = clock
        self._timed_segment = timed_segment
        #: (time, pixels filled) at each delivery of the timed (camera) channel
        self.deliveries: list[tuple[float, int]] = []

    def update_data(self, channel: Acquisition.Channel, source_data: typing.Any, source_slice: typing.Any,
                    dest_slice: slice, data_metadata: DataAndMetadata.DataMetadata) -> None:
        now = self._clock()
        super().update_data(channel, source_data, source_slice, dest_slice, data_metadata)
        with self.lock:
            self.filled[channel] = max(self.filled.get(channel, 0), int(dest_slice.stop or 0))
            self.shapes[channel] = tuple(data_metadata.data_shape)
            if channel.segments and channel.segments[0] == self._timed_segment:
                shape = self.shapes[channel]
                per_pixel = int(np.prod(shape[2:])) if len(shape) > 2 else 1
                self.deliveries.append((now, self.filled[channel] // max(per_pixel, 1)))

    def pixels(self, channel: Acquisition.Channel, n_pixel_dims: int = 2) -> int:
        with self.lock:
            shape = self.shapes.get(channel)
            if shape is None:
                return 0
            per_pixel = int(np.prod(shape[n_pixel_dims:])) if len(shape) > n_pixel_dims else 1
            return self.filled.get(channel, 0) // max(per_pixel, 1)



class EngineSupport:
    """Live analysis and laser control of a run (see the module docstring)."""

    result: DriftSIResult
    analysis_event: Event.Event
    _analysis: live_analysis.LiveAnalysis | None
    _analysis_runner: live_analysis.LiveAnalysisRunner | None
    _analysis_section: int
    _laser: typing.Any
    settings: DriftSISettings
    _scan: typing.Any
    _camera: typing.Any
    _cam_params: typing.Any
    _base: scan_base.ScanFrameParameters
    _ctx_shape: tuple[int, int]
    _ctx_px_nm: tuple[float, float]

    def _eegs_geometry(self) -> PassGeometry:
        s = self.settings
        ft, fl, fh, fw = s.scan_field
        h, w = s.si_size_px
        py, _px = s.eegs_point
        if s.eegs_geometry == "map":
            return PassGeometry(s.scan_field, (h, w), s.exposure_s * s.frames_per_wavelength)
        if s.eegs_geometry == "line":
            row = min(int(py * h), h - 1)
            return PassGeometry((ft + fh * row / h, fl, fh / h, fw), (1, w), s.exposure_s * s.frames_per_wavelength)
        return self._point_geometry(s.frames_per_wavelength)

    def _point_geometry(self, frames: int) -> PassGeometry:
        """N frames at one point: a 1 x N sub-scan over a negligible width (0.1 % of one SI pixel)."""
        s = self.settings
        ft, fl, fh, fw = s.scan_field
        h, w = s.si_size_px
        py, px = s.eegs_point
        cy, cx = ft + fh * (min(int(py * h), h - 1) + 0.5) / h, fl + fw * (min(int(px * w), w - 1) + 0.5) / w
        width = 1e-3 * fw / w
        return PassGeometry((cy - 0.5 * fh / h, cx - width / 2, fh / h, width), (1, frames), s.exposure_s)

    def _reference_shape(self) -> tuple[int, int]:
        s = self.settings
        _t, _l, rh, rw = s.reference_region
        ctx_h, ctx_w = self._ctx_shape
        aspect = (rw * ctx_w * self._ctx_px_nm[1]) / (rh * ctx_h * self._ctx_px_nm[0])
        n = s.reference_size_px
        return (n, max(8, int(round(n * aspect)))) if aspect >= 1 else (max(8, int(round(n / aspect))), n)

    def _frame_parameters(self, rect: Rect, shape: tuple[int, int], offset_nm: tuple[float, float]
                          ) -> scan_base.ScanFrameParameters:
        p: scan_base.ScanFrameParameters = copy.deepcopy(self._base)
        top, left, height, width = rect
        p.subscan_fractional_center = Geometry.FloatPoint(y=top + height / 2, x=left + width / 2)
        p.subscan_fractional_size = Geometry.FloatSize(h=height, w=width)
        p.subscan_pixel_size = Geometry.IntSize(h=shape[0], w=shape[1])
        p.subscan_rotation = 0.0
        base_c = self._base.center_nm
        p.center_nm = Geometry.FloatPoint(y=base_c.y + offset_nm[0], x=base_c.x + offset_nm[1])
        return p

    def _n_channels(self) -> int:
        return int(self._camera.get_expected_dimensions(self._cam_params.binning)[-1])

    def _flyback_pixels(self, params: scan_base.ScanFrameParameters) -> int:
        try:
            return int(self._scan.calculate_flyback_pixels(params))
        except Exception:
            return 2


    # -- live analysis ----------------------------------------------------------------------------------------
    def _submit_analysis(self, p: PassResult, rows: slice, *, final: bool) -> None:
        """Hand the SI of the first pass (NaN where not acquired) to the live analysis; never blocks."""
        if self._analysis is None:
            return
        if self._analysis_runner is None:
            self._analysis_runner = live_analysis.LiveAnalysisRunner(
                self._analysis, on_outputs=lambda outputs, update: self.analysis_event.fire(outputs, update))
        valid = p.aligned.valid_pixels.copy()
        si = np.where(valid[..., None], p.aligned.data, np.nan).astype(np.float32)
        haadf = np.where(valid & p.haadf.valid_pixels, p.haadf.data[..., 0], np.nan).astype(np.float32)
        axis = self.result.energy_axis or EnergyAxis(0.0, 1.0)
        update = live_analysis.SectionUpdate(
            si=si, haadf=haadf, acquired=valid, rows=rows, energy_offset_eV=float(axis.offset_eV),
            energy_scale_eV=float(axis.scale_eV), pixel_size_nm=float(np.mean(self.result.si_pixel_size_nm)),
            section_index=self._analysis_section, final=final)
        self._analysis_section += 1
        self._analysis_runner.submit(update)

    def _finish_analysis(self, timeout_s: float = 120.0) -> None:
        """After the run (complete, aborted or failed): the final update on the finished SI, then the record."""
        if self._analysis is None:
            return
        main = self.result.main
        if main is not None and main.aligned.acquired_pixels:
            self._submit_analysis(main, slice(0, main.geometry.shape[0]), final=True)
        runner = self._analysis_runner
        if runner is None:
            try:
                self._analysis.close()
            except Exception as e:
                logging.warning("live analysis close: %s", e)
            self.result.live_analysis_stats = {"title": getattr(self._analysis, "title", ""), "updates_done": 0,
                                               "error": "no pixel was acquired; nothing to analyse."}
            return
        runner.finish(timeout_s)
        self.result.live_outputs = runner.outputs
        self.result.live_analysis_stats = runner.stats()

    # -- laser ---------------------------------------------------------------------------------------------------
    def _set_laser(self, wavelength_nm: float | None) -> None:
        """Tune the laser and open its shutter (None: close the shutter). Supports the simulator's
        ``set(name, value)`` interface and plain ``set_wavelength_nm``/``set_shutter_open`` methods."""
        laser = self._laser
        if laser is None:
            return
        generic = callable(getattr(laser, "set", None))
        if wavelength_nm is None:
            laser.set("shutter_open", False) if generic else _call_first(laser, ("set_shutter_open",), False)
            return
        if generic:
            laser.set("wavelength_nm", float(wavelength_nm))
            laser.set("shutter_open", True)
        else:
            _call_first(laser, ("set_wavelength_nm",), float(wavelength_nm))
            _call_first(laser, ("set_shutter_open",), True)

    def _laser_power_mW(self) -> float | None:
        laser = self._laser
        if callable(getattr(laser, "get", None)):
            return float(laser.get("power_mW"))
        value = getattr(laser, "power_mW", None)
        value = value() if callable(value) else value
        return None if value is None else float(value)


def _call_first(obj: typing.Any, names: typing.Sequence[str], *args: typing.Any) -> None:
    for name in names:
        fn = getattr(obj, name, None)
        if callable(fn):
            fn(*args)
            return
    raise DriftSIError(f"the laser {obj!r} has none of {list(names)}; it cannot be driven for EEGS.")
