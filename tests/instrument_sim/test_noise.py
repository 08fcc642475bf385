from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from instrument_sim.errors import SimulatorParameterError
from instrument_sim.noise import MAX_NORMAL_THRESHOLD, shot_noise


@pytest.mark.parametrize("lam", [0.02, 0.7, 3.3, 7.31, 11.9])
def test_exact_regime_matches_the_poisson_distribution(lam: float) -> None:
    counts = shot_noise(np.full(400_000, lam), np.random.default_rng(1))
    k = np.arange(0, int(lam + 6 * np.sqrt(lam)) + 3)
    observed = np.bincount(counts.astype(np.int64), minlength=len(k))[:len(k)]
    expected = scipy.stats.poisson.pmf(k, lam) * counts.size
    keep = expected > 20
    chi2 = float((((observed[keep] - expected[keep]) ** 2) / expected[keep]).sum())
    # chi-square with keep.sum()-1 degrees of freedom; 99.9 % quantile as bound (fixed seed: deterministic)
    assert chi2 < scipy.stats.chi2.ppf(0.999, keep.sum() - 1)
    assert counts.mean() == pytest.approx(lam, rel=0.01, abs=1e-3)


def test_normal_regime_mean_variance_and_independence() -> None:
    lam = np.random.default_rng(0).uniform(30.0, 300.0, (512, 512)).astype(np.float32)
    counts = shot_noise(lam, np.random.default_rng(2))
    z = (counts - lam) / np.sqrt(lam)
    assert abs(float(z.mean())) < 0.01
    assert float(z.var()) == pytest.approx(1.0 + 1.0 / (12 * float(lam.mean())), abs=0.01)
    assert abs(np.corrcoef(z[:, :-1].ravel(), z[:, 1:].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(z[:-1].ravel(), z[1:].ravel())[0, 1]) < 0.01


def test_mean_is_exact_between_table_grid_points() -> None:
    # the exact sampler rounds lam stochastically to a 1/32 grid; the mean must not be biased
    lam = 5.0 + 1.0 / 64.0
    counts = shot_noise(np.full(2_000_000, lam), np.random.default_rng(3))
    assert float(counts.mean()) == pytest.approx(lam, abs=3 * np.sqrt(lam / counts.size))


def test_seeded_and_shape_preserving() -> None:
    lam = np.full((3, 5, 7), 4.0)
    a = shot_noise(lam, np.random.default_rng(7))
    b = shot_noise(lam, np.random.default_rng(7))
    assert a.shape == lam.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, shot_noise(lam, np.random.default_rng(8)))
    assert shot_noise(np.zeros(10), np.random.default_rng(0)).max() == 0.0


def test_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(SimulatorParameterError, match=">= 0"):
        shot_noise(np.array([-1.0]), rng)
    with pytest.raises(SimulatorParameterError, match="finite"):
        shot_noise(np.array([np.nan]), rng)
    with pytest.raises(SimulatorParameterError, match="normal_threshold"):
        shot_noise(np.ones(3), rng, normal_threshold=MAX_NORMAL_THRESHOLD + 1)
