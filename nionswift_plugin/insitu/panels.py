"""The "In-situ processors" dock panel and the Processing > In-situ menu.

Drag and drop, both ways:

* drag a processor **from this panel onto a display panel** (e.g. the live camera view): it is attached to the data
  shown there, with that display's selected (or only) rectangle as ROI (:mod:`nionswift_plugin.insitu.dnd` extends
  the window's workspace controller for our mime type; Swift's own drops are unchanged);
* drag a live data item (from the data panel, or a display panel's header/thumbnail) **onto a processor in this
  panel** to attach that processor to it.

Clicking a processor (or the menu item) attaches it to the selected display. The panel also lists every attached
processor with its frame counters (received, processed, dropped) and its last processing time.
"""
from __future__ import annotations

import typing

from nion.swift import MimeTypes
from nion.swift import Panel
from nion.swift import Workspace
from nion.ui import CanvasItem
from nion.ui import UserInterface

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu import dnd
from nionswift_plugin.insitu.live_engine import ENGINE
from processing import registry

PANEL_ID = "insitu-processors-panel"


def attach_to_selection(document_controller: typing.Any, processor_id: str) -> typing.Any:
    """Attach ``processor_id`` to the selected display (and its selected or only rectangle ROI)."""
    display_item = document_controller.selected_display_item
    if display_item is None or display_item.data_item is None:
        raise ValueError("select a display with image data (e.g. the live camera view) first")
    selected = [display_item.graphics[i] for i in display_item.graphic_selection.indexes]
    roi = computations.selected_roi(display_item, selected)
    data_item = computations.attach(document_controller.document_model, processor_id, display_item, roi=roi)
    new_display_item = document_controller.document_model.get_display_item_for_data_item(data_item)
    if new_display_item is not None:
        document_controller.show_display_item(new_display_item)
    return data_item


#: pixels the mouse must move with the button down before a click becomes a drag
DRAG_THRESHOLD_PX = 4


class ProcessorDropTarget(CanvasItem.TextButtonCanvasItem):
    """One processor in the panel: click to attach to the selected display, drag it onto a display panel, or drop
    a data item on it."""

    def __init__(self, document_controller: typing.Any, processor_id: str, title: str) -> None:
        super().__init__(title)
        self.__document_controller = document_controller
        self.processor_id = processor_id
        self.border_enabled = True
        self.on_button_clicked = self.__attach_selected
        self.__press_px: tuple[int, int] | None = None
        self.tool_tip = f"Click: attach {title} to the selected display. Drag onto a display panel to attach it there."

    def __attach_selected(self) -> None:
        try:
            attach_to_selection(self.__document_controller, self.processor_id)
        except ValueError as e:
            dnd.notify(self.__document_controller, str(e))

    def mouse_pressed(self, x: int, y: int, modifiers: UserInterface.KeyboardModifiers) -> bool:
        self.__press_px = (x, y)
        return super().mouse_pressed(x, y, modifiers)

    def mouse_released(self, x: int, y: int, modifiers: UserInterface.KeyboardModifiers) -> bool:
        self.__press_px = None
        return super().mouse_released(x, y, modifiers)

    def mouse_position_changed(self, x: int, y: int, modifiers: UserInterface.KeyboardModifiers) -> bool:
        if self.__press_px is not None and max(abs(x - self.__press_px[0]), abs(y - self.__press_px[1])) \
                >= DRAG_THRESHOLD_PX:
            self.__press_px = None
            self.start_drag()
            return True
        return super().mouse_position_changed(x, y, modifiers)

    def start_drag(self) -> UserInterface.MimeData:
        """Start dragging this processor (to a display panel); returns the drag's mime data."""
        mime_data: UserInterface.MimeData = self.__document_controller.ui.create_mime_data()
        dnd.put_processor(mime_data, self.processor_id)
        self._mouse_pressed = False
        self.drag(mime_data)
        return mime_data

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
        dnd.install(document_controller)
        ui = document_controller.ui
        column = ui.create_column_widget(properties={"spacing": 4, "margin": 6})
        hint = ui.create_label_widget("Drag a processor onto a live display, drop live data on a processor, or "
                                      "click one to attach it to the selected display.")
        hint.word_wrap = True
        column.add(hint)
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
        message = getattr(self.document_controller, "_insitu_message", None)
        self.__status.text = "\n".join(runner_lines() + ([f"Last message: {message}"] if message else []))

    def close(self) -> None:
        self.__periodic = None
        super().close()


