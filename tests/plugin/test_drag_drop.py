"""Drag a processor from the In-situ Processors panel onto a display panel showing live data (issue 14, point 7).

Headless Swift with the simulated camera: the drag starts on the processor in our panel (mouse press + move), the
drop is simulated through the display panel's own canvas item (``content_canvas_item``: wants_drag_event,
drag_enter, drag_move, drop), i.e. through Swift's workspace controller as the real GUI does. Swift's own drops
(display items, text) must behave as before; the old route (a data item dropped on our panel) still works.
"""
from __future__ import annotations

import typing

import numpy as np
import pytest
from nion.swift import MimeTypes
from nion.swift.model import Graphics
from nion.utils import Geometry

from instrument_sim import configuration
from nionswift_plugin.insitu import dnd, panels
from nionswift_plugin.insitu.headless import HeadlessSwift
from nionswift_plugin.insitu.live_engine import ENGINE

CAMERA_ID = "insitu_camera"


@pytest.fixture
def swift() -> typing.Iterator[HeadlessSwift]:
    with HeadlessSwift(configuration.SimulatorConfiguration(frame_shape=(128, 128))) as session:
        yield session


def _panel_target(swift: HeadlessSwift, processor_id: str) -> panels.ProcessorDropTarget:
    panel = panels.InSituProcessorsPanel(swift.document_controller, panels.PANEL_ID, {})
    swift._stack.callback(panel.close)
    return next(t for t in panel._InSituProcessorsPanel__targets if t.processor_id == processor_id)


def _drag_from_panel(target: panels.ProcessorDropTarget, monkeypatch: pytest.MonkeyPatch) -> typing.Any:
    """Press on the processor and move the mouse: the drag starts with our mime type (captured here)."""
    started: list[typing.Any] = []
    monkeypatch.setattr(target, "drag", lambda mime_data, *a, **k: started.append(mime_data))
    target.mouse_pressed(10, 10, typing.cast(typing.Any, None))
    target.mouse_position_changed(11, 11, typing.cast(typing.Any, None))
    assert not started  # below the threshold: still a click
    target.mouse_position_changed(10 + panels.DRAG_THRESHOLD_PX + 2, 10, typing.cast(typing.Any, None))
    assert len(started) == 1
    return started[0]


def _drop_on(display_panel: typing.Any, mime_data: typing.Any) -> tuple[bool, str]:
    canvas = display_panel.content_canvas_item
    wants = canvas.wants_drag_event(mime_data, 50, 50)
    canvas.drag_enter(mime_data)
    canvas.drag_move(mime_data, 50, 50)
    return wants, canvas.drop(mime_data, 50, 50)


