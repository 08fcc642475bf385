"""Drift-corrected EELS/EEGS spectrum imaging (issue 5): the acquisition engine, no UI.

Orchestration only; the algorithms are in ``processing`` (registration, drift estimation, ZLP alignment, EEGS
analysis, SI assembly). Built on Swift's own acquisition machinery:

* each **section** of the SI (``section_lines`` rows) is one ``scan_hardware_source.grab_synchronized(...)`` of a
  sub-scan covering those rows of the SI field, with the scan ``center_nm`` moved by the drift predicted for the
  middle of the section (scan + camera synchronized streams, sum-projected spectra);
* **between sections** a short sub-scan of the reference region is recorded with ``record_immediate`` (at the
  predicted offset) and registered by :class:`processing.spectroscopy.drift.DriftEstimator` (pre-filtered NCC, updated template,
  quality threshold; rejected measurements are logged and never applied);
* after each section the ZLP of every spectrum is measured and the spectra are aligned (gain side kept), and the
  optional intra-section **shear correction** resamples each section with the drift trajectory interpolated between
  the measurements before and after it (the predicted rate for the last section).

Scripting (same engine as the panel)::

    from nionswift_plugin.insitu import drift_si
    settings = drift_si.DriftSISettings(si_size_px=(32, 32), section_lines=4, exposure_s=0.002)
    run = drift_si.DriftCorrectedSI(settings)
    result = run.run()                 # blocking; or run.start() + run.wait(); run.abort() from another thread
    xdata = result.si_xdata()          # (H, W, E) with nm/nm/eV calibrations and the full audit trail in metadata

Only one run may be active per process: a second ``start()``/``run()`` raises :class:`AcquisitionBusyError`.
Abort or a device error ends the run cleanly: every pixel already acquired is kept (``result.state`` is
"aborted"/"error", ``result.complete`` is False, the metadata says which pixels are valid).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import pathlib
import threading
import time
import typing

import numpy as np
from numpy.typing import NDArray

from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.instrumentation import Acquisition
from nion.instrumentation import HardwareSource
from nion.instrumentation import scan_base
from nion.utils import Event
from nion.utils import Geometry

from processing import base as processing_base
from processing.spectroscopy import eegs as eegs_analysis
from processing.spectroscopy import live_analysis
from processing.spectroscopy.drift import DriftEstimator, DriftMeasurement, drift_trajectory_nm
from processing.spectroscopy.si_assembly import SIAssembler, resample_displacement
from processing.spectroscopy.spectrum_alignment import EnergyAxis, align_zlp, zlp_position_eV

__all__ = ["DriftSISettings", "DriftCorrectedSI", "DriftSIResult", "PassResult", "SectionRecord",
           "DriftSIError", "AcquisitionBusyError", "default_settings_path", "run_drift_corrected_si",
           "create_data_items"]

FloatArray = NDArray[np.float64]
Rect = tuple[float, float, float, float]  # (top, left, height, width), fractions of the context scan


class DriftSIError(RuntimeError):
    """A drift-corrected SI cannot start or failed; the message says why and what to do."""


class AcquisitionBusyError(DriftSIError):
    """A drift-corrected SI is already running in this process."""


def default_settings_path() -> pathlib.Path:
    """Where the panel remembers its settings: ``$INSITU_SETTINGS_DIR`` or ``~/.config/nionswift-insitu``."""
    folder = os.environ.get("INSITU_SETTINGS_DIR")
    base = pathlib.Path(folder) if folder else pathlib.Path.home() / ".config" / "nionswift-insitu"
    return base / "drift_si_settings.json"


@dataclasses.dataclass
class DriftSISettings:
    """Every setting of a drift-corrected SI run (JSON round-trip with :meth:`save`/:meth:`load`).

    Geometry is given as fractions of the *context* scan (the scan's current frame parameters: its field of view,
    centre and pixel size): ``scan_field`` and ``reference_region`` are (top, left, height, width).
    """

    scan_hardware_source_id: str = "insitu_scan"
    camera_hardware_source_id: str = "insitu_eels_camera"
    laser_id: str = "insitu_laser"
    scan_field: Rect = (0.25, 0.25, 0.5, 0.5)
    reference_region: Rect = (0.05, 0.05, 0.15, 0.15)
    reference_channel_index: int = 0
    reference_size_px: int = 32
    reference_pixel_time_us: float = 16.0  # as Nion's drift scans: enough dose to see non-periodic detail
    exposure_s: float = 0.002
    #: camera binning (None: keep the camera's current binning)
    camera_binning: int | None = None
    si_size_px: tuple[int, int] = (32, 32)
    section_lines: int = 4
    #: if set, the section height is derived from this interval (s) and the estimated line time
    section_interval_s: float | None = None
    mode: str = "EELS"  # "EELS" or "EEGS"
    # EEGS
    wavelengths_nm: tuple[float, ...] = ()
    wavelength_range_nm: tuple[float, float, float] | None = (560.0, 620.0, 5.0)  # start, stop, step (inclusive)
    frames_per_wavelength: int = 4
    eegs_geometry: str = "point"  # "point" (N frames at eegs_point), "line" (the SI row through it), "map"
    eegs_point: tuple[float, float] = (0.5, 0.5)  # (y, x) fraction of the SI field
    laser_off_frames: int = 8
    # correction options
    correct_drift: bool = True
    use_prediction: bool = True
    correct_shear: bool = True
    correct_energy: bool = True
    energy_alignment: str = "spectrum"  # "spectrum" or "row"
    zlp_search_eV: tuple[float, float] | None = (-5.0, 5.0)
    quality_threshold: float = 0.5
    template_weight: float = 0.3
    rate_window: int = 4
    max_shift_fraction: float = 0.3
    max_step_nm: float | None = None
    #: extra reference scans before the first section, ``bootstrap_interval_s`` apart, so that the first section
    #: already follows a measured rate (on a crystal the residual between two scans must stay below half a lattice
    #: period, which a fast drift exceeds over a whole section without a rate)
    bootstrap_measurements: int = 2
    bootstrap_interval_s: float = 0.3
    #: re-acquire a section (once) when the drift measured after it misses the prediction by more than
    #: ``reacquire_jump_px`` SI pixels (a sudden jump inside a section cannot be interpolated away)
    reacquire_on_jump: bool = True
    reacquire_jump_px: float = 0.5
    lowpass_sigma_px: float = 1.0
    highpass_sigma_px: float | None = None
    #: name of a live analysis (``processing.spectroscopy.live_analysis.LIVE_ANALYSES``; "" none), run on the SI
    #: after each section off the acquisition thread, and its parameter values (name -> value)
    live_analysis: str = ""
    live_analysis_parameters: dict[str, typing.Any] = dataclasses.field(default_factory=dict)

    # -- validation / persistence ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`DriftSIError` with a remedy for any inconsistent setting."""
        def rect_ok(r: Rect) -> bool:
            t, l, h, w = r
            return h > 0 and w > 0 and t >= 0 and l >= 0 and t + h <= 1.0 + 1e-9 and l + w <= 1.0 + 1e-9
        if not rect_ok(self.scan_field):
            raise DriftSIError(f"scan_field {self.scan_field} must be (top, left, height, width) inside the context "
                               f"scan (fractions 0..1); draw it inside the survey image.")
        if not rect_ok(self.reference_region):
            raise DriftSIError(f"reference_region {self.reference_region} must lie inside the context scan.")
        if min(self.si_size_px) < 1 or self.section_lines < 1:
            raise DriftSIError(f"SI size {self.si_size_px} and section_lines {self.section_lines} must be >= 1.")
        if self.reference_size_px < 8:
            raise DriftSIError(f"reference_size_px {self.reference_size_px} must be >= 8 px for registration.")
        if not self.exposure_s > 0:
            raise DriftSIError(f"exposure_s must be > 0; got {self.exposure_s}.")
        if self.mode not in ("EELS", "EEGS"):
            raise DriftSIError(f"mode must be 'EELS' or 'EEGS'; got {self.mode!r}.")
        if self.eegs_geometry not in ("point", "line", "map"):
            raise DriftSIError(f"eegs_geometry must be 'point', 'line' or 'map'; got {self.eegs_geometry!r}.")
        if self.energy_alignment not in ("spectrum", "row"):
            raise DriftSIError(f"energy_alignment must be 'spectrum' or 'row'; got {self.energy_alignment!r}.")
        if self.mode == "EEGS":
            lams = self.wavelength_list()
            if len(lams) < 1 or min(lams) <= 0:
                raise DriftSIError(f"EEGS needs at least one positive wavelength; got {lams}. Set wavelengths_nm or "
                                   f"wavelength_range_nm=(start, stop, step).")
            if self.frames_per_wavelength < 1:
                raise DriftSIError("frames_per_wavelength must be >= 1.")
        if self.section_interval_s is not None and not self.section_interval_s > 0:
            raise DriftSIError(f"section_interval_s must be > 0 or None; got {self.section_interval_s}.")
        if self.live_analysis and self.live_analysis not in live_analysis.LIVE_ANALYSES:
            raise DriftSIError(f"live analysis {self.live_analysis!r} is not available; choose one of "
                               f"{sorted(live_analysis.LIVE_ANALYSES)} or none.")

    def wavelength_list(self) -> list[float]:
        """The EEGS wavelengths (nm): ``wavelengths_nm`` if given, else the inclusive range (start, stop, step)."""
        if self.wavelengths_nm:
            return [float(v) for v in self.wavelengths_nm]
        if self.wavelength_range_nm is None:
            return []
        start, stop, step = self.wavelength_range_nm
        if step == 0 or (stop - start) / step < 0:
            raise DriftSIError(f"wavelength_range_nm {self.wavelength_range_nm}: step must be non-zero and point "
                               f"from start to stop.")
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        return [float(start + i * step) for i in range(n)]

    def to_dict(self) -> dict[str, typing.Any]:
        return typing.cast(dict[str, typing.Any], json.loads(json.dumps(dataclasses.asdict(self))))

    @classmethod
    def from_dict(cls, d: typing.Mapping[str, typing.Any]) -> DriftSISettings:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            logging.warning("Drift-corrected SI: ignoring unknown settings %s", unknown)
        values: dict[str, typing.Any] = {}
        for name, value in d.items():
            if name in fields:
                values[name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def save(self, path: pathlib.Path | str | None = None) -> pathlib.Path:
        target = pathlib.Path(path) if path is not None else default_settings_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict(), indent=1))
        return target

    @classmethod
    def load(cls, path: pathlib.Path | str | None = None) -> DriftSISettings:
        """Settings from ``path`` (default :func:`default_settings_path`); defaults if the file does not exist."""
        source = pathlib.Path(path) if path is not None else default_settings_path()
        if not source.exists():
            return cls()
        try:
            return cls.from_dict(json.loads(source.read_text()))
        except (ValueError, TypeError) as e:
            logging.warning("Drift-corrected SI: settings file %s unreadable (%s); using defaults.", source, e)
            return cls()


