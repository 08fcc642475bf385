"""The Player panel in headless Swift: open (good and bad files), metadata, transport, drift plot, recorder."""
from __future__ import annotations

import pathlib
import time
import typing

import numpy as np
import pytest
import scipy.ndimage

from nionswift_plugin.insitu.headless import HeadlessSwift
from nionswift_plugin.insitu.player import device
from nionswift_plugin.insitu.player.panel import PANEL_ID, PlayerPanel
from processing.base import Calibration
from processing.io.recording import Recorder
from processing.io.stacks import open_stack


@pytest.fixture
def swift() -> typing.Iterator[HeadlessSwift]:
    from instrument_sim import configuration
    with HeadlessSwift(configuration.SimulatorConfiguration(frame_shape=(96, 96))) as session:
        device.register_player()
        try:
            yield session
        finally:
            device.unregister_player()


@pytest.fixture
def panel(swift: HeadlessSwift) -> typing.Iterator[PlayerPanel]:
    p = PlayerPanel(swift.document_controller, PANEL_ID, {})
    try:
        yield p
    finally:
        p.close()


def _drifting(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = scipy.ndimage.gaussian_filter(rng.normal(size=(96, 96)), 2.0, mode="wrap") * 100 + 500
    path = np.cumsum(rng.normal(0.0, 0.7, size=(n, 2)), axis=0)
    path -= path[0]
    frames = np.stack([scipy.ndimage.shift(base, p, order=3, mode="grid-wrap") for p in path]).astype(np.float32)
    return frames, path


def _recording(tmp_path: pathlib.Path, frames: np.ndarray, name: str = "run.hspy") -> pathlib.Path:
    with Recorder(tmp_path / name, calibrations=(Calibration(0, 0.3, "nm"), Calibration(0, 0.3, "nm")),
                  metadata={"holder": {"temperature_C": 450.0}}) as rec:
        for i, frame in enumerate(frames):
            rec.add(frame, 10.0 + 0.05 * i)
    return tmp_path / name


def _wait(swift: HeadlessSwift, condition: typing.Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        swift.pump(0.05)


@pytest.mark.parametrize("name,content,match", [
    ("missing.hspy", None, "does not exist"),
    ("cut.npy", "truncate", "truncated or corrupt"),
    ("x.docx", b"PK", "not supported"),
    ("4d.npy", "4d", "not an image sequence"),
])
def test_bad_files_show_a_message_and_nothing_breaks(panel: PlayerPanel, tmp_path: pathlib.Path, name: str,
                                                    content: typing.Any, match: str) -> None:
    path = tmp_path / name
    if content == "truncate":
        np.save(path, np.zeros((4, 8, 8), np.float32))
        path.write_bytes(path.read_bytes()[:-50])
    elif content == "4d":
        np.save(path, np.zeros((2, 2, 8, 8), np.float32))
    elif content is not None:
        path.write_bytes(content)
    assert not panel.open_path(path)
    assert match in panel.message.text and name in panel.message.text
    panel.toggle_play()  # nothing loaded: a message, no exception
    assert "open a file" in panel.message.text


def test_folder_with_gap_and_mixed_shapes(panel: PlayerPanel, tmp_path: pathlib.Path) -> None:
    import tifffile
    for i in (1, 2, 4):
        tifffile.imwrite(tmp_path / f"img_{i:03d}.tif", np.full((16, 16), i, np.uint16))
    assert panel.open_path(tmp_path)
    assert "gaps in the numbering" in panel.info.text and "[3]" in panel.info.text
    tifffile.imwrite(tmp_path / "img_005.tif", np.zeros((8, 16), np.uint16))
    assert not panel.open_path(tmp_path)
    assert "mixed frame shapes" in panel.message.text


def test_open_play_step_scrub_range_and_metadata(swift: HeadlessSwift, panel: PlayerPanel,
                                                 tmp_path: pathlib.Path) -> None:
    frames, _ = _drifting(20)
    assert panel.open_path(_recording(tmp_path, frames))
    for text in ("frames: 20 of 96 x 96 px", "0.3 nm/px", "duration: 0.950 s", "temperature_C: 450.0"):
        assert text in panel.info.text, panel.info.text
    assert panel.pace_box.checked  # the file has timestamps
    source = swift.hardware_source(device.PLAYER_ID)
    got: list[int] = []
    listener = source.xdatas_available_event.listen(
        lambda promises: got.append(promises[0].xdata.metadata["hardware_source"]["insitu_player"]["frame_index"]))
    panel.set_speed(4.0)
    panel.toggle_play()
    _wait(swift, lambda: not source.is_playing and len(got) >= 20)  # one pass, then the camera stops itself
    assert got == list(range(20))
    panel.refresh()
    assert "frame 19 / 19" in panel.position.text and "(end)" in panel.position.text
    got.clear()
    panel.step(-1)  # the camera goes live, paused, and shows frame 18
    _wait(swift, lambda: got == [18])
    panel.seek(5)
    _wait(swift, lambda: got[-1:] == [5])
    panel.set_range("3", "x")
    assert "'x' is not a number" in panel.message.text
    panel.set_range("8", "11")
    panel.loop_box.checked = True
    panel.loop_box.on_checked_changed(True)
    got.clear()
    panel.toggle_play()
    _wait(swift, lambda: len(got) >= 9)
    panel.toggle_play()  # pause
    assert set(got) <= {8, 9, 10, 11} and got[:5] == [8, 9, 10, 11, 8]
    source.stop_playing(sync_timeout=10.0)
    listener.close()


def test_drift_corrected_playback_puts_shifts_in_metadata_and_the_plot(swift: HeadlessSwift, panel: PlayerPanel,
                                                                       tmp_path: pathlib.Path) -> None:
    frames, path = _drifting(15, seed=3)
    assert panel.open_path(_recording(tmp_path, frames))
    panel.drift_box.checked = True
    panel.set_drift_correction(True)
    source = swift.hardware_source(device.PLAYER_ID)
    got: list[typing.Any] = []
    listener = source.xdatas_available_event.listen(lambda promises: got.append(promises[0].xdata))
    panel.toggle_play()
    _wait(swift, lambda: not source.is_playing and len(got) >= 15)
    listener.close()
    shifts = np.array([x.metadata["hardware_source"]["insitu_player"]["drift_shift_px"] for x in got[:15]])
    np.testing.assert_allclose(shifts, path, atol=0.3)
    inner = (slice(12, -12), slice(12, -12))
    assert np.corrcoef(got[14].data[inner].ravel(), frames[0][inner].ravel())[0, 1] > 0.95
    panel.refresh()
    assert len(panel.shift_plot.shifts) == 15


def test_recorder_start_stop_in_the_panel(swift: HeadlessSwift, panel: PlayerPanel, tmp_path: pathlib.Path) -> None:
    assert "insitu_camera" in panel.camera_ids() and device.PLAYER_ID in panel.camera_ids()
    panel.camera_combo.current_item = "insitu_camera"
    panel.record_path.text = str(tmp_path / "nope" / "r.hspy")
    panel.toggle_recording()
    assert "does not exist" in panel.message.text and panel.recording is None
    panel.record_path.text = str(tmp_path / "cam.hspy")
    camera = swift.hardware_source("insitu_camera")
    swift.play("insitu_camera", exposure_ms=30)
    panel.toggle_recording()
    assert panel.record_button.text == "Stop Recording"
    _wait(swift, lambda: panel.recording.status().frames_written >= 5)
    panel.toggle_recording()
    camera.stop_playing(sync_timeout=10.0)
    assert "frames written" in panel.record_status.text
    stack = open_stack(tmp_path / "cam.hspy")
    assert stack.n_frames >= 5 and stack.frame_shape == (96, 96)
    assert panel.open_path(tmp_path / "cam.hspy")  # and the player opens what the recorder wrote


def test_a_swift_sequence_data_item_plays_with_its_calibrations(swift: HeadlessSwift, panel: PlayerPanel) -> None:
    from nion.data import Calibration as NionCalibration
    from nion.data import DataAndMetadata
    from nion.swift.model import DataItem
    frames, _ = _drifting(6)
    xdata = DataAndMetadata.new_data_and_metadata(
        frames, dimensional_calibrations=[NionCalibration.Calibration(0, 0.2, "s"),
                                          NionCalibration.Calibration(0, 0.4, "nm"),
                                          NionCalibration.Calibration(0, 0.4, "nm")],
        data_descriptor=DataAndMetadata.DataDescriptor(True, 0, 2))
    data_item = DataItem.new_data_item(xdata)
    swift.document_model.append_data_item(data_item)
    panel.document_controller.selected_display_panel = None
    swift.document_controller.select_display_items_in_data_panel(
        [swift.document_model.get_display_item_for_data_item(data_item)])
    assert panel.use_selected_data_item(), panel.message.text
    stack = device.get_player().player.stack
    assert stack.n_frames == 6 and stack.calibrations[0].scale == pytest.approx(0.4)
    np.testing.assert_allclose(stack.timestamps_s, 0.2 * np.arange(6))
    source = swift.hardware_source(device.PLAYER_ID)
    got: list[typing.Any] = []
    listener = source.xdatas_available_event.listen(lambda promises: got.append(promises[0].xdata))
    panel.set_speed(10.0)
    panel.toggle_play()
    _wait(swift, lambda: not source.is_playing and len(got) >= 6)
    listener.close()
    np.testing.assert_array_equal(got[5].data, frames[5])
    assert got[0].dimensional_calibrations[1].units == "nm"


def test_not_an_image_sequence_data_item_and_a_full_disk_while_recording(swift: HeadlessSwift, panel: PlayerPanel,
                                                                        tmp_path: pathlib.Path) -> None:
    from nion.swift.model import DataItem
    from nionswift_plugin.insitu.player import recorder
    line = DataItem.new_data_item(__import__("nion.data.DataAndMetadata", fromlist=["x"]).new_data_and_metadata(
        np.zeros(16, np.float32)))
    swift.document_model.append_data_item(line)
    panel.document_controller.selected_display_panel = None
    swift.document_controller.select_display_items_in_data_panel(
        [swift.document_model.get_display_item_for_data_item(line)])
    assert not panel.use_selected_data_item()
    assert "not a sequence of 2-D images" in panel.message.text
    camera = swift.hardware_source("insitu_camera")
    swift.play("insitu_camera", exposure_ms=30)
    free = {"bytes": 10 ** 12}
    panel.recording = recorder.start_recording("insitu_camera", tmp_path / "full.hspy", reserve_bytes=1024,
                                               free_bytes=lambda: free["bytes"])
    _wait(swift, lambda: panel.recording.status().frames_written >= 3)
    free["bytes"] = 0  # the disk fills up
    _wait(swift, lambda: (panel.refresh(), panel.recording is None)[1])
    camera.stop_playing(sync_timeout=10.0)
    assert "recording stopped" in panel.message.text and "disk is full" in panel.message.text
    stack = open_stack(tmp_path / "full.hspy")  # closed and readable up to its last frame
    assert stack.n_frames >= 3 and stack.metadata["original"]["insitu"]["complete"] is False
