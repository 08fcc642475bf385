"""Display helpers shared by the glue: show the rows of a (k, n) array as k labelled lines in one line plot.

Swift shows a ``[1, 1]`` item as one navigable line; Swift's own Drift Log instead stores a plain (k, n) array and
sets the display type to line plot, which gives one display layer per row. We do the same, with labels and without
the fill that Swift gives a single-channel layer.
"""
from __future__ import annotations

import typing

import numpy as np
from nion.data import DataAndMetadata


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
