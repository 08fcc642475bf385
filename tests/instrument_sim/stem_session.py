"""Shared set-up for the STEM simulator tests: a headless Swift session with the laser, scan and EELS camera."""
from __future__ import annotations

import contextlib
import dataclasses
import typing

from instrument_sim.configuration import SimulatorConfiguration
from instrument_sim.drift import DriftModel, EnergyDriftModel
from instrument_sim.instrument import ManualClock, SimInstrument
from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES, StemParts, stem_parts
from nionswift_plugin.insitu.headless import HeadlessSwift


@dataclasses.dataclass
class StemSession:
    swift: HeadlessSwift
    instrument: SimInstrument
    parts: StemParts
    clock: ManualClock
    scan: typing.Any  # ConcreteScanHardwareSource "insitu_scan"
    eels: typing.Any  # CameraHardwareSource3 "insitu_eels_camera"

    def reset(self) -> None:
        """No drift, t = 0, default beam and spectrometer settings, perovskite sample, laser off."""
        self.instrument.sample_drift = DriftModel()
        self.instrument.energy_drift = EnergyDriftModel()
        self.clock.set(0.0)
        for name, value in (("BeamCurrent", 200e-12), ("ZLPoffset", -20.0), ("EELS_Dispersion", 0.5),
                            ("EELS_ZLPWidth", 1.0), ("C_Blank", 0.0)):
            self.instrument.SetVal(name, value)
        for name in ("CSH", "stage_position_m"):
            self.instrument.SetVal2D(name, type(self.instrument.GetVal2D(name))())
        self.parts.specimen.load("perovskite")
        self.parts.laser.apply_settings({"shutter_open": False, "power_mW": 0.0, "pulse_frequency_Hz": 0.0,
                                         "blanker_duty": 1.0})


@contextlib.contextmanager
def stem_session(*, seed: int = 0) -> typing.Iterator[StemSession]:
    clock = ManualClock(0.0)
    config = SimulatorConfiguration(seed=seed, drift=DriftModel(), clock=clock,
                                    device_factories=STEM_DEVICE_FACTORIES)
    with HeadlessSwift(config, with_window=False) as swift:
        instrument = swift.simulator.instrument
        session = StemSession(swift=swift, instrument=instrument, parts=stem_parts(instrument), clock=clock,
                              scan=swift.hardware_source("insitu_scan"),
                              eels=swift.hardware_source("insitu_eels_camera"))
        session.reset()
        yield session
