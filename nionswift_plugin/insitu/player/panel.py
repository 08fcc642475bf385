"""The **Player** panel (Window > In-situ Player): open a file or use the selected data item, transport (play/pause,
step, loop, speed 0.1x-10x, pacing by timestamps or a frame rate, scrub, frame range), the recording's metadata,
drift-corrected playback with a shift plot, and the Recorder (Start/Stop for any camera).

Thin glue: reading is :func:`processing.io.stacks.open_stack`, pacing :class:`processing.execution.playback.Playback`,
recording :mod:`nionswift_plugin.insitu.player.recorder`. Bad input shows a message in the panel (problem, value,
remedy), never an exception into Swift. Widgets are refreshed by a 0.2 s periodic task on the main thread.
"""
from __future__ import annotations

import datetime
import pathlib
import typing

import numpy as np

from nion.instrumentation import HardwareSource
from nion.swift import Panel
from nion.swift import Workspace
from nion.ui import CanvasItem

from processing.base import Calibration, ProcessingError
from processing.execution.playback import SPEED_MAX, SPEED_MIN
from processing.io.stacks import Stack, describe, open_stack, stack_from_array, time_scale_to_s
from nionswift_plugin.insitu.player import device, recorder

__all__ = ["PlayerPanel", "PANEL_ID", "register_panels", "unregister_panels", "stack_from_data_item"]

PANEL_ID = "insitu-player-panel"
SPEEDS = ("0.1x", "0.25x", "0.5x", "1x", "2x", "4x", "10x")


def stack_from_data_item(data_item: typing.Any) -> Stack:
    """A Swift data item as a stack: a sequence of 2-D images (N, H, W), or one image. Raises ProcessingError."""
    xdata = getattr(data_item, "xdata", None)
    title = getattr(data_item, "title", "") or "data item"
    if xdata is None:
        raise ProcessingError(f"'{title}' has no data; choose a data item with images.")
    if len(xdata.datum_dimension_shape) != 2 or xdata.is_collection or len(xdata.data_shape) not in (2, 3):
        raise ProcessingError(f"'{title}' has shape {xdata.data_shape}, not a sequence of 2-D images; choose an "
                              f"image or an image sequence (e.g. from a camera's sequence acquisition).")
    cy, cx = xdata.dimensional_calibrations[-2:]
    calibrations = (Calibration(float(cy.offset), float(cy.scale), str(cy.units or "")),
                    Calibration(float(cx.offset), float(cx.scale), str(cx.units or "")))
    timestamps = None
    if xdata.is_sequence:
        ct = xdata.dimensional_calibrations[0]
        unit_s = time_scale_to_s(str(ct.units or ""))
        if unit_s is not None and ct.scale:
            timestamps = unit_s * (ct.offset + ct.scale * np.arange(xdata.data_shape[0], dtype=np.float64))
    return stack_from_array(xdata.data, calibrations=calibrations, timestamps_s=timestamps, source=f"data item '{title}'",
                            intensity_units=str(xdata.intensity_calibration.units or ""),
                            metadata={"holder": {}, "original": dict(xdata.metadata)})


def _draw_shifts(drawing_context: typing.Any, rect: typing.Any, shifts: list[tuple[int, float, float]]) -> None:
    """dy (blue) and dx (orange) in px versus frame, in ``rect`` (canvas coordinates)."""
    x0, y0, w, h = float(rect.left), float(rect.top), float(rect.width), float(rect.height)
    with drawing_context.saver():
        drawing_context.begin_path()
        drawing_context.rect(x0, y0, w, h)
        drawing_context.fill_style = "#F4F4F4"
        drawing_context.fill()
        drawing_context.font = "11px"
        drawing_context.fill_style = "#444"
        if len(shifts) < 2:
            drawing_context.fill_text("drift shifts (px) appear here during drift-corrected playback", x0 + 6,
                                      y0 + h / 2)
            return
        data = np.asarray(shifts[-2000:], dtype=np.float64)
        lo, hi = float(np.min(data[:, 1:])), float(np.max(data[:, 1:]))
        span = max(hi - lo, 0.5)
        last = max(1.0, float(len(data) - 1))
        for column, colour in ((1, "#1f77b4"), (2, "#ff7f0e")):
            drawing_context.begin_path()
            for i, value in enumerate(data[:, column]):
                px = x0 + 4 + (w - 8) * i / last
                py = y0 + h - 6 - (h - 24) * (value - lo) / span
                if i == 0:
                    drawing_context.move_to(px, py)
                else:
                    drawing_context.line_to(px, py)
            drawing_context.stroke_style = colour
            drawing_context.line_width = 1.5
            drawing_context.stroke()
        drawing_context.fill_text(f"dy (blue) {data[-1, 1]:+.2f} px, dx (orange) {data[-1, 2]:+.2f} px; "
                                  f"range {lo:+.1f} to {hi:+.1f} px over {len(data)} frames", x0 + 6, y0 + 12)


