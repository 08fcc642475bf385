"""Processing > In-situ > Run on sequence...: any processor over a sequence data item (e.g. a recorded movie), the
full result as new data items.

Thin glue around :func:`processing.execution.offline.run_offline`: the selected data item becomes a
:class:`processing.io.stacks.Stack` (no copy), the run happens on a background thread (the UI never waits), the
dialog shows a progress bar and a Cancel button, and the results become data items on the main thread: each image
output as a sequence (N, H, W), the whole kymograph (one column per frame), the whole time plot (one line per
quantity), the marker table (y, x, radius in px versus time). Each carries ``metadata["insitu"]["provenance"]``
(processor id, parameters, suite version, source data item uuid, frame range, timestamps, complete). Cancel keeps
the frames done (results titled "(incomplete)"); bad input is a message in the dialog, never a traceback.
"""
from __future__ import annotations

import threading
import typing

import numpy as np
from nion.data import Calibration as SwiftCalibration
from nion.data import DataAndMetadata
from nion.swift.model import DataItem
from nion.ui import Declarative

from nionswift_plugin.insitu import display
from nionswift_plugin.insitu import panels
from processing import base as pb
from processing import registry
from processing.execution.collect import ProcessorResult

__all__ = ["MENU_TITLE", "sequence_stack", "SequenceRun", "RunOnSequenceDialog", "install_menu", "result_xdatas"]

MENU_TITLE = "Run on sequence..."


def _cal(c: pb.Calibration) -> SwiftCalibration.Calibration:
    return SwiftCalibration.Calibration(c.offset, c.scale, c.units or None)


def sequence_stack(data_item: typing.Any) -> typing.Any:
    """The data item's sequence (N, H, W) as a :class:`processing.io.stacks.Stack` (source ``data item <uuid>``);
    raises :class:`processing.base.InputError` when it is not a sequence of 2-D images."""
    from processing.io import stacks

    xdata = getattr(data_item, "xdata", None) if data_item is not None else None
    title = str(getattr(data_item, "title", "") or "untitled")
    if xdata is None:
        raise pb.InputError("no data item with data is selected; select a sequence (e.g. a recorded movie) in the "
                            "data panel or a display, then choose Run on sequence again.")
    if not xdata.is_sequence or xdata.collection_dimension_count or xdata.datum_dimension_count != 2:
        kind = "a sequence of images" if xdata.is_sequence else f"{len(xdata.data_shape)}-D data"
        raise pb.InputError(f"'{title}' is {kind} of shape {tuple(xdata.data_shape)}, not a sequence of 2-D images "
                            f"(frames, height, width); select a recorded movie (or make one with Processing > "
                            f"Redimension > Sequence).")
    cals = xdata.dimensional_calibrations
    spatial = tuple(pb.Calibration(float(c.offset), float(c.scale), str(c.units or "")) for c in cals[-2:])
    unit_s = stacks.time_scale_to_s(str(cals[0].units or ""))
    n = int(xdata.data_shape[0])
    times = unit_s * (float(cals[0].offset) + float(cals[0].scale) * np.arange(n)) if unit_s else None
    stack = stacks.stack_from_array(xdata.data, calibrations=typing.cast(typing.Any, spatial), timestamps_s=times,
                                    source=f"data item {data_item.uuid} ({title})",
                                    intensity_units=str(xdata.intensity_calibration.units or ""))
    return stack


def _time_cal(times_s: np.ndarray, as_frames: bool) -> SwiftCalibration.Calibration:
    n = len(times_s)
    step = float((times_s[-1] - times_s[0]) / (n - 1)) if n > 1 else 1.0
    return SwiftCalibration.Calibration(float(times_s[0]) if n else 0.0, step if step > 0 else 1.0,
                                        "frame" if as_frames else "s")


