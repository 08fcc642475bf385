"""Settings of a drift-corrected spectrum image (SI) run, and its errors (no Swift import).

:class:`DriftSISettings` holds every setting (JSON round-trip, remembered by the panel); :meth:`DriftSISettings.validate`
refuses inconsistent values with a remedy before anything is acquired.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import typing

from processing.spectroscopy import live_analysis

__all__ = ["DriftSIError", "AcquisitionBusyError", "DriftSISettings", "default_settings_path", "Rect"]

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
    #: extra reference scans before the first section, so that the first section already follows a measured rate
    #: (on a crystal the residual between two scans must stay below half a lattice period, which a fast drift
    #: exceeds over a whole section without a rate); the baselines double from one scan's duration
    #: (:func:`~processing.spectroscopy.si_timing.bootstrap_wait_s`), each wait at most ``bootstrap_interval_s``
    bootstrap_measurements: int = 2
    bootstrap_interval_s: float = 0.3
    #: on a periodic reference, a reference scan whose lattice alias rests on the drift model alone (a jump, an
    #: ambiguous or an unverified measurement: :func:`~processing.spectroscopy.drift_guard.rate_check_wanted`) is
    #: followed at once by one more, whose short baseline measures the rate (a rate alias of one period per
    #: reference interval cannot pass it)
    rate_check: bool = True
    #: re-acquire a section when the measurement after it is a jump (outside ``jump_sigma`` sigma of the
    #: prediction and larger than ``reacquire_jump_px`` SI pixels: a jump inside a section cannot be interpolated
    #: away), up to ``max_reacquisitions`` times per section; a section still hit is flagged, never kept silently
    reacquire_on_jump: bool = True
    reacquire_jump_px: float = 0.25
    max_reacquisitions: int = 3
    jump_sigma: float = 4.5
    #: drift-model bounds (3 sigma) of what a fit cannot know yet: the rate before two measurements, the
    #: acceleration of a linear fit
    max_drift_rate_nm_per_s: float = 0.6
    max_drift_accel_nm_per_s2: float = 0.25
    #: NCC margin within which lattice aliases are indistinguishable by content: max(alias_quality_margin,
    #: alias_noise_factor * (1 - best NCC)), the noise scale of the match; with ``alias_safe_sections`` the
    #: sections are shortened so that the prediction window at the next reference scan stays inside half the alias
    #: spacing once aliases have been seen (a periodic reference region)
    alias_quality_margin: float = 0.002
    alias_noise_factor: float = 2.0
    alias_safe_sections: bool = True
    #: one short synchronized line before the run measures the scan's start-up delay and pixel/line periods
    timing_probe: bool = True
    #: an immediate abort first cancels the camera, waits up to this long (s) for Swift to hand over the lines the
    #: camera completed (Swift drops data still in its pipeline when the acquisition is aborted), then aborts the
    #: scan; the beam waits at its last pixel meanwhile
    abort_drain_s: float = 0.5
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
        if self.max_reacquisitions < 0 or not self.jump_sigma > 0 or not self.reacquire_jump_px >= 0:
            raise DriftSIError(f"max_reacquisitions ({self.max_reacquisitions}) must be >= 0, jump_sigma "
                               f"({self.jump_sigma}) > 0 and reacquire_jump_px ({self.reacquire_jump_px}) >= 0.")
        if not 0 <= self.abort_drain_s <= 10:
            raise DriftSIError(f"abort_drain_s must be between 0 and 10 s; got {self.abort_drain_s}. 0.5 s hands "
                               f"over the completed lines on a loaded machine.")
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
