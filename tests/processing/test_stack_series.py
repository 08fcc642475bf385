"""Series engine with auto-exposure against the simulator's ground truth (no Swift): EFTEM series across the
Sc L2,3 and O K edges of the perovskite, focal series with drift, bad input, abort, busy."""
from __future__ import annotations

import threading
import typing

import numpy as np
import pytest

from instrument_sim.configuration import (SimulatorConfiguration, build_simulator, insitu_camera_factory,
                                          unregister_simulator)
from instrument_sim.detector import CameraArtefacts
from instrument_sim.drift import DriftModel
from instrument_sim.insitu_camera import SimulatorSeriesDevice
from instrument_sim.instrument import ManualClock
from processing.alignment.sdsd import align_stack
from processing.base import InputError, ParameterError
from processing.stack.corrections import CameraCorrections
from processing.stack.exposure import AutoExposurePolicy
from processing.stack.series import (SeriesBusyError, SeriesPlan, energy_series_plan, focal_series_plan,
                                     run_series)

SHAPE = (128, 128)


@pytest.fixture
def sim() -> typing.Iterator[typing.Any]:
    handle = build_simulator(SimulatorConfiguration(
        seed=2, frame_shape=SHAPE, n_particles=2, melt_period_s=None, clock=ManualClock(1.0),
        drift=DriftModel(rate_nm_per_s=(0.02, -0.015), random_walk_nm_per_sqrt_s=0.01, seed=3),
        device_factories=[insitu_camera_factory]))
    simulator = handle.insitu_camera.simulator
    simulator.artefacts = CameraArtefacts(seed=1)
    handle.instrument.set_value("BeamCurrent", 20e-9)
    try:
        yield handle, simulator, SimulatorSeriesDevice(simulator)
    finally:
        unregister_simulator(handle)


def _policy(**kw: typing.Any) -> AutoExposurePolicy:
    options: dict[str, typing.Any] = dict(lower_fraction=0.05, upper_fraction=0.8, percentile=99.5,
                                          full_scale_counts=16383, min_exposure_s=0.0005, max_exposure_s=30.0)
    options.update(kw)
    return AutoExposurePolicy(**options)


def _kept_records(device: SimulatorSeriesDevice, result: typing.Any) -> list[typing.Any]:
    records, index = [], 0
    for s in result.slices:
        index += len(s.tried_exposures_s)
        records.append(device.records[index])
        index += 1
    return records


def test_energy_series_across_sc_l23_and_o_k(sim: typing.Any) -> None:
    handle, simulator, device = sim
    plan = energy_series_plan(370.0, 10.0, 21, slit_width_eV=10.0)
    policy = _policy()
    hot = simulator.artefacts.maps(SHAPE).hot
    result = run_series(device, plan, exposure_s=0.5, policy=policy, ignore_mask=hot)
    report = result.report()
    assert result.complete and len(result.slices) == 21
    assert result.raw.dtype == np.uint16
    # every slice inside the thresholds after at most one change; nothing saturated outside hot pixels
    for s in result.slices:
        assert s.status == "ok" and len(s.tried_exposures_s) <= 1
        assert policy.lower_fraction <= s.signal_fraction <= policy.upper_fraction
    assert max(int(result.raw[k][~hot].max()) for k in range(21)) < 16383
    # one dark per distinct exposure ever used
    used = {s.exposure_s for s in result.slices} | {t for s in result.slices for t in s.tried_exposures_s}
    assert result.n_darks == len(used) == len(report["dark_exposures_s"])
    # the record of each kept frame: the energy asked for, the slit in
    records = _kept_records(device, result)
    for s, r in zip(result.slices, records):
        assert r.slit_in and r.energy_offset_eV == pytest.approx(s.value) and r.exposure_s == s.exposure_s
    # the scaled series matches the truth per pixel within noise (true gain map as the gain reference)
    maps = simulator.artefacts.maps(SHAPE)
    scaled = result.scaled(CameraCorrections(gain=maps.gain.astype(np.float32), defects=maps.dead | maps.hot))
    t0 = result.slices[0].exposure_s
    dose_rate = simulator.dose_e_per_px(1.0)
    rng = np.random.default_rng(0)
    good = np.argwhere(~(maps.dead | maps.hot))
    pixels = good[rng.choice(len(good), 40, replace=False)]
    z = []
    for k in range(0, 21, 2):
        s, r = result.slices[k], records[k]
        for y, x in pixels:
            truth = simulator.eftem_truth(float(y), float(x), energy_offset_eV=s.value, slit_width_eV=10.0,
                                          t_s=r.t_s) * dose_rate * t0
            electrons_k = truth * s.exposure_s / t0 * maps.gain[y, x]
            variance = (electrons_k + maps.dark_counts_per_s[y, x] * s.exposure_s + 2 * 2.0 ** 2) \
                * (t0 / s.exposure_s) ** 2 / maps.gain[y, x] ** 2
            z.append((scaled[k, y, x] - truth) / np.sqrt(variance))
    z_arr = np.asarray(z)
    assert abs(float(z_arr.mean())) < 0.15 and 0.8 < float(z_arr.std()) < 1.3
    # edges at the right energies: jump ratios above the Sc L2,3 (402 eV) and O K (532 eV) onsets
    mean = scaled.reshape(21, -1).mean(axis=1)
    energies = np.asarray([s.value for s in result.slices])
    def at(e: float) -> float:
        return float(mean[int(np.argmin(np.abs(energies - e)))])
    def excess(pre1: float, pre2: float, post: float) -> float:
        # post-edge signal over the power-law background extrapolated from two pre-edge slices
        r = np.log(at(pre1) / at(pre2)) / np.log(pre1 / pre2)
        return at(post) / (at(pre2) * (post / pre2) ** r)
    sc_excess, o_excess = excess(380, 390, 410), excess(510, 520, 540)
    print("edge excess", sc_excess, o_excess, excess(440, 450, 470))
    assert sc_excess > 1.05 and o_excess > 1.05
    assert abs(excess(440, 450, 470) - 1.0) < 0.03   # no edge between them
    assert at(390) < at(380) and at(520) < at(510)   # falling background before each edge
    # the Sc jump-ratio image shows Sc where it is (truth composition)
    ratio = scaled[int(np.argmin(np.abs(energies - 410)))] / np.maximum(scaled[int(np.argmin(np.abs(energies - 390)))], 1)
    px = handle.config.pixel_size_nm
    offset = np.asarray(records[4].offset_nm)
    yy, xx = np.indices(SHAPE) * px
    sc = simulator.eftem_specimen.sample.composition(yy - offset[0], xx - offset[1])["Sc"]
    import scipy.ndimage
    corr = np.corrcoef(scipy.ndimage.gaussian_filter(ratio, 1.0).ravel(), sc.ravel())[0, 1]
    print("jump ratio vs Sc", corr)
    assert corr > 0.3


