"""The simulated in-situ TEM camera: an :class:`~instrument_sim.insitu_scene.InSituScene` behind a
``nion.device_kit`` camera, so that Swift sees a camera hardware source (``"insitu_camera"``, "In-situ Camera")
with the standard camera panel (Play/Pause, exposure, binning).

* :class:`InSituCameraSimulator` is the ``CameraSimulatorLike``: each frame renders the scene at the instrument's
  clock time, for the instrument's content offset (sample drift minus stage position), within the readout area,
  with the binning (sums) and exposure (dose = beam current x exposure spread over the sensor; shot noise), in
  counts (``counts_per_electron`` of the instrument, 1 by default). Calibrations: nm, ``pixel_size_nm * binning``.
* :class:`InSituCamera` is ``device_kit.CameraDevice.Camera`` with nm calibrations and an idempotent ``close``.
* :func:`make_insitu_camera` builds both plus the settings (Run: 50 ms, binning 1) and the ``CameraModule``.

Optics, energy filter and camera artefacts (all off by default, so the camera renders the scene as before):

* the instrument's **C10** (defocus, m), **C30** (Cs, m) and **EHT** (V) pass the scene through a weak-object
  contrast transfer (:mod:`instrument_sim.ctf`; ``simulator.optics`` holds the focal spread, convergence and the
  phase/amplitude ratio) whenever C10 or C30 is non-zero;
* the energy filter (controls ``EFTEM_Slit`` = 1, ``EFTEM_EnergyOffset`` eV, ``EFTEM_SlitWidth`` eV) replaces the
  scene by energy-filtered images of ``simulator.eftem_specimen`` (default the DyScO3 perovskite; see
  :mod:`instrument_sim.energy_filter`), with the same drift;
* ``simulator.artefacts = CameraArtefacts(...)`` switches on bias, dark current, gain non-uniformity, hot/dead pixels,
  read noise and saturation (:class:`instrument_sim.detector.CameraArtefacts`); frames are then integer counts.

The frame record holds the true defocus, Cs, high tension, energy offset and slit of each frame.

Ground truth: ``simulator.truth(t_s)`` (a :class:`~instrument_sim.insitu_scene.SceneTruth` in full-frame pixel
coordinates) and ``simulator.frame_log`` (time and offset of the last rendered frames). Live frames in Swift carry
their record (time ``t_s`` of the start of the exposure, content offset, exposure, area, binning, dose) in
``xdata.metadata["hardware_source"]["insitu_sim"]``; sequences (``acquire_sequence``) do not, so freeze the clock
(``instrument.clock = ManualClock(t)``) when a test needs their time.
"""
from __future__ import annotations

import collections
import dataclasses
import gettext
import threading
import typing

import numpy as np
from numpy.typing import NDArray

from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.device_kit import CameraDevice
from nion.instrumentation import camera_base
from nion.instrumentation import stem_controller
from nion.swift.model import ImportExportManager
from nion.utils import Geometry

from instrument_sim import ctf
from instrument_sim.detector import CameraArtefacts
from instrument_sim.energy_filter import (ENERGY_OFFSET_CONTROL, SLIT_CONTROL, SLIT_WIDTH_CONTROL,
                                          EnergyFilteredSpecimen, FilteredView)
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.insitu_scene import InSituScene, SceneTruth
from instrument_sim.instrument import SimInstrument
from instrument_sim.noise import shot_noise

__all__ = ["InSituCameraSimulator", "InSituCamera", "InSituCameraParts", "FrameRecord", "make_insitu_camera",
           "SimulatorSeriesDevice",
           "CAMERA_ID", "CAMERA_NAME", "CAMERA_TYPE", "ELEMENTARY_CHARGE_C"]

_ = gettext.gettext

