"""The focal / energy series method in Swift's own Acquisition panel (fixed exposure), headless: registered as an
``acquisition-method-component-factory``, its panel UI declared, and the data stream it builds around Swift's camera
device stream acquires an energy series across the Sc L2,3 edge (one slice per energy, controls restored) and a focal
series whose frames record the true defocus."""
from __future__ import annotations

import typing

import numpy as np
import pytest

from instrument_sim.configuration import SimulatorConfiguration
from instrument_sim.drift import DriftModel
from nionswift_plugin.insitu import series_method
from nionswift_plugin.insitu.headless import HeadlessSwift
from processing.base import ParameterError


@pytest.fixture
def headless() -> typing.Iterator[HeadlessSwift]:
    config = SimulatorConfiguration(seed=3, frame_shape=(64, 64), n_particles=2, melt_period_s=None,
                                    drift=DriftModel(rate_nm_per_s=(0.0, 0.0), seed=1), exposure_ms=10.0)
    with HeadlessSwift(config) as swift:
        swift.simulator.instrument.set_value("BeamCurrent", 10e-9)
        series_method.register()
        yield swift


def _acquire(handler: typing.Any) -> typing.Any:
    from nion.instrumentation import Acquisition, HardwareSource, camera_base
    from nion.instrumentation import stem_controller as STEMController
    camera = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id("insitu_camera")
    device_map: dict[str, typing.Any] = {"stem": STEMController.STEMDeviceController()}
    parameters = camera.get_current_frame_parameters()
    parameters.exposure_ms = 20.0
    device_stream = camera_base.build_camera_device_data_stream(camera, parameters, None, device_map)
    stream = handler.build_acquisition_method().wrap_acquisition_device_data_stream(device_stream, device_map)
    data = Acquisition.acquire_immediate(stream)
    return stream, next(iter(data.values()))


def test_method_is_registered_with_the_acquisition_panel(headless: HeadlessSwift) -> None:
    from nion.utils import Registry
    factories = list(Registry.get_components_by_type("acquisition-method-component-factory"))
    ours = [f for f in factories if getattr(f, "component_id", "") == series_method.COMPONENT_ID]
    assert len(ours) == 1
    names = {getattr(f, "component_id", "") for f in factories}
    assert {"series-acquire", "sequence-acquire"} <= names       # next to Swift's own methods
    handler = ours[0](series_method._schema().create(), None)
    assert handler.display_name == "In-situ focal / energy series"
    assert handler.ui_view["type"] == "column"
    assert "Focal / energy series" in str(handler.ui_view)    # says where auto-exposure is


def test_swifts_acquisition_panel_lists_the_method(headless: HeadlessSwift, tmp_path: typing.Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Swift's own Acquisition panel, built headless as the application builds it (its configuration and
    preferences files), offers the method next to its own ones."""
    from nion.instrumentation import AcquisitionPreferences
    from nion.swift.model import ApplicationData
    from nionswift_plugin.nion_instrumentation_ui import AcquisitionPanel
    monkeypatch.setattr(AcquisitionPreferences, "acquisition_preferences", None)
    AcquisitionPreferences.init_acquisition_preferences(tmp_path / "nion_acquisition_preferences.json")
    monkeypatch.setattr(AcquisitionPanel, "acquisition_configuration", AcquisitionPanel.AcquisitionConfiguration(
        ApplicationData.ApplicationData(tmp_path / "nion_acquisition_configuration.json")))
    panel = AcquisitionPanel.AcquisitionPanel(headless.document_controller, "acquisition-panel", {})
    try:
        headless.pump(0.3)
        import gc
        combos = [o for o in gc.get_objects() if type(o).__name__ == "ComponentComboBoxHandler"]
        names = [[getattr(i, "display_name", "") for i in c._combo_box_handler.sorted_items.items] for c in combos]
        methods = next(n for n in names if "1D Ramp" in n)
        assert "In-situ focal / energy series" in methods and "Sequence" in methods, names
    finally:
        panel.close()


def test_energy_series_across_sc_l23_through_swifts_stream(headless: HeadlessSwift) -> None:
    instrument = headless.simulator.instrument
    handler = series_method.InsituSeriesMethodHandler(series_method._schema().create(), None)
    handler.configuration.kind = 1
    handler.configuration.start = 360.0
    handler.configuration.step = 20.0
    handler.configuration.count = 5
    handler.configuration.slit_width_eV = 10.0
    stream, xdata = _acquire(handler)
    assert stream.title == "Energy series 360-440 eV"
    assert xdata.data.shape == (5, 64, 64)
    simulator = headless.simulator.insitu_camera.simulator
    energies = [360.0, 380.0, 400.0, 420.0, 440.0]
    points = [(y, x) for y in range(2, 64, 4) for x in range(2, 64, 4)]
    truth = np.asarray([np.mean([simulator.eftem_truth(y, x, energy_offset_eV=e, slit_width_eV=10.0)
                                 for y, x in points]) for e in energies])
    measured = np.asarray([np.mean([xdata.data[k, y, x] for y, x in points]) for k in range(5)])
    # each slice at its own energy (no slice late by a frame): the profile over the series matches the truth's
    # (Poisson noise of 256 pixels x ~50 counts: ~1 %); a profile late by one slice would be off by > 3 %
    profile, expected = measured / measured.mean(), truth / truth.mean()
    lagged = np.r_[truth[:1], truth[:-1]]
    assert not np.allclose(lagged / lagged.mean(), expected, rtol=0.03)
    assert np.allclose(profile, expected, rtol=0.03), (profile, expected)
    assert instrument.get_value("EFTEM_Slit") == 0.0 and instrument.get_value("EFTEM_EnergyOffset") == 0.0


def test_focal_series_sets_the_defocus_of_each_frame(headless: HeadlessSwift,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from nion.utils import Registry
    instrument = headless.simulator.instrument
    instrument.set_value("C30", 1.2e-3)
    stem = Registry.get_component("stem_controller")
    calls: list[tuple[str, float]] = []
    original = stem.SetValAndConfirm

    def record(name: str, value: float, *args: typing.Any) -> typing.Any:
        calls.append((name, float(value)))
        return original(name, value, *args)

    monkeypatch.setattr(stem, "SetValAndConfirm", record)
    handler = series_method.InsituSeriesMethodHandler(series_method._schema().create(), None)
    handler.configuration.kind = 0
    handler.configuration.start = -30.0
    handler.configuration.step = 15.0
    handler.configuration.count = 5
    _stream, xdata = _acquire(handler)
    assert xdata.data.shape == (5, 64, 64)
    assert [c for c in calls if c[0] == "C10"] == [("C10", v * 1e-9) for v in (-30.0, -15.0, 0.0, 15.0, 30.0)] + \
        [("C10", 0.0)]                                       # one per slice, then restored
    assert instrument.get_value("C10") == 0.0
    # the contrast transfer changes with the defocus: consecutive frames differ
    differences = [float(np.abs(xdata.data[k + 1] - xdata.data[k]).mean()) for k in range(4)]
    assert min(differences) > 0


def test_bad_plans_are_messages() -> None:
    with pytest.raises(ParameterError, match="count"):
        series_method.plan_from(0, 0.0, 1.0, 0, 10.0)
    with pytest.raises(ParameterError, match="slit width"):
        series_method.plan_from(1, 400.0, 10.0, 3, 0.0)
