"""Processing > In-situ > Fuse HAADF + chemical maps: a Swift computation around :func:`processing.fusion.fuse`.

Inputs: ``haadf`` (a 2-D image) and either ``map_1`` .. ``map_n`` (2-D chemical maps, one per element, in the
order of the *Elements* parameter) or ``si`` (an EELS spectrum image, e.g. a drift-corrected SI result: its edge
maps are made for the elements by :func:`processing.fusion.eels.edge_maps`). Every input is shown in the Inspector
(drag a data item onto it to change it); the parameters are the declared :data:`processing.fusion.PARAMETERS`.
Outputs: one fused map per element ("target" is the first), the predicted HAADF, its residual and the convergence
plot (three cost terms + total per iteration), which also shows the progress while the fusion runs
(:class:`ProgressPlot`). Swift runs ``execute`` off the UI thread and re-runs it when a parameter or an input
changes; an error (bad input) becomes the computation's error text.
"""
from __future__ import annotations

import logging
import threading
import time
import typing

import numpy as np
from nion.data import DataAndMetadata
from nion.swift.model import DataItem
from nion.swift.model import DocumentModel
from nion.swift.model import Symbolic

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu import display
from processing import base as pb
from processing.fusion import PARAMETERS, FusionOptions, fuse
from processing.fusion.eels import edge_maps
from processing.fusion.elements import element_symbol, parse_elements
from processing.fusion.options import SI_PRESET, parse_region
from processing.fusion.prepare import check_calibrations
from processing.fusion.solver import FusionResult
from processing.spectroscopy.spectrum_alignment import EnergyAxis

__all__ = ["FUSION_ID", "TITLE", "ProgressPlot", "register", "install_menu", "fuse_items", "fuse_selection", "fuse_drift_si_result",
           "result_outputs"]

FUSION_ID = "insitu.fusion"
TITLE = "Fuse HAADF + chemical maps"
_registered = False


def _cal(c: typing.Any) -> pb.Calibration:
    return pb.Calibration(float(c.offset), float(c.scale), str(c.units or ""))


def _image(source: typing.Any, what: str) -> tuple[np.ndarray, tuple[pb.Calibration, pb.Calibration]]:
    xdata = getattr(source, "xdata", None)
    if xdata is None:
        raise pb.InputError(f"no data for {what}: drag a data item onto the '{what}' input in the Inspector.")
    cals = xdata.dimensional_calibrations
    return np.asarray(xdata.data), (_cal(cals[0]), _cal(cals[-1])) if len(cals) >= 2 else (pb.Calibration(),
                                                                                           pb.Calibration())


def result_outputs(result: FusionResult) -> pb.Outputs:
    """The computation's outputs as processing outputs (fused maps, predicted HAADF, residual, convergence)."""
    out: list[pb.Output] = [pb.ImageOutput(f"fused_{e}", result.maps[i], result.calibrations, "", f"Fused {e}")
                            for i, e in enumerate(result.elements)]
    out.append(pb.ImageOutput("predicted_haadf", result.predicted_haadf, result.calibrations, "", "Predicted HAADF"))
    out.append(pb.ImageOutput("haadf_residual", result.haadf_residual, result.calibrations, "", "HAADF residual"))
    out.append(pb.LinePlotOutput("convergence", result.cost.T.astype(np.float32), pb.Calibration(0, 1, "iteration"),
                                 "", ("HAADF", "Poisson", "TV", "total"), "Fusion convergence"))
    return tuple(out)


