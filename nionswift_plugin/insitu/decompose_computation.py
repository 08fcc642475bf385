"""Processing > In-situ > Decompose SI: a Swift computation around :func:`processing.decomposition.decompose`.

Input ``si``: any 3-D data item (y, x, energy), e.g. a drift-corrected SI result (NaN pixels of an aborted run are
left out). Parameters: method (pca / nmf / vca), number of components, Poisson weighting, clip negative counts,
reconstruct. Outputs: the scree plot (the target), the component spectra (eV), one map per component (nm) and, on
request, the denoised SI; the summary (significant components, notes) is in each output's metadata under
``insitu.decomposition``. Bad input becomes the computation's error text. Nothing is computed here.
"""
from __future__ import annotations

import typing

import numpy as np
from nion.data import DataAndMetadata
from nion.swift.model import DataItem
from nion.swift.model import DocumentModel
from nion.swift.model import Symbolic

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu import panels
from nionswift_plugin.insitu import display
from processing import base as pb
from processing.decomposition import decompose
from processing.decomposition._validate import METHODS
from processing.decomposition.result import DecompositionResult

__all__ = ["DECOMPOSE_ID", "TITLE", "PARAMETERS", "register", "install_menu", "decompose_item",
           "decompose_selection"]

DECOMPOSE_ID = "insitu.decompose"
TITLE = "Decompose SI"
PARAMETERS = (
    pb.Parameter("method", "Method (pca, nmf, vca)", "choice", "pca", choices=METHODS),
    pb.Parameter("n_components", "Components", "integral", 3, 1, 50),
    pb.Parameter("poisson", "Poisson weighting", "boolean", True),
    pb.Parameter("clip_negative", "Clip negative counts (NMF, VCA)", "boolean", False),
    pb.Parameter("reconstruct", "Denoised SI", "boolean", False),
)
_registered = False


def _units_to_nm(units: str) -> float:
    return {"nm": 1.0, "µm": 1e3, "um": 1e3, "Å": 0.1, "A": 0.1, "pm": 1e-3}.get(units, 1.0)


class DecomposeComputation:
    """Swift computation handler (a new instance per run): ``execute`` on a worker, ``commit`` on the main thread."""

    def __init__(self, computation: typing.Any, **kwargs: typing.Any) -> None:
        self.computation = computation
        self.__result: DecompositionResult | None = None
        self.__si_calibrations: typing.Any = None

    def execute(self, si: typing.Any = None, **kwargs: typing.Any) -> None:
        xdata = getattr(si, "xdata", None)
        if xdata is None or len(xdata.data_shape) != 3:
            shape = None if xdata is None else tuple(xdata.data_shape)
            raise pb.InputError(f"the 'si' input must be a spectrum image (y, x, energy); got shape {shape}. "
                                f"Select a 3-D SI data item and choose {TITLE} again.")
        values = {p.name: p.validate(kwargs.get(p.name, p.default)) for p in PARAMETERS}
        cals = xdata.dimensional_calibrations
        self.__si_calibrations = cals
        self.__result = decompose(
            np.asarray(xdata.data, np.float32), method=values["method"], n_components=values["n_components"],
            poisson=values["poisson"], clip_negative=values["clip_negative"], reconstruct=values["reconstruct"],
            energy_offset_eV=float(cals[2].offset), energy_scale_eV=float(cals[2].scale),
            pixel_size_nm=float(cals[1].scale) * _units_to_nm(str(cals[1].units or "")))

    def commit(self) -> None:
        result = self.__result
        if result is None:
            return
        metadata = {"decomposition": result.metadata()}
        document_model = computations.document_model_of(self.computation._computation)
        for output in result.outputs():
            xdata = computations.output_to_xdata(output, metadata)
            if xdata is None:
                continue
            name = "target" if output.name == "scree" else output.name
            self._set(name, xdata, str(getattr(output, "title", "") or ""), document_model,
                      list(output.labels) if isinstance(output, pb.LinePlotOutput) else None)
        if result.reconstructed is not None:
            xdata = DataAndMetadata.new_data_and_metadata(result.reconstructed,
                                                          dimensional_calibrations=self.__si_calibrations,
                                                          metadata={"insitu": metadata})
            self._set("reconstructed", xdata, f"{result.method.upper()} denoised SI", document_model, None)

    def _set(self, name: str, xdata: DataAndMetadata.DataAndMetadata, title: str, document_model: typing.Any,
             labels: list[str] | None) -> None:
        self.computation.set_referenced_xdata(name, xdata)
        item = self.computation.get_result(name)
        data_item = getattr(item, "_data_item", None)
        if data_item is not None and title and data_item.title != f"{TITLE}: {title}":
            data_item.title = f"{TITLE}: {title}"
        if labels and data_item is not None and document_model is not None:
            display.show_rows_as_lines(document_model.get_display_item_for_data_item(data_item), labels)


def register() -> None:
    """Register the computation type with Swift (idempotent)."""
    global _registered
    if _registered:
        return
    _registered = True
    DocumentModel.DocumentModel.register_processing_descriptions({DECOMPOSE_ID: {
        "title": TITLE, "sources": [{"name": "si", "label": "Spectrum image", "data_type": "xdata"}],
        "parameters": []}})
    Symbolic.register_computation_type(DECOMPOSE_ID, DecomposeComputation)
    try:  # live decomposition in the Drift-corrected SI panel ("Live analysis")
        from processing.decomposition import live
        live.register()
    except Exception as e:  # never fail plug-in loading: the offline decomposition still works
        import logging
        logging.warning("In-situ: live decomposition not available (%s).", e)


def decompose_item(document_model: typing.Any, si: DataItem.DataItem, **values: typing.Any) -> DataItem.DataItem:
    """Create the Decompose SI computation on ``si`` (parameters as keyword arguments, e.g. method="nmf",
    n_components=2); returns the scree plot's data item (the target). Also the Python call for scripts."""
    register()
    return computations.create_item_computation(
        document_model, si, processing_id=DECOMPOSE_ID, title=TITLE, input_name="si", input_label="Spectrum image",
        parameters=PARAMETERS, values=values, target_title=f"{TITLE}: scree")


def decompose_selection(document_controller: typing.Any) -> DataItem.DataItem:
    """The menu action: the selected 3-D data item."""
    item = document_controller.selected_display_item
    data_item = item.data_item if item is not None else None
    if data_item is None or data_item.xdata is None or len(data_item.xdata.data_shape) != 3:
        raise pb.InputError(f"select a spectrum image (a 3-D data item: y, x, energy), then choose {TITLE}.")
    return decompose_item(document_controller.document_model, data_item)


def install_menu(document_controller: typing.Any) -> None:
    """Menu handler (after :func:`nionswift_plugin.insitu.panels.install_menu`): add "Decompose SI..." to the
    Processing > In-situ submenu of a new window (idempotent)."""
    panels.add_to_insitu_menu(document_controller, "decompose", TITLE + "...",
                              lambda: decompose_selection(document_controller))
