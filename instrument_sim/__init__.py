"""The simulated instrument: drift models, an in-situ TEM scene and camera, and the Swift registration.

Main entry points::

    from instrument_sim import SimulatorConfiguration, register_simulator, unregister_simulator
    handle = register_simulator(SimulatorConfiguration(seed=1))
    truth = handle.insitu_camera.simulator.truth()      # ground truth now
    unregister_simulator(handle)

Names are imported lazily, so ``import instrument_sim.insitu_scene`` (pure numpy) does not import Nion Swift.
"""
from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from instrument_sim.drift import DriftModel as DriftModel
    from instrument_sim.drift import EnergyDriftModel as EnergyDriftModel
    from instrument_sim.errors import SimulatorError as SimulatorError
    from instrument_sim.errors import SimulatorParameterError as SimulatorParameterError
    from instrument_sim.instrument import SimInstrument as SimInstrument
    from instrument_sim.instrument import ManualClock as ManualClock
    from instrument_sim.instrument import MonotonicClock as MonotonicClock
    from instrument_sim.instrument import INSTRUMENT_ID as INSTRUMENT_ID
    from instrument_sim.insitu_scene import InSituScene as InSituScene
    from instrument_sim.insitu_scene import SceneTruth as SceneTruth
    from instrument_sim.insitu_scene import ParticleTruth as ParticleTruth
    from instrument_sim.noise import shot_noise as shot_noise
    from instrument_sim.insitu_camera import InSituCameraSimulator as InSituCameraSimulator
    from instrument_sim.insitu_camera import InSituCamera as InSituCamera
    from instrument_sim.insitu_camera import InSituCameraParts as InSituCameraParts
    from instrument_sim.insitu_camera import CAMERA_ID as CAMERA_ID
    from instrument_sim.configuration import SimulatorConfiguration as SimulatorConfiguration
    from instrument_sim.configuration import SimulatorHandle as SimulatorHandle
    from instrument_sim.configuration import DeviceRegistration as DeviceRegistration
    from instrument_sim.configuration import DeviceFactory as DeviceFactory
    from instrument_sim.configuration import DEVICE_FACTORIES as DEVICE_FACTORIES
    from instrument_sim.configuration import build_simulator as build_simulator
    from instrument_sim.configuration import register_simulator as register_simulator
    from instrument_sim.configuration import unregister_simulator as unregister_simulator

_MODULES = {
    "DriftModel": "drift", "EnergyDriftModel": "drift",
    "SimulatorError": "errors", "SimulatorParameterError": "errors",
    "SimInstrument": "instrument", "ManualClock": "instrument", "MonotonicClock": "instrument",
    "INSTRUMENT_ID": "instrument",
    "InSituScene": "insitu_scene", "SceneTruth": "insitu_scene", "ParticleTruth": "insitu_scene",
    "shot_noise": "noise",
    "InSituCameraSimulator": "insitu_camera", "InSituCamera": "insitu_camera", "InSituCameraParts": "insitu_camera",
    "CAMERA_ID": "insitu_camera",
    "SimulatorConfiguration": "configuration", "SimulatorHandle": "configuration",
    "DeviceRegistration": "configuration", "DeviceFactory": "configuration", "DEVICE_FACTORIES": "configuration",
    "build_simulator": "configuration", "register_simulator": "configuration",
    "unregister_simulator": "configuration",
}

__all__ = list(_MODULES)


def __getattr__(name: str) -> typing.Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'instrument_sim' has no attribute {name!r}")
    return getattr(importlib.import_module(f"instrument_sim.{module}"), name)
