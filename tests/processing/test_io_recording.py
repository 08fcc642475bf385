"""processing.io.recording: frames written as they arrive, read back by open_stack and RosettaSciIO; drops counted;
a full disk or a write error leaves a readable file."""
from __future__ import annotations

import errno
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest

from processing.base import Calibration
from processing.io.recording import Recorder, RecordingError
from processing.io.stacks import open_stack

RNG = np.random.default_rng(11)
CAL = (Calibration(0.0, 0.12, "nm"), Calibration(1.0, 0.12, "nm"))


def _frames(n: int, dtype: type = np.uint16) -> np.ndarray:
    return RNG.integers(0, 60000, size=(n, 24, 32)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_round_trip_frames_timestamps_calibrations(tmp_path: pathlib.Path, dtype: type) -> None:
    frames = _frames(40, dtype)
    times = 1000.0 + np.cumsum(RNG.uniform(0.02, 0.08, 40))
    path = tmp_path / "rec.hspy"
    with Recorder(path, calibrations=CAL, intensity_units="counts", metadata={"stage": {"temperature_C": 612.5}},
                  source="insitu_camera", flush_interval_s=0.01) as recorder:
        for i, (frame, t) in enumerate(zip(frames, times)):
            assert recorder.add(frame, t, frame_number=i)
    status = recorder.status()
    assert (status.frames_written, status.frames_dropped, status.frames_rejected, status.error) == (40, 0, 0, None)
    stack = open_stack(path)
    assert stack.n_frames == 40 and stack.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(stack.data), frames)
    np.testing.assert_allclose(stack.timestamps_s, times - times[0], atol=1e-9)
    assert stack.calibrations == CAL
    assert stack.intensity_units == "counts"
    insitu = stack.metadata["original"]["insitu"]
    assert insitu["complete"] is True and insitu["frames_dropped"] == 0 and insitu["source"] == "insitu_camera"
    assert '"temperature_C": 612.5' in insitu["metadata_json"]
    assert not (tmp_path / "rec.hspy.reserve").exists()


def test_writer_behind_drops_are_counted_never_silent(tmp_path: pathlib.Path) -> None:
    gate = threading.Event()
    frame_bytes = 24 * 32 * 2
    recorder = Recorder(tmp_path / "slow.h5", max_queue_bytes=4 * frame_bytes)
    recorder._write_hook = lambda n: gate.wait(30)  # the disk is stuck until the gate opens
    frames = _frames(20)
    accepted = [recorder.add(f, 0.1 * i, frame_number=i) for i, f in enumerate(frames)]
    gate.set()
    status = recorder.stop()
    assert status.frames_dropped == accepted.count(False) > 0
    assert status.frames_written == accepted.count(True)
    assert status.frames_written + status.frames_dropped == 20
    stack = open_stack(tmp_path / "slow.h5")
    numbers = np.asarray(stack.metadata["original"]["insitu"]["frame_numbers"]) if isinstance(
        stack.metadata["original"]["insitu"]["frame_numbers"], list) else None
    kept = [i for i, ok in enumerate(accepted) if ok]
    np.testing.assert_array_equal(np.asarray(stack.data), frames[kept])
    assert stack.metadata["original"]["insitu"]["frames_dropped"] == status.frames_dropped
    if numbers is not None:
        np.testing.assert_array_equal(numbers, kept)


def test_full_disk_stops_cleanly_and_the_file_is_readable(tmp_path: pathlib.Path) -> None:
    free = {"bytes": 10 ** 12}
    frames = _frames(30)
    recorder = Recorder(tmp_path / "full.hspy", free_bytes=lambda: free["bytes"], reserve_bytes=1024,
                        flush_interval_s=0.01)
    written_before = threading.Event()

    def hook(n: int) -> None:
        if n == 11:
            free["bytes"] = 0  # the disk fills up after 12 frames
            written_before.set()
    recorder._write_hook = hook
    for i, frame in enumerate(frames):
        recorder.add(frame, 0.05 * i)
        if i == 12:
            written_before.wait(30)
    status = recorder.stop()
    assert status.error is not None and "disk is full" in status.error and "12 frames" in status.error
    assert status.frames_written == 12
    assert status.frames_written + status.frames_rejected + status.frames_dropped == 30
    stack = open_stack(tmp_path / "full.hspy")
    np.testing.assert_array_equal(np.asarray(stack.data), frames[:12])
    assert stack.metadata["original"]["insitu"]["complete"] is False
    assert "disk is full" in stack.metadata["original"]["insitu"]["stop_reason"]


