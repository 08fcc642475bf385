"""Issue 13 failures 3, 5 and 6 (and the re-acquisition limit of 4) on the simulated STEM, against its ground truth.

Old behaviour, reproduced in each docstring: 3. pixel times from the nominal exposure (the section's data arrive in
one delivery), no start-up delay, seconds-to-lines with the nominal line time; 5. drift measured in scan axes and
applied in sample axes (a rotated scan made the correction wrong); 4. a section re-acquired at most once, a second
jump left silently; 6. the partly scanned section dropped, an abort during the start-up scans left no SI and
``si_xdata()`` raised ``IndexError``.
"""
from __future__ import annotations

import math
import threading
import typing

import numpy as np
import pytest
from nion.utils import Geometry

from instrument_sim.configuration import SimulatorConfiguration
from instrument_sim.drift import DriftModel
from instrument_sim.si_truth import ScanTruthRecorder, SIGeometry, effective_residual_px, rms_px, si_residual_px
from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES, stem_parts
from nionswift_plugin.insitu import drift_si
from nionswift_plugin.insitu.headless import HeadlessSwift

FOV_NM = 16.0


class Session(typing.NamedTuple):
    swift: HeadlessSwift
    instrument: typing.Any
    parts: typing.Any
    scan: typing.Any


@pytest.fixture(scope="module")
def session() -> typing.Iterator[Session]:
    config = SimulatorConfiguration(seed=5, drift=DriftModel(rate_nm_per_s=(0.15, 0.1), seed=5),
                                    device_factories=STEM_DEVICE_FACTORIES)
    with HeadlessSwift(config, with_window=False) as swift:
        instrument = swift.simulator.instrument
        scan = swift.hardware_source("insitu_scan")
        fp = scan.get_current_frame_parameters()
        fp.fov_nm = FOV_NM
        fp.pixel_size = Geometry.IntSize(256, 256)
        scan.set_current_frame_parameters(fp)
        yield Session(swift, instrument, stem_parts(instrument), scan)


def _settings(**kw: typing.Any) -> drift_si.DriftSISettings:
    base: dict[str, typing.Any] = dict(si_size_px=(16, 16), section_lines=4, exposure_s=0.002, camera_binning=1,
                                       scan_field=(0.375, 0.375, 0.25, 0.25),
                                       reference_region=(0.05, 0.05, 0.15, 0.15), reference_size_px=32)
    base.update(kw)
    return drift_si.DriftSISettings(**base)


def _rotation(session: Session, rotation_rad: float) -> None:
    fp = session.scan.get_current_frame_parameters()
    fp.rotation_rad = rotation_rad
    session.scan.set_current_frame_parameters(fp)


def _run(session: Session, s: drift_si.DriftSISettings, rotation_rad: float = 0.0
         ) -> tuple[drift_si.DriftSIResult, np.ndarray, np.ndarray]:
    """Run; return the result, the effective per-pixel residual (SI px, scan axes) and the true pixel times."""
    _rotation(session, rotation_rad)
    beam_shift_nm = np.array(session.instrument.beam_shift_nm)  # before the run (a test may step the beam shift)
    try:
        t_start = session.instrument.time_s()
        with ScanTruthRecorder(session.parts.scan_module.device.simulator) as recorder:
            result = drift_si.DriftCorrectedSI(s).run()
    finally:
        _rotation(session, 0.0)
    top, left, h, w = s.scan_field
    fy, fx = (top + h / 2 - 0.5) * FOV_NM, (left + w / 2 - 0.5) * FOV_NM
    c, sn = math.cos(rotation_rad), math.sin(rotation_rad)
    geometry = SIGeometry(s.si_size_px, (h * FOV_NM, w * FOV_NM), (sn * fx + c * fy, c * fx - sn * fy),
                          rotation_rad=rotation_rad)
    windows = [(r.row0, r.rows, r.t_start_s, r.t_end_s) for r in result.sections]
    residual, times = si_residual_px(recorder.frames, geometry, section_lines=s.section_lines,
                                     section_windows=windows)
    t_ref = result.measurements[0].time_s if result.measurements else t_start
    start_nm = np.asarray(session.instrument.content_offset_nm(t_ref), dtype=np.float64) - beam_shift_nm
    start = geometry.to_scan_axes(start_nm)
    residual -= (start / np.asarray(geometry.pixel_size_nm))[None, None]
    assert result.main is not None
    return result, effective_residual_px(residual, result.main.correction_px), times


