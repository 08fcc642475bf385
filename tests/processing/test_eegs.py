"""Known-answer tests of processing.spectroscopy.eegs on synthetic PINEM/EEGS spectra (sidebands at -n*hw, P_n = J_n(2|beta|)^2)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special

from processing.base import InputError, ParameterError
from processing.spectroscopy.eegs import (HC_EV_NM, eegs_curve, find_resonance, gain_intensity, gain_window_eV, photon_energy_eV,
                             window_sum)
from processing.spectroscopy.spectrum_alignment import EnergyAxis

AXIS = EnergyAxis(offset_eV=-6.0, scale_eV=0.02)
ENERGY = AXIS.energy(np.arange(900))
SIGMA_EV = 0.1
FWHM_EV = 2.3548 * SIGMA_EV
WAVELENGTHS = np.arange(560.0, 620.0 + 1e-9, 4.0)
RESONANCE_NM = 588.0


def _zlp(centre: float) -> np.ndarray:
    return np.exp(-(ENERGY - centre) ** 2 / (2 * SIGMA_EV ** 2))


def _spectrum(wavelength_nm: float, beta: float, counts: float = 1e5) -> np.ndarray:
    hw = HC_EV_NM / wavelength_nm
    s = np.zeros_like(ENERGY)
    for n in range(-3, 4):
        s += scipy.special.jv(n, 2 * beta) ** 2 * _zlp(-n * hw)  # gain (n > 0) at negative energy loss
    return counts * s / _zlp(0.0).sum()


def _beta(wavelength_nm: float, amplitude: float, power: float) -> float:
    """|beta| ~ sqrt(power) x Lorentzian field enhancement of a resonator at 588 nm (width 10 nm)."""
    return amplitude * np.sqrt(power) / np.sqrt(1.0 + ((wavelength_nm - RESONANCE_NM) / 5.0) ** 2)


def test_photon_energy_and_window() -> None:
    assert photon_energy_eV(585.0) == pytest.approx(2.1194, abs=1e-4)
    assert np.allclose(photon_energy_eV(np.array([575.0, 595.0])), [2.1563, 2.0838], atol=1e-4)
    low, high = gain_window_eV(585.0, zlp_fwhm_eV=0.2)
    assert (low + high) / 2 == pytest.approx(-2.1194, abs=1e-4) and high - low == pytest.approx(0.4)
    with pytest.raises(ParameterError, match="overlaps the ZLP"):
        gain_window_eV(3000.0, zlp_fwhm_eV=0.3)
    with pytest.raises(ParameterError, match="positive"):
        photon_energy_eV(-1.0)


def test_window_sum_fractional_channels() -> None:
    flat = np.ones(len(ENERGY))
    assert float(window_sum(flat, AXIS, -1.0, -0.5)) == pytest.approx(0.5 / AXIS.scale_eV, rel=1e-9)


def test_gain_intensity_is_first_sideband_probability() -> None:
    beta = 0.1
    s = _spectrum(585.0, beta)
    g = float(gain_intensity(s, AXIS, 585.0, zlp_fwhm_eV=FWHM_EV, normalise="total"))
    assert g == pytest.approx(scipy.special.jv(1, 2 * beta) ** 2, rel=0.03)
    # normalised by the ZLP instead: P1 / P0
    g0 = float(gain_intensity(s, AXIS, 585.0, zlp_fwhm_eV=FWHM_EV))
    p0_in_window = scipy.special.jv(0, 2 * beta) ** 2 * 0.9815  # +-FWHM holds 98.15 % of a Gaussian
    assert g0 == pytest.approx(scipy.special.jv(1, 2 * beta) ** 2 * 0.9815 / p0_in_window, rel=0.03)


def test_reference_subtraction_removes_zlp_tail() -> None:
    wide = np.exp(-np.abs(ENERGY) / 0.6)  # long-tailed ZLP leaks into the gain window
    laser = wide + 0.01 * _zlp(-photon_energy_eV(585.0))
    off = wide.copy()
    raw = float(gain_intensity(laser, AXIS, 585.0, zlp_fwhm_eV=FWHM_EV, normalise="none"))
    corrected = float(gain_intensity(laser, AXIS, 585.0, zlp_fwhm_eV=FWHM_EV, normalise="none", reference=off))
    expected = 0.01 * float(window_sum(_zlp(-photon_energy_eV(585.0)), AXIS, *gain_window_eV(585.0, zlp_fwhm_eV=FWHM_EV)))
    assert corrected == pytest.approx(expected, rel=1e-6)
    assert raw > 1.5 * corrected


def test_eegs_curve_peaks_at_resonance_and_flat_far_away() -> None:
    """Point at a particle (resonant beta) and far away (beta ~ 0); laser power varies with wavelength."""
    rng = np.random.default_rng(4)
    powers = 1.0 - ((WAVELENGTHS - 590.0) / 60.0) ** 2  # Orsay-like P(lambda) (arbitrary units)
    near = [rng.poisson(_spectrum(lam, _beta(lam, 0.15, p))).astype(float) for lam, p in zip(WAVELENGTHS, powers)]
    far = [rng.poisson(_spectrum(lam, _beta(lam, 0.002, p))).astype(float) for lam, p in zip(WAVELENGTHS, powers)]
    off = rng.poisson(_spectrum(590.0, 0.0)).astype(float)
    curve_near = eegs_curve(near, AXIS, WAVELENGTHS, zlp_fwhm_eV=FWHM_EV, laser_powers=powers, reference=off)
    curve_far = eegs_curve(far, AXIS, WAVELENGTHS, zlp_fwhm_eV=FWHM_EV, laser_powers=powers, reference=off)
    res = find_resonance(WAVELENGTHS, curve_near)
    assert abs(res.peak_wavelength_nm - RESONANCE_NM) <= 4.0  # within one wavelength step
    assert res.relative_prominence > 10
    assert np.ptp(curve_far) < 0.05 * res.prominence  # far from the particle: flat
    # a map: (L, H, W) with the same physics per pixel
    maps = eegs_curve([np.stack([a, b]) for a, b in zip(near, far)], AXIS, WAVELENGTHS, zlp_fwhm_eV=FWHM_EV,
                      laser_powers=powers, reference=off)
    assert maps.shape == (len(WAVELENGTHS), 2)
    assert np.allclose(maps[:, 0], curve_near) and np.allclose(maps[:, 1], curve_far)


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="wavelengths"):
        eegs_curve([np.ones(10)], AXIS, [500.0, 510.0], zlp_fwhm_eV=0.2)
    with pytest.raises(ParameterError, match="laser_power"):
        gain_intensity(_spectrum(585.0, 0.1), AXIS, 585.0, zlp_fwhm_eV=FWHM_EV, laser_power=0.0)
    with pytest.raises(InputError, match=">= 3"):
        find_resonance([1.0, 2.0], [1.0, 2.0])
