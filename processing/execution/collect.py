"""Assemble the *full* result of a run from the per-frame outputs of a processor.

A live processor returns, for each frame, what its display shows now: an image, a kymograph *window*, the time
plot so far, a marker. Over a recorded run we want the whole thing:

* every image output stacked into a sequence (N, H, W) (RGB: (N, H, W, 3); line plots: (N, [k,] n));
* the whole kymograph, one column per frame (n_rows, N), not the rolling window;
* the whole time plot: one point per frame that produced one (times_s (n,), values (k, n), frame numbers);
* marker positions as a table (one row per frame: frame, time, y_px, x_px, radius_px, visible);
* the notices and the frames that failed, with their messages.

:func:`reduce_outputs` turns one frame's outputs into a small :class:`FrameRecord` (pure: it runs on a Dask
worker as well as in this process, so only what the full result needs travels); :class:`Collector` assembles the
records in frame order into a :class:`ProcessorResult`.

>>> import numpy as np
>>> from processing.base import Frame
>>> from processing.live.filters import CopyProcessor
>>> from processing.execution.chunks import run_frames
>>> frames = [Frame(np.full((4, 4), float(i), np.float32), frame_number=i, timestamp_s=0.1 * i) for i in range(3)]
>>> c = Collector("insitu.copy", {}, "example", n_frames=3)
>>> for f, out in zip(frames, run_frames(CopyProcessor(), frames)):
...     c.add(reduce_outputs(out, f.frame_number, f.timestamp_s))
>>> r = c.result(complete=True)
>>> r.images["image"].data.shape, r.images["image"].frame_numbers.tolist()
((3, 4, 4), [0, 1, 2])
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import (Calibration, CircleAnnotation, ImageOutput, KymographOutput, LinePlotOutput, Notice,
                             Outputs, RGBImageOutput, TimeSeriesOutput)
from processing.execution.provenance import make_provenance

__all__ = ["FrameRecord", "reduce_outputs", "failed_record", "Collector", "ProcessorResult", "SequenceResult",
           "KymographResult", "TimeSeriesResult", "MarkerTable"]

F64 = NDArray[np.float64]


@dataclasses.dataclass
class FrameRecord:
    """What the full result needs from one frame's outputs (see :func:`reduce_outputs`).

    items: output name -> (kind, payload, description); error: the message when the frame failed (then items is
    empty and the frame counts as skipped).
    """

    frame_number: int
    timestamp_s: float
    items: dict[str, tuple[str, typing.Any, dict[str, typing.Any]]] = dataclasses.field(default_factory=dict)
    error: str | None = None


def reduce_outputs(outputs: Outputs, frame_number: int, timestamp_s: float) -> FrameRecord:
    """One frame's outputs reduced to what the full result keeps: images whole, the kymograph's newest column,
    the time plot's newest point (None when this frame added none), the marker, the notices."""
    record = FrameRecord(int(frame_number), float(timestamp_s))
    for out in outputs:
        if isinstance(out, ImageOutput):
            record.items[out.name] = ("image", np.asarray(out.data), {
                "calibrations": out.calibrations, "intensity_units": out.intensity_units, "title": out.title})
        elif isinstance(out, RGBImageOutput):
            record.items[out.name] = ("rgb", np.asarray(out.data, np.uint8), {
                "calibrations": out.calibrations, "title": out.title})
        elif isinstance(out, LinePlotOutput):
            record.items[out.name] = ("line", np.asarray(out.data), {
                "x_calibration": out.x_calibration, "intensity_units": out.intensity_units,
                "labels": tuple(out.labels), "title": out.title})
        elif isinstance(out, KymographOutput):
            column = np.asarray(out.data)[:, -1].copy() if np.asarray(out.data).shape[1] else None
            record.items[out.name] = ("kymograph", column, {
                "y_calibration": out.y_calibration, "intensity_units": out.intensity_units, "title": out.title})
        elif isinstance(out, TimeSeriesOutput):
            times = np.asarray(out.times_s, np.float64)
            values = np.asarray(out.values, np.float64).reshape(-1, times.size) if times.size else None
            point = None
            if values is not None and times.size and times[-1] == float(timestamp_s):
                point = values[:, -1].copy()
            record.items[out.name] = ("timeseries", point, {
                "labels": tuple(out.labels), "units": tuple(out.units), "title": out.title})
        elif isinstance(out, CircleAnnotation):
            record.items[out.name] = ("circle", (float(out.center_px[0]), float(out.center_px[1]),
                                                 float(out.radius_px), bool(out.visible)), {"label": out.label})
        elif isinstance(out, Notice):
            record.items[out.name] = ("notice", str(out.text), {})
    return record


def failed_record(frame_number: int, timestamp_s: float, message: str) -> FrameRecord:
    """The record of a frame that could not be processed (NaN pixels, wrong shape...): kept as a message."""
    return FrameRecord(int(frame_number), float(timestamp_s), error=str(message))


# ------------------------------------------------------------------------------------------------ full results