class ProgressPlot:
    """Shows the convergence plot while the fusion runs: every ``interval_s`` the cost so far is written to the
    computation's "convergence" output on the main thread (``loop.call_soon_threadsafe``). After :meth:`finish`
    queued updates are dropped, so the final plot (written by ``commit``) is never overwritten."""

    def __init__(self, computation: typing.Any, loop: typing.Any, *, interval_s: float = 0.5,
                 clock: typing.Callable[[], float] = time.monotonic) -> None:
        self.computation = computation
        self.loop = loop
        self.interval_s = interval_s
        self.clock = clock
        self.rows: list[tuple[float, float, float, float]] = []
        self.published = 0
        self.finished = False
        self._last = clock()

    def add(self, k: int, total: int, terms: typing.Any) -> None:  # worker thread
        self.rows.append((terms.haadf, terms.poisson, terms.tv, terms.total))
        now = self.clock()
        if self.loop is None or now - self._last < self.interval_s or self.finished:
            return
        self._last = now
        cost = np.asarray(self.rows, np.float32).T.copy()
        self.loop.call_soon_threadsafe(lambda: self.publish(cost, f"iteration {k} of at most {total}"))

    def publish(self, cost: np.ndarray, text: str) -> None:  # main thread
        symbolic = getattr(self.computation, "_computation", None)
        if self.finished or getattr(symbolic, "_closed", False):
            return
        output = pb.LinePlotOutput("convergence", cost, pb.Calibration(0, 1, "iteration"), "",
                                   ("HAADF", "Poisson", "TV", "total"), "Fusion convergence")
        try:
            write_output(self.computation, "convergence", output, {"fusion_progress": text})
        except Exception as e:  # a progress display must never break the run or Swift
            logging.debug("In-situ fusion: progress plot not updated (%s)", e)
            return
        self.published += 1

    def finish(self) -> None:
        self.finished = True


class FusionComputation:
    """Swift computation handler (a new instance per run)."""

    def __init__(self, computation: typing.Any, **kwargs: typing.Any) -> None:
        self.computation = computation
        self.__result: FusionResult | None = None

    def execute(self, haadf: typing.Any = None, **kwargs: typing.Any) -> None:  # worker thread
        elements = parse_elements(str(kwargs.pop("elements", "")))
        region = parse_region(str(kwargs.pop("region", "") or ""))
        si = kwargs.pop("si", None)
        slots = [k for k in kwargs if k.startswith("map_") and k[4:].isdigit()]
        map_inputs = {k: kwargs.pop(k) for k in sorted(slots, key=lambda k: int(k[4:]))}
        values = {p.name: kwargs[p.name] for p in PARAMETERS if p.name in kwargs}
        values["region_px"] = region
        options = FusionOptions.from_values(values)
        h, h_cal = _image(haadf, "haadf")
        if si is not None:
            xdata = getattr(si, "xdata", None)
            if xdata is None or len(xdata.data_shape) != 3:
                raise pb.InputError("the 'si' input must be a spectrum image (H, W, E); drag the SI onto it.")
            energy = xdata.dimensional_calibrations[-1]
            axis = EnergyAxis(offset_eV=float(energy.offset), scale_eV=float(energy.scale))
            data = np.asarray(xdata.data)
            acquired = np.isfinite(data).all(axis=-1)
            maps = edge_maps(np.where(acquired[..., None], data, 0.0), axis, elements, acquired=acquired)
            cals = xdata.dimensional_calibrations
            check_calibrations(h_cal, {"si": (_cal(cals[0]), _cal(cals[1]))})
            if options.map_mode == "counts":
                maps = {k: np.clip(np.nan_to_num(v), 0.0, None) for k, v in maps.items()}
            mask = acquired if not acquired.all() else None
        else:
            sources = list(map_inputs.values())
            if len(sources) != len(elements):
                raise pb.ParameterError(f"{len(elements)} element(s) {list(elements)} for {len(sources)} map input(s); "
                                        f"give one element per map, in the order of the inputs.")
            maps, cals_by = {}, {}
            for element, source, name in zip(elements, sources, map_inputs):
                maps[element], cals_by[element] = _image(source, name)
            check_calibrations(h_cal, cals_by)
            mask = None

        document_model = computations.document_model_of(self.computation._computation)
        plot = ProgressPlot(self.computation, getattr(document_model, "event_loop", None))
        try:
            symbolic = self.computation._computation
            self.__result = fuse(h, maps, options, calibrations=h_cal, mask=mask, progress=plot.add,
                                 should_stop=lambda: bool(getattr(symbolic, "_closed", False)))
        finally:
            plot.finish()

    def commit(self) -> None:  # main thread
        result = self.__result
        if result is None:
            return
        metadata = {"fusion": result.summary()}
        for output in result_outputs(result):
            name = "target" if output.name == f"fused_{result.elements[0]}" else output.name
            write_output(self.computation, name, output, metadata)


