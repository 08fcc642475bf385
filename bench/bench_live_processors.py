"""Benchmark of the seven live processors: plain reference vs fast, 870² and 2048², both cores.

Run: ``.venv/bin/python bench/bench_live_processors.py [--sizes 870 2048] [--fast-repeats 30] [--ref-repeats 2]``

Prints (and writes to ``bench/results_live_processors.md``):

* time per frame (ms, min / median) of every processor alone and of all seven together, reference vs fast, with
  the ratio (reference median / fast median). "Fast, all seven" runs the seven processors as tasks of
  :func:`processing.execution.parallel.map_chunks` on one frame with one shared ``Context`` (so Max-FFT and the orientation
  map share one tile pass, and both cores take part); the reference runs them one after another like the DM
  scripts did.
* peak extra memory of one frame, measured two ways: **RSS** sampled every ~0.2 ms by a thread reading
  ``/proc/self/statm`` (everything: numpy, numba, OpenCV, pocketfft buffers; allocator-dependent) and
  **tracemalloc** (only allocations numpy reports; misses numba/OpenCV/pocketfft internals).
* agreement of the fast outputs with the reference on the same frame.

Frames: synthetic, seeded: amorphous background, crystalline patches at several angles/spacings, a bright moving
particle, Poisson noise. First-use costs (numba cache load, FFT plans) are paid by a warm-up before timing.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
import tracemalloc
import typing

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from processing.live import reference  # noqa: E402
from processing.execution import parallel
from processing.base import Calibration, Context, Frame, ImageOutput, Processor  # noqa: E402
from processing.live.fft_analysis import (MaxFFTProcessor, OrientationMapProcessor, RadialKymographProcessor,  # noqa: E402
                                     max_fft, orientation_map, radial_profile)
from processing.live.tracking import ThresholdTrackingProcessor, track_region  # noqa: E402
from processing.warmup import warm_up  # noqa: E402

NAMES = ("copy", "noise reduction", "live difference", "threshold + tracking", "max FFT", "radial kymograph",
         "FFT orientation map")


def synthetic_frame(size: int, index: int, *, seed: int = 0) -> np.ndarray:
    """(size, size) float32 counts: blurred amorphous background, 5 lattice patches, a moving particle, Poisson."""
    import cv2

    rng = np.random.default_rng(seed)
    noise_rng = np.random.default_rng(seed + 1000 + index)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = cv2.GaussianBlur(rng.normal(size=(size, size)).astype(np.float32), (0, 0), 2.0)
    image = 40.0 + 8.0 * base / base.std()
    for _ in range(5):
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        radius = rng.uniform(0.05, 0.12) * size
        angle = rng.uniform(0, np.pi)
        spacing = rng.uniform(5.0, 10.0)
        patch = ((yy - cy) ** 2 + (xx - cx) ** 2) < radius ** 2
        k = 2 * np.pi / spacing
        lattice = (np.cos(k * (xx * np.cos(angle) - yy * np.sin(angle)))
                   + np.cos(k * (xx * np.cos(angle + np.pi / 3) - yy * np.sin(angle + np.pi / 3))))
        image += 15.0 * patch * lattice
    py = size * (0.5 + 0.1 * np.sin(0.3 * index))
    px = size * (0.4 + 0.1 * np.cos(0.3 * index))
    image += 60.0 * (((yy - py) ** 2 + (xx - px) ** 2) < (0.06 * size) ** 2)
    frame: np.ndarray = noise_rng.poisson(np.clip(image, 0, None)).astype(np.float32)
    return frame


def fast_processors() -> list[Processor]:
    """The seven fast processors in scheduling order (largest first; Max-FFT next to the map it shares a pass with)."""
    from processing.live.filters import CopyProcessor, LiveDifferenceProcessor, NoiseReductionProcessor

    return [OrientationMapProcessor(), MaxFFTProcessor(), RadialKymographProcessor(), ThresholdTrackingProcessor(),
            NoiseReductionProcessor(), LiveDifferenceProcessor(), CopyProcessor()]


FAST_NAME = {"insitu.copy": "copy", "insitu.noise_reduction": "noise reduction",
             "insitu.live_difference": "live difference", "insitu.threshold_tracking": "threshold + tracking",
             "insitu.max_fft": "max FFT", "insitu.radial_kymograph": "radial kymograph",
             "insitu.fft_orientation": "FFT orientation map"}


def run_all(processors: typing.Sequence[Processor], frame: Frame) -> list[typing.Any]:
    """All processors on one frame, sharing one Context, as tasks on the shared pool (both cores)."""
    context = Context()
    return parallel.map_chunks(lambda p: p.process(frame, context), processors)


def make_frame(data: np.ndarray, index: int) -> Frame:
    cal = Calibration(0.0, 0.02, "nm")
    return Frame(data, (cal, cal), index, 0.05 * index)


def reference_seven(diff: reference.RefLiveDifference) -> list[tuple[str, typing.Callable[[np.ndarray], typing.Any]]]:
    return [("copy", reference.ref_copy), ("noise reduction", reference.ref_noise_reduction),
            ("live difference", diff), ("threshold + tracking", reference.ref_threshold_tracking),
            ("max FFT", reference.ref_max_fft), ("radial kymograph", reference.ref_radial_profile),
            ("FFT orientation map", reference.ref_orientation_map)]


def _ms(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f}" if values else "-"


class RSSSampler:
    """Peak resident set size (bytes) while active, sampled from /proc/self/statm."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def __enter__(self) -> "RSSSampler":
        self.base = self.rss()
        self.peak = self.base
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.0002)

    def __exit__(self, *exc: typing.Any) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.base) / 2 ** 20


