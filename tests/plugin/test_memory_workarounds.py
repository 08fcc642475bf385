"""The engine's and the harness's workarounds for memory Swift would keep (issue 14): each one alone, without a
camera (the churn and soak tests check them together)."""
from __future__ import annotations

import threading
import typing

from nion.swift.model import Activity
from nion.swift.model import Symbolic
from nion.ui import TestUI

from nionswift_plugin.insitu import live_engine
from nionswift_plugin.insitu.headless import release_removed_widgets_like_qt


class _Computation:
    label = "test"
    processing_id = "test.memory"


def test_open_activities_of_a_removed_computation_are_finished_exactly_once() -> None:
    tracker = live_engine.OpenComputationActivities()
    tracker.install()
    finished: list[typing.Any] = []
    listener = Activity.activity_finished_event.listen(finished.append)
    removed, other = _Computation(), _Computation()
    done = Symbolic.ComputationActivity(typing.cast(typing.Any, removed))    # Swift finishes this one itself
    stuck = Symbolic.ComputationActivity(typing.cast(typing.Any, removed))   # executor dropped without close()
    alive = Symbolic.ComputationActivity(typing.cast(typing.Any, other))
    for activity in (done, stuck, alive):
        Activity.append_activity(activity)
    Activity.activity_finished(done)
    assert len(tracker) == 2
    finished.clear()
    assert tracker.finish_for(removed) == 1
    assert finished == [stuck]                      # not `done` a second time (the Activity panel would raise)
    assert tracker.finish_for(removed) == 0         # idempotent
    assert len(tracker) == 1                        # the other computation's activity stays open
    Activity.activity_finished(alive)
    assert len(tracker) == 0
    listener.close()


def test_the_engine_tracks_activities_and_the_heap_trimmer_runs_once_per_process() -> None:
    assert live_engine.ACTIVITIES._listeners          # installed with the engine
    engine = live_engine.LiveEngine(workers=1)
    try:
        if live_engine._malloc_trim() is None:        # not glibc: nothing to trim
            assert not live_engine.start_heap_trimmer(engine)
            return
        assert live_engine.start_heap_trimmer(engine) and live_engine.start_heap_trimmer(engine)
        assert sum(t.name == "insitu-heap-trim" for t in threading.enumerate()) == 1
    finally:
        engine.close()


def test_the_test_ui_frees_a_removed_child_widget_as_qt_does() -> None:
    assert release_removed_widgets_like_qt() and release_removed_widgets_like_qt()  # installed, idempotent
    ui = TestUI.UserInterface()
    column = ui.create_column_widget()
    column.add_spacing(4)
    rows = [ui.create_row_widget() for _ in range(3)]
    for row in rows:
        column.add(row)
    behavior = typing.cast(typing.Any, column._behavior)
    assert len(behavior.widget.children) == len(behavior._BoxWidgetBehavior__widgets) == 4
    column.remove(rows[1])
    kept = [TestUI.extract_widget(r) for r in (rows[0], rows[2])]
    assert behavior.widget.children[1:] == kept      # the removed row is gone, the order of the others kept
    assert [item.widget for item in behavior._BoxWidgetBehavior__widgets][1:] == kept
    assert len(behavior.widget.children) == len(behavior._BoxWidgetBehavior__widgets) == 3
    column.close()


_HEAP_TOP_PROBE = r"""
import os, sys, threading
import numpy as np
from nionswift_plugin.insitu import live_engine

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0

tuned = live_engine.tune_allocator(512 * 512)  # a 512² stream: trim threshold 4 MiB
result = {}

def worker():  # a thread of its own: its buffers come from a per-thread heap, as a processor's do
    before = rss_mib()
    for _ in range(3):  # the first 8 MiB buffer raises glibc's dynamic thresholds, the next ones reuse the heap
        buffer = np.ones(8 << 18)  # 8 MiB of float64, touched
        del buffer
    result["growth_mib"] = rss_mib() - before

thread = threading.Thread(target=worker)
thread.start()
thread.join()
print(bool(tuned), round(result["growth_mib"], 2))
"""


def _heap_top_probe(tuning: str) -> tuple[bool, float]:
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in live_engine.GLIBC_MALLOC_VARIABLES}
    env.update(INSITU_MALLOC_TUNING=tuning, NUMPY_MADVISE_HUGEPAGE="0")
    out = subprocess.run([sys.executable, "-c", _HEAP_TOP_PROBE], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    return out[-2] == "True", float(out[-1])


def test_a_freed_frame_sized_buffer_does_not_stay_resident_at_a_heap_top() -> None:
    """After ``tune_allocator`` a per-thread heap returns a freed 8 MiB buffer at its top at once; with glibc's
    dynamic thresholds (the control, tuning off) the same buffer stays resident (twice its size may), and
    ``malloc_trim`` would not release it (it never trims a per-thread heap's top)."""
    if live_engine._malloc_trim() is None:
        return  # not glibc: nothing to tune
    tuned, growth_mib = _heap_top_probe("1")
    untuned, control_mib = _heap_top_probe("0")
    assert tuned and not untuned
    assert control_mib > 6.0, f"control: glibc's defaults kept {control_mib} MiB (expected ~8): the probe is void"
    assert growth_mib < 2.0, f"a freed 8 MiB buffer left {growth_mib} MiB resident after tune_allocator"


def test_the_trim_threshold_keeps_four_float32_frames_at_a_heap_top() -> None:
    assert live_engine.trim_threshold_bytes(512 * 512) == 4 << 20
    assert live_engine.trim_threshold_bytes(1024 * 1024) == 16 << 20
    assert live_engine.trim_threshold_bytes(64 * 64) == live_engine.TRIM_THRESHOLD_MIN_BYTES
