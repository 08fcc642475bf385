"""Area-weighted line-plot rebinning (issue 14: Swift's own rebin held a (plot width x points) matrix per repaint)."""
from __future__ import annotations

import numpy as np
import pytest

from processing.live.line_rebin import rebin_1d_area


def _reference(src: np.ndarray, n_bins: int) -> np.ndarray:
    """The definition written out: overlap of sample [j, j+1) with bin [i r, (i+1) r), times n_bins / n."""
    n = src.shape[0]
    r = n / n_bins
    out = np.zeros(n_bins)
    for i in range(n_bins):
        lo, hi = i * r, (i + 1) * r
        total = 0.0
        for j in range(int(np.floor(lo)), min(n, int(np.ceil(hi)))):
            w = min(j + 1, hi) - max(j, lo)
            if w > 0:
                total += w * float(src[j])
        out[i] = total * n_bins / n
    return out


@pytest.mark.parametrize("seed", range(6))
def test_equals_the_overlap_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    n_bins = int(rng.integers(1, n))
    src = rng.normal(size=n) * 100 + 5
    got = rebin_1d_area(src, n_bins)
    assert got.shape == (n_bins,) and got.dtype == np.float64
    np.testing.assert_allclose(got, _reference(src, n_bins), rtol=1e-10, atol=1e-9)  # float rounding only


def test_a_constant_stays_constant_and_the_mean_is_kept() -> None:
    src = np.full(1000, 3.5, np.float32)
    np.testing.assert_allclose(rebin_1d_area(src, 333), 3.5, rtol=1e-12)
    ramp = np.arange(10_000, dtype=np.float64)
    binned = rebin_1d_area(ramp, 450)
    assert binned.mean() == pytest.approx(ramp.mean(), rel=1e-12)


def test_nan_spoils_only_the_bins_it_overlaps() -> None:
    src = np.ones(100)
    src[10] = np.nan  # bins of 4 samples: only bin 2 covers sample 10
    out = rebin_1d_area(src, 25)
    assert np.isnan(out[2]) and np.isnan(out).sum() == 1
    src = np.ones(10)
    src[5] = np.nan  # 3 bins of 3.33 samples: sample 5 lies in bin 1 only ([3.33, 6.67))
    out = rebin_1d_area(src, 3)
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2]]).all()


@pytest.mark.parametrize("src, n_bins", [(np.ones((4, 4)), 2), (np.ones(10, complex), 3), (np.ones(10), 10),
                                         (np.ones(10), 0)])
def test_refuses_what_it_does_not_cover(src: np.ndarray, n_bins: int) -> None:
    with pytest.raises(ValueError, match="1-D real series"):
        rebin_1d_area(src, n_bins)
