"""EELS spectrum model against its definition: ZLP width/area, edge onsets from the table, t/lambda, power law."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal

from instrument_sim.eels_physics import EdgeTable, EnergyAxis, SpectrumModel, load_edge_table, plasmon_weights
from instrument_sim.errors import SimulatorParameterError


def _fwhm(x: np.ndarray, y: np.ndarray) -> float:
    half = y.max() / 2
    above = np.nonzero(y >= half)[0]
    i0, i1 = above[0], above[-1]
    left = np.interp(half, [y[i0 - 1], y[i0]], [x[i0 - 1], x[i0]])
    right = np.interp(half, [y[i1 + 1], y[i1]], [x[i1 + 1], x[i1]])
    return float(right - left)


@pytest.mark.parametrize("fwhm_eV", [0.3, 1.0])
def test_zlp_has_unit_area_and_the_set_width(fwhm_eV: float) -> None:
    axis = EnergyAxis(offset_eV=-5.0, dispersion_eV_per_channel=0.01, n_channels=1000)
    model = SpectrumModel(axis, zlp_fwhm_eV=fwhm_eV)
    zlp = model.basis(material="DyScO3").zlp
    assert zlp.sum() == pytest.approx(1.0, abs=1e-9)
    assert _fwhm(axis.energies_eV, zlp) == pytest.approx(fwhm_eV, rel=0.02)
    assert axis.energies_eV[np.argmax(zlp)] == pytest.approx(0.0, abs=0.01)


def test_zlp_area_is_exact_for_a_coarse_dispersion() -> None:
    axis = EnergyAxis(offset_eV=-20.0, dispersion_eV_per_channel=0.5, n_channels=100)
    s = SpectrumModel(axis, zlp_fwhm_eV=0.3).spectrum(electrons=5000.0, t_over_mfp=0.0, material="C",
                                                      composition={}, shift_eV=0.13)
    assert s.sum() == pytest.approx(5000.0, rel=1e-9)
    # a peak narrower than a channel, centred on a channel boundary, splits equally between the two channels
    s = SpectrumModel(axis, zlp_fwhm_eV=0.3).spectrum(electrons=1.0, t_over_mfp=0.0, material="C",
                                                      composition={}, shift_eV=0.25)
    i = int(axis.channel_of(0.0))
    assert s[i] == pytest.approx(s[i + 1], rel=1e-9) and s[i] + s[i + 1] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("element, peaks_eV", [("Sc", (402.5, 407.5)), ("Dy", (1297.0, 1334.0)), ("O", (534.0,))])
def test_white_lines_sit_at_the_tabulated_onsets(element: str, peaks_eV: tuple[float, ...]) -> None:
    table = load_edge_table()
    edges = table.edges(element)
    axis = EnergyAxis(offset_eV=peaks_eV[0] - 60.0, dispersion_eV_per_channel=0.1, n_channels=1200)
    spectrum = SpectrumModel(axis, zlp_fwhm_eV=0.3).basis(material="DyScO3", elements=[element]).edges[element]
    found, props = scipy.signal.find_peaks(spectrum, prominence=spectrum.max() * 0.05)
    top = sorted(found[np.argsort(props["prominences"])[::-1][:len(peaks_eV)]])
    assert axis.energies_eV[top] == pytest.approx(list(peaks_eV), abs=0.15)
    # these are the table's onset + white-line shift: the data drives the model
    assert [e.onset_eV + e.white_line_shift_eV for e in edges] == pytest.approx(list(peaks_eV))
    # nothing well below the first onset
    below = axis.energies_eV < edges[0].onset_eV - 10
    assert spectrum[below].max() < 0.02 * spectrum.max()


def test_tabulated_onsets_of_the_issue() -> None:
    table = load_edge_table()
    onsets = {(e.element, e.name): e.onset_eV for el in ("Sc", "O", "Dy") for e in table.edges(el)}
    assert onsets == {("Sc", "L3"): 402.0, ("Sc", "L2"): 407.0, ("O", "K"): 532.0,
                      ("Dy", "M5"): 1295.0, ("Dy", "M4"): 1332.0}


def test_a_new_element_comes_from_the_table_not_code() -> None:
    data = {"elements": {"Xx": {"Z": 99, "edges": [
        {"name": "K", "onset_eV": 700.0, "step_per_atom_per_eV": 1e-6, "decay_exponent": 3.0, "onset_width_eV": 1.0,
         "white_line_area_eV": 0.0, "white_line_fwhm_eV": 1.0, "white_line_shift_eV": 0.0}]}},
        "materials": {"M": {"plasmon_eV": 20.0, "plasmon_fwhm_eV": 5.0, "mean_free_path_nm": 100.0,
                            "background_exponent": 3.0, "background_per_eV_at_100eV": 0.0}}}
    axis = EnergyAxis(offset_eV=600.0, dispersion_eV_per_channel=1.0, n_channels=300)
    s = SpectrumModel(axis, zlp_fwhm_eV=1.0, table=EdgeTable(data)).basis(material="M", elements=["Xx"]).edges["Xx"]
    e = axis.energies_eV
    rise = e[np.argmax(np.diff(s)) + 1]
    assert rise == pytest.approx(700.0, abs=1.0)
    # step height just above onset = 1e-6 per eV per atom, then (E/700)^-3
    assert s[e == 710.0][0] == pytest.approx(1e-6 * (710 / 700) ** -3, rel=0.01)
    assert s[e == 850.0][0] == pytest.approx(1e-6 * (850 / 700) ** -3, rel=0.01)


def test_log_ratio_gives_t_over_lambda() -> None:
    axis = EnergyAxis(offset_eV=-5.0, dispersion_eV_per_channel=0.05, n_channels=20000)
    model = SpectrumModel(axis, zlp_fwhm_eV=0.5)
    for t in (0.2, 0.6, 1.2):
        basis = model.basis(material="Ag")
        s = basis.combine(t_over_mfp=t, composition={}) - t * basis.background
        zlp_area = s[axis.energies_eV < 1.5].sum()
        assert math.log(s.sum() / zlp_area) == pytest.approx(t, rel=0.03)
    assert plasmon_weights(np.array([0.3, 2.0])).sum(axis=-1) == pytest.approx([1.0, 1.0])


def test_background_is_a_power_law_with_the_tabulated_exponent() -> None:
    axis = EnergyAxis(offset_eV=150.0, dispersion_eV_per_channel=1.0, n_channels=200)
    basis = SpectrumModel(axis).basis(material="DyScO3")
    e = axis.energies_eV
    slope = np.polyfit(np.log(e), np.log(basis.background), 1)[0]
    assert slope == pytest.approx(-load_edge_table().material("DyScO3").background_exponent, abs=0.01)


def test_energy_shift_moves_the_whole_spectrum() -> None:
    axis = EnergyAxis(offset_eV=380.0, dispersion_eV_per_channel=0.5, n_channels=400)
    model = SpectrumModel(axis, zlp_fwhm_eV=0.5)
    comp = {"Sc": 50.0, "O": 150.0}
    s0 = model.spectrum(electrons=1e6, t_over_mfp=0.3, material="DyScO3", composition=comp)
    s3 = model.spectrum(electrons=1e6, t_over_mfp=0.3, material="DyScO3", composition=comp, shift_eV=3.0)
    np.testing.assert_allclose(s3[6:], s0[:-6], rtol=1e-9)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(SimulatorParameterError, match="dispersion"):
        EnergyAxis(offset_eV=0.0, dispersion_eV_per_channel=0.0, n_channels=10)
    axis = EnergyAxis(offset_eV=0.0, dispersion_eV_per_channel=1.0, n_channels=10)
    with pytest.raises(SimulatorParameterError, match="zlp_fwhm_eV"):
        SpectrumModel(axis, zlp_fwhm_eV=-1.0)
    with pytest.raises(SimulatorParameterError, match="Add it to the table"):
        SpectrumModel(axis).basis(material="DyScO3", elements=["Unobtainium"])
    with pytest.raises(SimulatorParameterError, match="t_over_mfp"):
        plasmon_weights(-0.1)
    with pytest.raises(ValueError):  # every simulator error is a ValueError
        SpectrumModel(axis).basis(material="cheese")