def test_zero_loss_to_plasmon_needs_many_exposures(sim: typing.Any) -> None:
    _handle, simulator, device = sim
    plan = energy_series_plan(0.0, 10.0, 6, slit_width_eV=5.0)
    result = run_series(device, plan, exposure_s=0.002, policy=_policy(), max_retakes=3,
                        ignore_mask=simulator.artefacts.maps(SHAPE).hot)
    exposures = [s.exposure_s for s in result.slices]
    assert exposures[-1] / exposures[0] >= 4           # zero loss bright, losses weaker
    for a, b in zip(exposures, exposures[1:]):
        ratio = b / a
        assert abs(np.log2(ratio) - round(np.log2(ratio))) < 1e-9   # powers of two only
    assert all(s.status == "ok" for s in result.slices)


def test_focal_series_records_defocus_and_sdsd_follows_the_drift(sim: typing.Any) -> None:
    handle, simulator, device = sim
    simulator.artefacts = None
    handle.instrument.set_value("BeamCurrent", 2e-9)
    handle.instrument.set_value("C30", 1.2e-3)
    handle.instrument.sample_drift = DriftModel(rate_nm_per_s=(0.3, -0.2), random_walk_nm_per_sqrt_s=0.02, seed=5)
    device.overhead_s = 0.5
    plan = focal_series_plan(-40.0, 8.0, 11)
    policy = AutoExposurePolicy(full_scale_counts=2 ** 16 - 1, min_exposure_s=0.001, max_exposure_s=10.0)
    result = run_series(device, plan, exposure_s=0.05, policy=policy)
    records = _kept_records(device, result)
    for s, r in zip(result.slices, records):
        assert r.defocus_m == pytest.approx(s.value * 1e-9)
    assert handle.instrument.get_value("C10") == pytest.approx(0.0)   # restored
    px = handle.config.pixel_size_nm
    true = np.asarray([np.subtract(r.offset_nm, records[0].offset_nm) / px for r in records])
    assert np.abs(true).max() > 2.0
    # low-pass to the frequencies the defocus changes little (the fringes and support texture change contrast)
    aligned = align_stack(result.scaled(), inverted_contrast=True, lowpass_sigma_px=4.0)
    error = np.sqrt(np.mean(np.sum((aligned.shifts_px - true) ** 2, axis=1)))
    assert error < 0.5