def install_menu(document_controller: typing.Any) -> None:
    """Add the Processing > In-situ submenu to a document window (called for every new window)."""
    dnd.install(document_controller)  # the window's display panels accept processors dragged from our panel
    processing_menu = document_controller.get_menu("_processing_menu")
    if processing_menu is None or getattr(document_controller, "_insitu_menu", None) is not None:
        return
    submenu = document_controller.create_sub_menu("In-situ")
    for cls in registry.all_processors():
        def attach(processor_id: str = cls.processor_id) -> None:
            try:
                attach_to_selection(document_controller, processor_id)
            except ValueError as e:
                dnd.notify(document_controller, str(e))
        submenu.add_menu_item(cls.title, attach)
    processing_menu.add_separator()
    processing_menu.add_sub_menu("In-situ", submenu)
    document_controller._insitu_menu = submenu


def add_to_insitu_menu(document_controller: typing.Any, key: str, title: str,
                       action: typing.Callable[[], typing.Any], *, separator: bool = False) -> bool:
    """Add one item to the window's Processing > In-situ submenu, once per window and ``key`` (menu handlers run
    for every new window, after :func:`install_menu`). An error the action raises for bad input or a bad selection
    (``ValueError``, which ``processing``'s errors derive from) is shown to the user, never raised into Swift.
    Returns True when the item was added."""
    submenu = getattr(document_controller, "_insitu_menu", None)
    flag = f"_insitu_menu_{key}"
    if submenu is None or getattr(document_controller, flag, False):
        return False

    def run() -> None:
        try:
            action()
        except ValueError as e:
            dnd.notify(document_controller, f"{title.rstrip('.')}: {e}")
    if separator:
        submenu.add_separator()
    submenu.add_menu_item(title, run)
    setattr(document_controller, flag, True)
    return True


def guard_thumbnail_race() -> bool:
    """Work around a Swift race seen during churn (issue 14, 3c): a data-panel row's thumbnail, computed on a
    worker thread, can finish after the row was removed (its data item deleted), and
    ``nion.ui.GridFlowCanvasItem.GridFlowCanvasItem._update_child`` then raises ``ValueError: ... is not in list``.
    Our outputs trigger it because they are the items that change while Swift cascade-deletes them with their
    source (the glue never writes a removed item: measured). The guard ignores updates of rows no longer in the
    grid (nothing to repaint). Private API of nionui 10.2 (checked: the method and the list exist); idempotent;
    returns False when the method is not there (a newer nionui: nothing patched)."""
    from nion.ui import GridFlowCanvasItem
    cls = GridFlowCanvasItem.GridFlowCanvasItem
    original = getattr(cls, "_update_child", None)
    if original is None or getattr(original, "_insitu_guard", False):
        return original is not None

    def _update_child(self: typing.Any, canvas_item: typing.Any) -> None:
        if canvas_item not in self._grid_flow_item_canvas_items:
            return  # the row was removed (or not yet inserted) while its thumbnail was being computed
        try:
            original(self, canvas_item)
        except ValueError:
            if canvas_item in self._grid_flow_item_canvas_items:
                raise
            # removed by the main thread between the check and the update (the thumbnail runs on a pool thread)

    _update_child._insitu_guard = True  # type: ignore[attr-defined]
    cls._update_child = _update_child  # type: ignore[method-assign]
    return True


def register_panels() -> None:
    from nionswift_plugin.insitu import swift_workarounds
    swift_workarounds.install_all()  # incl. guard_thumbnail_race
    Workspace.WorkspaceManager().register_panel(InSituProcessorsPanel, PANEL_ID, "In-situ Processors",
                                                ["left", "right"], "right", {"min-width": 260})


def unregister_panels() -> None:
    Workspace.WorkspaceManager().unregister_panel(PANEL_ID)
