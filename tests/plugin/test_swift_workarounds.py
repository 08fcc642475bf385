"""The Swift workarounds the plug-in installs (issue 14): the memory-light line-plot rebin."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from nion.data import Image

from nionswift_plugin.insitu import swift_workarounds


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    assert swift_workarounds.light_line_plot_rebin()
    assert swift_workarounds.light_line_plot_rebin()  # idempotent


def test_swift_rebin_gives_its_own_values_in_linear_memory() -> None:
    original = Image.rebin_1d.__wrapped__  # type: ignore[attr-defined]
    rng = np.random.default_rng(3)
    for n, n_bins in ((10_000, 450), (2_049, 2_048), (777, 5), (3, 2)):
        src = rng.normal(size=n).astype(np.float32)
        src[rng.integers(0, n)] = np.nan
        retained: dict[str, object] = {}
        expected = original(src, n_bins, None)
        got = Image.rebin_1d(src, n_bins, retained)
        assert "w" not in retained
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        ok = np.isfinite(expected)
        np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-9, atol=1e-9)
    src = rng.normal(size=10_000)
    tracemalloc.start()
    Image.rebin_1d(src, 450, {})
    peak_mib = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    assert peak_mib < 2.0  # Swift's own: ~176 MiB for this series


def test_what_it_does_not_cover_still_goes_to_swift() -> None:
    src = np.arange(10, dtype=np.float64)
    before = swift_workarounds.light_rebin_calls()
    np.testing.assert_array_equal(Image.rebin_1d(src, 20), Image.rebin_1d.__wrapped__(src, 20))  # upsampling
    np.testing.assert_array_equal(Image.rebin_1d(src, 10), src)
    assert swift_workarounds.light_rebin_calls() == before  # neither was drawn through the light route
    Image.rebin_1d(src, 5)
    assert swift_workarounds.light_rebin_calls() == before + 1  # (the soak reports this count from the GUI)


def test_the_line_plot_of_a_long_series_draws_from_it() -> None:
    """Swift's line graph calls ``Image.rebin_1d`` by module attribute when the series is longer than the plot."""
    from nion.swift import LineGraphCanvasItem
    assert LineGraphCanvasItem.Image is Image and Image.rebin_1d._insitu_light  # type: ignore[attr-defined]