def result_xdatas(result: ProcessorResult) -> list[tuple[str, DataAndMetadata.DataAndMetadata, tuple[str, ...]]]:
    """(title suffix, xdata, line labels) for every output of ``result`` (line labels: () unless a line plot)."""
    base = {"provenance": result.provenance, "notices": [list(n) for n in result.notices[:200]],
            "failed_frames": [list(f) for f in result.failed_frames[:200]]}
    out: list[tuple[str, DataAndMetadata.DataAndMetadata, tuple[str, ...]]] = []
    for name, seq in result.images.items():
        if not seq.data.shape[0]:
            continue
        md = {"insitu": dict(base, output=name, frame_numbers=seq.frame_numbers.tolist())}
        t = _time_cal(seq.times_s, result.times_are_frames)
        if seq.kind == "line":
            cals = [t] + [SwiftCalibration.Calibration()] * (seq.data.ndim - 2) + [_cal(seq.calibrations[0])]
            dd = DataAndMetadata.DataDescriptor(True, 0, seq.data.ndim - 1)
            data = seq.data
        else:
            data = np.ascontiguousarray(seq.data[..., ::-1]) if seq.kind == "rgb" else seq.data  # Swift: BGR
            cals = [t, _cal(seq.calibrations[0]), _cal(seq.calibrations[1])]
            dd = DataAndMetadata.DataDescriptor(True, 0, 2)
        out.append((seq.title or name, DataAndMetadata.new_data_and_metadata(
            data, intensity_calibration=SwiftCalibration.Calibration(units=seq.intensity_units or None),
            dimensional_calibrations=cals, data_descriptor=dd, metadata=md), ()))
    for name, kymo in result.kymographs.items():
        if kymo.data.size:
            md = {"insitu": dict(base, output=name, frame_numbers=kymo.frame_numbers.tolist())}
            out.append((kymo.title or name, DataAndMetadata.new_data_and_metadata(
                kymo.data, intensity_calibration=SwiftCalibration.Calibration(units=kymo.intensity_units or None),
                dimensional_calibrations=[_cal(kymo.y_calibration), _time_cal(kymo.times_s, result.times_are_frames)],
                metadata=md), ()))
    for name, series in result.time_series.items():
        if series.times_s.size:
            md = {"insitu": dict(base, output=name, labels=list(series.labels), units=list(series.units),
                                 times_s=display.pack_float64(series.times_s),
                                 frame_numbers=display.pack_float64(series.frame_numbers))}
            out.append((series.title or name, display.rows_xdata(
                series.values, x_calibration=_time_cal(series.times_s, result.times_are_frames), metadata=md),
                tuple(f"{lb} ({u})" if u else lb for lb, u in zip(series.labels, series.units))))
    for name, table in result.markers.items():
        if table.frame_numbers.size:
            rows = np.stack([table.center_y_px, table.center_x_px, table.radius_px])
            md = {"insitu": dict(base, output=name, columns=["y_px", "x_px", "radius_px"],
                                 visible=table.visible.tolist(), frame_numbers=table.frame_numbers.tolist())}
            out.append((f"{name} positions (px)", display.rows_xdata(
                rows, x_calibration=_time_cal(table.times_s, result.times_are_frames), metadata=md),
                ("y (px)", "x (px)", "radius (px)")))
    return out


