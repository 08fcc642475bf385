"""Samples (perovskite columns, nanoparticles), scan geometry, truth renderings and detector noise models."""
from __future__ import annotations

import math

import numpy as np
import pytest

from instrument_sim.detector import CountingDetector, IntegratingDetector
from instrument_sim.eels_physics import EnergyAxis, SpectrumModel, load_edge_table
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.samples import (HAADF_FRACTION_PER_ATOM_ZGAMMA, NanoparticleSample, PerovskiteSample,
                                    expected_spectra, make_sample, scan_positions_nm, truth_image,
                                    truth_spectrum_image)


def _ideal_perovskite(**kw: float) -> PerovskiteSample:
    return PerovskiteSample(occupancy_scatter=0.0, thickness_variation=0.0, seed=0, **kw)  # type: ignore[arg-type]


def test_haadf_at_columns_scales_as_sum_of_z_to_gamma() -> None:
    s = _ideal_perovskite(thickness_nm=20.0, gamma=1.7)
    cols = s.column_positions_nm(fov_size_nm=(2.0, 2.0))
    haadf = {k: s.scattering(v[:, 0], v[:, 1])["HAADF"] for k, v in cols.items()}
    z = {el: load_edge_table().atomic_number(el) for el in ("Dy", "Sc", "O")}
    n = 20.0 / 0.395
    expect = {"Dy": z["Dy"] ** 1.7, "ScO": z["Sc"] ** 1.7 + z["O"] ** 1.7, "O": z["O"] ** 1.7}
    for k in expect:
        np.testing.assert_allclose(haadf[k], HAADF_FRACTION_PER_ATOM_ZGAMMA * n * expect[k], rtol=1e-3)
    # between columns the signal is far lower than on the weakest column
    mid = s.scattering(np.array([0.25 * 0.395]), np.array([0.25 * 0.395]))["HAADF"]
    assert mid[0] < 0.01 * haadf["Dy"][0]


def test_columns_carry_their_elements() -> None:
    s = _ideal_perovskite(thickness_nm=30.0)
    cols = s.column_positions_nm(fov_size_nm=(2.0, 2.0))
    n = 30.0 / 0.395
    comp = {k: s.composition(v[:, 0], v[:, 1]) for k, v in cols.items()}
    assert comp["Dy"]["Dy"] == pytest.approx(n, rel=1e-3) and comp["Dy"]["Sc"].max() < 0.01 * n
    assert comp["ScO"]["Sc"] == pytest.approx(n, rel=1e-3) and comp["ScO"]["O"] == pytest.approx(n, rel=1e-2)
    assert comp["O"]["O"] == pytest.approx(n, rel=1e-2) and comp["O"]["Dy"].max() < 0.01 * n


def test_seed_fixes_the_non_periodic_detail() -> None:
    y, x = scan_positions_nm((32, 32), fov_size_nm=(3.0, 3.0))
    a = make_sample("perovskite", seed=4).scattering(y, x)["HAADF"]
    b = make_sample("perovskite", seed=4).scattering(y, x)["HAADF"]
    c = make_sample("perovskite", seed=5).scattering(y, x)["HAADF"]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.01 * a.max()


def test_scan_positions_follow_swift_calibration_and_rotation() -> None:
    y, x = scan_positions_nm((4, 8), fov_size_nm=(2.0, 4.0), center_nm=(10.0, -5.0))
    assert (y[0, 0], x[0, 0]) == (9.0, -7.0)  # offset -fov/2
    assert (y[1, 1] - y[0, 0], x[1, 1] - x[0, 0]) == (0.5, 0.5)  # scale fov/N
    yr, xr = scan_positions_nm((4, 4), fov_size_nm=(2.0, 2.0), rotation_rad=math.pi / 2)
    y0, x0 = scan_positions_nm((4, 4), fov_size_nm=(2.0, 2.0))
    np.testing.assert_allclose(xr, -y0, atol=1e-12)  # x' = cos x - sin y
    np.testing.assert_allclose(yr, x0, atol=1e-12)  # y' = sin x + cos y
    with pytest.raises(SimulatorParameterError, match="fov_size_nm"):
        scan_positions_nm((4, 4), fov_size_nm=(0.0, 2.0))


