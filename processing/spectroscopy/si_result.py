"""The result of a drift-corrected SI run (no Swift import): passes, section records, verdicts, audit trail, and the
a-posteriori (shear) correction.

* :class:`SectionRecord`: one scanned section (a re-acquired one appears again, the earlier record ``superseded``),
  with its **verdict**: ``trusted`` or flagged with the reasons (:func:`assign_verdicts`).
* :class:`PassResult`: one SI pass (raw and energy-aligned :class:`~processing.spectroscopy.si_assembly.SIAssembler`,
  HAADF, per-pixel times, applied offsets, which section record each pixel comes from).
* :class:`SIRunResult`: everything a run produced; valid also when empty (aborted before the first section): the
  state, message, measurements, sections and per-pixel masks say what holds.
* :func:`apply_shear_correction`: place every pixel where it really was (the residual between the a-posteriori
  drift trajectory and the offset applied, rotated into the SI's scan axes) and resample onto the grid.
"""
from __future__ import annotations

import dataclasses
import json
import typing

import numpy as np
from numpy.typing import NDArray

from processing import base as processing_base
from processing.spectroscopy import eegs as eegs_analysis
from processing.spectroscopy.drift import DriftEstimator, DriftMeasurement
from processing.spectroscopy.drift_consistency import ChainSolution, annotate, rebuild_predictor, resolve_chain
from processing.spectroscopy.drift_guard import periodic_reference
from processing.spectroscopy.drift_model import DriftPredictor, sample_to_scan
from processing.spectroscopy.si_assembly import SIAssembler, resample_scattered
from processing.spectroscopy.si_settings import DriftSIError, DriftSISettings, Rect
from processing.spectroscopy.spectrum_alignment import EnergyAxis

__all__ = ["SectionRecord", "PassGeometry", "PassResult", "SIRunResult", "assign_verdicts", "apply_shear_correction",
           "resolve_measurements"]

FloatArray = NDArray[np.float64]


@dataclasses.dataclass
class SectionRecord:
    """What happened in one section (JSON-able through :meth:`to_dict`).

    ``repeat``: 0 for the first scan of these rows, k for the k-th re-acquisition. ``trusted`` / ``flags``: the
    verdict (flags say why a section is not trusted). ``measurement_before`` / ``measurement_after``: indices of
    the drift measurements that bracket it (None when there is none, e.g. aborted).
    """

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
    repeat: int = 0
    complete: bool = True
    timing_source: str = ""
    pixel_period_s: float | None = None
    line_period_s: float | None = None
    start_delay_s: float | None = None
    measurement_before: int | None = None
    measurement_after: int | None = None
    trusted: bool = True
    flags: tuple[str, ...] = ()
    #: the retrospective check of the drift chain moved this section (its largest change of position, SI px);
    #: 0 when it was placed where the live decisions put it
    replaced_px: float = 0.0

    def to_dict(self) -> dict[str, typing.Any]:
        return typing.cast(dict[str, typing.Any], json.loads(json.dumps(dataclasses.asdict(self))))


class PassGeometry(typing.NamedTuple):
    field: Rect  # fraction of context
    shape: tuple[int, int]
    exposure_s: float


