"""Frame sources: what feeds a :class:`processing.execution.scheduler.Stream`.

A *frame source* is anything iterable over full :class:`processing.base.Frame` s (data of any real dtype, (y, x)
calibrations, frame number, timestamp in s): a recorded stack (:class:`ArraySource`, any array-like indexable along
its first axis, e.g. a numpy memmap or a lazy dask array), a generator, a camera adapter. A camera with a callback
pushes instead: ``stream.push(frame)`` (the Swift glue does that from the hardware source's frame event).

:func:`play` pushes a source into a stream; with ``wait=True`` it waits for every runner of the stream to finish a
frame before pushing the next (nothing dropped: recorded data through the live path gives the offline outputs).

>>> import numpy as np
>>> from processing.execution.scheduler import Engine
>>> engine = Engine()
>>> runner = engine.runner_for("copy", "insitu.copy", {})
>>> runner.attach_stream(engine.stream("movie"))
>>> play(ArraySource(np.zeros((4, 8, 8), np.float32), frame_interval_s=0.1), engine.stream("movie"), wait=True)
4
>>> runner.stats.frames_processed, runner.stats.frames_dropped, round(runner.stats.last_timestamp_s, 6)
(4, 0, 0.3)
>>> engine.close()
"""
from __future__ import annotations

import typing

import numpy as np

from processing import base as pb

__all__ = ["FrameSource", "ArraySource", "play"]


@typing.runtime_checkable
class FrameSource(typing.Protocol):
    """Anything that yields full frames in order."""

    def __iter__(self) -> typing.Iterator[pb.Frame]: ...


class ArraySource:
    """Frames of a (N, H, W) array-like (numpy, memmap, dask: only one frame is materialised at a time).

    calibrations: (y, x) spatial calibrations; frame_interval_s: time between frames (timestamps
    ``start_time_s + i * frame_interval_s``) unless ``timestamps_s`` (N,) gives them; ``first_frame`` numbers the
    frames (e.g. the START of a ``START:STOP`` selection).
    """

    def __init__(self, stack: typing.Any, *, calibrations: tuple[pb.Calibration, pb.Calibration] | None = None,
                 frame_interval_s: float = 1.0, start_time_s: float = 0.0,
                 timestamps_s: typing.Sequence[float] | None = None, first_frame: int = 0,
                 intensity_units: str = "") -> None:
        shape = tuple(getattr(stack, "shape", ()))
        if len(shape) != 3:
            raise pb.InputError(f"a frame source needs a (frames, height, width) stack; got shape {shape}. "
                                f"Pass an image sequence (3-D array).")
        if timestamps_s is not None and len(timestamps_s) != shape[0]:
            raise pb.InputError(f"{len(timestamps_s)} timestamps for {shape[0]} frames; give one per frame.")
        self.stack = stack
        self.calibrations = calibrations or (pb.Calibration(), pb.Calibration())
        self.frame_interval_s = float(frame_interval_s)
        self.start_time_s = float(start_time_s)
        self.timestamps_s = None if timestamps_s is None else [float(t) for t in timestamps_s]
        self.first_frame = int(first_frame)
        self.intensity_units = intensity_units

    def __len__(self) -> int:
        return int(self.stack.shape[0])

    def frame(self, index: int) -> pb.Frame:
        """Frame ``index`` (0-based in this source)."""
        data = np.asarray(self.stack[index])
        t = (self.timestamps_s[index] if self.timestamps_s is not None
             else self.start_time_s + index * self.frame_interval_s)
        return pb.Frame(data, self.calibrations, self.first_frame + index, t,
                        source_shape=typing.cast(tuple[int, int], data.shape[:2]),
                        intensity_units=self.intensity_units)

    def __iter__(self) -> typing.Iterator[pb.Frame]:
        for i in range(len(self)):
            yield self.frame(i)


def play(source: typing.Iterable[pb.Frame], stream: typing.Any, *, wait: bool = False,
         timeout_s: float = 60.0) -> int:
    """Push every frame of ``source`` into ``stream`` (a :class:`processing.execution.scheduler.Stream`); returns
    the number pushed. ``wait``: before each push, wait until the stream's runners are idle (no frame dropped);
    a runner still busy after ``timeout_s`` raises :class:`processing.base.ProcessingError`."""
    count = 0
    for frame in source:
        if wait:
            _wait_runners(stream, timeout_s)
        stream.push(frame)
        count += 1
    if wait:
        _wait_runners(stream, timeout_s)
    return count


def _wait_runners(stream: typing.Any, timeout_s: float) -> None:
    for runner in stream.runners:
        if not runner.wait_idle(timeout_s):
            raise pb.ProcessingError(f"{runner.title} did not finish a frame within {timeout_s} s; "
                                     f"pass a larger timeout_s or check the processor.")