@dataclasses.dataclass
class SectionRecord:
    """What happened in one section (JSON-able through :meth:`to_dict`)."""

    index: int
    pass_index: int
    row0: int
    rows: int
    t_start_s: float
    t_end_s: float
    offset_nm: tuple[float, float]
    offset_time_s: float
    pixels_acquired: int
    zlp_median_eV: float | None = None
    zlp_range_eV: tuple[float, float] | None = None
    energy_shift_median_eV: float | None = None
    superseded: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, typing.Any]:
        return typing.cast(dict[str, typing.Any], json.loads(json.dumps(dataclasses.asdict(self))))


class _PassGeometry(typing.NamedTuple):
    field: Rect  # fraction of context
    shape: tuple[int, int]
    exposure_s: float


class PassResult:
    """One SI pass (the EELS SI, or one EEGS wavelength, or the laser-off reference)."""

    def __init__(self, index: int, geometry: _PassGeometry, n_channels: int, *, label: str,
                 wavelength_nm: float | None = None) -> None:
        h, w = geometry.shape
        self.index = index
        self.label = label
        self.geometry = geometry
        self.wavelength_nm = wavelength_nm
        self.laser_power_mW: float | None = None
        self.raw = SIAssembler(h, w, n_channels)
        self.aligned = SIAssembler(h, w, n_channels)
        self.haadf = SIAssembler(h, w, 1)
        self.zlp_eV = np.full((h, w), np.nan)
        self.energy_shift_eV = np.zeros((h, w))
        self.pixel_times_s = np.full((h, w), np.nan)
        self.applied_offset_nm = np.full((h, w, 2), np.nan)
        self.offset_time_s = np.full((h, w), np.nan)
        #: (H, W, 2) residual (dy, dx) px removed by the shear correction: out[q] = raw[q + correction_px[q]]
        self.correction_px = np.zeros((h, w, 2))