CAMERA_ID = "insitu_camera"
#: specimen margin (unbinned px) around the field on which the contrast transfer is computed
CTF_MARGIN_PX = 64
CAMERA_NAME = "In-situ Camera"
CAMERA_TYPE = "insitu"
ELEMENTARY_CHARGE_C = 1.602176634e-19


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """What one rendered frame showed: time (s), content offset ``(y, x)`` nm, exposure (s), readout area
    ``(top, left, bottom, right)`` px, binning, dose (e per unbinned px at intensity 1)."""

    t_s: float
    offset_nm: tuple[float, float]
    exposure_s: float
    area: tuple[int, int, int, int]
    binning: int
    dose_e_per_px: float
    defocus_m: float = 0.0
    cs_m: float = 0.0
    high_tension_V: float = 200e3
    slit_in: bool = False
    energy_offset_eV: float = 0.0
    slit_width_eV: float = 0.0
    artefacts: bool = False

    def as_metadata(self) -> dict[str, typing.Any]:
        """JSON-serialisable form (stored under ``metadata["hardware_source"]["insitu_sim"]`` of live frames)."""
        return {"t_s": self.t_s, "offset_nm": list(self.offset_nm), "exposure_s": self.exposure_s,
                "area": list(self.area), "binning": self.binning, "dose_e_per_px": self.dose_e_per_px,
                "defocus_m": self.defocus_m, "cs_m": self.cs_m, "high_tension_V": self.high_tension_V,
                "slit_in": self.slit_in, "energy_offset_eV": self.energy_offset_eV,
                "slit_width_eV": self.slit_width_eV, "artefacts": self.artefacts}


