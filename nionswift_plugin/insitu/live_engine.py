"""The live engine: feeds every camera frame to each attached processor, without ever blocking the camera.

Swift's own recompute path coalesces live updates (about 8 runs per second, frames dropped silently). Stateful
processors (EWMA, kymograph, time plots) need every frame, so the engine listens to the hardware source's
``xdatas_available_event`` (fired on the acquisition thread once per complete frame) and hands each frame to each
attached :class:`Runner` through a one-slot mailbox:

* the acquisition thread only copies the frame once and drops it into the runners' slots (microseconds);
* each runner has its own worker thread, so several processors on one source run concurrently (their kernels
  release the GIL) and a slow processor never delays the camera or the other processors;
* a runner that is still busy when the next frame arrives finds only the newest frame in its slot: the older one is
  counted as dropped (no growing queue) and the count is shown to the user; stateful processors get a 3-frame
  jitter buffer, so one that is fast enough on average sees every frame even when the OS schedules it late;
* processors on the same frame share a :class:`processing.base.FrameMemo`, so e.g. one tile-FFT pass serves both
  Max-FFT and the orientation map.

Sources that are not hardware sources (a static image, a replayed sequence) are processed on Swift's normal
recompute path by :meth:`Runner.process_now`, with the same processor instance.

This module holds no numerics: frames -> ``processing`` -> results.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time
import typing
import weakref

from nion.data import DataAndMetadata

from processing import base as pb
from processing import registry

STATEFUL_BUFFER_FRAMES = 3

Bounds = tuple[tuple[float, float], tuple[float, float]]
ResultCallback = typing.Callable[["Runner"], None]


def frame_from_xdata(xdata: DataAndMetadata.DataAndMetadata, *, roi: Bounds | None, frame_number: int,
                     timestamp_s: float) -> pb.Frame:
    """Adapt a Swift xdata to a processing Frame (validation + ROI crop happen in ``processing``)."""
    calibrations = None
    if len(xdata.dimensional_calibrations) == 2:
        calibrations = [pb.Calibration(c.offset, c.scale, c.units or "") for c in xdata.dimensional_calibrations]
    if xdata.is_sequence or xdata.is_collection:
        raise pb.InputError(
            f"source is a {'sequence' if xdata.is_sequence else 'collection'} of shape {xdata.data_shape}; "
            f"live processors need a 2-D image. Pick one frame (Processing > Pick) or attach to the live view.")
    return pb.make_frame(xdata.data, calibrations=calibrations, frame_number=frame_number, timestamp_s=timestamp_s,
                         roi=roi, intensity_units=xdata.intensity_calibration.units or "")


def _shared_frame(xdata: DataAndMetadata.DataAndMetadata, roi: Bounds | None, frame_number: int,
                  timestamp_s: float) -> pb.Frame:
    frame = frame_from_xdata(xdata, roi=roi, frame_number=frame_number, timestamp_s=timestamp_s)
    if frame.data.base is not None or frame.data is xdata.data:
        frame = dataclasses.replace(frame, data=frame.data.copy())  # never a view of the camera's buffer
    frame.data.flags.writeable = False
    return frame


class FrameSlot:
    """A small mailbox that never grows: ``put`` returns how many waiting frames it dropped.

    ``capacity`` 1 keeps only the newest frame. A larger capacity absorbs scheduling jitter (a stateful processor
    that is fast enough on average still sees every frame); when it is full the backlog is discarded and only the
    newest frame kept, so a processor slower than the camera always jumps to the newest frame.
    """

    def __init__(self, capacity: int = 1) -> None:
        self._condition = threading.Condition()
        self._items: list[typing.Any] = []
        self._capacity = max(1, capacity)
        self._closed = False

    def put(self, item: typing.Any) -> int:
        with self._condition:
            dropped = 0
            if len(self._items) >= self._capacity:
                dropped = len(self._items)
                self._items.clear()
            self._items.append(item)
            self._condition.notify()
            return dropped

    def take(self) -> typing.Any:
        """The oldest waiting frame, or None (never blocks)."""
        with self._condition:
            return self._items.pop(0) if self._items else None

    def __len__(self) -> int:
        with self._condition:
            return len(self._items)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._items.clear()
            self._condition.notify_all()


class RunnerStats:
    """Counters shown to the user (panel, output metadata)."""

    def __init__(self) -> None:
        self.frames_received = 0
        self.frames_processed = 0
        self.frames_dropped = 0
        self.last_frame_number = -1
        self.last_ms = 0.0
        self.total_ms = 0.0

    def mean_ms(self) -> float:
        return self.total_ms / self.frames_processed if self.frames_processed else 0.0

    def as_dict(self) -> dict[str, typing.Any]:
        mean_ms = self.mean_ms()
        return {"frames_received": self.frames_received, "frames_processed": self.frames_processed,
                "frames_dropped": self.frames_dropped, "last_frame_number": self.last_frame_number,
                "last_ms": round(self.last_ms, 3), "mean_ms": round(mean_ms, 3)}


class Runner:
    """One processor instance attached to one source, with its own worker thread for live streams."""

    def __init__(self, processor_id: str, parameters: typing.Mapping[str, typing.Any], *,
                 title: str = "", on_result: ResultCallback | None = None) -> None:
        self.processor_id = processor_id
        self.processor_class = registry.get(processor_id)
        self.title = title or self.processor_class.title
        self.on_result = on_result
        self.stats = RunnerStats()
        self.roi: Bounds | None = None
        self.committed_count = -1  # frames_processed when the outputs were last written to Swift (glue bookkeeping)
        self.last_commit_s = 0.0  # monotonic time of that write
        self._lock = threading.RLock()  # results and configuration
        self._process_lock = threading.Lock()  # one frame at a time through the processor
        self._parameters: dict[str, typing.Any] = {}
        self._processor: pb.Processor | None = None
        self._outputs: pb.Outputs = ()
        self._error: str | None = None
        # stateful processors get a 3-frame jitter buffer (they need every frame); others only the newest frame
        self._slot = FrameSlot(STATEFUL_BUFFER_FRAMES if self.processor_class.stateful else 1)
        self._stream: HardwareStream | None = None
        self._closed = False
        self.set_parameters(parameters)

    # ----------------------------------------------------------------------------------------------- configuration
    def set_parameters(self, parameters: typing.Mapping[str, typing.Any]) -> None:
        """Rebuild the processor when a parameter changed (its state restarts); invalid values become the error."""
        known = {p.name for p in self.processor_class.PARAMETERS}
        parameters = {k: v for k, v in parameters.items() if k in known}
        with self._lock:
            if parameters == self._parameters and (self._processor is not None or self._error):
                return
            self._parameters = dict(parameters)
            self.committed_count = -1
            try:
                self._processor = self.processor_class(**parameters)
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
    def is_streaming(self) -> bool:
        return self._stream is not None

    @property
    def stream(self) -> HardwareStream | None:
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

    def _run(self, xdata: DataAndMetadata.DataAndMetadata, frame_number: int, timestamp_s: float,
             memo: pb.FrameMemo | None, *, notify: bool = True) -> None:
        with self._process_lock:
            with self._lock:
                processor = self._processor
            if processor is None:
                return  # parameter error: already in self._error
            start = time.perf_counter()
            outputs: pb.Outputs = ()
            error: str | None = None
            try:
                roi = self.roi
                if memo is None:
                    frame = frame_from_xdata(xdata, roi=roi, frame_number=frame_number, timestamp_s=timestamp_s)
                else:  # validated and cropped once per frame and ROI, shared read-only by the processors
                    frame = memo.get(("frame", roi), lambda: _shared_frame(xdata, roi, frame_number, timestamp_s))
                context = pb.Context(dropped_frames=self.stats.frames_dropped, memo=memo)
                outputs = processor.process(frame, context)
            except pb.ProcessingError as e:
                error = str(e)
            except Exception as e:  # a processor bug must not kill the stream; show it like an input error
                error = f"{self.title} failed: {type(e).__name__}: {e}"
            elapsed_ms = (time.perf_counter() - start) * 1000.0
        with self._lock:
            if error is None:
                self._outputs = outputs
            self._error = error
            self.stats.frames_processed += 1
            self.stats.last_frame_number = frame_number
            self.stats.last_ms = elapsed_ms
            self.stats.total_ms += elapsed_ms
        if notify and self.on_result:
            self.on_result(self)

    def process_now(self, xdata: DataAndMetadata.DataAndMetadata | None) -> None:
        """Process one frame synchronously (non-live sources, on Swift's recompute path)."""
        if xdata is None:
            with self._lock:
                self._error = "the source has no data (it was deleted or never acquired); attach to another source."
                self._outputs = ()
            return
        self.stats.frames_received += 1
        timestamp = xdata.timestamp.timestamp() if xdata.timestamp else time.time()
        self._run(xdata, self.stats.frames_received, timestamp, None, notify=False)  # the caller commits

    # ----------------------------------------------------------------------------------------------- streaming
    def attach_stream(self, stream: HardwareStream) -> None:
        if self._stream is stream:
            return
        self.detach_stream()
        self._stream = stream
        stream.add_runner(self)

    def detach_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream:
            stream.remove_runner(self)

    def feed(self, item: tuple[DataAndMetadata.DataAndMetadata, int, float, pb.FrameMemo]) -> None:
        """Called on the acquisition thread: never blocks."""
        self.stats.frames_received += 1
        self.stats.frames_dropped += self._slot.put(item)
        WORKERS.schedule(self)

    def has_pending(self) -> bool:
        return len(self._slot) > 0 and not self._closed

    def run_pending(self) -> None:
        """Process the oldest waiting frame, if any (called by a worker)."""
        item = self._slot.take()
        if item is not None and not self._closed:
            self._run(*item)

    def close(self) -> None:
        self._closed = True
        self.detach_stream()
        self._slot.close()


class Workers:
    """One processing thread per core, shared by every runner of every stream.

    A runner with a waiting frame is queued once; a free worker takes the runner whose cost so far (mean ms per
    frame) minus its waiting time (ms) is smallest, processes one frame, and queues it again if another frame waits.
    So at most one computation per core runs at a time (no oversubscription; the processors' own kernels add the
    shared ``processing.execution.parallel`` pool), cheap processors are not held up behind a slow FFT (shortest job first),
    and a slow processor still gets its turn once it has waited about as long as it takes (ageing). Processors on
    the same frame share per-frame work through the frame memo.
    """

    def __init__(self, count: int) -> None:
        self._count = max(1, count)
        self._condition = threading.Condition()
        self._ready: list[tuple[float, Runner]] = []  # (time queued, runner)
        self._scheduled: set[int] = set()
        self._threads: list[threading.Thread] = []

    def schedule(self, runner: Runner) -> None:
        with self._condition:
            if id(runner) in self._scheduled:
                return  # queued or running: it is queued again after its current frame if one is waiting
            self._scheduled.add(id(runner))
            self._ready.append((time.perf_counter(), runner))
            if len(self._threads) < self._count:
                thread = threading.Thread(target=self._work, name=f"insitu-worker-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            self._condition.notify()

    def _next(self) -> Runner:
        now = time.perf_counter()
        index = min(range(len(self._ready)),
                    key=lambda i: self._ready[i][1].stats.mean_ms() - (now - self._ready[i][0]) * 1000.0)
        return self._ready.pop(index)[1]

    def _work(self) -> None:
        while True:
            with self._condition:
                while not self._ready:
                    self._condition.wait()
                runner = self._next()
            try:
                runner.run_pending()
            finally:
                with self._condition:
                    if runner.has_pending():
                        self._ready.append((time.perf_counter(), runner))
                        self._condition.notify()
                    else:
                        self._scheduled.discard(id(runner))


WORKERS = Workers(os.cpu_count() or 1)


class HardwareStream:
    """Listens to one hardware source channel and hands each complete frame to its runners (never blocking)."""

    def __init__(self, hardware_source: typing.Any, channel_index: int) -> None:
        self.hardware_source = hardware_source
        self.channel_index = channel_index
        self.frames_seen = 0
        self._runners: list[Runner] = []
        self._lock = threading.Lock()
        self._listener = hardware_source.xdatas_available_event.listen(self._xdatas_available)

    @property
    def runners(self) -> list[Runner]:
        with self._lock:
            return list(self._runners)

    def add_runner(self, runner: Runner) -> None:
        with self._lock:
            if runner not in self._runners:
                self._runners.append(runner)

    def remove_runner(self, runner: Runner) -> None:
        with self._lock:
            if runner in self._runners:
                self._runners.remove(runner)

    def _xdatas_available(self, promises: typing.Sequence[typing.Any]) -> None:
        # acquisition thread: one copy of the frame (the promise copies on first access), then hand it out.
        runners = self.runners
        self.frames_seen += 1
        if not runners or self.channel_index >= len(promises):
            return
        xdata = promises[self.channel_index].xdata
        if xdata is None:
            return
        frame_number = int(xdata.metadata.get("hardware_source", {}).get("frame_number", self.frames_seen))
        timestamp_s = xdata.timestamp.timestamp() if xdata.timestamp else time.time()
        item = (xdata, frame_number, timestamp_s, pb.FrameMemo())
        for runner in runners:
            runner.feed(item)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            self._runners.clear()


class LiveEngine:
    """Owns the runners (one per Swift computation) and the hardware streams (one per source channel)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runners: "weakref.WeakKeyDictionary[typing.Any, Runner]" = weakref.WeakKeyDictionary()
        self._streams: dict[tuple[str, int], HardwareStream] = {}
        self.changed_listeners: list[typing.Callable[[], None]] = []

    def runner_for(self, key: typing.Any, processor_id: str, parameters: typing.Mapping[str, typing.Any], *,
                   title: str = "", on_result: ResultCallback | None = None) -> Runner:
        """The runner of ``key`` (a Swift computation), created on first use; parameters are applied."""
        self.prune()
        with self._lock:
            existing = self._runners.get(key)
            if existing is not None and existing.processor_id == processor_id:
                runner, created = existing, False
            else:
                if existing is not None:
                    existing.close()
                runner, created = Runner(processor_id, parameters, title=title, on_result=on_result), True
                self._runners[key] = runner
                weakref.finalize(key, runner.close)
        if created:
            self._notify()
        else:
            runner.set_parameters(parameters)
            if on_result is not None:
                runner.on_result = on_result
        return runner

    def prune(self) -> None:
        """Stop the runners of computations Swift has closed (their output or source was deleted)."""
        with self._lock:
            dead = [key for key in self._runners.keys() if getattr(key, "_closed", False)]
        for key in dead:
            self.remove(key)

    def find_runner(self, key: typing.Any) -> Runner | None:
        with self._lock:
            return self._runners.get(key)

    @property
    def runners(self) -> list[Runner]:
        with self._lock:
            return list(self._runners.values())

    def stream_for(self, hardware_source: typing.Any, channel_index: int) -> HardwareStream:
        key = (hardware_source.hardware_source_id, channel_index)
        with self._lock:
            stream = self._streams.get(key)
            if stream is not None and stream.hardware_source is not hardware_source:
                stream.close()  # the hardware source was re-registered
                stream = None
            if stream is None:
                stream = HardwareStream(hardware_source, channel_index)
                self._streams[key] = stream
            return stream

    def remove(self, key: typing.Any) -> None:
        with self._lock:
            runner = self._runners.pop(key, None)
        if runner:
            runner.close()
            self._notify()

    def close(self) -> None:
        """Stop every runner and stream (plug-in unload, end of a test)."""
        with self._lock:
            runners = list(self._runners.values())
            self._runners = weakref.WeakKeyDictionary()
            streams = list(self._streams.values())
            self._streams.clear()
        for runner in runners:
            runner.close()
        for stream in streams:
            stream.close()
        self._notify()

    def _notify(self) -> None:
        for listener in list(self.changed_listeners):
            listener()


ENGINE = LiveEngine()
