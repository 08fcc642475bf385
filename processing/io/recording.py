"""The Recorder: a live image stream written to an HDF5 file as it arrives, on a writer thread, in bounded memory.

The file is a HyperSpy file (``hs.load`` and :func:`processing.io.stacks.open_stack` read it; the In-situ Player
plays it)::

    /                                   attrs file_format="HyperSpy", file_format_version="3.3"
    /Experiments/<title>/data           (N, H, W) frames, the camera's dtype, chunks of ~512 KiB (1, rows, W)
    /Experiments/<title>/axis-0         time axis: units "s", scale = mean frame interval (HyperSpy needs a
                                        uniform axis; the true times are below), navigate
    /Experiments/<title>/axis-1, axis-2 y, x: the frames' calibrations (scale, offset, units)
    /Experiments/<title>/metadata/...   General/title, Signal/quantity (intensity units)
    /Experiments/<title>/original_metadata/insitu/timestamps_s   (N,) s from the first frame (float64)
    /Experiments/<title>/original_metadata/insitu/frame_numbers  (N,) the source's frame numbers (gaps = drops)
    /Experiments/<title>/original_metadata/insitu                attrs: start_time_unix_s, source, frames_dropped,
                                        complete, stop_reason, metadata_json (the source's metadata)

:meth:`Recorder.add` is what the acquisition thread calls: one copy of the frame and a non-blocking queue put. When
the queue (``max_queue_bytes``) is full the frame is *dropped and counted* (``frames_dropped``, also in the file).
The writer flushes the file every ``flush_interval_s`` (sizes and counts updated), so a crash loses at most that
much; a write error or a full disk stops the recording, and the file is closed readable up to its last frame
(a reserve file is released first so that the closing metadata fits on a full disk).
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import pathlib
import queue
import shutil
import threading
import time
import typing

import h5py  # imported here, by the importing thread: a first import of h5py on the writer thread can deadlock
import numpy as np

from processing.base import Calibration, ProcessingError
from processing.io.stacks import json_safe

__all__ = ["Recorder", "RecordingStatus", "RecordingError", "HSPY_VERSION"]

HSPY_VERSION = "3.3"
_GROWTH_FRAMES = 32


class RecordingError(ProcessingError):
    """A recording cannot start (bad path, file exists...). The message says problem, value and remedy."""


@dataclasses.dataclass(frozen=True)
class RecordingStatus:
    """What a recording did so far: frames written to the file, dropped (writer behind, queue full), rejected
    (wrong shape/dtype, or after stop), queued; ``error`` is the reason it stopped early (None if it did not)."""

    path: str
    frames_written: int
    frames_dropped: int
    frames_rejected: int
    frames_queued: int
    bytes_written: int
    running: bool
    error: str | None
    duration_s: float

    def message(self) -> str:
        text = (f"{self.frames_written} frames written to {self.path}" + (", recording" if self.running else "")
                + f"; {self.frames_dropped} dropped (writer behind), {self.frames_rejected} rejected")
        return text + (f"; stopped: {self.error}" if self.error else "")


class Recorder:
    """Record frames to ``path`` (a new ``.hspy``/``.h5`` file).

    Parameters
    ----------
    path : file to create (its folder must exist). ``overwrite=False`` refuses an existing file.
    calibrations : (y, x) of the frames. intensity_units : e.g. "counts".
    metadata : json-serialisable metadata of the source, stored with the frames.
    max_queue_bytes : memory the queue of frames waiting to be written may use (at least 2 frames are queued).
    free_bytes : ``() -> bytes free on the disk`` (default: ``shutil.disk_usage``); the recording stops cleanly
        when less than ``reserve_bytes`` + 2 frames would remain.
    """

    def __init__(self, path: str | os.PathLike[str], *, calibrations: tuple[Calibration, Calibration] | None = None,
                 intensity_units: str = "", metadata: dict[str, typing.Any] | None = None, title: str = "recording",
                 source: str = "", max_queue_bytes: int = 256 * 2 ** 20, flush_interval_s: float = 0.5,
                 free_bytes: typing.Callable[[], int] | None = None, reserve_bytes: int = 16 * 2 ** 20,
                 overwrite: bool = False) -> None:
        self.path = pathlib.Path(os.fspath(path)).expanduser()
        if not self.path.parent.is_dir():
            raise RecordingError(f"cannot record to '{self.path}': the folder '{self.path.parent}' does not exist; "
                                 f"choose an existing folder.")
        if self.path.exists() and not overwrite:
            raise RecordingError(f"cannot record to '{self.path}': the file exists; choose a new file name "
                                 f"(recordings never overwrite data).")
        if not os.access(self.path.parent, os.W_OK):
            raise RecordingError(f"cannot record to '{self.path}': the folder is not writable; choose another.")
        if self.path.suffix.lower() not in (".hspy", ".h5", ".hdf5"):
            raise RecordingError(f"recordings are HDF5 files; '{self.path.name}' should end in .hspy, .h5 or .hdf5.")
        self.calibrations = calibrations or (Calibration(), Calibration())
        self.intensity_units = intensity_units
        self.metadata = json_safe(metadata or {})
        self.title = title.replace("/", "_") or "recording"
        self.source = source
        self.max_queue_bytes = int(max_queue_bytes)
        self.flush_interval_s = float(flush_interval_s)
        self.reserve_bytes = int(reserve_bytes)
        self._free_bytes = free_bytes or (lambda: shutil.disk_usage(self.path.parent).free)
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[np.ndarray[typing.Any, typing.Any], float, int] | None] | None = None
        self._shape: tuple[int, ...] | None = None
        self._dtype: np.dtype[typing.Any] | None = None
        self._written = self._dropped = self._rejected = self._bytes = 0
        self._error: str | None = None
        self._running = True
        self._stop_requested = False
        self._t0: float | None = None
        self._last_t = 0.0
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._reserve = self.path.with_name(self.path.name + ".reserve")
        self._write_hook: typing.Callable[[int], None] | None = None  # tests: raise here to simulate a failing disk

    # ------------------------------------------------------------------ the acquisition side (never blocks)
    def add(self, data: typing.Any, timestamp_s: float, frame_number: int | None = None) -> bool:
        """Queue one frame (H, W) taken at ``timestamp_s`` (s, any clock). False if it was dropped or rejected."""
        array = np.array(data, copy=True)
        with self._lock:
            if not self._running or self._stop_requested:
                self._rejected += 1
                return False
            if self._queue is None:
                if array.ndim != 2 or array.dtype.kind not in "biuf":
                    self._rejected += 1
                    return False
                self._shape, self._dtype = array.shape, array.dtype
                slots = max(2, self.max_queue_bytes // max(1, array.nbytes))
                self._queue = queue.Queue(maxsize=int(slots))
                self._thread = threading.Thread(target=self._writer, name="insitu-recorder", daemon=True)
                self._thread.start()
            elif array.shape != self._shape or array.dtype != self._dtype:
                self._rejected += 1
                return False
            number = int(frame_number) if frame_number is not None else self._written + self._dropped
            try:
                self._queue.put_nowait((array, float(timestamp_s), number))
            except queue.Full:
                self._dropped += 1
                return False
            return True

    def stop(self, timeout_s: float | None = 60.0) -> RecordingStatus:
        """Stop accepting frames, write the queued ones, close the file; returns the final status."""
        with self._lock:
            self._stop_requested = True
            q = self._queue
            if q is None:  # no frame ever came: nothing to write, no file
                self._running = False
                self._done.set()
        if q is not None:
            q.put(None)
            self._done.wait(timeout_s)
        return self.status()

    def status(self) -> RecordingStatus:
        with self._lock:
            queued = self._queue.qsize() if self._queue is not None else 0
            return RecordingStatus(str(self.path), self._written, self._dropped, self._rejected, queued,
                                   self._bytes, self._running, self._error, self._last_t)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ the writer thread
    def _writer(self) -> None:
        assert self._queue is not None and self._shape is not None and self._dtype is not None
        frame_bytes = int(np.prod(self._shape)) * self._dtype.itemsize
        f: typing.Any = None
        in_hand = 0  # a frame taken from the queue and not yet written (counted as rejected if the writer fails)
        try:
            self._make_reserve()
            f = h5py.File(self.path, "w")
            group, data, times, numbers, insitu = self._create_layout(f)
            last_flush = time.monotonic()
            while True:
                try:
                    item = self._queue.get(timeout=self.flush_interval_s)
                except queue.Empty:
                    item = ()  # type: ignore[assignment]
                if item is None:
                    break
                if item:
                    array, t_s, number = item
                    in_hand = 1
                    if self._free_bytes() < self.reserve_bytes + 2 * frame_bytes:
                        raise OSError(errno.ENOSPC, f"the disk is full (less than "
                                                    f"{(self.reserve_bytes + 2 * frame_bytes) / 2**20:.0f} MiB free)")
                    n = self._written
                    if self._t0 is None:
                        self._t0 = t_s
                        insitu.attrs["start_time_unix_s"] = float(t_s)
                    if n >= data.shape[0]:
                        for dataset in (data, times, numbers):
                            dataset.resize(n + _GROWTH_FRAMES, axis=0)
                    if self._write_hook is not None:
                        self._write_hook(n)
                    rows = self._rows_per_chunk()
                    for r0 in range(0, array.shape[0], rows):  # one chunk per call: h5py holds the GIL while
                        data[n, r0:r0 + rows] = array[r0:r0 + rows]  # it writes, the camera thread gets it between
                        time.sleep(0)
                    times[n] = t_s - self._t0
                    numbers[n] = number
                    with self._lock:
                        self._written = n + 1
                        self._bytes += frame_bytes
                        self._last_t = t_s - self._t0
                    in_hand = 0
                if time.monotonic() - last_flush >= self.flush_interval_s:
                    self._finalise(f, group, data, times, numbers, insitu, complete=False)
                    f.flush()
                    last_flush = time.monotonic()
        except Exception as error:  # disk full, write error: stop, keep what is written
            with self._lock:
                self._error = (f"{error.strerror or error}" if isinstance(error, OSError) else
                               f"{type(error).__name__}: {error}") + (
                    f"; the file keeps the {self._written} frames written before; free disk space "
                    f"(or choose another disk) and record again")
        finally:
            self._release_reserve()
            if f is not None:
                try:
                    if f.id.valid:
                        node = f["Experiments"][self.title]
                        self._finalise(f, node, node["data"], node["original_metadata/insitu/timestamps_s"],
                                       node["original_metadata/insitu/frame_numbers"],
                                       node["original_metadata/insitu"], complete=self._error is None)
                    f.close()
                except Exception as error:
                    with self._lock:
                        self._error = (self._error or "") + f" (closing the file failed: {error})"
            with self._lock:
                self._running = False
                remaining = 0
                while self._queue is not None and not self._queue.empty():
                    if self._queue.get_nowait() is not None:
                        remaining += 1
                self._rejected += remaining + in_hand  # frames still queued when an error stopped the writer
            self._done.set()

    def _create_layout(self, f: typing.Any) -> tuple[typing.Any, ...]:
        assert self._shape is not None and self._dtype is not None
        f.attrs["file_format"] = "HyperSpy"
        f.attrs["file_format_version"] = HSPY_VERSION
        group = f.create_group(f"Experiments/{self.title}")
        group.attrs["name"] = "nionswift-insitu"
        group.attrs["version"] = "1"
        h, w = self._shape
        data = group.create_dataset("data", shape=(0, h, w), maxshape=(None, h, w), dtype=self._dtype,
                                    chunks=(1, self._rows_per_chunk(), w))
        for index, (name, calibration, size) in enumerate(
                (("y", self.calibrations[0], h), ("x", self.calibrations[1], w)), start=1):
            axis = group.create_group(f"axis-{index}")
            axis.attrs.update({"name": name, "units": calibration.units, "scale": float(calibration.scale),
                               "offset": float(calibration.offset), "size": int(size), "navigate": False})
        axis = group.create_group("axis-0")
        axis.attrs.update({"name": "time", "units": "s", "scale": 1.0, "offset": 0.0, "size": 0, "navigate": True})
        group.create_group("metadata/General").attrs["title"] = self.title
        signal = group.create_group("metadata/Signal")
        signal.attrs.update({"signal_type": "", "quantity": self.intensity_units})
        group.create_group("attributes").attrs["_lazy"] = False
        group.create_group("learning_results")
        insitu = group.create_group("original_metadata/insitu")
        insitu.attrs.update({"source": self.source, "metadata_json": json.dumps(self.metadata), "frames_dropped": 0,
                             "frames_rejected": 0, "complete": False, "stop_reason": ""})
        times = insitu.create_dataset("timestamps_s", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(256,))
        numbers = insitu.create_dataset("frame_numbers", shape=(0,), maxshape=(None,), dtype=np.int64,
                                        chunks=(256,))
        return group, data, times, numbers, insitu

    def _rows_per_chunk(self) -> int:
        """Rows per HDF5 chunk: about 512 KiB, so each write holds h5py's lock (and the GIL) only briefly."""
        assert self._shape is not None and self._dtype is not None
        return int(max(1, min(self._shape[0], 2 ** 19 // max(1, self._shape[1] * self._dtype.itemsize))))

    def _finalise(self, f: typing.Any, group: typing.Any, data: typing.Any, times: typing.Any, numbers: typing.Any,
                  insitu: typing.Any, *, complete: bool) -> None:
        """Make the file consistent with the frames written so far (sizes, time axis, counts)."""
        with self._lock:
            n, dropped, rejected, error = self._written, self._dropped, self._rejected, self._error
        if complete or error is not None:
            for dataset in (data, times, numbers):
                dataset.resize(n, axis=0)
        axis = group["axis-0"]
        axis.attrs["size"] = n
        if n > 1:
            axis.attrs["scale"] = float((times[n - 1] - times[0]) / (n - 1)) or 1.0
        insitu.attrs["frames_written"] = n
        insitu.attrs["frames_dropped"] = dropped
        insitu.attrs["frames_rejected"] = rejected
        insitu.attrs["complete"] = bool(complete)
        insitu.attrs["stop_reason"] = error or ("stopped" if complete else "recording")
        if not complete and error is None and data.shape[0] != n:
            # the file must be readable at every flush: trim the growth slack (it comes back on the next frame)
            for dataset in (data, times, numbers):
                dataset.resize(n, axis=0)

    def _make_reserve(self) -> None:
        try:
            with open(self._reserve, "wb") as handle:
                handle.truncate(0)
                handle.write(b"\0" * min(self.reserve_bytes, 8 * 2 ** 20))
        except OSError:
            pass  # no reserve on a nearly full disk: the free-space check stops the recording anyway

    def _release_reserve(self) -> None:
        try:
            self._reserve.unlink()
        except OSError:
            pass