def test_truth_image_is_the_scattering_at_the_scan_positions() -> None:
    s = make_sample("perovskite", seed=1)
    img = truth_image(s, shape_px=(16, 16), fov_size_nm=(2.0, 2.0), center_nm=(0.3, -0.2), electrons_per_pixel=1e4)
    y, x = scan_positions_nm((16, 16), fov_size_nm=(2.0, 2.0), center_nm=(0.3, -0.2))
    np.testing.assert_allclose(img, 1e4 * s.scattering(y, x)["HAADF"])
    # a shifted field is the same content, shifted by whole pixels
    img2 = truth_image(s, shape_px=(16, 16), fov_size_nm=(2.0, 2.0), center_nm=(0.3 + 0.125 * 2, -0.2),
                       electrons_per_pixel=1e4)
    np.testing.assert_allclose(img2[:-2], img[2:], rtol=1e-9)


def test_nanoparticles_thickness_haadf_and_coupling() -> None:
    s = NanoparticleSample(centers_nm=[(0.0, 0.0), (0.0, 60.0)], radii_nm=[10.0, 20.0], decay_length_nm=5.0)
    assert s.particle_thickness_nm(np.array([0.0, 0.0]), np.array([0.0, 60.0])) == pytest.approx([20.0, 40.0])
    h = s.scattering(np.array([0.0, 0.0, 0.0]), np.array([0.0, 60.0, 30.0]))["HAADF"]
    assert h[1] > h[0] > 10 * h[2]
    c = s.coupling(np.array([0.0, 0.0]), np.array([15.0, 35.0]))
    assert c == pytest.approx([math.exp(-1.0), math.exp(-1.0)])
    assert s.material_index(np.array([0.0, 0.0]), np.array([0.0, 30.0])).tolist() == [0, 1]


def test_truth_spectrum_image_matches_per_position_spectra() -> None:
    s = make_sample("perovskite", seed=2)
    model = SpectrumModel(EnergyAxis(offset_eV=380.0, dispersion_eV_per_channel=1.0, n_channels=256))
    si = truth_spectrum_image(s, model, shape_px=(4, 5), fov_size_nm=(1.0, 1.0), electrons_per_pixel=1e5)
    assert si.shape == (4, 5, 256)
    y, x = scan_positions_nm((4, 5), fov_size_nm=(1.0, 1.0))
    one = expected_spectra(s, model, y[2, 3], x[2, 3], electrons=1e5)
    np.testing.assert_allclose(si[2, 3], one, rtol=1e-12)


def test_integrating_detector_is_poisson_with_gain_and_read_noise() -> None:
    rng = np.random.default_rng(11)
    lam = np.full((200, 500), 37.0)
    frame = IntegratingDetector().read(lam, rng)
    assert frame.mean() == pytest.approx(37.0, rel=0.005)
    assert frame.var() == pytest.approx(37.0, rel=0.02)  # Poisson: variance = mean
    frame = IntegratingDetector(counts_per_electron=4.0, read_noise_counts=3.0).read(lam, rng)
    assert frame.mean() == pytest.approx(4 * 37.0, rel=0.005)
    assert frame.var() == pytest.approx(16 * 37.0 + 9.0, rel=0.03)
    # dose scaling: the relative noise falls as 1/sqrt(dose)
    low, high = (IntegratingDetector().read(np.full(100000, d), rng) for d in (10.0, 1000.0))
    assert (low.std() / low.mean()) / (high.std() / high.mean()) == pytest.approx(10.0, rel=0.05)
    with pytest.raises(SimulatorParameterError, match="expected electron counts"):
        IntegratingDetector().read(np.array([-1.0]), rng)


def test_counting_detector_dead_pixels_efficiency_and_saturation() -> None:
    det = CountingDetector(shape=(64, 256), efficiency_mean=0.8, efficiency_spread=0.05, dead_pixel_fraction=0.01,
                           counter_bits=8, seed=3)
    rng = np.random.default_rng(0)
    frame = det.read(np.full((64, 256), 20.0), rng)
    assert det.dead_pixels.sum() > 0
    assert np.all(frame[det.dead_pixels] == 0)
    live = ~det.dead_pixels
    assert frame[live].mean() == pytest.approx(20.0 * det.efficiency_map[live].mean(), rel=0.01)
    assert frame.dtype == np.float32 and np.all(frame == np.round(frame))
    assert det.read(np.full((64, 256), 1e5), rng).max() == 255.0
    with pytest.raises(SimulatorParameterError, match="does not match"):
        det.read(np.zeros((8, 8)), rng)