def memory_of(fn: typing.Callable[[], typing.Any]) -> tuple[float, float]:
    """(RSS peak increase MiB, tracemalloc peak MiB) of one call."""
    gc.collect()
    with RSSSampler() as sampler:
        fn()
    gc.collect()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return sampler.extra_mib, peak / 2 ** 20


def agreement(data: np.ndarray) -> dict[str, str]:
    """Fast vs reference on one frame."""
    out: dict[str, str] = {}
    ref_o = reference.ref_orientation_map(data)
    fast_o = orientation_map(data)
    same = np.abs(ref_o.theta_deg - fast_o.theta_deg) < 1e-3
    out["orientation: tiles identical"] = f"{100 * same.mean():.2f} % of {same.size}"
    out["orientation: strength max rel"] = f"{np.max(np.abs(ref_o.intensity - fast_o.strength) / np.abs(ref_o.intensity)):.2e}"
    ref_m, fast_m = reference.ref_max_fft(data), max_fft(data)
    out["max FFT: max rel (elementwise)"] = f"{np.max(np.abs(ref_m - fast_m) / np.abs(ref_m)):.2e}"
    for stat in ("mean", "max"):
        r, f = reference.ref_radial_profile(data, statistic=stat), radial_profile(data, statistic=stat)
        out[f"radial {stat}: max rel"] = f"{np.max(np.abs(r - f) / np.abs(r)):.2e}"
    ref_t, fast_t = reference.ref_threshold_tracking(data), track_region(data)
    if ref_t.centroid_px is not None and fast_t.region is not None:
        d = float(np.hypot(*(np.subtract(ref_t.centroid_px, fast_t.region.centroid_px))))
        out["tracking: centre distance"] = f"{d:.2e} px"
        out["tracking: convex area ref / fast"] = f"{ref_t.area_convex_px} / {fast_t.area_convex_px}"
        out["tracking: threshold ref / fast"] = f"{ref_t.threshold:.6g} / {fast_t.threshold:.6g}"
        out["tracking: mask identical"] = str(bool(np.array_equal(ref_t.mask, fast_t.mask > 0)))
    try:
        from processing.live.filters import LiveDifferenceProcessor, NoiseReductionProcessor
        frame = make_frame(data, 0)
        ref_n = reference.ref_noise_reduction(data)
        fast_n = typing.cast(ImageOutput, NoiseReductionProcessor().process(frame, Context())[0]).data
        out["noise reduction: max|d|/max|ref|"] = f"{np.max(np.abs(ref_n - fast_n)) / np.max(np.abs(ref_n)):.2e}"
        rd, fd = reference.RefLiveDifference(), LiveDifferenceProcessor()
        for k in range(3):
            frame_k = make_frame(data + k, k)
            a, b = rd(frame_k.data), typing.cast(ImageOutput, fd.process(frame_k, Context())[0]).data
        out["live difference: max|d|"] = f"{np.max(np.abs(a - b)):.2e}"
    except ImportError as e:  # the lead's processors are not there yet
        out["copy/noise/difference"] = f"not measured ({e})"
    return out


