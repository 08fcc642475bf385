"""Pacing of a recorded image stack played as a live stream (the In-situ Player's engine, no Swift).

:class:`Playback` decides *which* frame comes next and *when*: by the recorded timestamps (when the stack has them)
or at a chosen frame rate, times a speed factor (0.1x to 10x), within a frame range, once or in a loop; play, pause,
step one frame back/forward, scrub (seek). :meth:`Playback.next_frame` blocks until the next frame is due and returns
a :class:`PlayedFrame`; any transport call wakes it up. The clock and the wait are injectable, so tests are
deterministic.

Pacing: on (re)start at media time ``m0`` and wall time ``w0`` frame ``i`` is due at ``w0 + (m(i) - m0) / speed``,
where ``m(i)`` is the recorded timestamp (or ``i / fps``). Anchoring the whole run (not each interval) keeps late
frames from accumulating delay. A frame more than ``max_lag_s`` late re-anchors the clock (the player never races
to catch up after a stall: it plays every frame, it does not drop any).

Delivered timestamps (:attr:`PlayedFrame.stream_time_s`) continue across loops (each loop adds the recording's
duration plus one frame interval), so time constants of processors stay meaningful; the file's own timestamp is
:attr:`PlayedFrame.file_time_s`.

:class:`DriftCorrector` registers each frame to a running reference
(:class:`processing.alignment.stack_shift.RunningReference`) and shifts it back
(:func:`processing.alignment.registration.shift_image`).

>>> clock = ManualClock()
>>> p = Playback(3, timestamps_s=[0.0, 0.5, 2.0], clock=clock, wait=clock.wait)
>>> p.play()
>>> [(p.next_frame().index, round(clock(), 2)) for _ in range(3)]
[(0, 0.0), (1, 0.5), (2, 2.0)]
>>> p.next_frame() is None          # the end of a single pass
True
"""
from __future__ import annotations

import dataclasses
import threading
import time
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import ParameterError

__all__ = ["Playback", "PlayedFrame", "StackPlayer", "DeliveredFrame", "PlaybackState", "ManualClock", "DriftCorrector",
           "SPEED_MIN", "SPEED_MAX", "FPS_MIN", "FPS_MAX"]

SPEED_MIN, SPEED_MAX = 0.1, 10.0
FPS_MIN, FPS_MAX = 0.1, 1000.0


@dataclasses.dataclass(frozen=True)
class PlayedFrame:
    """A frame chosen by :meth:`Playback.next_frame`: its index in the stack, the file's timestamp (s, from the
    first frame; ``index / fps`` without timestamps), the stream time (s, monotonic across loops), the loop count,
    and how late it was delivered (s, wall clock)."""

    index: int
    file_time_s: float
    stream_time_s: float
    loop: int
    lateness_s: float


@dataclasses.dataclass(frozen=True)
class PlaybackState:
    """A snapshot for a panel: position, transport and pacing settings."""

    index: int
    playing: bool
    ended: bool
    speed: float
    loop: bool
    fps: float
    pace_by_timestamps: bool
    frame_range: tuple[int, int]
    file_time_s: float
    n_frames: int


class ManualClock:
    """A clock for tests: ``clock()`` is the time, ``wait(event, seconds)`` advances it (never really sleeps)."""

    def __init__(self, t_s: float = 0.0) -> None:
        self.t_s = float(t_s)

    def __call__(self) -> float:
        return self.t_s

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.t_s += max(0.0, seconds)
        return False


def _real_wait(event: threading.Event, seconds: float) -> bool:
    return event.wait(max(0.0, seconds))