def test_write_error_closes_the_file_readable_up_to_the_last_frame(tmp_path: pathlib.Path) -> None:
    recorder = Recorder(tmp_path / "err.hspy")

    def hook(n: int) -> None:
        if n == 7:
            raise OSError(errno.EIO, "input/output error")
    recorder._write_hook = hook
    frames = _frames(10)
    for i, frame in enumerate(frames):
        recorder.add(frame, 0.1 * i)
    status = recorder.stop()
    assert "input/output error" in (status.error or "")
    stack = open_stack(tmp_path / "err.hspy")
    np.testing.assert_array_equal(np.asarray(stack.data), frames[:7])


def test_wrong_shapes_are_rejected_and_counted(tmp_path: pathlib.Path) -> None:
    recorder = Recorder(tmp_path / "shape.hspy")
    frames = _frames(3)
    assert recorder.add(frames[0], 0.0)
    assert not recorder.add(frames[1, :10], 0.1)
    assert not recorder.add(frames[1].astype(np.float32), 0.1)
    assert recorder.add(frames[2], 0.2)
    status = recorder.stop()
    assert (status.frames_written, status.frames_rejected) == (2, 2)
    assert not recorder.add(frames[0], 0.3)  # after stop


def test_bad_paths(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RecordingError, match="does not exist"):
        Recorder(tmp_path / "nope" / "r.hspy")
    (tmp_path / "exists.hspy").write_bytes(b"x")
    with pytest.raises(RecordingError, match="the file exists"):
        Recorder(tmp_path / "exists.hspy")
    with pytest.raises(RecordingError, match="should end in .hspy"):
        Recorder(tmp_path / "r.tif")
    assert Recorder(tmp_path / "never.hspy").stop().frames_written == 0
    assert not (tmp_path / "never.hspy").exists()


def test_hyperspy_loads_a_recording(tmp_path: pathlib.Path) -> None:
    bench_python = pathlib.Path(__file__).resolve().parents[2] / ".venv-bench" / "bin" / "python"
    probe = subprocess.run([str(bench_python), "-c", "import hyperspy"], capture_output=True) \
        if bench_python.exists() else None
    if probe is None or probe.returncode != 0:
        pytest.skip("HyperSpy is only in the bench environment (.venv-bench), which is not built here")
    frames = _frames(6, np.float32)
    with Recorder(tmp_path / "hs.hspy", calibrations=CAL) as recorder:
        for i, frame in enumerate(frames):
            recorder.add(frame, 0.04 * i)
    np.save(tmp_path / "expected.npy", frames)
    code = ("import hyperspy.api as hs, numpy as np, sys; s = hs.load(sys.argv[1]); "
            "assert s.data.shape == (6, 24, 32), s.data.shape; "
            "np.testing.assert_array_equal(s.data, np.load(sys.argv[2])); "
            "ax = s.axes_manager; assert ax.signal_axes[0].units == 'nm' and abs(ax.signal_axes[0].scale - 0.12) < 1e-9; "
            "assert abs(ax.navigation_axes[0].scale - 0.04) < 1e-9; print('ok')")
    result = subprocess.run([str(bench_python), "-c", code, str(tmp_path / "hs.hspy"), str(tmp_path / "expected.npy")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_a_fresh_interpreter_records_and_a_recording_in_progress_is_readable(tmp_path: pathlib.Path) -> None:
    """Regression: h5py first imported on the writer thread deadlocked at exit; the file must be readable up to the
    last flush while the recording goes on."""
    code = f"""
import time, numpy as np
from processing.io.recording import Recorder
from processing.io.stacks import open_stack
r = Recorder({str(tmp_path / 'live.hspy')!r}, flush_interval_s=0.02)
for i in range(5):
    r.add(np.full((16, 16), i, np.float32), 0.1 * i)
deadline = time.monotonic() + 60
while r.status().frames_written < 5 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.2)
print("during", open_stack({str(tmp_path / 'live.hspy')!r}).n_frames)
r.add(np.full((16, 16), 5, np.float32), 0.5)
print("status", r.stop().frames_written)
print("after", open_stack({str(tmp_path / 'live.hspy')!r}).n_frames)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=str(pathlib.Path(__file__).resolve().parents[2]))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "during 5" in result.stdout and "status 6" in result.stdout and "after 6" in result.stdout, result.stdout
