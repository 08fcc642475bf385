"""The Swift side of the live engine: a hardware source -> processing stream adapter and the computation bookkeeping.

The scheduler itself (runners, newest-frame mailboxes, one worker per core, shortest job first with ageing, the
shared per-frame memo) is Swift-free: :mod:`processing.execution.scheduler`. This module only

* adapts a Swift hardware source: :class:`HardwareStream` listens to ``xdatas_available_event`` (fired on the
  acquisition thread once per complete frame) and pushes each frame as a :class:`processing.base.Frame` (one copy,
  microseconds: the camera never waits for processing);
* keys runners on Swift computations without keeping them alive: a runner is closed at once when its computation is
  removed from the document (the document model's ``item_removed_event``) or found closed on the next frame (the
  runner's ``alive`` predicate), and nothing here holds a computation strongly;
* works around a Swift retention: ``DocumentModel.TransactionManager`` keeps every item that was ever in a
  transaction as a zero-count key of a ``collections.Counter``, so deleted outputs (with their last data) would stay
  in memory; :func:`purge_transaction_counts` drops those zero-count keys, and :func:`purge_write_delays` the
  removed items the project storage keeps in its write-delay counter (private API, documented there), and
  :class:`OpenComputationActivities` finishes the Activity-panel rows Swift leaves open for a removed computation.

Sources that are not hardware sources (a static image, a replayed sequence) are processed on Swift's normal
recompute path by :meth:`processing.execution.scheduler.Runner.process_now`, with the same processor instance.
"""
from __future__ import annotations

import os
import threading
import time
import typing
import weakref

from nion.data import DataAndMetadata

from processing import base as pb
from processing.execution.scheduler import (STATEFUL_BUFFER_FRAMES, Bounds, Engine, FrameSlot, Runner, RunnerStats,
                                            Scheduler, Stream)

__all__ = ["STATEFUL_BUFFER_FRAMES", "Bounds", "FrameSlot", "Runner", "RunnerStats", "Scheduler", "Stream",
           "HardwareStream", "LiveEngine", "ENGINE", "frame_from_xdata", "purge_transaction_counts", "purge_write_delays",
           "OpenComputationActivities", "ACTIVITIES", "start_heap_trimmer", "tune_allocator"]


def frame_from_xdata(xdata: DataAndMetadata.DataAndMetadata, *, frame_number: int = 0,
                     timestamp_s: float | None = None) -> pb.Frame:
    """A Swift xdata as a full (not yet validated or cropped) processing Frame; the runners crop it per ROI.

    Raises :class:`processing.base.InputError` for sequences and collections (live processors need one image)."""
    if xdata.is_sequence or xdata.is_collection:
        raise pb.InputError(
            f"source is a {'sequence' if xdata.is_sequence else 'collection'} of shape {xdata.data_shape}; "
            f"live processors need a 2-D image. Pick one frame (Processing > Pick) or attach to the live view.")
    calibrations = tuple(pb.Calibration(c.offset, c.scale, c.units or "") for c in xdata.dimensional_calibrations)
    if timestamp_s is None:
        timestamp_s = xdata.timestamp.timestamp() if xdata.timestamp else time.time()
    return pb.Frame(xdata.data, (calibrations[0], calibrations[1]) if len(calibrations) == 2
                    else (pb.Calibration(), pb.Calibration()),
                    frame_number, timestamp_s, intensity_units=xdata.intensity_calibration.units or "")


