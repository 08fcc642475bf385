from __future__ import annotations

import typing

import numpy as np
import pytest

from nion.utils import Geometry

from instrument_sim.drift import DriftModel, EnergyDriftModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.instrument import INSTRUMENT_ID, ManualClock, SimInstrument


@pytest.fixture
def instrument() -> typing.Iterator[SimInstrument]:
    inst = SimInstrument(clock=ManualClock(0.0))
    yield inst
    inst.close()


def test_default_controls(instrument: SimInstrument) -> None:
    assert instrument.instrument_id == INSTRUMENT_ID
    assert instrument.GetVal("BeamCurrent") == pytest.approx(200e-12)
    assert instrument.TryGetVal("no_such_control") == (False, None)
    assert instrument.GetVal("SuperFEG_HTkV") == pytest.approx(instrument.GetVal("EHT") * 1e-3)
    assert instrument.GetVal("eels_x_offset") == instrument.GetVal("ZLPoffset")


def test_2d_controls_components_aliases_and_events(instrument: SimInstrument) -> None:
    changed: list[str] = []
    listener = instrument.property_changed_event.listen(changed.append)
    instrument.SetVal("CSH.x", 2e-9)
    instrument.SetVal2D("stage_position_m", Geometry.FloatPoint(y=1e-9, x=-3e-9))
    listener.close()
    assert instrument.GetVal2D("beam_shift_m") == Geometry.FloatPoint(y=0.0, x=2e-9)
    assert instrument.GetVal("CSH.u") == pytest.approx(2e-9)  # identity axis transform
    np.testing.assert_allclose(instrument.stage_position_nm, [1.0, -3.0])
    assert changed == ["CSH", "stage_position_m"]
    instrument.change_stage_position(dx=1e-9)
    np.testing.assert_allclose(instrument.stage_position_nm, [1.0, -4.0])


def test_added_controls_and_errors(instrument: SimInstrument) -> None:
    instrument.add_control("LaserPower", 0.5)
    assert instrument.SetVal("LaserPower", 1.5)
    assert instrument.GetVal("LaserPower") == 1.5
    with pytest.raises(SimulatorParameterError, match="already exists"):
        instrument.add_control("LaserPower")
    with pytest.raises(SimulatorParameterError, match="set_camera_shape"):
        instrument.camera_sensor_dimensions("unknown_type")
    instrument.set_camera_shape("unknown_type", (100, 200))
    assert instrument.camera_readout_area("unknown_type") == (0, 0, 100, 200)


def test_clock_and_drift_ground_truth(instrument: SimInstrument) -> None:
    clock = instrument.clock
    assert isinstance(clock, ManualClock)
    instrument.sample_drift = DriftModel(rate_nm_per_s=(0.5, -1.0))
    instrument.energy_drift = EnergyDriftModel(rate_meV_per_s=10.0)
    clock.set(4.0)
    assert instrument.time_s() == 4.0
    np.testing.assert_allclose(instrument.true_sample_offset_nm(), [2.0, -4.0])
    np.testing.assert_allclose(instrument.true_energy_offset_eV(), 0.04)
    instrument.SetVal2D("stage_position_m", Geometry.FloatPoint(y=1e-9, x=1e-9))
    instrument.SetVal2D("CSH", Geometry.FloatPoint(y=0.0, x=2e-9))
    np.testing.assert_allclose(instrument.content_offset_nm(), [1.0, -5.0])
    np.testing.assert_allclose(instrument.scan_content_offset_nm(), [1.0, -7.0])
    with pytest.raises(SimulatorParameterError):
        instrument.sample_drift = "fast"  # type: ignore[assignment]
