from __future__ import annotations

import contextlib
import gc
import pathlib
import threading
import typing
import unittest

import numpy as np
import pytest
from skimage.registration import phase_cross_correlation

from nion.data import DataAndMetadata
from nion.instrumentation import HardwareSource
from nion.instrumentation import camera_base
from nion.instrumentation import stem_controller
from nion.swift import Facade
from nion.swift import Panel
from nion.swift.test import TestContext
from nion.utils import Geometry
from nion.utils import Registry

from instrument_sim import CAMERA_ID
from instrument_sim.configuration import (DEVICE_FACTORIES, SimulatorConfiguration, SimulatorHandle, build_simulator,
                                          insitu_camera_factory, register_simulator, unregister_simulator)
from instrument_sim.drift import DriftModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.instrument import ManualClock

Facade.initialize()

SHAPE = (512, 512)


def _config(clock: ManualClock, **kwargs: typing.Any) -> SimulatorConfiguration:
    # only the in-situ camera: the STEM devices have their own tests
    options: dict[str, typing.Any] = dict(seed=4, frame_shape=SHAPE, n_particles=4, melt_period_s=None,
                                          clock=clock, drift=DriftModel(rate_nm_per_s=(0.3, -0.2), seed=1),
                                          device_factories=[insitu_camera_factory])
    options.update(kwargs)
    return SimulatorConfiguration(**options)


def _acquisition_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "acquisition_thread" in t.name]


def _frame_data(handle: SimulatorHandle, *, exposure_s: float = 0.05, binning: int = 1,
                area: tuple[int, int, int, int] = (0, 0) + SHAPE) -> DataAndMetadata.DataAndMetadata:
    simulator = handle.insitu_camera.simulator
    return simulator.get_frame_data(Geometry.IntRect.from_tlbr(*area), Geometry.IntSize(binning, binning), exposure_s,
                                    handle.instrument.scan_context, None)


# --- the simulator alone (no Swift machinery)


def test_a_frame_record_is_found_by_its_stamp_after_device_kit_dropped_the_frame() -> None:
    """device_kit stamps a frame at the end of its exposure, renders the next one, and hands out a deep copy of
    the stamped frame whenever ``acquire_image`` runs: on a busy machine that may be after several more frames
    and after the frame it was given has died. The record must still be found by the stamp."""
    from nion.utils import DateTime
    clock = ManualClock(1.0)
    handle = build_simulator(_config(clock))
    try:
        simulator = handle.insitu_camera.simulator
        stamps, t_s = [], []
        for i in range(5):
            xdata = _frame_data(handle)
            t_s.append(xdata.metadata["insitu_sim"]["t_s"])
            xdata._set_timestamp(DateTime.utcnow())  # as device_kit does at the end of the exposure
            stamps.append(xdata.timestamp)
            clock.advance(0.05)
            del xdata
            gc.collect()  # nothing but the simulator keeps the frame it handed out
        _frame_data(handle)  # the next frame is being exposed
        for stamp, t in zip(stamps, t_s):
            record = simulator.record_for_timestamp(stamp)
            assert record is not None and record.as_metadata()["t_s"] == t
    finally:
        unregister_simulator(handle)


