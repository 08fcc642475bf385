#!/usr/bin/env python3
"""Headless demo: the simulated in-situ camera through every registered processor inside a headless Swift document.

Writes one PNG per processor output and a summary (frames in, frames processed, frames dropped, ms per frame per
processor) to the output folder. This is how a user without a screen, and CI, sees that the main job works.

usage: .venv/bin/python scripts/headless_demo.py [--frames 60] [--size 1024] [--exposure-ms 50] [--out out/demo]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import typing

import numpy as np
from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nionswift_plugin.insitu import computations  # noqa: E402
from nionswift_plugin.insitu.headless import HeadlessSwift  # noqa: E402
from nionswift_plugin.insitu.live_engine import ENGINE  # noqa: E402
from processing import registry  # noqa: E402

CAMERA_ID = "insitu_camera"


def to_png(xdata: typing.Any, path: pathlib.Path) -> None:
    """Render an output as a PNG: images with a 0.5-99.5 % stretch, RGB as is, line plots as a simple plot."""
    data = np.asarray(xdata.data)
    if data.dtype == np.uint8 and data.ndim == 3 and data.shape[-1] in (3, 4):
        Image.fromarray(np.ascontiguousarray(data[..., 2::-1])).save(path)  # Swift stores BGR
        return
    if xdata.is_datum_1d or (xdata.collection_dimension_count == 1 and xdata.datum_dimension_count == 1):
        lines = np.atleast_2d(data.astype(np.float64))
        width, height = 640, 320
        image = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(image)
        colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
        for i, line in enumerate(lines):
            finite = np.isfinite(line)
            if finite.sum() < 2:
                continue
            lo, hi = np.nanmin(line[finite]), np.nanmax(line[finite])
            span = (hi - lo) or 1.0
            xs = np.linspace(10, width - 10, line.size)
            ys = height - 10 - (line - lo) / span * (height - 20)
            draw.line([(float(x), float(y)) for x, y, ok in zip(xs, ys, finite) if ok], fill=colours[i % 4], width=2)
        image.save(path)
        return
    image = data.astype(np.float64)
    if image.ndim != 2:
        return
    lo, hi = np.percentile(image, [0.5, 99.5])
    scaled = np.clip((image - lo) / ((hi - lo) or 1.0), 0, 1)
    Image.fromarray((scaled * 255).astype(np.uint8)).save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="camera frames to run through the processors")
    parser.add_argument("--size", type=int, default=1024, help="frame size in pixels (square)")
    parser.add_argument("--exposure-ms", type=float, default=50.0)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "out" / "demo")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from instrument_sim import configuration
    config = configuration.SimulatorConfiguration(frame_shape=(args.size, args.size))
    from processing import warmup
    warm_s = warmup.warm_up()
    print(f"warm-up (kernel compile/cache load, once, off the live path): {warm_s:.2f} s")
    with HeadlessSwift(config) as swift:
        camera = swift.hardware_source(CAMERA_ID)
        parameters = camera.get_current_frame_parameters()
        parameters.exposure_ms = args.exposure_ms
        camera.set_current_frame_parameters(parameters)
        camera.start_playing()
        live = swift.live_data_item(CAMERA_ID)
        display_item = swift.document_model.get_display_item_for_data_item(live)
        outputs = {}
        from nionswift_plugin.insitu.gui_driver import SIMULATOR_SETTINGS
        for cls in registry.all_processors():
            outputs[cls.processor_id] = computations.attach(swift.document_model, cls.processor_id, display_item,
                                                            parameters=SIMULATOR_SETTINGS.get(cls.processor_id))
        # let Swift run each computation once: that attaches its runner to the camera stream
        deadline = time.monotonic() + 30
        while len([r for r in ENGINE.runners if r.is_streaming]) < len(outputs) and time.monotonic() < deadline:
            swift.pump(0.1)
        stream = ENGINE.runners[0].stream if ENGINE.runners else None
        if stream is None:
            print("no processor attached to the camera stream; see the computation errors below")
        start_frames = stream.frames_seen if stream else 0
        t0 = time.monotonic()
        while stream and stream.frames_seen - start_frames < args.frames and time.monotonic() - t0 < args.timeout_s:
            swift.pump(0.1)
        camera.stop_playing(sync_timeout=5.0)
        elapsed_s = time.monotonic() - t0
        frames_in = (stream.frames_seen - start_frames) if stream else 0
        swift.pump(1.5)  # drain: let the runners finish their last frame and Swift commit it
        summary: dict[str, typing.Any] = {"frames_in": frames_in, "seconds": round(elapsed_s, 2),
                                          "camera_fps": round(frames_in / elapsed_s, 1) if elapsed_s else 0,
                                          "frame_shape": list(live.xdata.data_shape), "processors": {}}
        to_png(live.xdata, args.out / "camera.png")
        for processor_id, data_item in outputs.items():
            computation = swift.document_model.get_data_item_computation(data_item)
            runner = ENGINE.find_runner(computation)
            stats = runner.latest()[2] if runner else {}
            entry = dict(stats, error=computation.error_text or None, pngs=[])
            for result in computation.results:
                items = [i for i in result.output_items if getattr(i, "xdata", None) is not None]
                for item in items[:1]:
                    name = f"{processor_id.split('.')[-1]}_{result.name}.png"
                    to_png(item.xdata, args.out / name)
                    entry["pngs"].append(name)
            summary["processors"][processor_id] = entry
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    lines = [f"frames in: {summary['frames_in']} ({summary['camera_fps']} fps, {summary['frame_shape']} px)"]
    for processor_id, entry in summary["processors"].items():
        lines.append(f"{processor_id:<28} processed {entry.get('frames_processed', 0):>4}  dropped "
                     f"{entry.get('frames_dropped', 0):>4}  {entry.get('mean_ms', 0):7.1f} ms/frame  "
                     f"{', '.join(entry['pngs'])}" + (f"  ERROR: {entry['error']}" if entry["error"] else ""))
    (args.out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"PNGs and summary in {args.out}")
    ok = frames_in > 0 and all(not e["error"] and e.get("frames_processed", 0) > 0
                               for e in summary["processors"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
