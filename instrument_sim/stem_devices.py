"""Factories of the simulated STEM devices for :mod:`instrument_sim.configuration` (``DEVICE_FACTORIES``).

* ``"insitu_laser"``: the EEGS laser (:class:`~instrument_sim.laser.SimLaser`, Registry type ``"insitu_laser"``);
* ``"insitu_scan"``: the scan device (:mod:`instrument_sim.stem_scan`, Registry type ``"scan_module"``);
* ``"insitu_eels_camera"``: the spectrometer (:mod:`instrument_sim.eels_camera`, Registry type ``"camera_module"``).

The three share one :class:`StemParts` per instrument (the specimen and the laser), reachable with
:func:`stem_parts`. The specimen's seed is the configuration's seed.
"""
from __future__ import annotations

import dataclasses
import typing
import weakref

import numpy as np
from numpy.typing import NDArray

from nion.instrumentation import scan_base

from instrument_sim.eels_camera import EELS_CAMERA_ID, EELSCameraSimulator, SimEELSCamera, create_eels_camera_module
from instrument_sim.laser import LASER_COMPONENT_TYPE, SimLaser
from instrument_sim.samples import expected_spectra
from instrument_sim.specimen import Specimen, electrons_in
from instrument_sim.stem_scan import (SCAN_DEVICE_ID, ScanGeometry, SimScanModule, SimScanSimulator,
                                      geometry_from_frame_parameters)

FloatArray = NDArray[np.float64]

if typing.TYPE_CHECKING:
    from nion.device_kit import CameraDevice
    from instrument_sim.configuration import DeviceFactory, DeviceRegistration, SimulatorConfiguration
    from instrument_sim.instrument import SimInstrument

__all__ = ["StemParts", "stem_parts", "existing_stem_parts", "make_stem_device_factories", "laser_factory",
           "stem_scan_factory", "eels_camera_factory", "STEM_DEVICE_FACTORIES"]


@dataclasses.dataclass
class StemParts:
    """The STEM side of one simulated instrument: specimen, laser, scan module, EELS camera module."""

    specimen: Specimen
    laser: SimLaser
    scan_module: SimScanModule | None = None
    eels_module: CameraDevice.CameraModule | None = None

    instrument: SimInstrument | None = None

    @property
    def eels_simulator(self) -> EELSCameraSimulator:
        assert self.eels_module is not None, "the EELS camera factory has not run"
        device = self.eels_module.camera_device
        assert isinstance(device, SimEELSCamera)
        return device.eels_simulator

    @property
    def scan_simulator(self) -> SimScanSimulator:
        assert self.scan_module is not None, "the scan factory has not run"
        return self.scan_module.device.simulator

    def __field(self, frame_parameters: scan_base.ScanFrameParameters) -> tuple[ScanGeometry, FloatArray, FloatArray]:
        """Geometry and the drift-free sample positions (stage and probe shift applied, no drift) of a scan."""
        assert self.instrument is not None
        geometry = geometry_from_frame_parameters(frame_parameters)
        y, x = geometry.positions_nm()
        offset = -self.instrument.stage_position_nm - self.instrument.beam_shift_nm  # content offset without drift
        return geometry, y - offset[0], x - offset[1]

    def truth_image(self, frame_parameters: scan_base.ScanFrameParameters, *, channel: str = "HAADF") -> FloatArray:
        """Drift-free, noise-free detector image (expected counts, (H, W)) of the field Swift would scan with
        ``frame_parameters`` (sub-scan, centre, rotation, stage and CSH included), at the current beam current."""
        assert self.instrument is not None
        geometry, y, x = self.__field(frame_parameters)
        electrons = electrons_in(self.instrument, geometry.pixel_time_s)
        return self.specimen.sample.scattering(y, x)[channel] * electrons

    def truth_spectrum_image(self, frame_parameters: scan_base.ScanFrameParameters, *, exposure_s: float,
                             n_channels: int | None = None, binning: int = 1, zlp_offset_eV: float = 0.0,
                             include_laser: bool = True) -> FloatArray:
        """Drift-free, noise-free spectrum image (expected electrons per channel, (H, W, C)) of the field, on the
        EELS camera's calibrated axis (``ZLPoffset``, ``EELS_Dispersion * binning``), ZLP at ``zlp_offset_eV``."""
        assert self.instrument is not None
        _, y, x = self.__field(frame_parameters)
        simulator = self.eels_simulator
        channels = n_channels or self.instrument.camera_sensor_dimensions("eels")[1] // binning
        axis = simulator.energy_axis(channels, binning)
        laser = simulator.laser_state() if include_laser else None
        electrons = electrons_in(self.instrument, exposure_s) * (laser.blanker_duty if laser is not None else 1.0)
        return expected_spectra(self.specimen.sample, simulator.spectrum_model(axis), y, x, electrons=electrons,
                                shift_eV=zlp_offset_eV, laser=laser)


