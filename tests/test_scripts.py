"""The README's commands keep their promises: the launch command without a display says so and offers the
alternatives; the headless demo runs the simulated camera through every processor and writes PNGs + a summary."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_launch_without_a_display_explains_and_offers_the_headless_alternatives() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["INSITU_VENV"] = sys.prefix  # the environment the tests run in (already set up)
    result = subprocess.run(["bash", str(ROOT / "scripts" / "launch.sh")], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "No display found" in result.stdout
    assert "scripts/launch.sh --xvfb" in result.stdout and "headless_demo.py" in result.stdout


def test_headless_demo_runs_the_camera_through_every_processor(tmp_path: pathlib.Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "headless_demo.py"), "--frames", "12",
                             "--size", "256", "--exposure-ms", "20", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    from processing import registry
    assert set(summary["processors"]) >= {cls.processor_id for cls in registry.all_processors()
                                          if cls.processor_id.startswith("insitu.")}
    assert summary["frames_in"] >= 12 and summary["frame_shape"] == [256, 256]
    for processor_id, entry in summary["processors"].items():
        assert entry["error"] is None and entry["frames_processed"] > 0, (processor_id, entry)
        assert entry["frames_processed"] + entry["frames_dropped"] == entry["frames_received"], entry
        for png in entry["pngs"]:
            import numpy as np
            from PIL import Image
            pixels = np.asarray(Image.open(tmp_path / png).convert("L"), dtype=np.float32)
            assert pixels.size > 0 and pixels.std() > 0, f"{png} is blank"
    assert (tmp_path / "summary.txt").read_text().startswith("frames in:")
