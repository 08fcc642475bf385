"""Focal and energy-filtered series with auto-exposure in Nion Swift: a camera adapter, a background runner that
adds the results as data items, a scripting call and the "Focal / energy series" dock panel.

Thin glue over :mod:`processing.stack.series` (all decisions: auto-exposure, darks, scaling, abort). Why a panel of
ours and not a method of Swift's Acquisition panel: the Acquisition panel's methods
(``acquisition-method-component-factory``) build a fixed stream pipeline (``Acquisition.AcquisitionMethodLike``)
whose control values and exposure are set before it starts; auto-exposure decides the exposure from each frame and
acquires dark references with the beam blanked in between, which that pipeline cannot express. The panel uses
the same look (label/field rows, Start/Abort, a progress bar).

Results (main thread): the raw series (integer counts, a sequence), the series scaled to the first slice's exposure
(counts per first exposure, the one to read), and with "Align (SDSD)" the Align stack computation on the scaled
series (the raw series is kept). Every item's metadata holds the series report under ``insitu.series`` (exposures
used, darks acquired, time, per-slice exposure / dark / value); an aborted series is titled INCOMPLETE.
"""
from __future__ import annotations

import copy
import logging
import threading
import typing

import numpy as np
from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.swift import Panel
from nion.swift import Workspace
from nion.swift.model import DataItem

from nionswift_plugin.insitu import stack_computations
from processing import base as pb
from processing.stack.exposure import AutoExposurePolicy
from processing.stack.series import (SeriesBusyError, SeriesPlan, SeriesResult, energy_series_plan,
                                     focal_series_plan, run_series)

__all__ = ["SwiftSeriesDevice", "SeriesRunner", "SeriesPanel", "acquire_series", "create_data_items",
           "register_panels", "unregister_panels", "PANEL_ID"]

PANEL_ID = "insitu-series-panel"


class SwiftSeriesDevice:
    """A Swift camera hardware source + the instrument (stem controller) as a series device. Frames: the first
    frame that starts after the exposure/binning are set (``get_next_xdatas_to_start``). Darks: beam blanked with
    ``blank_control`` (default ``C_Blank``); the first frame after each blanker move is discarded (a playing camera
    pipelines frames: in the real GUI the first slice's dark-subtracted signal read 0 and its exposure jumped to the
    maximum)."""

    def __init__(self, camera: typing.Any, instrument: typing.Any, *, full_scale_counts: float = 16383.0,
                 blank_control: str = "C_Blank", timeout_s: float = 30.0) -> None:
        self.camera = camera
        self.instrument = instrument
        self.full_scale_counts = float(full_scale_counts)
        self.blank_control = blank_control
        self.timeout_s = float(timeout_s)
        self.calibrations: typing.Sequence[Calibration.Calibration] = ()
        self.__started_playing = False
        self.__settle = False

    def has_control(self, name: str) -> bool:
        ok, _value = self.instrument.TryGetVal(name)
        return bool(ok)

    def get_control(self, name: str) -> float:
        ok, value = self.instrument.TryGetVal(name)
        if not ok:
            raise pb.ParameterError(f"the instrument has no control '{name}'.")
        return float(value)

    def set_control(self, name: str, value: float) -> None:
        if not self.instrument.SetValAndConfirm(name, float(value), 1.0, 5000):
            raise pb.ParameterError(f"the instrument refused {name} = {value}; check the control and its range.")

    def _grab(self, exposure_s: float, binning: int) -> np.typing.NDArray[typing.Any]:
        parameters = copy.deepcopy(self.camera.get_current_frame_parameters())
        parameters.exposure_ms = exposure_s * 1000.0
        parameters.binning = int(binning)
        self.camera.set_current_frame_parameters(parameters)
        if not self.camera.is_playing:
            self.camera.start_playing()
            self.__started_playing = True
        xdatas = self.camera.get_next_xdatas_to_start(self.timeout_s + 3 * exposure_s)
        xdata = xdatas[0] if xdatas else None
        if xdata is None:
            raise pb.InputError(f"the camera delivered no frame within {self.timeout_s:g} s; check it is connected.")
        self.calibrations = xdata.dimensional_calibrations
        return np.asarray(xdata.data)

    def prepare(self) -> None:
        """Start the camera playing now (call it on Swift's UI thread: in the real application a camera started from
        the series' worker thread delivers no frame, "Could not start data_source"); stopped again by :meth:`close`."""
        if not self.camera.is_playing:
            self.camera.start_playing()
            self.__started_playing = True

    def acquire(self, exposure_s: float, binning: int) -> np.typing.NDArray[typing.Any]:
        if self.__settle:
            # the first frame after the blanker moved may have been exposed before it did (a playing camera
            # pipelines its frames): discarded, so a slice never measures a blanked frame
            self.__settle = False
            self._grab(exposure_s, binning)
        return self._grab(exposure_s, binning)

    def acquire_dark(self, exposure_s: float, binning: int) -> np.typing.NDArray[typing.Any]:
        blanked = self.get_control(self.blank_control)
        self.set_control(self.blank_control, 1.0)
        try:
            self._grab(exposure_s, binning)          # may have started before the beam was blanked: discarded
            return self._grab(exposure_s, binning)
        finally:
            self.set_control(self.blank_control, blanked)
            self.__settle = True

    def close(self) -> None:
        if self.__started_playing and self.camera.is_playing:
            self.camera.stop_playing(sync_timeout=5.0)
        self.__started_playing = False


