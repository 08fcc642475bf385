"""The "In-situ Player" camera: a ``nion.device_kit`` camera whose frames come from a recorded stack.

Swift lists it with the cameras (hardware source ``"insitu_player"``, standard camera panel: Play/Pause). Each
``acquire_image`` (Swift's acquisition thread) blocks until :class:`processing.execution.playback.StackPlayer`
says the next frame is due, and returns it with the file's calibrations (through the camera calibrator), its
timestamp (``xdata.timestamp`` = the recording's start + the frame's stream time, so processors' time constants
are in the experiment's seconds) and ``metadata["hardware_source"]["insitu_player"]``: frame index, file time,
loop, applied drift shift.

Playing the camera (Swift's Play) starts the playback; stopping it pauses the playback; the end of a single pass
stops the camera (its last frame is the file's last). While paused no frame is delivered; when Swift stops the
camera during such a wait, the file's next frame is handed out (Swift needs a frame to end the wait; processors
therefore never see a frame twice). Only when there is no next frame (nothing loaded) the last one is repeated,
marked ``repeat: True``.

Registered always (also without simulator mode): :func:`register_player` / :func:`unregister_player`.
"""
from __future__ import annotations

import datetime
import gettext
import threading
import time
import typing

import numpy as np

from nion.data import Calibration as NionCalibration
from nion.data import DataAndMetadata
from nion.device_kit import CameraDevice
from nion.instrumentation import camera_base
from nion.instrumentation import stem_controller
from nion.swift.model import ImportExportManager
from nion.utils import Event
from nion.utils import Geometry
from nion.utils import Registry

from processing.base import Calibration
from processing.execution.playback import StackPlayer

__all__ = ["PlayerCamera", "PlayerModule", "register_player", "unregister_player", "get_player", "open_file",
           "PLAYER_ID", "PLAYER_NAME", "PLAYER_TYPE"]

_ = gettext.gettext

PLAYER_ID = "insitu_player"
PLAYER_NAME = "In-situ Player"
PLAYER_TYPE = "insitu_player"
_EMPTY_SHAPE = (64, 64)


class _Instrument:
    """What device_kit's camera asks of an instrument, for a player that has none."""

    def __init__(self, player: StackPlayer) -> None:
        self.__player = player
        self.scan_context = stem_controller.ScanContext(Geometry.IntSize(), Geometry.FloatPoint(), 0.0, 0.0)
        self.probe_position = None
        self.counts_per_electron = 1.0

    def camera_sensor_dimensions(self, camera_type: str) -> tuple[int, int]:
        stack = self.__player.stack
        return typing.cast(tuple[int, int], stack.frame_shape) if stack is not None else _EMPTY_SHAPE

    def camera_readout_area(self, camera_type: str) -> tuple[int, int, int, int]:
        h, w = self.camera_sensor_dimensions(camera_type)
        return 0, 0, h, w


class _Frames:
    """device_kit ``CameraSimulatorLike``: the current frame, unpaced (used by sequence acquisition only)."""

    def __init__(self, camera: "PlayerCamera") -> None:
        self.__camera = camera

    def close(self) -> None:
        pass

    def get_dimensional_calibrations(self, readout_area: Geometry.IntRect | None,
                                     binning_shape: Geometry.IntSize | None) -> list[NionCalibration.Calibration]:
        return self.__camera.nion_calibrations()

    def get_frame_data(self, readout_area: Geometry.IntRect, binning_shape: Geometry.IntSize, exposure_s: float,
                       scan_context: stem_controller.ScanContext,
                       probe_position: Geometry.FloatPoint | None) -> DataAndMetadata.DataAndMetadata:
        time.sleep(exposure_s)
        element = self.__camera.acquire_image()
        return DataAndMetadata.new_data_and_metadata(np.asarray(element["data"]),
                                                     dimensional_calibrations=self.__camera.nion_calibrations())


class _Calibrator:
    """Calibrations of the frames: the played file's (y, x) and intensity units."""

    def __init__(self, camera: "PlayerCamera") -> None:
        self.__camera = camera

    def get_signal_calibrations(self, frame_parameters: camera_base.CameraFrameParameters,
                                data_shape: typing.Sequence[int],
                                **kwargs: typing.Any) -> typing.Sequence[NionCalibration.Calibration]:
        calibrations = self.__camera.nion_calibrations()
        return tuple(calibrations[-len(data_shape):]) if len(data_shape) else ()

    def get_intensity_calibration(self, camera_frame_parameters: camera_base.CameraFrameParameters,
                                  **kwargs: typing.Any) -> NionCalibration.Calibration:
        stack = self.__camera.player.stack
        return NionCalibration.Calibration(units=stack.intensity_units if stack is not None else "")

    def get_counts_per_electron(self, **kwargs: typing.Any) -> float | None:
        return None

    def get_pixel_angle(self, **kwargs: typing.Any) -> float | None:
        return None