class HardwareStream(Stream):
    """A processing stream fed by one channel of a Swift hardware source (never blocking the acquisition thread)."""

    def __init__(self, scheduler: Scheduler, hardware_source: typing.Any, channel_index: int) -> None:
        super().__init__(scheduler)
        self.hardware_source = hardware_source
        self.channel_index = channel_index
        self._listener: typing.Any = hardware_source.xdatas_available_event.listen(self._xdatas_available)

    def _xdatas_available(self, promises: typing.Sequence[typing.Any]) -> None:
        # acquisition thread: one copy of the frame (the promise copies on first access), then hand it out.
        if not self.runners or self.channel_index >= len(promises):
            self.frames_seen += 1
            return
        xdata = promises[self.channel_index].xdata
        if xdata is None:
            self.frames_seen += 1
            return
        hardware = xdata.metadata.get("hardware_source", {})
        if hardware.get("insitu_player", {}).get("repeat"):
            # the In-situ Player repeats its last frame when Swift stops it at the end of a pass: not a new frame,
            # so no processor integrates it twice
            self.frames_seen += 1
            return
        frame_number = int(hardware.get("frame_number", self.frames_seen + 1))
        tune_allocator(int(getattr(xdata.data, "size", 0)))
        timestamp_s = xdata.timestamp.timestamp() if xdata.timestamp else time.time()
        try:
            frame = frame_from_xdata(xdata, frame_number=frame_number, timestamp_s=timestamp_s)
        except pb.InputError:  # not an image: each runner reports it when it validates the frame
            frame = pb.Frame(xdata.data, frame_number=frame_number, timestamp_s=timestamp_s)
        self.push(frame)

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        super().close()


def purge_transaction_counts(document_model: typing.Any) -> int:
    """Drop the zero-count keys of Swift's transaction counter so removed items can be freed; returns how many.

    Private API (nionswift 16.16): ``DocumentModel._DocumentModel__transaction_manager`` is a ``TransactionManager``
    whose ``_TransactionManager__transaction_counts`` is a ``collections.Counter``; ``Counter.subtract`` leaves
    items at count 0 as keys, so every item ever in a transaction (each live output, each stop/start of the camera)
    stays referenced. Removing the zero entries is what Swift's own ``is_in_transaction_state`` already treats as
    "not in a transaction". Without the attribute (another Swift release) this does nothing.
    """
    manager = getattr(document_model, "_DocumentModel__transaction_manager", None)
    counts = getattr(manager, "_TransactionManager__transaction_counts", None)
    lock = getattr(manager, "_TransactionManager__transactions_lock", None)
    if counts is None or lock is None:
        return 0
    with lock:
        stale = [item for item, count in counts.items() if count <= 0]
        for item in stale:
            del counts[item]
    return len(stale) + purge_write_delays(document_model)


def purge_write_delays(document_model: typing.Any) -> int:
    """Drop removed items from the project storage's write-delay counter so they can be freed; returns how many.

    Private API (nionswift 16.16): the project's storage system (``document_model._project.persistent_storage``, a
    ``FileStorageSystem.PersistentStorageSystem``, file or memory) counts write delays per item in
    ``_PersistentStorageSystem__write_delay_counts`` (a dict keyed by the item). An item in a transaction (every
    output of a processor attached to a playing camera joins the live item's transaction) enters a write delay;
    ``DataItem`` / ``DisplayItem.__exit_write_delay_state`` only exits it ``if self.persistent_object_context``,
    which a removed item no longer has, so every output removed while the camera plays stays in that dict with its
    display item and last data (~1.7 MiB per attach-seven/detach cycle; in the real application too). An item
    without a persistent-object context is no longer in the document: nothing will ever exit its delay, and
    re-inserting an item enters a new one. Without the attribute (another Swift release) this does nothing."""
    project = getattr(document_model, "_project", None)
    storage = getattr(project, "persistent_storage", None)
    counts = getattr(storage, "_PersistentStorageSystem__write_delay_counts", None)
    if not isinstance(counts, dict):
        return 0
    try:
        stale = [item for item in list(counts) if getattr(item, "persistent_object_context", None) is None]
    except RuntimeError:  # changed by another thread meanwhile: the next removal purges
        return 0
    for item in stale:
        counts.pop(item, None)
    return len(stale)