class DriftSIResult:
    """Everything a run produced; partial when aborted or failed (``complete`` False)."""

    def __init__(self, settings: DriftSISettings) -> None:
        self.settings = settings
        self.state = "running"  # running | complete | aborted | error
        self.message = ""
        self.passes: list[PassResult] = []
        self.sections: list[SectionRecord] = []
        self.measurements: tuple[DriftMeasurement, ...] = ()
        self.energy_axis: EnergyAxis | None = None
        self.energy_units = "eV"
        self.si_pixel_size_nm: tuple[float, float] = (1.0, 1.0)
        self.reference_pixel_size_nm: tuple[float, float] = (1.0, 1.0)
        self.context_center_nm: tuple[float, float] = (0.0, 0.0)
        self.t0_s = 0.0
        self.shear_corrected = False
        #: outputs of the live analysis after its final update (processing.base Outputs) and its runner's record
        self.live_outputs: processing_base.Outputs = ()
        self.live_analysis_stats: dict[str, typing.Any] | None = None

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def main(self) -> PassResult | None:
        return self.passes[0] if self.passes else None

    # -- audit trail -----------------------------------------------------------------------------------------
    def metadata(self, pass_result: PassResult | None = None) -> dict[str, typing.Any]:
        p = pass_result or self.main
        d: dict[str, typing.Any] = {
            "state": self.state, "complete": self.complete, "message": self.message,
            "settings": self.settings.to_dict(),
            "si_pixel_size_nm": list(self.si_pixel_size_nm),
            "reference_pixel_size_nm": list(self.reference_pixel_size_nm),
            "context_center_nm": list(self.context_center_nm),
            "t0_s": self.t0_s,
            "shear_corrected": self.shear_corrected,
            "live_analysis": self.live_analysis_stats,
            "drift_measurements": [m.to_dict() for m in self.measurements],
            "n_measurements": len(self.measurements),
            "n_rejected": sum(1 for m in self.measurements if not m.accepted),
            "sections": [s.to_dict() for s in self.sections if p is None or s.pass_index == p.index],
        }
        if p is not None:
            d.update({"pass": p.label, "wavelength_nm": p.wavelength_nm, "laser_power_mW": p.laser_power_mW,
                      "acquired_pixels": p.aligned.acquired_pixels, "acquired_rows": p.aligned.acquired_rows,
                      "valid_rows": p.aligned.valid_rows.tolist(),
                      "valid_pixels_per_row": p.aligned.valid_pixels.sum(axis=1).tolist()})
        return d

    def _rows_to_keep(self, p: PassResult) -> int:
        """Rows that hold any acquired pixel (an incomplete SI keeps exactly those)."""
        rows_with_data = np.flatnonzero(p.aligned.valid_pixels.any(axis=1))
        return int(rows_with_data.max()) + 1 if rows_with_data.size else 0

    def si_xdata(self, pass_index: int = 0, *, raw: bool = False) -> DataAndMetadata.DataAndMetadata:
        """(H, W, E) SI (aligned unless ``raw``), calibrations (nm, nm, eV), audit metadata under ``drift_si``.

        An incomplete run returns only the rows that hold acquired pixels.
        """
        p = self.passes[pass_index]
        rows = self._rows_to_keep(p) if not self.complete else p.geometry.shape[0]
        data = (p.raw if raw else p.aligned).data[:rows].copy()
        axis = self.energy_axis or EnergyAxis(0.0, 1.0)
        cy, cx = self.si_pixel_size_nm
        calibrations = [Calibration.Calibration(0.0, cy, "nm"), Calibration.Calibration(0.0, cx, "nm"),
                        Calibration.Calibration(axis.offset_eV, axis.scale_eV, self.energy_units)]
        metadata = {"drift_si": self.metadata(p)}
        metadata["drift_si"]["aligned"] = not raw
        return DataAndMetadata.new_data_and_metadata(
            data, intensity_calibration=Calibration.Calibration(units="counts"), dimensional_calibrations=calibrations,
            metadata=metadata, data_descriptor=DataAndMetadata.DataDescriptor(False, 2, 1))

    def haadf_xdata(self, pass_index: int = 0) -> DataAndMetadata.DataAndMetadata:
        p = self.passes[pass_index]
        rows = self._rows_to_keep(p) if not self.complete else p.geometry.shape[0]
        cy, cx = self.si_pixel_size_nm
        return DataAndMetadata.new_data_and_metadata(
            p.haadf.data[:rows, :, 0].copy(),
            dimensional_calibrations=[Calibration.Calibration(0.0, cy, "nm"), Calibration.Calibration(0.0, cx, "nm")],
            metadata={"drift_si": {"state": self.state, "pass": p.label}})

    def drift_log(self) -> dict[str, FloatArray]:
        """Arrays over the measurements: time_s (since t0), y_nm, x_nm, quality, accepted (0/1)."""
        ms = self.measurements
        return {"time_s": np.array([m.time_s - self.t0_s for m in ms]),
                "y_nm": np.array([m.drift_nm[0] for m in ms]), "x_nm": np.array([m.drift_nm[1] for m in ms]),
                "quality": np.array([m.quality for m in ms]), "accepted": np.array([float(m.accepted) for m in ms])}

    def drift_log_xdata(self) -> DataAndMetadata.DataAndMetadata:
        """(3, N) rows drift y (nm), drift x (nm), quality versus time (s since the run started).

        The time axis is the first measurement time plus the mean interval (measurements come once per section, so
        nearly evenly); the exact times and the accepted flags are in the metadata. Shown as three labelled lines
        (``display.show_rows_as_lines``).
        """
        log = self.drift_log()
        times = np.asarray(log["time_s"], np.float64)
        data = np.stack([log["y_nm"], log["x_nm"], log["quality"]]) if len(times) else np.zeros((3, 1))
        scale = float((times[-1] - times[0]) / (len(times) - 1)) if len(times) > 1 else 1.0
        offset = float(times[0]) if len(times) else 0.0
        return DataAndMetadata.new_data_and_metadata(
            data, intensity_calibration=Calibration.Calibration(units="nm"),
            dimensional_calibrations=[Calibration.Calibration(), Calibration.Calibration(offset, scale, "s")],
            metadata={"drift_si": {"time_s": times.tolist(), "accepted": log["accepted"].tolist(),
                                   "labels": list(DRIFT_LOG_LABELS)}})

    # -- EEGS --------------------------------------------------------------------------------------------------
    def eegs_passes(self) -> tuple[list[PassResult], PassResult | None]:
        lasers = [p for p in self.passes if p.wavelength_nm is not None]
        off = next((p for p in self.passes if p.label == "laser off"), None)
        return lasers, off

    def eegs_gain(self, *, zlp_fwhm_eV: float, point: tuple[int, int] | None = None,
                  normalise: eegs_analysis.Normalisation = "zlp") -> tuple[FloatArray, FloatArray]:
        """Gain-peak intensity per wavelength, normalised by ZLP counts and laser power.

        Returns (wavelengths_nm (L,), gain): gain is (L, H, W) per pixel of the pass geometry (a map), or (L,) at
        ``point`` (row, col of the pass geometry; for the "point" geometry all frames are summed).
        The laser-off pass (if acquired) is subtracted as reference.
        """
        lasers, off = self.eegs_passes()
        if not lasers or self.energy_axis is None:
            raise DriftSIError("no EEGS wavelength was acquired; run in EEGS mode first.")
        point_mode = self.settings.eegs_geometry == "point"

        def spectra(p: PassResult) -> FloatArray:
            d = np.asarray(p.aligned.data, dtype=np.float64)
            valid = p.aligned.valid_pixels
            if point_mode:
                return np.asarray(d[valid].sum(axis=0), dtype=np.float64)
            if point is not None:
                return np.asarray(d[point], dtype=np.float64)
            return d

        reference = spectra(off) if off is not None and off.aligned.acquired_pixels else None
        powers = [p.laser_power_mW if p.laser_power_mW and p.laser_power_mW > 0 else 1.0 for p in lasers]
        lams = np.array([p.wavelength_nm for p in lasers], dtype=np.float64)
        gain = eegs_analysis.eegs_curve([spectra(p) for p in lasers], self.energy_axis, lams.tolist(),
                                        zlp_fwhm_eV=zlp_fwhm_eV, laser_powers=powers, normalise=normalise,
                                        reference=reference)
        return lams, gain