@dataclasses.dataclass
class SequenceResult:
    """An image (kind "image": data (N, H, W)), colour image ("rgb": (N, H, W, 3) uint8) or line plot ("line":
    (N, [k,] n)) output over the frames. frame_numbers, times_s: (N,). calibrations: of the per-frame axes
    ((y, x) for images, (x,) for lines)."""

    name: str
    kind: str
    data: NDArray[typing.Any]
    frame_numbers: NDArray[np.int64]
    times_s: F64
    calibrations: tuple[Calibration, ...]
    intensity_units: str = ""
    labels: tuple[str, ...] = ()
    title: str = ""


@dataclasses.dataclass
class KymographResult:
    """The whole kymograph: data (n_rows, N), one column per frame; rows calibrated by ``y_calibration``
    (spatial frequency); times_s (N,) the column times."""

    name: str
    data: NDArray[np.float32]
    y_calibration: Calibration
    frame_numbers: NDArray[np.int64]
    times_s: F64
    intensity_units: str = ""
    title: str = ""


@dataclasses.dataclass
class TimeSeriesResult:
    """The whole time plot: one point per frame that produced one. times_s (n,), values (k, n)."""

    name: str
    times_s: F64
    values: F64
    frame_numbers: NDArray[np.int64]
    labels: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    title: str = ""


@dataclasses.dataclass
class MarkerTable:
    """Marker positions, one row per frame: frame_numbers, times_s, center_y_px, center_x_px, radius_px (N,)
    in source-frame pixels, visible (N,) bool (False: nothing tracked in that frame)."""

    name: str
    frame_numbers: NDArray[np.int64]
    times_s: F64
    center_y_px: F64
    center_x_px: F64
    radius_px: F64
    visible: NDArray[np.bool_]
    label: str = ""

    def rows(self) -> list[dict[str, typing.Any]]:
        """The table as a list of dicts (one per frame)."""
        return [{"frame": int(f), "time_s": float(t), "y_px": float(y), "x_px": float(x), "radius_px": float(r),
                 "visible": bool(v)} for f, t, y, x, r, v in zip(self.frame_numbers, self.times_s, self.center_y_px,
                                                                 self.center_x_px, self.radius_px, self.visible)]


@dataclasses.dataclass
class ProcessorResult:
    """The full result of one processor over a run (see the module docstring).

    provenance: :func:`processing.execution.provenance.make_provenance` record (``complete`` False when the run
    stopped early). notices: (frame, name, text). failed_frames: (frame, message) for frames skipped.
    times_are_frames: True when the source had no timestamps (times are then frame numbers, units "frame").
    """

    processor_id: str
    parameters: dict[str, typing.Any]
    provenance: dict[str, typing.Any]
    images: dict[str, SequenceResult] = dataclasses.field(default_factory=dict)
    kymographs: dict[str, KymographResult] = dataclasses.field(default_factory=dict)
    time_series: dict[str, TimeSeriesResult] = dataclasses.field(default_factory=dict)
    markers: dict[str, MarkerTable] = dataclasses.field(default_factory=dict)
    notices: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)
    failed_frames: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    times_are_frames: bool = False

    @property
    def complete(self) -> bool:
        return bool(self.provenance.get("complete", False))

    @property
    def frames_processed(self) -> int:
        return int(self.provenance.get("frames_processed") or 0)


#: an image sequence larger than this is kept in an anonymous temporary file (memory-mapped), not in RAM, so a
#: run over a stack larger than memory also keeps its per-frame outputs in bounded memory
IN_MEMORY_LIMIT_BYTES = 512 * 2 ** 20


def _allocate(shape: tuple[int, ...], dtype: typing.Any) -> NDArray[typing.Any]:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes <= IN_MEMORY_LIMIT_BYTES:
        return np.zeros(shape, dtype)
    import tempfile
    return np.memmap(tempfile.TemporaryFile(prefix="insitu-sequence-"), dtype=dtype, mode="w+", shape=shape)


