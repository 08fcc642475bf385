"""The SDSD low-pass chosen from the stack (option ``lowpass_auto``, processing.alignment.stack_band), against known
shifts: a fine texture gets a narrower band and a lower error; a coarse texture and a fine lattice keep the first
pass's band (the figure's flat there, and the lattice's Bragg spots are left out of it); the alias guard refuses a
band whose lattice aliases compete with the true peak; the choice is the result's first note; options off leave the
result as it was."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

from processing.alignment.sdsd import align_stack
from processing.alignment.stack_band import choose_lowpass_sigma
from processing.alignment.stack_filters import sdsd_options


def _series(seed: int, *, texture_px: float, contrast: float, dose: float = 10.0, lattice: float = 0.0,
            period_px: float = 2.4, n: int = 12, size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size) Poisson frames of a drifting texture (Gaussian-filtered noise, ``texture_px`` sigma) plus,
    optionally, a square lattice of ``period_px`` rendered exactly at each shifted position; true shifts (n, 2)."""
    rng = np.random.default_rng(seed)
    texture = scipy.ndimage.gaussian_filter(rng.normal(size=(size + 80, size + 80)), texture_px, mode="wrap")
    texture /= texture.std()
    walk = np.cumsum(rng.normal(0, 0.6, (n, 2)), axis=0) + np.arange(n)[:, None] * rng.uniform(-1, 1, 2)
    true = walk - walk[0]
    yy, xx = np.mgrid[0:size, 0:size]
    frames = []
    for s in true:
        moved = scipy.ndimage.shift(texture, s, order=3, mode="wrap")[40:40 + size, 40:40 + size]
        grid = np.cos(2 * np.pi * (yy - s[0]) / period_px) + np.cos(2 * np.pi * (xx - s[1]) / period_px)
        frames.append(rng.poisson(dose * np.clip(1.0 + contrast * moved + lattice * grid, 0, None)))
    return np.asarray(frames, dtype=np.float32), true


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((np.asarray(a) - np.asarray(b)) ** 2, axis=1))))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_fine_texture_gets_a_narrower_band_and_a_lower_error(seed: int) -> None:
    frames, true = _series(seed, texture_px=1.5, contrast=0.35)
    fixed = align_stack(frames)
    auto = align_stack(frames, lowpass_auto=True)
    assert auto.notes[0].startswith("low-pass from data: 0.7 px") or auto.notes[0].startswith(
        "low-pass from data: 1 px"), auto.notes[0]
    # measured: 0.030 -> 0.023, 0.042 -> 0.029, 0.034 -> 0.026, 0.074 -> 0.038 px
    assert _rms(auto.shifts_px, true) < 0.9 * _rms(fixed.shifts_px, true)


@pytest.mark.parametrize("kind", ["coarse", "lattice"])
def test_flat_figure_and_fine_lattice_keep_the_first_pass_band(kind: str) -> None:
    """A coarse low-contrast texture at 3 counts/px (the figure barely changes from 2 to 2.8 px) and a 2.4 px
    lattice over a coarse texture (its Bragg spots would triple the figure of a 1 px band, whose pair errors are in
    fact ~1.9x larger): the result is the first pass's, unchanged."""
    options = dict(texture_px=6.0, contrast=0.15, dose=3.0) if kind == "coarse" else \
        dict(texture_px=5.0, contrast=0.1, lattice=0.3)
    for seed in (1, 2):
        frames, _true = _series(seed, **options)  # type: ignore[arg-type]
        fixed = align_stack(frames)
        auto = align_stack(frames, lowpass_auto=True)
        assert auto.notes[0].startswith("low-pass from data: 2 px (first pass at 2 px"), auto.notes[0]
        np.testing.assert_array_equal(auto.shifts_px, fixed.shifts_px)
        assert auto.notes[1:] == fixed.notes


def test_alias_guard_refuses_the_band_that_lets_the_lattice_compete() -> None:
    """Without the guard the precision figure of the 2.4 px lattice picks the widest band (0.5 px), where the
    lattice's aliases compete and SDSD errs far more; with it that band's alias margin is below 5 sigma."""
    frames, true = _series(2, texture_px=5.0, contrast=0.1, lattice=0.3)
    first = align_stack(frames)
    options = sdsd_options()
    guarded = choose_lowpass_sigma(lambda k: frames[k], len(frames), first.shifts_px, options)
    unguarded = choose_lowpass_sigma(lambda k: frames[k], len(frames), first.shifts_px, options, guard_sigma=0.0)
    assert unguarded.lowpass_sigma_px == 0.5
    assert guarded.figures[0.5][1] < 5.0 and guarded.lowpass_sigma_px == 2.0
    wide = align_stack(frames, lowpass_sigma_px=0.5)
    assert _rms(wide.shifts_px, true) > 1.5 * _rms(first.shifts_px, true)    # measured 0.87 vs 0.27 px


def test_periodic_content_everywhere_keeps_the_default_and_says_so() -> None:
    """A strong lattice with almost nothing else (no band keeps its aliases 5 sigma below the true peak): the
    first pass's low-pass stays and the note says why."""
    frames, _true = _series(3, texture_px=5.0, contrast=0.02, lattice=0.4, period_px=3.0)
    auto = align_stack(frames, lowpass_auto=True)
    assert "no band kept periodic (lattice) aliases" in auto.notes[0] and "stays 2 px" in auto.notes[0]
    np.testing.assert_array_equal(auto.shifts_px, align_stack(frames).shifts_px)


def test_option_declared_once_and_off_by_default() -> None:
    assert sdsd_options()["lowpass_auto"] is False
    assert sdsd_options(lowpass_auto=True)["lowpass_auto"] is True
    frames, _true = _series(5, texture_px=3.0, contrast=0.3, n=6, size=96)
    plain = align_stack(frames)
    assert not any(note.startswith("low-pass from data") for note in plain.notes)


def test_region_and_highpass_are_respected() -> None:
    """The choice looks at the region only, and never offers a low-pass at or above the high-pass."""
    frames, _true = _series(6, texture_px=1.5, contrast=0.35, n=8)
    options = dict(region=(20, 20, 120, 140), highpass_sigma_px=1.2, lowpass_sigma_px=0.5)
    first = align_stack(frames, **options)  # type: ignore[arg-type]
    choice = choose_lowpass_sigma(lambda k: frames[k], len(frames), first.shifts_px, sdsd_options(**options))
    assert set(choice.figures) == {0.5, 0.7, 1.0}
    assert choice.lowpass_sigma_px in (0.5, 0.7, 1.0)
    cropped = choose_lowpass_sigma(lambda k: frames[k][20:120, 20:140], len(frames), first.shifts_px,
                                   sdsd_options(highpass_sigma_px=1.2, lowpass_sigma_px=0.5))
    for sigma, (info, margin) in choice.figures.items():
        assert cropped.figures[sigma][0] == pytest.approx(info, rel=1e-6)
        assert cropped.figures[sigma][1] == pytest.approx(margin, rel=1e-6)