class _TrackingDataChannel(Acquisition.DataAndMetadataDataChannel):
    """Collects the synchronized data like Swift's own channel and remembers how far each channel was filled,
    so that an aborted section still yields its acquired pixels."""

    def __init__(self, clock: typing.Callable[[], float], timed_segment: str) -> None:
        super().__init__()
        self.filled: dict[Acquisition.Channel, int] = {}
        self.shapes: dict[Acquisition.Channel, tuple[int, ...]] = {}
        self.lock = threading.Lock()
        self._clock = clock
        self._timed_segment = timed_segment
        #: (time, pixels filled) at each delivery of the timed (camera) channel: the pixel clock of the section
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


_RUN_LOCK = threading.Lock()
_ACTIVE: list[DriftCorrectedSI] = []


class DriftCorrectedSI:
    """One drift-corrected SI run. Construct with settings; then :meth:`run` (blocking) or :meth:`start`.

    Events (``nion.utils.Event.Event``, fired on the acquisition thread):
    ``progress_event(fraction, remaining_s, message)``, ``section_event(result, pass_result, section_record)``,
    ``drift_event(measurement)``, ``finished_event(result)``.

    ``scan``/``camera``/``laser``/``clock`` may be passed explicitly (tests); by default they are looked up by the
    ids in the settings, and the clock is the instrument's ``time_s()`` when it has one (the simulator's clock,
    which also drives its drift) or ``time.monotonic``.
    """

    def __init__(self, settings: DriftSISettings | None = None, *, scan: typing.Any = None, camera: typing.Any = None,
                 laser: typing.Any = None, clock: typing.Callable[[], float] | None = None) -> None:
        self.settings = copy.deepcopy(settings) if settings is not None else DriftSISettings()
        self._scan = scan
        self._camera = camera
        self._laser = laser
        self._clock = clock
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.result = DriftSIResult(self.settings)
        self.estimator = self._make_estimator()
        self.progress_event = Event.Event()
        self.section_event = Event.Event()
        self.drift_event = Event.Event()
        self.finished_event = Event.Event()
        #: ``analysis_event(outputs, section_update)``: new live-analysis outputs (fired on the analysis worker)
        self.analysis_event = Event.Event()
        self._analysis: live_analysis.LiveAnalysis | None = None
        self._analysis_runner: live_analysis.LiveAnalysisRunner | None = None
        self._analysis_section = 0
        self._data_channel: _TrackingDataChannel | None = None
        self._section_overhead_s = 0.0
        self._progress_start_s = 0.0

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

    def abort(self) -> None:
        """Stop as soon as possible; the data acquired so far is kept."""
        self._abort.set()
        scan = self._scan
        if scan is not None:
            try:
                scan.grab_synchronized_abort()
            except Exception as e:  # the scan may already be idle
                logging.debug("grab_synchronized_abort: %s", e)

    # -- internals ---------------------------------------------------------------------------------------------
    def _claim(self) -> None:
        self.settings.validate()
        if self.settings.live_analysis and self._analysis is None:
            try:  # refused before the run starts: unknown name, bad parameter values, a factory that fails
                self._analysis = live_analysis.create_live_analysis(self.settings.live_analysis,
                                                                    self.settings.live_analysis_parameters)
            except Exception as e:
                raise DriftSIError(f"live analysis {self.settings.live_analysis!r} cannot be set up: {e}") from e
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
        return DriftEstimator(quality_threshold=s.quality_threshold, template_weight=s.template_weight,
                              rate_window=s.rate_window, max_step_nm=s.max_step_nm,
                              lowpass_sigma_px=s.lowpass_sigma_px, highpass_sigma_px=s.highpass_sigma_px,
                              max_shift_fraction=s.max_shift_fraction)

    def _run_claimed(self) -> None:
        try:
            self._acquire()
            if self._abort.is_set():
                self.result.state = "aborted"
                self.result.message = self.result.message or "aborted by the user; the acquired pixels are kept."
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
        manager = HardwareSource.HardwareSourceManager()
        if self._scan is None:
            self._scan = manager.get_hardware_source_for_hardware_source_id(s.scan_hardware_source_id)
        if self._camera is None:
            self._camera = manager.get_hardware_source_for_hardware_source_id(s.camera_hardware_source_id)
        if self._scan is None:
            raise DriftSIError(f"scan '{s.scan_hardware_source_id}' not found; start the instrument (or the "
                               f"simulator) or choose another scan in the settings.")
        if self._camera is None:
            raise DriftSIError(f"camera '{s.camera_hardware_source_id}' not found; choose the spectrometer camera.")
        if self._clock is None:
            stem = getattr(self._scan, "stem_controller", None)
            time_s = getattr(stem, "time_s", None)
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
        cal_y, cal_x = scan_base.get_scan_calibrations(base)
        ctx_h, ctx_w = base.pixel_size.height, base.pixel_size.width
        self._ctx_px_nm = (float(cal_y.scale), float(cal_x.scale))
        self._ctx_shape = (ctx_h, ctx_w)
        self.result.context_center_nm = (float(base.center_nm.y), float(base.center_nm.x))
        ft, fl, fh, fw = s.scan_field
        h, w = s.si_size_px
        self.result.si_pixel_size_nm = (fh * ctx_h * self._ctx_px_nm[0] / h, fw * ctx_w * self._ctx_px_nm[1] / w)
        rt, rl, rh, rw = s.reference_region
        ref_shape = self._reference_shape()
        self.result.reference_pixel_size_nm = (rh * ctx_h * self._ctx_px_nm[0] / ref_shape[0],
                                               rw * ctx_w * self._ctx_px_nm[1] / ref_shape[1])
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

        # the plan: a list of passes, each a list of sections
        geometries: list[tuple[str, float | None, _PassGeometry]] = []
        if s.mode == "EELS":
            geometries.append(("EELS", None, _PassGeometry(s.scan_field, (h, w), s.exposure_s)))
        else:
            eegs_geom = self._eegs_geometry()
            for wavelength in s.wavelength_list():
                geometries.append((f"{wavelength:g} nm", wavelength, eegs_geom))
            if s.laser_off_frames > 0:
                off = eegs_geom
                if s.eegs_geometry == "point":
                    off = self._point_geometry(s.laser_off_frames)
                geometries.append(("laser off", None, off))
        total_pixels = sum(g.shape[0] * g.shape[1] for _l, _w, g in geometries)
        self._total_pixels = total_pixels
        self._done_pixels = 0

        self.result.t0_s = self._now()
        self._progress_start_s = self.result.t0_s
        if s.correct_drift:
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
            n_channels = self._n_channels()
            p = PassResult(pass_index, geom, n_channels, label=label, wavelength_nm=lam)
            if s.mode == "EEGS":
                p.laser_power_mW = self._laser_power_mW() if lam is not None else 0.0
            self.result.passes.append(p)
            self._acquire_pass(p)
        if s.mode == "EEGS":
            self._set_laser(None)

    def _eegs_geometry(self) -> _PassGeometry:
        s = self.settings
        ft, fl, fh, fw = s.scan_field
        h, w = s.si_size_px
        py, px = s.eegs_point
        if s.eegs_geometry == "map":
            return _PassGeometry(s.scan_field, (h, w), s.exposure_s * s.frames_per_wavelength)
        if s.eegs_geometry == "line":
            row = min(int(py * h), h - 1)
            return _PassGeometry((ft + fh * row / h, fl, fh / h, fw), (1, w), s.exposure_s * s.frames_per_wavelength)
        return self._point_geometry(s.frames_per_wavelength)

    def _point_geometry(self, frames: int) -> _PassGeometry:
        """N frames at one point: a 1 x N sub-scan over a negligible width (0.1 % of one SI pixel)."""
        s = self.settings
        ft, fl, fh, fw = s.scan_field
        h, w = s.si_size_px
        py, px = s.eegs_point
        cy, cx = ft + fh * (min(int(py * h), h - 1) + 0.5) / h, fl + fw * (min(int(px * w), w - 1) + 0.5) / w
        width = 1e-3 * fw / w
        return _PassGeometry((cy - 0.5 * fh / h, cx - width / 2, fh / h, width), (1, frames), s.exposure_s)

    def _reference_shape(self) -> tuple[int, int]:
        s = self.settings
        _t, _l, rh, rw = s.reference_region
        ctx_h, ctx_w = self._ctx_shape
        aspect = (rw * ctx_w * self._ctx_px_nm[1]) / (rh * ctx_h * self._ctx_px_nm[0])
        n = s.reference_size_px
        return (n, max(8, int(round(n * aspect)))) if aspect >= 1 else (max(8, int(round(n / aspect))), n)

    def _n_channels(self) -> int:
        dims = self._camera.get_expected_dimensions(self._cam_params.binning)
        return int(dims[-1])

    def _section_lines(self, geom: _PassGeometry) -> int:
        s = self.settings
        h, w = geom.shape
        if s.section_interval_s is not None:
            line_s = w * geom.exposure_s
            return int(np.clip(math.ceil(s.section_interval_s / max(line_s, 1e-9)), 1, h))
        return int(min(s.section_lines, h))

    def _offset_for(self, t_s: float) -> tuple[float, float]:
        s = self.settings
        if not s.correct_drift:
            return 0.0, 0.0
        if s.use_prediction:
            return self.estimator.predict_offset_nm(t_s)
        acc = self.estimator.accepted
        return acc[-1].drift_nm if acc else (0.0, 0.0)

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

    def _measure_drift(self) -> DriftMeasurement | None:
        s = self.settings
        shape = self._reference_shape()
        t_pred = self._now()
        offset = self._offset_for(t_pred)
        params = self._frame_parameters(s.reference_region, shape, offset)
        params.pixel_time_us = s.reference_pixel_time_us
        params.enabled_channel_indexes = [s.reference_channel_index]
        t_start = self._now()
        xdatas = self._scan.record_immediate(params)
        t_end = self._now()
        xdata = next((x for x in xdatas if x is not None), None)
        if xdata is None:
            raise DriftSIError("the reference-region scan returned no data; enable the reference scan channel.")
        # the scan starts as soon as the call starts (the rest of the call is read-out and hand-over)
        frame_s = shape[0] * (shape[1] * s.reference_pixel_time_us + 30.0) * 1e-6
        t_scan = min(t_start + 0.5 * frame_s, t_end)
        m = self.estimator.add_image(np.asarray(xdata.data, dtype=np.float64), time_s=t_scan,
                                     pixel_size_nm=self.result.reference_pixel_size_nm, applied_offset_nm=offset)
        self.result.measurements = self.estimator.records
        self.drift_event.fire(m)
        return m

    def _acquire_pass(self, p: PassResult) -> None:
        s = self.settings
        h, w = p.geometry.shape
        lines = self._section_lines(p.geometry)
        top, left, height, width = p.geometry.field
        cam_params = copy.deepcopy(self._cam_params)
        cam_params.exposure_ms = p.geometry.exposure_s * 1000.0
        row0 = 0
        reacquired: set[int] = set()
        while row0 < h and not self._abort.is_set():
            rows = min(lines, h - row0)
            rect = (top + height * row0 / h, left, height * rows / h, width)
            expected_s = rows * w * p.geometry.exposure_s
            t_offset = self._now() + self._section_overhead_s + 0.5 * expected_s
            offset = self._offset_for(t_offset)
            params = self._frame_parameters(rect, (rows, w), offset)
            channel = _TrackingDataChannel(self._now, self._camera.hardware_source_id)
            self._data_channel = channel
            t_start = self._now()
            error: Exception | None = None
            results: typing.Any = None
            grab_done = threading.Event()
            watcher = threading.Thread(target=self._abort_watch, args=(grab_done,), daemon=True)
            watcher.start()
            try:
                results = self._scan.grab_synchronized(data_channel=channel, scan_frame_parameters=params,
                                                       camera=self._camera, camera_frame_parameters=cam_params)
            except Exception as e:
                error = e
            finally:
                grab_done.set()
                watcher.join()
            t_end = self._now()
            n_acquired = self._store_section(p, row0, rows, results, channel, t_start, t_end, offset, t_offset)
            if p.index == 0 and n_acquired:
                self._submit_analysis(p, slice(row0, row0 + rows), final=False)
            self._done_pixels += n_acquired
            self._report_progress(p)
            if error is not None:
                raise error
            if results is None and not self._abort.is_set():
                raise DriftSIError("the synchronized scan ended without data (camera or scan stopped).")
            if self._abort.is_set():
                break
            if s.correct_drift:
                # the measurement after each section (also the last) brackets it for the shear correction
                m = self._measure_drift()
                jump_nm = s.reacquire_jump_px * min(self.result.si_pixel_size_nm)
                if (s.reacquire_on_jump and m is not None and m.accepted and m.predicted_drift_nm is not None
                        and row0 not in reacquired and not self._abort.is_set()):
                    miss = math.hypot(m.drift_nm[0] - m.predicted_drift_nm[0], m.drift_nm[1] - m.predicted_drift_nm[1])
                    if miss > jump_nm:
                        # a jump during (or just before) this section: it cannot be interpolated away; scan the
                        # section again at the corrected offset (once), the earlier record stays in the log
                        reacquired.add(row0)
                        record = self.result.sections[-1] if self.result.sections else None
                        if record is not None and record.row0 == row0 and record.pass_index == p.index:
                            record.superseded = True
                            record.note = f"re-acquired: drift jumped {miss:.3f} nm from the prediction"
                        self._total_pixels += rows * w
                        continue
            row0 += rows

    @staticmethod
    def _pixel_times(deliveries: typing.Sequence[tuple[float, int]], n_pixels: int, exposure_s: float,
                     t_start: float, t_end: float) -> FloatArray:
        """(n,) mid-exposure time of every pixel of a section, from the camera channel's deliveries.

        Each delivery (t, c) says pixels 0..c-1 had arrived at t; a straight-line fit t = a + b * c over the
        deliveries gives the pixel clock (b = pixel period, flyback included). With fewer than two distinct
        deliveries the section is assumed to end at ``t_end`` with pixels spaced by the exposure.
        """
        k = np.arange(n_pixels, dtype=np.float64)
        points = sorted({c: t for t, c in deliveries if c > 0}.items())
        if len(points) >= 2:
            c = np.array([pt[0] for pt in points], dtype=np.float64)
            t = np.array([pt[1] for pt in points], dtype=np.float64)
            b, a = np.polyfit(c, t, 1)
            if b > 0:
                return np.asarray(a + b * (k + 0.5), dtype=np.float64)
        period = exposure_s
        end = deliveries[-1][0] if deliveries else t_end
        return np.asarray(end - (n_pixels - k - 0.5) * period, dtype=np.float64)

    def _abort_watch(self, grab_done: threading.Event) -> None:
        """While a section is being grabbed: on abort, repeat the scan's abort until the grab returns (an abort
        that arrives while Swift is still preparing the stream would otherwise be lost)."""
        while not grab_done.is_set():
            if self._abort.wait(0.05):
                try:
                    self._scan.grab_synchronized_abort()
                except Exception as e:
                    logging.debug("grab_synchronized_abort: %s", e)
                grab_done.wait(0.05)

    def _store_section(self, p: PassResult, row0: int, rows: int, results: typing.Any, channel: _TrackingDataChannel,
                       t_start: float, t_end: float, offset: tuple[float, float], t_offset: float) -> int:
        s = self.settings
        h, w = p.geometry.shape
        cam_id = self._camera.hardware_source_id
        scan_id = self._scan.hardware_source_id
        cam_xdata: DataAndMetadata.DataAndMetadata | None = None
        haadf: DataAndMetadata.DataAndMetadata | None = None
        n_pixels = rows * w
        if results is not None:
            scans, cams = results
            cam_xdata = cams[0] if cams else None
            haadf = scans[0] if scans else None
        else:  # aborted or failed: read what the channel received
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
            img = np.asarray(haadf.data, dtype=np.float32).reshape(rows, w)
            p.haadf.add_rows(row0, img[..., None], n_pixels=n_pixels)
        times = self._pixel_times(channel.deliveries, rows * w, p.geometry.exposure_s, t_start, t_end).reshape(rows, w)
        self._section_overhead_s = max(float(times.reshape(-1)[0]) - t_start, 0.0)
        p.pixel_times_s[row0:row0 + rows] = times
        p.applied_offset_nm[row0:row0 + rows] = offset
        p.offset_time_s[row0:row0 + rows] = t_offset
        record = SectionRecord(len(self.result.sections), p.index, row0, rows, t_start, t_end,
                               (float(offset[0]), float(offset[1])), t_offset, int(n_pixels))
        # energy: ZLP per spectrum with sub-channel precision, aligned keeping the gain side
        flat = spectra.reshape(rows * w, -1)[:n_pixels].astype(np.float64)
        try:
            zlp = zlp_position_eV(flat, axis, search_eV=s.zlp_search_eV)
        except Exception as e:  # e.g. ZLP outside the recorded range: keep raw data, record the reason
            logging.warning("ZLP measurement failed for section %d: %s", record.index, e)
            zlp = np.full(n_pixels, np.nan)
        ok = np.isfinite(zlp)
        if s.correct_energy and ok.any():
            used = zlp.copy()
            if s.energy_alignment == "row":
                rows_idx = np.arange(n_pixels) // w
                for r in np.unique(rows_idx):
                    sel = (rows_idx == r) & ok
                    if sel.any():
                        used[rows_idx == r] = np.median(zlp[sel])
            used[~ok] = np.median(zlp[ok])
            aligned = align_zlp(flat, axis, zlp_eV=used).aligned
            shift = -used
        else:
            aligned, shift = flat, np.zeros(n_pixels)
        block = np.zeros_like(spectra)
        block.reshape(rows * w, -1)[:n_pixels] = aligned
        p.aligned.add_rows(row0, block, n_pixels=n_pixels)
        p.zlp_eV[row0:row0 + rows].reshape(-1)[:n_pixels] = zlp
        p.energy_shift_eV[row0:row0 + rows].reshape(-1)[:n_pixels] = shift
        if ok.any():
            record.zlp_median_eV = float(np.median(zlp[ok]))
            record.zlp_range_eV = (float(np.min(zlp[ok])), float(np.max(zlp[ok])))
            record.energy_shift_median_eV = float(np.median(shift))
        self.result.sections.append(record)
        self.section_event.fire(self.result, p, record)
        return int(n_pixels)

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
        haadf = np.where(valid, p.haadf.data[..., 0], np.nan).astype(np.float32)
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

    def _report_progress(self, p: PassResult) -> None:
        fraction = self._done_pixels / max(self._total_pixels, 1)
        elapsed = self._now() - self._progress_start_s
        remaining = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        self.progress_event.fire(fraction, remaining, f"{p.label}: {p.aligned.acquired_pixels} px")

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

    # -- end of run ---------------------------------------------------------------------------------------------
    def _finalise(self) -> None:
        s = self.settings
        self.result.measurements = self.estimator.records
        if not (s.correct_drift and s.correct_shear and self.estimator.accepted):
            return
        rate = self.estimator.rate_nm_per_s()
        for p in self.result.passes:
            if p.aligned.acquired_pixels == 0 or p.geometry.shape[0] < 2 or self.settings.mode == "EEGS" and \
                    self.settings.eegs_geometry == "point":
                continue
            times = np.where(np.isfinite(p.pixel_times_s), p.pixel_times_s, 0.0)
            # a-posteriori trajectory: linear between the reference scans around each section, predicted rate after
            traj = drift_trajectory_nm(self.estimator.records, times, extrapolation_rate_nm_per_s=rate)
            applied = np.where(np.isfinite(p.applied_offset_nm), p.applied_offset_nm, traj)
            residual_px = (traj - applied) / np.array(self.result.si_pixel_size_nm)[None, None, :]
            rows = p.aligned.valid_rows
            if not rows.any():
                continue
            valid = p.aligned.valid_pixels
            residual_px[~rows] = 0.0
            p.correction_px = residual_px
            corrected = resample_displacement(p.aligned.data, residual_px, valid_rows=rows)
            p.aligned.data[rows] = corrected[rows].astype(p.aligned.data.dtype)
            haadf = resample_displacement(p.haadf.data[..., 0], residual_px, valid_rows=rows)
            p.haadf.data[rows, :, 0] = haadf[rows].astype(p.haadf.data.dtype)
        self.result.shear_corrected = True