class PassResult:
    """One SI pass (the EELS SI, or one EEGS wavelength, or the laser-off reference)."""

    def __init__(self, index: int, geometry: PassGeometry, n_channels: int, *, label: str,
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
        #: (H, W) index of the section record each pixel's data comes from (-1: not acquired)
        self.source_section = np.full((h, w), -1, dtype=np.int64)
        #: (H, W, 2) residual (dy, dx) px removed by the shear correction: out[q] = raw[q + correction_px[q]]
        self.correction_px = np.zeros((h, w, 2))


class SIRunResult:
    """Everything a run produced; partial when aborted or failed (``complete`` False), possibly empty."""

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
        self.scan_rotation_rad = 0.0
        self.t0_s = 0.0
        self.shear_corrected = False
        #: measured scan timing: start-up delay and pixel/line periods of the last section, and their source
        self.timing: dict[str, typing.Any] = {}
        #: the retrospective consistency check of the drift chain (None until the end of the run)
        self.chain_solution: ChainSolution | None = None
        self.final_predictor: DriftPredictor | None = None
        #: outputs of the live analysis after its final update (processing.base Outputs) and its runner's record
        self.live_outputs: processing_base.Outputs = ()
        self.live_analysis_stats: dict[str, typing.Any] | None = None

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def main(self) -> PassResult | None:
        return self.passes[0] if self.passes else None

    # -- verdicts ------------------------------------------------------------------------------------------------
    def current_sections(self, pass_index: int = 0) -> list[SectionRecord]:
        """The sections of a pass whose data is in the SI (not superseded), in acquisition order."""
        return [s for s in self.sections if s.pass_index == pass_index and not s.superseded]

    def flagged_sections(self, pass_index: int = 0) -> list[SectionRecord]:
        return [s for s in self.current_sections(pass_index) if not s.trusted]

    def trusted_pixels(self, pass_index: int = 0) -> NDArray[np.bool_]:
        """(H, W) True where the pixel was acquired in a trusted section."""
        p = self.passes[pass_index]
        trusted = {s.index for s in self.sections if s.trusted and s.pass_index == pass_index}
        return np.asarray(np.isin(p.source_section, list(trusted)) & p.aligned.valid_pixels, dtype=bool)

    # -- audit trail -----------------------------------------------------------------------------------------
    def metadata(self, pass_result: PassResult | None = None) -> dict[str, typing.Any]:
        p = pass_result or self.main
        d: dict[str, typing.Any] = {
            "state": self.state, "complete": self.complete, "message": self.message,
            "settings": self.settings.to_dict(),
            "si_pixel_size_nm": list(self.si_pixel_size_nm),
            "reference_pixel_size_nm": list(self.reference_pixel_size_nm),
            "context_center_nm": list(self.context_center_nm),
            "scan_rotation_rad": self.scan_rotation_rad,
            "t0_s": self.t0_s,
            "shear_corrected": self.shear_corrected,
            "timing": dict(self.timing),
            "live_analysis": self.live_analysis_stats,
            "drift_measurements": [m.to_dict() for m in self.measurements],
            "n_measurements": len(self.measurements),
            "n_rejected": sum(1 for m in self.measurements if not m.accepted),
            "n_flagged_measurements": sum(1 for m in self.measurements if m.flagged),
            "sections": [s.to_dict() for s in self.sections if p is None or s.pass_index == p.index],
        }
        if p is not None:
            current = self.current_sections(p.index)
            d.update({"pass": p.label, "wavelength_nm": p.wavelength_nm, "laser_power_mW": p.laser_power_mW,
                      "acquired_pixels": p.aligned.acquired_pixels, "acquired_rows": p.aligned.acquired_rows,
                      "valid_rows": p.aligned.valid_rows.tolist(),
                      "valid_pixels_per_row": p.aligned.valid_pixels.sum(axis=1).tolist(),
                      "trusted_pixels": int(np.count_nonzero(self.trusted_pixels(p.index))),
                      "n_flagged_sections": sum(1 for s in current if not s.trusted),
                      "flagged_rows": sorted({r for s in current if not s.trusted
                                              for r in range(s.row0, s.row0 + s.rows)})})
        return d

    def rows_to_keep(self, p: PassResult) -> int:
        """Rows of the SI to deliver: all when complete, else up to the last row holding an acquired pixel."""
        if self.complete:
            return p.geometry.shape[0]
        rows_with_data = np.flatnonzero(p.aligned.valid_pixels.any(axis=1))
        return int(rows_with_data.max()) + 1 if rows_with_data.size else 0

    def drift_log(self) -> dict[str, FloatArray]:
        """Arrays over the measurements: time_s (since t0), y_nm, x_nm, quality, accepted and flagged (0/1)."""
        ms = self.measurements
        return {"time_s": np.array([m.time_s - self.t0_s for m in ms]),
                "y_nm": np.array([m.drift_nm[0] for m in ms]), "x_nm": np.array([m.drift_nm[1] for m in ms]),
                "quality": np.array([m.quality for m in ms]), "accepted": np.array([float(m.accepted) for m in ms]),
                "flagged": np.array([float(m.flagged) for m in ms])}

    # -- EEGS --------------------------------------------------------------------------------------------------
    def eegs_passes(self) -> tuple[list[PassResult], PassResult | None]:
        lasers = [p for p in self.passes if p.wavelength_nm is not None and p.aligned.acquired_pixels]
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


def _bracketing(measurements: typing.Sequence[DriftMeasurement], record: SectionRecord
                ) -> tuple[DriftMeasurement | None, DriftMeasurement | None]:
    before = [m for m in measurements if m.time_s <= record.t_start_s]
    after = [m for m in measurements if m.time_s >= record.t_end_s]
    return (before[-1] if before else None), (after[0] if after else None)


def resolve_measurements(result: SIRunResult, estimator: DriftEstimator | None = None) -> DriftPredictor:
    """Run the retrospective consistency check of the whole drift chain once
    (:func:`~processing.spectroscopy.drift_consistency.resolve_chain`): ``result.measurements`` get their ``retro``
    verdict and final drift, ``result.final_predictor`` is the drift model refitted on them (the a-posteriori
    trajectory used to place the pixels). Idempotent."""
    if result.final_predictor is not None and result.chain_solution is not None:
        return result.final_predictor
    s = result.settings
    template = estimator.predictor if estimator is not None else DriftPredictor(
        window=s.rate_window, max_rate_nm_per_s=s.max_drift_rate_nm_per_s,
        max_accel_nm_per_s2=s.max_drift_accel_nm_per_s2)
    ms = estimator.records if estimator is not None else result.measurements
    params: dict[str, typing.Any] = estimator.chain_parameters() if estimator is not None else {
        "accel_sigma_nm_per_s2": max(s.max_drift_accel_nm_per_s2, 1e-3) / 3.0,
        "measurement_sigma_nm": max(template.measurement_sigma_nm, 0.005),
        "walk_nm_per_sqrt_s": max(template.walk_nm_per_sqrt_s, 0.01),
        "max_rate_nm_per_s": s.max_drift_rate_nm_per_s if s.max_drift_rate_nm_per_s > 0 else float("inf")}
    solution = resolve_chain(ms, **params)
    result.measurements = annotate(ms, solution)
    result.chain_solution = solution
    floor = estimator.jump_floor_nm if estimator is not None else s.reacquire_jump_px * min(result.si_pixel_size_nm)
    jump_sigma = estimator.jump_sigma if estimator is not None else s.jump_sigma
    result.final_predictor = rebuild_predictor(result.measurements, template, jump_sigma=jump_sigma,
                                               jump_floor_nm=floor)
    return result.final_predictor


def register_unverified_since(measurements: typing.Sequence[DriftMeasurement]) -> dict[int, int]:
    """For each accepted measurement whose register is not verified by content, the index of the measurement from
    which it is not: an ``unverified`` measurement starts it, every later accepted one inherits it until one the
    content decides (a single candidate, not lost) re-anchors the register. {measurement index: start index}.

    On a periodic reference (:func:`~processing.spectroscopy.drift_guard.periodic_reference`, or a reference scan
    that matches itself at lattice translations, ``self_aliases``) nothing re-anchors: there a single candidate is
    no content decision, only the alias nearest the offset applied matching a little better than the others (the
    NCC of a clean lattice's aliases differs by their overlap and the noise, and the running template has taken up
    the unverified register); it confirms a register one period off as readily as the right one (sweep seeds 9207
    and 9301 with the rate check: one period off after two cancelling jumps / a 0.6-period jump, re-anchored by such
    measurements, 1.06 px and 0.46 px on trusted sections)."""
    out: dict[int, int] = {}
    since: int | None = None
    periodic = periodic_reference(measurements) or any(m.index == 0 and m.self_aliases > 0 for m in measurements)
    for m in measurements:
        if not m.accepted:
            continue
        if m.unverified and since is None:
            since = m.index
        elif m.n_candidates <= 1 and not m.lost and not m.unverified and not periodic:
            since = None
        if since is not None:
            out[m.index] = since
    return out


def assign_verdicts(result: SIRunResult, *, correct_drift: bool) -> None:
    """Set every section's ``trusted`` / ``flags`` (and its bracketing measurements) from the measurements.

    With drift correction the retrospective check of the chain runs first (:func:`resolve_measurements`). A
    section is flagged when: a measurement bracketing it is rejected, an outlier of the chain, or still ambiguous
    between lattice aliases after the joint check (an unresolved register makes every measurement up to the next
    one whose content decides ambiguous, so exactly the sections it affects are flagged), the measurement after it
    is a jump and it was not re-acquired (repeat limit reached or run ended), no measurement follows it (the run
    ended: its drift is extrapolated), it is incomplete (aborted inside it), or its register rests on the drift model
    alone ("alias not verified by content": :func:`register_unverified_since`).
    """
    if correct_drift and result.measurements:
        resolve_measurements(result)
    ms = result.measurements
    unverified_since = register_unverified_since(ms)
    for record in result.sections:
        flags: list[str] = []
        before, after = _bracketing(ms, record)
        record.measurement_before = None if before is None else before.index
        record.measurement_after = None if after is None else after.index
        if not record.complete:
            flags.append(f"incomplete (aborted): {record.pixels_acquired} pixels of its {record.rows} rows acquired")
        if correct_drift:
            if after is None:
                flags.append("no drift measurement after the section (run ended): drift extrapolated")
            for label, m in (("before", before), ("after", after)):
                if m is not None and not m.accepted:
                    flags.append(f"drift measurement {m.index} ({label}) rejected: {m.reason}")
                elif m is not None and m.retro == "outlier":
                    flags.append(f"drift measurement {m.index} ({label}) inconsistent with the rest of the chain "
                                 f"(not used)")
                elif m is not None and m.lost:
                    flags.append(f"drift measurement {m.index} ({label}): tracking lost on a periodic reference "
                                 f"(register unknown by whole lattice periods; least correction used)")
                elif m is not None and m.inconsistent:
                    flags.append(f"drift measurement {m.index} ({label}) not confirmed by the {m.inconsistent} "
                                 f"reference scan(s)")
                elif m is not None and m.flagged:
                    flags.append(f"drift measurement {m.index} ({label}) ambiguous between lattice aliases (may "
                                 f"be off by a lattice period)")
            for m in (before, after):
                if m is None:
                    continue
                since = unverified_since.get(m.index)
                if since is not None and not m.flagged and not m.lost:
                    flags.append(f"drift measurement {m.index}: alias not verified by content (from measurement "
                                 f"{since} on the register rests on the drift model alone; it may be a whole lattice "
                                 f"period off)")
                    break
            if after is not None and after.jump_nm is not None and not record.superseded:
                size = float(np.hypot(*after.jump_nm))
                flags.append(f"drift jumped {size:.3f} nm during the section and it was not re-acquired")
        record.flags = tuple(flags)
        record.trusted = not flags


def apply_shear_correction(result: SIRunResult, estimator: DriftEstimator) -> None:
    """Resample each pass from the true pixel positions (residual = a-posteriori drift trajectory - applied
    offset at each pixel's time, :func:`~processing.spectroscopy.si_assembly.resample_scattered`).

    The trajectory and the offsets are in sample axes; the residual is rotated into the SI's scan axes
    (``result.scan_rotation_rad``) and divided by the SI pixel size; ``correction_px`` records it per output pixel.
    """
    s = result.settings
    predictor = resolve_measurements(result, estimator)
    for p in result.passes:
        if p.aligned.acquired_pixels == 0 or p.geometry.shape[0] < 2 or (s.mode == "EEGS"
                                                                         and s.eegs_geometry == "point"):
            continue
        times = np.where(np.isfinite(p.pixel_times_s), p.pixel_times_s, 0.0)
        traj = predictor.trajectory_nm(times)
        live = estimator.trajectory_nm(times)
        moved_px = np.hypot(*np.moveaxis(sample_to_scan(traj - live, result.scan_rotation_rad)
                                         / np.array(result.si_pixel_size_nm)[None, None, :], -1, 0))
        for record in result.sections:
            if record.pass_index == p.index:
                sel = p.source_section == record.index
                record.replaced_px = float(moved_px[sel].max()) if sel.any() else 0.0
                if record.replaced_px > 0.1:
                    record.note = (record.note + "; " if record.note else "") + (
                        f"re-placed by the retrospective drift check (moved up to {record.replaced_px:.2f} px)")
        applied = np.where(np.isfinite(p.applied_offset_nm), p.applied_offset_nm, traj)
        residual_scan = sample_to_scan(traj - applied, result.scan_rotation_rad)
        residual_px = residual_scan / np.array(result.si_pixel_size_nm)[None, None, :]
        valid = p.aligned.valid_pixels
        if np.count_nonzero(valid) < 3:
            continue
        residual_px[~valid] = 0.0
        stacked = np.concatenate([p.aligned.data, p.haadf.data], axis=-1)
        corrected, correction = resample_scattered(stacked, residual_px, valid)
        p.aligned.data[valid] = corrected[valid, :-1].astype(p.aligned.data.dtype)
        p.haadf.data[valid] = corrected[valid, -1:].astype(p.haadf.data.dtype)
        p.correction_px = correction
    result.shear_corrected = True
