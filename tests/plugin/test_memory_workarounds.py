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
