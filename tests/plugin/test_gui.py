"""The real Nion Swift under Xvfb: simulator mode, camera playing, processors attached through the menu.

Saves the screenshot (what a user sees) to out/screenshots/, or with INSITU_UPDATE_SCREENSHOTS=1 to
docs/screenshots/live-processors.png, and checks it is not blank. Skipped only where Xvfb or the Swift launcher is
missing (scripts/setup.sh installs both on CI).
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("swift_xvfb", ROOT / "scripts" / "swift_xvfb.py")
assert spec and spec.loader
swift_xvfb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(swift_xvfb)

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(swift_xvfb.available() is not None, reason=str(swift_xvfb.available()))]


def test_real_swift_plays_the_simulated_camera_with_processors_attached_through_the_menu(tmp_path: pathlib.Path) -> None:
    result = swift_xvfb.run(tmp_path, seconds=6.0)
    log = result["log"]
    assert result["rc"] == 0, log[-3000:]
    assert "Plug-in 'nionswift_plugin.insitu' loaded" in log, log[-3000:]
    assert "NOT loaded" not in log, log[-5000:]
    unexpected, _known_upstream = swift_xvfb.classify_tracebacks(log)
    assert not unexpected, "\n\n".join(unexpected)[-5000:]  # any traceback of ours fails; see swift_xvfb
    runners = result["status"]["runners"]
    titles = {r["title"] for r in runners}
    assert {"Noise Reduction", "Live Difference", "Copy (ROI)"} <= titles, result["status"]
    for runner in runners:
        assert runner["streaming"] and runner["frames_processed"] >= 20 and not runner["error"], runner
    from PIL import Image
    shot = np.asarray(Image.open(result["screenshot"]).convert("L"), dtype=np.float32)
    assert shot.std() > 10, "screenshot is blank"
    # the four display panels (live view + three outputs) show images: lots of distinct grey levels
    assert len(np.unique(shot)) > 100
    folder = "docs/screenshots" if os.environ.get("INSITU_UPDATE_SCREENSHOTS") else "out/screenshots"
    target = ROOT / folder / "live-processors.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result["screenshot"], target)
