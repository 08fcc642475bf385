"""Known-answer tests of processing.alignment.registration on synthetic images shifted by a known amount."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

from processing.base import InputError, ParameterError
from processing.alignment.registration import ncc_surface, prefilter, register_translation


def _specimen(rng: np.random.Generator, n: int = 96, blobs: int = 60) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    img = np.zeros((n, n))
    for _ in range(blobs):
        y, x = rng.uniform(0, n, 2)
        s = rng.uniform(1.0, 2.5)
        img += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
    return img


def _pair(rng: np.random.Generator, shift: tuple[float, float], dose: float | None) -> tuple[np.ndarray, np.ndarray]:
    big = _specimen(rng)
    ref = big[16:80, 16:80]
    mov = np.clip(scipy.ndimage.shift(big, shift, order=3), 0, None)[16:80, 16:80]
    if dose is not None:
        ref = rng.poisson(ref * dose) / dose
        mov = rng.poisson(mov * dose) / dose
    return ref, mov


@pytest.mark.parametrize("dose, tolerance_px", [(None, 0.02), (20.0, 0.08)])
def test_subpixel_shift_recovered(dose: float | None, tolerance_px: float) -> None:
    rng = np.random.default_rng(5)
    errors = []
    for _ in range(8):
        shift = tuple(rng.uniform(-5, 5, 2))
        ref, mov = _pair(rng, shift, dose)
        result = register_translation(ref, mov)
        errors.append(np.subtract(result.shift_px, shift))
        assert result.quality > 0.8
    assert float(np.sqrt(np.mean(np.square(errors)))) < tolerance_px


def test_fourier_shift_periodic_image() -> None:
    rng = np.random.default_rng(1)
    img = scipy.ndimage.gaussian_filter(rng.normal(size=(64, 64)), 2.0, mode="wrap")
    moved = np.fft.ifft2(scipy.ndimage.fourier_shift(np.fft.fft2(img), (1.37, -2.61))).real
    result = register_translation(img, moved)
    assert result.shift_px == pytest.approx((1.37, -2.61), abs=0.05)


def test_refinement_beats_plain_parabola_on_clean_data() -> None:
    rng = np.random.default_rng(2)
    plain, refined = [], []
    for _ in range(6):
        shift = tuple(rng.uniform(-3, 3, 2))
        ref, mov = _pair(rng, shift, None)
        plain.append(np.subtract(register_translation(ref, mov, refine_iterations=0).shift_px, shift))
        refined.append(np.subtract(register_translation(ref, mov, refine_iterations=1).shift_px, shift))
    assert np.sqrt(np.mean(np.square(refined))) < np.sqrt(np.mean(np.square(plain)))


def test_quality_low_for_unrelated_images_and_contrast_invariant() -> None:
    rng = np.random.default_rng(3)
    a = _specimen(rng)[:64, :64]
    b = _specimen(rng)[:64, :64]
    assert register_translation(a, b).quality < 0.5
    # brightness and contrast changes (beam damage, dose) do not change the NCC
    r = register_translation(a, 3.0 * a + 7.0)
    assert r.quality == pytest.approx(1.0, abs=1e-6)
    assert r.shift_px == pytest.approx((0.0, 0.0), abs=1e-6)


def test_ncc_surface_is_a_correlation_coefficient() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=(16, 20))
    b = np.roll(a, (2, -3), axis=(0, 1))
    ncc, overlap = ncc_surface(a, b)
    assert ncc.shape == (31, 39)
    assert overlap[15, 19] == 16 * 20
    # direct computation of the NCC over the overlap for shift (2, -3)
    direct = np.corrcoef(a[:14, 3:].ravel(), b[2:, :17].ravel())[0, 1]
    assert ncc[15 + 2, 19 - 3] == pytest.approx(direct, abs=1e-9)
    assert ncc.max() <= 1.0 and ncc.min() >= -1.0


def test_max_shift_limits_the_search() -> None:
    rng = np.random.default_rng(6)
    ref, mov = _pair(rng, (6.0, 0.0), None)
    assert register_translation(ref, mov).shift_px[0] == pytest.approx(6.0, abs=0.05)
    assert abs(register_translation(ref, mov, max_shift_px=3).shift_px[0]) <= 3.5


def test_prefilter_highpass_removes_gradient() -> None:
    ramp = np.tile(np.linspace(0, 100, 128), (128, 1))
    out = prefilter(ramp, lowpass_sigma_px=1.0, highpass_sigma_px=8.0)
    # away from the edges (kernel truncated at 4 sigma = 32 px) a linear gradient is removed exactly
    assert np.abs(out[34:-34, 34:-34]).max() < 1e-6 * 100


def test_bad_input_messages() -> None:
    with pytest.raises(InputError, match="same size"):
        register_translation(np.ones((8, 8)), np.ones((8, 9)))
    with pytest.raises(InputError, match="2-D"):
        register_translation(np.ones(8), np.ones(8))
    with pytest.raises(InputError, match="NaN"):
        register_translation(np.full((8, 8), np.nan), np.ones((8, 8)))
    with pytest.raises(ParameterError, match="highpass"):
        prefilter(np.ones((8, 8)), lowpass_sigma_px=2.0, highpass_sigma_px=1.0)


def test_periodic_lattice_prefers_the_smallest_shift() -> None:
    """A crystal lattice (period 5.3 px) with a little non-periodic texture, noisy: the plain NCC maximum can jump a
    lattice period; weighting by the overlap (the default) recovers the true small shift."""
    rng = np.random.default_rng(8)
    n, period = 96, 5.3
    yy, xx = np.mgrid[:n, :n].astype(float)
    lattice = np.cos(2 * np.pi * yy / period) + np.cos(2 * np.pi * xx / period)
    texture = scipy.ndimage.gaussian_filter(rng.normal(size=(n, n)), 6.0)
    big = lattice + 5.0 * texture + 3.0
    for _ in range(6):
        shift = tuple(rng.uniform(-1.0, 1.0, 2))
        ref = big[16:48, 16:48]
        mov = scipy.ndimage.shift(big, shift, order=3)[16:48, 16:48]
        ref = rng.poisson(ref * 10) / 10.0
        mov = rng.poisson(mov * 10) / 10.0
        weighted = register_translation(ref, mov, max_shift_px=10)
        assert weighted.shift_px == pytest.approx(shift, abs=0.25)