def _sequence_xdata(data: np.typing.NDArray[typing.Any], calibrations: typing.Sequence[Calibration.Calibration],
                    units: str, metadata: dict[str, typing.Any]) -> DataAndMetadata.DataAndMetadata:
    spatial = list(calibrations[-2:]) if len(calibrations) >= 2 else [Calibration.Calibration()] * 2
    return DataAndMetadata.new_data_and_metadata(
        data, intensity_calibration=Calibration.Calibration(units=units),
        dimensional_calibrations=[Calibration.Calibration()] + spatial, metadata=metadata,
        data_descriptor=DataAndMetadata.DataDescriptor(True, 0, 2))


def create_data_items(document_model: typing.Any, result: SeriesResult,
                      calibrations: typing.Sequence[Calibration.Calibration] = (), *, align: bool = False,
                      align_options: dict[str, typing.Any] | None = None) -> dict[str, DataItem.DataItem]:
    """Add the raw and scaled series (and the Align stack computation) to the document. Main thread."""
    if not result.slices:
        return {}
    report = result.report()
    metadata = {"insitu": {"series": report}}
    label = f"{result.plan.name.capitalize()} series" + ("" if result.complete else " (INCOMPLETE)")
    t0 = result.slices[0].exposure_s
    items: dict[str, DataItem.DataItem] = {}
    for key, data, units, title in (
            ("raw", result.raw, "counts", f"{label}: raw counts"),
            ("scaled", result.scaled(), f"counts per {t0 * 1e3:g} ms", f"{label}: scaled to first exposure")):
        item = DataItem.new_data_item(_sequence_xdata(data, calibrations, units, metadata))
        item.title = title
        document_model.append_data_item(item)
        items[key] = item
    if align and len(result.slices) >= 2:
        items["aligned"] = stack_computations.align_item(document_model, items["scaled"], **(align_options or {}))
    return items


class SeriesRunner:
    """One series on a background thread: ``start()``, ``abort()``, ``wait()``; ``on_progress(done, total,
    remaining_s, message)`` and ``on_finished(result or None, error or "")`` are called from the worker thread."""

    def __init__(self, device: typing.Any, plan: SeriesPlan, *, exposure_s: float, binning: int = 1,
                 policy: AutoExposurePolicy | None = None, max_retakes: int = 1,
                 on_progress: typing.Callable[[int, int, float, str], None] | None = None,
                 on_finished: typing.Callable[[SeriesResult | None, str], None] | None = None) -> None:
        self.device, self.plan = device, plan
        self.exposure_s, self.binning, self.policy, self.max_retakes = exposure_s, binning, policy, max_retakes
        self.on_progress, self.on_finished = on_progress, on_finished
        self.abort_event = threading.Event()
        self.result: SeriesResult | None = None
        self.error = ""
        self.__thread: threading.Thread | None = None

    def start(self) -> None:
        self.__thread = threading.Thread(target=self.__run, name="insitu-series", daemon=True)
        self.__thread.start()

    def __run(self) -> None:
        try:
            self.result = run_series(self.device, self.plan, exposure_s=self.exposure_s, binning=self.binning,
                                     policy=self.policy, max_retakes=self.max_retakes, abort_event=self.abort_event,
                                     progress=self.on_progress)
        except (pb.ProcessingError, ValueError, OSError) as e:
            self.error = str(e)
        except Exception as e:  # an unexpected failure of the camera or instrument: a message, never a dead thread
            import traceback
            self.error = f"unexpected {type(e).__name__}: {e}"
            logging.error("insitu series: %s", traceback.format_exc())
        finally:
            close = getattr(self.device, "close", None)
            if callable(close):
                close()
            if self.on_finished is not None:
                self.on_finished(self.result, self.error)

    def abort(self) -> None:
        self.abort_event.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        if self.__thread is not None:
            self.__thread.join(timeout_s)
            return not self.__thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self.__thread is not None and self.__thread.is_alive()