class Playback:
    """Paced frame indices for a stack of ``n_frames``.

    Parameters
    ----------
    n_frames : int
        Frames in the stack (>= 1).
    timestamps_s : (N,) seconds, optional
        Recorded times; used for pacing when ``pace_by_timestamps`` (default when given).
    fps : float
        Frame rate when pacing without timestamps (0.1 to 1000).
    speed : float
        0.1 to 10 (1 = recorded pace).
    loop : bool
        Start again at the first frame of the range after the last one.
    frame_range : (first, last), inclusive
        The frames played; default all.
    clock, wait
        ``clock() -> s`` and ``wait(event, s) -> woken`` (defaults: ``time.monotonic``, ``Event.wait``).
    """

    def __init__(self, n_frames: int, *, timestamps_s: typing.Any = None, fps: float = 20.0, speed: float = 1.0,
                 loop: bool = False, frame_range: tuple[int, int] | None = None,
                 pace_by_timestamps: bool | None = None, max_lag_s: float = 0.5,
                 clock: typing.Callable[[], float] = time.monotonic,
                 wait: typing.Callable[[threading.Event, float], bool] = _real_wait) -> None:
        if int(n_frames) < 1:
            raise ParameterError(f"a playback needs at least one frame; got n_frames={n_frames}.")
        self.n_frames = int(n_frames)
        self.timestamps_s: NDArray[np.float64] | None = None
        if timestamps_s is not None:
            times = np.asarray(timestamps_s, dtype=np.float64).reshape(-1)
            if times.shape[0] != self.n_frames or not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
                raise ParameterError(f"timestamps_s must be {self.n_frames} finite non-decreasing seconds; got "
                                     f"{times.shape[0]} values starting {times[:4].tolist()}.")
            self.timestamps_s = times - times[0]
        self._clock, self._wait = clock, wait
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self.max_lag_s = float(max_lag_s)
        self._fps = self._speed = 1.0
        self.set_fps(fps)
        self.set_speed(speed)
        self._loop = bool(loop)
        self._pace_ts = self.timestamps_s is not None if pace_by_timestamps is None else bool(pace_by_timestamps)
        if self._pace_ts and self.timestamps_s is None:
            raise ParameterError("pace_by_timestamps=True but the stack has no timestamps; pace at a frame rate "
                                 "(pace_by_timestamps=False, fps=...).")
        self._range = (0, self.n_frames - 1)
        self._next = 0                   # index delivered by the next call of next_frame
        self._current = -1               # last delivered index
        self._playing = False
        self._ended = False
        self._loop_count = 0
        self._loop_offset_s = 0.0
        self._anchor: tuple[float, float] | None = None   # (wall, media) of the pacing anchor
        self._pending_step = False       # deliver _next now, once, even when paused
        self._closed = False
        if frame_range is not None:
            self.set_frame_range(*frame_range)

    # ------------------------------------------------------------------ settings
    def media_time_s(self, index: int) -> float:
        """Time of frame ``index`` on the pacing axis: the recorded timestamp, or ``index / fps``."""
        if self._pace_ts and self.timestamps_s is not None:
            return float(self.timestamps_s[index])
        return index / self._fps

    def file_time_s(self, index: int) -> float:
        return float(self.timestamps_s[index]) if self.timestamps_s is not None else index / self._fps

    def _interval_s(self) -> float:
        """The pause between the range's last frame and its first when looping: the median frame interval."""
        lo, hi = self._range
        if self._pace_ts and self.timestamps_s is not None and hi > lo:
            return float(np.median(np.diff(self.timestamps_s[lo:hi + 1]))) or 1.0 / self._fps
        return 1.0 / self._fps

    def set_speed(self, speed: float) -> None:
        speed = float(speed)
        if not SPEED_MIN <= speed <= SPEED_MAX:
            raise ParameterError(f"speed must be between {SPEED_MIN}x and {SPEED_MAX}x; got {speed!r}.")
        with self._lock:
            self._speed = speed
            self._reanchor()

    def set_fps(self, fps: float) -> None:
        fps = float(fps)
        if not FPS_MIN <= fps <= FPS_MAX:
            raise ParameterError(f"fps must be between {FPS_MIN} and {FPS_MAX} frames/s; got {fps!r}.")
        with self._lock:
            self._fps = fps
            self._reanchor()

    def set_pace_by_timestamps(self, on: bool) -> None:
        if on and self.timestamps_s is None:
            raise ParameterError("this stack has no timestamps; pace at a frame rate (set_fps) instead.")
        with self._lock:
            self._pace_ts = bool(on)
            self._reanchor()

    def set_loop(self, loop: bool) -> None:
        with self._lock:
            self._loop = bool(loop)
            if loop and self._ended:
                self._ended = False
                self._next = self._range[0]
            self._wake.set()

    def set_frame_range(self, first: int, last: int) -> None:
        first, last = int(first), int(last)
        if not 0 <= first <= last < self.n_frames:
            raise ParameterError(f"frame range ({first}, {last}) must satisfy 0 <= first <= last <= "
                                 f"{self.n_frames - 1}; choose frames inside the stack.")
        with self._lock:
            self._range = (first, last)
            if not first <= self._next <= last:
                self._next = first
            self._ended = False
            self._reanchor()

    # ------------------------------------------------------------------ transport
    def play(self) -> None:
        with self._lock:
            if self._ended:
                self._ended = False
                self._next = self._range[0]
            self._playing = True
            self._reanchor()

    def pause(self) -> None:
        with self._lock:
            self._playing = False
            self._wake.set()

    def seek(self, index: int) -> None:
        """Scrub: ``index`` is delivered next (immediately, also when paused)."""
        index = int(index)
        if not 0 <= index < self.n_frames:
            raise ParameterError(f"frame {index} is outside the stack (0 to {self.n_frames - 1}).")
        with self._lock:
            lo, hi = self._range
            self._next = min(max(index, lo), hi)
            self._ended = False
            self._pending_step = True
            self._reanchor()

    def step(self, delta: int = 1) -> None:
        """One frame forward (+1) or back (-1) from the current one, delivered now; pauses the playback."""
        with self._lock:
            lo, hi = self._range
            base = self._current if self._current >= 0 else self._next - 1
            target = base + int(delta)
            if self._loop:
                target = lo + (target - lo) % (hi - lo + 1)
            self._playing = False
            self._next = min(max(target, lo), hi)
            self._ended = False
            self._pending_step = True
            self._wake.set()

    def peek_next(self) -> int | None:
        """The index the next :meth:`next_frame` will deliver (None at the end of a single pass)."""
        with self._lock:
            return None if self._ended or self._closed else self._next

    def close(self) -> None:
        """Wake and end any waiting :meth:`next_frame` for good."""
        with self._lock:
            self._closed = True
            self._wake.set()

    def _reanchor(self) -> None:
        self._anchor = None
        self._wake.set()

    def state(self) -> PlaybackState:
        with self._lock:
            index = self._current if self._current >= 0 else self._next
            return PlaybackState(index, self._playing, self._ended, self._speed, self._loop, self._fps,
                                 self._pace_ts, self._range, self.file_time_s(index), self.n_frames)

    # ------------------------------------------------------------------ the pacing
    def next_frame(self, *, timeout_s: float | None = None) -> PlayedFrame | None:
        """Block until the next frame is due and return it; None when paused past ``timeout_s``, at the end of a
        single pass, or after :meth:`close`."""
        start = self._clock()
        first = True
        while True:
            if not first and timeout_s is not None and self._clock() - start >= timeout_s:
                return None
            first = False
            with self._lock:
                if self._closed:
                    return None
                self._wake.clear()
                if self._pending_step:
                    self._pending_step = False
                    return self._deliver(self._next, lateness_s=0.0)
                if self._ended:
                    return None
                if self._playing:
                    now = self._clock()
                    index = self._next
                    media = self.media_time_s(index) + self._loop_offset_s
                    if self._anchor is None:
                        self._anchor = (now, media)
                    due = self._anchor[0] + (media - self._anchor[1]) / self._speed
                    if now >= due:
                        lateness = now - due
                        if lateness > self.max_lag_s:
                            self._anchor = (now, media)
                        return self._deliver(index, lateness_s=lateness)
                    wait_s = due - now
                else:
                    wait_s = 0.25
            if timeout_s is not None:
                wait_s = min(wait_s, max(0.0, start + timeout_s - self._clock()))
            self._wait(self._wake, wait_s)

    def _deliver(self, index: int, *, lateness_s: float) -> PlayedFrame:
        """Called under the lock: frame ``index`` goes out; choose the next one."""
        lo, hi = self._range
        frame = PlayedFrame(index, self.file_time_s(index),
                            self.file_time_s(index) - self.file_time_s(lo) + self._stream_base_s(),
                            self._loop_count, lateness_s)
        self._current = index
        if index < hi:
            self._next = index + 1
        elif self._loop:
            self._loop_count += 1
            self._loop_offset_s += self.media_time_s(hi) - self.media_time_s(lo) + self._interval_s()
            self._next = lo
        else:
            self._ended = True
            self._playing = False
        return frame

    def _stream_base_s(self) -> float:
        lo, hi = self._range
        if self._loop_count == 0:
            return self.file_time_s(lo)
        span = self.file_time_s(hi) - self.file_time_s(lo) + (
            self._interval_s() if self._pace_ts else 1.0 / self._fps)
        return self.file_time_s(lo) + self._loop_count * span


