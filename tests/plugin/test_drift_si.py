"""Drift-corrected SI engine on the simulated STEM (headless Swift), against the simulator's ground truth.

One simulator session per test (real clock: the drift runs while the SI is acquired); small SIs keep it fast. Not
one per module: the specimen drift (0.23 nm/s) and the energy drift (60 meV/s) accumulated over the module, so a
test's start state depended on the order and on how long the tests before it took (under load the ZLP of the EEGS
test had drifted out of the engine's search window: "spectra have no counts in the normalisation range").
"""
from __future__ import annotations

import json
import threading
import typing

import numpy as np
import pytest
from nion.utils import Geometry

from instrument_sim.configuration import SimulatorConfiguration
from instrument_sim.drift import DriftModel, EnergyDriftModel
from instrument_sim.si_truth import ScanTruthRecorder, SIGeometry, effective_residual_px, rms_px, si_residual_px
from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES, stem_parts
from nionswift_plugin.insitu import drift_si
from nionswift_plugin.insitu.headless import HeadlessSwift
from processing.spectroscopy.spectrum_alignment import zlp_position_eV

FOV_NM = 16.0


class Session(typing.NamedTuple):
    swift: HeadlessSwift
    instrument: typing.Any
    parts: typing.Any
    scan: typing.Any


@pytest.fixture
def session() -> typing.Iterator[Session]:
    config = SimulatorConfiguration(
        seed=2, drift=DriftModel(rate_nm_per_s=(0.2, -0.12), seed=2),
        energy_drift=EnergyDriftModel(rate_meV_per_s=60.0, seed=2), device_factories=STEM_DEVICE_FACTORIES)
    with HeadlessSwift(config, with_window=False) as swift:
        instrument = swift.simulator.instrument
        for name, value in (("EELS_Dispersion", 0.05), ("ZLPoffset", -8.0), ("EELS_ZLPWidth", 0.3)):
            instrument.SetVal(name, value)
        scan = swift.hardware_source("insitu_scan")
        fp = scan.get_current_frame_parameters()
        fp.fov_nm = FOV_NM
        fp.pixel_size = Geometry.IntSize(256, 256)
        scan.set_current_frame_parameters(fp)
        yield Session(swift, instrument, stem_parts(instrument), scan)


def _settings(**kw: typing.Any) -> drift_si.DriftSISettings:
    base = dict(si_size_px=(16, 16), section_lines=4, exposure_s=0.002, camera_binning=1,
                scan_field=(0.375, 0.375, 0.25, 0.25), reference_region=(0.05, 0.05, 0.15, 0.15),
                reference_size_px=32)
    base.update(kw)
    return drift_si.DriftSISettings(**base)


def _geometry(s: drift_si.DriftSISettings) -> SIGeometry:
    top, left, h, w = s.scan_field
    return SIGeometry(s.si_size_px, (h * FOV_NM, w * FOV_NM), ((top + h / 2 - 0.5) * FOV_NM,
                                                               (left + w / 2 - 0.5) * FOV_NM))


def _run_with_truth(session: Session, s: drift_si.DriftSISettings) -> tuple[drift_si.DriftSIResult, np.ndarray]:
    """Run and return the per-pixel residual (px) relative to the specimen at the run's reference time (its first
    reference scan; the start of the run when uncorrected)."""
    t_start = session.instrument.time_s()
    beam_shift_nm = np.array(session.instrument.beam_shift_nm)  # before the run (a test may step the beam shift)
    with ScanTruthRecorder(session.parts.scan_module.device.simulator) as recorder:
        result = drift_si.DriftCorrectedSI(s).run()
    t_ref = result.measurements[0].time_s if result.measurements else t_start
    ref_offset = session.instrument.true_sample_offset_nm(t_ref) - beam_shift_nm
    geometry = _geometry(s)
    residual, _times = si_residual_px(recorder.frames, geometry, section_lines=s.section_lines,
                                      section_windows=[(r.row0, r.rows, r.t_start_s, r.t_end_s)
                                                       for r in result.sections])
    residual -= (ref_offset / np.asarray(geometry.pixel_size_nm))[None, None]
    assert result.main is not None
    return result, effective_residual_px(residual, result.main.correction_px)