def test_frame_shape_calibration_dose_and_blanking() -> None:
    handle = build_simulator(_config(ManualClock(1.0)))
    try:
        px = handle.config.pixel_size_nm
        xdata = _frame_data(handle, binning=2, area=(0, 0, 512, 256))
        assert xdata.data_shape == (256, 128)
        assert [c.units for c in xdata.dimensional_calibrations] == ["nm", "nm"]
        np.testing.assert_allclose([c.scale for c in xdata.dimensional_calibrations], [2 * px, 2 * px])
        assert xdata.metadata["insitu_sim"]["t_s"] == 1.0
        # dose = beam current x exposure over the sensor; binning sums
        dose_50ms = handle.instrument.GetVal("BeamCurrent") / 1.602176634e-19 / (512 * 512) * 0.05
        mean_b1 = float(_frame_data(handle).data.mean())
        assert mean_b1 == pytest.approx(dose_50ms, rel=0.1)  # intensity ~1 on average (particles darker)
        assert float(_frame_data(handle, exposure_s=0.2).data.mean()) == pytest.approx(4 * mean_b1, rel=0.01)
        assert float(xdata.data.mean()) == pytest.approx(4 * mean_b1, rel=0.02)
        handle.instrument.SetVal("BeamCurrent", 50e-12)
        assert float(_frame_data(handle).data.mean()) == pytest.approx(mean_b1 / 4, rel=0.02)
        handle.instrument.SetVal("C_Blank", 1.0)
        assert float(_frame_data(handle).data.max()) == 0.0
        log = handle.insitu_camera.simulator.frame_log
        assert log[-1].dose_e_per_px == 0.0 and log[0].binning == 2
    finally:
        unregister_simulator(handle)


def test_camera_frames_follow_the_drift_and_the_stage() -> None:
    clock = ManualClock(0.0)
    handle = build_simulator(_config(clock))
    try:
        simulator = handle.insitu_camera.simulator
        instrument = handle.instrument
        f0 = _frame_data(handle, exposure_s=0.2).data
        truth0 = simulator.truth(0.0)  # stage at 0
        clock.set(6.0)
        instrument.SetVal2D("stage_position_m", Geometry.FloatPoint(y=0.4e-9, x=-0.9e-9))
        f1 = _frame_data(handle, exposure_s=0.2).data
        shift, _, _ = phase_cross_correlation(f1, f0, upsample_factor=20)  # type: ignore[no-untyped-call]
        truth1 = simulator.truth(6.0)
        expected_px = truth1.offset_px - truth0.offset_px
        # drift 0.3/-0.2 nm/s for 6 s, minus the stage (0.4, -0.9) nm
        np.testing.assert_allclose(truth1.offset_nm, [1.8 - 0.4, -1.2 + 0.9], atol=1e-9)
        np.testing.assert_allclose(shift, expected_px, atol=0.15)
        # the rendered frame is the scene at the truth offset
        clean = simulator.scene.clean_image(6.0, offset_nm=truth1.offset_nm)
        residual, _, _ = phase_cross_correlation(f1, clean, upsample_factor=20)  # type: ignore[no-untyped-call]
        np.testing.assert_allclose(residual, [0.0, 0.0], atol=0.1)
        for p0, p1 in zip(truth0.particles, truth1.particles):
            np.testing.assert_allclose(np.subtract(p1.centre_px, p0.centre_px), expected_px, atol=1e-9)
    finally:
        unregister_simulator(handle)


def test_registration_errors_and_idempotent_unregister() -> None:
    assert insitu_camera_factory in DEVICE_FACTORIES
    handle = register_simulator(_config(ManualClock(0.0)))
    try:
        assert Registry.get_component("stem_controller") is handle.instrument
        assert len(Registry.get_components_by_type("camera_module")) == 1
        with pytest.raises(SimulatorParameterError, match="already registered"):
            register_simulator(_config(ManualClock(0.0)))
    finally:
        unregister_simulator(handle)
    unregister_simulator(handle)
    assert not Registry.get_components_by_type("stem_controller")
    assert not Registry.get_components_by_type("camera_module")
    assert Registry.get_component(f"{CAMERA_ID}_device") is None
    assert not _acquisition_threads()


# --- through Swift's hardware-source machinery (headless)