class DriftCorrector:
    """Drift-corrected playback: each frame registered to a running reference and shifted back before delivery.

    ``correct(frame) -> (shifted frame (H, W) float32, (dy, dx) px)``: the measured shift of the frame relative to
    the first one (the running reference is H3's :class:`~processing.alignment.stack_shift.RunningReference`); the
    returned frame is shifted by ``-shift`` (bilinear, edges repeated). ``history`` holds every (dy, dx) so far.
    """

    def __init__(self, *, memory_frames: int = 10, lowpass_sigma_px: float = 1.0, **options: typing.Any) -> None:
        from processing.alignment.stack_shift import RunningReference
        self._reference = RunningReference(memory_frames=memory_frames, lowpass_sigma_px=lowpass_sigma_px, **options)
        self.history: list[tuple[float, float]] = []

    def reset(self) -> None:
        self._reference.reset()
        self.history.clear()

    def correct(self, frame: typing.Any) -> tuple[NDArray[np.float32], tuple[float, float]]:
        from processing.alignment.registration import shift_image
        data = np.asarray(frame, dtype=np.float32)
        dy, dx = self._reference.update(data)
        self.history.append((float(dy), float(dx)))
        if dy == 0.0 and dx == 0.0:
            return data, (0.0, 0.0)
        return shift_image(data, (-dy, -dx), order=1).astype(np.float32), (float(dy), float(dx))

    @property
    def last_correlation(self) -> float:
        return float(self._reference.last_correlation)


