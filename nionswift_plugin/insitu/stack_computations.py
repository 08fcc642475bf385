"""Processing > In-situ > Align stack (SDSD): a Swift computation around :func:`processing.alignment.sdsd.align_stack`.

Input ``src``: a sequence data item (N, H, W) (any 3-D image stack). Parameters: the SDSD options (declared once in
:data:`processing.alignment.sdsd.SDSD_PARAMETERS`) plus how shifts are applied (spline/Fourier, crop/pad).
Outputs: the aligned sequence (the target), the aligned sum, and the shift plot (dy, dx and their one-sigma
uncertainty per frame, px), all with calibrations; the shifts in px and nm, the rejected pairs and the notes are in
each output's metadata under ``insitu.sdsd``. Bad input becomes the computation's error text. Nothing is computed here.
"""
from __future__ import annotations

import typing

import numpy as np
from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.swift.model import DataItem
from nion.swift.model import DocumentModel
from nion.swift.model import Symbolic

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu import panels
from nionswift_plugin.insitu import display
from processing import base as pb
from processing.alignment.sdsd import SDSD_PARAMETERS, SDSDResult, align_stack
from processing.alignment.stack_shift import AlignedStack, apply_shifts

__all__ = ["ALIGN_ID", "TITLE", "PARAMETERS", "register", "install_menu", "align_item", "align_selection"]

ALIGN_ID = "insitu.align_stack"
#: the start of the captions the computation writes (the result's notes); a caption the user wrote is kept
CAPTION_PREFIX = "SDSD: "
TITLE = "Align stack (SDSD)"
PARAMETERS: tuple[pb.Parameter, ...] = SDSD_PARAMETERS + (
    pb.Parameter("method", "Apply shifts", "choice", "spline", choices=("spline", "fourier")),
    pb.Parameter("crop", "Output area", "choice", "crop", choices=("crop", "pad")),
)
_registered = False