class SequenceRun:
    """One processor over one sequence data item, on a background thread; results committed on the main thread.

    ``done``/``total`` frames, ``status`` text, ``finished`` (threading.Event), ``result_items`` (new data items),
    ``error`` (a message; never raised into Swift). ``on_change()`` is called (on the main thread) when they change.
    """

    def __init__(self, document_controller: typing.Any, data_item: typing.Any, processor_id: str,
                 parameters: typing.Mapping[str, typing.Any] | None = None) -> None:
        self.document_controller = document_controller
        self.data_item = data_item
        self.processor_id = processor_id
        self.parameters = dict(parameters or {})
        self.done = 0
        self.total = 0
        self.status = ""
        self.error: str | None = None
        self.result_items: list[typing.Any] = []
        self.finished = threading.Event()
        self.on_change: typing.Callable[[], None] | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._title = processor_id

    def start(self) -> None:
        """Validate the input and start the background run (a bad input finishes at once with ``error``)."""
        try:
            stack = sequence_stack(self.data_item)
            cls = registry.get(self.processor_id)
            cls(**self.parameters)  # parameter errors now, not on the thread
        except (pb.ProcessingError, KeyError) as e:
            self._finish_with_error(str(e.args[0]) if isinstance(e, KeyError) else str(e))
            return
        self.total = stack.n_frames
        self._title = cls.title
        self.status = f"{cls.title}: 0 / {self.total} frames"
        self._thread = threading.Thread(target=self._work, args=(stack, cls.title), name="insitu-run-on-sequence",
                                        daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Stop after the frame in progress; the frames done become the (incomplete) results."""
        self._cancel.set()

    def _progress(self, done: int, total: int) -> None:  # background thread
        self.done, self.total = done, total
        self.status = f"{self._title}: {done} / {total} frames"
        if done == total or done % max(1, total // 200) == 0:  # at most ~200 UI updates per run
            self._notify()

    def _work(self, stack: typing.Any, title: str) -> None:  # background thread
        from processing.execution.offline import run_offline
        try:
            run = run_offline(self.processor_id, stack, parameters=self.parameters, progress=self._progress,
                              cancel=self._cancel)
        except Exception as e:  # never a traceback into Swift: the message is the run's status
            self._finish_with_error(f"{title} failed: {e}")
            return
        self.document_controller.queue_task(lambda: self._commit(run.results[self.processor_id], title,
                                                                 run.interrupted, run.messages))

    def _commit(self, result: ProcessorResult, title: str, interrupted: bool, messages: list[str]) -> None:
        """Main thread: the results as new data items."""
        try:
            document_model = self.document_controller.document_model
            source_title = str(self.data_item.title or "sequence")
            suffix = "" if result.complete else " (incomplete)"
            for name, xdata, labels in result_xdatas(result):
                item = DataItem.new_data_item(xdata)
                item.title = f"{source_title} · {title}: {name}{suffix}"
                document_model.append_data_item(item)
                if labels:
                    display.show_rows_as_lines(document_model.get_display_item_for_data_item(item), list(labels))
                self.result_items.append(item)
            skipped = f", {len(result.failed_frames)} skipped" if result.failed_frames else ""
            state = "cancelled, partial results kept" if interrupted else "done"
            self.status = (f"{title}: {result.frames_processed} / {self.total} frames{skipped}; {state}; "
                           f"{len(self.result_items)} new data item(s).")
            if result.failed_frames:
                self.status += f" First skipped: {result.failed_frames[0][1]}"
        except Exception as e:  # a commit problem is shown, not raised into Swift
            self.error = f"{title}: the results could not be added ({type(e).__name__}: {e})."
            self.status = self.error
        self.finished.set()
        if self.on_change is not None:
            self.on_change()

    def _finish_with_error(self, message: str) -> None:
        self.error = message
        self.status = message
        self.finished.set()
        self._notify()

    def _notify(self) -> None:
        callback = self.on_change
        if callback is not None:
            self.document_controller.queue_task(callback)


class RunOnSequenceDialog(Declarative.Handler):
    """The modeless dialog: processor choice, parameters (``name=value, ...``; defaults otherwise), Run, progress
    bar, status, Cancel."""

    def __init__(self, document_controller: typing.Any, data_item: typing.Any) -> None:
        super().__init__()
        self.document_controller = document_controller
        self.data_item = data_item
        self.processors = [c for c in registry.all_processors()]
        self.processor_titles = [c.title for c in self.processors]
        self._index = 0
        self.parameters_text = ""  # NAME=VALUE, comma separated (as nionswift-insitu run --param)
        self._progress = 0
        self._status = f"Source: {getattr(data_item, 'title', '') or '(none selected)'}"
        self.run: SequenceRun | None = None
        u = Declarative.DeclarativeUI()
        self.ui_view = u.create_column(
            u.create_row(u.create_label(text="Processor"),
                         u.create_combo_box(items=self.processor_titles, current_index="@binding(processor_index)"),
                         u.create_stretch(), spacing=8),
            u.create_row(u.create_label(text="Parameters"),
                         u.create_line_edit(text="@binding(parameters_text)", placeholder_text="e.g. slow=40, fast=2",
                                            width=300), u.create_stretch(), spacing=8),
            u.create_progress_bar(value="@binding(progress)", minimum=0, maximum=1000),
            u.create_label(text="@binding(status)", word_wrap=True, width=420, min_height=48),
            u.create_row(u.create_stretch(), u.create_push_button(text="Run", on_clicked="run_clicked"),
                         u.create_push_button(text="Cancel", on_clicked="cancel_clicked"), spacing=8),
            spacing=8, margin=12)

    @property
    def processor_index(self) -> int:
        return self._index

    @processor_index.setter
    def processor_index(self, index: int) -> None:
        self._index = max(0, min(int(index), len(self.processors) - 1))

    @property
    def progress(self) -> int:
        return self._progress

    @property
    def status(self) -> str:
        return self._status

    def _update(self) -> None:  # main thread
        run = self.run
        if run is None:
            return
        self._progress = int(1000 * run.done / run.total) if run.total else (1000 if run.finished.is_set() else 0)
        self._status = run.status
        self.notify_property_changed("progress")
        self.notify_property_changed("status")

    def run_clicked(self, widget: typing.Any = None) -> None:
        if self.run is not None and not self.run.finished.is_set():
            return  # one run at a time per dialog
        from processing.execution.cli import parse_params
        try:
            parameters = parse_params([p.strip() for p in self.parameters_text.split(",") if p.strip()])
        except pb.ProcessingError as e:
            self._status = str(e).replace("--param ", "")
            self.notify_property_changed("status")
            return
        self.run = SequenceRun(self.document_controller, self.data_item, self.processors[self._index].processor_id,
                               parameters)
        self.run.on_change = self._update
        self.run.start()
        self._update()

    def cancel_clicked(self, widget: typing.Any = None) -> None:
        if self.run is not None:
            self.run.cancel()

    def close(self) -> None:
        if self.run is not None:
            self.run.cancel()
            self.run.on_change = None
        super().close()


def selected_data_item(document_controller: typing.Any) -> typing.Any:
    """The focused display's data item, else the first selected in the data panel (None when nothing is)."""
    display_item = document_controller.selected_display_item
    if display_item is None:
        shown = document_controller.filtered_display_items_model.display_items
        chosen = [shown[i] for i in sorted(document_controller.selection.indexes) if i < len(shown)]
        display_item = chosen[0] if chosen else None
    return display_item.data_item if display_item is not None else None


def open_dialog(document_controller: typing.Any) -> RunOnSequenceDialog:
    """The menu action: a dialog for the selected data item (it says what is wrong if it is not a sequence)."""
    handler = RunOnSequenceDialog(document_controller, selected_data_item(document_controller))
    u = Declarative.DeclarativeUI()
    dialog: typing.Any = Declarative.construct(document_controller.ui, document_controller,
                                               u.create_modeless_dialog(handler.ui_view, title="Run on sequence"),
                                               handler)
    if dialog is not None:
        dialog.show()
    return handler


def install_menu(document_controller: typing.Any) -> None:
    """Menu handler (registered after :func:`nionswift_plugin.insitu.panels.install_menu`): add Run on sequence
    to the Processing > In-situ submenu of a new window (idempotent)."""
    panels.add_to_insitu_menu(document_controller, "run_on_sequence", MENU_TITLE,
                              lambda: open_dialog(document_controller), separator=True)
