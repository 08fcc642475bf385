"""Focal / energy series in headless Swift on the simulated camera: the panel runs a series with auto-exposure
through Swift's hardware source, the results appear as data items (raw integers, scaled, SDSD aligned), progress,
abort keeps the slices, a second series is refused, bad input is a message."""
from __future__ import annotations

import time
import typing

import numpy as np
import pytest

from instrument_sim.configuration import SimulatorConfiguration
from instrument_sim.detector import CameraArtefacts
from instrument_sim.drift import DriftModel
from nionswift_plugin.insitu import series_acquisition
from nionswift_plugin.insitu.headless import HeadlessSwift


@pytest.fixture
def headless() -> typing.Iterator[HeadlessSwift]:
    config = SimulatorConfiguration(seed=3, frame_shape=(96, 96), n_particles=2, melt_period_s=None,
                                    drift=DriftModel(rate_nm_per_s=(0.02, 0.01), seed=1), exposure_ms=10.0)
    with HeadlessSwift(config) as swift:
        simulator = swift.simulator.insitu_camera.simulator
        simulator.artefacts = CameraArtefacts(seed=2)
        swift.simulator.instrument.set_value("BeamCurrent", 10e-9)
        yield swift


def _wait(swift: HeadlessSwift, panel: typing.Any, timeout_s: float = 120.0) -> None:
    end = time.monotonic() + timeout_s
    while panel.runner is not None and panel.runner.running and time.monotonic() < end:
        swift.pump(0.05)
    swift.pump(0.3)


def test_panel_energy_series_with_auto_exposure_and_alignment(headless: HeadlessSwift) -> None:
    swift = headless
    panel = series_acquisition.SeriesPanel(swift.document_controller, "series-test", {})
    try:
        panel.values.update({"kind": "energy", "start": 380.0, "step": 20.0, "count": 5, "slit_width_eV": 10.0,
                             "exposure_ms": 20.0, "align": True})
        panel.start()
        assert panel.runner is not None
        panel.start()                                   # a second series while one runs: refused
        swift.pump(0.1)
        assert "already running" in panel._status.text
        _wait(swift, panel)
        for _ in range(4):
            swift.document_model.recompute_all()
            swift.pump(0.1)
        assert "Series done" in panel._status.text, panel._status.text
        titles = {d.title: d for d in swift.document_model.data_items}
        raw = titles["Energy series: raw counts"].xdata
        scaled = titles["Energy series: scaled to first exposure"].xdata
        assert raw.is_sequence and raw.data.shape[0] == 5 and raw.data.dtype == np.uint16
        assert raw.dimensional_calibrations[1].units == "nm"
        report = raw.metadata["insitu"]["series"]
        assert report["complete"] and report["darks_acquired"] == len(
            {s["exposure_s"] for s in report["slices"]} | {t for s in report["slices"] for t in s["tried_exposures_s"]})
        assert [s["value"] for s in report["slices"]] == [380.0, 400.0, 420.0, 440.0, 460.0]
        assert all(s["status"] == "ok" for s in report["slices"]), report["slices"]
        assert scaled.intensity_calibration.units.startswith("counts per")
        assert f"{series_acquisition.stack_computations.TITLE}: aligned sequence" in titles
        assert panel._progress.value == 1000     # the progress bar reached the end
        # the instrument is back where it was
        assert swift.simulator.instrument.get_value("EFTEM_Slit") == 0.0
    finally:
        panel.close()


def test_abort_keeps_slices_and_bad_input_is_a_message(headless: HeadlessSwift) -> None:
    swift = headless
    panel = series_acquisition.SeriesPanel(swift.document_controller, "series-test-2", {})
    try:
        panel.values.update({"kind": "focal", "start": -20.0, "step": 5.0, "count": 40, "exposure_ms": 20.0})
        panel.start()
        end = time.monotonic() + 60
        while panel.runner is not None and (panel.runner.result is None) and time.monotonic() < end:
            swift.pump(0.05)
            if panel._progress.value >= 50:      # two slices or more
                panel.abort()
                break
        _wait(swift, panel)
        assert "ABORTED" in panel._status.text, panel._status.text
        item = next(d for d in swift.document_model.data_items if d.title == "Focal series (INCOMPLETE): raw counts")
        report = item.xdata.metadata["insitu"]["series"]
        assert not report["complete"] and 2 <= report["slices_acquired"] < 40
        assert item.xdata.data.shape[0] == report["slices_acquired"]
        # bad input: thresholds that cannot be met, a camera that is not there
        panel.values.update({"lower_percent": 60.0, "upper_percent": 80.0})
        panel.start()
        swift.pump(0.1)
        assert "Not started" in panel._status.text and "factor of 2" in panel._status.text
        panel.values.update({"lower_percent": 5.0, "camera_id": "no_such_camera"})
        panel.start()
        swift.pump(0.1)
        assert "no camera" in panel._status.text
    finally:
        panel.close()


def test_camera_changing_shape_mid_series_stops_with_a_message(headless: HeadlessSwift,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The readout area changes after 2 frames: the panel says why, the slices acquired are data items titled
    INCOMPLETE with the report, nothing is lost."""
    swift = headless
    acquire = series_acquisition.SwiftSeriesDevice.acquire
    calls = {"n": 0}

    def shrinking(self: typing.Any, exposure_s: float, binning: int) -> typing.Any:
        frame = acquire(self, exposure_s, binning)          # a slice frame (darks go through acquire_dark)
        calls["n"] += 1
        return frame if calls["n"] <= 2 else frame[:48, :64]

    monkeypatch.setattr(series_acquisition.SwiftSeriesDevice, "acquire", shrinking)
    panel = series_acquisition.SeriesPanel(swift.document_controller, "series-test-3", {})
    try:
        panel.values.update({"kind": "focal", "start": -10.0, "step": 5.0, "count": 5, "exposure_ms": 20.0})
        panel.start()
        _wait(swift, panel)
        text = panel._status.text
        assert "STOPPED by an error" in text and "has shape (48, 64)" in text and "are kept" in text, text
        item = next(d for d in swift.document_model.data_items if d.title == "Focal series (INCOMPLETE): raw counts")
        report = item.xdata.metadata["insitu"]["series"]
        # 2 slice frames before the change: 2 slices, or 1 if auto-exposure retook the first
        assert not report["complete"] and 1 <= report["slices_acquired"] <= 2
        assert item.xdata.data.shape == (report["slices_acquired"], 96, 96)
        assert any("has shape (48, 64)" in n for n in report["notes"])
    finally:
        panel.close()
