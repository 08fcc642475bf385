"""Simulator mode panels: the Simulator panel and the Simulated Laser panel drive the simulated instrument, and the
settings persist in the instrumentation configuration folder."""
from __future__ import annotations

import json
import typing

import pytest

from instrument_sim.configuration import SimulatorConfiguration
from instrument_sim.drift import DriftModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.simulator_settings import SimulatorSettings, load_settings, save_settings
from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES, stem_parts
from nionswift_plugin.insitu import simulator_panel
from nionswift_plugin.insitu.headless import HeadlessSwift


@pytest.fixture(scope="module")
def swift() -> typing.Iterator[HeadlessSwift]:
    with HeadlessSwift(SimulatorConfiguration(seed=2, drift=DriftModel(), device_factories=STEM_DEVICE_FACTORIES)) as s:
        yield s


def test_settings_round_trip_and_validation(tmp_path: typing.Any) -> None:
    s = SimulatorSettings(sample="nanoparticles", drift_rate_x_nm_per_s=0.3, jump_rate_per_s=0.01, jump_size_nm=2.0,
                          energy_rate_meV_per_s=4.0, laser={"wavelength_nm": 600.0, "beta_squared_per_mW": 2.0})
    save_settings(s, tmp_path / "s.json")
    assert load_settings(tmp_path / "s.json") == s
    assert load_settings(tmp_path / "missing.json") is None
    assert abs(s.drift_model().offset_nm(10.0)[1] - 3.0) <= 2.0 * len(s.drift_model().jump_times_s(10.0)) + 1e-9
    with pytest.raises(SimulatorParameterError, match="outside"):
        SimulatorSettings(beam_current_pA=-5.0)
    with pytest.raises(SimulatorParameterError, match="sample"):
        SimulatorSettings(sample="cheese")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(SimulatorParameterError, match="delete it"):
        load_settings(tmp_path / "bad.json")


def test_simulator_panel_sets_drift_sample_beam_and_coupling_and_saves(swift: HeadlessSwift) -> None:
    instrument = swift.simulator.instrument
    parts = stem_parts(instrument)
    panel = simulator_panel.SimulatorPanel(swift.document_controller, simulator_panel.SIMULATOR_PANEL_ID, {})
    try:
        assert panel.instrument is instrument
        panel.rows["drift_rate_x_nm_per_s"].edit.on_editing_finished("0.25")
        assert instrument.sample_drift.offset_nm(4.0)[1] == pytest.approx(1.0)
        panel.rows["beam_current_pA"].edit.on_editing_finished("50")
        assert instrument.GetVal("BeamCurrent") == pytest.approx(50e-12)
        panel.rows["energy_rate_meV_per_s"].edit.on_editing_finished("10")
        assert float(instrument.true_energy_offset_eV(2.0)) == pytest.approx(0.02)
        panel.rows["beta_squared_per_mW"].edit.on_editing_finished("3")
        assert parts.laser.state().beta_squared_per_mW == 3.0
        panel.sample_combo.on_current_item_changed("nanoparticles")
        assert parts.specimen.sample.name == "nanoparticles"
        # bad input: the error is shown, the value is unchanged and the field shows the current value again
        panel.rows["jump_size_nm"].edit.on_editing_finished("abc")
        assert "not a number" in panel.status.text
        panel.rows["beam_current_pA"].edit.on_editing_finished("-3")
        assert "outside" in panel.status.text and instrument.GetVal("BeamCurrent") == pytest.approx(50e-12)
        assert panel.rows["beam_current_pA"].edit.text == "50"
        # saved where the camera/scan configurations are
        path = simulator_panel.settings_path()
        assert path is not None and path.exists()
        saved = json.loads(path.read_text())
        assert saved["drift_rate_x_nm_per_s"] == 0.25 and saved["sample"] == "nanoparticles"
        assert saved["laser"]["beta_squared_per_mW"] == 3.0
        # persistence: a fresh start (defaults) gets the saved settings back
        instrument.sample_drift = DriftModel()
        instrument.SetVal("BeamCurrent", 200e-12)
        assert simulator_panel.restore_settings(instrument)
        assert instrument.sample_drift.offset_nm(4.0)[1] == pytest.approx(1.0)
        assert instrument.GetVal("BeamCurrent") == pytest.approx(50e-12)
    finally:
        panel.close()
        SimulatorSettings().apply(instrument)


