#!/usr/bin/env python3
"""Benchmark the first three live processors (copy, noise reduction, live difference) against the plain
numpy/scipy reference implementations (processing/live/reference.py), in the same run, at 1024² and 2048².

usage: .venv/bin/python bench/bench_live_filters.py [--repeats 15]
Prints ms per frame (min / median) for reference and suite, the speed-up ratio and the agreement.
"""
from __future__ import annotations

import argparse
import statistics
import time
import typing

import numpy as np

from processing import Context, make_frame
from processing.live import reference as ref
from processing.live.filters import CopyProcessor, LiveDifferenceProcessor, NoiseReductionProcessor


def timed(fn: typing.Callable[[], typing.Any], repeats: int) -> tuple[float, float, typing.Any]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return min(times), statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'size':>6} {'processor':<18} {'reference ms':>16} {'suite ms':>16} {'speed-up':>9}  agreement")
    for n in (1024, 2048):
        frames = [rng.poisson(200, (n, n)).astype(np.float32) for _ in range(4)]
        context = Context()
        cases = []
        ready = [make_frame(f) for f in frames]  # validation timed separately below
        vmin, vmed, _ = timed(lambda: make_frame(frames[0]), args.repeats)
        print(f"{n:>5}² {'(frame validation)':<18} {'':>16} {vmin:7.2f} / {vmed:7.2f}   NaN/dtype/shape checks + ROI")
        copy = CopyProcessor()
        cases.append(("copy", lambda: ref.ref_copy(frames[0]), lambda: copy.process(ready[0], context)[0].data))
        noise = NoiseReductionProcessor(median_size_px=3, sigma_px=2.0)
        cases.append(("noise (med3+g2)", lambda: ref.ref_noise_reduction(frames[0]),
                      lambda: noise.process(ready[0], context)[0].data))
        ref_diff, diff = ref.RefLiveDifference(), LiveDifferenceProcessor()
        k = [0, 0]

        def ref_step() -> np.ndarray:
            k[0] += 1
            return ref_diff(frames[k[0] % 4])

        def suite_step() -> np.ndarray:
            k[1] += 1
            return diff.process(ready[k[1] % 4], context)[0].data

        cases.append(("live difference", ref_step, suite_step))
        for name, reference_fn, suite_fn in cases:
            suite_fn()  # warm (numba compile / cache load outside the timing), and the same for the reference
            reference_fn()
            rmin, rmed, rres = timed(reference_fn, max(3, args.repeats // 3) if "noise" in name else args.repeats)
            smin, smed, sres = timed(suite_fn, max(3, args.repeats // 3) if "noise" in name else args.repeats)
            scale = float(np.abs(rres).max()) or 1.0
            agreement = float(np.abs(rres - sres).max()) / scale
            print(f"{n:>5}² {name:<18} {rmin:7.2f} / {rmed:7.2f} {smin:7.2f} / {smed:7.2f} {rmed / smed:8.1f}x"
                  f"  max|Δ|/max = {agreement:.1e}")
    print("(reference and suite see the same frame sequence; live difference outputs are compared after equal "
          "numbers of frames)")


if __name__ == "__main__":
    main()