def acquire_series(camera: typing.Any, instrument: typing.Any, kind: str, *, start: float, step: float, count: int,
                   exposure_s: float, slit_width_eV: float = 10.0, lower_fraction: float = 0.05,
                   upper_fraction: float = 0.8, percentile: float = 99.5, full_scale_counts: float = 16383.0,
                   max_exposure_s: float = 30.0, binning: int = 1) -> SeriesResult:
    """Scripting call: acquire a focal ("focal": start/step in nm) or energy ("energy": eV) series now, blocking;
    returns the :class:`~processing.stack.series.SeriesResult` (add it with :func:`create_data_items`)."""
    plan = focal_series_plan(start, step, count) if kind == "focal" else \
        energy_series_plan(start, step, count, slit_width_eV=slit_width_eV)
    device = SwiftSeriesDevice(camera, instrument, full_scale_counts=full_scale_counts)
    policy = AutoExposurePolicy(lower_fraction=lower_fraction, upper_fraction=upper_fraction, percentile=percentile,
                                full_scale_counts=full_scale_counts, max_exposure_s=max_exposure_s)
    try:
        return run_series(device, plan, exposure_s=exposure_s, binning=binning, policy=policy)
    finally:
        device.close()


def _find_instrument(camera: typing.Any) -> typing.Any:
    from nion.utils import Registry
    instrument = getattr(camera, "instrument", None) or getattr(camera, "_CameraHardwareSource2__instrument_controller",
                                                                None)
    if instrument is None:
        instrument = Registry.get_component("stem_controller")
    return instrument


