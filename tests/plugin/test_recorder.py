"""Recorder round trip in headless Swift: record the simulated camera while processors run on it, replay the file
through the In-situ Player with the same processors: same outputs as the live run. Scripting call, bad input."""
from __future__ import annotations

import pathlib
import time
import typing

import numpy as np
import pytest

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu.headless import HeadlessSwift
from nionswift_plugin.insitu.live_engine import ENGINE
from nionswift_plugin.insitu.player import device, recorder
from processing.io.recording import RecordingError
from processing.io.stacks import open_stack

IDS = ["insitu.live_difference", "insitu.radial_kymograph"]


@pytest.fixture
def swift() -> typing.Iterator[HeadlessSwift]:
    from instrument_sim import configuration
    from processing import warmup
    warmup.warm_up()
    with HeadlessSwift(configuration.SimulatorConfiguration(frame_shape=(96, 96))) as session:
        device.register_player()
        try:
            yield session
        finally:
            device.unregister_player()


def _pump_until(swift: HeadlessSwift, condition: typing.Callable[[], bool], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        swift.pump(0.05)


def _attach(swift: HeadlessSwift, display_item: typing.Any) -> list[typing.Any]:
    runners = []
    for pid in IDS:
        item = computations.attach(swift.document_model, pid, display_item)
        computation = swift.document_model.get_data_item_computation(item)
        _pump_until(swift, lambda: (r := ENGINE.find_runner(computation)) is not None and r.is_streaming)
        runners.append(ENGINE.find_runner(computation))
    return runners


def _settle(swift: HeadlessSwift, runners: list[typing.Any]) -> None:
    for runner in runners:
        assert runner.wait_idle(30.0)
    swift.pump(0.2)


def test_record_the_simulated_camera_and_replay_gives_the_live_outputs(swift: HeadlessSwift,
                                                                      tmp_path: pathlib.Path) -> None:
    camera = swift.hardware_source("insitu_camera")
    live, display_item = swift.play("insitu_camera", exposure_ms=100)
    runners = _attach(swift, display_item)
    camera.stop_playing(sync_timeout=10.0)
    _settle(swift, runners)
    for runner in runners:
        runner.reset()
    base = [(r.stats.frames_processed, r.stats.frames_dropped) for r in runners]
    path = tmp_path / "camera.hspy"
    stamps: list[float] = []  # what the camera delivered (ground truth for the recorded times)
    stamp_listener = camera.xdatas_available_event.listen(
        lambda promises: stamps.append(promises[0].xdata.timestamp.timestamp()))
    rec = recorder.start_recording("insitu_camera", path)
    camera.start_playing()
    _pump_until(swift, lambda: all(r.stats.frames_processed - b[0] >= 12 for r, b in zip(runners, base)))
    camera.stop_playing(sync_timeout=10.0)
    _settle(swift, runners)
    status = rec.stop()
    stamp_listener.close()
    live_outputs = {pid: {o.name: np.array(o.data) for o in r.latest()[0]} for pid, r in zip(IDS, runners)}
    processed = [r.stats.frames_processed - b[0] for r, b in zip(runners, base)]
    assert [r.stats.frames_dropped - b[1] for r, b in zip(runners, base)] == [0, 0]
    assert status.error is None and status.frames_dropped == 0 and status.frames_rejected == 0
    assert status.frames_written == processed[0] == processed[1], (status, processed)
    stack = open_stack(path)
    assert stack.n_frames == status.frames_written
    assert stack.calibrations[0].units == "nm" and stack.intensity_units == "counts"
    assert len(stamps) == stack.n_frames
    np.testing.assert_allclose(stack.timestamps_s, np.array(stamps) - stamps[0], atol=1e-5)
    assert np.all(np.diff(stack.timestamps_s) > 0)

    # replay through the player, with the same processors attached to it
    module = device.get_player()
    module.player.load(stack, speed=0.5)
    module.player.playback.pause()
    player = swift.hardware_source(device.PLAYER_ID)
    _, player_display = swift.play(device.PLAYER_ID)
    replay = _attach(swift, player_display)
    # a stopped camera has no frame in flight: reset the processors then, and replay from frame 0
    player.stop_playing(sync_timeout=10.0)
    _settle(swift, replay)
    for runner in replay:
        runner.reset()
    base = [r.stats.frames_processed for r in replay]
    module.player.playback.pause()
    module.player.playback.seek(0)
    module.player.playback.play()
    player.start_playing()
    n = stack.n_frames
    _pump_until(swift, lambda: all(r.stats.frames_processed - b >= n for r, b in zip(replay, base)))
    _settle(swift, replay)
    # read the results before stopping: stopping hands out the file's next frame (so a stopped player never
    # repeats one), which a processor may or may not have seen by the time the results were read
    results = [runner.latest() for runner in replay]
    player.stop_playing(sync_timeout=10.0)
    for pid, (outputs, error, stats), b in zip(IDS, results, base):
        assert error is None and stats["frames_processed"] - b == n, (pid, error, stats)
        compared = 0
        for output in outputs:
            expected = live_outputs[pid].get(output.name)
            if expected is not None and np.shape(expected) == np.shape(output.data):
                np.testing.assert_allclose(np.asarray(output.data), expected, rtol=1e-5, atol=1e-4)
                compared += 1
        assert compared >= 1, (pid, [o.name for o in outputs])


def test_recording_the_player_skips_nothing_and_bad_paths_are_refused(swift: HeadlessSwift,
                                                                      tmp_path: pathlib.Path) -> None:
    with pytest.raises(RecordingError, match="no camera 'nope'"):
        recorder.start_recording("nope", tmp_path / "x.hspy")
    with pytest.raises(RecordingError, match="does not exist"):
        recorder.start_recording("insitu_camera", tmp_path / "missing" / "x.hspy")
    frames = np.random.default_rng(2).random((8, 32, 40)).astype(np.float32)
    np.save(tmp_path / "m.npy", frames)
    module = device.get_player()
    module.player.load(open_stack(tmp_path / "m.npy"), fps=40.0)
    rec = recorder.start_recording(device.PLAYER_ID, tmp_path / "copy.h5")
    assert recorder.active_recordings() == [rec]
    swift.play(device.PLAYER_ID)
    _pump_until(swift, lambda: not swift.hardware_source(device.PLAYER_ID).is_playing)  # a single pass ends
    status = rec.stop()
    assert recorder.active_recordings() == []
    assert status.frames_written == 8 and status.frames_dropped == 0
    np.testing.assert_array_equal(np.asarray(open_stack(tmp_path / "copy.h5").data), frames)
