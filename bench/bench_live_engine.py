#!/usr/bin/env python3
"""The live engine with all seven processors on one stream, without Swift and without a camera simulator:
frames are pushed at a fixed rate into a stream (as the acquisition thread does) and we count, per processor, the
frames processed and dropped and the time per frame. Compare with bench_live_processors.py ("all seven together",
one frame at a time): the difference is the engine's cost (one thread per processor, the jitter buffers).

usage: .venv/bin/python bench/bench_live_engine.py [--frames 100]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from nion.data import DataAndMetadata
from nion.utils import Event

from instrument_sim.insitu_scene import InSituScene
from nionswift_plugin.insitu.live_engine import LiveEngine
from processing import registry, warmup


class _Source:
    hardware_source_id = "bench"

    def __init__(self) -> None:
        self.xdatas_available_event = Event.Event()


class _Promise:
    def __init__(self, xdata: DataAndMetadata.DataAndMetadata) -> None:
        self.xdata = xdata


class _Key:
    pass


def run(size: int, fps: float, n_frames: int) -> None:
    scene = InSituScene(shape_px=(size, size), seed=1)
    rng = np.random.default_rng(0)
    frames = [scene.render(0.05 * i, exposure_s=0.05, rng=rng) for i in range(8)]
    engine, source = LiveEngine(), _Source()
    keys = [_Key() for _ in registry.BUILTIN]
    stream = engine.stream_for(source, 0)
    runners = []
    for key, cls in zip(keys, registry.all_processors()[:len(registry.BUILTIN)]):
        runner = engine.runner_for(key, cls.processor_id, {})
        runner.attach_stream(stream)
        runners.append(runner)
    interval = 1.0 / fps
    emit_ms = []
    t_next = time.perf_counter()
    for i in range(n_frames):
        xdata = DataAndMetadata.new_data_and_metadata(frames[i % len(frames)],
                                                      metadata={"hardware_source": {"frame_number": i}})
        t = time.perf_counter()
        source.xdatas_available_event.fire([_Promise(xdata)])
        emit_ms.append((time.perf_counter() - t) * 1000)
        t_next += interval
        time.sleep(max(0.0, t_next - time.perf_counter()))
    time.sleep(1.0)
    print(f"\n{size}² at {fps:.0f} fps, {n_frames} frames; camera thread per frame: "
          f"median {statistics.median(emit_ms):.2f} ms, max {max(emit_ms):.2f} ms")
    print(f"{'processor':<28} {'processed':>9} {'dropped':>8} {'mean ms':>8}")
    for runner in runners:
        stats = runner.stats.as_dict()
        print(f"{runner.processor_id:<28} {stats['frames_processed']:>9} {stats['frames_dropped']:>8} "
              f"{stats['mean_ms']:>8.1f}")
    engine.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    warmup.warm_up()
    for size, fps in ((870, 20), (870, 40), (1024, 20), (2048, 5), (2048, 8)):
        run(size, fps, args.frames)


if __name__ == "__main__":
    main()
