"""SDSD alignment against known shifts: pair conventions, weighting, rejection, uncertainty, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

from processing.alignment.registration import register_translation
from processing.alignment.sdsd import align_stack, measure_pairs, pair_list, solve_shifts, PairMeasurement
from processing.alignment.stack_filters import prefilter_spectra, sdsd_options, validate_stack
from processing.alignment.stack_shift import RunningReference, apply_shifts
from processing.base import InputError, ParameterError


def _series(seed: int, n: int = 12, size: int = 160, dose: float = 10.0, contrast_flip: bool = False,
            morph: bool = False):
    """Drifting low-dose series (linear drift + random walk) with known shifts. ``morph``: the structure changes
    from one texture to another along the series (EFTEM below/above an edge); ``contrast_flip``: the contrast
    reverses along the series (focal series)."""
    rng = np.random.default_rng(seed)
    textures = [scipy.ndimage.gaussian_filter(rng.normal(size=(size + 80, size + 80)), 3.0, mode="wrap")
                for _ in range(2)]
    textures = [t / t.std() for t in textures]
    walk = np.cumsum(rng.normal(0, 0.6, (n, 2)), axis=0) + np.arange(n)[:, None] * rng.uniform(-1, 1, 2)
    true = walk - walk[0]
    frames = []
    for k, s in enumerate(true):
        contrast = 0.3 * (np.cos(np.pi * k / (n - 1)) if contrast_flip else 1.0) + (0.05 if contrast_flip else 0.0)
        a = k / (n - 1) if morph else 0.0
        big = (1 - a) * textures[0] + a * textures[1]
        clean = 1.0 + contrast * scipy.ndimage.shift(big, s, order=3, mode="wrap")[40:40 + size, 40:40 + size]
        frames.append(rng.poisson(dose * np.clip(clean, 0, None)))
    return np.asarray(frames, dtype=np.float32), true


def _rms(a, b):
    return float(np.sqrt(np.mean(np.sum((np.asarray(a) - np.asarray(b)) ** 2, axis=1))))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_all_pairs_recover_known_shifts_at_low_dose(seed):
    frames, true = _series(seed)
    result = align_stack(frames, reference="all")
    assert _rms(result.shifts_px, true) < 0.15
    assert result.shifts_px[0].tolist() == [0.0, 0.0]
    assert np.all(np.isfinite(result.uncertainty_px))
    assert len(result.pairs) == 12 * 11 // 2


def test_pair_convention_matches_register_translation():
    frames, true = _series(4, n=2, dose=1000.0)
    spectra = prefilter_spectra(validate_stack(frames), sdsd_options())
    pair = measure_pairs(spectra, [(0, 1)])[0]
    ncc = register_translation(frames[0], frames[1], lowpass_sigma_px=2.0)
    assert np.allclose(pair.shift_px, ncc.shift_px, atol=0.1)
    assert np.allclose(pair.shift_px, true[1], atol=0.1)
    assert 0.5 < pair.correlation <= 1.0


def test_sdsd_beats_first_frame_reference_when_the_structure_changes():
    errors: dict[str, list[float]] = {"all": [], "first": []}
    for seed in range(5):
        frames, true = _series(10 + seed, n=16, dose=5.0, morph=True)
        for mode in errors:
            errors[mode].append(_rms(align_stack(frames, reference=mode).shifts_px, true))
    assert np.median(errors["all"]) < 0.5  # SDSD stays sub-pixel
    assert np.median(errors["all"]) <= 0.6 * np.median(errors["first"])


def test_contrast_reversal_needs_the_inverted_contrast_option():
    frames, true = _series(11, n=12, dose=20.0, contrast_flip=True)
    plain = _rms(align_stack(frames).shifts_px, true)
    inverted = align_stack(frames, inverted_contrast=True)
    assert _rms(inverted.shifts_px, true) < 0.5 < plain


def test_banded_and_previous_modes():
    frames, true = _series(5, n=14)
    banded = align_stack(frames, reference="banded", band_k=3)
    assert len(banded.pairs) == sum(min(3, 13 - i) for i in range(14))
    assert _rms(banded.shifts_px, true) < 0.2
    previous = align_stack(frames, reference="previous")
    assert np.isnan(previous.uncertainty_px[1:]).all()
    assert any("uncertainty cannot be estimated" in note for note in previous.notes)


def test_inconsistent_pair_is_rejected():
    rng = np.random.default_rng(0)
    true = np.cumsum(rng.normal(0, 1, (8, 2)), axis=0)
    true -= true[0]
    pairs = [PairMeasurement(i, j, tuple(true[j] - true[i] + rng.normal(0, 0.02, 2)), 0.8)
             for i, j in pair_list(8, "all")]
    bad_index = 5
    i, j = pairs[bad_index].i, pairs[bad_index].j
    pairs[bad_index] = PairMeasurement(i, j, (7.0, -9.0), 0.9)
    shifts, sigma, rejected, rms, notes = solve_shifts(8, pairs)
    assert rejected == ((i, j),)
    assert _rms(shifts, true) < 0.05
    assert np.all(sigma[1:] < 0.05)


def test_region_and_weights():
    frames, true = _series(6, n=6, dose=50.0)
    result = align_stack(frames, region=(20, 30, 140, 150))
    assert _rms(result.shifts_px, true) < 0.15
    with pytest.raises(ParameterError, match="not inside"):
        align_stack(frames, region="0,0,500,500")


def test_apply_shifts_aligns_and_sums():
    frames, true = _series(7, n=6, dose=1e5)
    aligned = apply_shifts(frames, true, method="spline", crop="crop")
    ref = aligned.frames[0]
    for k in range(1, 6):
        assert np.corrcoef(ref.ravel(), aligned.frames[k].ravel())[0, 1] > 0.97
    assert np.allclose(aligned.total, aligned.frames.sum(axis=0), rtol=1e-5)
    padded = apply_shifts(frames, true, method="fourier", crop="pad")
    assert padded.frames.shape[1] >= 160 and padded.coverage.max() == 6
    assert np.isnan(padded.frames).any()


def test_running_reference_tracks_drift():
    frames, true = _series(8, n=10, dose=30.0)
    ref = RunningReference()
    measured = np.asarray([ref.update(f) for f in frames])
    assert _rms(measured, true) < 0.3


@pytest.mark.parametrize("frames, message", [
    (np.ones((1, 32, 32)), "at least 2"),
    ([np.ones((32, 32)), np.ones((30, 32))], "different shapes"),
    (np.zeros((3, 32, 32)), "constant"),
    (np.full((3, 32, 32), np.nan), "NaN"),
    (np.ones((3, 8, 8)), "16x16"),
])
def test_bad_input_messages(frames, message):
    with pytest.raises(InputError, match=message):
        align_stack(frames)


def test_bad_options():
    frames, _ = _series(9, n=3)
    with pytest.raises(ParameterError):
        align_stack(frames, reference="middle")
    with pytest.raises(ParameterError, match="unknown"):
        align_stack(frames, upsample=3)
    with pytest.raises(ParameterError, match="must exceed"):
        align_stack(frames, lowpass_sigma_px=5, highpass_sigma_px=3)


def test_variance_weights_follow_peak_sharpness_and_coherence():
    from processing.alignment.sdsd import pair_weight
    # sharper peak or higher coherence -> more information -> larger weight
    assert pair_weight(0.3, 0.2) > pair_weight(0.3, 0.1) > 0
    assert pair_weight(0.6, 0.1) / pair_weight(0.3, 0.1) > 2.0   # r / (1 - r^2), not r
    # pairs of equal correlation maximum but broad peaks (and 10x noisier shifts) count less than sharp ones
    rng = np.random.default_rng(3)
    true = np.cumsum(rng.normal(0, 1, (10, 2)), axis=0)
    true -= true[0]
    errors = {"variance": [], "correlation": []}
    for trial in range(20):
        pairs = []
        for i, j in pair_list(10, "all"):
            sharp = j - i == 1
            noise = 0.03 if sharp else 0.3
            pairs.append(PairMeasurement(i, j, tuple(true[j] - true[i] + rng.normal(0, noise, 2)), 0.3,
                                         0.1 if sharp else 0.001))
        for mode in errors:
            shifts = solve_shifts(10, pairs, weighting=mode, reject_sigma=0)[0]
            errors[mode].append(_rms(shifts, true))
    assert np.median(errors["variance"]) < 0.7 * np.median(errors["correlation"])
    with pytest.raises(ParameterError, match="weighting"):
        solve_shifts(10, pairs, weighting="uniform")


def test_distant_pairs_that_err_more_are_weighted_down_from_the_residuals():
    # same correlation and no curvature known (uniform prior weights), but the pair error grows with separation
    # (structure changing along the series): the per-separation variance estimated from the residuals helps
    rng = np.random.default_rng(5)
    true = np.cumsum(rng.normal(0, 1, (16, 2)), axis=0)
    true -= true[0]
    errors = {"variance": [], "correlation": []}
    for trial in range(10):
        pairs = [PairMeasurement(i, j, tuple(true[j] - true[i] + rng.normal(0, 0.01 * (j - i) ** 2, 2)), 0.3)
                 for i, j in pair_list(16, "all")]
        for mode in errors:
            errors[mode].append(_rms(solve_shifts(16, pairs, weighting=mode, reject_sigma=0)[0], true))
    assert np.median(errors["variance"]) < 0.7 * np.median(errors["correlation"])
