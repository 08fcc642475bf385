"""Spectrum imaging with Swift's own synchronized acquisition, and Swift's DriftTracker on the simulated scan."""
from __future__ import annotations

import typing

import numpy as np
import pytest

from nion.instrumentation import DriftTracker
from nion.utils import Geometry

from instrument_sim.drift import DriftModel
from instrument_sim.eels_physics import EnergyAxis
from instrument_sim.samples import NanoparticleSample, expected_spectra
from stem_session import StemSession, stem_session

# (pre-edge fit window, signal window) in eV, and the white-line peaks (eV) expected in the signal window
EDGES = {
    "Sc": ((376.0, 399.0), (399.0, 430.0), (402.5, 407.5)),
    "O": ((505.0, 529.0), (529.0, 570.0), (534.0,)),
    "Dy": ((1230.0, 1292.0), (1292.0, 1370.0), (1297.0, 1334.0)),
}


@pytest.fixture(scope="module")
def session() -> typing.Iterator[StemSession]:
    with stem_session(seed=7) as s:
        yield s


@pytest.fixture(autouse=True)
def _reset(session: StemSession) -> None:
    session.reset()


def _edge_signal(e: np.ndarray, s: np.ndarray, pre: tuple[float, float], win: tuple[float, float]
                 ) -> tuple[float, np.ndarray]:
    """Background-subtracted edge: A E^-r fitted on the pre-edge window, extrapolated; (integral, residual)."""
    p = (e >= pre[0]) & (e < pre[1])
    slope, intercept = np.polyfit(np.log(e[p]), np.log(s[p]), 1)
    w = (e >= win[0]) & (e < win[1])
    residual = s[w] - np.exp(intercept) * e[w] ** slope
    return float(residual.sum()), residual


@pytest.fixture(scope="module")
def spectrum_image(session: StemSession) -> dict[str, typing.Any]:
    session.reset()
    inst = session.instrument
    inst.SetVal("ZLPoffset", 370.0)
    inst.SetVal("EELS_Dispersion", 1.0)
    inst.SetVal("BeamCurrent", 1e-9)
    simulator = session.parts.eels_simulator
    simulator.truth_log(clear=True)
    sfp = session.scan.get_current_frame_parameters()
    sfp.size = Geometry.IntSize(32, 32)
    sfp.fov_nm = 2.0
    sfp.center_nm = Geometry.FloatPoint()
    cfp = session.eels.get_current_frame_parameters()
    cfp.exposure_ms = 1.0
    cfp.binning = 1
    cfp.processing = "sum_project"
    scans, sis = session.scan.grab_synchronized(scan_frame_parameters=sfp, camera=session.eels,
                                                camera_frame_parameters=cfp)
    log = simulator.truth_log()
    si_truth = simulator.si_truth((32, 32))  # per SI pixel: probe on the sample, time, true ZLP offset, dose
    truth_si = session.parts.truth_spectrum_image(sfp, exposure_s=1e-3)  # drift-free truth of the field
    return {"scans": scans, "si": sis[0], "log": log, "sample": session.parts.specimen.sample, "truth_si": truth_si,
            "si_truth": si_truth,
            "axis": simulator.energy_axis(1024), "model": simulator.spectrum_model(simulator.energy_axis(1024))}