class Collector:
    """Assembles :class:`FrameRecord` s, added in frame order, into a :class:`ProcessorResult`.

    n_frames: the number of frames expected (image sequences are allocated once, (n_frames, H, W), and trimmed
    to the frames actually added when the run stops early).
    """

    def __init__(self, processor_id: str, parameters: typing.Mapping[str, typing.Any], source: str, *,
                 n_frames: int, times_are_frames: bool = False) -> None:
        self.processor_id = processor_id
        self.parameters = dict(parameters)
        self.source = source
        self.n_frames = int(n_frames)
        self.times_are_frames = times_are_frames
        self._frames: list[int] = []
        self._times: list[float] = []
        self._processed = 0
        self._sequences: dict[str, tuple[str, NDArray[typing.Any], list[int], dict[str, typing.Any]]] = {}
        self._kymo: dict[str, tuple[list[NDArray[typing.Any]], list[int], dict[str, typing.Any]]] = {}
        self._series: dict[str, tuple[list[NDArray[np.float64]], list[int], list[float], dict[str, typing.Any]]] = {}
        self._markers: dict[str, tuple[list[tuple[float, float, float, bool]], list[int], dict[str, typing.Any]]] = {}
        self.notices: list[tuple[int, str, str]] = []
        self.failed_frames: list[tuple[int, str]] = []

    @property
    def frames_added(self) -> int:
        return len(self._frames)

    def add(self, record: FrameRecord) -> None:
        """Add the next frame's record (frames in increasing order)."""
        position = len(self._frames)
        self._frames.append(record.frame_number)
        self._times.append(record.timestamp_s)
        if record.error is not None:
            self.failed_frames.append((record.frame_number, record.error))
            return
        self._processed += 1
        for name, (kind, payload, info) in record.items.items():
            if kind in ("image", "rgb", "line"):
                self._add_sequence(name, kind, np.asarray(payload), position, info, record.frame_number)
            elif kind == "kymograph" and payload is not None:
                columns, frames, _ = self._kymo.setdefault(name, ([], [], info))
                if columns and columns[0].shape != payload.shape:
                    self.notices.append((record.frame_number, name, f"the kymograph's height changed from "
                                         f"{columns[0].shape[0]} to {payload.shape[0]} rows; column skipped."))
                    continue
                columns.append(payload)
                frames.append(position)
            elif kind == "timeseries":
                points, frames, times, _ = self._series.setdefault(name, ([], [], [], info))
                if payload is not None:
                    points.append(np.asarray(payload, np.float64))
                    frames.append(position)
            elif kind == "circle":
                rows, frames, _ = self._markers.setdefault(name, ([], [], info))
                rows.append(payload)
                frames.append(position)
            elif kind == "notice":
                self.notices.append((record.frame_number, name, payload))

    def _add_sequence(self, name: str, kind: str, data: NDArray[typing.Any], position: int,
                      info: dict[str, typing.Any], frame_number: int) -> None:
        entry = self._sequences.get(name)
        if entry is None:
            store = _allocate((max(self.n_frames, position + 1), *data.shape), data.dtype)
            entry = (kind, store, [], info)
            self._sequences[name] = entry
        _, store, positions, _ = entry
        if store.shape[1:] != data.shape:
            self.notices.append((frame_number, name, f"output '{name}' changed shape from {store.shape[1:]} to "
                                 f"{data.shape} at frame {frame_number}; that frame is left out of the sequence."))
            return
        index = len(positions)
        if index >= store.shape[0]:
            grown = _allocate((2 * store.shape[0], *store.shape[1:]), store.dtype)
            grown[:index] = store[:index]
            store = grown
            self._sequences[name] = (kind, store, positions, info)
        store[index] = data
        positions.append(position)

    def result(self, *, complete: bool, frames_dropped: int | None = None) -> ProcessorResult:
        """The full result of the frames added so far; ``complete`` False marks a run stopped early."""
        frames = np.asarray(self._frames, np.int64)
        times = np.asarray(self._times, np.float64)
        first = int(frames[0]) if frames.size else 0
        stop = int(frames[-1]) + 1 if frames.size else 0
        stamps = None if self.times_are_frames or not times.size else (float(times[0]), float(times[-1]))
        provenance = make_provenance(
            processor_id=self.processor_id, parameters=self.parameters, source=self.source,
            frame_range=(first, stop), timestamps_s=stamps, frames_processed=self._processed,
            frames_dropped=len(self.failed_frames) if frames_dropped is None else frames_dropped,
            complete=complete)
        result = ProcessorResult(self.processor_id, dict(self.parameters), provenance, notices=list(self.notices),
                                 failed_frames=list(self.failed_frames), times_are_frames=self.times_are_frames)
        for name, (kind, store, positions, info) in self._sequences.items():
            idx = np.asarray(positions, np.int64)
            cals = (info["x_calibration"],) if kind == "line" else tuple(info["calibrations"])
            result.images[name] = SequenceResult(
                name, kind, store[:len(positions)], frames[idx], times[idx], cals, info.get("intensity_units", ""),
                tuple(info.get("labels", ())), info.get("title", ""))
        for name, (columns, positions, info) in self._kymo.items():
            idx = np.asarray(positions, np.int64)
            data = np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((0, 0), np.float32)
            result.kymographs[name] = KymographResult(name, data, info["y_calibration"], frames[idx], times[idx],
                                                      info.get("intensity_units", ""), info.get("title", ""))
        for name, (points, positions, _, info) in self._series.items():
            idx = np.asarray(positions, np.int64)
            k = len(info.get("labels", ())) or (points[0].size if points else 0)
            values = np.stack(points, axis=1) if points else np.zeros((k, 0), np.float64)
            result.time_series[name] = TimeSeriesResult(name, times[idx], values, frames[idx],
                                                        tuple(info.get("labels", ())), tuple(info.get("units", ())),
                                                        info.get("title", ""))
        for name, (rows, positions, info) in self._markers.items():
            idx = np.asarray(positions, np.int64)
            table = np.asarray(rows, np.float64).reshape(-1, 4)
            result.markers[name] = MarkerTable(name, frames[idx], times[idx], table[:, 0], table[:, 1], table[:, 2],
                                               table[:, 3].astype(bool), info.get("label", ""))
        return result
