"""Drift-corrected EELS/EEGS spectrum imaging: the run (control, drift measurement, end of run), no UI.

Only the calls into Swift's acquisition live here and in ``drift_si_acquire`` (the section loop) and
``drift_si_support`` (laser, live analysis, frame parameters); every decision is made in ``processing.spectroscopy``
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

from nion.utils import Event

from processing.spectroscopy import live_analysis
from processing.spectroscopy.drift import DriftEstimator, DriftMeasurement
from processing.spectroscopy.drift_model import DriftPredictor
from processing.spectroscopy.si_result import (PassGeometry, PassResult, SectionRecord, apply_shear_correction,
                                               assign_verdicts)
from processing.spectroscopy.si_settings import (AcquisitionBusyError, DriftSIError, DriftSISettings,
                                                 default_settings_path)
from processing.spectroscopy.si_timing import lines_for_interval
from nionswift_plugin.insitu.drift_si_acquire import AcquisitionLoop
from nionswift_plugin.insitu.drift_si_support import _TrackingDataChannel
from nionswift_plugin.insitu.drift_si_items import (DRIFT_LOG_LABELS, DriftSIResult, check_devices,
                                                    create_data_items, live_analysis_xdatas, scan_choices,
                                                    spectrometer_choices)

__all__ = ["DriftSISettings", "DriftCorrectedSI", "DriftSIResult", "PassResult", "SectionRecord", "DriftSIError",
           "AcquisitionBusyError", "default_settings_path", "run_drift_corrected_si", "create_data_items",
           "live_analysis_xdatas", "scan_choices", "spectrometer_choices", "check_devices", "DRIFT_LOG_LABELS"]

_PassGeometry = PassGeometry  # older name


_RUN_LOCK = threading.Lock()
_ACTIVE: list[DriftCorrectedSI] = []


class DriftCorrectedSI(AcquisitionLoop):
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
        scan at once: the interrupted section keeps every line the camera completed (marked incomplete), the line
        being scanned is lost. Returns at once; the run ends on its thread (:meth:`wait`)."""
        if self._abort.is_set() or immediately:
            self._hard_abort.set()  # the grab's watcher cancels the camera, collects the lines, aborts the scan
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
                last = self.result.sections[-1] if self.result.sections else None
                if last is not None and not last.complete:
                    w = self.result.passes[last.pass_index].geometry.shape[1]
                    self.result.message += (f" Section {last.index} was stopped after {last.pixels_acquired // w} of "
                                            f"its {last.rows} lines (kept, marked incomplete; the line being "
                                            f"scanned is lost).")
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

    def _section_lines(self, geom: PassGeometry, row0: int) -> int:
        """Lines of the next section: the setting, or the interval in seconds at the measured line period; shortened
        when the drift prediction would not tell lattice aliases apart at the next reference scan."""
        s = self.settings
        h, w = geom.shape
        if s.correct_drift and self.estimator.tracking_lost:
            # lost on a periodic reference: the offset is held (least correction) and no reference scan can regain
            # the register, so the rest of the pass is one section: "uncorrected since the last trusted drift" at
            # the uncorrected pace, not stretched by a reference scan and a section start-up per section
            return int(h - row0)
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

    def _measure_drift(self, rate_check: bool = False) -> DriftMeasurement | None:
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
                                     rotation_rad=self.result.scan_rotation_rad, rate_check=rate_check)
        self.result.measurements = self.estimator.records
        self.drift_event.fire(m)
        return m

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