def test_settings_round_trip_and_validation(tmp_path: typing.Any) -> None:
    s = _settings(mode="EEGS", wavelength_range_nm=(500.0, 520.0, 10.0))
    path = s.save(tmp_path / "s.json")
    loaded = drift_si.DriftSISettings.load(path)
    assert loaded == s
    assert loaded.wavelength_list() == [500.0, 510.0, 520.0]
    assert drift_si.DriftSISettings.load(tmp_path / "missing.json") == drift_si.DriftSISettings()
    with pytest.raises(drift_si.DriftSIError, match="scan_field"):
        drift_si.DriftSISettings(scan_field=(0.8, 0.0, 0.5, 0.5)).validate()
    with pytest.raises(drift_si.DriftSIError, match="mode"):
        drift_si.DriftSISettings(mode="EDS").validate()


def test_drift_corrected_si_against_ground_truth(session: Session) -> None:
    """Same drift (0.23 nm/s, 0.25 nm pixels): uncorrected SI residual grows to several pixels; corrected stays
    below 0.25 px RMS;
    the measured drift follows the true drift; ZLP aligned; calibrations and audit metadata present."""
    uncorrected, r_unc = _run_with_truth(session, _settings(correct_drift=False, correct_shear=False))
    corrected, r_cor = _run_with_truth(session, _settings())
    assert uncorrected.complete and corrected.complete
    assert rms_px(r_unc) > 1.0
    assert rms_px(r_cor) < 0.25
    # every accepted measurement agrees with the true drift since the first reference scan
    ms = corrected.measurements
    n_sections = len(corrected.sections)
    assert len(ms) == 3 + n_sections and all(m.accepted for m in ms)  # start + 2 bootstrap + 1 after each section
    assert all(r.trusted for r in corrected.sections)
    true = session.instrument.true_sample_offset_nm(np.array([m.time_s for m in ms]))
    true -= true[0]
    assert np.abs(np.array([m.drift_nm for m in ms]) - true).max() < 0.03  # nm (0.4 reference pixels)
    # energy drift (60 meV/s): raw ZLP moves, aligned ZLP stays at 0 within 0.05 eV, shifts recorded
    main = corrected.main
    assert main is not None and corrected.energy_axis is not None
    assert np.ptp(main.zlp_eV) > 0.05
    aligned_zlp = zlp_position_eV(np.asarray(main.aligned.data, float), corrected.energy_axis, search_eV=(-2, 2))
    assert np.abs(aligned_zlp).max() < 0.05
    assert np.allclose(main.energy_shift_eV, -main.zlp_eV)
    xdata = corrected.si_xdata()
    assert xdata.data_shape == (16, 16, 1024)
    assert [c.units for c in xdata.dimensional_calibrations] == ["nm", "nm", "eV"]
    assert xdata.dimensional_calibrations[0].scale == pytest.approx(0.25)
    meta = xdata.metadata["drift_si"]
    assert meta["complete"] and meta["n_measurements"] == len(ms) and len(meta["sections"]) == n_sections
    json.dumps(meta)  # auditable: JSON-serialisable
    assert corrected.drift_log_xdata().data_shape == (4, len(ms))


def test_low_quality_reference_is_rejected_and_not_applied(session: Session) -> None:
    """Blank the beam for one reference scan: the measurement is rejected, logged, and the offset keeps following
    the earlier measurements."""
    scan = session.scan
    original = scan.record_immediate
    calls = {"n": 0}

    def blanked_record(frame_parameters: typing.Any, *args: typing.Any, **kw: typing.Any) -> typing.Any:
        calls["n"] += 1
        if calls["n"] == 3:
            session.instrument.SetVal("C_Blank", 1.0)
            try:
                return original(frame_parameters, *args, **kw)
            finally:
                session.instrument.SetVal("C_Blank", 0.0)
        return original(frame_parameters, *args, **kw)

    scan.record_immediate = blanked_record
    try:
        result, residual = _run_with_truth(session, _settings(si_size_px=(20, 16)))
    finally:
        del scan.record_immediate
    rejected = [m for m in result.measurements if not m.accepted]
    assert len(rejected) == 1 and "quality" in rejected[0].reason
    assert rejected[0].index == 2  # the second bootstrap scan
    meta = result.si_xdata().metadata["drift_si"]
    assert meta["n_rejected"] == 1 and meta["drift_measurements"][2]["accepted"] is False
    # the section that follows the rejected measurement is flagged (its offset rests on one fewer measurement);
    # the trusted ones meet the figure
    first = result.sections[0]
    assert not first.trusted and any("rejected" in f for f in first.flags)
    trusted = result.trusted_pixels()
    assert trusted.any() and rms_px(residual[trusted]) < 0.3