class InSituCameraSimulator:
    """Renders :class:`InSituScene` frames for device_kit's camera (``CameraSimulatorLike``).

    Parameters
    ----------
    instrument : SimInstrument
        Clock, drift, stage, beam current, blanking and gain come from here.
    scene : InSituScene
        The scene (its ``shape_px`` is the sensor shape).
    seed : int
        Seed of the shot noise.
    """

    def __init__(self, instrument: SimInstrument, scene: InSituScene, *, seed: int = 0, log_length: int = 256) -> None:
        self.instrument = instrument
        self.scene = scene
        self.__rng = np.random.default_rng([seed, 0x15C])
        self.__lock = threading.Lock()
        self.__frame_log: collections.deque[FrameRecord] = collections.deque(maxlen=log_length)
        # (timestamp device_kit gave the frame, its record) of the last 16 frames before the newest: to find the
        # record of a delivered frame however late device_kit's acquire_image looks it up. device_kit stamps a
        # frame at the end of its exposure, before it asks for the next one, so a frame's stamp is final when the
        # next frame is rendered; the values are kept, not the frames (device_kit hands out deep copies, so a
        # reference to the frame it was given may die before the lookup)
        self.__delivered: collections.deque[tuple[typing.Any, FrameRecord]] = collections.deque(maxlen=16)
        self.__newest: tuple[DataAndMetadata.DataAndMetadata, FrameRecord] | None = None
        #: optics parameters of the contrast transfer (active when C10 or C30 is non-zero)
        self.optics = ctf.Optics()
        #: switchable camera artefacts (None = ideal counting camera)
        self.artefacts: CameraArtefacts | None = None
        #: the specimen seen with the energy-filter slit in (created on first use)
        self.eftem_specimen: EnergyFilteredSpecimen | None = None
        self.__eftem_view: FilteredView | None = None

    def close(self) -> None:
        pass

    @property
    def sensor_shape_px(self) -> tuple[int, int]:
        return self.scene.shape_px

    @property
    def frame_log(self) -> list[FrameRecord]:
        """The last rendered frames, oldest first."""
        with self.__lock:
            return list(self.__frame_log)

    def dose_e_per_px(self, exposure_s: float) -> float:
        """Electrons per unbinned pixel (at intensity 1) in ``exposure_s``: beam current spread over the sensor."""
        if self.instrument.is_blanked:
            return 0.0
        h, w = self.scene.shape_px
        return max(0.0, self.instrument.beam_current_A) / ELEMENTARY_CHARGE_C / (h * w) * exposure_s

    def truth(self, t_s: float | None = None) -> SceneTruth:
        """Ground truth at ``t_s`` (default: now), for the instrument's current stage position."""
        t = self.instrument.time_s() if t_s is None else float(t_s)
        return self.scene.truth(t, offset_nm=self.instrument.content_offset_nm(t))

    def get_dimensional_calibrations(
            self, readout_area: Geometry.IntRect | None,
            binning_shape: Geometry.IntSize | None) -> typing.Sequence[Calibration.Calibration]:
        by, bx = (binning_shape.height, binning_shape.width) if binning_shape else (1, 1)
        px = self.scene.pixel_size_nm
        return [Calibration.Calibration(0.0, px * by, "nm"), Calibration.Calibration(0.0, px * bx, "nm")]

    def render(self, *, t_s: float, exposure_s: float, area: tuple[int, int, int, int] | None = None,
               binning: int = 1) -> NDArray[np.float32]:
        """One frame in counts at ``t_s`` (no device_kit involved); records it in :attr:`frame_log`."""
        return self.__render(t_s=t_s, exposure_s=exposure_s, area=area, binning=binning)[0]

    def __render(self, *, t_s: float, exposure_s: float, area: tuple[int, int, int, int] | None,
                 binning: int) -> tuple[NDArray[np.float32], FrameRecord]:
        h, w = self.scene.shape_px
        area = area if area is not None else (0, 0, h, w)
        offset = self.instrument.content_offset_nm(t_s)
        dose = self.dose_e_per_px(exposure_s)
        control = self.__control
        defocus_m, cs_m, eht_V = control("C10", 0.0), control("C30", 0.0), control("EHT", 200e3)
        slit_in = control(SLIT_CONTROL, 0.0) >= 0.5
        energy_eV, slit_eV = control(ENERGY_OFFSET_CONTROL, 0.0), control(SLIT_WIDTH_CONTROL, 10.0)
        top, left, bottom, right = (int(v) for v in area)
        with self.__lock:
            if slit_in:
                expected = self.__eftem_expected(offset, dose, energy_eV, slit_eV, (top, left, bottom, right),
                                                 binning, float(self.instrument.true_energy_offset_eV(t_s)))
                level = float(dose * binning * binning)
            optics_on = defocus_m != 0.0 or cs_m != 0.0
            # the contrast transfer delocalises: compute it on a margin of specimen around the field (reflected
            # for the filtered view), then crop, so nothing wraps around from the opposite edge
            margin = (CTF_MARGIN_PX // binning) if optics_on else 0
            if slit_in:
                if margin:
                    expected = np.pad(expected, margin, mode="reflect")
            else:
                expected = self.scene.clean_image(t_s, offset_nm=offset, area=area, binning=binning,
                                                  margin_px=margin * binning)
                expected *= np.float32(dose)
                level = float(dose * binning * binning)
            if optics_on:
                expected = ctf.apply_ctf(expected, pixel_size_nm=self.scene.pixel_size_nm * binning,
                                         defocus_m=defocus_m, cs_m=cs_m, high_tension_V=eht_V,
                                         mean_level=float(np.mean(expected)) if slit_in else level,
                                         optics=self.optics)
                if margin:
                    expected = np.ascontiguousarray(expected[margin:-margin, margin:-margin])
            frame = shot_noise(expected, self.__rng)
            artefacts = self.artefacts
            record = FrameRecord(t_s, (float(offset[0]), float(offset[1])), exposure_s, (top, left, bottom, right),
                                 binning, dose, defocus_m=defocus_m, cs_m=cs_m, high_tension_V=eht_V,
                                 slit_in=slit_in, energy_offset_eV=energy_eV if slit_in else 0.0,
                                 slit_width_eV=slit_eV if slit_in else 0.0, artefacts=artefacts is not None)
            self.__frame_log.append(record)
            gain = float(self.instrument.counts_per_electron)
            if gain != 1.0:
                frame *= np.float32(gain)
            if artefacts is not None:
                frame = artefacts.read(frame, exposure_s=exposure_s, rng=self.__rng, area=(top, left, bottom, right),
                                       binning=binning, sensor_shape=self.scene.shape_px)
        return frame, record

    def __control(self, name: str, default: float) -> float:
        value = self.instrument.get_value(name)
        return float(default if value is None else value)

    def __eftem_expected(self, offset: NDArray[np.float64], dose: float, energy_eV: float, slit_eV: float,
                         area: tuple[int, int, int, int], binning: int, shift_eV: float) -> NDArray[np.float32]:
        if self.eftem_specimen is None:
            self.eftem_specimen = EnergyFilteredSpecimen()
        view = self.__eftem_view
        if view is None or view.specimen is not self.eftem_specimen:
            view = self.__eftem_view = FilteredView(self.eftem_specimen, self.scene.shape_px,
                                                    self.scene.pixel_size_nm)
        full = view.image((float(offset[0]), float(offset[1])), energy_offset_eV=energy_eV,
                          slit_width_eV=max(slit_eV, 1e-3), electrons_per_px=dose, shift_eV=shift_eV)
        top, left, bottom, right = area
        cut = full[top:bottom, left:right]
        if binning > 1:
            hb, wb = (bottom - top) // binning, (right - left) // binning
            cut = cut[:hb * binning, :wb * binning].reshape(hb, binning, wb, binning).sum(axis=(1, 3))
        return np.ascontiguousarray(cut, dtype=np.float32)

    def eftem_truth(self, y_px: float, x_px: float, *, energy_offset_eV: float, slit_width_eV: float,
                    t_s: float | None = None) -> float:
        """Truth: fraction of the beam through the slit at full-frame pixel (y, x) at time ``t_s`` (default now),
        i.e. the expected counts of that pixel per electron of dose."""
        if self.eftem_specimen is None:
            self.eftem_specimen = EnergyFilteredSpecimen()
        t = self.instrument.time_s() if t_s is None else float(t_s)
        offset = self.instrument.content_offset_nm(t)
        px = self.scene.pixel_size_nm
        return self.eftem_specimen.slit_integral(y_px * px - float(offset[0]), x_px * px - float(offset[1]),
                                                 energy_offset_eV=energy_offset_eV, slit_width_eV=slit_width_eV,
                                                 shift_eV=float(self.instrument.true_energy_offset_eV(t)))

    def record_for_timestamp(self, timestamp: typing.Any) -> FrameRecord | None:
        """The record of the delivered frame with this timestamp (device_kit stamps each frame at the end of its
        exposure), or None if it is not among the last 16 frames."""
        with self.__lock:
            newest = self.__newest
            if newest is not None and newest[0].timestamp == timestamp:
                return newest[1]
            for stamp, record in reversed(self.__delivered):
                if stamp == timestamp:
                    return typing.cast(FrameRecord, record)
        return None

    def get_frame_data(self, readout_area: Geometry.IntRect, binning_shape: Geometry.IntSize, exposure_s: float,
                       scan_context: stem_controller.ScanContext,
                       probe_position: Geometry.FloatPoint | None) -> DataAndMetadata.DataAndMetadata:
        if binning_shape.height != binning_shape.width:
            raise SimulatorParameterError(f"the in-situ camera supports square binning only; got {binning_shape}.")
        h, w = self.scene.shape_px
        top = max(0, readout_area.top)
        left = max(0, readout_area.left)
        bottom = min(h, readout_area.bottom)
        right = min(w, readout_area.right)
        t_s = self.instrument.time_s()
        frame, record = self.__render(t_s=t_s, exposure_s=exposure_s, area=(top, left, bottom, right),
                                      binning=binning_shape.height)
        xdata = DataAndMetadata.new_data_and_metadata(
            frame, intensity_calibration=Calibration.Calibration(units="counts"),
            dimensional_calibrations=self.get_dimensional_calibrations(readout_area, binning_shape),
            metadata={"insitu_sim": record.as_metadata()})
        with self.__lock:
            if self.__newest is not None:   # its stamp is final now (see __init__)
                self.__delivered.append((self.__newest[0].timestamp, self.__newest[1]))
            # the newest frame is held until the next one: device_kit stamps it at the end of its exposure
            self.__newest = (xdata, record)
        return xdata


class _SimulatorCalibrator:
    """``camera_base.CameraCalibrator`` taking the calibrations from the simulator (nm) instead of controls."""

    def __init__(self, simulator: InSituCameraSimulator) -> None:
        self.__simulator = simulator

    def get_signal_calibrations(
            self, frame_parameters: camera_base.CameraFrameParameters, data_shape: typing.Sequence[int],
            **kwargs: typing.Any) -> typing.Sequence[Calibration.Calibration]:
        binning = frame_parameters.binning
        calibrations = self.__simulator.get_dimensional_calibrations(None, Geometry.IntSize(binning, binning))
        return tuple(calibrations[-len(data_shape):]) if len(data_shape) else ()

    def get_intensity_calibration(self, camera_frame_parameters: camera_base.CameraFrameParameters,
                                  **kwargs: typing.Any) -> Calibration.Calibration:
        return Calibration.Calibration(units="counts")

    def get_counts_per_electron(self, **kwargs: typing.Any) -> float | None:
        return float(self.__simulator.instrument.counts_per_electron)

    def get_pixel_angle(self, **kwargs: typing.Any) -> float | None:
        return None


class InSituCamera(CameraDevice.Camera):
    """device_kit camera with simulator calibrations (nm) and an idempotent :meth:`close`."""

    def __init__(self, camera_id: str, camera_type: str, camera_name: str, simulator: InSituCameraSimulator,
                 instrument: SimInstrument) -> None:
        super().__init__(camera_id, camera_type, camera_name, simulator, instrument)
        self.__sim = simulator
        self.__closed = False

    def close(self) -> None:
        if not self.__closed:
            self.__closed = True
            super().close()

    def acquire_image(self) -> ImportExportManager.DataElementType:
        """device_kit's frame, plus the frame's ground-truth record in ``properties["insitu_sim"]`` (which Swift
        puts into ``xdata.metadata["hardware_source"]["insitu_sim"]``; with integration, the last frame's)."""
        element = super().acquire_image()
        record = self.__sim.record_for_timestamp(element.get("timestamp"))
        if record is not None:
            element.setdefault("properties", dict())["insitu_sim"] = record.as_metadata()
        return element

    @property
    def insitu_simulator(self) -> InSituCameraSimulator:
        return self.__sim

    @property
    def calibration_controls(self) -> typing.Mapping[str, typing.Union[str, int, float]]:
        px = self.__sim.scene.pixel_size_nm
        return {"x_scale_value": px, "x_offset_value": 0.0, "x_units_value": "nm",
                "y_scale_value": px, "y_offset_value": 0.0, "y_units_value": "nm",
                "intensity_units_value": "counts",
                "counts_per_electron_value": float(self.__sim.instrument.counts_per_electron)}

    def get_camera_calibrator(self, *, instrument_controller: camera_base.InstrumentController,
                              **kwargs: typing.Any) -> camera_base.CameraCalibrator:
        return _SimulatorCalibrator(self.__sim)


@dataclasses.dataclass
class InSituCameraParts:
    """Everything :func:`make_insitu_camera` built; ``module`` is what gets registered as ``"camera_module"``."""

    simulator: InSituCameraSimulator
    device: InSituCamera
    settings: CameraDevice.CameraSettings
    module: CameraDevice.CameraModule

    def close(self) -> None:
        self.device.close()


def make_insitu_camera(instrument: SimInstrument, scene: InSituScene, *, seed: int = 0, exposure_ms: float = 50.0,
                       camera_id: str = CAMERA_ID, camera_name: str = CAMERA_NAME,
                       camera_type: str = CAMERA_TYPE) -> InSituCameraParts:
    """Build the in-situ camera (device + settings + module). Constructing the device registers
    ``"<camera_id>_device"`` in the Registry (device_kit does this); :meth:`InSituCameraParts.close` undoes it.

    Profiles: Run ``exposure_ms`` / binning 1, Tune ``exposure_ms`` / binning 2, Snap ``4 * exposure_ms`` / binning 1.
    """
    if not (exposure_ms > 0.0):
        raise SimulatorParameterError(f"exposure_ms must be > 0; got {exposure_ms!r}.")
    instrument.set_camera_shape(camera_type, scene.shape_px)
    for name, value in ((SLIT_CONTROL, 0.0), (ENERGY_OFFSET_CONTROL, 0.0), (SLIT_WIDTH_CONTROL, 10.0)):
        if not instrument.sim_value_manager.has_control(name):
            instrument.add_control(name, value)
    simulator = InSituCameraSimulator(instrument, scene, seed=seed)
    device = InSituCamera(camera_id, camera_type, _(camera_name), simulator, instrument)
    settings = CameraDevice.CameraSettings(camera_id, base_exposure=exposure_ms / 1000.0)
    profiles = [{"exposure_ms": exposure_ms, "binning": 1}, {"exposure_ms": exposure_ms, "binning": 2},
                {"exposure_ms": 4 * exposure_ms, "binning": 1}]
    settings.apply_settings({"settings": profiles, "current_settings_index": 0, "current_settings": profiles[0]})
    module = CameraDevice.CameraModule(instrument.instrument_id, device, settings)
    return InSituCameraParts(simulator, device, settings, module)


class SimulatorSeriesDevice:
    """The in-situ camera simulator as a series device (:class:`processing.stack.series.SeriesDevice`) without
    Swift: frames rendered at the instrument's clock; with a :class:`~instrument_sim.instrument.ManualClock` the
    clock advances by each exposure (plus ``overhead_s``), so the sample drifts during the series as it would.
    Darks blank the beam (``C_Blank``)."""

    def __init__(self, simulator: InSituCameraSimulator, *, overhead_s: float = 0.05) -> None:
        self.simulator = simulator
        self.instrument = simulator.instrument
        self.overhead_s = float(overhead_s)
        #: the frame record of every acquire() (not darks), in order: the ground truth of each frame
        self.records: list[FrameRecord] = []

    @property
    def full_scale_counts(self) -> float:
        artefacts = self.simulator.artefacts
        return float(artefacts.full_scale_counts) if artefacts is not None else float(2 ** 32 - 1)

    def has_control(self, name: str) -> bool:
        return self.instrument.sim_value_manager.has_control(name)

    def get_control(self, name: str) -> float:
        value = self.instrument.get_value(name)
        if value is None:
            raise SimulatorParameterError(f"the simulated instrument has no control {name!r}.")
        return float(value)

    def set_control(self, name: str, value: float) -> None:
        if not self.instrument.set_value(name, float(value)):
            raise SimulatorParameterError(f"the simulated instrument has no control {name!r}.")

    def __frame(self, exposure_s: float, binning: int) -> NDArray[np.float32]:
        t = self.instrument.time_s()
        frame = self.simulator.render(t_s=t, exposure_s=exposure_s, binning=binning)
        clock = self.instrument.clock
        advance = getattr(clock, "advance", None)
        if callable(advance):
            advance(exposure_s + self.overhead_s)
        return frame

    def acquire(self, exposure_s: float, binning: int) -> NDArray[np.float32]:
        frame = self.__frame(exposure_s, binning)
        self.records.append(self.simulator.frame_log[-1])
        return frame

    def acquire_dark(self, exposure_s: float, binning: int) -> NDArray[np.float32]:
        blank = self.get_control("C_Blank")
        self.set_control("C_Blank", 1.0)
        try:
            return self.__frame(exposure_s, binning)
        finally:
            self.set_control("C_Blank", blank)