#: how often the heap trimmer returns free heap pages to the OS while a stream runs (s); the environment variable
#: INSITU_HEAP_TRIM_S overrides it (measured at 512², seven processors, loaded machine: RSS over 2.6 min +0.7 % at
#: 2 s, +3.7 % at 10 s; each trim costs 10-60 ms of one background thread, the pages it frees fault back in on reuse)
HEAP_TRIM_INTERVAL_S = 2.0
_trimmer_lock = threading.Lock()
_trimmer: threading.Thread | None = None


def _malloc_trim() -> typing.Callable[[int], int] | None:
    try:
        import ctypes
        trim = ctypes.CDLL(None).malloc_trim  # glibc (Linux); absent elsewhere
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return typing.cast(typing.Callable[[int], int], trim)


#: glibc ``mallopt`` parameters (``malloc.h``)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: a free that leaves more than this many bytes per frame pixel free at the top of a heap returns them to the OS at
#: once: 16 B/px = four float32 frames (4 MiB at 512², 16 MiB at 1024²; a fixed 4 MiB at 1024² looked 10-50 %
#: slower per frame in bench_live_engine, in an A/B whose order favoured the default: not settled, so it scales)
TRIM_BYTES_PER_FRAME_PIXEL = 16
TRIM_THRESHOLD_MIN_BYTES = 1 << 20
#: buffers below this come from the heaps (glibc's maximum: HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit), so a frame is
#: never a fresh mmap (page faults on every use: half the processing rate when measured at 512 KiB)
MMAP_THRESHOLD_BYTES = 32 << 20
#: the environment variables by which a user sets glibc's thresholds: set, they win over :func:`tune_allocator`
GLIBC_MALLOC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
_tuned: dict[str, int] = {}
_tuned_pixels = 0


def _mallopt() -> typing.Callable[[int, int], int] | None:
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt  # glibc (Linux); absent elsewhere
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return typing.cast(typing.Callable[[int, int], int], mallopt)


def trim_threshold_bytes(frame_pixels: int) -> int:
    """The heap-top trim threshold for frames of ``frame_pixels`` pixels (bytes; see :func:`tune_allocator`)."""
    return max(TRIM_THRESHOLD_MIN_BYTES, TRIM_BYTES_PER_FRAME_PIXEL * int(frame_pixels))


def tune_allocator(frame_pixels: int) -> dict[str, int]:
    """Fix glibc's trim and mmap thresholds for a live stream of frames of ``frame_pixels`` pixels (again only when
    the frame size changes); returns the settings in force ({} when none: not glibc, the user set glibc's own
    variables, or ``INSITU_MALLOC_TUNING=0``). Called by :class:`HardwareStream` on its frames.

    Why: glibc's dynamic thresholds (after a buffer above the mmap threshold is freed: mmap threshold = its size,
    trim threshold = twice that) let each per-thread heap keep up to twice the largest buffer ever freed as free
    memory at its top, resident, and ``malloc_trim`` (the heap trimmer) never returns a per-thread heap's top: it
    releases the free pages between used blocks and the main heap's top only (glibc 2.36 ``mtrim``). Measured in
    headless Swift at 512², eight processors, 11 min, two soaks side by side: RSS minus glibc's bytes in use rose
    288 -> 382 MiB with the defaults and stayed within 274-281 MiB with these settings (bench/results/
    soak_summary.md, session 5; the growth of the bytes in use themselves was Swift's line-plot rebin, fixed by
    :mod:`nionswift_plugin.insitu.swift_workarounds`, session 6).
    ``M_TRIM_THRESHOLD`` = :func:`trim_threshold_bytes` returns such a top at the free that leaves it;
    setting a threshold disables the dynamic ones, so ``M_MMAP_THRESHOLD`` is fixed too, above the frame sizes
    (:data:`MMAP_THRESHOLD_BYTES`), so frames still come from the heaps. ``INSITU_MALLOC_TRIM_BYTES`` overrides the
    trim threshold (for the soak bench)."""
    global _tuned_pixels
    with _trimmer_lock:
        if frame_pixels == _tuned_pixels:
            return dict(_tuned)
        _tuned_pixels = frame_pixels
        _tuned.clear()
        if os.environ.get("INSITU_MALLOC_TUNING", "1") == "0" or any(v in os.environ for v in GLIBC_MALLOC_VARIABLES):
            return {}
        mallopt = _mallopt()
        if mallopt is None:
            return {}
        trim = int(os.environ.get("INSITU_MALLOC_TRIM_BYTES", trim_threshold_bytes(frame_pixels)))
        for name, parameter, value in (("M_MMAP_THRESHOLD", M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
                                       ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, trim)):
            if mallopt(parameter, value) == 1:  # 1 = success
                _tuned[name] = value
        return dict(_tuned)


