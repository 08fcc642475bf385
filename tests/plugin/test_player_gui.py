"""The real Nion Swift under Xvfb: a recording opened in the In-situ Player panel, played (loop, drift-corrected),
two processors attached to the player through the Processing > In-situ menu; screenshot.

Saves the screenshot to out/screenshots/player.png, or with INSITU_UPDATE_SCREENSHOTS=1 to
docs/screenshots/player.png. Skipped only where Xvfb or the Swift launcher is missing.
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

import numpy as np
import pytest
import scipy.ndimage

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("swift_xvfb", ROOT / "scripts" / "swift_xvfb.py")
assert spec and spec.loader
swift_xvfb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(swift_xvfb)

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(swift_xvfb.available() is not None, reason=str(swift_xvfb.available()))]


def _recording(path: pathlib.Path, n: int = 60, side: int = 256) -> pathlib.Path:
    from processing.base import Calibration
    from processing.io.recording import Recorder
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:side, 0:side]
    base = np.full((side, side), 200.0)
    for _ in range(40):  # particles on a noisy film
        cy, cx, r = rng.uniform(20, side - 20), rng.uniform(20, side - 20), rng.uniform(4, 12)
        base -= 120.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    drift = np.cumsum(rng.normal(0.15, 0.3, size=(n, 2)), axis=0)
    with Recorder(path, calibrations=(Calibration(0, 0.25, "nm"), Calibration(0, 0.25, "nm")),
                  intensity_units="counts", metadata={"holder": {"temperature_C": 512.0}}) as rec:
        for i in range(n):
            frame = scipy.ndimage.shift(base, drift[i], order=1, mode="nearest")
            rec.add(rng.poisson(np.clip(frame, 1, None)).astype(np.float32), 0.1 * i)
    return path


def test_real_swift_plays_a_recording_in_the_player_with_two_processors(tmp_path: pathlib.Path) -> None:
    from nionswift_plugin.insitu.player import gui_check
    recording = _recording(tmp_path / "heating.hspy")
    work = pathlib.Path(tempfile.mkdtemp(prefix="insitu-player-gui-"))
    shim = work / "plugins" / "nionswift_plugin" / "insitu_player_gui"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(gui_check.SHIM)
    home = work / "home"
    swift_xvfb.make_profile(home)
    driver = work / "driver"
    log_path = tmp_path / "swift.log"
    xvfb = swift = None
    try:
        xvfb, display = swift_xvfb.start_xvfb()
        env = dict(os.environ, DISPLAY=display, HOME=str(home), XDG_RUNTIME_DIR=str(work), QT_QPA_PLATFORM="xcb",
                   INSITU_PLAYER_GUI_DRIVER=str(driver), INSITU_PLAYER_GUI_FILE=str(recording),
                   INSITU_PLAYER_GUI_DRIFT="1",
                   PYTHONPATH=os.pathsep.join([str(work / "plugins"), os.environ.get("PYTHONPATH", "")]))
        for key in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "INSITU_SIMULATOR", "INSITU_GUI_DRIVER"):
            env.pop(key, None)  # no simulator: the player is a camera on its own
        with open(log_path, "w") as log:
            t0 = time.monotonic()
            swift = subprocess.Popen([str(swift_xvfb.LAUNCHER), str(swift_xvfb.VENV), "nionui_app.nionswift"],
                                     env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
            while not (driver / "ready").exists():
                assert swift.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() - t0 < 180, log_path.read_text()[-3000:]
                time.sleep(0.2)
            swift_xvfb.maximize(env)
            time.sleep(8.0)
            shot = tmp_path / "player.png"
            swift_xvfb.screenshot(display, shot)
            (driver / "quit").touch()
            rc = swift.wait(timeout=60)
        log_text = log_path.read_text()
        status = json.loads((driver / "status.json").read_text())
    finally:
        if swift is not None:
            swift_xvfb.stop(swift)
        if xvfb is not None:
            swift_xvfb.stop(xvfb)
        shutil.rmtree(work, ignore_errors=True)
    assert rc == 0, log_text[-3000:]
    assert "NOT loaded" not in log_text, log_text[-5000:]
    # only Swift's own recovered ones are allowed (e.g. its scripting server finding its port taken by another Swift)
    unexpected, _known_upstream = swift_xvfb.classify_tracebacks(log_text)
    assert not unexpected, "\n\n".join(unexpected)[-5000:]
    assert "INSITU PLAYER GUI DRIVER: ready" in log_text, log_text[-3000:]
    titles = {r["title"] for r in status["runners"]}
    assert {"Live Difference", "Radial Kymograph"} <= titles or len(status["runners"]) >= 2, status
    for runner in status["runners"]:
        assert runner["streaming"] and runner["frames_processed"] >= 10 and not runner["error"], runner
    assert status["frames_delivered"] >= 20, status
    from PIL import Image
    image = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert image.std() > 10, "screenshot is blank"
    target = ROOT / ("docs/screenshots" if os.environ.get("INSITU_UPDATE_SCREENSHOTS") else "out/screenshots")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, target / "player.png")