def test_abort_keeps_exactly_the_acquired_rows_and_refuses_second_run(session: Session) -> None:
    s = _settings(si_size_px=(16, 16), section_lines=2)
    run = drift_si.DriftCorrectedSI(s)
    sections = []
    half = threading.Event()

    def on_section(result: typing.Any, p: typing.Any, record: typing.Any) -> None:
        sections.append(record)
        if len(sections) == 4:
            half.set()

    listener = run.section_event.listen(on_section)
    run.start()
    with pytest.raises(drift_si.AcquisitionBusyError, match="already running"):
        drift_si.DriftCorrectedSI(s).start()
    assert half.wait(60)
    run.abort()
    result = run.wait(60)
    del listener
    assert result.state == "aborted" and not result.complete
    main = result.main
    assert main is not None
    rows = main.aligned.acquired_rows
    assert rows == sum(r.rows for r in result.sections) and len(result.sections) >= 4 and rows < 16
    assert all(r.complete for r in result.sections)  # the section being scanned at the abort was finished
    xdata = result.si_xdata()
    partial = int(main.aligned.valid_pixels.any(axis=1).sum())
    assert xdata.data_shape[0] == partial  # exactly the rows holding acquired pixels
    assert np.all(xdata.data[:rows].sum(axis=-1) > 0)  # real spectra in every kept row
    assert xdata.metadata["drift_si"]["complete"] is False
    assert drift_si.DriftCorrectedSI.active_run() is None
    items = drift_si.create_data_items(session.swift.document_model, result)
    assert "INCOMPLETE" in items[0].title and items[0].xdata.data_shape[0] == partial
    # a new run can start after the abort
    assert drift_si.DriftCorrectedSI(_settings(si_size_px=(4, 8))).run().complete


def test_scan_error_mid_run_ends_cleanly_with_data(session: Session) -> None:
    scan = session.scan
    original = scan.record_immediate
    calls = {"n": 0}

    def failing_record(*args: typing.Any, **kw: typing.Any) -> typing.Any:
        calls["n"] += 1
        if calls["n"] == 5:  # start + 2 bootstrap scans, then one after each of the first two sections
            raise RuntimeError("scan controller not responding")
        return original(*args, **kw)

    scan.record_immediate = failing_record
    try:
        result = drift_si.DriftCorrectedSI(_settings()).run()
    finally:
        del scan.record_immediate
    assert result.state == "error" and "scan controller not responding" in result.message
    before = sum(r.rows for r in result.sections)  # the sections before the failure
    assert len(result.sections) == 2 and result.main is not None and result.main.aligned.acquired_rows == before
    assert result.si_xdata().data_shape[0] == before
    assert drift_si.DriftCorrectedSI.active_run() is None


