"""Swift computations for every registered processor, built from ``processing.registry`` (one table).

For each processor class: a processing description (title, source, parameters with labels and ranges, so the
inspector shows them) and a computation type whose ``execute`` asks the live engine for the newest result and whose
``commit`` writes the typed outputs into Swift (data items, line plots, a circle graphic).
"""
from __future__ import annotations

import threading
import time
import typing
import weakref

import numpy as np
from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.instrumentation import HardwareSource
from nion.swift.model import DataItem
from nion.swift.model import DocumentModel
from nion.swift.model import Graphics
from nion.swift.model import Symbolic
from nion.utils import Geometry
from nion.utils import Registry

from nionswift_plugin.insitu import display
from nionswift_plugin.insitu.live_engine import ENGINE, frame_from_xdata
from processing import base as pb
from processing import registry
from processing.execution import provenance

#: shortest interval between two display updates of one live output (s); processing itself sees every frame
DISPLAY_INTERVAL_S = 0.2

ROI_INPUT = "roi"
SOURCE_INPUT = "src"

_registered: set[str] = set()
_registration_lock = threading.Lock()


def _swift_type(parameter: pb.Parameter) -> str:
    return {"choice": "string"}.get(parameter.type, parameter.type)


def processing_description(cls: type[pb.Processor]) -> dict[str, typing.Any]:
    """The Swift processing description of a processor: title, source, parameters (labels, defaults, ranges)."""
    parameters = []
    for p in cls.PARAMETERS:
        entry: dict[str, typing.Any] = {"name": p.name, "label": f"{p.label} ({p.units})" if p.units else p.label,
                                        "type": _swift_type(p), "value": p.default, "value_default": p.default}
        if p.min is not None:
            entry["value_min"] = p.min
        if p.max is not None:
            entry["value_max"] = p.max
        parameters.append(entry)
    return {"title": cls.title,
            "sources": [{"name": SOURCE_INPUT, "label": "Source", "data_type": "xdata"}],
            "parameters": parameters}


def _to_calibration(c: pb.Calibration) -> Calibration.Calibration:
    return Calibration.Calibration(c.offset, c.scale, c.units)


def output_to_xdata(output: pb.Output, metadata: dict[str, typing.Any]) -> DataAndMetadata.DataAndMetadata | None:
    """Typed processor output -> Swift xdata (None for graphics and notices)."""
    md = {"insitu": metadata}
    if isinstance(output, pb.ImageOutput):
        image = np.asarray(output.data)
        if image.dtype == np.uint8 and image.ndim == 2 and image.shape[-1] in (3, 4):
            image = image.astype(np.uint16)  # Swift reads uint8 (H, 3|4) as RGB(A): keep it a plain image
        return DataAndMetadata.new_data_and_metadata(
            image, intensity_calibration=Calibration.Calibration(units=output.intensity_units),
            dimensional_calibrations=[_to_calibration(c) for c in output.calibrations], metadata=md)
    if isinstance(output, pb.RGBImageOutput):
        rgb = np.ascontiguousarray(np.asarray(output.data, np.uint8)[..., ::-1])  # Swift stores RGB data as BGR
        return DataAndMetadata.new_data_and_metadata(
            rgb, dimensional_calibrations=[_to_calibration(c) for c in output.calibrations], metadata=md)
    if isinstance(output, pb.KymographOutput):
        return DataAndMetadata.new_data_and_metadata(
            np.asarray(output.data), intensity_calibration=Calibration.Calibration(units=output.intensity_units),
            dimensional_calibrations=[_to_calibration(output.y_calibration), _to_calibration(output.time_calibration)],
            metadata=md)
    if isinstance(output, pb.LinePlotOutput):
        data = np.asarray(output.data)
        md["insitu"] = dict(metadata, labels=list(output.labels))
        if data.ndim == 2:  # k lines: shown as k labelled layers (display.show_rows_as_lines)
            return display.rows_xdata(data, x_calibration=_to_calibration(output.x_calibration), metadata=md,
                                      intensity_calibration=Calibration.Calibration(units=output.intensity_units))
        return DataAndMetadata.new_data_and_metadata(
            data, intensity_calibration=Calibration.Calibration(units=output.intensity_units),
            dimensional_calibrations=[_to_calibration(output.x_calibration)], metadata=md)
    if isinstance(output, pb.TimeSeriesOutput):
        values = np.atleast_2d(np.asarray(output.values, np.float64))
        times = np.asarray(output.times_s, np.float64)
        n = values.shape[-1]
        scale = float((times[-1] - times[0]) / (n - 1)) if n > 1 else 1.0
        # the axis reads seconds since the first point shown (frame timestamps are epoch seconds: as an offset
        # they made Swift's axis read "2e+09" at every tick); the exact times and their origin are in the metadata
        origin_s = float(times[0]) if n else 0.0
        md["insitu"] = dict(metadata, labels=list(output.labels), units=list(output.units),
                            times_s=display.pack_float64(times), time_origin_s=origin_s)
        return display.rows_xdata(values, x_calibration=Calibration.Calibration(0.0, scale, "s"), metadata=md)
    return None


