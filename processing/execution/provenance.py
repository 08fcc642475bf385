"""Provenance: what produced a result, recorded in its metadata (live and offline alike).

Every result carries one json-serialisable dict made by :func:`make_provenance`: processor id, parameter values,
suite version, source (data item uuid or file path), frame range and timestamps, and (live) frames
processed/dropped. Swift stores it under ``metadata["insitu"]["provenance"]``; files written by
:mod:`processing.io.results` store it in the signal's ``original_metadata`` / HDF5 attributes, so it reads back.

>>> p = make_provenance(processor_id="example.negate", parameters={"gain": 2.0}, source="movie.h5",
...                     frame_range=(0, 10), timestamps_s=(0.0, 0.9))
>>> p["processor_id"], p["frame_range"], p["complete"]
('example.negate', [0, 10], True)
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import typing

import numpy as np

__all__ = ["make_provenance", "suite_version", "PROVENANCE_KEY", "jsonable"]

#: the metadata key under which a result stores its provenance
PROVENANCE_KEY = "provenance"

_DISTRIBUTION = "nionswift-insitu"


def suite_version() -> str:
    """The installed suite version (``importlib.metadata``), or ``"unknown"`` when not installed."""
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def jsonable(value: typing.Any) -> typing.Any:
    """``value`` converted to plain json types (numpy scalars/arrays, tuples, paths, non-finite floats)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, typing.Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return str(value)


def make_provenance(*, processor_id: str, parameters: typing.Mapping[str, typing.Any], source: str,
                    frame_range: tuple[int, int], timestamps_s: tuple[float, float] | None,
                    frames_processed: int | None = None, frames_dropped: int | None = None,
                    complete: bool = True) -> dict[str, typing.Any]:
    """The provenance record of one result (json-serialisable).

    frame_range: (first, stop) frame numbers of the source, stop exclusive. timestamps_s: (first, last)
    acquisition times in seconds of the frames used, or None when the source has none. frames_processed /
    frames_dropped: live counts (None offline, where every frame is processed). complete: False when the run was
    interrupted (Ctrl-C, cancel, a failing worker) and the result covers only part of the frames.
    """
    first, stop = int(frame_range[0]), int(frame_range[1])
    record: dict[str, typing.Any] = {
        "processor_id": str(processor_id),
        "parameters": jsonable(dict(parameters)),
        "suite": _DISTRIBUTION,
        "suite_version": suite_version(),
        "source": str(source),
        "frame_range": [first, stop],
        "timestamps_s": None if timestamps_s is None else [float(timestamps_s[0]), float(timestamps_s[1])],
        "frames_processed": None if frames_processed is None else int(frames_processed),
        "frames_dropped": None if frames_dropped is None else int(frames_dropped),
        "complete": bool(complete),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    json.dumps(record)  # guaranteed serialisable: fails here, not when a file is written
    return record
