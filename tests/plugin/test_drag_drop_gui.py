"""The real Nion Swift under Xvfb: drag "Max FFT" from the In-situ Processors panel onto the live camera view with the
mouse (xdotool: press, move, release; Qt's own drag and drop), then check that it is attached to the live data and
take the screenshot (docs/screenshots/drag-processor-onto-live-view.png with INSITU_UPDATE_SCREENSHOTS=1, else
out/screenshots/).

A small probe plug-in (written to a temporary folder on PYTHONPATH, ``nionswift_plugin.insitu_dnd_probe``) reports,
on the Swift main thread, the screen positions of the processor in our panel and of the live display panel, and
afterwards the computations that exist. Skipped where Xvfb, xdotool or the Swift launcher is missing.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import typing

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("swift_xvfb", ROOT / "scripts" / "swift_xvfb.py")
assert spec and spec.loader
swift_xvfb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(swift_xvfb)

_reason = swift_xvfb.available() or (None if shutil.which("xdotool") else "xdotool is not installed")
pytestmark = [pytest.mark.gui, pytest.mark.skipif(_reason is not None, reason=str(_reason))]

PROBE = '''"""Test probe (tests/plugin/test_drag_drop_gui.py): answers requests on the Swift main thread."""
import json, os, pathlib, threading, time

FOLDER = pathlib.Path(os.environ["INSITU_DND_PROBE"])


def _answer(name):
    from nion.swift import Application
    from nion.utils import Geometry
    from nionswift_plugin.insitu import panels
    dc = Application.app.windows[0]
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


def _loop():
    while True:
        time.sleep(0.2)
        for request in FOLDER.glob("*.request"):
            name = request.stem
            request.unlink()
            try:
                from nion.swift import Application
                done = threading.Event()
                result = {}

                def run():
                    try:
                        result.update(_answer(name))
                    except Exception as e:
                        result["error"] = repr(e)
                    done.set()

                Application.app.windows[0].event_loop.call_soon_threadsafe(run)
                done.wait(10)
            except Exception as e:
                result = {"error": repr(e)}
            (FOLDER / f"{name}.json").write_text(json.dumps(result))


threading.Thread(target=_loop, daemon=True, name="insitu-dnd-probe").start()
'''


def _ask(folder: pathlib.Path, name: str, timeout_s: float = 20.0) -> dict[str, typing.Any]:
    (folder / f"{name}.request").write_text("")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = folder / f"{name}.json"
        if answer.exists():
            data = json.loads(answer.read_text())
            answer.unlink()
            return typing.cast(dict[str, typing.Any], data)
        time.sleep(0.1)
    raise TimeoutError(f"the probe did not answer '{name}'")


def test_dragging_a_processor_onto_the_live_view_in_the_real_gui(tmp_path: pathlib.Path) -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix="insitu-dnd-gui-"))
    home, driver, probe = work / "home", work / "driver", work / "probe"
    probe.mkdir(parents=True)
    plugin = work / "plugins" / "nionswift_plugin" / "insitu_dnd_probe"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(PROBE)
    swift_xvfb.make_profile(home)
    xvfb = swift = None
    log_path = tmp_path / "swift.log"
    try:
        xvfb, display = swift_xvfb.start_xvfb()
        env = dict(os.environ, DISPLAY=display, HOME=str(home), XDG_RUNTIME_DIR=str(work), QT_QPA_PLATFORM="xcb",
                   INSITU_SIMULATOR="1", INSITU_GUI_DRIVER=str(driver), INSITU_GUI_PROCESSORS="insitu.copy",
                   INSITU_DND_PROBE=str(probe),
                   PYTHONPATH=os.pathsep.join([str(work / "plugins"), str(ROOT)]))
        for k in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
            env.pop(k, None)
        with open(log_path, "w") as log:
            swift = subprocess.Popen([str(swift_xvfb.LAUNCHER), str(swift_xvfb.VENV), "nionui_app.nionswift"], env=env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=work)
            t0 = time.monotonic()
            while not (driver / "ready").exists():
                assert swift.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() - t0 < 180, "Swift did not become ready"
                time.sleep(0.2)
            swift_xvfb.maximize(env)
            time.sleep(2.0)
            coords = _ask(probe, "coords")
            assert "error" not in coords, coords
            before = _ask(probe, "report")
            assert not [c for c in before["computations"] if c["processing_id"] == "insitu.max_fft"]
            (sx, sy), (dx, dy) = coords["source"], coords["drop"]
            xdo = ["xdotool"]
            subprocess.run(xdo + ["mousemove", str(sx), str(sy)], env=env, check=True)
            time.sleep(0.3)
            subprocess.run(xdo + ["mousedown", "1"], env=env, check=True)
            for i in range(1, 21):  # a real drag: many small moves (Qt starts the drag after a few px)
                x, y = sx + (dx - sx) * i / 20, sy + (dy - sy) * i / 20
                subprocess.run(xdo + ["mousemove", str(int(x)), str(int(y))], env=env, check=True)
                time.sleep(0.05)
            time.sleep(0.5)
            subprocess.run(xdo + ["mouseup", "1"], env=env, check=True)
            after: dict[str, typing.Any] = {}
            for _ in range(40):
                time.sleep(0.25)
                after = _ask(probe, "report")
                if [c for c in after["computations"] if c["processing_id"] == "insitu.max_fft"]:
                    break
            time.sleep(3.0)  # let the processor run and the displays refresh
            shot = tmp_path / "drag-processor-onto-live-view.png"
            swift_xvfb.screenshot(display, shot)
            after = _ask(probe, "report")
            (driver / "quit").touch()
            swift.wait(timeout=60)
        max_fft = [c for c in after["computations"] if c["processing_id"] == "insitu.max_fft"]
        assert len(max_fft) == 1, (after, log_path.read_text()[-3000:])
        assert max_fft[0]["source"] == coords["live_title"] and not max_fft[0]["error"], max_fft
        assert any(title and "Max FFT" in title for title in after["shown"]), after["shown"]  # output shown
        log_text = log_path.read_text()
        unexpected, _known_upstream = swift_xvfb.classify_tracebacks(log_text)
        assert not unexpected, "\n\n".join(unexpected)[-5000:]  # any traceback of ours fails; see swift_xvfb
        from PIL import Image
        image = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
        assert image.std() > 10 and len(np.unique(image)) > 100
        folder = "docs/screenshots" if os.environ.get("INSITU_UPDATE_SCREENSHOTS") else "out/screenshots"
        target = ROOT / folder / shot.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    finally:
        if swift is not None:
            swift_xvfb.stop(swift)
        if xvfb is not None:
            swift_xvfb.stop(xvfb)
        shutil.rmtree(work, ignore_errors=True)
