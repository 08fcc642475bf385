"""Drag a processor from the In-situ Processors panel onto a display panel: it is attached to the data shown there.

Swift's display panels delegate every drag and drop to the window's workspace controller
(``nion.swift.Workspace.Workspace``): ``should_handle_drag_for_mime_data``, ``handle_drag_enter``,
``handle_drag_move`` and ``handle_drop`` decide what a panel accepts (Swift's own mime types: display items, display
panels, file URLs). There is no plug-in hook, so :func:`install` wraps these four methods **on the workspace
instance** of each document window (private API, checked against nionswift 16.16; see docs/decisions.md): a drag
carrying :data:`PROCESSOR_MIME_TYPE` is handled here, everything else goes to Swift's own method unchanged. The
processor is attached to the panel's display item and its selected (or only) rectangle ROI, like the menu item.
Nothing is computed here; errors become a message in the In-situ Processors panel, never an exception into Swift.
"""
from __future__ import annotations

import logging
import typing

from nion.ui import UserInterface

from nionswift_plugin.insitu import computations
from processing import registry

#: the mime type of a processor drag; its data is the processor id
PROCESSOR_MIME_TYPE = "application/x-nionswift-insitu-processor"

_HOOKS = ("should_handle_drag_for_mime_data", "handle_drag_enter", "handle_drag_move", "handle_drop")


def notify(document_controller: typing.Any, text: str) -> None:
    """A message for the user about a drag, drop or click (logged, and shown in the In-situ Processors panel)."""
    logging.getLogger("insitu").info("%s", text)
    document_controller._insitu_message = text


def put_processor(mime_data: UserInterface.MimeData, processor_id: str) -> None:
    """Make ``mime_data`` carry ``processor_id`` (the drag source: a processor in our panel)."""
    mime_data.set_data_as_string(PROCESSOR_MIME_TYPE, processor_id)


def processor_of(mime_data: UserInterface.MimeData) -> str | None:
    """The registered processor id carried by ``mime_data``, or None (not ours, or an unknown id)."""
    if not mime_data.has_format(PROCESSOR_MIME_TYPE):
        return None
    processor_id = mime_data.data_as_string(PROCESSOR_MIME_TYPE)
    known = {cls.processor_id for cls in registry.all_processors()}
    return processor_id if processor_id in known else None


def accepts(display_panel: typing.Any) -> bool:
    """A processor can be dropped on a display panel that shows data (a live view, or any image)."""
    display_item = getattr(display_panel, "display_item", None)
    data_item = display_item.data_item if display_item is not None else None
    return data_item is not None and data_item.xdata is not None


def drop_processor(document_controller: typing.Any, display_panel: typing.Any, processor_id: str) -> typing.Any:
    """Attach ``processor_id`` to what ``display_panel`` shows (with its selected or only rectangle as ROI) and show
    the output in an empty display panel if the window has one; returns the new output data item. Raises
    ``ValueError`` when the panel shows no data."""
    if not accepts(display_panel):
        raise ValueError("drop the processor on a display that shows data (e.g. the live camera view)")
    display_item = display_panel.display_item
    selected = [display_item.graphics[i] for i in display_item.graphic_selection.indexes]
    roi = computations.selected_roi(display_item, selected)
    document_model = document_controller.document_model
    data_item = computations.attach(document_model, processor_id, display_item, roi=roi)
    # show the new output in an empty display panel of the window, if there is one (never over the live view)
    workspace = getattr(document_controller, "workspace_controller", None)
    new_display_item = document_model.get_display_item_for_data_item(data_item)
    empty = [p for p in (workspace.display_panels if workspace is not None else []) if p.display_item is None]
    if empty and new_display_item is not None:
        empty[0].set_display_panel_display_item(new_display_item)
    return data_item


def install(document_controller: typing.Any) -> bool:
    """Let the display panels of ``document_controller``'s window accept processor drops (idempotent). Returns
    False when the window has no workspace (e.g. a headless document controller without one)."""
    workspace = getattr(document_controller, "workspace_controller", None)
    if workspace is None:
        return False
    if getattr(workspace, "_insitu_dnd_installed", False):
        return True
    original = {name: getattr(workspace, name) for name in _HOOKS}

    def should_handle_drag_for_mime_data(mime_data: UserInterface.MimeData) -> bool:
        if mime_data.has_format(PROCESSOR_MIME_TYPE):
            return True
        return bool(original["should_handle_drag_for_mime_data"](mime_data))

    def handle_drag_enter(display_panel: typing.Any, mime_data: UserInterface.MimeData) -> str:
        if mime_data.has_format(PROCESSOR_MIME_TYPE):
            return "copy" if processor_of(mime_data) and accepts(display_panel) else "ignore"
        return str(original["handle_drag_enter"](display_panel, mime_data))

    def handle_drag_move(display_panel: typing.Any, mime_data: UserInterface.MimeData, x: int, y: int) -> str:
        if mime_data.has_format(PROCESSOR_MIME_TYPE):
            return "copy" if processor_of(mime_data) and accepts(display_panel) else "ignore"
        return str(original["handle_drag_move"](display_panel, mime_data, x, y))

    def handle_drop(display_panel: typing.Any, mime_data: UserInterface.MimeData, region: str, x: int, y: int) -> str:
        if not mime_data.has_format(PROCESSOR_MIME_TYPE):
            return str(original["handle_drop"](display_panel, mime_data, region, x, y))
        processor_id = processor_of(mime_data)
        if processor_id is None:
            return "ignore"
        try:
            drop_processor(document_controller, display_panel, processor_id)
        except Exception as e:  # never into Swift's event handling: tell the user in our panel
            title = registry.get(processor_id).title
            notify(document_controller, f"cannot attach {title} here: {e}")
            return "ignore"
        return "copy"

    for name, fn in zip(_HOOKS, (should_handle_drag_for_mime_data, handle_drag_enter, handle_drag_move,
                                 handle_drop)):
        setattr(workspace, name, fn)
    workspace._insitu_dnd_installed = True
    return True