def start_heap_trimmer(engine: "LiveEngine") -> bool:
    """Return free heap memory to the OS every :data:`HEAP_TRIM_INTERVAL_S` while ``engine`` streams (once per
    process; a daemon thread ``insitu-heap-trim``, asleep otherwise); False where there is no glibc ``malloc_trim``.

    Why: a live stream allocates and frees frame-sized buffers (0.25-4 MiB: camera copies, crops, outputs) on many
    threads. glibc raises its mmap threshold after the first such buffers are freed, so later ones come from the
    per-thread heaps, whose freed pages are kept: measured in headless Swift at 512², seven processors, RSS +87 MiB
    in 4 minutes with the live Python heap flat (``mallinfo2``: in use 107 -> 118 MiB, free inside the heaps
    25 -> 59 MiB) - the real application has the same allocator. ``malloc_trim(0)`` (10-60 ms, off the acquisition
    and UI threads) releases those free pages; RSS then stays within a few MiB. (A fixed mmap threshold instead
    would return each buffer at once, but costs ~1.5 ms per MiB of page faults here: 10x the buffer's use.)"""
    global _trimmer
    trim = _malloc_trim()
    if trim is None:
        return False
    engine_ref = weakref.ref(engine)
    with _trimmer_lock:
        if _trimmer is not None and _trimmer.is_alive():
            return True

        def loop() -> None:
            while True:
                time.sleep(float(os.environ.get("INSITU_HEAP_TRIM_S", HEAP_TRIM_INTERVAL_S)))
                target = engine_ref()
                if target is None:
                    return
                if any(stream.runners for stream in target.streams):
                    trim(0)
                del target

        _trimmer = threading.Thread(target=loop, name="insitu-heap-trim", daemon=True)
        _trimmer.start()
    return True


def _purge_later(model_ref: "weakref.ReferenceType[typing.Any]") -> None:
    model = model_ref()
    if model is not None:
        purge_transaction_counts(model)


