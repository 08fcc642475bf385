"""Area-weighted rebinning of a 1-D series to fewer bins, in memory linear in the series' length.

A line plot longer than its plot is drawn from its rebinned values: bin ``i`` of ``n_bins`` covers the source
interval ``[i * r, (i + 1) * r)`` with ``r = len(src) / n_bins > 1`` (sample ``j`` covers ``[j, j + 1)``), and its
value is the overlap-weighted sum of the samples times ``n_bins / len(src)`` (the mean over the bin). A NaN sample
makes every bin it overlaps NaN; a sample that only touches a bin's edge does not count for it.

This is the definition of Swift's own ``nion.data.Image.rebin_1d`` (nionswift 16.16 / niondata 15.9), which builds
the whole ``(n_bins, len(src))`` weight matrix (six such float64 arrays in flight): for a 10,000-point time plot in
a 450 px plot that is ~176 MiB (measured peak) per repaint, growing with the series (issue 14: the transient that grew over the
headless 512² soak). Here each sample contributes to at most two bins (``r > 1``), with weights from exact integer
arithmetic: O(len(src)) memory and time, equal to Swift's values within float rounding
(``tests/processing/test_line_rebin.py``).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["rebin_1d_area"]


def rebin_1d_area(src: NDArray[np.generic], n_bins: int) -> NDArray[np.float64]:
    """Rebin the 1-D real series ``src`` (shape (n,)) to ``n_bins`` bins, ``1 <= n_bins < n``: shape (n_bins,),
    float64, each bin the overlap-weighted mean of the samples it covers (NaN where a NaN sample overlaps it).

    Raises ValueError for anything else (not 1-D, complex, ``n_bins`` outside ``[1, n)``): the caller keeps its
    own path for those."""
    values = np.asarray(src)
    n = values.shape[0] if values.ndim == 1 else 0
    if values.ndim != 1 or np.iscomplexobj(values) or not 1 <= n_bins < n:
        raise ValueError(f"rebin_1d_area needs a 1-D real series longer than the bin count; got shape "
                         f"{values.shape}, dtype {values.dtype}, {n_bins} bins")
    data = values.astype(np.float64, copy=False)
    j = np.arange(n, dtype=np.int64)
    first = (j * n_bins) // n  # the bin where sample j starts (exact: integers)
    # overlap of [j, j + 1) with bin `first` = ((first + 1) * n - j * n_bins) / n_bins, capped at 1 (in samples)
    w_first = np.minimum(((first + 1) * n - j * n_bins) / n_bins, 1.0)
    w_next = 1.0 - w_first  # the part of sample j in bin first + 1 (0 for most samples)
    out = np.bincount(first, weights=w_first * data, minlength=n_bins)[:n_bins]
    spill = w_next > 0.0
    if spill.any():
        out += np.bincount(first[spill] + 1, weights=w_next[spill] * data[spill], minlength=n_bins + 1)[:n_bins]
    result: NDArray[np.float64] = (out * (n_bins / n)).astype(np.float64, copy=False)
    return result
