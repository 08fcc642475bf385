"""The In-situ Player in headless Swift: a camera listed with the others (with and without the simulator), frames
paced by the file with its calibrations and timestamps, processors attached as to any camera, replay == offline."""
from __future__ import annotations

import pathlib
import tempfile
import time
import typing

import numpy as np
import pytest
from nion.instrumentation import HardwareSource
from nion.swift import Facade
from nion.swift.test import TestContext
from nion.utils import Registry

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu.headless import HeadlessSwift
from nionswift_plugin.insitu.live_engine import ENGINE
from nionswift_plugin.insitu.player import device
from processing.base import Calibration
from processing.io.recording import Recorder

PLAYER = device.PLAYER_ID


def _movie(n: int = 16, shape: tuple[int, int] = (48, 64), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.random(shape).astype(np.float32)
    return np.stack([np.roll(base, i, axis=1) + 0.1 * rng.random(shape, dtype=np.float32) for i in range(n)])


def _record(path: pathlib.Path, frames: np.ndarray, times_s: np.ndarray) -> pathlib.Path:
    with Recorder(path, calibrations=(Calibration(0.0, 0.2, "nm"), Calibration(0.0, 0.2, "nm")),
                  intensity_units="counts", metadata={"holder": {"temperature_C": 300.0}}) as recorder:
        for frame, t in zip(frames, times_s):
            recorder.add(frame, t)
    return path


def _collect(source: typing.Any) -> tuple[list[typing.Any], typing.Any]:
    got: list[typing.Any] = []
    listener = source.xdatas_available_event.listen(lambda promises: got.append(promises[0].xdata))
    return got, listener


def _pump_until(swift: HeadlessSwift, condition: typing.Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        swift.pump(0.05)


@pytest.fixture
def swift() -> typing.Iterator[HeadlessSwift]:
    from instrument_sim import configuration
    with HeadlessSwift(configuration.SimulatorConfiguration(frame_shape=(128, 128))) as session:
        device.register_player()
        try:
            yield session
        finally:
            device.unregister_player()


def test_player_is_listed_with_the_cameras_and_plays_a_recording(swift: HeadlessSwift, tmp_path: pathlib.Path) -> None:
    cameras = {getattr(c, "hardware_source_id", None) for c in Registry.get_components_by_type("camera_hardware_source")}
    assert {PLAYER, "insitu_camera"} <= cameras
    frames = _movie(12)
    times = 50.0 + np.cumsum(np.random.default_rng(1).uniform(0.02, 0.09, 12))  # irregular, as recorded
    module = device.get_player()
    module.player.load(__import__("processing.io.stacks", fromlist=["open_stack"]).open_stack(
        _record(tmp_path / "rec.hspy", frames, times)))
    source = swift.hardware_source(PLAYER)
    got, _listener = _collect(source)
    swift.play(PLAYER)
    _pump_until(swift, lambda: len(got) >= 12)
    source.stop_playing(sync_timeout=10.0)
    played = [x for x in got if not x.metadata["hardware_source"]["insitu_player"].get("repeat")]
    assert [x.metadata["hardware_source"]["insitu_player"]["frame_index"] for x in played] == list(range(12))
    for x in played:
        index = x.metadata["hardware_source"]["insitu_player"]["frame_index"]
        np.testing.assert_array_equal(x.data, frames[index])
        assert [(c.scale, c.units) for c in x.dimensional_calibrations] == [(0.2, "nm"), (0.2, "nm")]
        assert x.intensity_calibration.units == "counts"
    seconds = np.array([(x.timestamp - played[0].timestamp).total_seconds() for x in played])
    np.testing.assert_allclose(seconds, times[:12] - times[0], atol=1e-5)  # the file's clock, not the playback's


def test_player_without_the_simulator() -> None:
    """On a microscope PC (no simulator mode) the player is still a camera."""
    from nionswift_plugin import nion_instrumentation_ui
    Facade.initialize()
    setup = TestContext.TestSetup()
    with tempfile.TemporaryDirectory() as folder:
        nion_instrumentation_ui.configuration_location = pathlib.Path(folder)
        nion_instrumentation_ui.run()
        import nionswift_plugin.insitu as plugin
        try:
            assert not plugin.simulator_requested()
            plugin.run()  # what Swift calls at start-up: the player is registered without simulator mode
            module = device.get_player()
            assert module is not None
            assert Registry.get_component("stem_controller") is None
            source = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(PLAYER)
            assert source is not None and source.display_name == device.PLAYER_NAME
            frames = _movie(5)
            from processing.io.stacks import stack_from_array
            module.player.load(stack_from_array(frames))
            module.player.playback.set_fps(50)
            with TestContext.create_memory_context() as context:
                document_controller = context.create_document_controller(auto_close=False)
                got, _listener = _collect(source)
                source.start_playing()
                deadline = time.monotonic() + 60
                while len(got) < 5 and time.monotonic() < deadline:
                    document_controller.periodic()
                    time.sleep(0.02)
                source.stop_playing(sync_timeout=10.0)
                document_controller.close()
            assert [int(x.metadata["hardware_source"]["insitu_player"]["frame_index"]) for x in got[:5]] == list(range(5))
        finally:
            plugin.stop()
            assert device.get_player() is None
            nion_instrumentation_ui.stop()
            del setup


def test_two_processors_on_the_player_match_the_offline_run(swift: HeadlessSwift, tmp_path: pathlib.Path) -> None:
    """Replaying a file through processors gives the same outputs as the offline run over that file."""
    from processing.execution.offline import run_offline
    from processing.io.stacks import open_stack
    from processing import warmup
    warmup.warm_up()
    n = 20
    frames = _movie(n, seed=4) * 1000.0
    path = _record(tmp_path / "exp.hspy", frames, np.arange(n) * 0.1)
    module = device.get_player()
    module.player.load(open_stack(path))
    model = swift.document_model
    source = swift.hardware_source(PLAYER)
    module.player.playback.pause()
    live, display_item = swift.play(PLAYER)  # the first frame is delivered, then we wait
    ids = ["insitu.live_difference", "insitu.radial_kymograph"]
    items = [computations.attach(model, pid, display_item) for pid in ids]
    runners = []
    for item in items:
        computation = model.get_data_item_computation(item)
        _pump_until(swift, lambda: (r := ENGINE.find_runner(computation)) is not None and r.is_streaming)
        runners.append(ENGINE.find_runner(computation))
    # pause, let the processors finish, forget what they saw, and replay the file from its first frame
    module.player.playback.pause()
    for runner in runners:
        assert runner.wait_idle(30.0)
    swift.pump(0.3)
    for runner in runners:
        assert runner.wait_idle(30.0)
        runner.reset()
    base = [r.stats.frames_processed for r in runners]
    module.player.playback.set_speed(2.0)  # played at 20 fps; the experiment's clock stays 10 fps
    module.player.playback.seek(0)
    module.player.playback.play()
    _pump_until(swift, lambda: all(r.stats.frames_processed - b >= n for r, b in zip(runners, base)), timeout_s=120)
    swift.pump(1.0)  # the outputs' display refresh
    kymograph_item = items[1]
    time_axis = kymograph_item.xdata.dimensional_calibrations[-1]
    assert time_axis.units == "s" and abs(time_axis.scale - 0.1) < 1e-3  # the recorded 10 fps, not the pace
    source.stop_playing(sync_timeout=10.0)
    offline = run_offline(ids, path, progress=False)
    for pid, runner in zip(ids, runners):
        outputs, error, stats = runner.latest()
        assert error is None and stats["frames_processed"] - base[ids.index(pid)] == n, (pid, error, stats)
        result = offline[pid]
        compared = 0
        for output in outputs:
            if output.name in result.images:
                np.testing.assert_allclose(output.data, result.images[output.name].data[-1], rtol=1e-5, atol=1e-5)
                compared += 1
            elif output.name in result.kymographs:
                print(pid, output.name, np.shape(output.data), result.kymographs[output.name].data.shape)
                np.testing.assert_allclose(np.asarray(output.data)[:, -n:], result.kymographs[output.name].data,
                                           rtol=1e-5, atol=1e-5)
                compared += 1
        assert compared >= 1, (pid, [o.name for o in outputs])


def test_playing_with_nothing_loaded_and_stopping_does_not_break(swift: HeadlessSwift) -> None:
    module = device.get_player()
    module.player.close()
    source = swift.hardware_source(PLAYER)
    got, _listener = _collect(source)
    source.start_playing()
    swift.pump(0.5)
    assert got == []  # nothing to play: no frame
    source.stop_playing(sync_timeout=10.0)
    swift.pump(0.2)
    assert not source.is_playing
    assert all(x.metadata["hardware_source"]["insitu_player"].get("repeat") for x in got)


def test_an_unreadable_frame_is_skipped_and_reported(swift: HeadlessSwift) -> None:
    from processing.io.stacks import StackError, stack_from_array
    frames = _movie(6)

    class Flaky:
        shape, dtype, ndim = frames.shape, frames.dtype, 3

        def __getitem__(self, index: typing.Any) -> typing.Any:
            if index == 3:
                raise StackError("frame 3 of 'flaky.h5' could not be read (truncated chunk)")
            return frames[index]
    module = device.get_player()
    module.player.load(stack_from_array(Flaky()), fps=30.0)
    source = swift.hardware_source(PLAYER)
    got, _listener = _collect(source)
    source.start_playing()
    _pump_until(swift, lambda: not source.is_playing)
    indices = [x.metadata["hardware_source"]["insitu_player"]["frame_index"] for x in got]
    assert indices == [0, 1, 2, 4, 5]
    assert "frame 3 of 'flaky.h5' could not be read" in module.camera_device.last_error


def test_opening_another_file_while_live_switches_the_stream(swift: HeadlessSwift) -> None:
    from processing.io.stacks import stack_from_array
    module = device.get_player()
    module.player.load(stack_from_array(_movie(30, (48, 64))), fps=20.0, loop=True)
    source = swift.hardware_source(PLAYER)
    got, _listener = _collect(source)
    live, _ = swift.play(PLAYER)
    _pump_until(swift, lambda: len(got) >= 3)
    other = _movie(4, (32, 40), seed=9)
    module.player.load(stack_from_array(other), fps=20.0)
    module.player.playback.play()
    _pump_until(swift, lambda: not source.is_playing)
    assert got[-1].data.shape == (32, 40)
    np.testing.assert_array_equal(got[-1].data, other[3])
    swift.pump(0.3)
    assert live.xdata.data_shape == (32, 40)  # the live view follows the new file