@dataclasses.dataclass(frozen=True)
class DeliveredFrame:
    """A frame as the player hands it out: data (H, W) (the file's dtype, float32 when drift-corrected), what the
    pacing chose, the applied drift shift (dy, dx) px (None without drift correction)."""

    data: NDArray[typing.Any]
    played: PlayedFrame
    shift_px: tuple[float, float] | None


class StackPlayer:
    """A :class:`~processing.io.stacks.Stack` played through :class:`Playback`: frames read when due (the next one
    read ahead on a helper thread, so at most two frames are in memory), optionally drift-corrected.

    ``load(stack)`` replaces what is played (the old stack is closed). ``next_frame(timeout_s)`` blocks until the
    next frame is due and returns a :class:`DeliveredFrame` (None when nothing is due). ``drift_correction``: set
    True to register each frame to a running reference and shift it back; the reference restarts whenever the
    playback jumps (seek, step back, loop). ``shifts`` holds (frame index, dy, dx) of the corrected frames.
    """

    def __init__(self, *, clock: typing.Callable[[], float] = time.monotonic,
                 wait: typing.Callable[[threading.Event, float], bool] = _real_wait) -> None:
        import concurrent.futures
        self._clock, self._wait = clock, wait
        self.stack: typing.Any = None
        self.playback: Playback | None = None
        self.drift_correction = False
        self.shifts: list[tuple[int, float, float]] = []
        self._corrector: DriftCorrector | None = None
        self._last_index = -2
        self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="insitu-player-read")
        self._prefetch: tuple[int, typing.Any] | None = None
        self._lock = threading.RLock()

    def load(self, stack: typing.Any, *, fps: float = 20.0, speed: float = 1.0, loop: bool = False) -> Playback:
        """Play ``stack`` (a :class:`~processing.io.stacks.Stack`) from its first frame; returns its Playback."""
        with self._lock:
            old, old_playback = self.stack, self.playback
            self.stack = stack
            self.playback = Playback(stack.n_frames, timestamps_s=stack.timestamps_s, fps=fps, speed=speed,
                                     loop=loop, clock=self._clock, wait=self._wait)
            self._prefetch = None
            self._last_index = -2
            self.shifts = []
            self._corrector = None
        if old_playback is not None:
            old_playback.close()
        if old is not None and old is not stack:
            old.close()
        return self.playback

    def set_drift_correction(self, on: bool) -> None:
        with self._lock:
            self.drift_correction = bool(on)
            self._corrector = None
            self.shifts = []

    def _read(self, index: int) -> NDArray[typing.Any]:
        with self._lock:
            prefetch, stack = self._prefetch, self.stack
        if prefetch is not None and prefetch[0] == index:
            try:
                return typing.cast(NDArray[typing.Any], prefetch[1].result())
            except Exception:
                pass  # read again below: the error (if any) is raised from here
        return typing.cast(NDArray[typing.Any], stack.frame(index))

    def next_frame(self, *, timeout_s: float | None = None) -> DeliveredFrame | None:
        with self._lock:
            playback, stack = self.playback, self.stack
        if playback is None or stack is None:
            return None
        played = playback.next_frame(timeout_s=timeout_s)
        if played is None:
            return None
        data = self._read(played.index)
        upcoming = playback.peek_next()
        with self._lock:
            if upcoming is not None and stack is self.stack:
                try:
                    self._prefetch = (upcoming, self._reader.submit(stack.frame, upcoming))
                except RuntimeError:  # the read-ahead thread is shut down (closed player): read when due
                    self._prefetch = None
            shift = None
            if self.drift_correction:
                if self._corrector is None or played.index != self._last_index + 1:
                    self._corrector = DriftCorrector()
                data, shift = self._corrector.correct(data)
                self.shifts.append((played.index, shift[0], shift[1]))
                del self.shifts[:-100000]
            self._last_index = played.index
        return DeliveredFrame(data, played, shift)

    def close(self) -> None:
        with self._lock:
            playback, stack = self.playback, self.stack
            self.playback = self.stack = None
        if playback is not None:
            playback.close()
        self._reader.shutdown(wait=False)
        if stack is not None:
            stack.close()
