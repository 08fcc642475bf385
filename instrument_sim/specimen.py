"""The specimen in the simulated STEM: which sample is loaded, shared by the scan device and the EELS camera.

Also the probe geometry helpers shared by the STEM devices (electrons per dwell, sample coordinate of a probe
position) and per-device seeded random generators, so one seed fixes every device's noise.
"""
from __future__ import annotations

import threading
import typing
import zlib

import numpy as np
from numpy.typing import NDArray

from nion.utils import Event

from instrument_sim.errors import SimulatorParameterError
from instrument_sim.samples import SAMPLE_NAMES, Sample, make_sample

if typing.TYPE_CHECKING:
    from instrument_sim.instrument import SimInstrument

__all__ = ["Specimen", "ELEMENTARY_CHARGE_C", "electrons_in"]

ELEMENTARY_CHARGE_C = 1.602176634e-19


def electrons_in(instrument: SimInstrument, duration_s: float) -> float:
    """Incident electrons in ``duration_s`` at the instrument's beam current (0 when the beam is blanked)."""
    if instrument.is_blanked:
        return 0.0
    current = float(instrument.GetVal("BeamCurrent"))
    if not current >= 0:
        raise SimulatorParameterError(f"BeamCurrent must be >= 0 A; got {current!r}. Set e.g. 100e-12 (100 pA).")
    return current * max(float(duration_s), 0.0) / ELEMENTARY_CHARGE_C


class Specimen:
    """The loaded sample (thread-safe holder) + the seed of the STEM devices' noise.

    ``sample_changed_event`` fires with the new sample. ``rng(name)`` gives a generator seeded from
    ``(seed, name)``, so every device has its own reproducible noise stream.
    """

    def __init__(self, sample: Sample | None = None, *, seed: int = 0) -> None:
        self.sample_changed_event = Event.Event()
        self.__lock = threading.Lock()
        self.__sample = sample if sample is not None else make_sample("perovskite", seed=seed)
        self.seed = int(seed)

    @property
    def sample(self) -> Sample:
        with self.__lock:
            return self.__sample

    @sample.setter
    def sample(self, sample: Sample) -> None:
        if not isinstance(sample, Sample):
            raise SimulatorParameterError(f"sample must be a Sample; got {type(sample).__name__}.")
        with self.__lock:
            self.__sample = sample
        self.sample_changed_event.fire(sample)

    def load(self, name: str, **options: typing.Any) -> Sample:
        """Load a sample by name (one of :data:`~instrument_sim.samples.SAMPLE_NAMES`), seeded by this specimen."""
        if name not in SAMPLE_NAMES:
            raise SimulatorParameterError(f"unknown sample {name!r}; choose one of {list(SAMPLE_NAMES)}.")
        sample = make_sample(name, seed=self.seed, **options)
        self.sample = sample
        return sample

    def rng(self, name: str) -> np.random.Generator:
        """A generator seeded from (seed, name)."""
        return np.random.default_rng([self.seed, zlib.crc32(name.encode())])

    @staticmethod
    def sample_positions_nm(instrument: SimInstrument, scan_y_nm: NDArray[np.float64], scan_x_nm: NDArray[np.float64],
                            t_s: NDArray[np.float64] | float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Sample coordinates seen by the probe at scan positions (nm) at times ``t_s`` (scalar or same shape).

        ``sample = scan - (drift(t) - stage - CSH)`` (see :mod:`instrument_sim.instrument`).
        """
        offset = instrument.scan_content_offset_nm(np.asarray(t_s, dtype=np.float64))
        return scan_y_nm - offset[..., 0], scan_x_nm - offset[..., 1]