def write_output(computation: typing.Any, name: str, output: pb.Output, metadata: dict[str, typing.Any]) -> None:
    """Write one output into the computation's result ``name`` (main thread): data, title, line display."""
    xdata = computations.output_to_xdata(output, metadata)
    if xdata is None:
        return
    computation.set_referenced_xdata(name, xdata)
    item = computation.get_result(name)
    data_item = getattr(item, "_data_item", None)
    title = str(getattr(output, "title", "") or "")
    if data_item is not None and title and data_item.title != f"{TITLE}: {title}":
        data_item.title = f"{TITLE}: {title}"
    if isinstance(output, pb.LinePlotOutput) and data_item is not None:
        document_model = computations.document_model_of(computation._computation)
        if document_model is not None:
            display.show_rows_as_lines(document_model.get_display_item_for_data_item(data_item), list(output.labels))


def _processing_description() -> dict[str, typing.Any]:
    return {"title": TITLE, "sources": [{"name": "haadf", "label": "HAADF", "data_type": "xdata"}], "parameters": []}


def _warm_up() -> None:
    """Load (or compile) the fusion's numba kernel off the UI thread, so the first fusion does not wait for it."""
    try:
        from processing.fusion.model import tv_prox
        tv_prox(np.zeros((1, 4, 4), np.float32), 0.1, None, 1)
    except Exception as e:  # never fail plug-in loading because of a cache problem
        logging.warning("In-situ: fusion warm-up failed (%s); the kernel compiles on first use.", e)


def register() -> None:
    """Register the computation type with Swift (idempotent)."""
    global _registered
    if _registered:
        return
    _registered = True
    DocumentModel.DocumentModel.register_processing_descriptions({FUSION_ID: _processing_description()})
    Symbolic.register_computation_type(FUSION_ID, FusionComputation)
    threading.Thread(target=_warm_up, name="insitu-fusion-warmup", daemon=True).start()
    try:  # live fusion in the Drift-corrected SI panel ("Live analysis")
        from processing.fusion import live
        live.register()
    except Exception as e:  # never fail plug-in loading: the offline fusion still works
        logging.warning("In-situ: live fusion not available (%s).", e)


def _item_for(document_model: typing.Any, data_item: typing.Any) -> typing.Any:
    display_item = document_model.get_display_item_for_data_item(data_item)
    channel = display_item.get_display_data_channel_for_data_item(data_item) if display_item is not None else None
    return Symbolic.make_item(channel if channel is not None else data_item)


def fuse_items(document_model: typing.Any, haadf: DataItem.DataItem, maps: typing.Sequence[DataItem.DataItem] = (),
               *, si: DataItem.DataItem | None = None, elements: typing.Sequence[str] | str | None = None,
               **options: typing.Any) -> DataItem.DataItem:
    """Create the fusion computation on ``haadf`` + ``maps`` (or ``si``); returns the first fused map's data item.

    ``elements``: one per map (default: from the map titles, e.g. "Sc", "Dy map"); with ``si`` required.
    """
    register()
    if si is None and len(maps) < 2:
        raise pb.InputError(f"fusion needs at least two chemical maps (got {len(maps)}); select the HAADF and the "
                            f"maps (or a spectrum image) and choose {TITLE} again.")
    if elements is None:
        if si is not None:
            raise pb.ParameterError("give the elements to map in the spectrum image, e.g. elements='Sc,Dy,O'.")
        elements = [element_symbol(str(m.title).split()[0]) for m in maps]
    names = parse_elements(elements if isinstance(elements, str) else ",".join(elements))
    defaults = {p.name: p.default for p in PARAMETERS}
    if si is not None:
        defaults.update(SI_PRESET)
    defaults.update(options)
    region = defaults.pop("region", "")
    FusionOptions.from_values(defaults)  # validate before creating anything
    computation = document_model.create_computation()
    computation.label = TITLE
    computation.processing_id = FUSION_ID
    computation.create_input_item("haadf", _item_for(document_model, haadf), label="HAADF")
    if si is not None:
        computation.create_input_item("si", _item_for(document_model, si), label="Spectrum image")
    for i, m in enumerate(maps, 1):
        computation.create_input_item(f"map_{i}", _item_for(document_model, m), label=f"Map {i}")
    computation.create_variable("elements", "string", ",".join(names), value_default=",".join(names),
                                label="Elements (one per map, in order)")
    computations.create_parameter_variables(computation, PARAMETERS, defaults)
    computation.create_variable("region", "string", str(region or ""), value_default="",
                                label="Region (top,left,height,width px; empty = all)")
    target = DataItem.DataItem(large_format=False)
    target.title = f"{TITLE}: Fused {names[0]}"
    document_model.append_data_item(target)
    document_model.set_data_item_computation(target, computation)
    return target