def _main_output_name(cls: type[pb.Processor]) -> str:
    for name, kind in cls.OUTPUTS:
        if kind in ("image", "rgb", "kymograph"):
            return name
    return cls.OUTPUTS[0][0] if cls.OUTPUTS else "image"


def _is_live_source(xdata: DataAndMetadata.DataAndMetadata | None) -> tuple[str, int] | None:
    hardware = xdata.metadata.get("hardware_source", {}) if xdata is not None else {}
    hardware_source_id = hardware.get("hardware_source_id")
    if not hardware_source_id:
        return None
    return hardware_source_id, int(hardware.get("channel_index", 0) or 0)


_document_models: "weakref.WeakKeyDictionary[Symbolic.Computation, DocumentModel.DocumentModel]" = \
    weakref.WeakKeyDictionary()


def document_model_of(computation: Symbolic.Computation) -> DocumentModel.DocumentModel | None:
    """The document model that holds ``computation`` (its ``container`` is the project, not the document)."""
    document_model = _document_models.get(computation)
    if document_model is None:
        for candidate in Registry.get_components_by_type("document_model"):
            if computation in candidate.computations:
                document_model = candidate
                _document_models[computation] = candidate
                break
    return document_model


def _commit_requester(computation: Symbolic.Computation,
                      document_model: DocumentModel.DocumentModel | None) -> typing.Callable[[float], None]:
    """``request(delay_s)`` asks Swift, from any thread, to run execute/commit again (after ``delay_s``), so a fresh
    result reaches the display. Holds the computation weakly: a runner must not keep a deleted computation alive.

    One request per requester (a new requester is installed by each execute, before it reads the newest result):
    later results are covered by the run already requested, so Swift runs a computation (one executor, one Activity
    row, one dispatcher task) about once per display refresh instead of once per camera frame."""
    computation_ref = weakref.ref(computation)
    event_loop = getattr(document_model, "event_loop", None)
    requested = [False]
    lock = threading.Lock()

    def mark() -> None:
        target = computation_ref()
        if target is not None and not target._closed:
            target.needs_update = True
            target.computation_mutated_event.fire()

    def request(delay_s: float = 0.0) -> None:
        with lock:
            if requested[0]:
                return
            requested[0] = True
        if event_loop is not None and not event_loop.is_closed():
            event_loop.call_soon_threadsafe(mark if delay_s <= 0 else lambda: event_loop.call_later(delay_s, mark))

    return request


