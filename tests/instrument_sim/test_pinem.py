"""PINEM / EEGS physics: Bessel sideband weights, sideband areas in a spectrum, laser-on fraction, resonance map."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate

from instrument_sim import pinem
from instrument_sim.detector import IntegratingDetector
from instrument_sim.eels_physics import EnergyAxis, SpectrumModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.samples import LaserState, NanoparticleSample, expected_spectra


def _bessel_by_integral(n: int, x: float) -> float:
    """J_n(x) = (1/pi) int_0^pi cos(n tau - x sin tau) d tau, independent of scipy.special."""
    value, _ = scipy.integrate.quad(lambda tau: math.cos(n * tau - x * math.sin(tau)), 0.0, math.pi)
    return value / math.pi


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0, 2.5])
def test_sideband_weights_are_bessel_squared_and_sum_to_one(beta: float) -> None:
    orders = pinem.sideband_orders(beta)
    w = pinem.sideband_weights(beta)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(w, w[::-1], atol=1e-15)  # J_-n^2 = J_n^2
    for n in (0, 1, 2, 3):
        i = int(np.nonzero(orders == n)[0][0])
        assert w[i] == pytest.approx(_bessel_by_integral(n, 2 * beta) ** 2, abs=1e-10)


def test_photon_energy() -> None:
    assert pinem.photon_energy_eV(1239.84198) == pytest.approx(1.0)
    assert pinem.photon_energy_eV(800.0) == pytest.approx(1.5498, abs=1e-4)
    with pytest.raises(SimulatorParameterError, match="wavelength"):
        pinem.photon_energy_eV(0.0)


@pytest.mark.parametrize("beta", [0.5, 1.2])
def test_eegs_spectrum_sideband_areas_within_2_percent(beta: float) -> None:
    hw = pinem.photon_energy_eV(532.0)
    axis = EnergyAxis(offset_eV=-15.0, dispersion_eV_per_channel=0.02, n_channels=1500)
    model = SpectrumModel(axis, zlp_fwhm_eV=0.3)

    def at_shift(s: float) -> np.ndarray:
        return model.spectrum(electrons=2e6, t_over_mfp=0.0, material="C", composition={}, shift_eV=s)

    expected = pinem.apply_pinem(at_shift, beta=beta, photon_energy=hw, on_fraction=1.0)
    measured = IntegratingDetector(counts_per_electron=1.0).read(expected, np.random.default_rng(3))
    e = axis.energies_eV
    total = measured.sum()
    for n in range(-3, 4):
        # gain (n > 0) appears at negative energy loss: E = -n hbar omega
        window = np.abs(e + n * hw) < hw / 2
        area = measured[window].sum() / total
        truth = pinem.sideband_weights(beta)[pinem.sideband_orders(beta) == n][0]
        if truth > 0.01:
            assert area == pytest.approx(truth, rel=0.02), n
        peak = e[window][np.argmax(measured[window])]
        if truth > 0.05:
            assert peak == pytest.approx(-n * hw, abs=0.05)


def test_laser_off_fraction_gives_a_plain_zlp() -> None:
    axis = EnergyAxis(offset_eV=-8.0, dispersion_eV_per_channel=0.02, n_channels=800)
    model = SpectrumModel(axis, zlp_fwhm_eV=0.3)
    hw = 2.0

    def at_shift(s: float) -> np.ndarray:
        return model.spectrum(electrons=1.0, t_over_mfp=0.0, material="C", composition={}, shift_eV=s)

    plain = at_shift(0.0)
    np.testing.assert_allclose(pinem.apply_pinem(at_shift, beta=1.0, photon_energy=hw, on_fraction=0.0), plain)
    mixed = pinem.apply_pinem(at_shift, beta=1.0, photon_energy=hw, on_fraction=0.3)
    zero_window = np.abs(axis.energies_eV) < hw / 2
    j0sq = float(pinem.sideband_weights(1.0)[pinem.sideband_orders(1.0) == 0][0])
    assert mixed[zero_window].sum() == pytest.approx(0.7 + 0.3 * j0sq, abs=1e-6)


def test_laser_on_fraction_cases() -> None:
    kw = dict(pulse_frequency_Hz=1e6, pulse_width_s=1e-7)
    assert pinem.laser_on_fraction(shutter_open=False, **kw) == 0.0
    assert pinem.laser_on_fraction(shutter_open=True, pulse_frequency_Hz=0.0, pulse_width_s=0.0) == 1.0  # CW
    assert pinem.laser_on_fraction(shutter_open=True, **kw) == pytest.approx(0.1)  # no blanking: laser duty
    assert pinem.laser_on_fraction(shutter_open=True, blanker_duty=0.1, **kw) == pytest.approx(1.0)  # gated, in sync
    assert pinem.laser_on_fraction(shutter_open=True, blanker_duty=0.2, **kw) == pytest.approx(0.5)
    assert pinem.laser_on_fraction(shutter_open=True, blanker_duty=0.1, pulse_delay_s=3e-7, **kw) == 0.0  # late
    assert pinem.laser_on_fraction(shutter_open=True, blanker_duty=0.1, pulse_delay_s=5e-8, **kw) == pytest.approx(0.5)
    with pytest.raises(SimulatorParameterError, match="blanker_duty"):
        pinem.laser_on_fraction(shutter_open=True, blanker_duty=0.0, **kw)


def test_coupling_map_decays_from_the_particle_surface() -> None:
    centers = np.array([[0.0, 0.0]])
    radii = np.array([10.0])
    y = np.array([0.0, 0.0, 0.0, 0.0])
    x = np.array([0.0, 9.0, 15.0, 30.0])
    c = pinem.coupling_map(y, x, centers_nm=centers, radii_nm=radii, decay_length_nm=5.0)
    np.testing.assert_allclose(c, [1.0, 1.0, math.exp(-1.0), math.exp(-4.0)])


def test_eegs_wavelength_scan_shows_the_resonance_at_a_particle_and_nothing_far_away() -> None:
    sample = NanoparticleSample(centers_nm=[(0.0, 0.0)], radii_nm=[15.0], decay_length_nm=10.0,
                                resonance_center_eV=2.0, resonance_q=10.0, seed=1)
    axis = EnergyAxis(offset_eV=-6.0, dispersion_eV_per_channel=0.02, n_channels=700)
    model = SpectrumModel(axis, zlp_fwhm_eV=0.3)
    wavelengths = np.linspace(500.0, 760.0, 27)

    def gain_fraction(y: float, x: float, wl: float) -> float:
        laser = LaserState(wavelength_nm=wl, power_mW=1.0, shutter_open=True, beta_squared_per_mW=1.0)
        s = expected_spectra(sample, model, np.array([y]), np.array([x]), electrons=1.0, laser=laser)[0]
        return float(s[axis.energies_eV < -0.5].sum() / s.sum())  # energy gain side

    near = np.array([gain_fraction(0.0, 18.0, wl) for wl in wavelengths])
    far = np.array([gain_fraction(0.0, 150.0, wl) for wl in wavelengths])
    resonance_wl = pinem.HC_EV_NM / 2.0
    assert wavelengths[np.argmax(near)] == pytest.approx(resonance_wl, abs=10.0)
    assert near.max() > 0.2
    assert near.max() > 5 * near.min()  # off resonance it drops (Q = 10)
    assert far.max() < 1e-3
