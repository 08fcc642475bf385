"""The "In-situ processors" dock panel and the Processing > In-situ menu.

Drag and drop: drag a live data item (from the data panel, or a display panel's header/thumbnail) **onto a processor
in this panel** to attach that processor to it. Swift's display panels only accept Swift's own mime types, so a
custom drop target in our own panel is the route Swift's UI supports reliably; clicking a processor (or the menu
item) attaches it to the selected display instead. The panel also lists every attached processor with its frame
counters (received, processed, dropped) and its last processing time.
"""
from __future__ import annotations

import typing

from nion.swift import MimeTypes
from nion.swift import Panel
from nion.swift import Workspace
from nion.ui import CanvasItem
from nion.ui import UserInterface

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu.live_engine import ENGINE
from processing import registry

PANEL_ID = "insitu-processors-panel"


def attach_to_selection(document_controller: typing.Any, processor_id: str) -> typing.Any:
    """Attach ``processor_id`` to the selected display (and its selected or only rectangle ROI)."""
    display_item = document_controller.selected_display_item
    if display_item is None or display_item.data_item is None:
        document_controller.display_log_message = None
        raise ValueError("select a display with image data (e.g. the live camera view) first")
    selected = [display_item.graphics[i] for i in display_item.graphic_selection.indexes]
    roi = computations.selected_roi(display_item, selected)
    data_item = computations.attach(document_controller.document_model, processor_id, display_item, roi=roi)
    new_display_item = document_controller.document_model.get_display_item_for_data_item(data_item)
    if new_display_item is not None:
        document_controller.show_display_item(new_display_item)
    return data_item


class ProcessorDropTarget(CanvasItem.TextButtonCanvasItem):
    """One processor in the panel: click to attach to the selected display, or drop a data item on it."""

    def __init__(self, document_controller: typing.Any, processor_id: str, title: str) -> None:
        super().__init__(title)
        self.__document_controller = document_controller
        self.processor_id = processor_id
        self.border_enabled = True
        self.on_button_clicked = self.__attach_selected

    def __attach_selected(self) -> None:
        try:
            attach_to_selection(self.__document_controller, self.processor_id)
        except ValueError as e:
            self.__document_controller.display_log_message = str(e) if hasattr(
                self.__document_controller, "display_log_message") else None

    def wants_drag_event(self, mime_data: UserInterface.MimeData, x: int, y: int) -> bool:
        return bool(mime_data.has_format(MimeTypes.DISPLAY_ITEM_MIME_TYPE)
                    or mime_data.has_format(MimeTypes.DATA_SOURCE_MIME_TYPE))

    def drag_enter(self, mime_data: UserInterface.MimeData) -> str:
        return "copy" if self.wants_drag_event(mime_data, 0, 0) else "ignore"

    def drag_move(self, mime_data: UserInterface.MimeData, x: int, y: int) -> str:
        return self.drag_enter(mime_data)

    def drop(self, mime_data: UserInterface.MimeData, x: int, y: int) -> str:
        return "copy" if drop_on_processor(self.__document_controller, self.processor_id, mime_data) else "ignore"


def drop_on_processor(document_controller: typing.Any, processor_id: str, mime_data: UserInterface.MimeData) -> bool:
    """Attach ``processor_id`` to the data item carried by ``mime_data`` (display item or data source drag)."""
    document_model = document_controller.document_model
    display_item, graphic = MimeTypes.mime_data_get_data_source(mime_data, document_model)
    if display_item is None:
        display_item = MimeTypes.mime_data_get_display_item(mime_data, document_model)
    if display_item is None or display_item.data_item is None:
        return False
    roi = graphic if graphic is not None and computations.selected_roi(None, [graphic]) else None
    roi = roi or computations.selected_roi(display_item, [])
    computations.attach(document_model, processor_id, display_item, roi=roi)
    return True


def runner_lines() -> list[str]:
    """One status line per attached processor (shown in the panel, also used by tests and the demo)."""
    lines = []
    ENGINE.prune()
    for runner in ENGINE.runners:
        _, error, stats = runner.latest()
        mode = "live" if runner.is_streaming else "static"
        line = (f"{runner.title} [{mode}]: {stats['frames_processed']} processed, {stats['frames_dropped']} dropped, "
                f"{stats['last_ms']:.1f} ms")
        lines.append(line + (f" — {error}" if error else ""))
    return lines or ["No processor attached yet."]


class InSituProcessorsPanel(Panel.Panel):
    def __init__(self, document_controller: typing.Any, panel_id: str, properties: typing.Any) -> None:
        super().__init__(document_controller, panel_id, "In-situ Processors")
        ui = document_controller.ui
        column = ui.create_column_widget(properties={"spacing": 4, "margin": 6})
        column.add(ui.create_label_widget("Drop live data on a processor, or click to attach to the selected display."))
        self.__targets = []
        for cls in registry.all_processors():
            canvas = ui.create_canvas_widget(properties={"height": 26, "min-width": 160})
            target = ProcessorDropTarget(document_controller, cls.processor_id, cls.title)
            canvas.canvas_item.add_canvas_item(target)
            self.__targets.append(target)
            column.add(canvas)
        column.add_spacing(8)
        column.add(ui.create_label_widget("Attached:"))
        self.__status = ui.create_label_widget(properties={"min-height": 60})
        self.__status.word_wrap = True
        column.add(self.__status)
        column.add_stretch()
        self.widget = column
        self.__periodic = document_controller.add_periodic(0.5, self.__update)

    def __update(self) -> None:
        self.__status.text = "\n".join(runner_lines())

    def close(self) -> None:
        self.__periodic = None
        super().close()


def install_menu(document_controller: typing.Any) -> None:
    """Add the Processing > In-situ submenu to a document window (called for every new window)."""
    processing_menu = document_controller.get_menu("_processing_menu")
    if processing_menu is None or getattr(document_controller, "_insitu_menu", None) is not None:
        return
    submenu = document_controller.create_sub_menu("In-situ")
    for cls in registry.all_processors():
        def attach(processor_id: str = cls.processor_id) -> None:
            try:
                attach_to_selection(document_controller, processor_id)
            except ValueError as e:
                print(f"In-situ: {e}")
        submenu.add_menu_item(cls.title, attach)
    processing_menu.add_separator()
    processing_menu.add_sub_menu("In-situ", submenu)
    document_controller._insitu_menu = submenu


def register_panels() -> None:
    Workspace.WorkspaceManager().register_panel(InSituProcessorsPanel, PANEL_ID, "In-situ Processors",
                                                ["left", "right"], "right", {"min-width": 260})


def unregister_panels() -> None:
    Workspace.WorkspaceManager().unregister_panel(PANEL_ID)