class PlayerCamera(CameraDevice.Camera):
    """device_kit camera that plays :attr:`player` (a :class:`StackPlayer`)."""

    def __init__(self, player: StackPlayer, *, camera_id: str = PLAYER_ID, camera_name: str = PLAYER_NAME) -> None:
        self.player = player
        self.__stop = threading.Event()
        self.__last: dict[str, typing.Any] | None = None
        self.__closed = False
        self.__base_unix_s = time.time()
        self.frames_delivered = 0
        self.frame_delivered_event = Event.Event()  # (DeliveredFrame): for the panel (scrub position, shift plot)
        super().__init__(camera_id, PLAYER_TYPE, camera_name, typing.cast(typing.Any, _Frames(self)),
                         typing.cast(typing.Any, _Instrument(player)))

    def close(self) -> None:
        if not self.__closed:
            self.__closed = True
            self.__stop.set()
            super().close()

    def set_time_base(self, unix_s: float) -> None:
        """Wall-clock time (s since the epoch) of the stack's first frame: the origin of the frames' timestamps."""
        self.__base_unix_s = float(unix_s)

    # ---------------------------------------------------------------- geometry follows the played stack
    @property
    def sensor_dimensions(self) -> tuple[int, int]:
        stack = self.player.stack
        return typing.cast(tuple[int, int], stack.frame_shape) if stack is not None else _EMPTY_SHAPE

    @property
    def readout_area(self) -> tuple[int, int, int, int]:
        h, w = self.sensor_dimensions
        return 0, 0, h, w

    @readout_area.setter
    def readout_area(self, readout_area_TLBR: tuple[int, int, int, int]) -> None:
        pass  # the whole recorded frame is always played

    @property
    def binning_values(self) -> list[int]:
        return [1]

    def get_expected_dimensions(self, binning: int) -> tuple[int, int]:
        return self.sensor_dimensions

    def nion_calibrations(self) -> list[NionCalibration.Calibration]:
        stack = self.player.stack
        calibrations = stack.calibrations if stack is not None else (Calibration(), Calibration())
        return [NionCalibration.Calibration(c.offset, c.scale, c.units) for c in calibrations]

    @property
    def calibration_controls(self) -> typing.Mapping[str, typing.Union[str, int, float]]:
        return {"intensity_units_value": "", "counts_per_electron_value": 1.0}

    def get_camera_calibrator(self, *, instrument_controller: camera_base.InstrumentController,
                              **kwargs: typing.Any) -> camera_base.CameraCalibrator:
        return _Calibrator(self)

    # ---------------------------------------------------------------- live: paced frames
    play_on_start = True  # False: the panel starts the camera for a step/seek, the playback stays paused

    def start_live(self) -> None:
        self.__stop.clear()
        playback = self.player.playback
        if playback is not None and self.play_on_start:
            playback.play()
        self.play_on_start = True

    def stop_live(self) -> None:
        self.__stop.set()
        playback = self.player.playback
        if playback is not None:
            playback.pause()

    def acquire_image(self) -> ImportExportManager.DataElementType:
        while True:
            try:
                delivered = self.player.next_frame(timeout_s=0.1)
            except Exception as error:  # an unreadable frame: report it, keep the camera alive
                delivered = None
                self.last_error = f"frame could not be read: {error}"
                time.sleep(0.1)
            if delivered is not None:
                break
            if self.__stop.is_set() or self.__closed or self.__swift_stopped():
                delivered = self.__next_for_stop()
                if delivered is None:
                    return self.__repeat()
                break
            time.sleep(0.02)  # paused, ended or nothing loaded: next_frame may return at once
        played = delivered.played
        self.frames_delivered += 1
        info: dict[str, typing.Any] = {"frame_index": played.index, "file_time_s": played.file_time_s,
                                       "stream_time_s": played.stream_time_s, "loop": played.loop,
                                       "lateness_s": played.lateness_s,
                                       "source": self.player.stack.source if self.player.stack is not None else ""}
        if delivered.shift_px is not None:
            info["drift_shift_px"] = [delivered.shift_px[0], delivered.shift_px[1]]
        timestamp = datetime.datetime.fromtimestamp(self.__base_unix_s + played.stream_time_s,
                                                    tz=datetime.timezone.utc).replace(tzinfo=None)
        element: dict[str, typing.Any] = {
            "version": 1, "data": delivered.data, "timestamp": timestamp,
            "properties": {"frame_number": self.frames_delivered, "integration_count": 1, "insitu_player": info}}
        self.__last = element
        self.frame_delivered_event.fire(delivered)
        playback = self.player.playback
        if playback is not None and playback.state().ended and self.hardware_source is not None:
            try:  # the end of a single pass: stop the camera with this frame as its last one (no repeat)
                self.hardware_source.stop_playing()
            except Exception:
                pass
        return element

    def __next_for_stop(self) -> typing.Any:
        """Swift stops the camera while we wait: hand out the file's next frame now (so processors never see a
        frame twice), or None when there is none (nothing loaded, end of the pass)."""
        playback = self.player.playback
        if playback is None or playback.state().ended:
            return None
        playback.step(+1)
        try:
            return self.player.next_frame(timeout_s=1.0)
        except Exception:
            return None

    last_error: str = ""
    hardware_source: typing.Any = None  # set by PlayerModule when Swift has made the hardware source

    def __swift_stopped(self) -> bool:
        """Whether Swift asked the live view to stop. Swift calls ``stop_live`` only after ``acquire_image``
        returns, so while waiting for a due frame we look at the hardware source: its acquisition task is
        cleared at once by ``stop_playing``/``abort_playing`` (private attribute of CameraHardwareSource3,
        nionswift-instrumentation 23.6; if it is absent we rely on ``stop_live``/``close``)."""
        source = self.hardware_source
        if source is None:
            return False
        task = getattr(source, "_CameraHardwareSource3__acquisition_task", False)
        return task is None

    def __repeat(self) -> dict[str, typing.Any]:
        if self.__last is None:
            return {"version": 1, "data": np.zeros(self.sensor_dimensions, np.float32),
                    "timestamp": datetime.datetime.utcnow(),
                    "properties": {"frame_number": self.frames_delivered, "integration_count": 1,
                                   "insitu_player": {"repeat": True, "frame_index": -1}}}
        element = dict(self.__last)
        properties = dict(element["properties"])
        properties["insitu_player"] = dict(properties["insitu_player"], repeat=True)
        element["properties"] = properties
        return element