@contextlib.contextmanager
def _swift_context(config: SimulatorConfiguration, configuration_location: pathlib.Path, *,
                   with_event_loop: bool = False) -> typing.Iterator[
        tuple[typing.Any, SimulatorHandle, camera_base.CameraHardwareSource]]:
    """Like nion.instrumentation.test.AcquisitionTestContext, with our simulator instead of usim.

    ``with_event_loop`` calls ``stem_controller.register_event_loop`` (as a Swift window does); its
    ScanContextController needs a scan device for every registered instrument (stem_controller.py
    ``register_instrument``), so it is only possible with the STEM devices.
    """
    from nionswift_plugin import nion_instrumentation_ui
    TestContext.begin_leaks()
    with contextlib.ExitStack() as stack:
        test_setup = TestContext.TestSetup()
        nion_instrumentation_ui.configuration_location = configuration_location
        nion_instrumentation_ui.run()
        stack.callback(nion_instrumentation_ui.stop)
        manager = HardwareSource.HardwareSourceManager()
        manager._hardware_source_list_model.clear_items()
        # unlike AcquisitionTestContext, keep the added/removed events so that the camera panel gets registered
        handle = register_simulator(config)
        stack.callback(unregister_simulator, handle)
        profile_context = TestContext.MemoryProfileContext()
        stack.callback(profile_context.close)
        document_controller = profile_context.create_document_controller(auto_close=False)
        if with_event_loop:
            stack.callback(stem_controller.unregister_event_loop)
            stem_controller.register_event_loop(document_controller.event_loop)
        stack.callback(document_controller.close)
        stack.callback(document_controller.periodic)
        stack.callback(gc.collect)
        hardware_source = manager.get_hardware_source_for_hardware_source_id(CAMERA_ID)
        assert isinstance(hardware_source, camera_base.CameraHardwareSource)
        yield document_controller, handle, hardware_source
    del test_setup
    TestContext.end_leaks(unittest.TestCase())


def test_swift_plays_the_insitu_camera(tmp_path: pathlib.Path) -> None:
    clock = ManualClock(2.0)
    config = _config(clock)
    with _swift_context(config, pathlib.Path(tmp_path)) as (document_controller, handle, camera):
        assert camera.display_name == "In-situ Camera"
        assert camera.features.get("is_camera")
        # the standard camera control panel (Play/Pause, exposure, binning) is registered and can be built
        panel_id = f"camera-control-panel-{CAMERA_ID}"
        assert panel_id in Panel.PanelManager().panel_ids
        name, positions, position, properties = Panel.PanelManager().get_panel_info(panel_id)
        assert properties is not None and "camera_panel_type" not in properties
        panel = Panel.PanelManager().create_panel_content(document_controller, panel_id, name, positions, position,
                                                          properties)
        assert panel is not None and type(panel).__name__ == "CameraControlPanel"
        panel.close()
        frame_parameters = camera.get_current_frame_parameters()
        assert frame_parameters.exposure_ms == 50.0 and frame_parameters.binning == 1
        frame_parameters.exposure_ms = 20.0
        camera.set_current_frame_parameters(frame_parameters)
        camera.start_playing()
        try:
            xdatas = camera.get_next_xdatas_to_finish(10.0)
            xdata = xdatas[0]
            assert xdata is not None and xdata.data_shape == SHAPE
            assert [c.units for c in xdata.dimensional_calibrations] == ["nm", "nm"]
            assert xdata.dimensional_calibrations[0].scale == pytest.approx(config.pixel_size_nm)
            assert xdata.intensity_calibration.units == "counts"
            # the clock is frozen: the frame is the scene at t = 2 s
            truth = handle.insitu_camera.simulator.truth()
            clean = handle.insitu_camera.simulator.scene.clean_image(2.0, offset_nm=truth.offset_nm)
            residual, _, _ = phase_cross_correlation(  # type: ignore[no-untyped-call]
                xdata.data, clean, upsample_factor=20)
            np.testing.assert_allclose(residual, [0.0, 0.0], atol=0.1)
            # binning 2 while playing
            frame_parameters.binning = 2
            camera.set_current_frame_parameters(frame_parameters)
            shapes = []
            for _ in range(5):  # frames already under way keep the old binning
                binned = camera.get_next_xdatas_to_finish(10.0)[0]
                assert binned is not None
                shapes.append(binned.data_shape)
                if binned.data_shape == (256, 256):
                    break
            assert shapes[-1] == (256, 256), shapes
            assert binned is not None
            assert binned.dimensional_calibrations[1].scale == pytest.approx(2 * config.pixel_size_nm)
        finally:
            camera.stop_playing(sync_timeout=5.0)
        document_controller.periodic()
        data_items = document_controller.document_model.data_items
        assert any(item.xdata is not None and item.xdata.data_shape == (256, 256) for item in data_items)
        # sequence acquisition (what the Acquisition panel uses to record a movie)
        elements = camera.acquire_sequence(3)
        assert elements is not None and elements[0]["data"].shape == (3, 256, 256)
        assert [c.get("units") for c in elements[0]["spatial_calibrations"]] == [None, "nm", "nm"]
    assert f"camera-control-panel-{CAMERA_ID}" not in Panel.PanelManager().panel_ids
    assert not Registry.get_components_by_type("hardware_source")
    assert not Registry.get_components_by_type("stem_controller")
    assert Registry.get_component(f"{CAMERA_ID}_device") is None
    assert not _acquisition_threads()


