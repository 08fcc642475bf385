"""Simulated EELS camera through Swift's camera hardware source: energy axis, ZLP width, energy drift, Poisson
statistics, dose, counting detector and EEGS sidebands at a known coupling."""
from __future__ import annotations

import math
import typing

import numpy as np
import pytest

from nion.instrumentation import stem_controller
from nion.utils import Geometry

from instrument_sim import pinem
from instrument_sim.drift import EnergyDriftModel
from instrument_sim.eels_camera import EELSCameraSimulator
from instrument_sim.samples import NanoparticleSample
from stem_session import StemSession, stem_session


@pytest.fixture(scope="module")
def session() -> typing.Iterator[StemSession]:
    with stem_session(seed=5) as s:
        yield s


@pytest.fixture(autouse=True)
def _reset(session: StemSession) -> None:
    session.reset()


def _grab(session: StemSession, *, exposure_ms: float = 10.0, binning: int = 1) -> tuple[typing.Any, typing.Any]:
    """One fresh frame: (raw 2D xdata, summed 1D xdata)."""
    fp = session.eels.get_current_frame_parameters()
    fp.exposure_ms = exposure_ms
    fp.binning = binning
    session.eels.set_current_frame_parameters(fp)
    session.eels.start_playing()
    try:
        session.eels.get_next_xdatas_to_finish()  # a frame begun before the settings change
        xdatas = session.eels.get_next_xdatas_to_finish()
    finally:
        session.eels.stop_playing(sync_timeout=5.0)
    raw = next(x for x in xdatas if x.data.ndim == 2)
    summed = next(x for x in xdatas if x.data.ndim == 1)
    return raw, summed


def _energies(xdata: typing.Any) -> np.ndarray:
    cal = xdata.dimensional_calibrations[-1]
    return typing.cast(np.ndarray, cal.offset + cal.scale * np.arange(xdata.data.shape[-1]))


def _fwhm(e: np.ndarray, y: np.ndarray) -> float:
    half = y.max() / 2
    above = np.nonzero(y >= half)[0]
    i0, i1 = above[0], above[-1]
    left = np.interp(half, [y[i0 - 1], y[i0]], [e[i0 - 1], e[i0]])
    right = np.interp(half, [y[i1 + 1], y[i1]], [e[i1 + 1], e[i1]])
    return float(right - left)


def test_energy_axis_is_calibrated_in_eV_with_settable_dispersion_and_offset(session: StemSession) -> None:
    session.instrument.SetVal("ZLPoffset", -10.0)
    session.instrument.SetVal("EELS_Dispersion", 0.05)
    raw, summed = _grab(session)
    assert raw.data.shape == (16, 1024) and summed.data.shape == (1024,)
    cal = summed.dimensional_calibrations[-1]
    assert (cal.offset, cal.scale, cal.units) == (-10.0, 0.05, "eV")
    assert int(np.argmax(summed.data)) == pytest.approx(200, abs=1)  # ZLP at 0 eV
    np.testing.assert_allclose(raw.data.sum(axis=0), summed.data, rtol=1e-5)
    session.instrument.SetVal("ZLPoffset", -5.0)
    session.instrument.SetVal("EELS_Dispersion", 0.1)
    _, summed = _grab(session, binning=2)  # binning halves the channels and doubles the dispersion
    cal = summed.dimensional_calibrations[-1]
    assert summed.data.shape == (512,) and cal.scale == pytest.approx(0.2)
    assert _energies(summed)[int(np.argmax(summed.data))] == pytest.approx(0.0, abs=0.2)


@pytest.mark.parametrize("fwhm_eV", [0.3, 1.0])
def test_zlp_width_is_settable(session: StemSession, fwhm_eV: float) -> None:
    session.instrument.SetVal("ZLPoffset", -5.0)
    session.instrument.SetVal("EELS_Dispersion", 0.02)
    session.instrument.SetVal("EELS_ZLPWidth", fwhm_eV)
    _, summed = _grab(session)
    e = _energies(summed)
    assert _fwhm(e, summed.data.astype(np.float64)) == pytest.approx(fwhm_eV, rel=0.05)


