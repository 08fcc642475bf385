"""The "Drift-corrected SI" panel builds in a (test-UI) document window, remembers its settings, reads its regions
and refuses to start while another run is active."""
from __future__ import annotations

import typing

import numpy as np
import pytest

from nion.swift.model import DataItem
from nion.swift.model import Graphics

from nionswift_plugin.insitu import drift_si
from nionswift_plugin.insitu import drift_si_panel


def test_panel_settings_regions_and_busy(document_controller: typing.Any, tmp_path: typing.Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSITU_SETTINGS_DIR", str(tmp_path))
    drift_si.DriftSISettings(si_size_px=(24, 40), section_lines=3).save()
    panel = drift_si_panel.DriftSIPanel(document_controller, "drift-si-test", {})
    try:
        assert panel.settings.si_size_px == (24, 40) and panel.settings.section_lines == 3
        # place the regions on a survey image, move the field rectangle, read it back
        data_item = DataItem.new_data_item(np.zeros((64, 64), np.float32))
        document_controller.document_model.append_data_item(data_item)
        display_item = document_controller.document_model.get_display_item_for_data_item(data_item)
        monkeypatch.setattr(type(document_controller), "selected_display_item", property(lambda self: display_item))
        panel._place_regions()
        labels = sorted(g.label for g in display_item.graphics if isinstance(g, Graphics.RectangleGraphic))
        assert set(labels) == {drift_si_panel.FIELD_LABEL, drift_si_panel.REFERENCE_LABEL}
        panel._field_graphic.bounds = ((0.1, 0.2), (0.3, 0.4))
        panel._read_regions()
        assert panel.settings.scan_field == pytest.approx((0.1, 0.2, 0.3, 0.4))
        assert drift_si.DriftSISettings.load().scan_field == pytest.approx((0.1, 0.2, 0.3, 0.4))  # remembered
        # a second acquisition is refused with a message while one runs
        blocker = drift_si.DriftCorrectedSI(drift_si.DriftSISettings())
        drift_si._ACTIVE.append(blocker)
        try:
            panel.start()
            document_controller.periodic()
            assert "already running" in panel._status.text
        finally:
            drift_si._ACTIVE.remove(blocker)
    finally:
        panel.close()


def test_panel_runs_an_si_on_the_simulator_and_adds_data_items(tmp_path: typing.Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from the panel: progress and live items update, the result items appear (SI with nm/nm/eV)."""
    import time

    from instrument_sim.configuration import SimulatorConfiguration
    from instrument_sim.drift import DriftModel
    from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES
    from nionswift_plugin.insitu.headless import HeadlessSwift

    monkeypatch.setenv("INSITU_SETTINGS_DIR", str(tmp_path))
    drift_si.DriftSISettings(si_size_px=(8, 8), section_lines=4, exposure_s=0.002).save()
    config = SimulatorConfiguration(seed=1, drift=DriftModel(rate_nm_per_s=(0.05, 0.0), seed=1),
                                    device_factories=STEM_DEVICE_FACTORIES)
    with HeadlessSwift(config) as swift:
        dc = swift.document_controller
        panel = drift_si_panel.DriftSIPanel(dc, "drift-si-run", {})
        try:
            panel.start()
            deadline = time.monotonic() + 60
            while panel._run is not None and time.monotonic() < deadline:
                dc.periodic()
                time.sleep(0.02)
            dc.periodic()
            titles = [d.title for d in dc.document_model.data_items]
            assert "Drift-corrected SI (EELS)" in titles and "Drift Log" in titles
            assert "Drift-corrected SI (live)" in titles and "Drift-corrected SI latest spectrum" in titles
            si = next(d for d in dc.document_model.data_items if d.title == "Drift-corrected SI (EELS)")
            assert si.xdata.data_shape[:2] == (8, 8)
            assert [c.units for c in si.xdata.dimensional_calibrations] == ["nm", "nm", "eV"]
            assert panel._status.text.startswith("complete")
        finally:
            panel.close()


def test_panel_lists_swift_devices_and_refuses_bad_choices(tmp_path: typing.Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Scan and spectrometer are chosen from the devices Swift knows; a camera that is not a spectrometer and a
    device that is gone are refused at Start with a message, before anything is acquired."""
    from instrument_sim.configuration import SimulatorConfiguration
    from nionswift_plugin.insitu.headless import HeadlessSwift

    monkeypatch.setenv("INSITU_SETTINGS_DIR", str(tmp_path))
    drift_si.DriftSISettings(si_size_px=(4, 4)).save()
    with HeadlessSwift(SimulatorConfiguration(seed=1)) as swift:  # in-situ camera + STEM (scan, EELS, laser)
        dc = swift.document_controller
        panel = drift_si_panel.DriftSIPanel(dc, "drift-si-devices", {})
        try:
            assert "insitu_scan" in panel._scan_ids and panel._scan_ids == [i for i, _n in drift_si.scan_choices()]
            assert panel._camera_ids == ["insitu_eels_camera"]  # the in-situ (imaging) camera is not offered
            assert any("insitu_eels_camera" in item for item in panel._camera_combo.items)
            for camera_id, message in (("insitu_camera", "not a spectrometer"), ("gone_camera", "not found")):
                panel.settings.camera_hardware_source_id = camera_id
                panel.start()
                dc.periodic()
                assert message in panel._status.text and panel._run is None, panel._status.text
                assert drift_si.DriftCorrectedSI.active_run() is None
            assert any("not available" in item for item in panel._camera_combo.items)  # the gone one is marked
        finally:
            panel.close()
