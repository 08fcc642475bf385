"""Processing > In-situ > Run on sequence (headless Swift): any processor over a sequence data item, the full
results as new data items with provenance, off the UI thread, with progress and cancel; bad input is a message."""
from __future__ import annotations

import time
import typing

import numpy as np
import pytest
from nion.data import Calibration, DataAndMetadata
from nion.swift.model import DataItem

from nionswift_plugin.insitu import run_on_sequence
from nionswift_plugin.insitu.run_on_sequence import RunOnSequenceDialog, SequenceRun


def disc_movie(seed: int, n: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    centre = np.array([size / 2, size / 2], float)
    movie = np.empty((n, size, size), np.float32)
    centres = np.empty((n, 2))
    for i in range(n):
        centre = np.clip(centre + rng.normal(0, 1.5, 2), 14, size - 14)
        centres[i] = centre
        movie[i] = 10 + 100 * (((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) <= 49) + rng.normal(0, 3, (size, size))
    return movie, centres


def add_sequence(document_controller: typing.Any, movie: np.ndarray, title: str = "movie") -> typing.Any:
    xdata = DataAndMetadata.new_data_and_metadata(
        movie, dimensional_calibrations=[Calibration.Calibration(0.0, 0.05, "s"), Calibration.Calibration(0, 0.5, "nm"),
                                         Calibration.Calibration(0, 0.5, "nm")],
        data_descriptor=DataAndMetadata.DataDescriptor(True, 0, 2))
    item = DataItem.new_data_item(xdata)
    item.title = title
    document_controller.document_model.append_data_item(item)
    return item


def wait(document_controller: typing.Any, run: SequenceRun, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not run.finished.is_set() and time.monotonic() < deadline:
        document_controller.periodic()
        time.sleep(0.01)
    document_controller.periodic()
    assert run.finished.is_set(), run.status


def by_suffix(items: list[typing.Any], suffix: str) -> typing.Any:
    found = [i for i in items if i.title.endswith(suffix)]
    assert len(found) == 1, [i.title for i in items]
    return found[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_tracking_over_a_sequence_gives_the_full_results_with_provenance(document_controller, swift_log, seed) -> None:  # type: ignore[no-untyped-def]
    movie, centres = disc_movie(seed, 20)
    source = add_sequence(document_controller, movie)
    run = SequenceRun(document_controller, source, "insitu.threshold_tracking")
    run.start()
    wait(document_controller, run)
    assert run.error is None, run.error
    assert "20 / 20 frames" in run.status and "done" in run.status
    items = run.result_items
    image = by_suffix(items, "Threshold regions (2 = tracked)")
    assert image.xdata.is_sequence and image.xdata.data_shape == (20, 96, 96)
    assert image.xdata.dimensional_calibrations[1].units == "nm"
    assert image.xdata.dimensional_calibrations[0].units == "s"
    assert image.xdata.dimensional_calibrations[0].scale == pytest.approx(0.05)
    markers = by_suffix(items, "marker positions (px)")
    y_px, x_px = markers.xdata.data[0], markers.xdata.data[1]
    error_px = np.hypot(y_px - centres[:, 0], x_px - centres[:, 1])
    assert np.median(error_px) < 0.5 and error_px.max() < 1.5, error_px
    track = by_suffix(items, "Tracked region")
    assert track.xdata.data_shape == (3, 20)
    provenance = track.metadata["insitu"]["provenance"]  # read back from Swift
    assert provenance["processor_id"] == "insitu.threshold_tracking"
    assert str(source.uuid) in provenance["source"] and provenance["frame_range"] == [0, 20]
    assert provenance["timestamps_s"] == [0.0, pytest.approx(0.95)] and provenance["complete"] is True
    assert provenance["suite_version"] and provenance["parameters"]["threshold_mode"] == "otsu"


def test_the_whole_kymograph_is_one_data_item_with_a_column_per_frame(document_controller, swift_log) -> None:  # type: ignore[no-untyped-def]
    movie, _ = disc_movie(3, 12, size=64)
    source = add_sequence(document_controller, movie)
    run = SequenceRun(document_controller, source, "insitu.radial_kymograph", {"window_frames": 4})
    run.start()
    wait(document_controller, run)
    kymo = by_suffix(run.result_items, "Radial profile kymograph")
    assert kymo.xdata.data_shape[1] == 12  # beyond the 4-frame live window
    assert kymo.xdata.dimensional_calibrations[1].units == "s"
    assert kymo.xdata.dimensional_calibrations[0].units == "1/nm"


def test_cancel_keeps_the_frames_done_as_incomplete_results(document_controller, swift_log) -> None:  # type: ignore[no-untyped-def]
    movie = np.random.default_rng(4).random((600, 64, 64), dtype=np.float32)
    source = add_sequence(document_controller, movie)
    run = SequenceRun(document_controller, source, "insitu.noise_reduction")
    cancelled = []

    def on_change() -> None:
        if run.done >= 5 and not cancelled:
            cancelled.append(run.done)
            run.cancel()

    run.on_change = on_change
    run.start()
    wait(document_controller, run)
    (item,) = run.result_items
    assert item.title.endswith("(incomplete)") and "cancelled" in run.status
    n = item.xdata.data_shape[0]
    assert cancelled and cancelled[0] <= n < 600
    assert item.metadata["insitu"]["provenance"]["complete"] is False
    assert item.metadata["insitu"]["provenance"]["frame_range"] == [0, n]


def test_the_ui_thread_is_not_blocked_while_the_run_works(document_controller, swift_log) -> None:  # type: ignore[no-untyped-def]
    movie = np.random.default_rng(5).random((200, 128, 128), dtype=np.float32)
    run = SequenceRun(document_controller, add_sequence(document_controller, movie), "insitu.max_fft")
    run.start()  # returns at once: the run is on its own thread
    assert run._thread is not None and run._thread.is_alive() or run.finished.is_set()
    wait(document_controller, run)
    assert run.result_items and run.error is None


@pytest.mark.parametrize("make, words", [
    (lambda: DataItem.new_data_item(DataAndMetadata.new_data_and_metadata(np.zeros((16, 16), np.float32))),
     ["not a sequence of 2-D images", "(16, 16)"]),
    (lambda: DataItem.new_data_item(DataAndMetadata.new_data_and_metadata(np.zeros((8, 8, 32), np.float32))),
     ["3-D data", "not a sequence"]),
    (lambda: None, ["no data item"]),
])
def test_bad_input_is_a_message_not_an_exception(document_controller, swift_log, make, words) -> None:  # type: ignore[no-untyped-def]
    item = make()
    if item is not None:
        document_controller.document_model.append_data_item(item)
    run = SequenceRun(document_controller, item, "insitu.copy")
    run.start()
    assert run.finished.is_set() and run.result_items == []
    for word in words:
        assert word in (run.error or ""), run.error


def test_nan_frames_are_skipped_and_said(document_controller, swift_log) -> None:  # type: ignore[no-untyped-def]
    movie, _ = disc_movie(6, 8, size=64)
    movie[3, 5, 5] = np.nan
    run = SequenceRun(document_controller, add_sequence(document_controller, movie), "insitu.copy")
    run.start()
    wait(document_controller, run)
    (item,) = run.result_items
    assert item.xdata.data_shape[0] == 7 and "1 skipped" in run.status and "NaN" in run.status
    assert item.metadata["insitu"]["failed_frames"][0][0] == 3


def test_menu_item_and_dialog_run_any_processor(document_controller, swift_log) -> None:  # type: ignore[no-untyped-def]
    from nionswift_plugin.insitu import panels
    panels.install_menu(document_controller)
    run_on_sequence.install_menu(document_controller)
    titles = [a.title for a in document_controller._insitu_menu.items if hasattr(a, "title")]
    assert run_on_sequence.MENU_TITLE in titles
    movie, _ = disc_movie(7, 6, size=64)
    source = add_sequence(document_controller, movie)
    document_controller.select_display_items_in_data_panel(
        [document_controller.document_model.get_display_item_for_data_item(source)])
    handler = run_on_sequence.open_dialog(document_controller)
    assert isinstance(handler, RunOnSequenceDialog) and handler.data_item is source
    handler.processor_index = handler.processor_titles.index("Live Difference")
    handler.run_clicked()
    assert handler.run is not None
    wait(document_controller, handler.run)
    assert handler.progress == 1000 and "done" in handler.status
    assert [i.title for i in handler.run.result_items] == ["movie · Live Difference: image"]


def test_dialog_parameters_are_used_and_bad_ones_are_a_message(document_controller, swift_log) -> None:  # type: ignore[no-untyped-def]
    movie, _ = disc_movie(8, 6, size=64)
    source = add_sequence(document_controller, movie)
    handler = RunOnSequenceDialog(document_controller, source)
    handler.processor_index = handler.processor_titles.index("Radial Profile Kymograph")
    handler.parameters_text = "window_frames"
    handler.run_clicked()
    assert handler.run is None and "NAME=VALUE" in handler.status
    handler.parameters_text = "window_frames=1"
    handler.run_clicked()
    assert handler.run is not None and handler.run.finished.is_set() and "outside its range" in handler.status
    handler.parameters_text = "statistic=max, window_frames=3"
    handler.run_clicked()
    wait(document_controller, handler.run)
    (item,) = handler.run.result_items
    assert item.metadata["insitu"]["provenance"]["parameters"]["statistic"] == "max"
    assert item.xdata.data_shape[1] == 6