def _call_first(obj: typing.Any, names: typing.Sequence[str], *args: typing.Any) -> None:
    for name in names:
        fn = getattr(obj, name, None)
        if callable(fn):
            fn(*args)
            return
    raise DriftSIError(f"the laser {obj!r} has none of {list(names)}; it cannot be driven for EEGS.")


DRIFT_LOG_LABELS = ("y (nm)", "x (nm)", "quality")


def create_data_items(document_model: typing.Any, result: DriftSIResult) -> list[typing.Any]:
    """Add the run's results to a Swift document: the SI (one per pass), its HAADF, and the Drift Log.

    An incomplete run (aborted / error) is marked in the title and in the metadata (``drift_si.complete`` False,
    ``drift_si.state``, ``drift_si.message``) and holds exactly the rows that have acquired pixels.
    Returns the new data items.
    """
    from nion.swift.model import DataItem
    items: list[typing.Any] = []
    suffix = "" if result.complete else f" [INCOMPLETE: {result.state}]"

    def add(xdata: DataAndMetadata.DataAndMetadata, title: str) -> None:
        item = DataItem.new_data_item(xdata)
        item.title = title + suffix
        document_model.append_data_item(item)
        items.append(item)

    for i, p in enumerate(result.passes):
        if p.aligned.acquired_pixels == 0:
            continue
        add(result.si_xdata(i), f"Drift-corrected SI ({p.label})")
        if i == 0:
            add(result.haadf_xdata(i), f"Drift-corrected SI HAADF ({p.label})")
    for title, xdata in live_analysis_xdatas(result.live_outputs, result.live_analysis_stats):
        add(xdata, title)
        if xdata.metadata.get("insitu", {}).get("labels") and xdata.is_data_2d and xdata.datum_dimension_count == 1:
            from nionswift_plugin.insitu import display
            display.show_rows_as_lines(document_model.get_display_item_for_data_item(items[-1]),
                                       xdata.metadata["insitu"]["labels"])
    if result.measurements:
        add(result.drift_log_xdata(), "Drift Log")
        from nionswift_plugin.insitu import display
        display.show_rows_as_lines(document_model.get_display_item_for_data_item(items[-1]), DRIFT_LOG_LABELS)
    return items


def live_analysis_xdatas(outputs: processing_base.Outputs, stats: typing.Mapping[str, typing.Any] | None
                         ) -> list[tuple[str, DataAndMetadata.DataAndMetadata]]:
    """(title, xdata) of every displayable live-analysis output; metadata ``insitu`` carries the runner's record
    (ms per update, updates skipped) under ``live_analysis``."""
    from nionswift_plugin.insitu.computations import output_to_xdata
    title = str((stats or {}).get("title", "Live analysis"))
    found: list[tuple[str, DataAndMetadata.DataAndMetadata]] = []
    for output in outputs:
        xdata = output_to_xdata(output, {"live_analysis": dict(stats or {}), "output": output.name})
        if xdata is not None:
            found.append((f"{title}: {getattr(output, 'title', '') or output.name}", xdata))
    return found


def run_drift_corrected_si(settings: DriftSISettings | None = None, **devices: typing.Any) -> DriftSIResult:
    """Script entry point: run a drift-corrected SI with ``settings`` (default: the remembered settings)."""
    return DriftCorrectedSI(settings if settings is not None else DriftSISettings.load(), **devices).run()