class SeriesPanel(Panel.Panel):
    """Window > Focal / energy series: the series settings, Start / Abort, progress with time remaining."""

    FIELDS: tuple[tuple[str, str, float], ...] = (
        ("start", "Start (nm or eV)", -40.0), ("step", "Step (nm or eV)", 8.0), ("count", "Images", 11),
        ("slit_width_eV", "Slit width (eV)", 10.0), ("exposure_ms", "Start exposure (ms)", 50.0),
        ("lower_percent", "Lower threshold (%)", 5.0), ("upper_percent", "Upper threshold (%)", 80.0),
        ("percentile", "Signal percentile (%)", 99.5), ("full_scale_counts", "Full scale (counts)", 16383.0),
        ("max_exposure_s", "Max exposure (s)", 30.0),
    )

    def __init__(self, document_controller: typing.Any, panel_id: str, properties: typing.Any) -> None:
        super().__init__(document_controller, panel_id, "Focal / energy series")
        ui = document_controller.ui
        self.values: dict[str, typing.Any] = {name: default for name, _label, default in self.FIELDS}
        self.values.update({"kind": "focal", "align": False, "camera_id": "insitu_camera"})
        self.runner: SeriesRunner | None = None
        column = ui.create_column_widget(properties={"spacing": 4, "margin": 6})

        def row(label: str, widget: typing.Any) -> None:
            r = ui.create_row_widget(properties={"spacing": 4})
            r.add(ui.create_label_widget(label, properties={"width": 150}))
            r.add(widget)
            r.add_stretch()
            column.add(r)

        kind = ui.create_combo_box_widget(items=["Focal series (C10)", "Energy series (EFTEM)"])

        def kind_changed(item: str) -> None:
            self.values["kind"] = "focal" if item.startswith("Focal") else "energy"
        kind.on_current_item_changed = kind_changed
        self._kind_box = kind
        row("Series", kind)
        self.edits: dict[str, typing.Any] = {}
        for name, label, default in self.FIELDS:
            edit = ui.create_line_edit_widget(properties={"width": 100})
            edit.text = f"{default:g}"

            def changed(text: str, name: str = name) -> None:
                try:
                    self.values[name] = float(text)
                except ValueError:
                    self._message(f"{name}: {text!r} is not a number")
            edit.on_editing_finished = changed
            self.edits[name] = edit
            row(label, edit)
        align = ui.create_check_box_widget("Align the series (SDSD) when done")

        def align_changed(checked: bool) -> None:
            self.values["align"] = bool(checked)
        align.on_checked_changed = align_changed
        self._align_box = align
        column.add(align)
        buttons = ui.create_row_widget(properties={"spacing": 4})
        start = ui.create_push_button_widget("Start")
        start.on_clicked = self.start
        abort = ui.create_push_button_widget("Abort")
        abort.on_clicked = self.abort
        buttons.add(start)
        buttons.add(abort)
        buttons.add_stretch()
        column.add(buttons)
        self._progress = ui.create_progress_bar_widget(properties={"height": 18, "min-width": 200})
        self._progress.minimum = 0
        self._progress.maximum = 1000
        column.add(self._progress)
        self._status = ui.create_label_widget("Idle.")
        self._status.word_wrap = True
        column.add(self._status)
        column.add_stretch()
        self.widget = column
        self.__auto_start()

    def __auto_start(self) -> None:
        """The real-GUI screenshot run (``scripts/series_screenshot.py``): ``INSITU_GUI_SERIES`` = JSON with panel
        "values" and instrument "controls" to set; the series starts a few seconds after the panel opens."""
        import json
        import os
        spec = os.environ.get("INSITU_GUI_SERIES")
        if not spec:
            return
        request = json.loads(spec)
        self.values.update(request.get("values", {}))
        for name, edit in self.edits.items():
            edit.text = f"{self.values[name]:g}"
        self._align_box.checked = bool(self.values["align"])
        self._kind_box.current_index = 0 if self.values["kind"] == "focal" else 1

        def go() -> None:
            from nion.utils import Registry
            instrument = Registry.get_component("stem_controller")
            for name, value in request.get("controls", {}).items():
                if instrument is not None:
                    instrument.SetVal(name, float(value))
            self.start()
        threading.Timer(float(request.get("delay_s", 4.0)), lambda: self.document_controller.queue_task(go)).start()

    def _message(self, text: str) -> None:
        def show() -> None:
            self._status.text = text
        self.document_controller.queue_task(show)

    def _progress_update(self, done: int, total: int, remaining_s: float, message: str) -> None:
        def show() -> None:
            self._progress.value = int(1000 * done / max(total, 1))
            self._status.text = f"{message}; about {remaining_s:.0f} s remaining"
        self.document_controller.queue_task(show)

    def start(self) -> None:
        """Start button: refuse a second series while one runs; errors become the status line."""
        if self.runner is not None and self.runner.running:
            self._message("A series is already running: wait for it or press Abort.")
            return
        try:
            from nion.instrumentation import HardwareSource
            v = self.values
            camera = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(v["camera_id"])
            if camera is None:
                raise pb.InputError(f"no camera '{v['camera_id']}' is connected; start Swift with the camera "
                                    f"(or INSITU_SIMULATOR=1 for the simulator).")
            plan = focal_series_plan(v["start"], v["step"], int(v["count"])) if v["kind"] == "focal" else \
                energy_series_plan(v["start"], v["step"], int(v["count"]), slit_width_eV=v["slit_width_eV"])
            policy = AutoExposurePolicy(lower_fraction=v["lower_percent"] / 100, upper_fraction=v["upper_percent"] / 100,
                                        percentile=v["percentile"], full_scale_counts=v["full_scale_counts"],
                                        max_exposure_s=v["max_exposure_s"])
            device = SwiftSeriesDevice(camera, _find_instrument(camera), full_scale_counts=v["full_scale_counts"])
        except (pb.ProcessingError, ValueError) as e:
            self._message(f"Not started: {e}")
            return
        align = bool(self.values["align"])

        def finished(result: SeriesResult | None, error: str) -> None:
            def add() -> None:
                if result is not None:
                    create_data_items(self.document_controller.document_model, result, device.calibrations,
                                      align=align)
                    report = result.report()
                    stopped = any(note.startswith("stopped by an error") for note in result.notes)
                    state = "done" if result.complete else (
                        "STOPPED by an error (slices kept, marked incomplete)" if stopped else
                        "ABORTED (slices kept, marked incomplete)")
                    errors = [n for n in result.notes if n.startswith("stopped by an error")]
                    self._status.text = (f"Series {state}: {report['slices_acquired']}/{report['slices_planned']} "
                                         f"slices, exposures {[round(e * 1e3, 3) for e in report['exposures_used_s']]}"
                                         f" ms, {report['darks_acquired']} dark references, "
                                         f"{report['elapsed_s']:.1f} s. " + " ".join(errors or result.notes[:2]))
                else:
                    self._status.text = f"Series failed: {error}"
            self.document_controller.queue_task(add)

        self.runner = SeriesRunner(device, plan, exposure_s=self.values["exposure_ms"] / 1000, policy=policy,
                                   on_progress=self._progress_update, on_finished=finished)
        try:
            device.prepare()
        except Exception as e:  # a camera that cannot start: a message, nothing started
            self.runner = None
            self._message(f"Not started: the camera could not start playing ({type(e).__name__}: {e}).")
            return
        self._status.text = "Starting..."
        self.runner.start()

    def abort(self) -> None:
        if self.runner is not None and self.runner.running:
            self.runner.abort()
            self._status.text = "Aborting after the current frame..."


def register_panels() -> None:
    """Window > Focal / energy series, and the fixed-exposure method in Swift's Acquisition panel."""
    from nionswift_plugin.insitu import series_method
    Workspace.WorkspaceManager().register_panel(SeriesPanel, PANEL_ID, "Focal / energy series", ["left", "right"],
                                                "right", {"min-width": 320})
    series_method.register()


def unregister_panels() -> None:
    from nionswift_plugin.insitu import series_method
    Workspace.WorkspaceManager().unregister_panel(PANEL_ID)
    series_method.unregister()