def test_laser_panel_drives_the_laser(swift: HeadlessSwift) -> None:
    laser = stem_parts(swift.simulator.instrument).laser
    panel = simulator_panel.LaserPanel(swift.document_controller, simulator_panel.LASER_PANEL_ID, {})
    try:
        panel.rows["wavelength_nm"].edit.on_editing_finished("620")
        assert laser.state().wavelength_nm == 620.0
        assert "1.9997 eV" in panel.photon_label.text  # 1239.84 / 620
        panel.shutter.on_checked_changed(True)
        assert laser.state().shutter_open
        panel.rows["blanker_duty"].edit.on_editing_finished("2")
        assert "outside" in panel.status.text and laser.state().blanker_duty == 1.0
        panel.rows["power_mW"].edit.on_editing_finished("5")
        path = simulator_panel.settings_path()
        assert path is not None and json.loads(path.read_text())["laser"]["power_mW"] == 5.0
    finally:
        panel.close()


def test_register_panels_registers_both_and_restores_settings(swift: HeadlessSwift) -> None:
    from nion.swift import Panel
    instrument = swift.simulator.instrument
    path = simulator_panel.settings_path()
    assert path is not None
    save_settings(SimulatorSettings(drift_rate_y_nm_per_s=-0.5), path)
    simulator_panel.register_panels()
    try:
        manager = Panel.PanelManager()
        assert {simulator_panel.SIMULATOR_PANEL_ID, simulator_panel.LASER_PANEL_ID} <= set(manager.panel_ids)
        # Swift builds the panel as it does for a dock: the real construction path
        for panel_id in (simulator_panel.SIMULATOR_PANEL_ID, simulator_panel.LASER_PANEL_ID):
            name, positions, position, properties = manager.get_panel_info(panel_id)
            panel = manager.create_panel_content(swift.document_controller, panel_id, name, positions, position,
                                                 properties)
            assert panel is not None and panel.widget is not None
            panel.close()
        assert instrument.sample_drift.offset_nm(2.0)[0] == pytest.approx(-1.0)
    finally:
        simulator_panel.unregister_panels()
        SimulatorSettings().apply(instrument)


def test_swifts_own_scan_and_camera_panels_are_built_for_the_simulated_devices(swift: HeadlessSwift) -> None:
    from nion.swift import Panel
    manager = Panel.PanelManager()
    built = []
    for panel_id in ("scan-control-panel-insitu_scan", "camera-control-panel-insitu_eels_camera"):
        assert panel_id in manager.panel_ids  # nion_instrumentation_ui registered them for our hardware sources
        name, positions, position, properties = manager.get_panel_info(panel_id)
        panel = manager.create_panel_content(swift.document_controller, panel_id, name, positions, position,
                                             properties)
        assert panel is not None
        built.append(panel)
    scan = swift.hardware_source("insitu_scan")
    fp = scan.get_current_frame_parameters()
    fp.size = type(fp.size)(64, 64)
    scan.set_current_frame_parameters(fp)
    scan.start_playing()
    try:
        xdatas = scan.get_next_xdatas_to_finish()
        assert xdatas[0].data.shape == (64, 64) and float(xdatas[0].data.max()) > 0
        swift.pump(0.2)  # the panels' queued updates run against the live device
    finally:
        scan.stop_playing(sync_timeout=5.0)
        swift.pump(0.1)
        for panel in built:
            panel.close()