class OpenComputationActivities:
    """Swift's open computation activities (the Activity panel's rows), so a removed computation's can be finished.

    Works around a Swift retention (nionswift 16.16, ``DocumentModel.__start_computation.run_computation``): when a
    computation is removed while its execute runs, the executor is dropped without ``close()`` (that branch commits
    and closes only ``if not computation._closed``), so its ``ComputationActivity`` is never finished: the Activity
    panel keeps a "(computing)" row for it forever, and through it the computation and its removed outputs with
    their last data (about one per attach/detach of a live processor; the real application too). Listens to
    ``Activity.activity_appended_event`` / ``activity_finished_event`` (public module events) and, when a computation
    is removed, finishes its activities that are still open; an activity Swift already finished is never finished
    twice (the Activity panel would raise on it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: "weakref.WeakSet[typing.Any]" = weakref.WeakSet()
        self._listeners: tuple[typing.Any, ...] = ()

    def install(self) -> None:
        from nion.swift.model import Activity
        with self._lock:
            if not self._listeners:
                self._listeners = (Activity.activity_appended_event.listen(self._appended),
                                   Activity.activity_finished_event.listen(self._finished))

    def _appended(self, activity: typing.Any) -> None:
        if getattr(activity, "computation", None) is not None:
            with self._lock:
                self._open.add(activity)

    def _finished(self, activity: typing.Any) -> None:
        with self._lock:
            self._open.discard(activity)

    def finish_for(self, computation: typing.Any) -> int:
        """Finish the open activities of ``computation`` (main thread, after Swift removed it); returns how many."""
        from nion.swift.model import Activity
        with self._lock:
            stale = [a for a in self._open if getattr(a, "computation", None) is computation]
            for activity in stale:
                self._open.discard(activity)
        for activity in stale:
            Activity.activity_finished(activity)
        return len(stale)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


#: the open computation activities of the process (installed by the engine)
ACTIVITIES = OpenComputationActivities()


def _computation_alive(computation: typing.Any) -> typing.Callable[[], bool]:
    reference = weakref.ref(computation)

    def alive() -> bool:
        target = reference()
        return target is not None and not getattr(target, "_closed", False)
    return alive


class LiveEngine(Engine):
    """The plug-in's engine: runners keyed on Swift computations, streams on (hardware source id, channel)."""

    def __init__(self, workers: int | None = None) -> None:
        super().__init__(workers)
        ACTIVITIES.install()
        self._watch_lock = threading.Lock()
        self._watched: "weakref.WeakKeyDictionary[typing.Any, typing.Any]" = weakref.WeakKeyDictionary()

    def runner_for(self, key: typing.Any, processor_id: str, parameters: typing.Mapping[str, typing.Any], *,
                   title: str = "", on_result: typing.Callable[[Runner], None] | None = None,
                   alive: typing.Callable[[], bool] | None = None) -> Runner:
        """The runner of ``key`` (a Swift computation): stopped when the computation is closed or collected."""
        if alive is None and hasattr(key, "_closed"):
            alive = _computation_alive(key)
        return super().runner_for(key, processor_id, parameters, title=title, on_result=on_result, alive=alive)

    def watch_document_model(self, document_model: typing.Any) -> None:
        """Stop a computation's runner as soon as Swift removes the computation from ``document_model``."""
        if document_model is None:
            return
        with self._watch_lock:
            if document_model in self._watched:
                return
            engine_ref = weakref.ref(self)
            model_ref = weakref.ref(document_model)

            def item_removed(key: str, value: typing.Any, index: int) -> None:
                engine = engine_ref()
                if engine is None:
                    return
                if key == "computations":
                    engine.remove(value)
                    ACTIVITIES.finish_for(value)
                if key in ("computations", "data_items", "display_items"):
                    # after the removal has finished: Swift removes items inside a transaction of its own, which
                    # leaves them as zero-count keys only when it closes
                    model = model_ref()
                    event_loop = getattr(model, "event_loop", None)
                    if event_loop is not None and not event_loop.is_closed():
                        event_loop.call_soon_threadsafe(_purge_later, model_ref)
                    elif model is not None:
                        purge_transaction_counts(model)

            self._watched[document_model] = document_model.item_removed_event.listen(item_removed)

    def stream_for(self, hardware_source: typing.Any, channel_index: int) -> HardwareStream:
        """The stream of one hardware source channel (a new one if the hardware source was re-registered)."""
        key = (hardware_source.hardware_source_id, channel_index)
        with self._watch_lock:  # two computations executing at once must get the same stream
            stream = self.find_stream(key)
            if isinstance(stream, HardwareStream) and stream.hardware_source is hardware_source:
                return stream
            start_heap_trimmer(self)
            return typing.cast(HardwareStream,
                               self.add_stream(key, HardwareStream(self.scheduler, hardware_source, channel_index)))

    def close(self) -> None:
        with self._watch_lock:
            listeners = list(self._watched.values())
            self._watched = weakref.WeakKeyDictionary()
        for listener in listeners:
            listener.close()
        super().close()


#: the plug-in's engine (no thread runs until a processor receives a frame)
ENGINE = LiveEngine()