def fuse_selection(document_controller: typing.Any) -> DataItem.DataItem:
    """The menu action: the selected items are the HAADF (title with 'HAADF', else the first) and the maps, or a
    spectrum image (3-D) + its HAADF."""
    document_model = document_controller.document_model
    selected = [d.data_item for d in document_controller.selected_display_items if d.data_item is not None]
    if len(selected) < 2:  # the data panel's (multiple) selection, when the focus is elsewhere
        shown = document_controller.filtered_display_items_model.display_items
        in_panel = [shown[i].data_item for i in sorted(document_controller.selection.indexes) if i < len(shown)]
        selected = [d for d in in_panel if d is not None] or selected
    if not selected and document_controller.selected_display_item is not None:
        selected = [document_controller.selected_display_item.data_item]
    sis = [d for d in selected if d.xdata is not None and len(d.xdata.data_shape) == 3]
    images = [d for d in selected if d.xdata is not None and len(d.xdata.data_shape) == 2]
    if sis:
        return fuse_drift_si_result(document_model, sis[0], haadf=images[0] if images else None)
    if not images:
        raise pb.InputError(f"select the HAADF image and the chemical maps (data panel, Ctrl/Shift-click), then "
                            f"choose {TITLE}.")
    haadf = next((d for d in images if "haadf" in str(d.title).lower()), images[0])
    return fuse_items(document_model, haadf, [d for d in images if d is not haadf])


def fuse_drift_si_result(document_model: typing.Any, si: DataItem.DataItem, *, haadf: DataItem.DataItem | None = None,
                         elements: str | None = None, **options: typing.Any) -> DataItem.DataItem:
    """Fuse a drift-corrected SI result with its HAADF channel (found by title "... HAADF (<pass>)" when not given):
    the SI's EELS edge maps of ``elements`` (default: the sample's, from the SI metadata, else 'Sc,Dy,O')."""
    if haadf is None:
        title = str(si.title)
        candidates = [d for d in document_model.data_items if d is not si and d.xdata is not None
                      and len(d.xdata.data_shape) == 2 and "haadf" in str(d.title).lower()]
        stem = title.split(" (")[0]
        haadf = next((d for d in candidates if str(d.title).startswith(stem)), candidates[-1] if candidates else None)
        if haadf is None:
            raise pb.InputError(f"no HAADF image found for '{title}'; select the SI and its HAADF channel together.")
    if elements is None:
        md = si.metadata.get("insitu", {}) if isinstance(si.metadata, dict) else {}
        found = md.get("elements") if isinstance(md, dict) else None
        elements = ",".join(found) if isinstance(found, list) and len(found) >= 2 else "Sc,Dy,O"
    return fuse_items(document_model, haadf, si=si, elements=elements, **options)


def add_menu_items(document_controller: typing.Any, submenu: typing.Any) -> None:
    """Add "Fuse HAADF + chemical maps" to the Processing > In-situ submenu."""
    def action() -> None:
        try:
            fuse_selection(document_controller)
        except (pb.ProcessingError, ValueError) as e:
            print(f"In-situ: {e}")
    submenu.add_separator()
    submenu.add_menu_item(TITLE + "...", action)


def install_menu(document_controller: typing.Any) -> None:
    """Menu handler (after :func:`nionswift_plugin.insitu.panels.install_menu`): add the fusion item to the
    Processing > In-situ submenu of a new window (idempotent)."""
    submenu = getattr(document_controller, "_insitu_menu", None)
    if submenu is None or getattr(document_controller, "_insitu_fusion_menu", False):
        return
    add_menu_items(document_controller, submenu)
    document_controller._insitu_fusion_menu = True


def xdata_of(result: FusionResult, index: int) -> DataAndMetadata.DataAndMetadata:
    """Swift xdata of fused map ``index`` (for scripts)."""
    out = result_outputs(result)[index]
    xdata = computations.output_to_xdata(out, {"fusion": result.summary()})
    assert xdata is not None
    return xdata
