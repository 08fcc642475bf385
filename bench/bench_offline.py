#!/usr/bin/env python3
"""Offline runs on a recorded stack: frames per second in one process, on Dask with 1 and 2 workers (a
``distributed.LocalCluster`` of worker processes), and through the live engine (processing.execution.scheduler,
every frame delivered) on the same frames; peak memory (RSS) per process / worker.

The stack is a 400-frame 1024² float32 movie (1.6 GB) written once as .npy and read memory-mapped (lazily, block
by block; the Dask workers open the file themselves). Every configuration runs in its own process so its peak RSS
is its own, after an untimed warm-up run on a few frames (imports, numba kernels, first calls; on every worker). The single-process run is the reference: the others are reported as ratios to it, measured in the same
run (on a loaded machine absolute figures are inflated, ratios much less).

usage: .venv/bin/python bench/bench_offline.py [--frames 400] [--size 1024] [--out bench/results_offline.md]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

PROCESSORS = ["insitu.max_fft", "insitu.live_difference", "insitu.radial_kymograph", "insitu.threshold_tracking"]
#: tracking follows the region nearest the previous one: the sequential kind (with "largest" it is mergeable)
PARAMETERS = {"insitu.threshold_tracking": {"track": "nearest"}}
BLOCK_FRAMES = 16


def make_stack(path: pathlib.Path, n: int, size: int) -> None:
    """A bright disc drifting over a textured, noisy background (seeded), written frame by frame (memory-mapped)."""
    rng = np.random.default_rng(0)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, size, size))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    texture = (np.sin(xx / 3.1) * np.sin(yy / 2.3)).astype(np.float32)
    for i in range(n):
        cy, cx = size / 2 + 0.1 * size * np.sin(i / 40), size / 2 + 0.1 * size * np.cos(i / 50)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) <= (0.05 * size) ** 2
        out[i] = 10 + 5 * texture + 100 * disc + rng.normal(0, 3, (size, size)).astype(np.float32)
    out.flush()
    del out


def peak_rss_mib() -> float:
    """Peak resident memory of this process (includes file pages mapped in: the memory-mapped stack and results)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class AnonymousPeak:
    """Samples RssAnon (memory not backed by a file: what the process really holds) every 0.1 s; ``peak_mib``."""

    def __init__(self) -> None:
        import threading
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.peak_mib = max(self.peak_mib, int(line.split()[1]) / 1024.0)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mib


def config_single(path: str) -> dict[str, float]:
    from processing import warmup
    from processing.execution.offline import run_offline
    warmup.warm_up()
    run_offline(PROCESSORS, path, parameters=PARAMETERS, progress=False, block_frames=BLOCK_FRAMES, frames=(0, 4))  # first calls, untimed
    t0 = time.perf_counter()
    run = run_offline(PROCESSORS, path, parameters=PARAMETERS, progress=False, block_frames=BLOCK_FRAMES)
    elapsed = time.perf_counter() - t0
    assert run.complete
    return {"seconds": elapsed, "rss_mib": peak_rss_mib()}


def config_dask(path: str, workers: int) -> dict[str, float]:
    import distributed
    from processing.execution.offline import run_offline

    def warm() -> float:
        from processing import warmup
        warmup.warm_up()
        return 0.0

    def rss() -> float:  # a worker holds no memory-mapped results: its peak RSS is its own memory
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None, memory_limit=0) as cluster, \
            distributed.Client(cluster) as client:
        client.run(warm)
        for _ in range(workers):  # every worker's first calls (imports, kernels), untimed
            run_offline(PROCESSORS, path, parameters=PARAMETERS, progress=False, block_frames=2, frames=(0, 4 * workers), client=client)
        t0 = time.perf_counter()
        run = run_offline(PROCESSORS, path, parameters=PARAMETERS, progress=False, block_frames=BLOCK_FRAMES, client=client)
        elapsed = time.perf_counter() - t0
        assert run.complete, run.messages
        worker_rss = list(client.run(rss).values())
    return {"seconds": elapsed, "rss_mib": peak_rss_mib(), "worker_rss_mib": max(worker_rss)}


