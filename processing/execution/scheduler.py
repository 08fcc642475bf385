"""The live frame scheduler (Swift-free): streams of frames -> runners (one processor each) -> newest results.

* :class:`Stream` receives the full frames of one source (``push(frame)``, called by a camera callback or by
  :func:`processing.execution.sources.play`) and hands each one to its runners without ever blocking the caller: one
  :class:`processing.base.FrameMemo` per frame, so processors on the same frame share work (the validated ROI crop,
  one tile-FFT pass for Max-FFT and the orientation map);
* each :class:`Runner` (:mod:`processing.execution.runner`, re-exported here) has a mailbox that never grows
  (:class:`FrameSlot`: the newest frame, or a 3-frame jitter buffer for stateful processors); when it is full the
  backlog is dropped and counted, the newest frame kept;
* :class:`Scheduler`: one worker thread per core shared by every runner, shortest job first with ageing: a free worker
  takes the waiting runner with the smallest (mean ms per frame - ms waited), so cheap processors are not held up
  behind an FFT and slow ones still get their turn;
* :class:`Engine` owns the runners (keyed by whatever the owner uses: a Swift computation, a name), the streams and
  the scheduler. Whoever creates an engine owns it (the Swift plug-in creates one); there is no module-global state.

Constructors start no thread: the workers start when a runner first attaches to a stream (so a camera's thread never
pays for a thread start) and stop on :meth:`Engine.close`.

>>> import numpy as np
>>> from processing.base import Frame
>>> engine = Engine()
>>> runner = engine.runner_for("difference", "insitu.live_difference", {})
>>> stream = engine.stream("camera")
>>> runner.attach_stream(stream)
>>> for i in range(5):
...     stream.push(Frame(np.full((8, 8), float(i), np.float32), frame_number=i))
>>> runner.wait_idle(10.0)
True
>>> runner.stats.frames_processed + runner.stats.frames_dropped  # pushed faster than processed: newest kept
5
>>> engine.close()
"""
from __future__ import annotations

import os
import threading
import time
import typing
import weakref

from processing import base as pb
from processing.execution.runner import (STATEFUL_BUFFER_FRAMES, Bounds, FrameSlot, ResultCallback, Runner,
                                         RunnerStats, crop_source_frame)

__all__ = ["STATEFUL_BUFFER_FRAMES", "Bounds", "FrameSlot", "RunnerStats", "Runner", "Scheduler", "Stream", "Engine",
           "crop_source_frame"]


