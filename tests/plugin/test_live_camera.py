"""Simulated camera playing in headless Swift -> processors attached -> outputs update at camera rate."""
from __future__ import annotations

import time
import typing

import numpy as np
import pytest
from nion.swift.model import Graphics
from nion.utils import Geometry

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu.headless import HeadlessSwift
from nionswift_plugin.insitu.live_engine import ENGINE

CAMERA_ID = "insitu_camera"


@pytest.fixture
def swift() -> typing.Iterator[HeadlessSwift]:
    from instrument_sim import configuration
    from processing import warmup
    warmup.warm_up()
    with HeadlessSwift(configuration.SimulatorConfiguration(frame_shape=(256, 256))) as session:
        yield session


def _streaming_runner(swift: HeadlessSwift, data_item: typing.Any, timeout_s: float = 10.0) -> typing.Any:
    computation = swift.document_model.get_data_item_computation(data_item)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        swift.pump(0.05)
        runner = ENGINE.find_runner(computation)
        if runner is not None and runner.is_streaming:
            return runner
    raise AssertionError(f"no streaming runner; computation error: {computation.error_text}")


def _drain(swift: HeadlessSwift, items_and_runners: typing.Iterable[tuple[typing.Any, typing.Any]],
           timeout_s: float = 60.0) -> None:
    """Pump Swift until every output shows its runner's newest result (bounded wait, no timing assumption)."""
    pairs = list(items_and_runners)
    deadline = time.monotonic() + timeout_s

    def shown(item: typing.Any, runner: typing.Any) -> bool:
        insitu = item.xdata.metadata.get("insitu", {}) if item.xdata is not None else {}
        return runner.wait_idle(0.0) and insitu.get("frames_processed") == runner.stats.frames_processed

    swift.pump(0.1)
    while not all(shown(item, runner) for item, runner in pairs) and time.monotonic() < deadline:
        swift.pump(0.05)


def test_three_processors_on_the_playing_camera_see_every_frame_and_update(swift: HeadlessSwift) -> None:
    camera = swift.hardware_source(CAMERA_ID)
    live, display_item = swift.play(CAMERA_ID, exposure_ms=20)
    roi = Graphics.RectangleGraphic()
    roi.bounds = Geometry.FloatRect.from_tlhw(0.25, 0.25, 0.5, 0.5)
    display_item.add_graphic(roi)
    model = swift.document_model
    copy_item = computations.attach(model, "insitu.copy", display_item, roi=roi)
    noise_item = computations.attach(model, "insitu.noise_reduction", display_item)
    difference_item = computations.attach(model, "insitu.live_difference", display_item)
    runners = [_streaming_runner(swift, item) for item in (copy_item, noise_item, difference_item)]
    difference = runners[2]
    stream = difference.stream
    swift.pump(0.3)
    seen0 = stream.frames_seen
    received0 = difference.stats.frames_received
    swift.pump(2.0)
    camera.stop_playing(sync_timeout=5.0)
    _drain(swift, zip((copy_item, noise_item, difference_item), runners))
    delivered = stream.frames_seen - seen0
    assert delivered >= 20, f"camera delivered only {delivered} frames in 2 s"
    assert difference.stats.frames_received - received0 == delivered  # the camera's frames all reached it...
    # ...and every frame it received since it was attached has been integrated by the EWMA, none dropped
    assert difference.processor.frames_integrated == difference.stats.frames_received, difference.stats.as_dict()
    assert difference.stats.frames_dropped == 0
    for item in (copy_item, noise_item, difference_item):
        assert item.xdata is not None and not model.get_data_item_computation(item).error_text
        assert item.xdata.metadata["insitu"]["frames_processed"] >= delivered
    assert copy_item.xdata.data_shape == (128, 128)
    assert noise_item.xdata.data_shape == (256, 256)
    np.testing.assert_array_equal(copy_item.xdata.data, live.xdata.data[64:192, 64:192])


def test_moving_the_roi_takes_effect_on_the_next_frames(swift: HeadlessSwift) -> None:
    camera = swift.hardware_source(CAMERA_ID)
    live, display_item = swift.play(CAMERA_ID)
    roi = Graphics.RectangleGraphic()
    roi.bounds = Geometry.FloatRect.from_tlhw(0.0, 0.0, 0.5, 0.5)
    display_item.add_graphic(roi)
    out = computations.attach(swift.document_model, "insitu.copy", display_item, roi=roi)
    runner = _streaming_runner(swift, out)
    swift.pump(0.5)
    assert out.xdata.data_shape == (128, 128)
    roi.bounds = Geometry.FloatRect.from_tlhw(0.5, 0.25, 0.25, 0.5)
    processed = runner.stats.frames_processed
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (out.xdata.data_shape != (64, 128)
                                           or runner.stats.frames_processed < processed + 2):
        swift.pump(0.05)
    camera.stop_playing(sync_timeout=5.0)
    assert out.xdata.data_shape == (64, 128)
    calibration = live.xdata.dimensional_calibrations[1]
    assert abs(out.xdata.dimensional_calibrations[1].offset - (calibration.offset + 64 * calibration.scale)) < 1e-6


