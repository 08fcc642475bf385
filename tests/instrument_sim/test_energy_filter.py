"""The energy filter: slit weights, filtered images from the EELS spectrum model (zero loss bright, core loss
hundreds of times weaker, edges where the elements are), the camera's EFTEM mode with drift and truth."""
from __future__ import annotations

import typing

import numpy as np
import pytest

from instrument_sim.configuration import (SimulatorConfiguration, build_simulator, insitu_camera_factory,
                                          unregister_simulator)
from instrument_sim.drift import DriftModel
from instrument_sim.eels_physics import EnergyAxis
from instrument_sim.energy_filter import EnergyFilteredSpecimen, FilteredView, slit_weights
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.instrument import ManualClock


def test_slit_weights_integrate_the_window() -> None:
    axis = EnergyAxis(offset_eV=0.0, dispersion_eV_per_channel=1.0, n_channels=100)
    w = slit_weights(axis, 50.25, 10.0)
    assert w.sum() == pytest.approx(10.0)
    assert w[45] == pytest.approx(0.25) and w[50] == 1.0 and w[55] == pytest.approx(0.75) and w[56] == 0.0
    with pytest.raises(SimulatorParameterError, match="slit width"):
        slit_weights(axis, 10.0, 0.0)


def test_filtered_images_follow_the_spectrum() -> None:
    specimen = EnergyFilteredSpecimen()
    yy, xx = np.meshgrid(np.arange(48) * 0.06, np.arange(48) * 0.06, indexing="ij")
    def image(e: float, w: float = 10.0) -> np.ndarray:
        return specimen.filtered_image(yy, xx, energy_offset_eV=e, slit_width_eV=w, electrons_per_px=1.0)
    zero_loss, core = image(0.0), image(410.0)
    assert 0.3 < zero_loss.mean() < 1.0
    assert zero_loss.mean() / core.mean() > 300          # core loss hundreds of times weaker
    # the slit integral is the truth spectrum summed over the window, pixel by pixel
    for y, x in ((3, 5), (20, 31)):
        assert core[y, x] == pytest.approx(specimen.slit_integral(yy[y, x], xx[y, x], energy_offset_eV=410.0,
                                                                  slit_width_eV=10.0), rel=1e-6)
    # the Sc jump-ratio image shows Sc where it is
    ratio = image(410.0) / image(390.0)
    sc = specimen.sample.composition(yy, xx)["Sc"]
    assert np.corrcoef(ratio.ravel(), sc.ravel())[0, 1] > 0.8
    o_ratio = image(545.0) / image(522.0)
    o = specimen.sample.composition(yy, xx)["O"]
    assert np.corrcoef(o_ratio.ravel(), o.ravel())[0, 1] > 0.5


def test_filtered_view_translates_with_the_offset() -> None:
    specimen = EnergyFilteredSpecimen()
    view = FilteredView(specimen, (64, 64), 0.06)
    a = view.image((0.0, 0.0), energy_offset_eV=0.0, slit_width_eV=10.0, electrons_per_px=1.0)
    b = view.image((0.12, -0.3), energy_offset_eV=0.0, slit_width_eV=10.0, electrons_per_px=1.0)   # (+2, -5) px
    assert np.allclose(b[2:60, 0:55], a[0:58, 5:60], rtol=1e-5)
    far = view.image((1.5, 1.2), energy_offset_eV=0.0, slit_width_eV=10.0, electrons_per_px=1.0)   # a new tile
    yy, xx = np.meshgrid(np.arange(64) * 0.06 - 1.5, np.arange(64) * 0.06 - 1.2, indexing="ij")
    direct = specimen.filtered_image(yy, xx, energy_offset_eV=0.0, slit_width_eV=10.0, electrons_per_px=1.0)
    assert np.allclose(far, direct, rtol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_camera_eftem_mode_matches_the_truth(seed: int) -> None:
    handle = build_simulator(SimulatorConfiguration(
        seed=seed, frame_shape=(64, 64), n_particles=1, melt_period_s=None, clock=ManualClock(2.0),
        drift=DriftModel(rate_nm_per_s=(0.05, 0.02), seed=seed), device_factories=[insitu_camera_factory]))
    try:
        instrument, sim = handle.instrument, handle.insitu_camera.simulator
        instrument.set_value("BeamCurrent", 20e-9)
        instrument.set_value("EFTEM_Slit", 1.0)
        instrument.set_value("EFTEM_EnergyOffset", 530.0)
        instrument.set_value("EFTEM_SlitWidth", 20.0)
        frames = [sim.render(t_s=2.0, exposure_s=1.0) for _ in range(20)]
        record = sim.frame_log[-1]
        assert record.slit_in and record.energy_offset_eV == 530.0 and record.slit_width_eV == 20.0
        mean = np.mean(frames, axis=0)
        dose = sim.dose_e_per_px(1.0)
        for y, x in ((10, 12), (40, 50)):
            truth = sim.eftem_truth(float(y), float(x), energy_offset_eV=530.0, slit_width_eV=20.0, t_s=2.0) * dose
            # sub-pixel drift is applied by cubic resampling of the filtered tile: up to ~3 % on sharp columns
            assert abs(mean[y, x] - truth) < 5 * np.sqrt(truth / 20) + 0.03 * truth
        instrument.set_value("EFTEM_Slit", 0.0)
        assert not (sim.render(t_s=2.0, exposure_s=0.01) is None) and not sim.frame_log[-1].slit_in
    finally:
        unregister_simulator(handle)