def test_default_configuration_registers_all_devices_and_plays_the_camera(tmp_path: pathlib.Path) -> None:
    config = SimulatorConfiguration(seed=2, frame_shape=SHAPE, n_particles=4, clock=ManualClock(1.0))
    with _swift_context(config, tmp_path, with_event_loop=True) as (document_controller, handle, camera):
        ids = {source.hardware_source_id for source in HardwareSource.HardwareSourceManager().hardware_sources}
        assert CAMERA_ID in ids and len(ids) == len([d for d in handle.devices.values()
                                                     if d.component_types & {"camera_module", "scan_module"}])
        camera.start_playing()
        try:
            xdata = camera.get_next_xdatas_to_finish(10.0)[0]
            assert xdata is not None and xdata.data_shape == SHAPE
        finally:
            camera.stop_playing(sync_timeout=5.0)
    assert not Registry.get_components_by_type("hardware_source")
    assert not _acquisition_threads()


def test_live_frames_carry_their_ground_truth_record_with_a_running_clock(tmp_path: pathlib.Path) -> None:
    # real (monotonic) clock and a fast drift: each frame's metadata says when it was taken and where the sample was
    drift = DriftModel(rate_nm_per_s=(3.0, -2.0), random_walk_nm_per_sqrt_s=0.5, seed=3)
    config = SimulatorConfiguration(seed=3, frame_shape=(256, 256), n_particles=2, melt_period_s=None, drift=drift,
                                    device_factories=[insitu_camera_factory])
    with _swift_context(config, tmp_path) as (document_controller, handle, camera):
        frame_parameters = camera.get_current_frame_parameters()
        frame_parameters.exposure_ms = 20.0
        camera.set_current_frame_parameters(frame_parameters)
        camera.start_playing()
        try:
            frames = [camera.get_next_xdatas_to_finish(10.0)[0] for _ in range(3)]
        finally:
            camera.stop_playing(sync_timeout=5.0)
        simulator = handle.insitu_camera.simulator
        times = []
        for xdata in frames:
            assert xdata is not None
            record = xdata.metadata["hardware_source"]["insitu_sim"]
            times.append(record["t_s"])
            np.testing.assert_allclose(record["offset_nm"], handle.instrument.content_offset_nm(record["t_s"]))
            clean = simulator.scene.clean_image(record["t_s"], offset_nm=record["offset_nm"])
            residual, _, _ = phase_cross_correlation(  # type: ignore[no-untyped-call]
                xdata.data, clean, upsample_factor=20)
            np.testing.assert_allclose(residual, [0.0, 0.0], atol=0.15)
        assert times == sorted(times) and len(set(times)) == 3