def make_computation_class(processor_id: str) -> type:
    """The Swift computation handler for one processor (a new instance is created by Swift for each run)."""
    cls = registry.get(processor_id)
    main_name = _main_output_name(cls)

    class InSituComputation:
        def __init__(self, computation: typing.Any, **kwargs: typing.Any) -> None:
            self.computation = computation
            self.__outputs: pb.Outputs = ()
            self.__stats: dict[str, typing.Any] = {}
            self.__origin_px: tuple[int, int] = (0, 0)
            self.__parameters: dict[str, typing.Any] = {}
            self.__source = ""

        def execute(self, src: typing.Any, **kwargs: typing.Any) -> None:  # worker thread
            roi = kwargs.pop(ROI_INPUT, None)
            symbolic = self.computation._computation
            if getattr(symbolic, "_closed", False):  # removed while Swift had it queued: no runner for it any more
                self.__outputs = ()
                return
            document_model = document_model_of(symbolic)
            ENGINE.watch_document_model(document_model)  # its runner stops the moment Swift removes it
            request_commit = _commit_requester(symbolic, document_model)
            runner = ENGINE.runner_for(symbolic, processor_id, kwargs, title=cls.title,
                                       on_result=lambda r: request_commit(
                                           0.0 if r.committed_count < 0
                                           else r.last_commit_s + DISPLAY_INTERVAL_S - time.monotonic()))
            xdata = src.xdata if src is not None else None
            runner.roi = _bounds_of(roi)
            live = _is_live_source(xdata)
            hardware_source = (HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(live[0])
                               if live else None)
            if hardware_source is not None and live is not None:
                # every frame from now on comes from the stream (the current item's frame is not re-processed,
                # so a stateful processor integrates each camera frame exactly once)
                runner.attach_stream(ENGINE.stream_for(hardware_source, live[1]))
            else:
                runner.detach_stream()
                try:
                    frame = frame_from_xdata(xdata, frame_number=runner.stats.frames_received + 1) \
                        if xdata is not None else None
                except pb.InputError as e:
                    runner.report_error(str(e))
                else:
                    runner.process_now(frame)
            outputs, error, stats = runner.latest()
            if error:
                runner.committed_count = -1  # the next good result is written again
                raise pb.ProcessingError(error)
            # Swift runs execute/commit for source changes and for our result notifications; write only results
            # not written yet, so unchanged outputs don't cost Swift a display update.
            if runner.committed_count == stats["frames_processed"] and runner.committed_count >= 0:
                self.__outputs, self.__stats = (), stats
                return
            # Display refresh is capped (processing is not): each output update costs Swift a display recompute.
            now_s = time.monotonic()
            wait_s = runner.last_commit_s + DISPLAY_INTERVAL_S - now_s
            if runner.is_streaming and runner.committed_count >= 0 and wait_s > 0:
                self.__outputs, self.__stats = (), stats
                request_commit(wait_s)  # the trailing refresh shows the newest result
                return
            runner.last_commit_s = now_s
            runner.committed_count = stats["frames_processed"]
            self.__outputs, self.__stats = outputs, stats
            self.__origin_px = runner.latest_origin_px()  # the ROI the outputs were computed on, not the current one
            self.__parameters = runner.parameters
            self.__source = _source_name(symbolic)

        def commit(self) -> None:  # main thread
            if not self.__outputs:
                return
            stats = self.__stats
            metadata = dict(stats, processor_id=processor_id)
            first, last = stats.get("first_timestamp_s"), stats.get("last_timestamp_s")
            metadata[provenance.PROVENANCE_KEY] = provenance.make_provenance(
                processor_id=processor_id, parameters=self.__parameters, source=self.__source,
                frame_range=(int(stats.get("first_frame_number", -1)), int(stats.get("last_frame_number", -1)) + 1),
                timestamps_s=(float(first), float(last)) if first is not None and last is not None else None,
                frames_processed=stats.get("frames_processed"), frames_dropped=stats.get("frames_dropped"))
            notices = [o.text for o in self.__outputs if isinstance(o, pb.Notice)]
            if notices:
                metadata["notices"] = notices
            for output in self.__outputs:
                xdata = output_to_xdata(output, metadata)
                if xdata is not None:
                    name = "target" if output.name == main_name else output.name
                    self.computation.set_referenced_xdata(name, xdata)
                    if isinstance(output, (pb.TimeSeriesOutput, pb.LinePlotOutput)) and xdata.data_shape[0] > 1 \
                            and len(xdata.data_shape) == 2:
                        self.__show_lines(name, output)
            for output in self.__outputs:
                if isinstance(output, pb.CircleAnnotation):
                    self.__commit_circle(output)

        def __show_lines(self, name: str, output: pb.TimeSeriesOutput | pb.LinePlotOutput) -> None:
            result = self.computation.get_result(name)
            data_item = getattr(result, "_data_item", None)
            document_model = document_model_of(self.computation._computation)
            if data_item is not None and document_model is not None:
                labels = [f"{label} ({unit})" if unit else label for label, unit in
                          zip(output.labels, getattr(output, "units", ()) or [""] * len(output.labels))]
                display.show_rows_as_lines(document_model.get_display_item_for_data_item(data_item), labels)

        def __commit_circle(self, circle: pb.CircleAnnotation) -> None:
            target = self.computation.get_result("target")
            if target is None:
                return
            shape = target.xdata.data_shape if target.xdata is not None else None
            if not shape or len(shape) != 2:
                return
            # circle centre is in source-frame px (pixel [i, j] centred at (i, j)); the target shows the ROI crop
            # the outputs were computed on (the ROI may have moved since, even off the image)
            oy, ox = self.__origin_px
            h, w = shape
            # Swift's normalised graphic coordinates: pixel [i, j] covers [i, i+1) x [j, j+1) / shape, so its centre
            # is at (i + 0.5, j + 0.5) / shape
            cy, cx = (circle.center_px[0] - oy + 0.5) / h, (circle.center_px[1] - ox + 0.5) / w
            ry, rx = 2 * circle.radius_px / h, 2 * circle.radius_px / w
            marker = self.computation.get_result(circle.name)
            if marker is None:
                marker = target.add_ellipse_region(cy, cx, ry, rx)
                marker.label = circle.label
                self.computation.set_result(circle.name, marker)
            else:
                marker._graphic.bounds = Geometry.FloatRect.from_center_and_size((cy, cx), (ry, rx))
            marker._graphic.is_shape_locked = False
            marker._graphic.color = "#0F0" if circle.visible else "rgba(0,0,0,0)"

    InSituComputation.__name__ = f"InSituComputation_{processor_id.replace('.', '_')}"
    return InSituComputation


