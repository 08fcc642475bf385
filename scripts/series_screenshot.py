#!/usr/bin/env python3
"""Real-GUI screenshot of a focal series run from the "Focal / energy series" panel (simulator mode, Xvfb).

usage: .venv/bin/python scripts/series_screenshot.py [--out docs/screenshots] [--seconds 45]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import swift_xvfb  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs/screenshots"))
    parser.add_argument("--seconds", type=float, default=45.0)
    args = parser.parse_args()
    reason = swift_xvfb.available()
    if reason:
        print(f"Cannot run the real GUI here: {reason}.")
        return 2
    os.environ["INSITU_GUI_SERIES"] = json.dumps({
        "values": {"kind": "focal", "start": -40.0, "step": 8.0, "count": 11, "exposure_ms": 100.0, "align": True},
        "controls": {"C30": 1.2e-3}, "delay_s": 3.0})
    os.environ["INSITU_GUI_HIDE"] = "insitu-processors-panel"
    work = pathlib.Path("out/series_gui")
    result = swift_xvfb.run(work, seconds=args.seconds, processors=["insitu.copy"], panels=["insitu-series-panel"])
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "series_panel.png"
    shutil.copy(result["screenshot"], target)
    print(f"rc {result['rc']}, ready after {result['ready_s']:.1f} s; screenshot {target}")
    return int(result["rc"] or 0)


if __name__ == "__main__":
    sys.exit(main())
