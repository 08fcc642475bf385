"""Runners of the live scheduler (Swift-free): one processor each, a mailbox that never grows, the newest results.

* :class:`Runner` holds one processor, its parameters, ROI, newest outputs and error, and :class:`RunnerStats`;
  a worker of :class:`processing.execution.scheduler.Scheduler` processes one frame at a time through it;
* :class:`FrameSlot` is its mailbox: the newest frame, or a 3-frame jitter buffer for stateful processors; when it
  is full the backlog is dropped and counted, the newest frame kept;
* :func:`crop_source_frame` validates a full source frame and crops it to a runner's ROI.

Streams, the scheduler and the engine that owns the runners: :mod:`processing.execution.scheduler`.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import typing

from processing import base as pb
from processing import registry

if typing.TYPE_CHECKING:
    from processing.execution.scheduler import Scheduler, Stream

__all__ = ["STATEFUL_BUFFER_FRAMES", "Bounds", "ResultCallback", "FrameSlot", "RunnerStats", "Runner",
           "crop_source_frame"]

#: mailbox size of stateful processors (they need every frame): absorbs OS scheduling jitter
STATEFUL_BUFFER_FRAMES = 3

Bounds = tuple[tuple[float, float], tuple[float, float]]
ResultCallback = typing.Callable[["Runner"], None]


def crop_source_frame(frame: pb.Frame, roi: Bounds | None, *, shared: bool = False) -> pb.Frame:
    """Validate a full source frame (any real dtype) and crop it to ``roi`` (fractional bounds, None = whole frame).

    ``shared``: the result is handed to several processors: never a view of the source's buffer, read-only.
    Raises :class:`processing.base.InputError` with the reason (not an image, NaN, ROI outside the frame...).
    """
    calibrations = frame.calibrations if len(frame.calibrations) == 2 else None
    cropped = pb.make_frame(frame.data, calibrations=calibrations, frame_number=frame.frame_number,
                            timestamp_s=frame.timestamp_s, roi=roi, intensity_units=frame.intensity_units)
    if shared:
        if cropped.data.base is not None or cropped.data is frame.data:
            cropped = dataclasses.replace(cropped, data=cropped.data.copy())
        cropped.data.flags.writeable = False
    return cropped


class FrameSlot:
    """A small mailbox that never grows: ``put`` returns how many waiting frames it dropped.

    ``capacity`` 1 keeps only the newest frame. A larger capacity absorbs scheduling jitter (a stateful processor
    that is fast enough on average still sees every frame); when it is full the backlog is discarded and only the
    newest frame kept, so a processor slower than the camera always jumps to the newest frame.
    """

    def __init__(self, capacity: int = 1) -> None:
        self._lock = threading.Lock()
        self._items: list[typing.Any] = []
        self._capacity = max(1, capacity)
        self._closed = False

    def put(self, item: typing.Any) -> int:
        with self._lock:
            if self._closed:
                return 0
            dropped = 0
            if len(self._items) >= self._capacity:
                dropped = len(self._items)
                self._items.clear()
            self._items.append(item)
            return dropped

    def take(self) -> typing.Any:
        """The oldest waiting frame, or None (never blocks)."""
        with self._lock:
            return self._items.pop(0) if self._items else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> int:
        """Discard the waiting frames (returns how many) and accept no more."""
        with self._lock:
            self._closed = True
            count = len(self._items)
            self._items.clear()
            return count


class RunnerStats:
    """Counters shown to the user (panel, output metadata) and recorded in the provenance."""

    def __init__(self) -> None:
        self.frames_received = 0
        self.frames_processed = 0
        self.frames_dropped = 0
        self.first_frame_number = -1
        self.last_frame_number = -1
        self.first_timestamp_s: float | None = None
        self.last_timestamp_s: float | None = None
        self.last_ms = 0.0
        self.total_ms = 0.0

    def mean_ms(self) -> float:
        return self.total_ms / self.frames_processed if self.frames_processed else 0.0

    def as_dict(self) -> dict[str, typing.Any]:
        return {"frames_received": self.frames_received, "frames_processed": self.frames_processed,
                "frames_dropped": self.frames_dropped, "first_frame_number": self.first_frame_number,
                "last_frame_number": self.last_frame_number, "first_timestamp_s": self.first_timestamp_s,
                "last_timestamp_s": self.last_timestamp_s, "last_ms": round(self.last_ms, 3),
                "mean_ms": round(self.mean_ms(), 3)}


class Runner:
    """One processor instance fed by one stream (or called synchronously with :meth:`process_now`).

    ``alive``: a predicate the owner supplies (e.g. "the Swift computation still exists"); when it turns False the
    runner closes itself before processing another frame, so nothing is processed for a deleted owner. The runner
    holds neither its owner nor its engine.
    """

    def __init__(self, processor_id: str, parameters: typing.Mapping[str, typing.Any], *, title: str = "",
                 on_result: ResultCallback | None = None, alive: typing.Callable[[], bool] | None = None) -> None:
        self.processor_id = processor_id
        self.processor_class = registry.get(processor_id)
        self.title = title or self.processor_class.title
        self.on_result = on_result
        self.alive = alive
        self.on_close: typing.Callable[[Runner], None] | None = None
        self.stats = RunnerStats()
        self.roi: Bounds | None = None
        self.committed_count = -1  # frames_processed when the outputs were last shown (owner's bookkeeping)
        self.last_commit_s = 0.0  # monotonic time of that
        self._lock = threading.RLock()  # results and configuration
        self._process_lock = threading.Lock()  # one frame at a time through the processor
        self._idle = threading.Condition(self._lock)
        self._busy = False
        self._parameters: dict[str, typing.Any] = {}
        self._processor: pb.Processor | None = None
        self._outputs: pb.Outputs = ()
        self._origin_px: tuple[int, int] = (0, 0)
        self._error: str | None = None
        self._slot = FrameSlot(STATEFUL_BUFFER_FRAMES if self.processor_class.stateful else 1)
        self._stream: Stream | None = None
        self._closed = False
        self._closer = 0  # the thread that closes (its own callbacks may call close again)
        self._close_done = threading.Event()
        self.set_parameters(parameters)

    # ----------------------------------------------------------------------------------------------- configuration
    def set_parameters(self, parameters: typing.Mapping[str, typing.Any]) -> None:
        """Rebuild the processor when a parameter changed (its state restarts); invalid values become the error."""
        known = {p.name for p in self.processor_class.PARAMETERS}
        values = {k: v for k, v in parameters.items() if k in known}
        with self._lock:
            if values == self._parameters and (self._processor is not None or self._error):
                return
            self._parameters = dict(values)
            self.committed_count = -1
            try:
                self._processor = self.processor_class(**values)
                self._error = None
            except pb.ProcessingError as e:
                self._processor = None
                self._error = str(e)

    @property
    def parameters(self) -> dict[str, typing.Any]:
        return dict(self._parameters)

    @property
    def processor(self) -> pb.Processor | None:
        return self._processor

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def is_streaming(self) -> bool:
        return self._stream is not None

    @property
    def stream(self) -> Stream | None:
        return self._stream

    def reset(self) -> None:
        with self._lock:
            if self._processor is not None:
                self._processor.reset()

    # ----------------------------------------------------------------------------------------------- results
    def latest(self) -> tuple[pb.Outputs, str | None, dict[str, typing.Any]]:
        """(outputs, error text or None, stats) of the newest processed frame."""
        with self._lock:
            return self._outputs, self._error, self.stats.as_dict()

    def latest_origin_px(self) -> tuple[int, int]:
        """(y0, x0) in the source frame of the ROI crop the newest outputs were computed on (for annotations)."""
        with self._lock:
            return self._origin_px

    def _is_alive(self) -> bool:
        if self._closed:
            return False
        if self.alive is not None and not self.alive():
            self.close()
            return False
        return True

    def _run(self, frame: pb.Frame, memo: pb.FrameMemo | None, peers: typing.Sequence[pb.Processor] = (), *,
             notify: bool = True) -> None:
        with self._process_lock:
            with self._lock:
                processor = self._processor
                if processor is None or self._closed:
                    return  # parameter error (already in self._error) or closed
            start = time.perf_counter()
            outputs: pb.Outputs = ()
            error: str | None = None
            origin = (0, 0)
            try:
                roi = self.roi
                if memo is None:
                    cropped = crop_source_frame(frame, roi)
                else:  # validated and cropped once per frame and ROI, shared read-only by the processors
                    cropped = memo.get(("frame", roi), lambda: crop_source_frame(frame, roi, shared=True))
                origin = cropped.origin_px
                context = pb.Context(dropped_frames=self.stats.frames_dropped, memo=memo,
                                     peers=[p for p in peers if p is not processor])
                outputs = processor.process(cropped, context)
            except pb.ProcessingError as e:
                error = str(e)
            except Exception as e:  # a processor bug must not kill the stream; show it like an input error
                error = f"{self.title} failed: {type(e).__name__}: {e}"
            elapsed_ms = (time.perf_counter() - start) * 1000.0
        with self._lock:
            if self._closed:  # closed while this frame was being processed: its owner is gone, nothing is counted
                return
            if error is None:
                self._outputs = outputs
                self._origin_px = origin
            self._error = error
            stats = self.stats
            stats.frames_processed += 1
            if stats.first_frame_number < 0:
                stats.first_frame_number, stats.first_timestamp_s = frame.frame_number, frame.timestamp_s
            stats.last_frame_number, stats.last_timestamp_s = frame.frame_number, frame.timestamp_s
            stats.last_ms = elapsed_ms
            stats.total_ms += elapsed_ms
        callback = self.on_result
        if notify and callback is not None and not self._closed:
            callback(self)

    def report_error(self, text: str) -> None:
        """Show ``text`` as this runner's error (e.g. the source could not be read as a frame)."""
        with self._lock:
            self._error = text

    def process_now(self, frame: pb.Frame | None) -> None:
        """Process one full source frame synchronously (non-live sources); None = the source has no data."""
        if frame is None:
            with self._lock:
                self._error = "the source has no data (it was deleted or never acquired); attach to another source."
                self._outputs = ()
            return
        if not self._is_alive():
            return
        self.stats.frames_received += 1
        self._run(frame, None, notify=False)  # the caller shows the result

    # ----------------------------------------------------------------------------------------------- streaming
    def attach_stream(self, stream: Stream) -> None:
        if self._stream is stream or self._closed:
            return
        self.detach_stream()
        self._stream = stream
        stream.add_runner(self)

    def detach_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.remove_runner(self)

    def feed(self, frame: pb.Frame, memo: pb.FrameMemo, peers: typing.Sequence[pb.Processor],
             scheduler: Scheduler) -> None:
        """Called by the stream (the camera's thread): never blocks."""
        if not self._is_alive():
            return
        self.stats.frames_received += 1
        self.stats.frames_dropped += self._slot.put((frame, memo, peers))
        scheduler.schedule(self)

    def has_pending(self) -> bool:
        return len(self._slot) > 0 and not self._closed

    def run_pending(self) -> None:
        """Process the oldest waiting frame, if any (called by a worker)."""
        with self._lock:
            self._busy = True
            item = self._slot.take()
        try:
            if item is not None and self._is_alive():
                self._run(*item)
        finally:
            with self._lock:
                self._busy = False
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no frame is waiting or being processed (True), or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._busy or (len(self._slot) > 0 and not self._closed):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.01))
        return True

    def close(self) -> None:
        """Stop: detach from the stream, drop waiting frames, release the processor's state and outputs."""
        with self._lock:  # under the lock: a frame in flight either counted before this or is discarded
            first = not self._closed
            self._closed = True
            if first:
                self._closer = threading.get_ident()
        if not first:
            # closed already, perhaps still closing on another thread (a worker that found its owner gone): return
            # only once that close is complete (detached, released, removed from its engine), unless it is this
            # thread's own close calling back
            if self._closer != threading.get_ident():
                self._close_done.wait(10.0)
            return
        try:
            self._close_steps()
        finally:
            self._close_done.set()

    def _close_steps(self) -> None:
        self.detach_stream()
        self._slot.close()
        with self._lock:
            self._processor = None
            self._outputs = ()
            self.on_result = None
            self.alive = None
            self._idle.notify_all()
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close(self)