def _source_name(computation: Symbolic.Computation) -> str:
    """"data item <uuid>" of the computation's source (for the provenance), or "" when unknown."""
    try:
        data_item = computation.get_input_data_item(SOURCE_INPUT)
    except Exception:  # another Swift release: the provenance then names no source
        return ""
    uuid = getattr(data_item, "uuid", None)
    return f"data item {uuid}" if uuid is not None else ""


def _bounds_of(roi: typing.Any) -> tuple[tuple[float, float], tuple[float, float]] | None:
    bounds = getattr(roi, "bounds", None)
    if bounds is None:
        return None
    return ((float(bounds.top), float(bounds.left)), (float(bounds.height), float(bounds.width)))


def register_processor(cls: type[pb.Processor]) -> None:
    """Register one processor with Swift (idempotent)."""
    with _registration_lock:
        if cls.processor_id in _registered:
            return
        _registered.add(cls.processor_id)
    DocumentModel.DocumentModel.register_processing_descriptions({cls.processor_id: processing_description(cls)})
    Symbolic.register_computation_type(cls.processor_id, make_computation_class(cls.processor_id))


def register_all() -> None:
    """Register every processor of the table, and any registered later."""
    for cls in registry.all_processors():
        register_processor(cls)
    registry.add_listener(register_processor)


def create_parameter_variables(computation: typing.Any, parameters: typing.Sequence[pb.Parameter],
                               values: typing.Mapping[str, typing.Any]) -> None:
    """One Inspector variable per declared parameter (label with units, default, declared range): the one place
    every in-situ computation (processors, stack alignment, fusion, decomposition) turns ``Parameter``s into Swift
    variables."""
    for p in parameters:
        computation.create_variable(p.name, _swift_type(p), values[p.name], value_default=p.default,
                                    value_min=p.min, value_max=p.max,
                                    label=f"{p.label} ({p.units})" if p.units else p.label)


