"""Switchable camera artefacts on the simulated camera: bias, dark current growing with exposure, gain map, hot and
dead pixels, saturation at full scale; off by default."""
from __future__ import annotations

import typing

import numpy as np
import pytest

from instrument_sim.configuration import (SimulatorConfiguration, build_simulator, insitu_camera_factory,
                                          unregister_simulator)
from instrument_sim.detector import CameraArtefacts
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.instrument import ManualClock


@pytest.fixture
def camera() -> typing.Iterator[typing.Any]:
    handle = build_simulator(SimulatorConfiguration(seed=1, frame_shape=(64, 64), n_particles=1,
                                                    melt_period_s=None, clock=ManualClock(1.0),
                                                    device_factories=[insitu_camera_factory]))
    try:
        yield handle
    finally:
        unregister_simulator(handle)


def test_artefacts_are_off_by_default_and_switch_on(camera: typing.Any) -> None:
    sim = camera.insitu_camera.simulator
    plain = sim.render(t_s=1.0, exposure_s=0.05)
    assert not sim.frame_log[-1].artefacts and plain.min() >= 0
    sim.artefacts = CameraArtefacts(seed=3, bias_counts=100.0, dark_counts_per_s=50.0)
    camera.instrument.set_value("C_Blank", 1.0)
    dark_short = np.mean([sim.render(t_s=1.0, exposure_s=0.1) for _ in range(10)], axis=0)
    dark_long = np.mean([sim.render(t_s=1.0, exposure_s=2.0) for _ in range(10)], axis=0)
    maps = sim.artefacts.maps((64, 64))
    ok = ~(maps.hot | maps.dead)
    assert np.median(dark_short[ok]) == pytest.approx(100 + 5, abs=2)          # bias + dark current x 0.1 s
    assert np.median(dark_long[ok]) == pytest.approx(100 + 100, abs=3)         # grows with exposure
    if maps.hot.any():
        assert dark_long[maps.hot].min() > 100 + 1000                          # hot pixels
    frame = sim.render(t_s=1.0, exposure_s=1.0)
    assert np.array_equal(frame, np.rint(frame))                               # integer counts
    assert sim.frame_log[-1].artefacts


def test_gain_dead_and_saturation(camera: typing.Any) -> None:
    sim = camera.insitu_camera.simulator
    sim.artefacts = CameraArtefacts(seed=4, gain_spread=0.1, dead_pixel_fraction=0.01, full_scale_counts=4095.0,
                                    read_noise_counts=0.0, dark_counts_per_s=0.0)
    maps = sim.artefacts.maps((64, 64))
    assert maps.dead.any() and abs(float(maps.gain.mean()) - 1.0) < 1e-9
    bright = sim.render(t_s=1.0, exposure_s=5.0)               # ~ 1.5e5 e/px: saturates
    assert bright.max() == 4095.0
    assert np.all(bright[maps.dead] == 100.0)                   # dead pixels read the bias only
    flat = sim.artefacts.read(np.full((64, 64), 1000.0), exposure_s=1.0, rng=np.random.default_rng(0))
    ok = ~(maps.dead | maps.hot)
    assert np.corrcoef(flat[ok] - 100.0, maps.gain[ok])[0, 1] > 0.99    # the gain map is what the camera applies
    with pytest.raises(SimulatorParameterError):
        CameraArtefacts(full_scale_counts=50.0, bias_counts=100.0)
