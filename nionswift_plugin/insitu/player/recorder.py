"""Record any live camera (simulated, the In-situ Player, or real) to an HDF5 file while it plays: Swift glue.

The work is :class:`processing.io.recording.Recorder`; this module listens to the hardware source's
``xdatas_available_event`` (on Swift's acquisition thread) and hands each complete frame to ``Recorder.add`` (one
copy, a non-blocking queue put: the acquisition thread never waits for the disk). The frames' calibrations and
intensity units come from the first frame.

Scripting (Swift console or a script):

>>> from nionswift_plugin.insitu.player import recorder                          # doctest: +SKIP
>>> rec = recorder.start_recording("insitu_camera", "/data/heating_run.hspy")   # doctest: +SKIP
>>> ...                                                                         # doctest: +SKIP
>>> print(rec.stop().message())                                                 # doctest: +SKIP
"""
from __future__ import annotations

import os
import typing

from nion.instrumentation import HardwareSource

from processing.base import Calibration
from processing.io.recording import Recorder, RecordingError, RecordingStatus

__all__ = ["HardwareRecorder", "start_recording", "active_recordings"]

_active: list["HardwareRecorder"] = []


def _find_source(source: typing.Any) -> typing.Any:
    if isinstance(source, str):
        found = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(source)
        if found is None:
            ids = [s.hardware_source_id for s in HardwareSource.HardwareSourceManager().hardware_sources]
            raise RecordingError(f"no camera '{source}' to record; cameras: {ids}.")
        return found
    return getattr(source, "_hardware_source", source)  # a Facade HardwareSource, or the object itself


class HardwareRecorder:
    """One recording of one hardware source. ``stop()`` ends it and returns the final :class:`RecordingStatus`."""

    def __init__(self, source: typing.Any, path: str | os.PathLike[str], **recorder_options: typing.Any) -> None:
        self.hardware_source = _find_source(source)
        source_id = str(getattr(self.hardware_source, "hardware_source_id", ""))
        self.recorder = Recorder(path, source=source_id, title=source_id or "recording", **recorder_options)
        self.__first = True
        self.__listener = self.hardware_source.xdatas_available_event.listen(self.__xdatas_available)
        _active.append(self)

    def __xdatas_available(self, promises: typing.Sequence[typing.Any]) -> None:  # the acquisition thread
        if not promises or self.__listener is None:
            return
        xdata = promises[0].xdata
        if xdata is None or len(xdata.data_shape) != 2:
            return
        properties = xdata.metadata.get("hardware_source", {})
        if properties.get("insitu_player", {}).get("repeat"):
            return  # the player's stand-in frame at a stop: not a recorded frame
        if self.__first:
            self.__first = False
            self.recorder.calibrations = typing.cast(tuple[Calibration, Calibration], tuple(
                Calibration(float(c.offset), float(c.scale), str(c.units or "")) for c in xdata.dimensional_calibrations))
            self.recorder.intensity_units = str(xdata.intensity_calibration.units or "")
            self.recorder.metadata = {"first_frame_metadata": dict(xdata.metadata)}
        timestamp_s = xdata.timestamp.timestamp() if xdata.timestamp is not None else 0.0
        self.recorder.add(xdata.data, timestamp_s, properties.get("frame_number"))

    def status(self) -> RecordingStatus:
        return self.recorder.status()

    def stop(self, timeout_s: float | None = 60.0) -> RecordingStatus:
        listener, self.__listener = self.__listener, None
        if listener is not None:
            listener.close()
        if self in _active:
            _active.remove(self)
        return self.recorder.stop(timeout_s)


def start_recording(source: typing.Any, path: str | os.PathLike[str], **recorder_options: typing.Any) -> HardwareRecorder:
    """Record ``source`` (a hardware source id such as ``"insitu_camera"``, a hardware source or a Facade
    hardware source) to ``path`` (a new .hspy/.h5 file) from its next frame on. Raises RecordingError (problem,
    value, remedy) for a bad path or an unknown camera."""
    return HardwareRecorder(source, path, **recorder_options)


def active_recordings() -> list[HardwareRecorder]:
    return list(_active)