class Scheduler:
    """One processing thread per core (``workers``), shared by every runner of every stream of an engine.

    A runner with a waiting frame is queued once; a free worker takes the runner whose cost so far (mean ms per
    frame) minus its waiting time (ms) is smallest, processes one frame, and queues it again if another frame waits.
    So at most one computation per core runs at a time (no oversubscription; the processors' own kernels use the
    shared :mod:`processing.execution.parallel` pool), cheap processors are not held up behind a slow FFT (shortest
    job first), and a slow processor still gets its turn once it has waited about as long as it takes (ageing).
    Threads start with the first scheduled runner and stop on :meth:`close` (a later frame starts them again).
    """

    def __init__(self, workers: int | None = None, *, opencv_threads: int | None = 1) -> None:
        self._count = max(1, int(workers or os.cpu_count() or 1))
        #: OpenCV threads while the workers run (one processor per core: nested OpenCV pools would oversubscribe
        #: the cores, bench/results_live_engine.md). OpenCV's pthreads backend makes this process-wide, so it is set
        #: when the workers start (never at import) and only by an engine's owner who asks for it (None: untouched).
        self._opencv_threads = opencv_threads
        self._condition = threading.Condition()
        self._ready: list[tuple[float, Runner]] = []  # (time queued, runner)
        self._scheduled: set[int] = set()
        self._threads: list[threading.Thread] = []
        self._generation = 0

    @property
    def workers(self) -> int:
        return self._count

    @property
    def threads(self) -> list[threading.Thread]:
        with self._condition:
            return [t for t in self._threads if t.is_alive()]

    def start(self) -> None:
        """Start the worker threads now (a stream does when its first runner attaches, so the camera's thread never
        pays for a thread start); idempotent."""
        with self._condition:
            self._threads = [t for t in self._threads if t.is_alive()]
            if not self._threads and self._opencv_threads is not None:
                import cv2
                cv2.setNumThreads(int(self._opencv_threads))
            while len(self._threads) < self._count:
                thread = threading.Thread(target=self._work, args=(self._generation,),
                                          name=f"insitu-worker-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def schedule(self, runner: Runner) -> None:
        with self._condition:
            if id(runner) in self._scheduled:
                return  # queued or running: it is queued again after its current frame if one is waiting
            self._scheduled.add(id(runner))
            self._ready.append((time.perf_counter(), runner))
            if len(self._threads) < self._count:
                self.start()
            self._condition.notify()

    def _next(self) -> Runner:
        now = time.perf_counter()
        index = min(range(len(self._ready)),
                    key=lambda i: self._ready[i][1].stats.mean_ms() - (now - self._ready[i][0]) * 1000.0)
        return self._ready.pop(index)[1]

    def _work(self, generation: int) -> None:
        while True:
            with self._condition:
                while not self._ready and generation == self._generation:
                    self._condition.wait()
                if generation != self._generation:
                    return
                runner = self._next()
            try:
                runner.run_pending()
            finally:
                with self._condition:
                    if runner.has_pending() and generation == self._generation:
                        self._ready.append((time.perf_counter(), runner))
                        self._condition.notify()
                    else:
                        self._scheduled.discard(id(runner))
                del runner  # a closed runner must not stay referenced by an idle worker

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the workers (after the frame each is processing) and forget the queued runners."""
        with self._condition:
            self._generation += 1
            threads, self._threads = self._threads, []
            self._ready.clear()
            self._scheduled.clear()
            self._condition.notify_all()
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join(timeout_s)


class Stream:
    """The full frames of one source, handed to its runners by :meth:`push` (never blocking the caller)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.frames_seen = 0
        self._runners: list[Runner] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def runners(self) -> list[Runner]:
        with self._lock:
            return list(self._runners)

    def add_runner(self, runner: Runner) -> None:
        with self._lock:
            if runner in self._runners or self._closed:
                return
            self._runners.append(runner)
        self.scheduler.start()

    def remove_runner(self, runner: Runner) -> None:
        with self._lock:
            if runner in self._runners:
                self._runners.remove(runner)

    def push(self, frame: pb.Frame) -> None:
        """Hand one full frame (data of any real dtype, calibrations, frame number, timestamp) to every runner.

        The caller (a camera thread) must not modify ``frame.data`` afterwards: the runners crop it later."""
        self.frames_seen += 1
        runners = self.runners
        if not runners:
            return
        memo = pb.FrameMemo()
        peers = tuple(p for p in (r.processor for r in runners) if p is not None)
        for runner in runners:
            runner.feed(frame, memo, peers, self.scheduler)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            runners, self._runners = self._runners, []
        for runner in runners:
            if runner.stream is self:
                runner.detach_stream()


class Engine:
    """Owns runners (one per owner key), streams (one per source key) and the scheduler (one thread per core).

    Keys are what the owner uses: a Swift computation (held weakly when it can be: its runner is closed when it is
    garbage collected), a string... A runner is removed by :meth:`remove`, by its ``alive`` predicate turning False,
    by :meth:`prune` or by :meth:`close`; nothing else keeps it.
    """

    def __init__(self, workers: int | None = None, *, opencv_threads: int | None = 1) -> None:
        self.scheduler = Scheduler(workers, opencv_threads=opencv_threads)
        self._lock = threading.Lock()
        # slot key (id for weak-referenceable keys, else the key) -> (weakref to the key or the key, runner)
        self._runners: dict[typing.Hashable, tuple[typing.Any, Runner]] = {}
        self._streams: dict[typing.Hashable, Stream] = {}
        self.changed_listeners: list[typing.Callable[[], None]] = []

    # ----------------------------------------------------------------------------------------------- runners
    def runner_for(self, key: typing.Any, processor_id: str, parameters: typing.Mapping[str, typing.Any], *,
                   title: str = "", on_result: ResultCallback | None = None,
                   alive: typing.Callable[[], bool] | None = None) -> Runner:
        """The runner of ``key``, created on first use (a new one if the processor changed); parameters applied.

        An owner that is already gone (``alive()`` False: e.g. a Swift computation removed while the dispatcher was
        still executing it) gets a closed runner that is never listed, so a late call cannot resurrect a runner
        nothing will close (seen in a run of ``test_churn``: every old runner closed, seven new ones listed)."""
        if alive is not None and not alive():
            dead = Runner(processor_id, parameters, title=title)
            dead.close()
            return dead
        with self._lock:
            entry = self._runners.get(_slot_key(key))
            existing = entry[1] if entry is not None and _matches(entry[0], key) else None
            if existing is not None and existing.processor_id == processor_id and not existing.closed:
                runner, created, old = existing, False, None
            else:
                old = existing
                runner, created = Runner(processor_id, parameters, title=title, on_result=on_result,
                                         alive=alive), True
                self._runners[_slot_key(key)] = (_weak_or_strong(key, self._forget_callback(_slot_key(key))), runner)
                runner.on_close = self._closed_callback(_slot_key(key))
        if old is not None:
            old.on_close = None
            old.close()
        if created:
            self._notify()
        else:
            runner.set_parameters(parameters)
            if on_result is not None:
                runner.on_result = on_result
            if alive is not None:
                runner.alive = alive
        return runner

    def _forget_callback(self, key_id: typing.Hashable) -> typing.Callable[[typing.Any], None]:
        engine_ref = weakref.ref(self)

        def forget(_: typing.Any) -> None:  # the key was garbage collected
            engine = engine_ref()
            if engine is not None:
                engine._remove_id(key_id, None)
        return forget

    def _closed_callback(self, key_id: typing.Hashable) -> typing.Callable[[Runner], None]:
        engine_ref = weakref.ref(self)

        def closed(runner: Runner) -> None:  # the runner closed itself (its owner is gone)
            engine = engine_ref()
            if engine is not None:
                engine._remove_id(key_id, runner)
        return closed

    def _remove_id(self, key_id: typing.Hashable, runner: Runner | None) -> None:
        with self._lock:
            entry = self._runners.get(key_id)
            if entry is None or (runner is not None and entry[1] is not runner):
                return
            del self._runners[key_id]
        entry[1].on_close = None
        entry[1].close()
        self._notify()

    def find_runner(self, key: typing.Any) -> Runner | None:
        with self._lock:
            entry = self._runners.get(_slot_key(key))
            return entry[1] if entry is not None and _matches(entry[0], key) else None

    @property
    def runners(self) -> list[Runner]:
        with self._lock:
            return [runner for _, runner in self._runners.values()]

    def remove(self, key: typing.Any) -> None:
        """Stop and forget the runner of ``key`` (no-op when there is none)."""
        with self._lock:
            entry = self._runners.get(_slot_key(key))
            if entry is None or not _matches(entry[0], key):
                return
        self._remove_id(_slot_key(key), entry[1])

    def prune(self) -> None:
        """Stop the runners whose ``alive`` predicate is False."""
        for runner in self.runners:
            if runner.alive is not None and not runner.alive():
                runner.close()  # its on_close removes it

    # ----------------------------------------------------------------------------------------------- streams
    def stream(self, key: typing.Hashable) -> Stream:
        """The stream of source ``key``, created on first use."""
        with self._lock:
            stream = self._streams.get(key)
            if stream is None:
                stream = Stream(self.scheduler)
                self._streams[key] = stream
            return stream

    def add_stream(self, key: typing.Hashable, stream: Stream) -> Stream:
        """Register a stream made by the owner (e.g. a hardware-source adapter), closing one it replaces."""
        with self._lock:
            old = self._streams.get(key)
            self._streams[key] = stream
        if old is not None and old is not stream:
            old.close()
        return stream

    def find_stream(self, key: typing.Hashable) -> Stream | None:
        with self._lock:
            return self._streams.get(key)

    @property
    def streams(self) -> list[Stream]:
        with self._lock:
            return list(self._streams.values())

    def close(self) -> None:
        """Stop every runner, stream and worker thread (the engine can be used again afterwards)."""
        with self._lock:
            runners = [runner for _, runner in self._runners.values()]
            self._runners.clear()
            streams = list(self._streams.values())
            self._streams.clear()
        for runner in runners:
            runner.on_close = None
            runner.close()
        for stream in streams:
            stream.close()
        self.scheduler.close()
        self._notify()

    def _notify(self) -> None:
        for listener in list(self.changed_listeners):
            try:
                listener()
            except Exception:  # a listener's failure must not stop the engine
                pass


def _weak_or_strong(key: typing.Any, callback: typing.Callable[[typing.Any], None]) -> typing.Any:
    try:
        return weakref.ref(key, callback)
    except TypeError:  # strings, ints...: held strongly (they hold nothing)
        return _Strong(key)


class _Strong:
    __slots__ = ("value",)

    def __init__(self, value: typing.Any) -> None:
        self.value = value


def _slot_key(key: typing.Any) -> typing.Hashable:
    try:
        weakref.ref(key)
    except TypeError:
        return ("value", key)
    return ("id", id(key))


def _matches(held: typing.Any, key: typing.Any) -> bool:
    return bool(held.value == key) if isinstance(held, _Strong) else held() is key