def test_failure_3_pixel_times_follow_the_real_scan_clock_and_start_up_delay(session: Session) -> None:
    """Old: one camera delivery per section -> pixel period = nominal exposure (2.000 ms), no start-up delay: pixel
    times up to 0.37 s off, the interval in seconds converted with the nominal line time. Now the times come from
    the scan's reported timing: they match the true visit times, the measured period (exposure + read-out, loaded
    machine) exceeds the nominal one, and seconds become lines with the measured line period."""
    s = _settings(section_interval_s=0.6)
    result, residual, true_times = _run(session, s)
    main = result.main
    assert main is not None and result.complete
    error_s = np.abs(main.pixel_times_s - true_times)
    # the old model on the same sections: the last pixel at the section's end, pixels spaced by the exposure
    old_times = np.full_like(main.pixel_times_s, np.nan)
    for r in result.sections:
        k = np.arange(r.rows * 16, dtype=np.float64)
        old_times[r.row0:r.row0 + r.rows] = (r.t_end_s - (r.rows * 16 - k - 0.5) * 0.002).reshape(r.rows, 16)
    old_error_s = np.abs(old_times - true_times)
    # (margins for a loaded machine: under load 12 the new times erred 0.20 s at the median, the old 0.63 s; on a
    # quiet one far less; the old model fails both by construction)
    assert np.nanmedian(error_s) < 0.5 * np.nanmedian(old_error_s), (np.nanmedian(error_s),
                                                                     np.nanmedian(old_error_s))
    assert np.nanpercentile(error_s, 90) < np.nanpercentile(old_error_s, 50)
    timing = result.timing
    assert timing["source"] == "scan device" and timing["pixel_period_s"] > 0.002 and timing["start_delay_s"] > 0
    # the old nominal conversion: 0.6 s / (16 px * 2 ms) = 19 lines (the whole SI in one section)
    assert math.ceil(0.6 / (16 * 0.002)) >= 16
    for record in result.sections[1:]:  # each section: the interval at the line period measured before it
        assert record.rows < 16
    assert rms_px(residual) < 0.25


@pytest.mark.parametrize("rotation_deg", [0.0, 12.0, 30.0])
def test_failure_5_rotated_scan_is_measured_and_corrected_in_one_frame(session: Session, rotation_deg: float) -> None:
    """Old: drift measured in scan axes, applied in sample axes: 9.6 px residual at a rotated scan (uncorrected
    14.7 px). Now the measured shift is rotated into the offset's (sample) frame and the residual back into the SI's
    scan axes: the same accuracy at every rotation."""
    result, residual, _times = _run(session, _settings(), math.radians(rotation_deg))
    assert result.complete and result.scan_rotation_rad == pytest.approx(math.radians(rotation_deg))
    assert all(m.rotation_rad == pytest.approx(math.radians(rotation_deg)) for m in result.measurements)
    assert rms_px(residual) < 0.25, rms_px(residual)


def test_failure_4_a_section_hit_again_is_re_acquired_again_then_flagged(session: Session) -> None:
    """Old: a section was re-acquired once; a jump landing in the re-acquisition was kept silently. Now it is
    re-acquired up to ``max_reacquisitions`` times; if the drift keeps jumping it is flagged, never trusted."""
    scan = session.scan
    original = scan.record_immediate
    original_grab = scan.grab_synchronized
    calls = {"sections": 0, "after_section": False}
    start = session.instrument.GetVal2D("CSH")

    def counting_grab(*args: typing.Any, **kw: typing.Any) -> typing.Any:
        calls["sections"] += 1
        calls["after_section"] = True
        return original_grab(*args, **kw)

    def jumping_record(*args: typing.Any, **kw: typing.Any) -> typing.Any:
        # the first reference scan after a section (not the timing probe's line, nor a rate check that follows it)
        if calls["after_section"]:
            calls["after_section"] = False
            n = calls["sections"] - 1  # the first grab is the timing probe
            if n in (3, 4, 5):  # a 0.1 nm jump after section 3 and after each of its two re-acquisitions
                k = n - 2
                session.instrument.SetVal2D("CSH", Geometry.FloatPoint(y=start.y - k * 0.10e-9, x=start.x))
        return original(*args, **kw)

    scan.record_immediate = jumping_record
    scan.grab_synchronized = counting_grab
    try:
        result, residual, _t = _run(session, _settings(max_reacquisitions=2))
    finally:
        del scan.record_immediate
        del scan.grab_synchronized
        session.instrument.SetVal2D("CSH", start)
    log = [(m.index, round(m.quality, 4), m.jump_nm is not None, m.ambiguous, m.predicted_sigma_nm, m.reason[:40])
           for m in result.measurements]
    third = [r for r in result.sections if r.row0 == result.sections[2].row0]
    assert [r.repeat for r in third] == [0, 1, 2] and [r.superseded for r in third] == [True, True, False], log
    assert not third[-1].trusted and any("jumped" in f for f in third[-1].flags), (
        [(r.index, r.row0, r.rows, r.repeat, r.superseded, r.measurement_before, r.measurement_after, r.flags)
         for r in result.sections], log)
    flagged_rows = set(result.si_xdata().metadata["drift_si"]["flagged_rows"])
    sections = [(r.index, r.row0, r.rows, r.repeat, r.superseded, r.flags) for r in result.sections]
    hit = set(range(third[-1].row0, third[-1].row0 + third[-1].rows))
    assert hit <= flagged_rows, (sections, log)
    # On this clean lattice nothing in the content may tell a 0.1 nm jump from its alias 0.295 nm the other way (it
    # depends on the noise of the reference scans: a slower, loaded machine drifts more during each scan): the
    # register after the jump then rests on the drift path alone and the later sections may carry exactly that flag
    # (as in test_drift_si's jump test), never a jump flag; the rows before the jump are never flagged.
    for r in result.sections:
        if not r.superseded and not r.trusted and r.row0 != third[-1].row0:
            assert r.row0 > third[-1].row0 and all("alias not verified by content" in f for f in r.flags), (
                sections, log)
    assert flagged_rows == hit | {row for r in result.sections if not r.superseded and not r.trusted
                                  for row in range(r.row0, r.row0 + r.rows)}, (sections, log)
    trusted = result.trusted_pixels()
    per_row = np.sqrt(np.nanmean(np.sum(np.where(trusted[..., None], residual, np.nan) ** 2, -1), axis=1))
    assert rms_px(residual[trusted]) < 0.25, (np.round(per_row, 2).tolist(), [(r.row0, r.rows, r.trusted) for r in
                                                                            result.sections], log)


