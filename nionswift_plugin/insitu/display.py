"""Display helpers shared by the glue: show the rows of a (k, n) array as k labelled lines in one line plot.

Swift shows a ``[1, 1]`` item as one navigable line; Swift's own Drift Log instead stores a plain (k, n) array and
sets the display type to line plot, which gives one display layer per row. We do the same, with labels and without
the fill that Swift gives a single-channel layer.
"""
from __future__ import annotations

import base64
import typing

import numpy as np
from nion.data import DataAndMetadata

#: how a series' exact per-point values (times, frame numbers) are kept in a data item's metadata: float64
#: little-endian bytes in base64 (one string), not a list of Python floats. Swift copies a data item's metadata
#: several times per commit; a list of 10,000 floats made each commit of a live track 53 ms (1.3 ms without it)
#: and left ~10^4 small objects per commit to the allocator (tests/plugin/test_series_metadata.py).
PACKED_FLOAT64 = "float64-le-base64"


def pack_float64(values: typing.Any) -> dict[str, typing.Any]:
    """1-D values -> ``{"encoding": PACKED_FLOAT64, "count": n, "data": "<base64>"}`` for a metadata dict."""
    array = np.ascontiguousarray(np.asarray(values, dtype="<f8").reshape(-1))
    return {"encoding": PACKED_FLOAT64, "count": int(array.size), "data": base64.b64encode(array.tobytes()).decode()}


def unpack_float64(packed: typing.Mapping[str, typing.Any]) -> np.ndarray[typing.Any, np.dtype[np.float64]]:
    """The inverse of :func:`pack_float64` (what a script reading the metadata calls)."""
    if packed.get("encoding") != PACKED_FLOAT64:
        raise ValueError(f"not packed float64 values (encoding {packed.get('encoding')!r}); expected "
                         f"{PACKED_FLOAT64!r} as written by nionswift_plugin.insitu.display.pack_float64")
    values = np.frombuffer(base64.b64decode(packed["data"]), dtype="<f8").astype(np.float64)
    if values.size != int(packed.get("count", values.size)):
        raise ValueError(f"packed float64 values hold {values.size} values, the metadata says {packed.get('count')}")
    return values


def rows_xdata(data: typing.Any, *, x_calibration: typing.Any, intensity_calibration: typing.Any = None,
               metadata: dict[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    """(k, n) rows -> xdata whose display (after :func:`show_rows_as_lines`) is k lines over the x calibration."""
    from nion.data import Calibration
    rows = np.atleast_2d(np.asarray(data))
    return DataAndMetadata.new_data_and_metadata(
        rows, intensity_calibration=intensity_calibration,
        dimensional_calibrations=[Calibration.Calibration(), x_calibration], metadata=metadata or {})


def show_rows_as_lines(display_item: typing.Any, labels: typing.Sequence[str]) -> None:
    """Display a (k, n) data item as k lines with the given labels and a legend (idempotent, main thread)."""
    if display_item is None:
        return
    if display_item.display_type != "line_plot":
        display_item.display_type = "line_plot"
    for index, layer in enumerate(display_item.display_layers):
        label = labels[index] if index < len(labels) else f"row {index}"
        if layer.label != label or layer.fill_color is not None:
            display_item._set_display_layer_properties(index, label=label, fill_color=None,
                                                      stroke_color=layer.stroke_color or layer.fill_color)
    if labels and display_item.get_display_property("legend_position") is None:
        display_item.set_display_property("legend_position", "top-right")
