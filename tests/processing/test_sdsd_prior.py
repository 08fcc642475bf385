"""The temporal drift prior of SDSD (processing.alignment.sdsd_prior): against known drift it lowers the error where
the frames' own noise is not small against the random walk, keeps a jump of the specimen, leaves the shifts as
measured when no frame noise is detectable, reports a consistent posterior uncertainty, and gives the same result
in memory and in blocks."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
import scipy.ndimage

from processing.alignment.sdsd import align_stack, measure_pairs, solve_shifts
from processing.alignment.sdsd_blocks import FrameBlocks
from processing.alignment.sdsd_prior import MIN_FRAMES, smooth_drift, split_frame_noise
from processing.alignment.stack_filters import prefilter_spectra, sdsd_options, validate_stack
from processing.base import ParameterError
from processing.io.stacks import open_stack


def _drift(rng: np.random.Generator, n: int, walk_px: float, jump_px: float = 0.0, at: int = 10) -> np.ndarray:
    """Linear drift (up to 1 px/frame) + random walk, optional jump at frame ``at``; frame 0 = 0. (n, 2) px."""
    true = np.arange(n)[:, None] * rng.uniform(-1.0, 1.0, 2) + np.cumsum(rng.normal(0, walk_px, (n, 2)), axis=0)
    true[at:] += jump_px * np.array([0.6, -0.8])
    return true - true[0]


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((np.asarray(a) - np.asarray(b)) ** 2, axis=1))))


def _measured(true: np.ndarray, rng: np.random.Generator, noise_px: float) -> np.ndarray:
    """What a pair solve gives: truth + each frame's own error, frame-0 referenced."""
    y = true + rng.normal(0, noise_px, true.shape)
    return y - y[0]