def test_energy_drift_moves_the_zlp_as_the_ground_truth_says(session: StemSession) -> None:
    model = EnergyDriftModel(rate_meV_per_s=40.0, jump_rate_per_s=0.1, jump_size_meV=300.0, seed=2)
    session.instrument.energy_drift = model
    session.instrument.SetVal("ZLPoffset", -5.0)
    session.instrument.SetVal("EELS_Dispersion", 0.02)
    simulator = session.parts.eels_simulator
    jump = float(model.jump_times_s(100.0)[0])
    centroids = []
    for t in (0.0, jump - 0.25, jump + 0.25):
        session.clock.set(t)
        simulator.truth_log(clear=True)
        _, summed = _grab(session)
        e, y = _energies(summed), summed.data.astype(np.float64)
        window = np.abs(e - e[np.argmax(y)]) < 2.0
        centroid = float((e[window] * y[window]).sum() / y[window].sum())
        truth = simulator.truth_log()["zlp_offset_eV"]  # the clock is frozen: the latest frames share the offset
        assert truth[-1] == pytest.approx(float(session.instrument.true_energy_offset_eV(t)))
        assert truth[-1] == pytest.approx(float(model.offset_eV(t)))
        assert centroid == pytest.approx(truth[-1], abs=0.01)
        centroids.append(centroid)
    assert centroids[1] == pytest.approx(0.04 * (jump - 0.25), abs=0.02)  # linear drift before the first jump
    assert abs(centroids[2] - centroids[1] - 0.02) == pytest.approx(0.3, abs=0.02)  # a 300 meV jump (+ 0.5 s drift)


def test_counts_are_poisson_and_scale_with_dose(session: StemSession) -> None:
    simulator = session.parts.eels_simulator
    session.instrument.SetVal("ZLPoffset", -10.0)
    session.instrument.SetVal("EELS_Dispersion", 0.1)
    context = stem_controller.ScanContext(Geometry.IntSize(), Geometry.FloatPoint(), 0.0, 0.0)
    area, binning = Geometry.IntRect.from_tlbr(0, 0, 16, 1024), Geometry.IntSize(1, 1)
    frames = np.stack([simulator.get_frame_data(area, binning, 1e-3, context, None).data for _ in range(400)])
    mean, var = frames.mean(axis=0), frames.var(axis=0, ddof=1)
    bright = mean > 20
    assert bright.sum() > 200
    assert float(np.median(var[bright] / mean[bright])) == pytest.approx(1.0, abs=0.05)  # variance = mean
    # total counts = electrons in the exposure (counts_per_electron = 1) times the fraction inside the axis
    electrons = 200e-12 * 1e-3 / 1.602176634e-19
    log = simulator.truth_log()
    assert log["electrons"][-1] == pytest.approx(electrons)
    expected = simulator.expected_spectrum(log["sample_y_nm"][-1], log["sample_x_nm"][-1], n_channels=1024,
                                           electrons=electrons)
    assert frames.sum(axis=(1, 2)).mean() == pytest.approx(expected.sum(), rel=0.002)
    session.instrument.SetVal("BeamCurrent", 400e-12)
    doubled = np.stack([simulator.get_frame_data(area, binning, 1e-3, context, None).data for _ in range(50)])
    assert doubled.sum(axis=(1, 2)).mean() / frames.sum(axis=(1, 2)).mean() == pytest.approx(2.0, rel=0.01)
    session.instrument.SetVal("C_Blank", 1.0)
    assert simulator.get_frame_data(area, binning, 1e-3, context, None).data.sum() == 0.0


def test_counting_detector_model(session: StemSession) -> None:
    counting = EELSCameraSimulator(session.instrument, session.parts.specimen, detector="counting")
    context = stem_controller.ScanContext(Geometry.IntSize(), Geometry.FloatPoint(), 0.0, 0.0)
    session.instrument.SetVal("BeamCurrent", 5e-9)
    frame = counting.get_frame_data(Geometry.IntRect.from_tlbr(0, 0, 16, 1024), Geometry.IntSize(1, 1), 0.1,
                                    context, None).data
    assert frame.max() == 4095.0  # 12-bit counter saturates on the ZLP
    assert np.all(frame == np.round(frame))
    column = frame[:, int(np.argmax(frame.sum(axis=0))) + 200]
    assert column.min() >= 0


def _eegs_setup(session: StemSession, *, gap_nm: float) -> tuple[NanoparticleSample, float]:
    """One Ag particle (R = 15 nm) over a hole (no support); probe parked ``gap_nm`` from its surface with the beam
    shift; returns the sample and the coupling there."""
    sample = NanoparticleSample(centers_nm=[(0.0, 0.0)], radii_nm=[15.0], support_thickness_nm=0.0,
                                decay_length_nm=10.0, resonance_center_eV=2.33, resonance_q=15.0)
    session.parts.specimen.sample = sample
    session.instrument.SetVal2D("CSH", Geometry.FloatPoint(y=0.0, x=(15.0 + gap_nm) * 1e-9))
    session.instrument.SetVal("ZLPoffset", -12.0)
    session.instrument.SetVal("EELS_Dispersion", 0.025)
    session.instrument.SetVal("EELS_ZLPWidth", 0.3)
    session.instrument.SetVal("BeamCurrent", 2e-9)
    return sample, math.exp(-gap_nm / 10.0)


