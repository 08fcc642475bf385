"""Bench of the In-situ Player and the Recorder (no Swift: the engine the player camera runs on).

* sustained playback rate from a memory-mapped NPY file, 1024² and 2048², float32 and uint16, against the raw read
  rate of the same frames (``os.preadv`` in a loop) measured in the same run;
* pacing error against the recorded timestamps (RMS and max, ms) at 20 and 50 fps, a sweep of seeded jittered
  timestamp sets (median / 90th percentile / worst);
* resident memory while playing a file larger than 4 GiB (created in /tmp, deleted afterwards);
* Recorder: 1024² float32 at 20 fps (frames written, dropped, write rate), and the burst write rate.

    .venv/bin/python bench/bench_player.py [--quick] [--no-big]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import tempfile
import threading
import time
import typing

import numpy as np

from processing.execution.playback import StackPlayer
from processing.io.recording import Recorder
from processing.io.stacks import open_stack, stack_from_array


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def make_npy(path: pathlib.Path, n: int, side: int, dtype: typing.Any, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, side, side))
    block = (rng.random((side, side)) * 1000).astype(dtype)
    for i in range(n):
        out[i] = block
        out[i, 0, :8] = i  # each frame differs
    out.flush()
    del out


def playback_rate(path: pathlib.Path, n: int) -> tuple[float, float]:
    """(player frames/s, raw preadv frames/s) over the whole file, page cache warm."""
    stack = open_stack(path)
    frame_bytes = stack.frame_shape[0] * stack.frame_shape[1] * stack.dtype.itemsize
    buffer = np.empty(stack.frame_shape, stack.dtype)
    fd = os.open(path, os.O_RDONLY)
    t = time.perf_counter()
    offset = os.path.getsize(path) - n * frame_bytes
    for i in range(n):
        os.preadv(fd, [memoryview(buffer).cast("B")], offset + i * frame_bytes)
    raw = n / (time.perf_counter() - t)
    os.close(fd)
    player = StackPlayer()
    player.load(stack, fps=1000.0, speed=10.0)
    assert player.playback is not None
    player.playback.play()
    t = time.perf_counter()
    count = 0
    while player.next_frame(timeout_s=5.0) is not None:
        count += 1
    rate = count / (time.perf_counter() - t)
    player.close()
    return rate, raw


def pacing_error(fps: float, seed: int, n: int, side: int = 1024) -> tuple[float, float]:
    """(RMS ms, max ms) of delivery time against the recorded timestamps, timestamps jittered +-10 %."""
    rng = np.random.default_rng(seed)
    times = np.concatenate([[0.0], np.cumsum(rng.uniform(0.9, 1.1, n - 1) / fps)])
    frames = np.zeros((n, side, side), np.uint16)
    player = StackPlayer()
    player.load(stack_from_array(frames, timestamps_s=times))
    assert player.playback is not None
    player.playback.play()
    delivered = []
    while True:
        frame = player.next_frame(timeout_s=5.0)
        if frame is None:
            break
        delivered.append(time.monotonic())
        float(frame.data[::64, ::64].sum())  # a consumer touching the frame
    player.close()
    error_ms = ((np.array(delivered) - delivered[0]) - (times[:len(delivered)] - times[0])) * 1e3
    return float(np.sqrt(np.mean(error_ms ** 2))), float(np.max(np.abs(error_ms)))


def pacing_reference(fps: float, seed: int, n: int, side: int = 1024) -> tuple[float, float]:
    """The same schedule with a plain sleep-until-due loop (no player): what the machine allows right now."""
    rng = np.random.default_rng(seed)
    times = np.concatenate([[0.0], np.cumsum(rng.uniform(0.9, 1.1, n - 1) / fps)])
    frames = np.zeros((n, side, side), np.uint16)
    t0 = time.monotonic()
    delivered = []
    for i in range(n):
        time.sleep(max(0.0, t0 + times[i] - time.monotonic()))
        delivered.append(time.monotonic())
        float(np.array(frames[i])[::64, ::64].sum())
    error_ms = ((np.array(delivered) - delivered[0]) - (times - times[0])) * 1e3
    return float(np.sqrt(np.mean(error_ms ** 2))), float(np.max(np.abs(error_ms)))


def big_file_rss(folder: pathlib.Path, gib: float = 4.2) -> dict[str, float]:
    side = 1024
    n = int(np.ceil(gib * 2 ** 30 / (side * side * 4)))
    path = folder / "bench_player_big.npy"
    try:
        make_npy(path, n, side, np.float32)
        size_gib = os.path.getsize(path) / 2 ** 30
        base = rss_mib()
        stack = open_stack(path)
        player = StackPlayer()
        player.load(stack, fps=1000.0, speed=10.0)
        assert player.playback is not None
        player.playback.play()
        samples = [rss_mib()]
        count = 0
        t = time.perf_counter()
        while player.next_frame(timeout_s=5.0) is not None:
            count += 1
            if count % 25 == 0:
                samples.append(rss_mib())
        elapsed = time.perf_counter() - t
        player.close()
        return {"file_gib": size_gib, "frames": count, "fps": count / elapsed, "rss_before_mib": base,
                "rss_max_mib": max(samples), "rss_end_mib": samples[-1], "growth_mib": max(samples) - base}
    finally:
        path.unlink(missing_ok=True)


def big_file_rss_swift(folder: pathlib.Path, gib: float = 4.2) -> dict[str, float]:
    """The same > 4 GiB file played once through the Player camera in headless Swift (live view updated)."""
    from instrument_sim import configuration
    from nionswift_plugin.insitu.headless import HeadlessSwift
    from nionswift_plugin.insitu.player import device
    side = 1024
    n = int(np.ceil(gib * 2 ** 30 / (side * side * 4)))
    path = folder / "bench_player_big_swift.npy"
    try:
        make_npy(path, n, side, np.float32)
        with HeadlessSwift(configuration.SimulatorConfiguration(frame_shape=(64, 64))) as swift:
            module = device.register_player()
            try:
                module.player.load(open_stack(path), fps=1000.0, speed=10.0)
                source = swift.hardware_source(device.PLAYER_ID)
                count = [0]
                listener = source.xdatas_available_event.listen(lambda p: count.__setitem__(0, count[0] + 1))
                base = rss_mib()
                samples = [base]
                t = time.perf_counter()
                source.start_playing()
                while source.is_playing and time.perf_counter() - t < 600:
                    swift.pump(0.25)
                    samples.append(rss_mib())
                elapsed = time.perf_counter() - t
                listener.close()
            finally:
                device.unregister_player()
        return {"file_gib": os.path.getsize(path) / 2 ** 30, "frames": count[0], "fps": count[0] / elapsed,
                "rss_before_mib": base, "rss_max_mib": max(samples), "rss_end_mib": samples[-1],
                "growth_mib": max(samples) - base}
    finally:
        path.unlink(missing_ok=True)


def recorder_rate(folder: pathlib.Path, seconds: float, fps: float = 20.0, side: int = 1024) -> dict[str, float]:
    frame = np.random.default_rng(0).random((side, side), dtype=np.float32)
    path = folder / "bench_recorder.hspy"
    path.unlink(missing_ok=True)
    recorder = Recorder(path, flush_interval_s=0.5)
    n = int(seconds * fps)
    add_ms = []
    t0 = time.perf_counter()
    for i in range(n):
        due = t0 + i / fps
        time.sleep(max(0.0, due - time.perf_counter()))
        t = time.perf_counter()
        recorder.add(frame, time.time(), i)
        add_ms.append((time.perf_counter() - t) * 1e3)
    status = recorder.stop()
    elapsed = time.perf_counter() - t0
    copy_ms = []  # reference in the same run: the same paced loop doing only the frame copy (no writer)
    t1 = time.perf_counter()
    for i in range(n):
        time.sleep(max(0.0, t1 + i / fps - time.perf_counter()))
        t = time.perf_counter()
        np.array(frame, copy=True)
        copy_ms.append((time.perf_counter() - t) * 1e3)
    path.unlink(missing_ok=True)
    burst = Recorder(path, max_queue_bytes=2 ** 31)
    t = time.perf_counter()
    for i in range(100):
        burst.add(frame, float(i))
    burst_status = burst.stop()
    burst_s = time.perf_counter() - t
    path.unlink(missing_ok=True)
    return {"frames": n, "written": status.frames_written, "dropped": status.frames_dropped,
            "rate_fps": status.frames_written / elapsed, "mib_s": status.bytes_written / 2 ** 20 / elapsed,
            "add_ms_median": statistics.median(add_ms), "add_ms_max": max(add_ms),
            "add_ms_p99": pct(add_ms, 99), "add_over_50ms": sum(1 for a in add_ms if a > 50.0),
            "copy_ms_median": statistics.median(copy_ms), "copy_ms_p99": pct(copy_ms, 99),
            "copy_ms_max": max(copy_ms), "copy_over_50ms": sum(1 for a in copy_ms if a > 50.0),
            "burst_fps": burst_status.frames_written / burst_s,
            "burst_mib_s": burst_status.bytes_written / 2 ** 20 / burst_s, "burst_dropped": burst_status.frames_dropped}


def swift_playback_rates(folder: pathlib.Path, seconds: float) -> list[tuple[int, str, float, float]]:
    """Frames/s through the Player camera in headless Swift (xdatas_available_event: what processors get),
    at 10x of 1000 fps, for each (side, dtype); and the live engine-free reference (StackPlayer alone)."""
    from instrument_sim import configuration
    from nionswift_plugin.insitu.headless import HeadlessSwift
    from nionswift_plugin.insitu.player import device
    rows = []
    with HeadlessSwift(configuration.SimulatorConfiguration(frame_shape=(64, 64))) as swift:
        module = device.register_player()
        try:
            for side, dtype in ((1024, np.float32), (1024, np.uint16), (2048, np.float32), (2048, np.uint16)):
                path = folder / f"bench_player_swift_{side}_{np.dtype(dtype).name}.npy"
                n = 400 if side == 1024 else 120
                try:
                    make_npy(path, n, side, dtype)
                    module.player.load(open_stack(path), fps=1000.0, speed=10.0, loop=True)
                    source = swift.hardware_source(device.PLAYER_ID)
                    count = [0]
                    listener = source.xdatas_available_event.listen(lambda p: count.__setitem__(0, count[0] + 1))
                    source.start_playing()
                    swift.pump(1.0)
                    c0, t0 = count[0], time.perf_counter()
                    swift.pump(seconds)
                    rate = (count[0] - c0) / (time.perf_counter() - t0)
                    source.stop_playing(sync_timeout=10.0)
                    listener.close()
                    engine_rate, _ = playback_rate(path, min(n, 100))
                finally:
                    path.unlink(missing_ok=True)
                rows.append((side, np.dtype(dtype).name, rate, engine_rate))
        finally:
            device.unregister_player()
    return rows


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and seeds")
    parser.add_argument("--no-big", action="store_true", help="skip the > 4 GiB RSS test")
    args = parser.parse_args()
    folder = pathlib.Path(tempfile.gettempdir())
    print(f"load average at start: {os.getloadavg()}")
    print("\n## Sustained playback rate (memory-mapped NPY, page cache warm)\n")
    print("| frame | dtype | frames | player fps | raw preadv fps | player / raw |")
    print("|---|---|---|---|---|---|")
    for side, n in ((1024, 60 if args.quick else 200), (2048, 20 if args.quick else 50)):
        for dtype in (np.float32, np.uint16):
            path = folder / f"bench_player_{side}_{np.dtype(dtype).name}.npy"
            try:
                make_npy(path, n, side, dtype)
                rate, raw = playback_rate(path, n)
            finally:
                path.unlink(missing_ok=True)
            print(f"| {side}² | {np.dtype(dtype).name} | {n} | {rate:.0f} | {raw:.0f} | {rate / raw:.2f} |")
    print("\n## Through the Player camera in headless Swift (frames/s reaching processors)\n")
    print("| frame | dtype | Swift camera fps | engine alone fps | Swift / engine |")
    print("|---|---|---|---|---|")
    for side, name, rate, engine in swift_playback_rates(folder, 3.0 if args.quick else 6.0):
        print(f"| {side}² | {name} | {rate:.0f} | {engine:.0f} | {rate / engine:.2f} |")
    print("\n## Pacing error against the recorded timestamps (1024² uint16, timestamps jittered ±10 %)\n")
    print("| fps | runs | frames/run | RMS ms median / p90 / worst | max ms median / p90 / worst |")
    print("|---|---|---|---|---|")
    seeds = range(3 if args.quick else 8)
    for fps in (20.0, 50.0):
        n = int(fps * (2 if args.quick else 4))
        for label, fn in (("player", pacing_error), ("reference sleep loop", pacing_reference)):
            results = [fn(fps, seed, n) for seed in seeds]
            rms, mx = [r[0] for r in results], [r[1] for r in results]
            print(f"| {fps:.0f} ({label}) | {len(results)} | {n} | {statistics.median(rms):.2f} / {pct(rms, 90):.2f} / "
                  f"{max(rms):.2f} | {statistics.median(mx):.2f} / {pct(mx, 90):.2f} / {max(mx):.2f} |")
    if not args.no_big:
        print("\n## Resident memory while playing a file larger than 4 GiB (1024² float32 NPY)\n")
        r = big_file_rss(folder)
        print(f"file {r['file_gib']:.2f} GiB, {r['frames']:.0f} frames played at {r['fps']:.0f} fps; RSS before "
              f"{r['rss_before_mib']:.0f} MiB, max {r['rss_max_mib']:.0f} MiB, end {r['rss_end_mib']:.0f} MiB: "
              f"growth {r['growth_mib']:.0f} MiB")
        r = big_file_rss_swift(folder)
        print(f"through the Player camera in headless Swift: {r['frames']:.0f} frames at {r['fps']:.0f} fps; RSS "
              f"before {r['rss_before_mib']:.0f} MiB, max {r['rss_max_mib']:.0f} MiB, end {r['rss_end_mib']:.0f} "
              f"MiB: growth {r['growth_mib']:.0f} MiB")
    print("\n## Recorder, 1024² float32\n")
    r = recorder_rate(folder, 5.0 if args.quick else 10.0)
    print(f"20 fps for {r['frames']:.0f} frames: {r['written']:.0f} written, {r['dropped']:.0f} dropped, "
          f"{r['rate_fps']:.1f} frames/s sustained ({r['mib_s']:.0f} MiB/s); add() on the acquisition thread: "
          f"median {r['add_ms_median']:.2f} ms, p99 {r['add_ms_p99']:.1f} ms, max {r['add_ms_max']:.1f} ms, "
          f"{r['add_over_50ms']:.0f} calls over 50 ms")
    print(f"reference, the same loop copying the frame without a recorder: median {r['copy_ms_median']:.2f} ms, "
          f"p99 {r['copy_ms_p99']:.1f} ms, max {r['copy_ms_max']:.1f} ms, {r['copy_over_50ms']:.0f} over 50 ms")
    print(f"burst of 100 frames as fast as possible: {r['burst_fps']:.0f} frames/s ({r['burst_mib_s']:.0f} MiB/s), "
          f"{r['burst_dropped']:.0f} dropped")
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
