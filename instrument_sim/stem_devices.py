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

from instrument_sim.eels_camera import EELS_CAMERA_ID, EELSCameraSimulator, SimEELSCamera, create_eels_camera_module
from instrument_sim.laser import LASER_COMPONENT_TYPE, SimLaser
from instrument_sim.specimen import Specimen
from instrument_sim.stem_scan import SCAN_DEVICE_ID, SimScanModule

if typing.TYPE_CHECKING:
    from nion.device_kit import CameraDevice
    from instrument_sim.configuration import DeviceRegistration, SimulatorConfiguration
    from instrument_sim.instrument import SimInstrument

__all__ = ["StemParts", "stem_parts", "existing_stem_parts", "laser_factory", "stem_scan_factory", "eels_camera_factory",
           "STEM_DEVICE_FACTORIES"]


@dataclasses.dataclass
class StemParts:
    """The STEM side of one simulated instrument: specimen, laser, scan module, EELS camera module."""

    specimen: Specimen
    laser: SimLaser
    scan_module: SimScanModule | None = None
    eels_module: CameraDevice.CameraModule | None = None

    @property
    def eels_simulator(self) -> EELSCameraSimulator:
        assert self.eels_module is not None, "the EELS camera factory has not run"
        device = self.eels_module.camera_device
        assert isinstance(device, SimEELSCamera)
        return device.eels_simulator


_PARTS: weakref.WeakKeyDictionary[SimInstrument, StemParts] = weakref.WeakKeyDictionary()


def stem_parts(instrument: SimInstrument, *, seed: int = 0) -> StemParts:
    """The :class:`StemParts` of ``instrument`` (created on first use with ``seed``)."""
    parts = _PARTS.get(instrument)
    if parts is None:
        parts = StemParts(specimen=Specimen(seed=seed), laser=SimLaser())
        _PARTS[instrument] = parts
    return parts


def existing_stem_parts(instrument: typing.Any) -> StemParts | None:
    """The :class:`StemParts` of ``instrument`` if the STEM factories built them, else None."""
    try:
        return _PARTS.get(instrument)
    except TypeError:  # not weak-referenceable: not a simulated instrument
        return None


def laser_factory(instrument: SimInstrument, config: SimulatorConfiguration) -> DeviceRegistration:
    from instrument_sim.configuration import DeviceRegistration
    parts = stem_parts(instrument, seed=config.seed)
    return DeviceRegistration(name=LASER_COMPONENT_TYPE, component=parts.laser,
                              component_types={LASER_COMPONENT_TYPE}, close=lambda: None, parts=parts)


def stem_scan_factory(instrument: SimInstrument, config: SimulatorConfiguration) -> DeviceRegistration:
    from instrument_sim.configuration import DeviceRegistration
    parts = stem_parts(instrument, seed=config.seed)
    parts.scan_module = SimScanModule(instrument, parts.specimen)
    return DeviceRegistration(name=SCAN_DEVICE_ID, component=parts.scan_module, component_types={"scan_module"},
                              close=parts.scan_module.device.close, parts=parts)


def eels_camera_factory(instrument: SimInstrument, config: SimulatorConfiguration) -> DeviceRegistration:
    from instrument_sim.configuration import DeviceRegistration
    parts = stem_parts(instrument, seed=config.seed)
    module = create_eels_camera_module(instrument, parts.specimen, laser=parts.laser)
    parts.eels_module = module
    return DeviceRegistration(name=EELS_CAMERA_ID, component=module, component_types={"camera_module"},
                              close=module.camera_device.close, parts=parts)


#: In registration order (the laser first: the camera reads it).
STEM_DEVICE_FACTORIES = [laser_factory, stem_scan_factory, eels_camera_factory]