def test_dragging_a_processor_onto_the_live_display_attaches_it_there(swift: HeadlessSwift,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    live, display_item = swift.play(CAMERA_ID, exposure_ms=20)
    workspace = swift.document_controller.workspace_controller
    workspace.apply_layouts(workspace.display_panels[0], [workspace.display_panels[0]], 2, 1)
    live_panel, other_panel = workspace.display_panels[:2]
    live_panel.set_display_panel_display_item(display_item)
    other_panel.set_display_panel_display_item(None)
    roi = Graphics.RectangleGraphic()
    roi.bounds = Geometry.FloatRect.from_tlhw(0.25, 0.25, 0.5, 0.5)
    display_item.add_graphic(roi)
    mime_data = _drag_from_panel(_panel_target(swift, "insitu.copy"), monkeypatch)
    assert dnd.processor_of(mime_data) == "insitu.copy"
    assert workspace.handle_drag_enter(live_panel, mime_data) == "copy"
    assert workspace.handle_drag_move(live_panel, mime_data, 5, 5) == "copy"
    before = set(swift.document_model.data_items)
    wants, result = _drop_on(live_panel, mime_data)
    assert wants and result == "copy"
    new_items = [d for d in swift.document_model.data_items if d not in before]
    assert len(new_items) == 1 and new_items[0].title.endswith("(Copy (ROI))")
    computation = swift.document_model.get_data_item_computation(new_items[0])
    assert computation.processing_id == "insitu.copy"
    assert computation.get_input_data_item("src") is live  # attached to what the panel shows
    assert computation.get_input("roi") is roi   # with the display's only rectangle as ROI
    assert live_panel.display_item is display_item  # the live view stays where it was dropped
    assert other_panel.display_item is swift.document_model.get_display_item_for_data_item(new_items[0])  # shown
    # the processor runs on the live stream: frames arrive and the output holds the ROI crop
    runner = None
    for _ in range(200):
        swift.pump(0.05)
        runner = ENGINE.find_runner(computation)
        if runner is not None and runner.is_streaming and runner.latest()[2]["frames_processed"] >= 3 \
                and new_items[0].xdata is not None:
            break
    assert runner is not None and runner.is_streaming, computation.error_text
    assert runner.latest()[2]["frames_processed"] >= 3
    assert new_items[0].xdata.data_shape == (64, 64)


def test_processor_drop_is_refused_where_there_is_no_data_and_swift_keeps_its_own_drops(
        swift: HeadlessSwift, monkeypatch: pytest.MonkeyPatch) -> None:
    live, display_item = swift.play(CAMERA_ID, exposure_ms=20)
    workspace = swift.document_controller.workspace_controller
    layout = workspace.apply_layouts(workspace.display_panels[0], [workspace.display_panels[0]], 2, 1)
    del layout
    first, second = workspace.display_panels[:2]
    first.set_display_panel_display_item(None)
    second.set_display_panel_display_item(None)
    mime_data = _drag_from_panel(_panel_target(swift, "insitu.max_fft"), monkeypatch)
    n_computations = len(swift.document_model.computations)
    assert workspace.handle_drag_enter(first, mime_data) == "ignore"  # an empty panel does not accept it
    wants, result = _drop_on(first, mime_data)
    assert result == "ignore" and len(swift.document_model.computations) == n_computations
    assert "cannot attach Max FFT" in swift.document_controller._insitu_message
    # an unknown processor id in our mime type is ignored
    unknown = swift.document_controller.ui.create_mime_data()
    dnd.put_processor(unknown, "no.such.processor")
    first.set_display_panel_display_item(display_item)
    assert _drop_on(first, unknown)[1] == "ignore" and len(swift.document_model.computations) == n_computations
    # Swift's own drop: a display item dropped in the middle of a panel shows it there, as before
    own = swift.document_controller.ui.create_mime_data()
    MimeTypes.mime_data_put_display_item(own, display_item)
    assert workspace.should_handle_drag_for_mime_data(own)
    assert workspace.handle_drag_enter(second, own) == "copy"
    workspace.handle_drop(second, own, "middle", 50, 50)
    assert second.display_item is display_item and len(swift.document_model.computations) == n_computations
    text = swift.document_controller.ui.create_mime_data()
    text.set_data_as_string("text/plain", "hello")
    assert not workspace.should_handle_drag_for_mime_data(text)
    assert workspace.handle_drag_enter(second, text) == "ignore"


def test_click_still_attaches_to_the_selected_display_and_install_is_idempotent(
        swift: HeadlessSwift, monkeypatch: pytest.MonkeyPatch) -> None:
    live, display_item = swift.play(CAMERA_ID, exposure_ms=20)
    workspace = swift.document_controller.workspace_controller
    target = _panel_target(swift, "insitu.noise_reduction")  # the panel installs the drop handling
    hooks = [getattr(workspace, name) for name in dnd._HOOKS]
    assert dnd.install(swift.document_controller)  # already installed: nothing changes
    panels.install_menu(swift.document_controller)  # (what Swift calls for every new window)
    assert [getattr(workspace, name) for name in dnd._HOOKS] == hooks
    workspace.display_panels[0].set_display_panel_display_item(display_item)
    swift.document_controller.selected_display_panel = workspace.display_panels[0]
    before = len(swift.document_model.computations)
    target.mouse_pressed(10, 10, typing.cast(typing.Any, None))
    target.mouse_released(10, 10, typing.cast(typing.Any, None))
    target.mouse_clicked(10, 10, typing.cast(typing.Any, None))
    assert len(swift.document_model.computations) == before + 1
    assert swift.document_model.computations[-1].processing_id == "insitu.noise_reduction"


def test_data_item_dropped_on_a_processor_in_the_panel_still_attaches(swift: HeadlessSwift) -> None:
    live, display_item = swift.play(CAMERA_ID, exposure_ms=20)
    target = _panel_target(swift, "insitu.live_difference")
    mime_data = swift.document_controller.ui.create_mime_data()
    MimeTypes.mime_data_put_display_item(mime_data, display_item)
    assert target.drop(mime_data, 0, 0) == "copy"
    computation = swift.document_model.computations[-1]
    assert computation.processing_id == "insitu.live_difference"
    assert computation.get_input_data_item("src") is live
    assert np.asarray(live.xdata.data).ndim == 2


def test_thumbnail_of_a_removed_data_panel_row_no_longer_raises(swift: HeadlessSwift) -> None:
    """Issue 14, 3(c): a thumbnail finishing after its data-panel row was removed raised ValueError in Swift's grid
    (seen when the source of attached processors is deleted while the camera plays). Deterministic version: a row
    removed from the grid, then its update arrives."""
    from nion.ui import GridFlowCanvasItem
    assert panels.guard_thumbnail_race() and panels.guard_thumbnail_race()  # installed, idempotent
    live, display_item = swift.play(CAMERA_ID, exposure_ms=20)
    data_panel = swift.document_controller.find_dock_panel("data-panel")
    grids = []

    def find(item: typing.Any) -> None:
        if isinstance(item, GridFlowCanvasItem.GridFlowCanvasItem):
            grids.append(item)
        for child in getattr(item, "canvas_items", []):
            find(child)

    for widget_item in getattr(data_panel, "_DataPanel__canvas_items", []) or []:
        find(widget_item)
    if not grids:  # search the whole data panel widget tree
        import gc
        grids = [o for o in gc.get_objects() if isinstance(o, GridFlowCanvasItem.GridFlowCanvasItem)]
    grid = next(g for g in grids if g._grid_flow_item_canvas_items)
    row = grid._grid_flow_item_canvas_items[0]
    removed = GridFlowCanvasItem.GridFlowItemCanvasItem(grid, row.item, grid._GridFlowCanvasItem__item_factory)
    grid._update_child(removed)  # before the guard: ValueError '... is not in list'
    grid._update_child(row)      # rows still in the grid update as before