def test_bad_input_and_limits(sim: typing.Any) -> None:
    _handle, simulator, device = sim
    with pytest.raises(ParameterError, match="no control 'Cfoo'"):
        run_series(device, SeriesPlan("x", "Cfoo", (1.0, 2.0), "a.u."), exposure_s=0.1, policy=_policy())
    with pytest.raises(ParameterError, match="lower < upper"):
        AutoExposurePolicy(lower_fraction=0.8, upper_fraction=0.5)
    with pytest.raises(ParameterError, match="factor of 2"):
        AutoExposurePolicy(lower_fraction=0.5, upper_fraction=0.8)
    with pytest.raises(ParameterError, match="count"):
        focal_series_plan(0.0, 1.0, 0)
    # max exposure reached: the slice is kept with a clear note, nothing lost
    plan = energy_series_plan(520.0, 10.0, 2, slit_width_eV=2.0)
    result = run_series(device, plan, exposure_s=0.01, policy=_policy(max_exposure_s=0.02), max_retakes=3)
    assert len(result.slices) == 2 and result.complete
    assert all(s.status == "under" for s in result.slices)
    assert any("exposure limit reached" in note for note in result.notes)
    # a series of one frame acquires; aligning it is refused with a message
    one = run_series(device, focal_series_plan(0.0, 1.0, 1), exposure_s=0.01, policy=_policy())
    assert one.raw.shape[0] == 1
    with pytest.raises(InputError, match="at least 2"):
        align_stack(one.scaled())


def test_abort_keeps_slices_and_second_series_is_refused(sim: typing.Any) -> None:
    _handle, simulator, device = sim
    abort = threading.Event()
    started = threading.Event()
    release = threading.Event()
    calls = {"n": 0}
    original = device.acquire

    def slow_acquire(exposure_s: float, binning: int) -> typing.Any:
        calls["n"] += 1
        if calls["n"] == 3:
            started.set()
            release.wait(10)
        return original(exposure_s, binning)

    device.acquire = slow_acquire  # type: ignore[method-assign]
    results: list[typing.Any] = []
    policy = _policy(enabled=False)
    thread = threading.Thread(target=lambda: results.append(
        run_series(device, focal_series_plan(0.0, 5.0, 8), exposure_s=0.01, policy=policy, abort_event=abort)))
    thread.start()
    assert started.wait(10)
    with pytest.raises(SeriesBusyError, match="already running"):
        run_series(device, focal_series_plan(0.0, 5.0, 2), exposure_s=0.01, policy=policy)
    abort.set()
    release.set()
    thread.join(10)
    result = results[0]
    assert not result.complete and len(result.slices) == 3
    assert any("aborted" in note for note in result.notes)


def test_frames_changing_shape_mid_series_stop_it_and_keep_the_slices(sim: typing.Any) -> None:
    """The camera's readout area changes after 3 slices: a clear message, the 3 slices kept, marked incomplete,
    the controls restored, and the kept slices scale and align."""
    handle, _simulator, device = sim
    original = device.acquire
    calls = {"n": 0}

    def shrinking_acquire(exposure_s: float, binning: int) -> typing.Any:
        calls["n"] += 1
        frame = original(exposure_s, binning)
        return frame if calls["n"] <= 3 else frame[:64, :96]

    device.acquire = shrinking_acquire  # type: ignore[method-assign]
    before = handle.instrument.get_value("C10")
    result = run_series(device, focal_series_plan(-20.0, 10.0, 6), exposure_s=0.01, policy=_policy(enabled=False))
    assert not result.complete and len(result.slices) == 3 and result.raw.shape == (3,) + SHAPE
    message = " ".join(result.notes)
    assert "slice 3 has shape (64, 96)" in message and f"the series {SHAPE}" in message
    assert "3 slices acquired are kept" in message and "Keep the binning" in message
    assert result.report()["complete"] is False and result.report()["slices_acquired"] == 3
    assert handle.instrument.get_value("C10") == before
    assert result.scaled().shape == (3,) + SHAPE
    # and SDSD refuses frames of different shapes with a message (a list of frames as a stack)
    with pytest.raises(InputError, match="different shapes"):
        align_stack([result.raw[0], result.raw[1], result.raw[2][:64, :96]])


def test_a_first_slice_that_is_not_an_image_is_an_error_not_an_empty_series(sim: typing.Any) -> None:
    """The camera returns a 3-D array on the first slice (nothing acquired yet): raised with a message."""
    _handle, _simulator, device = sim
    original = device.acquire
    device.acquire = lambda exposure_s, binning: original(exposure_s, binning)[None]  # type: ignore[method-assign]
    with pytest.raises(InputError, match="expected a 2-D frame"):
        run_series(device, focal_series_plan(0.0, 1.0, 3), exposure_s=0.01, policy=_policy(enabled=False))