def config_live(path: str) -> dict[str, float]:
    from processing import warmup
    from processing.execution.scheduler import Engine
    from processing.execution.sources import ArraySource, play
    warmup.warm_up()
    stack = np.load(path, mmap_mode="r")
    engine = Engine()
    try:
        stream = engine.stream("bench")
        for pid in PROCESSORS:
            engine.runner_for(pid, pid, PARAMETERS.get(pid, {})).attach_stream(stream)
        play(ArraySource(stack[:4], frame_interval_s=0.05), stream, wait=True, timeout_s=600)  # first calls
        for runner in engine.runners:
            runner.reset()
        t0 = time.perf_counter()
        play(ArraySource(stack, frame_interval_s=0.05), stream, wait=True, timeout_s=600)
        elapsed = time.perf_counter() - t0
        dropped = sum(r.stats.frames_dropped for r in engine.runners)
        assert all(r.stats.frames_processed == len(stack) + 4 for r in engine.runners)
    finally:
        engine.close()
    return {"seconds": elapsed, "rss_mib": peak_rss_mib(), "dropped": dropped}


def child(args: argparse.Namespace) -> None:
    path = args.stack
    sampler = AnonymousPeak()
    result = {"single": lambda: config_single(path), "dask1": lambda: config_dask(path, 1),
              "dask2": lambda: config_dask(path, 2), "live": lambda: config_live(path)}[args.config]()
    result["anon_mib"] = sampler.stop()
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).with_name("results_offline.md")))
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--stack", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.config:
        child(args)
        return
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(pathlib.Path(sys.executable).parents[1] / "numba-cache"))
    with tempfile.TemporaryDirectory(prefix="bench-offline-") as folder:
        path = pathlib.Path(folder) / "stack.npy"
        make_stack(path, args.frames, args.size)
        rows = {}
        for config in ("single", "dask1", "dask2", "live"):
            done = subprocess.run([sys.executable, __file__, "--config", config, "--stack", str(path)], env=env,
                                  capture_output=True, text=True)
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if done.returncode or not line:
                raise SystemExit(f"{config} failed:\n{done.stderr[-3000:]}")
            rows[config] = json.loads(line[-1][7:])
            print(config, rows[config], flush=True)
    from processing.execution.offline import resolve_processors
    kinds = {s.processor_id: s.cls(**s.parameters).split_kind() for s in resolve_processors(PROCESSORS, PARAMETERS)}
    ref = rows["single"]["seconds"]
    names = {"single": "single process (reference)", "dask1": "Dask, 1 worker process",
             "dask2": "Dask, 2 worker processes", "live": "live engine (scheduler, every frame delivered)"}
    load = os.getloadavg()[0]
    lines = [f"# Offline runs: {args.frames} frames of {args.size}² float32 ({args.frames * args.size ** 2 * 4 / 1e9:.1f} GB, "
             f".npy memory-mapped)", "",
             f"Processors, all in one run: {', '.join(f'{p} ({kinds[p]})' for p in PROCESSORS)} (tracking with "
             f"track=nearest); blocks of "
             f"{BLOCK_FRAMES} frames. Machine: {os.cpu_count()} cores, load average {load:.1f} at the end (shared "
             f"with other work: absolute figures are inflated; the ratios are measured in the same run).", "",
             "Command: `.venv/bin/python bench/bench_offline.py" +
             (f" --frames {args.frames} --size {args.size}`" if (args.frames, args.size) != (400, 1024) else "`"), "",
             "| configuration | time s | frames/s | speed vs single | peak memory MiB (this process: anonymous / "
             "RSS incl. mapped files) | peak RSS MiB per worker |",
             "|---|---|---|---|---|---|"]
    for key in ("single", "dask1", "dask2", "live"):
        r = rows[key]
        worker = f"{r['worker_rss_mib']:.0f}" if "worker_rss_mib" in r else "-"
        extra = f" ({int(r['dropped'])} dropped)" if "dropped" in r else ""
        lines.append(f"| {names[key]}{extra} | {r['seconds']:.1f} | {args.frames / r['seconds']:.1f} | "
                     f"{ref / r['seconds']:.2f}x | {r['anon_mib']:.0f} / {r['rss_mib']:.0f} | {worker} |")
    lines += ["", "Notes: the sequential processor (tracking) runs in order, one block after the other, on Dask as "
              "well; the mergeable ones (live difference, kymograph) make two passes over the data on Dask (partial "
              "states, then outputs from the true start states); the per-frame one (Max-FFT) is mapped over blocks. "
              "The Dask workers open the file themselves and read only their block; the client keeps the full "
              "results: image sequences above 512 MiB (here the live-difference, Max-FFT and tracking sequences) are kept in "
              "memory-mapped temporary files, which count in the RSS column but not in the anonymous one."]
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