class AlignStackComputation:
    """Swift computation handler: ``execute`` on a worker thread, ``commit`` on the main thread."""

    def __init__(self, computation: typing.Any, **kwargs: typing.Any) -> None:
        self.computation = computation
        self.__result: tuple[SDSDResult, AlignedStack, typing.Any] | None = None

    def execute(self, src: typing.Any = None, **kwargs: typing.Any) -> None:
        xdata = getattr(src, "xdata", None)
        if xdata is None or len(xdata.data_shape) != 3 or xdata.is_collection or xdata.datum_dimension_count != 2:
            shape = None if xdata is None else tuple(xdata.data_shape)
            raise pb.InputError(f"the source must be an image sequence (N, H, W); got shape {shape}. Select a "
                                f"sequence data item (e.g. a recorded or acquired series) and choose {TITLE} again.")
        values = {p.name: p.validate(kwargs.get(p.name, p.default)) for p in PARAMETERS}
        cals = xdata.dimensional_calibrations[-2:]
        frames = np.asarray(xdata.data, dtype=np.float32)
        options = {p.name: values[p.name] for p in SDSD_PARAMETERS}
        result = align_stack(frames, pixel_size_nm=(float(cals[0].scale), float(cals[1].scale)), **options)
        aligned = apply_shifts(frames, result.shifts_px, method=values["method"], crop=values["crop"])
        self.__result = (result, aligned, cals)

    def commit(self) -> None:
        if self.__result is None:
            return
        result, aligned, cals = self.__result
        metadata = {"insitu": {"sdsd": result.to_dict() | {"origin_px": list(aligned.origin_px),
                                                           "units": [str(c.units) for c in cals]}}}
        oy, ox = aligned.origin_px
        spatial = [Calibration.Calibration(cals[0].offset + cals[0].scale * oy, cals[0].scale, cals[0].units),
                   Calibration.Calibration(cals[1].offset + cals[1].scale * ox, cals[1].scale, cals[1].units)]
        sequence = DataAndMetadata.new_data_and_metadata(
            aligned.frames, dimensional_calibrations=[Calibration.Calibration()] + spatial, metadata=metadata,
            data_descriptor=DataAndMetadata.DataDescriptor(True, 0, 2))
        total = DataAndMetadata.new_data_and_metadata(aligned.total, dimensional_calibrations=spatial,
                                                      metadata=metadata)
        sigma = np.nan_to_num(result.uncertainty_px, nan=0.0)
        rows = np.vstack([result.shifts_px.T, sigma.T]).astype(np.float64)
        # a plain (4, N) array, as Swift's own Drift Log: one labelled line per row (a [1, 1] collection would show
        # as one navigable line, dy only)
        plot = display.rows_xdata(rows, x_calibration=Calibration.Calibration(units="frame"),
                                  intensity_calibration=Calibration.Calibration(units="px"), metadata=metadata)
        document_model = computations.document_model_of(self.computation._computation)
        self._set("target", sequence, "aligned sequence", document_model, None)
        self._set("sum", total, "aligned sum", document_model, None)
        self._set("shifts", plot, "shifts (px) with uncertainty", document_model,
                  ["dy (px)", "dx (px)", "sigma y (px)", "sigma x (px)"])
        # what the user must know (the low-pass chosen from the data, or why not; rejected pairs; no uncertainty)
        # is the caption of the aligned sequence and sum (the Info section), unless the user wrote one
        caption = CAPTION_PREFIX + "; ".join(result.notes) if result.notes else ""
        for name in ("target", "sum"):
            data_item = getattr(self.computation.get_result(name), "_data_item", None)
            if data_item is not None and (not data_item.caption or data_item.caption.startswith(CAPTION_PREFIX)) \
                    and data_item.caption != caption:
                data_item.caption = caption

    def _set(self, name: str, xdata: DataAndMetadata.DataAndMetadata, title: str, document_model: typing.Any,
             labels: list[str] | None) -> None:
        self.computation.set_referenced_xdata(name, xdata)
        item = self.computation.get_result(name)
        data_item = getattr(item, "_data_item", None)
        if data_item is not None and data_item.title != f"{TITLE}: {title}":
            data_item.title = f"{TITLE}: {title}"
        if labels and data_item is not None and document_model is not None:
            display.show_rows_as_lines(document_model.get_display_item_for_data_item(data_item), labels)


def register() -> None:
    """Register the computation type with Swift (idempotent)."""
    global _registered
    if _registered:
        return
    _registered = True
    DocumentModel.DocumentModel.register_processing_descriptions({ALIGN_ID: {
        "title": TITLE, "sources": [{"name": "src", "label": "Sequence", "data_type": "xdata"}],
        "parameters": []}})
    Symbolic.register_computation_type(ALIGN_ID, AlignStackComputation)


def align_item(document_model: typing.Any, sequence: DataItem.DataItem, **values: typing.Any) -> DataItem.DataItem:
    """Create the Align stack (SDSD) computation on ``sequence`` (parameters as keyword arguments, e.g.
    reference="banded", band_k=5); returns the aligned sequence's data item (the target). Also the Python call."""
    register()
    return computations.create_item_computation(
        document_model, sequence, processing_id=ALIGN_ID, title=TITLE, input_name="src", input_label="Sequence",
        parameters=PARAMETERS, values=values, target_title=f"{TITLE}: aligned sequence")


def align_selection(document_controller: typing.Any) -> DataItem.DataItem:
    """The menu action: the selected sequence data item."""
    item = document_controller.selected_display_item
    data_item = item.data_item if item is not None else None
    if data_item is None or data_item.xdata is None or len(data_item.xdata.data_shape) != 3:
        raise pb.InputError(f"select an image sequence (a 3-D data item: frame, y, x), then choose {TITLE}.")
    return align_item(document_controller.document_model, data_item)


def install_menu(document_controller: typing.Any) -> None:
    """Menu handler (after :func:`nionswift_plugin.insitu.panels.install_menu`): add "Align stack (SDSD)..." to the
    Processing > In-situ submenu of a new window (idempotent)."""
    panels.add_to_insitu_menu(document_controller, "align", TITLE + "...",
                              lambda: align_selection(document_controller))
