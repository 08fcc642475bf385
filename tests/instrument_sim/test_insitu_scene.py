from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage
from skimage.registration import phase_cross_correlation

from instrument_sim.drift import DriftModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.insitu_scene import InSituScene, ParticleTruth


def _segment_centroids(frame: np.ndarray, *, min_area_px: int = 400) -> np.ndarray:
    """Centroids (y, x) of dark blobs, found without any knowledge of the truth."""
    smooth = scipy.ndimage.gaussian_filter(frame.astype(np.float64), 4.0)
    background = np.median(smooth)
    mask = smooth < 0.9 * background
    labels, n = scipy.ndimage.label(mask)
    index = np.arange(1, n + 1)
    areas = scipy.ndimage.sum_labels(mask, labels, index)
    centroids = np.array(scipy.ndimage.center_of_mass(mask, labels, index)).reshape(-1, 2)
    result: np.ndarray = centroids[areas >= min_area_px]
    return result


def _lattice_peak(frame: np.ndarray, p: ParticleTruth, *, size: int = 128) -> tuple[float, float, float]:
    """(orientation_deg, spacing_px, peak / mean ratio) of the strongest high-frequency FFT peak around a particle."""
    cy, cx = (int(round(c)) for c in p.centre_px)
    half = size // 2
    window = frame[cy - half:cy + half, cx - half:cx + half].astype(np.float64)
    window = (window - window.mean()) * np.outer(np.hanning(size), np.hanning(size))
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(window, s=(4 * size, 4 * size)))) ** 2
    n = 4 * size
    fy = (np.arange(n) - n // 2)[:, np.newaxis] / n
    fx = (np.arange(n) - n // 2)[np.newaxis, :] / n
    f = np.hypot(fy, fx)
    band = (f > 0.14) & (f < 0.35)
    masked = np.where(band, spectrum, 0.0)
    iy, ix = np.unravel_index(np.argmax(masked), masked.shape)
    ky, kx = fy[iy, 0], fx[0, ix]
    orientation = math.degrees(math.atan2(-ky, kx)) % 180.0  # counter-clockwise on screen (rows go down)
    return orientation, 1.0 / math.hypot(ky, kx), float(masked[iy, ix] / spectrum[band].mean())


def _angle_difference_deg(a: float, b: float) -> float:
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


@pytest.fixture(scope="module")
def scene() -> InSituScene:
    return InSituScene(shape_px=(768, 768), seed=7, n_particles=8)


def test_particles_are_rendered_at_the_truth_centres_even_after_large_drift(scene: InSituScene) -> None:
    for offset_nm in ((0.0, 0.0), (37.3, -81.7)):  # the second one wraps around the periodic sample
        frame = scene.render(3.0, exposure_s=0.5, rng=np.random.default_rng(1), offset_nm=offset_nm)
        truth = scene.truth(3.0, offset_nm=offset_nm)
        found = _segment_centroids(frame)
        inside = [p for p in truth.particles if p.inside_frame]
        assert len(inside) >= 3
        for p in inside:
            distance = np.hypot(*(found - np.array(p.centre_px)).T).min()
            assert distance < 1.0, (offset_nm, p)


def test_lattice_orientation_and_spacing_visible_in_fft(scene: InSituScene) -> None:
    t = 5.0
    frame = scene.render(t, exposure_s=0.05, rng=np.random.default_rng(2))
    truth = scene.truth(t)
    checked = 0
    for p in truth.particles:
        if p.molten or not (p.radius_px > 35 and 64 <= min(p.centre_px) and max(p.centre_px) < 768 - 64):
            continue
        orientation, spacing_px, ratio = _lattice_peak(frame, p)
        assert _angle_difference_deg(orientation, p.orientation_deg) < 2.0, p
        assert spacing_px == pytest.approx(p.spacing_px, rel=0.03)
        assert ratio > 100.0
        checked += 1
    assert checked >= 2


def test_molten_particle_has_no_lattice_peak_and_recrystallises_with_new_orientation() -> None:
    scene = InSituScene(shape_px=(512, 512), seed=3, n_particles=3, radius_range_nm=(3.0, 3.5),
                        melt_period_s=10.0, molten_duration_s=3.0)
    truth0 = scene.truth(0.0)
    p0 = next(p for p in truth0.particles if 64 <= min(p.centre_px) and max(p.centre_px) < 512 - 64)
    # sample one time in each state over two cycles, from the truth
    times = np.arange(0.0, 25.0, 0.5)
    states = [scene.truth(float(t)).particles[p0.index] for t in times]
    molten_times = [float(t) for t, s in zip(times, states) if s.molten]
    assert molten_times, "the particle never melts in 25 s"
    for t in molten_times[:2]:
        frame = scene.render(t, exposure_s=0.05, rng=np.random.default_rng(4))
        _, _, ratio = _lattice_peak(frame, scene.truth(t).particles[p0.index])
        assert ratio < 25.0  # speckle only: measured 10-17; crystalline: > 300
    crystalline_by_cycle: dict[int, ParticleTruth] = {}
    for t, s in zip(times, states):
        if not s.molten:
            crystalline_by_cycle.setdefault(s.cycle, scene.truth(float(t)).particles[p0.index])
    assert len(crystalline_by_cycle) >= 2
    cycles = sorted(crystalline_by_cycle)
    a, b = crystalline_by_cycle[cycles[0]], crystalline_by_cycle[cycles[1]]
    assert _angle_difference_deg(a.orientation_deg, b.orientation_deg) >= 20.0
    for p in (a, b):
        t = next(float(t) for t, s in zip(times, states) if s.cycle == p.cycle and not s.molten)
        frame = scene.render(t, exposure_s=0.05, rng=np.random.default_rng(5))
        orientation, _, ratio = _lattice_peak(frame, p)
        assert ratio > 100.0
        assert _angle_difference_deg(orientation, p.orientation_deg) < 2.0


def test_drift_moves_the_image_by_the_truth_offset() -> None:
    drift = DriftModel(rate_nm_per_s=(0.8, -0.5), random_walk_nm_per_sqrt_s=0.3, seed=2)
    scene = InSituScene(shape_px=(512, 512), seed=5, n_particles=4, melt_period_s=None, drift=drift)
    f0 = scene.render(0.0, exposure_s=0.2, rng=np.random.default_rng(0))
    for t in (1.7, 4.2):
        f1 = scene.render(t, exposure_s=0.2, rng=np.random.default_rng(1))
        shift, _, _ = phase_cross_correlation(f1, f0, upsample_factor=20)  # type: ignore[no-untyped-call]
        expected = scene.truth(t).offset_px - scene.truth(0.0).offset_px
        np.testing.assert_allclose(shift, expected, atol=0.15)
        np.testing.assert_allclose(scene.truth(t).offset_nm, drift.offset_nm(t))


def test_shot_noise_variance_equals_mean_on_a_flat_region() -> None:
    flat = InSituScene(shape_px=(256, 256), n_particles=0, support_contrast=0.0)
    for dose in (4.0, 150.0):  # exact Poisson and normal-approximation regimes
        frame = flat.render(0.0, exposure_s=0.0, dose_e_per_px=dose, rng=np.random.default_rng(3))
        assert frame.mean() == pytest.approx(dose, rel=0.01)
        assert frame.var() == pytest.approx(frame.mean(), rel=0.03)
        assert np.array_equal(frame, np.round(frame))
    # dose from exposure and the dose rate
    frame = flat.render(0.0, exposure_s=0.05, rng=np.random.default_rng(3))
    assert frame.mean() == pytest.approx(flat.dose_rate_e_per_px_per_s * 0.05, rel=0.01)


def test_seed_reproducibility(scene: InSituScene) -> None:
    again = InSituScene(shape_px=(768, 768), seed=7, n_particles=8)
    other = InSituScene(shape_px=(768, 768), seed=8, n_particles=8)
    a = scene.render(2.0, exposure_s=0.05, rng=np.random.default_rng(9))
    b = again.render(2.0, exposure_s=0.05, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    assert scene.truth(2.0) .particles[0] == again.truth(2.0).particles[0]
    assert scene.truth(2.0).particles[0].centre_px != other.truth(2.0).particles[0].centre_px
    c = scene.render(2.0, exposure_s=0.05, rng=np.random.default_rng(10))
    assert not np.array_equal(a, c)


def test_area_and_binning_are_consistent_with_the_full_frame(scene: InSituScene) -> None:
    full = scene.render(1.0, exposure_s=0.05, rng=np.random.default_rng(0), noise=False)
    area = scene.render(1.0, exposure_s=0.05, rng=np.random.default_rng(0), noise=False, area=(100, 50, 300, 450))
    np.testing.assert_allclose(area, full[100:300, 50:450], rtol=1e-5)
    binned = scene.render(1.0, exposure_s=0.05, rng=np.random.default_rng(0), noise=False, binning=4)
    assert binned.shape == (192, 192)
    np.testing.assert_allclose(binned, full.reshape(192, 4, 192, 4).sum(axis=(1, 3)), rtol=1e-4)


def test_bad_parameters_raise_clear_errors(scene: InSituScene) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(SimulatorParameterError, match="area"):
        scene.render(0.0, exposure_s=0.05, rng=rng, area=(0, 0, 2000, 10))
    with pytest.raises(SimulatorParameterError, match="binning"):
        scene.render(0.0, exposure_s=0.05, rng=rng, binning=0)
    with pytest.raises(SimulatorParameterError, match="t_s"):
        scene.render(-1.0, exposure_s=0.05, rng=rng)
    with pytest.raises(SimulatorParameterError, match="lattice_spacings_nm"):
        InSituScene(shape_px=(64, 64), pixel_size_nm=0.1, lattice_spacings_nm=(0.2,))
    with pytest.raises(SimulatorParameterError, match="molten_duration_s"):
        InSituScene(shape_px=(64, 64), melt_period_s=5.0, molten_duration_s=6.0)
    with pytest.raises(SimulatorParameterError, match="cannot place"):
        InSituScene(shape_px=(64, 64), n_particles=50)


def test_particles_have_a_sharp_edge_at_the_truth_radius() -> None:
    # faceted particles: flat projected thickness, a 1.5 px edge ramp whose middle is the truth radius
    scene = InSituScene(shape_px=(512, 512), seed=4, n_particles=6, support_contrast=0.0, fringe_contrast=0.0,
                        melt_period_s=None)
    clean = scene.clean_image(0.0, offset_nm=(0.013, -0.021))  # sub-pixel offset: cubic interpolation
    truth = scene.truth(0.0, offset_nm=(0.013, -0.021))
    yy, xx = np.mgrid[0:512, 0:512]
    checked = 0
    for p in truth.particles:
        if not p.inside_frame:
            continue
        r = np.hypot(yy - p.centre_px[0], xx - p.centre_px[1])
        near = r < p.radius_px + 6
        dark = clean[near] < 1.0 - scene.thickness_contrast / 2  # below half contrast
        assert dark.sum() == pytest.approx(math.pi * p.radius_px ** 2, rel=0.01)
        # flat inside and outside (beyond the 2 px reach of the cubic interpolation's overshoot at the ramp's ends)
        np.testing.assert_allclose(clean[r < p.radius_px - 3.0], 1.0 - scene.thickness_contrast, atol=0.002)
        np.testing.assert_allclose(clean[(r > p.radius_px + 3.0) & near], 1.0, atol=0.002)
        checked += 1
    assert checked >= 2
    with pytest.raises(SimulatorParameterError, match="edge_width_px"):
        InSituScene(shape_px=(64, 64), edge_width_px=5.0)
