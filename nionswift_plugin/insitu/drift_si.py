"""Drift-corrected EELS/EEGS spectrum imaging: the acquisition loop over Swift's scan and camera, no UI.

Only the calls into Swift's acquisition live here; every decision is made in ``processing.spectroscopy``
(``drift``: alias-safe measurement, ``drift_model``: prediction with uncertainty and the a-posteriori trajectory,
``si_timing``: pixel times and section planning, ``si_result``: records, verdicts, shear correction, ``si_assembly``:
assembly and energy alignment, ``live_analysis``: the optional live analysis).

* each **section** of the SI is one ``scan_hardware_source.grab_synchronized(...)`` of a sub-scan covering those
  rows, with the scan ``center_nm`` at the drift predicted for the middle of the section;
* **between sections** a sub-scan of the reference region (``record_immediate``) is registered; a measurement
  outside the prediction's uncertainty is a jump: the section is scanned again (up to ``max_reacquisitions``), else
  flagged; a measurement that cannot be told from a lattice alias is flagged with every section that depends on it;
* pixel times come from the scan device's reported timing (start-up delay included); a section interval in
  seconds is converted to lines with the measured line period;
* drift is measured and applied in sample axes: shifts on a rotated scan are rotated into the offset's frame.

Scripting (same engine as the panel)::

    from nionswift_plugin.insitu import drift_si
    settings = drift_si.DriftSISettings(si_size_px=(32, 32), section_lines=4, exposure_s=0.002)
    result = drift_si.DriftCorrectedSI(settings).run()   # or start() + wait(); abort() from another thread
    xdata = result.si_xdata()          # (H, W, E) nm/nm/eV, audit trail and per-section verdicts in metadata

Only one run may be active per process (:class:`AcquisitionBusyError`). Abort ends the run after the section being
scanned (its pixels are kept; a second abort stops at once) and no reference scan follows; a device error ends it
at once. Every outcome is a valid result (``state``, ``message``, ``complete``; possibly empty).
"""
from __future__ import annotations

import copy
import logging
import threading
import time
import typing

import numpy as np

from nion.data import DataAndMetadata
from nion.instrumentation import Acquisition
from nion.instrumentation import scan_base
from nion.utils import Event
from nion.utils import Geometry

from processing.spectroscopy import live_analysis
from processing.spectroscopy.drift import DriftEstimator, DriftMeasurement
from processing.spectroscopy.drift_model import DriftPredictor
from processing.spectroscopy.si_assembly import align_section_energy
from processing.spectroscopy.si_result import (PassGeometry, PassResult, SectionRecord, apply_shear_correction,
                                               assign_verdicts)
from processing.spectroscopy.si_settings import (AcquisitionBusyError, DriftSIError, DriftSISettings, Rect,
                                                 default_settings_path)
from processing.spectroscopy.si_timing import ScanTiming, lines_for_interval, timing_from_deliveries, \
    timing_from_report
from processing.spectroscopy.spectrum_alignment import EnergyAxis
from nionswift_plugin.insitu.drift_si_support import EngineSupport, _TrackingDataChannel
from nionswift_plugin.insitu.drift_si_items import (DRIFT_LOG_LABELS, DriftSIResult, check_devices,
                                                    create_data_items, live_analysis_xdatas, scan_choices,
                                                    spectrometer_choices)

__all__ = ["DriftSISettings", "DriftCorrectedSI", "DriftSIResult", "PassResult", "SectionRecord", "DriftSIError",
           "AcquisitionBusyError", "default_settings_path", "run_drift_corrected_si", "create_data_items",
           "live_analysis_xdatas", "scan_choices", "spectrometer_choices", "check_devices", "DRIFT_LOG_LABELS"]

_PassGeometry = PassGeometry  # older name


_RUN_LOCK = threading.Lock()
_ACTIVE: list[DriftCorrectedSI] = []


