"""Known-answer tests of processing.spectroscopy.spectrum_alignment on Gaussian ZLPs at known energies."""
from __future__ import annotations

import numpy as np
import pytest

from processing.base import InputError, ParameterError
from processing.spectroscopy.spectrum_alignment import EnergyAxis, align_zlp, shift_spectra, zlp_position_eV

AXIS = EnergyAxis(offset_eV=-10.0, scale_eV=0.1)
ENERGY = AXIS.energy(np.arange(400))
SIGMA_EV = 0.3
GAIN_EV = 2.1


def _spectra(zlp_eV: np.ndarray, gain: float = 300.0) -> np.ndarray:
    """ZLP (1e4 counts peak) + a gain peak at -2.1 eV from the ZLP + a loss step at 5 eV."""
    e = ENERGY[None, :] - np.asarray(zlp_eV, float).reshape(-1, 1)
    s = 1e4 * np.exp(-e ** 2 / (2 * SIGMA_EV ** 2)) + gain * np.exp(-(e + GAIN_EV) ** 2 / (2 * SIGMA_EV ** 2))
    s += 50.0 * (e > 5.0)
    return s.reshape(np.shape(zlp_eV) + (len(ENERGY),))


def test_zlp_position_exact_for_gaussian() -> None:
    true = np.random.default_rng(0).uniform(-1.5, 1.5, (6, 7))
    assert zlp_position_eV(_spectra(true), AXIS) == pytest.approx(true, abs=1e-6)


def test_zlp_position_subchannel_with_shot_noise() -> None:
    rng = np.random.default_rng(1)
    true = rng.uniform(-1.0, 1.0, 500)
    measured = zlp_position_eV(rng.poisson(_spectra(true)).astype(float), AXIS)
    rms = float(np.sqrt(np.mean((measured - true) ** 2)))
    assert rms < 0.1 * AXIS.scale_eV  # far below one channel


def test_search_window_ignores_a_higher_peak() -> None:
    spectra = _spectra(np.array([0.4]))[0]
    spectra = spectra + 3e4 * np.exp(-(ENERGY - 8.0) ** 2 / 0.5)
    assert float(zlp_position_eV(spectra, AXIS)) == pytest.approx(8.0, abs=0.05)
    assert float(zlp_position_eV(spectra, AXIS, search_eV=(-3, 3))) == pytest.approx(0.4, abs=1e-3)


@pytest.mark.parametrize("method", ["cubic", "linear", "fourier"])
def test_align_si_zlp_within_tolerance_and_gain_side_kept(method: str) -> None:
    rng = np.random.default_rng(2)
    true = 0.8 * np.sin(np.linspace(0, 3, 64)).reshape(8, 8) + rng.normal(0, 0.2, (8, 8))
    si = rng.poisson(_spectra(true)).astype(float)
    result = align_zlp(si, AXIS, method=method)  # type: ignore[arg-type]
    assert result.zlp_eV == pytest.approx(true, abs=0.01)
    assert result.shift_eV == pytest.approx(-result.zlp_eV)
    after = zlp_position_eV(result.aligned, AXIS)
    assert np.abs(after).max() < 0.05
    # the gain peak is still there, at -2.1 eV, with its counts (not cropped)
    window = (ENERGY > -2.8) & (ENERGY < -1.4)
    gain_pos = (result.aligned[..., window] * ENERGY[window]).sum(-1) / result.aligned[..., window].sum(-1)
    assert gain_pos == pytest.approx(np.full((8, 8), -GAIN_EV), abs=0.03)
    gain_counts = result.aligned[..., window].sum(-1)
    expected = 300.0 * SIGMA_EV * np.sqrt(2 * np.pi) / AXIS.scale_eV  # integral of the gain Gaussian, counts
    assert gain_counts.mean() == pytest.approx(expected, rel=0.05)


def test_align_per_row_uses_one_shift_per_row() -> None:
    true = np.repeat(np.linspace(-0.5, 0.5, 4)[:, None], 5, axis=1)
    result = align_zlp(_spectra(true), AXIS, per="row")
    assert np.ptp(result.shift_eV, axis=1) == pytest.approx(np.zeros(4))
    assert result.shift_eV[:, 0] == pytest.approx(-true[:, 0], abs=1e-6)
    with pytest.raises(ParameterError, match="row"):
        align_zlp(_spectra(np.array(0.1)), AXIS, per="row")


def test_shift_spectra_moves_features_and_fills_edges() -> None:
    s = np.zeros(50)
    s[20] = 1.0
    out = shift_spectra(s, 3.0, method="linear", fill_value=-1.0)
    assert out[23] == pytest.approx(1.0) and out[20] == pytest.approx(0.0)
    assert (out[:3] == -1.0).all()
    with pytest.raises(ParameterError, match="method"):
        shift_spectra(s, 1.0, method="nearest")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="NaN"):
        shift_spectra(s, np.nan)


def test_bad_axis_and_input() -> None:
    with pytest.raises(ParameterError, match="positive"):
        EnergyAxis(0.0, 0.0)
    with pytest.raises(InputError, match="channels"):
        zlp_position_eV(np.ones(3), AXIS)