def _truth_maps(run: dict[str, typing.Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Per SI pixel: sample position (y, x) and electrons from the camera's truth log (flyback frames dropped),
    and the atoms of each element under the probe."""
    maps = run["si_truth"]
    sy, sx, electrons = maps["sample_y_nm"], maps["sample_x_nm"], maps["electrons"]
    return sy, sx, electrons, run["sample"].composition(sy, sx)


def test_si_shape_calibration_and_probe_positions(spectrum_image: dict[str, typing.Any]) -> None:
    si = spectrum_image["si"]
    assert si.data.shape == (32, 32, 1024)
    assert si.data_descriptor.collection_dimension_count == 2 and si.data_descriptor.datum_dimension_count == 1
    cal = si.dimensional_calibrations
    assert [c.units for c in cal] == ["nm", "nm", "eV"]
    assert (cal[2].offset, cal[2].scale) == (370.0, 1.0)
    log = spectrum_image["log"]
    assert len(log["t_s"]) == 32 * 34
    # SI pixel (i, j) was exposed with the probe on scan pixel (i, j): the Swift calibration position
    sy = log["scan_y_nm"].reshape(32, 34)[:, 2:]
    sx = log["scan_x_nm"].reshape(32, 34)[:, 2:]
    np.testing.assert_allclose(sy, (cal[0].offset + cal[0].scale * np.arange(32))[:, None] * np.ones((1, 32)))
    np.testing.assert_allclose(sx, (cal[1].offset + cal[1].scale * np.arange(32))[None, :] * np.ones((32, 1)))
    # and the HAADF of the same acquisition is the HAADF of those positions
    haadf = spectrum_image["scans"][0].data.astype(np.float64)
    assert haadf.shape == (32, 32)
    _, _, _, comp = _truth_maps(spectrum_image)
    assert np.corrcoef(haadf.ravel(), comp["Dy"].ravel())[0, 1] > 0.9


def test_si_matches_the_truth_spectra_within_poisson_noise(spectrum_image: dict[str, typing.Any]) -> None:
    sy, sx, electrons, _ = _truth_maps(spectrum_image)
    expected = expected_spectra(spectrum_image["sample"], spectrum_image["model"], sy, sx, electrons=electrons)
    measured = spectrum_image["si"].data.astype(np.float64)
    # no drift here: the ground-truth API's drift-free SI of the field is the same
    np.testing.assert_allclose(spectrum_image["truth_si"], expected, rtol=1e-9)
    z = (measured - expected) / np.sqrt(np.maximum(expected, 1.0))
    assert abs(float(z.mean())) < 0.01 and float(z.var()) == pytest.approx(1.0, rel=0.03)


def test_edges_at_tabulated_energies_with_the_right_strengths_where_the_columns_are(
        spectrum_image: dict[str, typing.Any]) -> None:
    axis: EnergyAxis = spectrum_image["axis"]
    e = axis.energies_eV
    si = spectrum_image["si"].data.astype(np.float64)
    sy, sx, electrons, comp = _truth_maps(spectrum_image)
    model = spectrum_image["model"]
    clean = expected_spectra(spectrum_image["sample"], model, sy, sx, electrons=electrons)  # noise-free truth
    basis = model.basis(material="DyScO3", elements=("Dy", "Sc", "O"))
    classes = {
        "Dy": comp["Dy"] > 0.5 * comp["Dy"].max(),
        "ScO": comp["Sc"] > 0.5 * comp["Sc"].max(),
        "O": (comp["O"] > 0.5 * comp["O"].max()) & (comp["Sc"] < 0.1 * comp["Sc"].max())
        & (comp["Dy"] < 0.1 * comp["Dy"].max()),
    }
    for mask in classes.values():
        assert mask.sum() >= 8
    measured: dict[tuple[str, str], float] = {}
    table: dict[tuple[str, str], float] = {}
    for cls, mask in classes.items():
        for element, (pre, win, peaks) in EDGES.items():
            signal, residual = _edge_signal(e, si[mask].sum(axis=0), pre, win)
            measured[(cls, element)] = signal
            w = (e >= win[0]) & (e < win[1])
            # what the edge table predicts for the atoms under the probe at these pixels
            table[(cls, element)] = float((comp[element][mask] * electrons[mask]).sum() * basis.edges[element][w].sum())
            if (cls, element) in (("Dy", "Dy"), ("ScO", "Sc"), ("ScO", "O"), ("O", "O")):
                # the same quantification on the noise-free truth agrees within the counting noise
                reference, _ = _edge_signal(e, clean[mask].sum(axis=0), pre, win)
                assert signal == pytest.approx(reference, rel=0.03), (cls, element)
                # and (background-subtraction bias apart, ~10 %) with the table
                assert signal == pytest.approx(table[(cls, element)], rel=0.15), (cls, element)
                # white lines at the tabulated onsets (+ white-line shift), within a channel
                ew = e[w]
                for peak in peaks:
                    near = np.abs(ew - peak) <= 3.0
                    assert ew[near][np.argmax(residual[near])] == pytest.approx(peak, abs=1.0), (cls, element, peak)
    # relative strengths: Sc L23 / O K on the ScO columns, O K on O columns / on ScO columns, as the table says
    for a, b in ((("ScO", "Sc"), ("ScO", "O")), (("O", "O"), ("ScO", "O")), (("Dy", "Dy"), ("ScO", "Sc"))):
        assert measured[a] / measured[b] == pytest.approx(table[a] / table[b], rel=0.1), (a, b)
    # where a column type is absent its edge is (nearly) absent
    assert abs(measured[("O", "Dy")]) < 0.05 * measured[("Dy", "Dy")]
    assert abs(measured[("ScO", "Dy")]) < 0.05 * measured[("Dy", "Dy")]
    assert abs(measured[("Dy", "Sc")]) < 0.05 * measured[("ScO", "Sc")]
    assert abs(measured[("O", "Sc")]) < 0.05 * measured[("ScO", "Sc")]
    assert abs(measured[("Dy", "O")]) < 0.1 * measured[("O", "O")]


def test_drift_tracker_measures_an_injected_drift(session: StemSession) -> None:
    sample = NanoparticleSample(centers_nm=[(3.0, -4.0), (-60.0, 50.0), (40.0, 70.0)], radii_nm=[8.0, 15.0, 12.0],
                                seed=2)
    session.parts.specimen.sample = sample
    scan = session.scan
    fp = scan.get_current_frame_parameters()
    fp.size = Geometry.IntSize(128, 128)
    fp.fov_nm = 200.0
    fp.pixel_time_us = 2.0
    fp.center_nm = Geometry.FloatPoint()
    scan.set_current_frame_parameters(fp)
    scan.record_immediate(fp)
    scan.drift_enabled = True
    scan.drift_region = Geometry.FloatRect.from_center_and_size(Geometry.FloatPoint(0.5, 0.5),
                                                               Geometry.FloatSize(0.15, 0.15))
    session.swift.pump()
    tracker = scan.drift_tracker
    behavior = DriftTracker.DriftCorrectionBehavior(tracker, scan, scan.get_current_frame_parameters(), 0,
                                                    scan.drift_channel_id, scan.drift_region, scan.drift_rotation)
    pending: list[typing.Any] = []
    try:
        behavior.prepare_section(pending, utc_time=tracker._last_entry_utc_time)  # reference
        rate = (0.0, 0.1)  # nm/s along x
        session.instrument.sample_drift = DriftModel(rate_nm_per_s=rate)
        session.clock.set(10.0)  # 1 nm of drift, frozen during the drift scan
        behavior.prepare_section(pending, utc_time=tracker._last_entry_utc_time)
        drift_delta = tracker.last_delta_nm
        truth = session.instrument.true_sample_offset_nm(10.0)
        assert np.hypot(*truth) == pytest.approx(1.0)
        # the tolerance of nionswift-instrumentation's own test_drift_corrector: 0.9 < |d| < 1.1, other axis < 0.1
        assert 0.9 < abs(drift_delta.width) < 1.1, drift_delta
        assert abs(drift_delta.height) < 0.1, drift_delta
        # sign: content moved +1 nm, the tracker reports -1 nm, so Swift's correction (center_nm = original -
        # predicted drift) moves the scan by +1 nm, after the content
        assert drift_delta.width == pytest.approx(-truth[1], abs=0.1)
        # the tracker's sign convention: a beam shift of +1 nm is measured like a sample drift of -1 nm
        session.instrument.SetVal2D("CSH", Geometry.FloatPoint(y=0.0, x=2e-9))  # content now at +1 - 2 = -1 nm
        behavior.prepare_section(pending, utc_time=tracker._last_entry_utc_time)
        csh_delta = tracker.last_delta_nm
        assert csh_delta.width == pytest.approx(-2.0 * drift_delta.width, abs=0.2)
    finally:
        scan.drift_enabled = False


def test_drift_during_a_synchronized_si_follows_each_pixel_time(session: StemSession) -> None:
    from instrument_sim.instrument import MonotonicClock
    inst = session.instrument
    inst.clock = MonotonicClock()  # real time: the drift evolves during the acquisition
    try:
        rate = (0.5, -0.3)
        inst.sample_drift = DriftModel(rate_nm_per_s=rate)
        simulator = session.parts.eels_simulator
        simulator.truth_log(clear=True)
        sfp = session.scan.get_current_frame_parameters()
        sfp.size = Geometry.IntSize(12, 12)
        sfp.fov_nm = 2.0
        cfp = session.eels.get_current_frame_parameters()
        cfp.exposure_ms = 2.0
        cfp.binning = 1
        cfp.processing = "sum_project"
        scans, _ = session.scan.grab_synchronized(scan_frame_parameters=sfp, camera=session.eels,
                                                  camera_frame_parameters=cfp, section_height=4)
        maps = simulator.si_truth((12, 12))
        keep = lambda name: maps[name].ravel()  # noqa: E731
        t = keep("t_s")
        assert np.all(np.diff(t) > 0) and t[-1] - t[0] > 143 * 2e-3  # one frame per pixel, in order
        # each camera frame saw the sample where the drift had taken it at that frame's time
        np.testing.assert_allclose(keep("sample_y_nm"), keep("scan_y_nm") - rate[0] * t, atol=1e-9)
        np.testing.assert_allclose(keep("sample_x_nm"), keep("scan_x_nm") - rate[1] * t, atol=1e-9)
        # each section is a scan frame of 4 lines; the HAADF pixel was rendered at its clock pulse, just before
        # the camera frame of the same pixel
        truth = session.parts.scan_simulator.last_frame_truth
        assert truth is not None and truth.geometry.shape_px == (4, 12)
        assert np.all(truth.times_s <= t[-48:]) and np.all(t[-48:] - truth.times_s < 0.01)
        np.testing.assert_allclose(truth.content_offset_nm, inst.true_sample_offset_nm(truth.times_s))
        # drift moved the content by rate x acquisition time between the first and the last section
        assert np.hypot(*(inst.true_sample_offset_nm(t[-1]) - inst.true_sample_offset_nm(t[0]))) > 0.1
    finally:
        inst.clock = session.clock
