"""Errors raised by the simulated instrument on bad configuration (all subclass :class:`ValueError`)."""
from __future__ import annotations

__all__ = ["SimulatorError", "SimulatorParameterError"]


class SimulatorError(ValueError):
    """Base of every error the simulator raises on bad input. The message says problem, value and remedy."""


class SimulatorParameterError(SimulatorError):
    """A simulator parameter (drift rate, shape, exposure...) is out of range or of the wrong type."""