@pytest.mark.parametrize("beta", [0.6, 1.3])
def test_eegs_sideband_areas_at_known_beta_within_2_percent(session: StemSession, beta: float) -> None:
    sample, coupling = _eegs_setup(session, gap_nm=5.0)
    laser = session.parts.laser
    wavelength = pinem.HC_EV_NM / 2.33  # on resonance
    k = float(laser.get("beta_squared_per_mW"))
    laser.apply_settings({"wavelength_nm": wavelength, "shutter_open": True, "power_mW": beta ** 2 / (k * coupling)})
    assert float(laser.state().beta_at(sample, 0.0, 20.0)) == pytest.approx(beta)  # the truth the test relies on
    _, summed = _grab(session, exposure_ms=20.0)
    e, y = _energies(summed), summed.data.astype(np.float64)
    hw = pinem.photon_energy_eV(wavelength)
    orders, weights = pinem.sideband_orders(beta), pinem.sideband_weights(beta)
    total = y[np.abs(e) < 4.5 * hw].sum()
    for n in range(-3, 4):
        truth = float(weights[orders == n][0])
        area = y[np.abs(e + n * hw) < hw / 2].sum() / total
        if truth > 0.01:
            assert area == pytest.approx(truth, rel=0.02), n
    # shutter closed: a plain ZLP, nothing on the gain side
    laser.set("shutter_open", False)
    _, closed = _grab(session, exposure_ms=20.0)
    c = closed.data.astype(np.float64)
    assert c[e < -hw / 2].sum() / c.sum() < 1e-4
    # pulsed laser, beam not gated: only the laser-on fraction (width x frequency = 0.25) shows sidebands
    laser.apply_settings({"shutter_open": True, "pulse_frequency_Hz": 1e6, "pulse_width_s": 2.5e-7,
                          "power_mW": 0.25 * beta ** 2 / (k * coupling)})  # same peak power
    _, pulsed = _grab(session, exposure_ms=20.0)
    p = pulsed.data.astype(np.float64)
    zero = p[np.abs(e) < hw / 2].sum() / p[np.abs(e) < 4.5 * hw].sum()
    assert zero == pytest.approx(0.75 + 0.25 * float(weights[orders == 0][0]), rel=0.01)


def test_eegs_far_from_the_particle_or_off_resonance_shows_little(session: StemSession) -> None:
    laser = session.parts.laser

    def gain_fraction(gap_nm: float, wavelength_nm: float) -> float:
        _, coupling = _eegs_setup(session, gap_nm=gap_nm)
        laser.apply_settings({"wavelength_nm": wavelength_nm, "shutter_open": True, "power_mW": 2.0})
        _, summed = _grab(session, exposure_ms=5.0)
        e, y = _energies(summed), summed.data.astype(np.float64)
        return float(y[e < -0.5].sum() / y.sum())

    on = gain_fraction(5.0, pinem.HC_EV_NM / 2.33)
    off = gain_fraction(5.0, pinem.HC_EV_NM / 1.6)
    far = gain_fraction(120.0, pinem.HC_EV_NM / 2.33)
    assert on > 0.3
    assert off < 0.2 * on
    assert far < 1e-3


def test_a_seed_fixes_the_noise_of_both_devices() -> None:
    from instrument_sim.instrument import ManualClock, SimInstrument
    from instrument_sim.specimen import Specimen
    from instrument_sim.stem_scan import ScanGeometry, SimScanSimulator

    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        instrument = SimInstrument(clock=ManualClock(1.0))
        specimen = Specimen(seed=seed)
        eels = EELSCameraSimulator(instrument, specimen)
        context = stem_controller.ScanContext(Geometry.IntSize(), Geometry.FloatPoint(), 0.0, 0.0)
        frames = np.stack([eels.get_frame_data(Geometry.IntRect.from_tlbr(0, 0, 16, 1024), Geometry.IntSize(1, 1),
                                               1e-3, context, None).data for _ in range(3)])
        scan = SimScanSimulator(instrument, specimen)
        scan.scan_shape_pixels = Geometry.IntSize(32, 32)
        scan.reset_frame()
        geometry = ScanGeometry((32, 32), (2.0, 2.0), (0.0, 0.0), 0.0, 4e-6, 30e-6)
        image = scan.channel_data(geometry, "HAADF").copy()
        instrument.close()
        return frames, image

    a, b, c = run(9), run(9), run(10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])