class DriftCorrectedSI(EngineSupport):
    """One drift-corrected SI run. Construct with settings; then :meth:`run` (blocking) or :meth:`start`.

    Events (``nion.utils.Event.Event``, fired on the acquisition thread): ``progress_event(fraction, remaining_s,
    message)``, ``section_event(result, pass_result, section_record)``, ``drift_event(measurement)``,
    ``finished_event(result)``; ``analysis_event(outputs, section_update)`` on the live-analysis worker.

    ``scan``/``camera``/``laser``/``clock`` may be passed explicitly (tests); by default the devices are looked up
    (and checked) by the ids in the settings, and the clock is the instrument's ``time_s()`` when it has one.
    """

    def __init__(self, settings: DriftSISettings | None = None, *, scan: typing.Any = None, camera: typing.Any = None,
                 laser: typing.Any = None, clock: typing.Callable[[], float] | None = None) -> None:
        self.settings = copy.deepcopy(settings) if settings is not None else DriftSISettings()
        self._scan = scan
        self._camera = camera
        self._laser = laser
        self._clock = clock
        self._abort = threading.Event()
        self._hard_abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.result = DriftSIResult(self.settings)
        self.estimator = self._make_estimator()
        self.progress_event = Event.Event()
        self.section_event = Event.Event()
        self.drift_event = Event.Event()
        self.finished_event = Event.Event()
        self.analysis_event = Event.Event()
        self._analysis: live_analysis.LiveAnalysis | None = None
        self._analysis_runner: live_analysis.LiveAnalysisRunner | None = None
        self._analysis_section = 0
        self._data_channel: _TrackingDataChannel | None = None
        self._start_delay_s: float | None = None
        self._line_period_s: float | None = None
        self._pixel_period_s: float | None = None
        self._progress_start_s = 0.0
        self._total_pixels = 0
        self._done_pixels = 0

    # -- public control ----------------------------------------------------------------------------------------
    @staticmethod
    def active_run() -> DriftCorrectedSI | None:
        with _RUN_LOCK:
            return _ACTIVE[0] if _ACTIVE else None

    @property
    def is_running(self) -> bool:
        return not self._done.is_set() and self.result.state == "running" and self in _ACTIVE

    def start(self) -> None:
        """Start on a background thread. Raises :class:`AcquisitionBusyError` if a run is active."""
        self._claim()
        self._thread = threading.Thread(target=self._run_claimed, name="drift-corrected-si", daemon=True)
        self._thread.start()

    def run(self) -> DriftSIResult:
        """Run to the end on the calling thread; returns the result (also when aborted or failed)."""
        self._claim()
        self._run_claimed()
        return self.result

    def wait(self, timeout_s: float | None = None) -> DriftSIResult:
        if not self._done.wait(timeout_s):
            raise TimeoutError(f"drift-corrected SI still running after {timeout_s} s.")
        return self.result

    def abort(self, *, immediately: bool = False) -> None:
        """Stop after the section being scanned (its pixels are kept); ``immediately`` (or a second call) stops the
        scan at once (the interrupted section keeps what the camera delivered)."""
        if self._abort.is_set() or immediately:
            self._hard_abort.set()
            scan = self._scan
            if scan is not None:
                try:
                    scan.grab_synchronized_abort()
                except Exception as e:  # the scan may already be idle
                    logging.debug("grab_synchronized_abort: %s", e)
        self._abort.set()

    # -- internals ---------------------------------------------------------------------------------------------
    def _claim(self) -> None:
        self.settings.validate()
        with _RUN_LOCK:
            if _ACTIVE:
                raise AcquisitionBusyError(
                    "a drift-corrected SI is already running; abort it (or wait for it to finish) before starting "
                    "another one.")
        if self.settings.live_analysis and self._analysis is None:
            try:  # refused before the run starts: unknown name, bad parameter values, a factory that fails
                self._analysis = live_analysis.create_live_analysis(self.settings.live_analysis,
                                                                    self.settings.live_analysis_parameters)
            except Exception as e:
                raise DriftSIError(f"live analysis {self.settings.live_analysis!r} cannot be set up: {e}") from e
        if self._scan is None or self._camera is None:
            scan, camera = check_devices(self.settings.scan_hardware_source_id,
                                         self.settings.camera_hardware_source_id)
            self._scan = self._scan or scan
            self._camera = self._camera or camera
        with _RUN_LOCK:
            if _ACTIVE:
                raise AcquisitionBusyError(
                    "a drift-corrected SI is already running; abort it (or wait for it to finish) before starting "
                    "another one.")
            if self._done.is_set() or self.result.state != "running":
                raise DriftSIError("this run object has already been used; create a new DriftCorrectedSI.")
            _ACTIVE.append(self)

    def _make_estimator(self) -> DriftEstimator:
        s = self.settings
        predictor = DriftPredictor(window=s.rate_window, max_rate_nm_per_s=s.max_drift_rate_nm_per_s,
                                   max_accel_nm_per_s2=s.max_drift_accel_nm_per_s2)
        return DriftEstimator(quality_threshold=s.quality_threshold, template_weight=s.template_weight,
                              rate_window=s.rate_window, max_step_nm=s.max_step_nm,
                              lowpass_sigma_px=s.lowpass_sigma_px, highpass_sigma_px=s.highpass_sigma_px,
                              max_shift_fraction=s.max_shift_fraction, jump_sigma=s.jump_sigma,
                              alias_quality_margin=s.alias_quality_margin,
                              alias_noise_factor=s.alias_noise_factor, predictor=predictor)

    def _run_claimed(self) -> None:
        try:
            self._acquire()
            if self._abort.is_set():
                self.result.state = "aborted"
                done = self.result.main.aligned.acquired_pixels if self.result.main else 0
                self.result.message = self.result.message or (
                    f"aborted by the user; the {done} pixels acquired are kept." if done else
                    "aborted by the user before the first section: no SI pixel was acquired.")
            else:
                self.result.state = "complete"
        except Exception as e:
            logging.exception("drift-corrected SI failed")
            self.result.state = "aborted" if self._abort.is_set() else "error"
            self.result.message = (f"acquisition stopped: {type(e).__name__}: {e}. The pixels acquired before the "
                                   f"error are kept; check the scan and camera, then start again.")
        finally:
            try:
                self._finalise()
                self._finish_analysis()
            except Exception as e:  # never lose the result
                logging.exception("drift-corrected SI: finishing the result failed")
                self.result.message += f" (finishing the result failed: {type(e).__name__}: {e})"
            finally:
                with _RUN_LOCK:
                    if self in _ACTIVE:
                        _ACTIVE.remove(self)
                self._done.set()
                self.finished_event.fire(self.result)

    def _now(self) -> float:
        return float(self._clock()) if self._clock is not None else time.monotonic()

    def _resolve_devices(self) -> None:
        s = self.settings
        if self._scan is None or self._camera is None:
            self._scan, self._camera = check_devices(s.scan_hardware_source_id, s.camera_hardware_source_id)
        if self._clock is None:
            time_s = getattr(getattr(self._scan, "stem_controller", None), "time_s", None)
            if callable(time_s):
                self._clock = typing.cast(typing.Callable[[], float], time_s)
        if s.mode == "EEGS" and self._laser is None:
            from nion.utils import Registry
            self._laser = Registry.get_component(s.laser_id)
            if self._laser is None:
                raise DriftSIError(f"EEGS mode needs the laser '{s.laser_id}', which is not registered; start the "
                                   f"simulator with a laser or switch to EELS mode.")

    def _acquire(self) -> None:
        s = self.settings
        self._resolve_devices()
        scan, camera = self._scan, self._camera
        if scan.is_playing:
            scan.stop_playing()
            scan.abort_playing(sync_timeout=5.0)
        base = copy.deepcopy(scan.get_current_frame_parameters())
        base.subscan_pixel_size = None
        base.subscan_fractional_size = None
        base.subscan_fractional_center = None
        self._base = base
        self.result.scan_rotation_rad = float(base.rotation_rad or 0.0)
        cal_y, cal_x = scan_base.get_scan_calibrations(base)
        ctx_h, ctx_w = base.pixel_size.height, base.pixel_size.width
        self._ctx_px_nm = (float(cal_y.scale), float(cal_x.scale))
        self._ctx_shape = (ctx_h, ctx_w)
        self.result.context_center_nm = (float(base.center_nm.y), float(base.center_nm.x))
        _ft, _fl, fh, fw = s.scan_field
        h, w = s.si_size_px
        self.result.si_pixel_size_nm = (fh * ctx_h * self._ctx_px_nm[0] / h, fw * ctx_w * self._ctx_px_nm[1] / w)
        _rt, _rl, rh, rw = s.reference_region
        ref_shape = self._reference_shape()
        self.result.reference_pixel_size_nm = (rh * ctx_h * self._ctx_px_nm[0] / ref_shape[0],
                                               rw * ctx_w * self._ctx_px_nm[1] / ref_shape[1])
        self.estimator.jump_floor_nm = s.reacquire_jump_px * min(self.result.si_pixel_size_nm)
        cam_params = copy.deepcopy(camera.get_current_frame_parameters())
        cam_params.processing = "sum_project"
        if s.camera_binning is not None:
            cam_params.binning = int(s.camera_binning)
        # Swift's synchronized scan shifts every section by its own DriftTracker's prediction; this engine does the
        # correction itself, so the tracker must not add a stale prediction from an earlier acquisition.
        tracker = getattr(scan, "drift_tracker", None)
        if tracker is not None:
            tracker.reset()
        self._cam_params = cam_params
        geometries: list[tuple[str, float | None, PassGeometry]] = []
        if s.mode == "EELS":
            geometries.append(("EELS", None, PassGeometry(s.scan_field, (h, w), s.exposure_s)))
        else:
            eegs_geom = self._eegs_geometry()
            for wavelength in s.wavelength_list():
                geometries.append((f"{wavelength:g} nm", wavelength, eegs_geom))
            if s.laser_off_frames > 0:
                off = self._point_geometry(s.laser_off_frames) if s.eegs_geometry == "point" else eegs_geom
                geometries.append(("laser off", None, off))
        self._total_pixels = sum(g.shape[0] * g.shape[1] for _l, _w, g in geometries)
        self._done_pixels = 0
        n_channels = self._n_channels()
        # the first pass exists from the start: an abort during the start-up scans leaves a valid, empty SI
        label0, lam0, geom0 = geometries[0]
        self.result.passes.append(PassResult(0, geom0, n_channels, label=label0, wavelength_nm=lam0))
        self.result.t0_s = self._now()
        self._progress_start_s = self.result.t0_s
        if s.timing_probe and not self._abort.is_set():
            self._probe_timing(geom0)
        if s.correct_drift and not self._abort.is_set():
            self._measure_drift()
            for _ in range(max(s.bootstrap_measurements, 0)):
                if self._abort.wait(s.bootstrap_interval_s):
                    break
                self._measure_drift()
        for pass_index, (label, lam, geom) in enumerate(geometries):
            if self._abort.is_set():
                break
            if s.mode == "EEGS":
                self._set_laser(lam)
            if pass_index == 0:
                p = self.result.passes[0]
            else:
                p = PassResult(pass_index, geom, self._n_channels(), label=label, wavelength_nm=lam)
                self.result.passes.append(p)
            if s.mode == "EEGS":
                p.laser_power_mW = self._laser_power_mW() if lam is not None else 0.0
            self._acquire_pass(p)
        if s.mode == "EEGS":
            self._set_laser(None)

    def _section_lines(self, geom: PassGeometry, row0: int) -> int:
        """Lines of the next section: the setting, or the interval in seconds at the measured line period; shortened
        when the drift prediction would not tell lattice aliases apart at the next reference scan."""
        s = self.settings
        h, w = geom.shape
        line_s = self._line_period_s or (w + 2) * geom.exposure_s
        if s.section_interval_s is not None:
            lines = lines_for_interval(s.section_interval_s, line_s, h, overhead_s=self._start_delay_s or 0.0)
        else:
            lines = int(min(s.section_lines, h))
        if s.correct_drift and s.alias_safe_sections and self.estimator.alias_spacing_nm is not None:
            overhead = self._start_delay_s or 0.0
            wanted = overhead + lines * line_s
            safe = self.estimator.alias_safe_interval_s(self._now(), wanted)
            lines = max(1, min(lines, int((safe - overhead) / line_s)))
        return int(min(lines, h - row0))

    def _offset_for(self, t_s: float) -> tuple[float, float]:
        s = self.settings
        if not s.correct_drift:
            return 0.0, 0.0
        if s.use_prediction:
            return self.estimator.predict_offset_nm(t_s)
        acc = self.estimator.accepted
        return acc[-1].drift_nm if acc else (0.0, 0.0)

    def _frame_timing(self, shape: tuple[int, int]) -> ScanTiming | None:
        report_fn = getattr(getattr(self._scan, "scan_device", None), "frame_timing", None)
        try:
            return timing_from_report(report_fn() if callable(report_fn) else None, shape)
        except Exception as e:
            logging.debug("frame timing report: %s", e)
            return None

    def _measure_drift(self) -> DriftMeasurement | None:
        s = self.settings
        shape = self._reference_shape()
        offset = self._offset_for(self._now())
        params = self._frame_parameters(s.reference_region, shape, offset)
        params.pixel_time_us = s.reference_pixel_time_us
        params.enabled_channel_indexes = [s.reference_channel_index]
        t_start = self._now()
        xdatas = self._scan.record_immediate(params)
        t_end = self._now()
        xdata = next((x for x in xdatas if x is not None), None)
        if xdata is None:
            raise DriftSIError("the reference-region scan returned no data; enable the reference scan channel.")
        timing = self._frame_timing(shape)
        if timing is not None:  # the middle of the reference scan, from the device's timing
            t_scan = timing.first_pixel_time_s + 0.5 * ((shape[0] - 1) * timing.line_period_s
                                                        + (shape[1] - 1) * timing.pixel_period_s)
        else:
            frame_s = shape[0] * (shape[1] * s.reference_pixel_time_us + 30.0) * 1e-6
            t_scan = min(t_start + 0.5 * frame_s, t_end)
        m = self.estimator.add_image(np.asarray(xdata.data, dtype=np.float64), time_s=t_scan,
                                     pixel_size_nm=self.result.reference_pixel_size_nm, applied_offset_nm=offset,
                                     rotation_rad=self.result.scan_rotation_rad)
        self.result.measurements = self.estimator.records
        self.drift_event.fire(m)
        return m

    def _grab(self, rect: Rect, shape: tuple[int, int], offset: tuple[float, float], exposure_s: float
              ) -> tuple[typing.Any, _TrackingDataChannel, float, float, Exception | None, int]:
        """One synchronized sub-scan; returns (results or None, channel, t_start, t_end, error, flyback pixels)."""
        params = self._frame_parameters(rect, shape, offset)
        cam_params = copy.deepcopy(self._cam_params)
        cam_params.exposure_ms = exposure_s * 1000.0
        channel = _TrackingDataChannel(self._now, self._camera.hardware_source_id)
        self._data_channel = channel
        grab_done = threading.Event()
        watcher = threading.Thread(target=self._abort_watch, args=(grab_done,), daemon=True)
        watcher.start()
        t_start = self._now()
        error: Exception | None = None
        results: typing.Any = None
        try:
            results = self._scan.grab_synchronized(data_channel=channel, scan_frame_parameters=params,
                                                   camera=self._camera, camera_frame_parameters=cam_params)
        except Exception as e:
            error = e
        finally:
            grab_done.set()
            watcher.join()
        return results, channel, t_start, self._now(), error, self._flyback_pixels(params)

    def _probe_timing(self, geom: PassGeometry) -> None:
        """One line of the SI width, data discarded: the start-up delay and the pixel/line periods before the run."""
        top, left, height, width = geom.field
        h, w = geom.shape
        results, channel, t_start, t_end, error, flyback = self._grab((top, left, height / h, width), (1, w),
                                                                      self._offset_for(self._now()), geom.exposure_s)
        if error is not None or results is None:
            logging.info("timing probe failed (%s); the first section uses the nominal timing.", error)
            return
        self._update_timing(channel, (1, w), t_start, t_end, flyback, geom.exposure_s)

    def _update_timing(self, channel: _TrackingDataChannel, shape: tuple[int, int], t_start: float, t_end: float,
                       flyback: int, exposure_s: float) -> ScanTiming:
        timing = self._frame_timing(shape) or timing_from_deliveries(
            channel.deliveries, shape, flyback_pixels=flyback, t_start_s=t_start, t_end_s=t_end,
            nominal_period_s=exposure_s, start_delay_s=self._start_delay_s)
        self._start_delay_s = max(timing.first_pixel_time_s - t_start, 0.0)
        self._line_period_s = timing.line_period_s
        self._pixel_period_s = timing.pixel_period_s
        self.result.timing = {"source": timing.source, "start_delay_s": self._start_delay_s,
                              "pixel_period_s": timing.pixel_period_s, "line_period_s": timing.line_period_s,
                              "nominal_pixel_period_s": exposure_s}
        return timing

    def _acquire_pass(self, p: PassResult) -> None:
        s = self.settings
        h, w = p.geometry.shape
        top, left, height, width = p.geometry.field
        row0 = 0
        repeats: dict[int, int] = {}
        while row0 < h and not self._abort.is_set():
            rows = self._section_lines(p.geometry, row0)
            rect = (top + height * row0 / h, left, height * rows / h, width)
            line_s = self._line_period_s or (w + 2) * p.geometry.exposure_s
            t_offset = self._now() + (self._start_delay_s or 0.0) + 0.5 * rows * line_s
            offset = self._offset_for(t_offset)
            results, channel, t_start, t_end, error, flyback = self._grab(rect, (rows, w), offset,
                                                                          p.geometry.exposure_s)
            n_acquired = self._store_section(p, row0, rows, results, channel, t_start, t_end, offset, t_offset,
                                             flyback, repeats.get(row0, 0))
            self._done_pixels += n_acquired
            self._report_progress(p)
            if p.index == 0 and n_acquired:
                self._submit_analysis(p, slice(row0, row0 + rows), final=False)
            if error is not None:
                raise error
            if results is None and not self._hard_abort.is_set():
                raise DriftSIError("the synchronized scan ended without data (camera or scan stopped).")
            if self._abort.is_set():
                break
            if s.correct_drift:
                m = self._measure_drift()  # after each section (also the last): brackets it for the shear
                if (s.reacquire_on_jump and m is not None and m.accepted and m.jump_nm is not None
                        and repeats.get(row0, 0) < s.max_reacquisitions and not self._abort.is_set()):
                    # a jump during (or just before) this section: it cannot be interpolated away; scan it again
                    repeats[row0] = repeats.get(row0, 0) + 1
                    self._total_pixels += rows * w
                    continue
            row0 += rows

    def _abort_watch(self, grab_done: threading.Event) -> None:
        """While a section is grabbed: on an immediate abort, repeat the scan's abort until the grab returns (an
        abort that arrives while Swift is still preparing the stream would otherwise be lost)."""
        while not grab_done.is_set():
            if self._hard_abort.wait(0.05):
                try:
                    self._scan.grab_synchronized_abort()
                except Exception as e:
                    logging.debug("grab_synchronized_abort: %s", e)
                grab_done.wait(0.05)

    def _store_section(self, p: PassResult, row0: int, rows: int, results: typing.Any, channel: _TrackingDataChannel,
                       t_start: float, t_end: float, offset: tuple[float, float], t_offset: float, flyback: int,
                       repeat: int) -> int:
        s = self.settings
        h, w = p.geometry.shape
        cam_id = self._camera.hardware_source_id
        scan_id = self._scan.hardware_source_id
        cam_xdata: typing.Any = None
        haadf: typing.Any = None
        n_pixels = rows * w
        if results is not None:
            scans, cams = results
            cam_xdata = cams[0] if cams else None
            haadf = scans[0] if scans else None
        else:  # interrupted or failed: read what the channel received
            for ch in list(channel.shapes):
                if ch.segments and ch.segments[0] == cam_id:
                    n_pixels = min(channel.pixels(ch), rows * w)
                    cam_xdata = channel.get_data(ch)
                elif ch.segments and ch.segments[0] == scan_id and haadf is None:
                    haadf = channel.get_data(ch)
            if cam_xdata is None:
                n_pixels = 0
        if n_pixels <= 0 or cam_xdata is None:
            return 0
        spectra = np.asarray(cam_xdata.data, dtype=np.float32).reshape(rows, w, -1)
        if self.result.energy_axis is None:
            cal = cam_xdata.dimensional_calibrations[-1]
            self.result.energy_axis = EnergyAxis(float(cal.offset), float(cal.scale) if cal.scale else 1.0)
            self.result.energy_units = cal.units or "eV"
        axis = self.result.energy_axis
        p.raw.add_rows(row0, spectra, n_pixels=n_pixels)
        if haadf is not None:
            p.haadf.add_rows(row0, np.asarray(haadf.data, dtype=np.float32).reshape(rows, w)[..., None],
                             n_pixels=n_pixels)
        timing = self._update_timing(channel, (rows, w), t_start, t_end, flyback, p.geometry.exposure_s)
        block_times = timing.pixel_times_s(rows, w)
        index = len(self.result.sections)
        flat_rows = slice(row0 * w, row0 * w + n_pixels)
        p.pixel_times_s.reshape(-1)[flat_rows] = block_times.reshape(-1)[:n_pixels]
        p.applied_offset_nm.reshape(-1, 2)[flat_rows] = offset
        p.offset_time_s.reshape(-1)[flat_rows] = t_offset
        p.source_section.reshape(-1)[flat_rows] = index
        complete = n_pixels == rows * w
        record = SectionRecord(index, p.index, row0, rows, t_start, t_end, (float(offset[0]), float(offset[1])),
                               t_offset, int(n_pixels), repeat=repeat, complete=complete,
                               timing_source=timing.source, pixel_period_s=timing.pixel_period_s,
                               line_period_s=timing.line_period_s, start_delay_s=self._start_delay_s)
        if complete:  # a complete re-acquisition replaces every earlier scan of these rows
            for earlier in self.result.sections:
                if earlier.pass_index == p.index and earlier.row0 == row0 and not earlier.superseded:
                    earlier.superseded = True
                    earlier.note = f"re-acquired as section {index} (drift jumped during it)"
        flat = spectra.reshape(rows * w, -1)[:n_pixels]
        aligned, zlp, shift = align_section_energy(flat, axis, width=w, mode=s.energy_alignment,
                                                   search_eV=s.zlp_search_eV, correct=s.correct_energy)
        block = np.zeros_like(spectra)
        block.reshape(rows * w, -1)[:n_pixels] = aligned
        p.aligned.add_rows(row0, block, n_pixels=n_pixels)
        p.zlp_eV.reshape(-1)[flat_rows] = zlp
        p.energy_shift_eV.reshape(-1)[flat_rows] = shift
        ok = np.isfinite(zlp)
        if ok.any():
            record.zlp_median_eV = float(np.median(zlp[ok]))
            record.zlp_range_eV = (float(np.min(zlp[ok])), float(np.max(zlp[ok])))
            record.energy_shift_median_eV = float(np.median(shift))
        else:
            record.note = "ZLP not found in this section: spectra kept unaligned"
        self.result.sections.append(record)
        self.section_event.fire(self.result, p, record)
        return int(n_pixels)

    def _report_progress(self, p: PassResult) -> None:
        fraction = min(self._done_pixels / max(self._total_pixels, 1), 1.0)
        elapsed = self._now() - self._progress_start_s
        remaining = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        self.progress_event.fire(fraction, remaining, f"{p.label}: {p.aligned.acquired_pixels} px")

    # -- end of run ---------------------------------------------------------------------------------------------
    def _finalise(self) -> None:
        s = self.settings
        self.result.measurements = self.estimator.records
        if s.correct_drift and s.correct_shear and self.estimator.accepted:
            apply_shear_correction(self.result, self.estimator)
        assign_verdicts(self.result, correct_drift=s.correct_drift)
        flagged = sum(1 for r in self.result.sections if not r.superseded and not r.trusted)
        if flagged:
            self.result.message = (self.result.message + " " if self.result.message else "") + (
                f"{flagged} section(s) flagged (see the section verdicts): their registration is not trusted.")


def run_drift_corrected_si(settings: DriftSISettings | None = None, **devices: typing.Any) -> DriftSIResult:
    """Script entry point: run a drift-corrected SI with ``settings`` (default: the remembered settings)."""
    return DriftCorrectedSI(settings if settings is not None else DriftSISettings.load(), **devices).run()

