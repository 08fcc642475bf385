#!/usr/bin/env python3
"""SDSD with the pair measurement on a 2-worker ``distributed.LocalCluster`` against the in-memory ``align_stack`` on
the same frames (issue 10): wall time of each, their ratio measured in the same run, and the largest relative
difference of the shifts (must be <= 1e-6).

The stack is a drifting low-dose series (bench_sdsd.scenario, 10 counts/px/frame) of ``--frames`` frames of
``--size``² px, written once as .npy; the cluster opens the file on its workers (read lazily, block by block). Each
configuration is timed ``--repeats`` times after an untimed warm-up (imports, first calls, on every worker); the
median is reported. On this 2-core machine shared with other work, expect no speedup: the workers compete with each
other and with the client for the same two cores, and the spectra of the blocks travel between the processes.

usage: .venv/bin/python bench/bench_sdsd_dask.py [--frames 100] [--size 512] [--repeats 3] [--block-frames 32]
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time
import typing

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from processing.alignment.sdsd import align_stack  # noqa: E402
from processing.alignment.sdsd_dask import align_stack_dask  # noqa: E402

MODES = {"all pairs": {"reference": "all"}, "banded K = 10": {"reference": "banded", "band_k": 10}}


def _timed(call: typing.Callable[[], typing.Any], repeats: int) -> tuple[float, typing.Any]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> int:
    import distributed
    from bench_sdsd import scenario

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-frames", type=int, default=32)
    args = parser.parse_args()
    frames = np.asarray(scenario(7, n=args.frames, size=args.size)[0], dtype=np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "series.npy"
        np.save(path, frames)
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                      memory_limit=0) as cluster, distributed.Client(cluster) as client:
            align_stack_dask(path, client, block_frames=16, reference="banded", band_k=2)      # warm-up, untimed
            align_stack(frames[:16], reference="banded", band_k=2)
            for name, options in MODES.items():
                here_s, here = _timed(lambda: align_stack(frames, **options), args.repeats)
                there_s, there = _timed(lambda: align_stack_dask(path, client, block_frames=args.block_frames,
                                                                 **options), args.repeats)
                diff = float(np.abs(there.shifts_px - here.shifts_px).max() / np.abs(here.shifts_px).max())
                rows.append((name, here_s, there_s, there_s / here_s, diff, len(here.pairs)))
    print(f"SDSD, {args.frames} frames of {args.size}², cluster: 2 worker processes x 1 thread, blocks of "
          f"{args.block_frames} frames read from the file on the workers; median of {args.repeats}")
    print("| mode | pairs | in memory s | cluster s | cluster / in memory | max rel. shift difference |")
    print("|---|---|---|---|---|---|")
    for name, here_s, there_s, ratio, diff, pairs in rows:
        print(f"| {name} | {pairs} | {here_s:.2f} | {there_s:.2f} | {ratio:.2f} | {diff:.1e} |")
    return 0 if all(r[4] <= 1e-6 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
