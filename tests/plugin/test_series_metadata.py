"""A series' exact times reach its data item's metadata as one packed string, not one Python float per point: a live
track grows to 10,000 points and Swift copies the metadata on every commit (53 ms per commit with a list; the growth
of the soak's per-frame cost and heap). The values round-trip exactly, live and from Run on sequence."""
from __future__ import annotations

import typing

import numpy as np
import pytest

from nionswift_plugin.insitu import computations, display
from processing import base as pb


def _longest_list(value: typing.Any) -> int:
    if isinstance(value, dict):
        return max((_longest_list(v) for v in value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return max([len(value)] + [_longest_list(v) for v in value])
    return 0


def test_a_long_live_track_is_committed_with_its_times_packed_and_exact() -> None:
    rng = np.random.default_rng(14)
    times_s = np.cumsum(rng.uniform(0.03, 0.09, 10_000)) + 1.7e9  # wall-clock stamps, irregular (dropped frames)
    values = rng.normal(size=(3, times_s.size))
    output = pb.TimeSeriesOutput("track", times_s, values, ("centre x", "centre y", "convex area"),
                                 ("nm", "nm", "nm²"), "Tracked region")
    xdata = computations.output_to_xdata(output, {"processor": "insitu.threshold_tracking"})
    assert xdata is not None and xdata.data_shape == (3, times_s.size)
    metadata = xdata.metadata["insitu"]
    assert _longest_list(xdata.metadata) <= 3  # labels and units only: no per-point list
    np.testing.assert_array_equal(display.unpack_float64(metadata["times_s"]), times_s)
    np.testing.assert_array_equal(xdata.data, values)
    # the axis reads seconds since the first point (an epoch offset made Swift's ticks all read "2e+09")
    axis = xdata.dimensional_calibrations[-1]
    assert axis.units == "s" and axis.offset == 0.0
    assert axis.scale == pytest.approx((times_s[-1] - times_s[0]) / (times_s.size - 1))
    assert metadata["time_origin_s"] == times_s[0]


def test_packing_round_trips_and_refuses_what_it_did_not_write() -> None:
    values = np.array([0.0, -1.5, np.pi, 1e300, 5e-324])
    packed = display.pack_float64(values)
    assert packed["count"] == 5 and isinstance(packed["data"], str)
    np.testing.assert_array_equal(display.unpack_float64(packed), values)
    np.testing.assert_array_equal(display.unpack_float64(display.pack_float64(np.arange(4, dtype=np.int64))),
                                  [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="encoding"):
        display.unpack_float64({"encoding": "json", "data": "[1, 2]"})
    with pytest.raises(ValueError, match="hold 5 values"):
        display.unpack_float64(dict(packed, count=6))