class PlayerModule:
    """What is registered as ``"camera_module"`` (plus the player, for the panel and scripting)."""

    def __init__(self, player: StackPlayer, camera: PlayerCamera, settings: CameraDevice.CameraSettings) -> None:
        self.stem_controller_id = None
        self.__hardware_source: typing.Any = None
        self.camera_device = camera
        self.camera_settings = settings
        self.priority = 15
        self.player = player

    @property
    def hardware_source(self) -> typing.Any:
        return self.__hardware_source

    @hardware_source.setter
    def hardware_source(self, source: typing.Any) -> None:  # camera_base sets it after registration
        self.__hardware_source = source
        self.camera_device.hardware_source = source

    def close(self) -> None:
        self.camera_device.close()
        self.player.close()


_module: PlayerModule | None = None


def register_player() -> PlayerModule:
    """Create the player camera and register it with Swift (idempotent); returns the module."""
    global _module
    if _module is None:
        player = StackPlayer()
        camera = PlayerCamera(player)
        settings = CameraDevice.CameraSettings(PLAYER_ID, base_exposure=0.01)
        profile = {"exposure_ms": 10.0, "binning": 1}
        settings.apply_settings({"settings": [profile, profile, profile], "current_settings_index": 0,
                                 "current_settings": profile})
        _module = PlayerModule(player, camera, settings)
        Registry.register_component(_module, {"camera_module"})
    return _module


def unregister_player() -> None:
    global _module
    if _module is not None:
        module, _module = _module, None
        Registry.unregister_component(module, {"camera_module"})
        module.close()


def get_player() -> PlayerModule | None:
    """The registered player module, or None."""
    return _module


def open_file(path: str, *, dataset: str | None = None, fps: float = 20.0, speed: float = 1.0,
              loop: bool = False) -> typing.Any:
    """Scripting: open ``path`` in the In-situ Player (registering it if needed) and return its
    :class:`~processing.execution.playback.Playback` (``play()``, ``pause()``, ``step()``, ``seek()``...).
    Raises :class:`processing.io.stacks.StackError` (problem, value, remedy) for a file it cannot play."""
    from processing.io.stacks import open_stack
    module = register_player()
    stack = open_stack(path, dataset=dataset)
    start = stack.metadata.get("original", {}).get("insitu", {}).get("start_time_unix_s")
    module.camera_device.set_time_base(float(start) if isinstance(start, (int, float)) and start > 1e9
                                       else time.time())
    return module.player.load(stack, fps=fps, speed=speed, loop=loop)