@pytest.mark.parametrize("seed", range(5))
def test_prior_lowers_the_error_when_frame_noise_matters(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    true = _drift(rng, 30, walk_px=0.05)
    y = _measured(true, rng, 0.15)
    fit = smooth_drift(y)
    assert _rms(fit.shifts_px, true) < 0.8 * _rms(y, true)
    assert 0.05 < fit.frame_noise_px < 0.3 and fit.walk_px < 0.15          # the truth: 0.15 and 0.05
    assert fit.jumps == () and fit.shifts_px[0].tolist() == [0.0, 0.0]


def test_posterior_uncertainty_is_consistent_with_the_errors() -> None:
    z: list[float] = []
    for seed in range(20):
        rng = np.random.default_rng(200 + seed)
        true = _drift(rng, 30, walk_px=0.05)
        fit = smooth_drift(_measured(true, rng, 0.15))
        z.extend(((fit.shifts_px - true)[1:] / fit.uncertainty_px[1:]).ravel().tolist())
    assert 0.7 < float(np.sqrt(np.mean(np.square(z)))) < 1.4


@pytest.mark.parametrize("seed", range(4))
def test_a_jump_is_kept_not_smeared(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    true = _drift(rng, 24, walk_px=0.05, jump_px=5.0, at=12)
    y = _measured(true, rng, 0.15)
    fit = smooth_drift(y)
    assert fit.jumps == (11,)                                   # the step 11 -> 12
    step = fit.shifts_px[12] - fit.shifts_px[11]
    assert np.linalg.norm(step - (true[12] - true[11])) < 0.5
    assert _rms(fit.shifts_px, true) < _rms(y, true)            # still smoothed on both sides of the jump
    near = slice(10, 14)
    assert _rms(fit.shifts_px[near], true[near]) < 1.3 * _rms(y[near], true[near])
    # a Gaussian prior (no robust step) would smear it: the robust one is better next to the jump
    gaussian = smooth_drift(y, robust=False)
    assert gaussian.jumps == fit.jumps                          # the jump is a free offset in both


def test_no_detectable_frame_noise_leaves_the_shifts_as_measured() -> None:
    rng = np.random.default_rng(400)
    true = _drift(rng, 20, walk_px=0.5)                         # a rough random walk, tiny frame noise
    y = _measured(true, rng, 0.005)
    fit = smooth_drift(y)
    assert np.allclose(fit.shifts_px, y, atol=0.02)
    assert any("frame noise" in note for note in fit.notes)


def _image_series(seed: int, n: int = 16, size: int = 96, dose: float = 2.0, walk_px: float = 0.03,
                  jump_px: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    texture = scipy.ndimage.gaussian_filter(rng.normal(size=(size + 40, size + 40)), 3.0, mode="wrap")
    texture /= texture.std()
    true = _drift(rng, n, walk_px, jump_px=jump_px, at=n // 2)
    frames = [rng.poisson(dose * np.clip(1 + 0.25 * scipy.ndimage.shift(texture, s, order=3, mode="wrap")
                                         [20:20 + size, 20:20 + size], 0, None)) for s in true]
    return np.asarray(frames, np.float32), true


def test_align_stack_with_the_prior_against_simulated_truth() -> None:
    off, on = [], []
    for seed in range(3):
        frames, true = _image_series(500 + seed)
        plain = align_stack(frames)
        prior = align_stack(frames, drift_prior="random-walk")
        off.append(_rms(plain.shifts_px, true))
        on.append(_rms(prior.shifts_px, true))
        assert prior.drift_prior is not None and prior.drift_prior["walk_px"] < 0.2
        assert any(note.startswith("drift prior") for note in prior.notes)
        assert np.all(np.isfinite(prior.uncertainty_px)) and prior.to_dict()["drift_prior"] is not None
    assert max(b / a for a, b in zip(off, on)) < 0.9, (off, on)


def test_split_frame_noise_matches_the_frames_own_error() -> None:
    """The checkerboard split's estimate against the truth: each noisy frame registered to its noise-free self."""
    for seed, dose in ((800, 2.0), (801, 8.0)):
        frames, _true = _image_series(seed, n=16, dose=dose)
        nearly_clean, _ = _image_series(seed, n=16, dose=1e6)        # the same structure and drift (same seed)
        clean = nearly_clean / 1e6 * dose
        interleaved = np.empty((32,) + frames.shape[1:], np.float32)
        interleaved[0::2], interleaved[1::2] = clean, frames
        spectra = prefilter_spectra(validate_stack(interleaved), sdsd_options())
        own = np.asarray([m.shift_px for m in measure_pairs(spectra, [(2 * k, 2 * k + 1) for k in range(16)])])
        truth_sigma = float(np.sqrt(np.mean(own ** 2)))
        estimate, used = split_frame_noise(FrameBlocks(frames), sdsd_options())
        assert used == 16 and 0.6 * truth_sigma < estimate < 1.6 * truth_sigma, (estimate, truth_sigma)


def test_align_stack_keeps_a_jump_of_the_specimen() -> None:
    frames, true = _image_series(900, n=20, dose=3.0, jump_px=4.0)
    plain = align_stack(frames)
    prior = align_stack(frames, drift_prior="random-walk")
    assert prior.drift_prior is not None and prior.drift_prior["jumps"] == [9]
    step = prior.shifts_px[10] - prior.shifts_px[9]
    assert np.linalg.norm(step - (true[10] - true[9])) < 0.3
    assert _rms(prior.shifts_px, true) < _rms(plain.shifts_px, true)


def test_prior_in_blocks_equals_in_memory(tmp_path: pathlib.Path) -> None:
    frames, _true = _image_series(600, n=40, size=64, dose=4.0)
    path = tmp_path / "series.npy"
    np.save(path, frames)
    for options in ({"reference": "banded", "band_k": 3}, {"reference": "all"}, {"reference": "first"}):
        memory = align_stack(frames, drift_prior="random-walk", **options)
        stack = open_stack(path)
        blocks = align_stack(stack, block_frames=16, drift_prior="random-walk", **options)
        stack.close()
        assert np.array_equal(blocks.shifts_px, memory.shifts_px)
        assert np.array_equal(blocks.uncertainty_px, memory.uncertainty_px)
        assert blocks.drift_prior == memory.drift_prior


def test_prior_options_and_short_series() -> None:
    frames, _true = _image_series(700, n=MIN_FRAMES - 2, size=64, dose=5.0)
    result = align_stack(frames, drift_prior="random-walk")
    assert any("needs at least" in note for note in result.notes) and result.drift_prior is None
    with pytest.raises(ParameterError, match="drift_prior"):
        align_stack(frames, drift_prior="spline")
    with pytest.raises(ParameterError, match="drift_prior"):
        solve_shifts(len(frames), list(result.pairs), drift_prior="spline")
    off = solve_shifts(len(frames), list(result.pairs), drift_prior="off")
    assert np.array_equal(off[0], align_stack(frames).shifts_px)


def test_command_line_option(tmp_path: pathlib.Path) -> None:
    import json
    from processing.cli import main
    frames, _true = _image_series(1000, n=12, size=64, dose=3.0)
    path = tmp_path / "series.npy"
    np.save(path, frames)
    output = tmp_path / "aligned.hspy"
    assert main(["align", "--input", str(path), "--output", str(output), "--drift-prior", "random-walk"]) == 0
    shifts = json.loads((tmp_path / "aligned.hspy.shifts.json").read_text())
    memory = align_stack(frames, drift_prior="random-walk")
    assert np.array_equal(np.asarray(shifts["shifts_px"]), memory.shifts_px)
    assert shifts["drift_prior"]["walk_px"] == memory.drift_prior["walk_px"]   # type: ignore[index]