_PARTS: weakref.WeakKeyDictionary[SimInstrument, StemParts] = weakref.WeakKeyDictionary()


def stem_parts(instrument: SimInstrument, *, seed: int = 0) -> StemParts:
    """The :class:`StemParts` of ``instrument`` (created on first use with ``seed``)."""
    parts = _PARTS.get(instrument)
    if parts is None:
        parts = StemParts(specimen=Specimen(seed=seed), laser=SimLaser(), instrument=instrument)
        _PARTS[instrument] = parts
    return parts


def existing_stem_parts(instrument: typing.Any) -> StemParts | None:
    """The :class:`StemParts` of ``instrument`` if the STEM factories built them, else None."""
    try:
        return _PARTS.get(instrument)
    except TypeError:  # not weak-referenceable: not a simulated instrument
        return None


def make_stem_device_factories(*, sample: str = "perovskite", scan_fov_nm: float = 8.0,
                               eels_sensor_shape: tuple[int, int] = (16, 1024),
                               eels_detector: typing.Literal["integrating", "counting"] = "integrating",
                               eels_read_noise_counts: float = 0.0) -> list[DeviceFactory]:
    """The three STEM factories with options: initial sample, default scan field of view, EELS sensor shape
    (rows, channels), detector model ("integrating": Poisson x gain + read noise; "counting": Merlin-like) and read
    noise. ``STEM_DEVICE_FACTORIES`` are the defaults."""

    def scan(instrument: SimInstrument, config: SimulatorConfiguration) -> DeviceRegistration:
        registration = _scan(instrument, config, fov_nm=scan_fov_nm)
        stem_parts(instrument, seed=config.seed).specimen.load(sample)
        return registration

    def eels(instrument: SimInstrument, config: SimulatorConfiguration) -> DeviceRegistration:
        return _eels(instrument, config, sensor_shape=eels_sensor_shape, detector=eels_detector,
                     read_noise_counts=eels_read_noise_counts)

    return [laser_factory, scan, eels]


def laser_factory(instrument: SimInstrument, config: SimulatorConfiguration) -> DeviceRegistration:
    from instrument_sim.configuration import DeviceRegistration
    parts = stem_parts(instrument, seed=config.seed)
    return DeviceRegistration(name=LASER_COMPONENT_TYPE, component=parts.laser,
                              component_types={LASER_COMPONENT_TYPE}, close=lambda: None, parts=parts)


def stem_scan_factory(instrument: SimInstrument, config: SimulatorConfiguration) -> DeviceRegistration:
    """The scan device (hardware source ``"insitu_scan"``)."""
    return _scan(instrument, config)


def _scan(instrument: SimInstrument, config: SimulatorConfiguration, *, fov_nm: float = 8.0) -> DeviceRegistration:
    from instrument_sim.configuration import DeviceRegistration
    parts = stem_parts(instrument, seed=config.seed)
    parts.scan_module = SimScanModule(instrument, parts.specimen, fov_nm=fov_nm)
    return DeviceRegistration(name=SCAN_DEVICE_ID, component=parts.scan_module, component_types={"scan_module"},
                              close=parts.scan_module.device.close, parts=parts)


def eels_camera_factory(instrument: SimInstrument, config: SimulatorConfiguration) -> DeviceRegistration:
    """The EELS camera (hardware source ``"insitu_eels_camera"``)."""
    return _eels(instrument, config)


def _eels(instrument: SimInstrument, config: SimulatorConfiguration, *,
          sensor_shape: tuple[int, int] = (16, 1024), **options: typing.Any) -> DeviceRegistration:
    from instrument_sim.configuration import DeviceRegistration
    parts = stem_parts(instrument, seed=config.seed)
    module = create_eels_camera_module(instrument, parts.specimen, laser=parts.laser, sensor_shape=sensor_shape,
                                       **options)
    parts.eels_module = module
    return DeviceRegistration(name=EELS_CAMERA_ID, component=module, component_types={"camera_module"},
                              close=module.camera_device.close, parts=parts)


#: In registration order (the laser first: the camera reads it).
STEM_DEVICE_FACTORIES: list[DeviceFactory] = [laser_factory, stem_scan_factory, eels_camera_factory]
