#!/usr/bin/env python3
"""Soak: the simulated camera with every registered processor attached for many minutes (issue 14).

Headless Swift with Swift's computation dispatcher running (like the real application), or the real Swift under
Xvfb. Every ``--interval-s`` the process's RSS, its thread count and every runner's counters are sampled; at the
end the run is judged against the issue's criteria and plotted:

* processed fraction (frames processed / frames received by the runner) in the last minute within 10 % of the
  first minute's, per processor and overall;
* thread count constant after start-up (the first minute; headless, Swift's fixed-size executors are filled at
  start-up, :func:`fill_executor_pools`, as the GUI's start-up fills them);
* RSS growth < 5 % after the first minute (median RSS of the last minute over the median of the first minute
  after start-up; the samples' min / max are reported too);
* no traceback in Swift's log (stderr / logging for headless, the launcher's log for the GUI).

Writes ``bench/results/soak_<mode>_<size>.json`` (samples + verdict) and ``.png`` (RSS, threads, processed
fraction per minute). Not a timed test: the figures depend on the machine's load (say so when reporting them).

usage: .venv/bin/python bench/soak.py --mode headless --size 512 --minutes 10
       .venv/bin/python bench/soak.py --mode gui --minutes 10          (real Swift under Xvfb; camera 1024²)
       .venv/bin/python bench/soak.py --replot bench/results/soak_headless_512.json
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import pathlib
import statistics
import sys
import threading
import time
import typing

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CAMERA_ID = "insitu_camera"
START_UP_S = 60.0   # the first minute: JIT warm-up, Swift's pools filling, display items created
WINDOW_S = 60.0     # "first minute" / "last minute" after start-up


# ---------------------------------------------------------------------------------------------------------------
# sampling (in the process that runs Swift)

def process_counters() -> dict[str, typing.Any]:
    """RSS (MiB) and OS thread count of this process, from /proc."""
    status = pathlib.Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    groups: dict[str, int] = {}
    for t in threading.enumerate():  # by name without its number: which pool grew, if one did
        name = t.name.split("(")[0].strip().rstrip("0123456789_-") or t.name
        groups[name] = groups.get(name, 0) + 1
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024.0, "threads": int(fields["Threads"].split()[0]),
            "py_threads": threading.active_count(), "thread_groups": groups, **heap_counters(), **huge_pages()}


def huge_pages() -> dict[str, float]:
    """Anonymous memory backed by transparent huge pages (MiB, ``/proc/self/smaps_rollup``); {} where unavailable.
    A freed heap page inside a huge page stays resident (``malloc_trim`` cannot return part of a huge page)."""
    try:
        text = pathlib.Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return {"anon_huge_mib": int(fields["AnonHugePages"].split()[0]) / 1024.0,
                "rss_anon_mib": int(fields["Anonymous"].split()[0]) / 1024.0}
    except (KeyError, ValueError):
        return {}


def heap_counters() -> dict[str, float]:
    """glibc's heap (``mallinfo2``, MiB): in use, free inside the heaps, mmapped blocks; Python's small-object
    allocator (allocated blocks); {} where unavailable. Splits RSS growth into retention and allocator slack."""
    try:
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in
                        ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                         "fordblks", "keepcost")]
        mallinfo2 = ctypes.CDLL(None).mallinfo2
        mallinfo2.restype = MallInfo2
        info = mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"heap_in_use_mib": round(info.uordblks / 2 ** 20, 1), "heap_free_mib": round(info.fordblks / 2 ** 20, 1),
            "mmap_mib": round(info.hblkhd / 2 ** 20, 1), "py_blocks": sys.getallocatedblocks()}


def buffer_census(min_bytes: int = 256 * 1024) -> dict[str, typing.Any]:
    """Large numpy buffers reachable from Python containers, grouped by what holds them (MiB, counts).

    Arrays held only by C code (a numba kernel's locals) are not seen; the groups are ``(referrer type, dtype,
    shape)`` of arrays of at least ``min_bytes`` whose memory is their own (views are counted at their base).
    Also lists every ``ThreadPoolExecutor`` (Swift's on-demand pools) with its workers and their maximum.
    Costs one ``gc.get_objects()`` pass (~0.3 s at 1.1 M objects): sample it once a minute, not every 5 s. A
    diagnosis, not for verdict runs: holding a tuple that another thread is still building makes that thread's
    ``_PyTuple_Resize`` fail (seen once: ``SystemError: Objects/tupleobject.c:927`` in Swift's repaint thread)."""
    import numpy
    import concurrent.futures
    seen: dict[int, typing.Any] = {}
    groups: dict[str, list[float]] = {}
    executors: list[list[typing.Any]] = []
    for container in gc.get_objects():
        if isinstance(container, concurrent.futures.ThreadPoolExecutor):
            executors.append([container._thread_name_prefix, len(container._threads), container._max_workers])
        try:
            referents = gc.get_referents(container)
        except Exception:
            continue
        for obj in referents:
            if type(obj) is not numpy.ndarray:
                continue
            base = obj
            while isinstance(base.base, numpy.ndarray):
                base = base.base
            if base.nbytes < min_bytes or id(base) in seen:
                continue
            seen[id(base)] = base
            key = f"{type(container).__name__} {base.dtype} {base.shape}"
            g = groups.setdefault(key, [0.0, 0])
            g[0] += base.nbytes / 2 ** 20
            g[1] += 1
    del seen
    top = sorted(groups.items(), key=lambda kv: -kv[1][0])[:25]
    return {"census_mib": round(sum(g[0] for g in groups.values()), 1),
            "census_top": {k: [round(v[0], 1), int(v[1])] for k, v in top},
            "executors": sorted(executors)}  # [name prefix, workers now, max_workers]: on-demand pools' bound


def fill_executor_pools(hold_s: float = 2.0) -> list[list[typing.Any]]:
    """Start every worker of every ``ThreadPoolExecutor`` alive now (Swift's fixed-size pools: display data,
    thumbnails, canvas, computations), as the GUI's own start-up does within ~20 s; returns ``[name prefix, workers
    before, workers after, max_workers]`` per pool.

    Why (headless start-up only): a pool creates a worker when a task arrives while all are busy, up to its fixed
    maximum. Headless Swift's load is smooth, so a pool's last worker can appear minutes in (sessions 6 and 10: +1
    thread at 75-355 s, every pool then at its maximum), which the "threads constant after start-up" check reads as
    growth. Filled here, a thread beyond these pools (a leak, a new pool) still counts. Each pool gets ``max_workers``
    tasks that wait (at most ``hold_s``) until all are submitted, so each submit finds no idle worker."""
    import concurrent.futures
    pools = [o for o in gc.get_objects() if isinstance(o, concurrent.futures.ThreadPoolExecutor)]
    out: list[list[typing.Any]] = []
    for pool in pools:
        before = len(pool._threads)
        release = threading.Event()
        try:
            futures = [pool.submit(release.wait, hold_s) for _ in range(pool._max_workers)]
        except RuntimeError:  # shut down
            continue
        release.set()
        concurrent.futures.wait(futures, timeout=hold_s + 5.0)
        out.append([pool._thread_name_prefix, before, len(pool._threads), pool._max_workers])
    return sorted(out)


def loop_queues(event_loop: typing.Any) -> dict[str, int]:
    """Callbacks waiting on Swift's asyncio event loop (ready now / scheduled later): a backlog shows here."""
    try:
        return {"loop_ready": len(event_loop._ready), "loop_scheduled": len(event_loop._scheduled)}
    except AttributeError:
        return {}


def sample(t0: float, tracebacks: int) -> dict[str, typing.Any]:
    from nionswift_plugin.insitu.live_engine import ENGINE
    runners = []
    for runner in list(ENGINE.runners):
        _, error, stats = runner.latest()
        runners.append({"title": runner.title, "streaming": bool(runner.is_streaming), "error": error,
                        "received": int(stats.get("frames_received", 0)),
                        "processed": int(stats.get("frames_processed", 0)),
                        "dropped": int(stats.get("frames_dropped", 0)), "mean_ms": float(stats.get("mean_ms", 0.0))})
    from nionswift_plugin.insitu.swift_workarounds import light_rebin_calls
    return dict(process_counters(), t_s=round(time.monotonic() - t0, 2), runners=runners, tracebacks=tracebacks,
                load1=round(os.getloadavg()[0], 2), light_rebin_calls=light_rebin_calls())


class TracebackCounter(logging.Handler):
    """Counts tracebacks written to stderr or logged (with exc_info, or text containing 'Traceback')."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []
        self._stderr = sys.stderr
        counter = self

        class Tee(io.TextIOBase):
            def write(self, text: str) -> int:
                if "Traceback (most recent call last)" in text:
                    counter.note(text)
                return counter._stderr.write(text)

            def flush(self) -> None:
                counter._stderr.flush()

        self.tee = Tee()

    def note(self, text: str) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(text[-2000:])

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info or "Traceback" in text:
            self.note(text + (f" {record.exc_info[1]!r}" if record.exc_info else ""))

    def install(self) -> None:
        logging.getLogger().addHandler(self)
        sys.stderr = typing.cast(typing.TextIO, self.tee)
        previous = threading.excepthook

        def hook(args: threading.ExceptHookArgs) -> None:
            self.note(f"thread {args.thread}: {args.exc_value!r}")
            previous(args)

        threading.excepthook = hook

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
        sys.stderr = self._stderr


def start_sampler_thread(path: str, interval_s: float = 5.0) -> threading.Thread:
    """For the real GUI: sample from a daemon thread into a JSON-lines file (loaded by the soak plug-in)."""
    t0 = time.monotonic()

    def loop() -> None:
        with open(path, "a") as f:
            while True:
                time.sleep(interval_s)
                try:
                    f.write(json.dumps(sample(t0, 0)) + "\n")
                    f.flush()
                except Exception as e:  # never disturb Swift; the gap shows in the samples
                    print(f"soak sampler: {e!r}", file=sys.__stderr__)

    thread = threading.Thread(target=loop, name="insitu-soak-sampler", daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------------------------------------------------------
# analysis

def _window(samples: list[dict[str, typing.Any]], t_from: float, t_to: float,
            ) -> tuple[dict[str, typing.Any], dict[str, typing.Any]] | None:
    inside = [s for s in samples if t_from - 1e-6 <= s["t_s"] <= t_to + 1e-6]
    return (inside[0], inside[-1]) if len(inside) >= 2 else None


def _fractions(a: dict[str, typing.Any], b: dict[str, typing.Any]) -> dict[str, float]:
    before = {r["title"]: r for r in a["runners"]}
    out: dict[str, float] = {}
    total_p = total_r = 0
    for r in b["runners"]:
        if r["title"] not in before:
            continue
        d_received = r["received"] - before[r["title"]]["received"]
        d_processed = r["processed"] - before[r["title"]]["processed"]
        if d_received > 0:
            out[r["title"]] = d_processed / d_received
            total_p += d_processed
            total_r += d_received
    out["all"] = total_p / total_r if total_r else float("nan")
    return out


def analyse(samples: list[dict[str, typing.Any]], n_processors: int) -> dict[str, typing.Any]:
    """The verdict: t = 0 is the first sample with every processor streaming."""
    live = [s for s in samples if sum(r["streaming"] for r in s["runners"]) >= n_processors]
    if len(live) < 3:
        return {"ok": False, "reason": "the processors never all streamed", "samples": len(samples)}
    t_start = live[0]["t_s"]
    series = [dict(s, t_s=s["t_s"] - t_start) for s in live]
    end = series[-1]["t_s"]
    first = _window(series, START_UP_S, START_UP_S + WINDOW_S)
    last = _window(series, end - WINDOW_S, end)
    verdict: dict[str, typing.Any] = {"duration_s": round(end, 1)}
    if first is None or last is None or end < START_UP_S + 2 * WINDOW_S - 1:
        verdict.update(ok=False, reason=f"too short ({end:.0f} s) for a first and a last minute after start-up")
        return verdict
    f_first, f_last = _fractions(*first), _fractions(*last)
    ratios = {k: (f_last[k] / f_first[k] if f_first.get(k) else float("nan")) for k in f_first if k in f_last}
    after = [s for s in series if s["t_s"] >= START_UP_S]
    threads = [s["threads"] for s in after]
    # RSS growth: median of the last minute over the median of the first minute after start-up (single samples
    # swing by tens of MiB with the frames in flight at that instant: 4-8 MiB each at 1024²)
    rss_start = statistics.median(s["rss_mib"] for s in series if first[0]["t_s"] <= s["t_s"] <= first[1]["t_s"])
    rss_end = statistics.median(s["rss_mib"] for s in series if last[0]["t_s"] <= s["t_s"] <= last[1]["t_s"])
    per_minute = []
    t = 0.0
    while t + WINDOW_S <= end + 1e-6:
        w = _window(series, t, t + WINDOW_S)
        if w:
            per_minute.append({"t_s": t + WINDOW_S, **_fractions(*w)})
        t += WINDOW_S
    errors = sorted({r["error"] for r in series[-1]["runners"] if r["error"]})
    verdict.update({
        "processed_fraction_first_minute": f_first, "processed_fraction_last_minute": f_last,
        "last_over_first": ratios,
        "fraction_ok": all(abs(v - 1.0) <= 0.10 for v in ratios.values() if v == v),
        "threads_after_start_up": {"min": min(threads), "max": max(threads)},
        "threads_constant_after_s": next((s["t_s"] for i, s in enumerate(series)
                                          if all(x["threads"] == s["threads"] for x in series[i:])), None),
        "threads_ok": max(threads) == min(threads),
        "thread_groups_first_last": [after[0].get("thread_groups"), after[-1].get("thread_groups")],
        # Python's on-demand pools (concurrent.futures: Swift's thumbnails and computations) add a worker only when
        # every worker is busy at a submit, up to their size: a load spike can add one late
        "threads_but_on_demand_pools": sorted({s["py_threads"] - s.get("thread_groups", {}).get("ThreadPoolExecutor", 0)
                                               for s in after}),
        "rss_mib_after_first_minute": round(rss_start, 1), "rss_mib_end": round(rss_end, 1),
        "rss_mib_samples_after_start_up": {"min": round(min(s["rss_mib"] for s in after), 1),
                                           "max": round(max(s["rss_mib"] for s in after), 1),
                                           "last": round(after[-1]["rss_mib"], 1)},
        "rss_growth": round(rss_end / rss_start - 1.0, 4), "rss_ok": rss_end / rss_start - 1.0 < 0.05,
        "machine_load_1min": {"median": statistics.median(s.get("load1", float("nan")) for s in after),
                              "max": max(s.get("load1", float("nan")) for s in after)},
        "tracebacks": series[-1].get("tracebacks", 0), "errors_at_end": errors, "per_minute": per_minute,
        "frames_received_per_s": round((sum(r["received"] for r in last[1]["runners"])
                                        - sum(r["received"] for r in last[0]["runners"]))
                                       / max(1, len(last[1]["runners"]))
                                       / max(1e-9, last[1]["t_s"] - last[0]["t_s"]), 1)})
    verdict["ok"] = bool(verdict["fraction_ok"] and verdict["threads_ok"] and verdict["rss_ok"]
                         and not verdict["tracebacks"])
    return verdict


def plot(samples: list[dict[str, typing.Any]], verdict: dict[str, typing.Any], path: pathlib.Path,
         title: str) -> None:
    """Three stacked panels (PIL, no matplotlib dependency): RSS MiB, OS threads, processed fraction per minute."""
    from PIL import Image, ImageDraw
    width, panel_h, margin = 900, 220, 60
    image = Image.new("RGB", (width, 3 * panel_h + 60), "white")
    draw = ImageDraw.Draw(image)
    draw.text((margin, 8), title, fill="black")
    ok = "PASS" if verdict.get("ok") else "FAIL"
    draw.text((margin, 24), f"{ok}: rss growth {verdict.get('rss_growth', float('nan')):+.1%}, threads "
                            f"{verdict.get('threads_after_start_up')}, tracebacks {verdict.get('tracebacks')}",
              fill="black")
    t_max = max((s["t_s"] for s in samples), default=1.0) or 1.0
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#000000"]

    def panel(index: int, label: str, lines: list[tuple[str, list[tuple[float, float]]]],
              y_range: tuple[float, float] | None = None) -> None:
        top = 50 + index * panel_h
        x0, x1, y0, y1 = margin, width - 170, top + 10, top + panel_h - 30
        values = [v for _, pts in lines for _, v in pts if v == v]
        lo, hi = y_range if y_range else ((min(values), max(values)) if values else (0.0, 1.0))
        if hi <= lo:
            lo, hi = lo - 1.0, hi + 1.0
        draw.rectangle((x0, y0, x1, y1), outline="#888888")
        draw.text((4, y0), f"{hi:.4g}", fill="black")
        draw.text((4, y1 - 10), f"{lo:.4g}", fill="black")
        draw.text((x0, y1 + 4), f"{label}   (x: 0 .. {t_max:.0f} s)", fill="black")
        for i, (name, pts) in enumerate(lines):
            xy = [(x0 + (x1 - x0) * t / t_max, y1 - (y1 - y0) * (v - lo) / (hi - lo)) for t, v in pts if v == v]
            if len(xy) >= 2:
                draw.line(xy, fill=colours[i % len(colours)], width=2)
            elif xy:
                draw.ellipse((xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2), fill=colours[i % len(colours)])
            draw.text((x1 + 8, y0 + 14 * i), name[:24], fill=colours[i % len(colours)])

    memory = [("RSS", [(s["t_s"], s["rss_mib"]) for s in samples])]
    if any("heap_in_use_mib" in s for s in samples):  # glibc's view: what is held vs RSS
        memory.append(("malloc in use + mmap", [(s["t_s"], s["heap_in_use_mib"] + s["mmap_mib"]) for s in samples
                                                if "heap_in_use_mib" in s]))
    panel(0, "RSS (MiB)", memory)
    panel(1, "OS threads", [("threads", [(s["t_s"], float(s["threads"])) for s in samples])])
    minutes = verdict.get("per_minute", [])
    names = sorted({k for m in minutes for k in m if k != "t_s"})
    panel(2, "processed fraction per minute (processed / received)",
          [(n, [(m["t_s"], m[n]) for m in minutes if n in m]) for n in names], (0.0, 1.05))
    image.save(path)


def write_result(samples: list[dict[str, typing.Any]], meta: dict[str, typing.Any], n_processors: int,
                 stem: str) -> dict[str, typing.Any]:
    verdict = analyse(samples, n_processors)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"meta": meta, "verdict": verdict, "samples": samples}
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=1))
    plot(samples, verdict, RESULTS / f"{stem}.png",
         f"soak: {meta.get('mode')}, {meta.get('size_px')} px, {meta.get('minutes')} min measured after "
         f"{START_UP_S:.0f} s start-up, {len(meta.get('processors', []))} processors")
    return verdict


# ---------------------------------------------------------------------------------------------------------------
# headless run

def _tracemalloc_report(first: typing.Any, last: typing.Any, path: pathlib.Path, top: int = 40) -> None:
    """Where the memory held at the end of the run and not after start-up was allocated (numpy reports its data
    buffers to tracemalloc, so arrays are attributed to the line that made them)."""
    import tracemalloc
    lines = [f"tracemalloc: held at the end minus held after start-up, grouped by the allocating traceback "
             f"(top {top}; KiB, count)"]
    total = 0.0
    for stat in last.compare_to(first, "traceback")[:top]:
        total += stat.size_diff
        lines.append(f"\n{stat.size_diff / 1024:+10.1f} KiB  {stat.count_diff:+7d} blocks  (now "
                     f"{stat.size / 1024:.1f} KiB in {stat.count})")
        lines.extend("    " + line for line in stat.traceback.format()[-16:])
    held_first = sum(s.size for s in first.statistics("filename")) / 2**20
    held_last = sum(s.size for s in last.statistics("filename")) / 2**20
    lines.insert(1, f"traced total: {held_first:.1f} MiB after start-up -> {held_last:.1f} MiB at the end")
    path.write_text("\n".join(lines) + "\n")
    del tracemalloc


def _environment() -> dict[str, str]:
    """The environment variables that change the allocator or the plug-in's memory behaviour (for the result)."""
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith(("MALLOC_", "NUMPY_", "INSITU_", "GLIBC_TUNABLES", "OMP_", "PYTHONMALLOC"))
            and k not in ("INSITU_SOAK_SCRIPT", "INSITU_SOAK_SAMPLES")}


def run_headless(size: int, minutes: float, exposure_ms: float, interval_s: float,
                 trace_memory: bool = False, tag: str = "", census_every: int = 0) -> dict[str, typing.Any]:
    sys.path.insert(0, str(ROOT))
    from instrument_sim import configuration
    from nionswift_plugin.insitu import computations
    from nionswift_plugin.insitu.gui_driver import SIMULATOR_SETTINGS
    from nionswift_plugin.insitu.headless import HeadlessSwift
    from nionswift_plugin.insitu import live_engine
    from processing import registry, warmup

    counter = TracebackCounter()
    counter.install()
    warm_s = warmup.warm_up()
    samples: list[dict[str, typing.Any]] = []
    config = configuration.SimulatorConfiguration(frame_shape=(size, size))
    with HeadlessSwift(config) as swift:
        pool = swift.document_model._DocumentModel__computation_thread_pool
        started_here = not pool._ThreadPool__threads
        if started_here:  # the harness does not (yet) run Swift's dispatcher: run it, like the application
            swift.document_model.start_dispatcher()
        live, display_item = swift.play(CAMERA_ID, exposure_ms=exposure_ms)
        ids = [cls.processor_id for cls in registry.all_processors()]
        for processor_id in ids:
            computations.attach(swift.document_model, processor_id, display_item,
                                parameters=SIMULATOR_SETTINGS.get(processor_id))
        pools_filled = fill_executor_pools()
        t0 = time.monotonic()
        end = t0 + 15.0 + START_UP_S + minutes * 60.0  # a few s until every runner streams, start-up, measured
        next_sample = t0
        snapshot_at, first_snapshot = t0 + 15.0 + START_UP_S, None
        if trace_memory:
            import tracemalloc
            tracemalloc.start(int(os.environ.get("INSITU_SOAK_TRACE_FRAMES", "25")))
        while time.monotonic() < end:
            swift.pump(0.05)
            if trace_memory and first_snapshot is None and time.monotonic() >= snapshot_at:
                gc.collect()
                first_snapshot = tracemalloc.take_snapshot()
            if time.monotonic() >= next_sample:
                samples.append(sample(t0, counter.count))
                samples[-1].update(loop_queues(swift.document_controller.event_loop))
                if census_every and len(samples) % census_every == 0:
                    samples[-1].update(buffer_census())
                next_sample += interval_s
                if len(samples) % 12 == 0:
                    s = samples[-1]
                    print(f"{s['t_s']:7.0f} s  rss {s['rss_mib']:.0f} MiB  threads {s['threads']}  processed "
                          f"{sum(r['processed'] for r in s['runners'])}  tracebacks {s['tracebacks']}", flush=True)
        samples.append(sample(t0, counter.count))
        if trace_memory and first_snapshot is not None:
            gc.collect()
            _tracemalloc_report(first_snapshot, tracemalloc.take_snapshot(),
                                RESULTS / f"soak_headless_{size}_tracemalloc.txt")
            tracemalloc.stop()
        swift.hardware_source(CAMERA_ID).stop_playing(sync_timeout=5.0)
        swift.pump(1.0)
        executors = buffer_census()["executors"]  # after the stop: nothing is being built on other threads
        del live
    counter.uninstall()
    meta = {"mode": "headless", "size_px": size, "minutes": minutes, "exposure_ms": exposure_ms,
            "dispatcher_started_by_soak": started_here, "warm_up_s": round(warm_s, 2),
            "first_tracebacks": counter.first, "processors": ids, "environment": _environment(),
            "allocator_tuning": dict(live_engine._tuned),
            "executors_at_end": executors,  # [name prefix, workers, max_workers] of every ThreadPoolExecutor
            "executors_filled_at_start": pools_filled}  # [name prefix, workers before, after, max_workers]
    return write_result(samples, meta, len(ids),
                        f"soak_headless_{size}" + ("_traced" if trace_memory else "") + (f"_{tag}" if tag else ""))


# ---------------------------------------------------------------------------------------------------------------
# real GUI run (Xvfb)

PLUGIN = '''"""Soak sampler (bench/soak.py --mode gui): samples RSS, threads and runner counters inside the real Swift."""
import os, runpy
_ns = runpy.run_path(os.environ["INSITU_SOAK_SCRIPT"], run_name="insitu_soak")
_ns["start_sampler_thread"](os.environ["INSITU_SOAK_SAMPLES"], float(os.environ.get("INSITU_SOAK_INTERVAL_S", "5")))
'''


def run_gui(minutes: float, interval_s: float) -> dict[str, typing.Any]:
    import tempfile
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "scripts"))
    import swift_xvfb
    from processing import registry
    reason = swift_xvfb.available()
    if reason:
        raise SystemExit(f"cannot run the real GUI here: {reason}")
    ids = [cls.processor_id for cls in registry.all_processors()]
    work = pathlib.Path(tempfile.mkdtemp(prefix="insitu-soak-"))
    plugin_dir = work / "plugins" / "nionswift_plugin" / "insitu_soak"
    plugin_dir.mkdir(parents=True)
    (plugin_dir / "__init__.py").write_text(PLUGIN)
    samples_path = work / "samples.jsonl"
    os.environ.update(INSITU_SOAK_SCRIPT=str(pathlib.Path(__file__).resolve()), INSITU_SOAK_SAMPLES=str(samples_path),
                      INSITU_SOAK_INTERVAL_S=str(interval_s),
                      # the tracking time plot grows a point per processed frame: shown, it is drawn through
                      # swift_workarounds.light_line_plot_rebin once it is longer than its plot (the samples count it)
                      INSITU_GUI_SHOW="Threshold Tracking - track",
                      PYTHONPATH=os.pathsep.join([str(work / "plugins"), str(ROOT)]
                                                 + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    out = RESULTS / "soak_gui"
    result = swift_xvfb.run(out, seconds=15.0 + START_UP_S + minutes * 60.0, processors=ids, timeout_s=300.0)
    samples = [json.loads(line) for line in samples_path.read_text().splitlines() if line.strip()] \
        if samples_path.exists() else []
    log = result["log"]
    tracebacks = log.count("Traceback (most recent call last)")
    for s in samples:
        s["tracebacks"] = tracebacks  # the log is only read at the end
    first = [log[i:i + 1500] for i in [j for j in range(len(log)) if log.startswith("Traceback", j)][:5]]
    meta = {"mode": "gui (real Swift under Xvfb)", "size_px": 1024, "minutes": minutes, "rc": result["rc"],
            "ready_s": round(result["ready_s"], 1), "first_tracebacks": first, "processors": ids,
            "screenshot": str(result["screenshot"])}
    return write_result(samples, meta, len(ids), "soak_gui_1024")


def main() -> int:
    global START_UP_S, WINDOW_S
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("headless", "gui"), default="headless")
    parser.add_argument("--size", type=int, default=512, help="camera frame size (headless; the GUI uses 1024)")
    parser.add_argument("--minutes", type=float, default=10.0, help="measured minutes after start-up")
    parser.add_argument("--exposure-ms", type=float, default=35.0, help="camera exposure (headless)")
    parser.add_argument("--interval-s", type=float, default=5.0)
    parser.add_argument("--window-s", type=float, default=60.0,
                        help="start-up and comparison window (60 s; shorter only for a smoke run)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="headless: attribute the memory held at the end (slower; writes *_tracemalloc.txt)")
    parser.add_argument("--replot", type=pathlib.Path, help="re-analyse and re-plot a result JSON")
    parser.add_argument("--tag", default="", help="headless: suffix of the result files (a comparison run, e.g. "
                        "'nothp': soak_headless_512_nothp.json), so the committed results are not overwritten")
    parser.add_argument("--census-every", type=int, default=0,
                        help="headless: every N-th sample also counts the large numpy buffers by holder (0 = off)")
    args = parser.parse_args()
    START_UP_S = WINDOW_S = args.window_s
    if args.replot:
        data = json.loads(args.replot.read_text())
        verdict = write_result(data["samples"], data["meta"], len(data["meta"]["processors"]), args.replot.stem)
    elif args.mode == "gui":
        verdict = run_gui(args.minutes, args.interval_s)
    else:
        verdict = run_headless(args.size, args.minutes, args.exposure_ms, args.interval_s, args.tracemalloc,
                               args.tag, args.census_every)
    print(json.dumps({k: v for k, v in verdict.items() if k != "per_minute"}, indent=1))
    return 0 if verdict.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