def test_eegs_point_scan_records_power_and_finds_gain(session: Session) -> None:
    """Nanoparticle + laser: gain at the first sideband follows the resonance; laser-off reference at the end."""
    parts = session.parts
    parts.specimen.load("nanoparticles", centers_nm=[(0.0, 0.0)], radii_nm=[3.0], resonance_center_eV=2.4,
                        resonance_q=12.0)
    parts.laser.apply_settings({"power_mW": 2.0, "beta_squared_per_mW": 0.05})
    try:
        s = _settings(mode="EEGS", eegs_geometry="point", eegs_point=(0.5, 0.75), frames_per_wavelength=3,
                      laser_off_frames=3, wavelengths_nm=(460.0, 516.0, 580.0), exposure_s=0.004,
                      correct_shear=False)
        result = drift_si.DriftCorrectedSI(s).run()
        maps = drift_si.DriftCorrectedSI(_settings(
            mode="EEGS", eegs_geometry="map", si_size_px=(4, 4), section_lines=2, frames_per_wavelength=1,
            laser_off_frames=1, wavelengths_nm=(460.0, 516.0), exposure_s=0.004, correct_shear=False)).run()
    finally:
        parts.specimen.load("perovskite")
        parts.laser.apply_settings({"shutter_open": False, "power_mW": 0.0})
    assert result.complete
    assert [p.label for p in result.passes] == ["460 nm", "516 nm", "580 nm", "laser off"]
    assert [p.laser_power_mW for p in result.passes[:3]] == [2.0, 2.0, 2.0]
    assert parts.laser.get("shutter_open") is False
    lams, gain = result.eegs_gain(zlp_fwhm_eV=0.3)
    assert lams.tolist() == [460.0, 516.0, 580.0]
    assert gain[1] > 3 * max(gain[0], gain[2], 1e-9)
    # map geometry: one gain map per wavelength, normalised per pixel; on resonance everywhere stronger
    assert maps.complete and [p.label for p in maps.passes] == ["460 nm", "516 nm", "laser off"]
    lams_map, gain_maps = maps.eegs_gain(zlp_fwhm_eV=0.3)
    assert gain_maps.shape == (2, 4, 4)
    assert np.all(gain_maps[1] > 2 * np.maximum(gain_maps[0], 1e-9))


def test_jump_detected_after_a_section_triggers_one_reacquisition(session: Session) -> None:
    """A sudden 0.10 nm jump (beam-shift step, seen by the scan like a specimen jump; well below half the 0.395 nm
    lattice period of the reference, so its aliases are clearly farther) right after the third section: the measurement after it misses the prediction, the section is scanned again at the new offset, the
    earlier record is kept in the log as superseded, and the assembled SI has no jump."""
    scan = session.scan
    original = scan.record_immediate
    calls = {"n": 0}
    start = session.instrument.GetVal2D("CSH")

    def jumping_record(*args: typing.Any, **kw: typing.Any) -> typing.Any:
        calls["n"] += 1
        if calls["n"] == 6:  # start + 2 bootstrap scans, then the scans after sections 1, 2 and 3
            session.instrument.SetVal2D("CSH", Geometry.FloatPoint(y=start.y - 0.10e-9, x=start.x))
        return original(*args, **kw)

    scan.record_immediate = jumping_record
    try:
        result, residual = _run_with_truth(session, _settings())
    finally:
        del scan.record_immediate
        session.instrument.SetVal2D("CSH", start)
    first, again = result.sections[2], result.sections[3]
    log = [(m.index, round(m.quality, 4), m.jump_nm is not None, m.ambiguous, m.predicted_sigma_nm, m.reason[:60])
           for m in result.measurements]
    assert [r.superseded for r in result.sections].count(True) == 1, log
    assert first.superseded and (again.row0, again.rows, again.repeat) == (first.row0, first.rows, 1)
    assert "re-acquired" in first.note and not again.superseded
    assert result.measurements[5].jump_nm is not None
    assert sum(r.rows for r in result.sections if not r.superseded) == 16
    # On this clean lattice nothing in the content tells the 0.10 nm jump from its alias 0.295 nm the other way: the
    # register after it rests on the drift path alone, so the sections from the jump on may carry exactly that flag
    # (issue 13, session 5: "alias not verified by content"), and no other; the SI itself is right (below).
    for r in result.sections:
        if not r.superseded and not r.trusted:
            assert r.row0 >= first.row0 and all("alias not verified by content" in f for f in r.flags), (
                r.row0, r.flags, [m.reason for m in result.measurements])
    per_row = np.sqrt(np.nanmean(np.sum(residual ** 2, -1), axis=1))
    assert rms_px(residual) < 0.25, (np.round(per_row, 2).tolist(), [(r.row0, r.rows) for r in result.sections], log)