def test_failure_6_abort_in_a_section_keeps_its_pixels_and_marks_the_end(session: Session) -> None:
    """Old: the partly scanned section was dropped (0 of the visited pixels kept). Now an abort during a section
    finishes it (all its pixels kept) and stops; the last section is flagged (no measurement after it)."""
    s = _settings(si_size_px=(16, 16), section_lines=4)
    run = drift_si.DriftCorrectedSI(s)
    original = session.scan.grab_synchronized
    grabs = {"n": 0}

    def grab(*args: typing.Any, **kw: typing.Any) -> typing.Any:
        grabs["n"] += 1
        if grabs["n"] == 3:  # the timing probe, section 1, then abort while section 2 is being scanned
            threading.Timer(0.05, run.abort).start()
        return original(*args, **kw)

    session.scan.grab_synchronized = grab
    try:
        result = run.run()
    finally:
        del session.scan.grab_synchronized
    assert result.state == "aborted" and "pixels acquired are kept" in result.message
    assert len(result.sections) == 2 and all(r.complete for r in result.sections)
    main = result.main
    assert main is not None and main.aligned.acquired_pixels == sum(r.rows for r in result.sections) * 16
    assert not result.sections[-1].trusted and "no drift measurement after" in result.sections[-1].flags[0]
    xdata = result.si_xdata()
    assert xdata.data_shape[0] == sum(r.rows for r in result.sections)
    assert xdata.metadata["drift_si"]["complete"] is False


def test_failure_6_abort_during_the_start_up_scans_gives_a_valid_empty_result(session: Session) -> None:
    """Old: no pass existed yet, ``result.si_xdata()`` raised IndexError. Now: a valid empty SI with a message."""
    run = drift_si.DriftCorrectedSI(_settings())
    listener = run.drift_event.listen(lambda m: run.abort())  # abort at the first reference scan
    result = run.run()
    del listener
    assert result.state == "aborted" and "before the first section" in result.message
    xdata = result.si_xdata()
    assert xdata.data_shape[0] == 0 and xdata.metadata["drift_si"]["acquired_pixels"] == 0
    assert drift_si.create_data_items(session.swift.document_model, result)[-1].title.startswith("Drift Log")


def test_failure_6_abort_during_a_re_acquisition_keeps_the_marks_consistent(session: Session) -> None:
    """Old: an abort during a re-acquisition kept the earlier rows marked superseded while their data stayed in
    the SI. Now a section is superseded only by a complete re-acquisition; an immediate abort inside it leaves the
    earlier data, not superseded, flagged with the jump, and the pixels say which section they come from."""
    scan = session.scan
    original_record = scan.record_immediate
    original_grab = scan.grab_synchronized
    calls = {"n": 0, "grab": 0}
    start = session.instrument.GetVal2D("CSH")
    run = drift_si.DriftCorrectedSI(_settings())

    def jumping_record(*args: typing.Any, **kw: typing.Any) -> typing.Any:
        calls["n"] += 1
        if calls["n"] == 6:
            session.instrument.SetVal2D("CSH", Geometry.FloatPoint(y=start.y - 0.10e-9, x=start.x))
        return original_record(*args, **kw)

    def grab(*args: typing.Any, **kw: typing.Any) -> typing.Any:
        calls["grab"] += 1
        # the re-acquisition after the jump (after the rate check's reference scan, if any): stop at once
        if calls["n"] >= 6:
            run.abort(immediately=True)
        return original_grab(*args, **kw)

    scan.record_immediate = jumping_record
    scan.grab_synchronized = grab
    try:
        result = run.run()
    finally:
        del scan.record_immediate
        del scan.grab_synchronized
        session.instrument.SetVal2D("CSH", start)
    assert result.state == "aborted"
    hit = result.sections[2]
    assert not hit.superseded and not hit.trusted and any("jumped" in f for f in hit.flags)
    main = result.main
    assert main is not None
    rows = slice(hit.row0, hit.row0 + hit.rows)
    assert np.all(main.source_section[rows][main.aligned.valid_pixels[rows]] >= hit.index)
    assert not result.trusted_pixels()[rows].any()