class _ShiftPlotComposer(CanvasItem.BaseComposer):
    def __init__(self, canvas_item: CanvasItem.AbstractCanvasItem, layout_sizing: typing.Any,
                 composer_cache: CanvasItem.ComposerCache, shifts: list[tuple[int, float, float]]) -> None:
        super().__init__(canvas_item, layout_sizing, composer_cache)
        self.__shifts = shifts

    def _repaint(self, drawing_context: typing.Any, canvas_rect: typing.Any,
                 composer_cache: CanvasItem.ComposerCache) -> None:
        _draw_shifts(drawing_context, canvas_rect, self.__shifts)


class ShiftPlot(CanvasItem.AbstractCanvasItem):
    """The drift-corrected playback's shifts: dy (blue) and dx (orange) in px versus frame."""

    def __init__(self) -> None:
        super().__init__()
        self.shifts: list[tuple[int, float, float]] = []

    def _get_composer(self, composer_cache: CanvasItem.ComposerCache) -> CanvasItem.BaseComposer | None:
        return _ShiftPlotComposer(self, self.layout_sizing, composer_cache, list(self.shifts))


class PlayerPanel(Panel.Panel):
    """Transport, metadata, drift-corrected playback and recording for the In-situ Player camera."""

    def __init__(self, document_controller: typing.Any, panel_id: str, properties: typing.Any) -> None:
        super().__init__(document_controller, panel_id, "In-situ Player")
        ui = document_controller.ui
        self.module = device.register_player()
        self.recording: recorder.HardwareRecorder | None = None
        column = ui.create_column_widget(properties={"spacing": 3, "margin": 6})

        row = ui.create_row_widget()
        self.open_button = ui.create_push_button_widget("Open File...")
        self.open_button.on_clicked = self.__choose_file
        self.item_button = ui.create_push_button_widget("Use Selected Data Item")
        self.item_button.on_clicked = self.use_selected_data_item
        row.add(self.open_button)
        row.add_spacing(4)
        row.add(self.item_button)
        row.add_stretch()
        column.add(row)
        self.info = ui.create_label_widget("No recording loaded.", properties={"min-height": 60})
        self.info.word_wrap = True
        column.add(self.info)

        row = ui.create_row_widget()
        self.buttons: dict[str, typing.Any] = {}
        for key, text, action in (("first", "|<", lambda: self.seek(self.__range()[0])), ("back", "<", lambda: self.step(-1)),
                                  ("play", "Play", self.toggle_play), ("forward", ">", lambda: self.step(+1))):
            button = ui.create_push_button_widget(text)
            button.on_clicked = action
            self.buttons[key] = button
            row.add(button)
        row.add_spacing(6)
        self.loop_box = ui.create_check_box_widget("Loop")
        self.loop_box.on_checked_changed = lambda on: self.__do(lambda p: p.set_loop(on))
        row.add(self.loop_box)
        row.add_stretch()
        column.add(row)

        row = ui.create_row_widget()
        row.add(ui.create_label_widget("Speed"))
        self.speed_combo = ui.create_combo_box_widget(items=list(SPEEDS))
        self.speed_combo.current_item = "1x"
        self.speed_combo.on_current_item_changed = lambda item: self.set_speed(float(item.rstrip("x")))
        row.add(self.speed_combo)
        row.add_spacing(6)
        self.pace_box = ui.create_check_box_widget("Recorded timestamps")
        self.pace_box.on_checked_changed = lambda on: self.__do(lambda p: p.set_pace_by_timestamps(on))
        row.add(self.pace_box)
        row.add_spacing(6)
        row.add(ui.create_label_widget("else"))
        self.fps_edit = ui.create_line_edit_widget(properties={"width": 44})
        self.fps_edit.text = "20"
        self.fps_edit.on_editing_finished = lambda text: self.__do(lambda p: p.set_fps(self.__number(text, "fps")))
        row.add(self.fps_edit)
        row.add(ui.create_label_widget("fps"))
        row.add_stretch()
        column.add(row)

        self.slider = ui.create_slider_widget()
        self.slider.minimum, self.slider.maximum = 0, 0
        self.slider.on_value_changed = self.seek
        column.add(self.slider)
        self.position = ui.create_label_widget("frame - / -")
        column.add(self.position)
        row = ui.create_row_widget()
        row.add(ui.create_label_widget("Frames"))
        self.first_edit = ui.create_line_edit_widget(properties={"width": 56})
        self.last_edit = ui.create_line_edit_widget(properties={"width": 56})
        for edit in (self.first_edit, self.last_edit):
            edit.on_editing_finished = lambda text: self.set_range(self.first_edit.text, self.last_edit.text)
        row.add(self.first_edit)
        row.add(ui.create_label_widget("to"))
        row.add(self.last_edit)
        row.add_stretch()
        column.add(row)

        self.drift_box = ui.create_check_box_widget("Drift-corrected playback (running reference)")
        self.drift_box.on_checked_changed = self.set_drift_correction
        column.add(self.drift_box)
        self.shift_plot = ShiftPlot()
        canvas = ui.create_canvas_widget(properties={"height": 90, "min-width": 240})
        canvas.canvas_item.add_canvas_item(self.shift_plot)
        column.add(canvas)

        column.add_spacing(6)
        column.add(ui.create_label_widget("Recorder", properties={"font": "bold"}))
        row = ui.create_row_widget()
        self.camera_combo = ui.create_combo_box_widget(items=self.camera_ids())
        row.add(self.camera_combo)
        self.record_button = ui.create_push_button_widget("Start Recording")
        self.record_button.on_clicked = self.toggle_recording
        row.add_spacing(4)
        row.add(self.record_button)
        row.add_stretch()
        column.add(row)
        self.record_path = ui.create_line_edit_widget()
        self.record_path.text = str(pathlib.Path.home() / "insitu-recording.hspy")
        column.add(self.record_path)
        self.record_status = ui.create_label_widget("")
        self.record_status.word_wrap = True
        column.add(self.record_status)

        self.message = ui.create_label_widget("", properties={"min-height": 20})
        self.message.word_wrap = True
        column.add(self.message)
        column.add_stretch()
        self.widget = column
        self.__periodic = document_controller.add_periodic(0.2, self.refresh)
        self.__shown_stack: typing.Any = None
        self.refresh()

    # ---------------------------------------------------------------- sources
    def __choose_file(self) -> None:
        paths, _, _ = self.document_controller.get_file_paths_dialog(
            "Open a recording", str(pathlib.Path.home()),
            "Recordings (*.hspy *.h5 *.hdf5 *.nxs *.emd *.dm3 *.dm4 *.tif *.tiff *.mrc *.npy *.png);;All files (*)")
        if paths:
            self.open_path(paths[0])

    def open_path(self, path: str | pathlib.Path, *, dataset: str | None = None) -> bool:
        """Open a file or a folder of numbered images in the player; False (and a message) if it cannot be read."""
        try:
            stack = open_stack(path, dataset=dataset)
        except (ProcessingError, OSError) as error:
            self.show_message(str(error))
            return False
        self.load(stack)
        return True

    def use_selected_data_item(self) -> bool:
        display_item = self.document_controller.selected_display_item
        try:
            if display_item is None or display_item.data_item is None:
                raise ProcessingError("no data item is selected; click an image sequence in the Data panel or a "
                                      "display first.")
            self.load(stack_from_data_item(display_item.data_item))
        except ProcessingError as error:
            self.show_message(str(error))
            return False
        return True

    def load(self, stack: Stack) -> None:
        speed = float(self.speed_combo.current_item.rstrip("x"))
        playback = self.module.player.load(stack, fps=self.__number(self.fps_edit.text, "fps", 20.0), speed=speed,
                                           loop=bool(self.loop_box.checked))
        start_unix = stack.metadata.get("original", {}).get("insitu", {}).get("start_time_unix_s")
        recorded_epoch = isinstance(start_unix, (int, float)) and start_unix > 1e9  # a wall-clock start, not 0
        self.module.camera_device.set_time_base(float(typing.cast(float, start_unix)) if recorded_epoch
                                                else datetime.datetime.now().timestamp())
        self.pace_box.checked = playback.state().pace_by_timestamps
        self.pace_box.enabled = stack.timestamps_s is not None
        self.slider.maximum = stack.n_frames - 1
        self.first_edit.text, self.last_edit.text = "0", str(stack.n_frames - 1)
        self.show_message(f"loaded {stack.n_frames} frames; press Play (the camera 'In-situ Player' goes live).")
        self.refresh()

    # ---------------------------------------------------------------- transport
    @property
    def hardware_source(self) -> typing.Any:
        return HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(device.PLAYER_ID)

    def __do(self, action: typing.Callable[[typing.Any], None], *, live: bool | None = None) -> None:
        """Run a transport action; ``live``: then make sure the camera is live (True: playing, False: paused)."""
        playback = self.module.player.playback
        if playback is None:
            self.show_message("nothing to play: open a file or use a data item first.")
            return
        try:
            action(playback)
            if live is not None:
                self.__ensure_live(play=live)
            self.show_message("")
        except ProcessingError as error:
            self.show_message(str(error))
        self.refresh()

    def __number(self, text: str, what: str, default: float | None = None) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            if default is not None:
                return default
            raise ProcessingError(f"{what}: {text!r} is not a number; type a number such as 20.") from None

    def __range(self) -> tuple[int, int]:
        playback = self.module.player.playback
        return playback.state().frame_range if playback is not None else (0, 0)

    def __ensure_live(self, *, play: bool) -> None:
        source = self.hardware_source
        camera = self.module.camera_device
        if source is not None and not source.is_playing:
            camera.play_on_start = play
            source.start_playing()

    def toggle_play(self) -> None:
        playback = self.module.player.playback
        if playback is not None and playback.state().playing and self.hardware_source.is_playing:
            self.__do(lambda p: p.pause())
        else:
            self.__do(lambda p: p.play(), live=True)

    def step(self, delta: int) -> None:
        self.__do(lambda p: p.step(delta), live=False)

    def seek(self, index: int) -> None:
        playback = self.module.player.playback
        if playback is not None and playback.state().index != int(index):
            self.__do(lambda p: p.seek(int(index)), live=False)

    def set_speed(self, speed: float) -> None:
        self.__do(lambda p: p.set_speed(min(max(speed, SPEED_MIN), SPEED_MAX)))

    def set_range(self, first: str, last: str) -> None:
        self.__do(lambda p: p.set_frame_range(int(self.__number(first, "first frame")),
                                              int(self.__number(last, "last frame"))))

    def set_drift_correction(self, on: bool) -> None:
        self.module.player.set_drift_correction(on)
        self.shift_plot.shifts = []
        self.shift_plot.update()

    # ---------------------------------------------------------------- recorder
    def camera_ids(self) -> list[str]:
        """Hardware source ids of the cameras (simulated, the player, real ones)."""
        return [s.hardware_source_id for s in HardwareSource.HardwareSourceManager().hardware_sources
                if hasattr(s, "camera")]

    def toggle_recording(self) -> None:
        if self.recording is not None:
            status = self.recording.stop()
            self.recording = None
            self.record_status.text = status.message()
        else:
            try:
                self.recording = recorder.start_recording(str(self.camera_combo.current_item), self.record_path.text)
                self.record_status.text = f"recording {self.camera_combo.current_item} to {self.record_path.text}"
            except (ProcessingError, OSError) as error:
                self.show_message(str(error))
        self.refresh()

    # ---------------------------------------------------------------- display
    def show_message(self, text: str) -> None:
        self.message.text = text

    def refresh(self) -> None:
        player = self.module.player
        stack, playback = player.stack, player.playback
        if stack is not self.__shown_stack:
            self.__shown_stack = stack
            self.info.text = "\n".join(describe(stack)) if stack is not None else "No recording loaded."
        if playback is not None:
            state = playback.state()
            self.buttons["play"].text = "Pause" if state.playing else "Play"
            if self.slider.value != state.index:
                self.slider.value = state.index
            ended = " (end)" if state.ended else ""
            self.position.text = (f"frame {state.index} / {state.n_frames - 1}, t = {state.file_time_s:.3f} s, "
                                  f"speed {state.speed:g}x{', loop' if state.loop else ''}{ended}")
        if player.drift_correction and len(player.shifts) != len(self.shift_plot.shifts):
            self.shift_plot.shifts = list(player.shifts)
            self.shift_plot.update()
        self.record_button.text = "Stop Recording" if self.recording is not None else "Start Recording"
        if self.recording is not None:
            status = self.recording.status()
            self.record_status.text = status.message()
            if not status.running and status.error:
                self.recording.stop()
                self.recording = None
                self.show_message(f"recording stopped: {status.error}")
        if self.module.camera_device.last_error:
            self.show_message(self.module.camera_device.last_error)
            self.module.camera_device.last_error = ""

    def close(self) -> None:
        self.__periodic = None
        if self.recording is not None:
            self.recording.stop()
            self.recording = None
        super().close()


def register_panels() -> None:
    Workspace.WorkspaceManager().register_panel(PlayerPanel, PANEL_ID, "In-situ Player", ["left", "right"], "right",
                                                {"min-width": 320})


def unregister_panels() -> None:
    Workspace.WorkspaceManager().unregister_panel(PANEL_ID)
