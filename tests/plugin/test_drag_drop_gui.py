"""The real Nion Swift under Xvfb: drag "Max FFT" from the In-situ Processors panel onto the live camera view with the
mouse (xdotool: press, move, release; Qt's own drag and drop), then check that it is attached to the live data and
take the screenshot (docs/screenshots/drag-processor-onto-live-view.png with INSITU_UPDATE_SCREENSHOTS=1, else
out/screenshots/).

A small probe plug-in (``nionswift_plugin.insitu_dnd_probe``, a scripted user of scripts/swift_scripted_user.py)
reports, on the Swift main thread, the screen positions of the processor in our panel and of the live display panel, and
afterwards the computations that exist. Skipped where Xvfb, xdotool or the Swift launcher is missing.
"""
from __future__ import annotations

import pathlib
import shutil
import sys
import time
import typing

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import swift_scripted_user  # noqa: E402
import swift_xvfb  # noqa: E402

_reason = swift_xvfb.available() or (None if shutil.which("xdotool") else "xdotool is not installed")
pytestmark = [pytest.mark.gui, pytest.mark.skipif(_reason is not None, reason=str(_reason))]

PROBE = '''"""Test probe (tests/plugin/test_drag_drop_gui.py): answers requests on the Swift main thread."""
from swift_scripted_user import ScriptedUser


class DragDropProbeExtension(ScriptedUser):
    extension_id = "insitu.test-dnd-probe"

    def answer(self, dc, name):
        from nion.utils import Geometry
        from nionswift_plugin.insitu import panels
        if name == "coords":
            panel = dc.find_dock_panel(panels.PANEL_ID)
            target = next(t for t in panel._InSituProcessorsPanel__targets if t.processor_id == "insitu.max_fft")
            size = target.canvas_size
            source = target.map_to_global(Geometry.IntPoint(y=size.height // 2, x=size.width // 2))
            live = dc.workspace_controller.display_panels[0].content_canvas_item
            lsize = live.canvas_size
            drop = live.map_to_global(Geometry.IntPoint(y=lsize.height // 2, x=lsize.width // 2))
            return {"source": [source.x, source.y], "drop": [drop.x, drop.y],
                    "live_title": dc.workspace_controller.display_panels[0].display_item.displayed_title}
        model = dc.document_model
        return {"computations": [{"processing_id": c.processing_id, "error": c.error_text,
                                  "source": getattr(c.get_input_data_item("src"), "title", None)}
                                 for c in model.computations],
                "shown": [p.display_item.displayed_title if p.display_item else None
                          for p in dc.workspace_controller.display_panels]}
'''


def test_dragging_a_processor_onto_the_live_view_in_the_real_gui(tmp_path: pathlib.Path) -> None:
    gui_driver = tmp_path / "gui-driver"      # the suite's scripted user (nionswift_plugin/insitu/gui_driver.py)
    with swift_scripted_user.SwiftSession(PROBE, package="insitu_dnd_probe", keep_log=tmp_path / "swift.log",
                                          env={"INSITU_GUI_DRIVER": str(gui_driver),
                                               "INSITU_GUI_PROCESSORS": "insitu.copy"}) as swift:
        swift.wait_for(gui_driver / "ready", 180, "Swift to play the camera")
        swift.maximize()
        time.sleep(2.0)
        coords = swift.ask("coords", timeout_s=20)
        assert "error" not in coords, coords
        before = swift.ask("report", timeout_s=20)
        assert not [c for c in before["computations"] if c["processing_id"] == "insitu.max_fft"]
        (sx, sy), (dx, dy) = coords["source"], coords["drop"]
        swift.xdotool("mousemove", str(sx), str(sy))
        time.sleep(0.3)
        swift.xdotool("mousedown", "1")
        for i in range(1, 21):  # a real drag: many small moves (Qt starts the drag after a few px)
            x, y = sx + (dx - sx) * i / 20, sy + (dy - sy) * i / 20
            swift.xdotool("mousemove", str(int(x)), str(int(y)))
            time.sleep(0.05)
        time.sleep(0.5)
        swift.xdotool("mouseup", "1")
        after: dict[str, typing.Any] = {}
        for _ in range(40):
            time.sleep(0.25)
            after = swift.ask("report", timeout_s=20)
            if [c for c in after["computations"] if c["processing_id"] == "insitu.max_fft"]:
                break
        time.sleep(3.0)  # let the processor run and the displays refresh
        shot = swift.screenshot(tmp_path / "drag-processor-onto-live-view.png")
        after = swift.ask("report", timeout_s=20)
        swift.quit(via=gui_driver / "quit")                 # the driver stops the camera, then closes
        log_text = swift.log_text
    max_fft = [c for c in after["computations"] if c["processing_id"] == "insitu.max_fft"]
    assert len(max_fft) == 1, (after, log_text[-3000:])
    assert max_fft[0]["source"] == coords["live_title"] and not max_fft[0]["error"], max_fft
    assert any(title and "Max FFT" in title for title in after["shown"]), after["shown"]  # output shown
    unexpected, _known_upstream = swift_xvfb.classify_tracebacks(log_text)
    assert not unexpected, "\n\n".join(unexpected)[-5000:]  # any traceback of ours fails; see swift_xvfb
    swift.publish(shot)