def create_item_computation(document_model: typing.Any, data_item: DataItem.DataItem, *, processing_id: str,
                            title: str, input_name: str, input_label: str,
                            parameters: typing.Sequence[pb.Parameter], values: typing.Mapping[str, typing.Any],
                            target_title: str) -> DataItem.DataItem:
    """A computation on one whole data item (a sequence, an SI) with declared parameters: unknown or invalid values
    are refused before anything is created; returns the new target data item (the computation's main output)."""
    unknown = sorted(set(values) - {p.name for p in parameters})
    if unknown:
        raise pb.ParameterError(f"{title} has no parameter {unknown}; its parameters are "
                                f"{[p.name for p in parameters]}.")
    checked = {p.name: p.validate(values.get(p.name, p.default)) for p in parameters}
    display_item = document_model.get_display_item_for_data_item(data_item)
    channel = display_item.get_display_data_channel_for_data_item(data_item) if display_item is not None else None
    computation = document_model.create_computation()
    computation.label = title
    computation.processing_id = processing_id
    computation.create_input_item(input_name, Symbolic.make_item(channel if channel is not None else data_item),
                                  label=input_label)
    create_parameter_variables(computation, parameters, checked)
    target = DataItem.DataItem(large_format=False)
    target.title = target_title
    document_model.append_data_item(target)
    document_model.set_data_item_computation(target, computation)
    return target


def attach(document_model: DocumentModel.DocumentModel, processor_id: str, display_item: typing.Any, *,
           data_item: DataItem.DataItem | None = None, roi: Graphics.Graphic | None = None,
           parameters: typing.Mapping[str, typing.Any] | None = None) -> DataItem.DataItem:
    """Attach a processor to the data shown by ``display_item`` and return the new output data item.

    ``roi``: a rectangle graphic on that display (processed region), or None for the whole frame. ``parameters``
    override the declared defaults. The computation appears in the inspector with its parameters.
    """
    cls = registry.get(processor_id)
    register_processor(cls)
    data_item = data_item or display_item.data_item
    if data_item is None:
        raise ValueError(f"the display has no data to process; show a camera or image first (processor {cls.title}).")
    values = {p.name: p.default for p in cls.PARAMETERS}
    values.update(parameters or {})
    cls(**values)  # validate before creating anything: a clear error instead of a broken computation
    computation = document_model.create_computation()
    computation.label = cls.title
    computation.processing_id = processor_id
    display_data_channel = display_item.get_display_data_channel_for_data_item(data_item)
    computation.create_input_item(SOURCE_INPUT, Symbolic.make_item(display_data_channel), label="Source")
    if roi is not None:
        computation.create_input_item(ROI_INPUT, Symbolic.make_item(roi), label="ROI")
    create_parameter_variables(computation, cls.PARAMETERS, values)
    new_data_item = DataItem.DataItem(large_format=False)
    new_data_item.title = f"{data_item.title} ({cls.title})"
    new_data_item.category = data_item.category
    document_model.append_data_item(new_data_item)
    document_model.set_data_item_computation(new_data_item, computation)
    return new_data_item


def selected_roi(display_item: typing.Any, selected_graphics: typing.Sequence[typing.Any]) -> Graphics.Graphic | None:
    """The rectangle to process: the selected rectangle, else the only rectangle on the display, else None."""
    rectangles = [g for g in selected_graphics if isinstance(g, Graphics.RectangleGraphic)]
    if not rectangles and display_item is not None:
        all_rectangles = [g for g in display_item.graphics if isinstance(g, Graphics.RectangleGraphic)]
        rectangles = all_rectangles if len(all_rectangles) == 1 else []
    return rectangles[0] if rectangles else None
