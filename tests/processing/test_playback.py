"""processing.execution.playback: pacing by timestamps / fps, speed, loop, range, step, seek; drift correction."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.ndimage

from processing.base import ParameterError
from processing.execution.playback import DriftCorrector, ManualClock, Playback


def _play(p: Playback, clock: ManualClock, n: int) -> list[tuple[int, float]]:
    out = []
    for _ in range(n):
        frame = p.next_frame(timeout_s=100.0)
        assert frame is not None
        out.append((frame.index, clock()))
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("speed", [0.1, 0.5, 1.0, 3.0, 10.0])
def test_frames_are_due_at_recorded_time_over_speed(seed: int, speed: float) -> None:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(0.01, 0.2, 30))
    clock = ManualClock(100.0)
    p = Playback(30, timestamps_s=times, speed=speed, clock=clock, wait=clock.wait)
    p.play()
    played = _play(p, clock, 30)
    assert [i for i, _ in played] == list(range(30))
    wall = np.array([t for _, t in played]) - 100.0
    np.testing.assert_allclose(wall, (times - times[0]) / speed, atol=1e-9)
    assert p.next_frame(timeout_s=1.0) is None and p.state().ended


def test_fps_pacing_without_timestamps_and_chosen_fps_with_them() -> None:
    clock = ManualClock()
    p = Playback(5, fps=4.0, clock=clock, wait=clock.wait)
    p.play()
    assert [t for _, t in _play(p, clock, 5)] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    clock = ManualClock()
    p = Playback(3, timestamps_s=[0, 5, 6], fps=10.0, pace_by_timestamps=False, clock=clock, wait=clock.wait)
    p.play()
    assert [t for _, t in _play(p, clock, 3)] == pytest.approx([0, 0.1, 0.2])
    assert p.state().file_time_s == 6.0  # the file's time is still reported


def test_loop_wraps_and_stream_time_keeps_increasing() -> None:
    clock = ManualClock()
    p = Playback(4, timestamps_s=[0, 0.1, 0.2, 0.3], loop=True, clock=clock, wait=clock.wait)
    p.play()
    frames = [p.next_frame(timeout_s=10) for _ in range(10)]
    assert [f.index for f in frames if f] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    stream = np.array([f.stream_time_s for f in frames if f])
    assert np.all(np.diff(stream) > 0)
    np.testing.assert_allclose(np.diff(stream), 0.1, atol=1e-9)
    assert frames[5] is not None and frames[5].loop == 1 and frames[5].file_time_s == pytest.approx(0.1)


def test_frame_range_step_seek_and_pause() -> None:
    clock = ManualClock()
    p = Playback(10, fps=10, frame_range=(3, 6), clock=clock, wait=clock.wait)
    p.play()
    assert [i for i, _ in _play(p, clock, 4)] == [3, 4, 5, 6]
    assert p.next_frame(timeout_s=1) is None
    p.step(-1)
    assert p.next_frame(timeout_s=1).index == 5
    p.step(-1)
    assert p.next_frame(timeout_s=1).index == 4
    p.step(+1)
    assert p.next_frame(timeout_s=1).index == 5
    assert not p.state().playing
    assert p.next_frame(timeout_s=1) is None  # paused: nothing more
    p.seek(9)  # outside the range: clamped to its end
    assert p.next_frame(timeout_s=1).index == 6
    p.seek(4)
    p.play()
    assert [i for i, _ in _play(p, clock, 3)] == [4, 5, 6]
    p.step(+1)  # at the end of the range, no loop: stays on the last frame
    assert p.next_frame(timeout_s=1).index == 6


def test_speed_change_mid_play_rescales_the_following_intervals() -> None:
    clock = ManualClock()
    p = Playback(6, fps=10, clock=clock, wait=clock.wait)
    p.play()
    _play(p, clock, 3)
    t = clock()
    p.set_speed(2.0)
    played = _play(p, clock, 3)
    assert [round(w - t, 6) for _, w in played] == [0.0, 0.05, 0.1]


def test_a_stall_re_anchors_instead_of_racing() -> None:
    clock = ManualClock()
    p = Playback(5, fps=10, clock=clock, wait=clock.wait, max_lag_s=0.5)
    p.play()
    p.next_frame(timeout_s=1)
    clock.t_s += 2.0  # the consumer stalled for 2 s
    late = p.next_frame(timeout_s=1)
    assert late is not None and late.lateness_s == pytest.approx(1.9)
    t = clock()
    nxt = p.next_frame(timeout_s=1)
    assert nxt is not None and clock() - t == pytest.approx(0.1)  # paced again from the stall, not all at once


def test_transport_from_another_thread_wakes_a_waiting_consumer() -> None:
    p = Playback(5, fps=0.1)  # 10 s per frame on the real clock
    p.play()
    assert p.next_frame().index == 0
    result: list[int] = []
    consumer = threading.Thread(target=lambda: result.append(p.next_frame().index))
    consumer.start()
    p.step(+2)
    consumer.join(30)
    assert result == [2]
    closed: list[object] = []
    waiter = threading.Thread(target=lambda: closed.append(p.next_frame()))
    waiter.start()
    p.close()
    waiter.join(30)
    assert closed == [None]


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_frames=0), "at least one frame"),
    (dict(n_frames=3, speed=20), "between 0.1x and 10.0x"),
    (dict(n_frames=3, speed=0.05), "between 0.1x and 10.0x"),
    (dict(n_frames=3, fps=0), "fps must be"),
    (dict(n_frames=3, frame_range=(2, 1)), "frame range"),
    (dict(n_frames=3, timestamps_s=[0, 1]), "3 finite non-decreasing"),
    (dict(n_frames=3, timestamps_s=[0, 2, 1]), "non-decreasing"),
    (dict(n_frames=3, pace_by_timestamps=True), "no timestamps"),
])
def test_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        Playback(**kwargs)


@pytest.mark.parametrize("seed", range(6))
def test_drift_corrector_recovers_shifts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = scipy.ndimage.gaussian_filter(rng.normal(size=(128, 128)), 2.0, mode="wrap").astype(np.float32)
    path = np.cumsum(rng.normal(0, 0.8, size=(12, 2)), axis=0)
    path -= path[0]
    corrector = DriftCorrector(window="none")
    errors = []
    for dy, dx in path:
        frame = scipy.ndimage.shift(base, (dy, dx), order=3, mode="grid-wrap").astype(np.float32)
        frame += rng.normal(0, 0.02 * base.std(), frame.shape).astype(np.float32)
        corrected, (my, mx) = corrector.correct(frame)
        errors.append(np.hypot(my - dy, mx - dx))
        inner = (slice(16, -16), slice(16, -16))
        assert np.corrcoef(corrected[inner].ravel(), base[inner].ravel())[0, 1] > 0.95
    assert max(errors) < 0.25, errors
    assert len(corrector.history) == 12


def test_stack_player_reads_ahead_corrects_drift_and_survives_close() -> None:
    from processing.execution.playback import StackPlayer
    from processing.io.stacks import stack_from_array
    rng = np.random.default_rng(1)
    base = scipy.ndimage.gaussian_filter(rng.normal(size=(64, 64)), 2.0, mode="wrap").astype(np.float32)
    frames = np.stack([np.roll(base, (i, 0), axis=(0, 1)) for i in range(6)])
    clock = ManualClock()
    player = StackPlayer(clock=clock, wait=clock.wait)
    player.load(stack_from_array(frames, timestamps_s=0.1 * np.arange(6)))
    player.playback.play()
    out = [player.next_frame(timeout_s=5) for _ in range(6)]
    assert [f.played.index for f in out] == list(range(6))
    for f, frame in zip(out, frames):
        np.testing.assert_array_equal(f.data, frame)
    assert player.next_frame(timeout_s=1) is None
    player.set_drift_correction(True)
    player.playback.seek(0)
    player.playback.play()
    shifts = [player.next_frame(timeout_s=5).shift_px for _ in range(4)]
    assert [round(s[0]) for s in shifts] == [0, 1, 2, 3]
    assert [i for i, _, _ in player.shifts] == [0, 1, 2, 3]
    player.close()
    assert player.next_frame(timeout_s=0.1) is None
    player.load(stack_from_array(frames))  # a closed player can load again (no read-ahead thread)
    player.playback.play()
    assert player.next_frame(timeout_s=5).played.index == 0