def test_a_stopped_camera_leaves_the_last_result_and_no_error(swift: HeadlessSwift) -> None:
    camera = swift.hardware_source(CAMERA_ID)
    live, display_item = swift.play(CAMERA_ID)
    out = computations.attach(swift.document_model, "insitu.noise_reduction", display_item)
    runner = _streaming_runner(swift, out)
    swift.pump(0.5)
    camera.stop_playing(sync_timeout=5.0)
    swift.pump(0.5)
    processed = runner.stats.frames_processed
    swift.pump(0.5)
    assert runner.stats.frames_processed == processed  # nothing new arrives, nothing breaks
    assert out.xdata is not None and not swift.document_model.get_data_item_computation(out).error_text


def test_deleting_the_source_or_the_output_stops_the_processor_cleanly(swift: HeadlessSwift) -> None:
    camera = swift.hardware_source(CAMERA_ID)
    live, display_item = swift.play(CAMERA_ID)
    out = computations.attach(swift.document_model, "insitu.live_difference", display_item)
    runner = _streaming_runner(swift, out)
    swift.pump(0.3)
    swift.document_model.remove_data_item(out)
    swift.pump(0.3)
    ENGINE.prune()
    assert runner not in ENGINE.runners and not runner.is_streaming
    received = runner.stats.frames_received
    swift.pump(0.3)
    assert runner.stats.frames_received == received  # no longer fed
    camera.stop_playing(sync_timeout=5.0)


def test_live_results_carry_their_provenance(swift: HeadlessSwift) -> None:
    """Processor id, parameter values, suite version, source (data item uuid), frame range and timestamps,
    frames processed/dropped: read back from the output data item's metadata in Swift."""
    from processing.execution import provenance
    camera = swift.hardware_source(CAMERA_ID)
    live, display_item = swift.play(CAMERA_ID, exposure_ms=20)
    out = computations.attach(swift.document_model, "insitu.live_difference", display_item,
                              parameters={"fast": 3.0, "slow": 30.0})
    runner = _streaming_runner(swift, out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (runner.stats.frames_processed < 5 or out.xdata is None):
        swift.pump(0.05)
    camera.stop_playing(sync_timeout=5.0)
    _drain(swift, [(out, runner)])
    record = out.xdata.metadata["insitu"][provenance.PROVENANCE_KEY]
    stats = runner.stats
    assert record["processor_id"] == "insitu.live_difference"
    assert record["parameters"]["fast"] == 3.0 and record["parameters"]["slow"] == 30.0
    assert record["suite_version"] == provenance.suite_version() != ""
    assert record["source"] == f"data item {live.uuid}"
    first, stop = record["frame_range"]
    assert first == stats.first_frame_number and first < stop <= stats.last_frame_number + 1
    t0, t1 = record["timestamps_s"]
    assert t0 == pytest.approx(stats.first_timestamp_s) and t0 <= t1 <= stats.last_timestamp_s
    assert 5 <= record["frames_processed"] <= stats.frames_processed
    assert record["frames_dropped"] == 0 and record["complete"] is True


def test_moving_the_roi_off_the_image_while_playing_gives_a_message_and_recovers(swift: HeadlessSwift) -> None:
    """Issue 14 3(b): no InputError from the marker commit, no old result committed with the bad ROI."""
    live, display_item = swift.play(CAMERA_ID, exposure_ms=20)
    roi = Graphics.RectangleGraphic()
    roi.bounds = Geometry.FloatRect.from_tlhw(0.25, 0.25, 0.5, 0.5)
    display_item.add_graphic(roi)
    out = computations.attach(swift.document_model, "insitu.threshold_tracking", display_item, roi=roi)
    computation = swift.document_model.get_data_item_computation(out)
    runner = _streaming_runner(swift, out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (out.xdata is None or runner.stats.frames_processed < 3):
        swift.pump(0.05)
    assert out.xdata is not None and not computation.error_text
    roi.bounds = Geometry.FloatRect.from_tlhw(1.2, 1.2, 0.3, 0.3)  # covers no pixel
    while time.monotonic() < deadline and "covers no pixel" not in (computation.error_text or ""):
        swift.pump(0.05)
    assert "covers no pixel" in (computation.error_text or "")
    assert out.xdata.data_shape == (128, 128)  # the last good result stays, nothing written with the bad ROI
    roi.bounds = Geometry.FloatRect.from_tlhw(0.5, 0.5, 0.25, 0.5)
    while time.monotonic() < deadline and (computation.error_text or out.xdata.data_shape != (64, 128)):
        swift.pump(0.05)
    swift.hardware_source(CAMERA_ID).stop_playing(sync_timeout=5.0)
    assert not computation.error_text and out.xdata.data_shape == (64, 128)
