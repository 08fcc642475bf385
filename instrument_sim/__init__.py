"""The simulated instrument: drift models, an in-situ TEM scene and camera, and the Swift registration."""
from __future__ import annotations

from instrument_sim.drift import DriftModel, EnergyDriftModel
from instrument_sim.errors import SimulatorError, SimulatorParameterError

__all__ = ["DriftModel", "EnergyDriftModel", "SimulatorError", "SimulatorParameterError"]