def bench_size(size: int, fast_repeats: int, ref_repeats: int, lines: list[str]) -> None:
    frames = [synthetic_frame(size, i) for i in range(3)]
    print(f"\n## {size}² (frames generated)", flush=True)
    # fast: per processor, each alone on both cores
    fast_times: dict[str, list[float]] = {}
    for index in range(len(NAMES)):
        proc = fast_processors()[index]  # alone: the others are dropped (so Max-FFT skips the orientation peaks)
        gc.collect()
        name = FAST_NAME[proc.processor_id]
        times = []
        for k in range(fast_repeats + 2):
            frame = make_frame(frames[k % 3], k)
            t0 = time.perf_counter()
            proc.process(frame, Context())
            if k >= 2:
                times.append(1e3 * (time.perf_counter() - t0))
        fast_times[name] = times
        print(f"fast {name}: {_ms(times)} ms", flush=True)
    procs = fast_processors()
    all_fast = []
    all_cpu = []
    for k in range(fast_repeats + 2):
        frame = make_frame(frames[k % 3], k)
        c0 = time.process_time()
        t0 = time.perf_counter()
        run_all(procs, frame)
        if k >= 2:
            all_fast.append(1e3 * (time.perf_counter() - t0))
            all_cpu.append(1e3 * (time.process_time() - c0))
    print(f"fast all seven: {_ms(all_fast)} ms (CPU time of all threads {_ms(all_cpu)} ms)", flush=True)
    fast_mem = memory_of(lambda: run_all(procs, make_frame(frames[0], 99)))
    gc.collect()
    with RSSSampler() as first:  # new processors: includes their persistent state (EWMA images, ring buffers...)
        run_all(fast_processors(), make_frame(frames[0], 0))
    # reference: all seven one after another, each timed
    ref_times: dict[str, list[float]] = {n: [] for n in NAMES}
    all_ref = []
    diff = reference.RefLiveDifference()
    for k in range(ref_repeats):
        data = frames[k % 3]
        t_all = time.perf_counter()
        for name, fn in reference_seven(diff):
            t0 = time.perf_counter()
            fn(data)
            ref_times[name].append(1e3 * (time.perf_counter() - t0))
        all_ref.append(1e3 * (time.perf_counter() - t_all))
    print(f"reference all seven: {_ms(all_ref)} ms", flush=True)
    ref_mem = memory_of(lambda: [fn(frames[0]) for _, fn in reference_seven(reference.RefLiveDifference())])
    lines.append(f"\n### {size}² — time per frame, ms (min / median), 2 cores\n")
    lines.append("| processor | reference | fast | ratio (median) |")
    lines.append("|---|---|---|---|")
    for name in NAMES:
        r, f = ref_times[name], fast_times[name]
        lines.append(f"| {name} | {_ms(r)} | {_ms(f)} | {statistics.median(r) / statistics.median(f):.0f}× |")
    lines.append(f"| **all seven together** | **{_ms(all_ref)}** | **{_ms(all_fast)}** | "
                 f"**{statistics.median(all_ref) / statistics.median(all_fast):.0f}×** |")
    lines.append(f"\nFast, all seven: CPU time of all threads per frame {_ms(all_cpu)} ms (min / median): the wall "
                 f"time on 2 idle cores cannot be below half of it. Load average at the end: "
                 f"{os.getloadavg()[0]:.2f}.")
    lines.append(f"\nPeak extra memory of one all-seven frame: reference RSS {ref_mem[0]:.0f} MiB "
                 f"(tracemalloc {ref_mem[1]:.0f} MiB); fast RSS {fast_mem[0]:.1f} MiB "
                 f"(tracemalloc {fast_mem[1]:.1f} MiB); fast, first frame of new processors (allocates their "
                 f"persistent state) RSS {first.extra_mib:.0f} MiB.\n")
    lines.append(f"Agreement (fast vs reference, {size}² frame):\n")
    for key, value in agreement(frames[1]).items():
        lines.append(f"- {key}: {value}")
    print("\n".join(lines[-(len(NAMES) + 16):]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[870, 2048])
    parser.add_argument("--fast-repeats", type=int, default=30)
    parser.add_argument("--ref-repeats", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "results_live_processors.md"))
    args = parser.parse_args()
    t0 = time.perf_counter()
    print(f"warm-up (numba cache load/compile): {warm_up():.2f} s; workers: {parallel.workers()}", flush=True)
    print(f"first call after warm-up: {time.perf_counter() - t0:.2f} s", flush=True)
    lines = ["# Live processors: reference vs fast", "",
             f"Machine: {os.cpu_count()} cores; numpy {np.__version__}; run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."]
    for size in args.sizes:
        bench_size(size, args.fast_repeats, args.ref_repeats, lines)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
