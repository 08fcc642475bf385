"""The acquisition loop of a drift-corrected SI: sections through Swift's synchronized acquisition, the timing
probe, the storage of each (possibly interrupted) section. Thin glue: every decision (drift, timing, verdicts,
assembly) is made in ``processing.spectroscopy``. Mixed into :class:`nionswift_plugin.insitu.drift_si.DriftCorrectedSI`
(uses its settings, result, estimator, events and the methods declared below).

Data arrive line by line when the camera delivers partial data (the simulated EELS camera does; a real camera
delivers at its own update period), so an immediate abort keeps every line completed before it: the section is
recorded incomplete, its missing pixels stay unmarked in ``valid_pixels`` and the result says so.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
import typing

import numpy as np

from nion.instrumentation import scan_base

from processing.spectroscopy.drift import DriftEstimator, DriftMeasurement
from processing.spectroscopy.drift_guard import rate_check_wanted
from processing.spectroscopy.si_assembly import align_section_energy
from processing.spectroscopy.si_result import PassGeometry, PassResult, SectionRecord
from processing.spectroscopy.si_settings import DriftSIError, Rect
from processing.spectroscopy.si_timing import ScanTiming, bootstrap_wait_s, timing_from_deliveries, timing_from_report
from processing.spectroscopy.spectrum_alignment import EnergyAxis
from nionswift_plugin.insitu.drift_si_support import EngineSupport, _TrackingDataChannel

if typing.TYPE_CHECKING:
    from nion.utils import Event

__all__ = ["AcquisitionLoop"]


class AcquisitionLoop(EngineSupport):
    """The passes and sections of a run (see the module docstring)."""

    estimator: DriftEstimator
    progress_event: Event.Event
    section_event: Event.Event
    _abort: threading.Event
    _hard_abort: threading.Event
    _data_channel: _TrackingDataChannel | None
    _start_delay_s: float | None
    _line_period_s: float | None
    _pixel_period_s: float | None
    _progress_start_s: float
    _total_pixels: int
    _done_pixels: int

    if typing.TYPE_CHECKING:  # provided by DriftCorrectedSI
        def _now(self) -> float: ...
        def _resolve_devices(self) -> None: ...
        def _section_lines(self, geom: PassGeometry, row0: int) -> int: ...
        def _offset_for(self, t_s: float) -> tuple[float, float]: ...
        def _measure_drift(self, rate_check: bool = False) -> DriftMeasurement | None: ...

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
            t_first = self._now()
            self._measure_drift()
            scan_s = max(self._now() - t_first, 0.0)
            for k in range(max(s.bootstrap_measurements, 0)):
                # baselines that double (one scan, two, four...): each residual stays far below half a lattice
                # period even at the fastest drift, and the last baseline gives the rate the first section needs
                if self._abort.wait(bootstrap_wait_s(k, scan_s, s.bootstrap_interval_s)):
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

    def _frame_timing(self, shape: tuple[int, int]) -> ScanTiming | None:
        report_fn = getattr(getattr(self._scan, "scan_device", None), "frame_timing", None)
        try:
            return timing_from_report(report_fn() if callable(report_fn) else None, shape)
        except Exception as e:
            logging.debug("frame timing report: %s", e)
            return None

    def _grab(self, rect: Rect, shape: tuple[int, int], offset: tuple[float, float], exposure_s: float
              ) -> tuple[typing.Any, _TrackingDataChannel, float, float, Exception | None, int]:
        """One synchronized sub-scan; returns (results or None, channel, t_start, t_end, error, flyback pixels)."""
        params = self._frame_parameters(rect, shape, offset)
        cam_params = copy.deepcopy(self._cam_params)
        cam_params.exposure_ms = exposure_s * 1000.0
        channel = _TrackingDataChannel(self._now, self._camera.hardware_source_id)
        self._data_channel = channel
        grab_done = threading.Event()
        watcher = threading.Thread(target=self._abort_watch, args=(grab_done, channel), daemon=True)
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
                if s.rate_check and rate_check_wanted(self.estimator.records) and not self._abort.is_set():
                    self._measure_drift(rate_check=True)  # the register rests on the prior: a short baseline
                if (s.reacquire_on_jump and m is not None and m.accepted and m.jump_nm is not None
                        and repeats.get(row0, 0) < s.max_reacquisitions and not self._abort.is_set()):
                    # a jump during (or just before) this section: it cannot be interpolated away; scan it again
                    repeats[row0] = repeats.get(row0, 0) + 1
                    self._total_pixels += rows * w
                    continue
            row0 += rows

    def _abort_watch(self, grab_done: threading.Event, channel: _TrackingDataChannel) -> None:
        """While a section is grabbed: on an immediate abort, cancel the camera, let Swift hand over the lines it
        completed (:meth:`_drain`), then repeat the scan's abort until the grab returns (an abort that arrives while
        Swift is still preparing the stream would otherwise be lost)."""
        while not grab_done.is_set():
            if self._hard_abort.wait(0.05):
                self._drain(grab_done, channel)
                while not grab_done.is_set():
                    try:
                        self._scan.grab_synchronized_abort()
                    except Exception as e:
                        logging.debug("grab_synchronized_abort: %s", e)
                    grab_done.wait(0.05)

    def _drain(self, grab_done: threading.Event, channel: _TrackingDataChannel) -> None:
        """Cancel the camera and wait (at most ``abort_drain_s``) until the line it had completed reaches the data
        channel. Swift's acquisition loop hands a camera piece over only after it has read the next one and drops
        everything once the acquisition is aborted; cancelling the camera first (what Swift's own abort does
        first) ends the read in progress, so the last completed piece is delivered before the scan is aborted.
        The cancel is repeated while waiting: a camera that had not begun yet clears it when it begins."""
        deliveries = len(channel.deliveries)
        quiet_s = 0.15  # after the last piece, unless the scan rows of that line have come in already
        deadline = time.monotonic() + max(float(self.settings.abort_drain_s), 0.0)
        last_change: float | None = None
        while not grab_done.is_set() and time.monotonic() < deadline:
            n = len(channel.deliveries)
            if n != deliveries:
                deliveries, last_change = n, time.monotonic()
            if last_change is not None and (time.monotonic() - last_change >= quiet_s or self._scan_caught_up(channel)):
                return
            try:
                self._camera.acquire_sequence_cancel()
            except Exception as e:  # a camera without cancel: the scan abort that follows stops the run
                logging.debug("camera acquire_sequence_cancel: %s", e)
                return
            grab_done.wait(0.01)

    def _scan_caught_up(self, channel: _TrackingDataChannel) -> bool:
        """True when the scan (HAADF) channels hold as many pixels as the camera channel."""
        cam_id, scan_id = self._camera.hardware_source_id, self._scan.hardware_source_id
        counts: dict[str, list[int]] = {cam_id: [], scan_id: []}
        for ch in list(channel.shapes):
            if ch.segments and ch.segments[0] in counts:
                counts[ch.segments[0]].append(channel.pixels(ch))
        return bool(counts[cam_id]) and min(counts[scan_id], default=0) >= max(counts[cam_id])

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
        n_haadf = rows * w
        if results is not None:
            scans, cams = results
            cam_xdata = cams[0] if cams else None
            haadf = scans[0] if scans else None
        else:  # interrupted or failed: read what the channel received (whole lines, see drift_si_acquire)
            for ch in list(channel.shapes):
                if ch.segments and ch.segments[0] == cam_id:
                    n_pixels = min(channel.pixels(ch), rows * w)
                    cam_xdata = channel.get_data(ch)
                elif ch.segments and ch.segments[0] == scan_id and haadf is None:
                    n_haadf = min(channel.pixels(ch), rows * w)
                    haadf = channel.get_data(ch)
            if cam_xdata is None:
                n_pixels = 0
        if n_pixels <= 0 or cam_xdata is None:
            return 0
        n_haadf = min(n_haadf, n_pixels)  # an HAADF pixel without its spectrum is not an SI pixel
        spectra = np.asarray(cam_xdata.data, dtype=np.float32).reshape(rows, w, -1)
        if self.result.energy_axis is None:
            cal = cam_xdata.dimensional_calibrations[-1]
            self.result.energy_axis = EnergyAxis(float(cal.offset), float(cal.scale) if cal.scale else 1.0)
            self.result.energy_units = cal.units or "eV"
        axis = self.result.energy_axis
        p.raw.add_rows(row0, spectra, n_pixels=n_pixels)
        if haadf is not None:
            p.haadf.add_rows(row0, np.asarray(haadf.data, dtype=np.float32).reshape(rows, w)[..., None],
                             n_pixels=n_haadf)
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
        elif repeat:  # an interrupted re-acquisition replaces only the pixels it acquired (source_section says which)
            for earlier in self.result.sections:
                if earlier.pass_index == p.index and earlier.row0 == row0 and not earlier.superseded:
                    earlier.note = (f"its first {n_pixels} pixels replaced by section {index} (re-acquisition "
                                    f"interrupted by an abort)")
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
