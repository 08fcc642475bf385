"""The live-analysis hook wired into the drift-corrected SI: engine (updates during the run on NaN-marked partial
SIs, final update on the finished SI, record in the SI metadata, output data items) and panel (choice + declared
parameters, live items updated during the run, bad choice refused before the run)."""
from __future__ import annotations

import time
import typing

import numpy as np
import pytest

from instrument_sim.configuration import SimulatorConfiguration
from instrument_sim.drift import DriftModel
from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES
from nionswift_plugin.insitu import drift_si
from nionswift_plugin.insitu import drift_si_panel
from nionswift_plugin.insitu.headless import HeadlessSwift
from processing import base
from processing.spectroscopy import live_analysis as la

NAME = "test: acquired fraction"


class AcquiredFraction:
    """Image of acquired pixels, mean spectrum; remembers what it saw (the ground truth is the SI itself)."""

    title = "Acquired"
    parameters = (base.Parameter("gain", "Gain", "real", 1.0, min=0.0, max=100.0),)
    instances: list[AcquiredFraction] = []

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = gain
        self.updates: list[la.SectionUpdate] = []
        self.closed = False
        AcquiredFraction.instances.append(self)

    def update(self, update: la.SectionUpdate) -> base.Outputs:
        self.updates.append(update)
        mean = np.nanmean(update.si[update.acquired], axis=0)
        return (base.ImageOutput("map", update.acquired.astype(np.float32) * self.gain, title="acquired map"),
                base.LinePlotOutput("mean", mean, base.Calibration(update.energy_offset_eV, update.energy_scale_eV,
                                                                   "eV"), title="mean spectrum"))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def registered() -> typing.Iterator[None]:
    AcquiredFraction.instances.clear()
    la.register_live_analysis(NAME, AcquiredFraction)
    yield
    la.unregister_live_analysis(NAME)


@pytest.fixture(scope="module")
def swift() -> typing.Iterator[HeadlessSwift]:
    config = SimulatorConfiguration(seed=1, drift=DriftModel(rate_nm_per_s=(0.05, 0.0), seed=1),
                                    device_factories=STEM_DEVICE_FACTORIES)
    with HeadlessSwift(config) as s:
        yield s


def _settings(**kw: typing.Any) -> drift_si.DriftSISettings:
    base_kw: dict[str, typing.Any] = dict(si_size_px=(8, 8), section_lines=2, exposure_s=0.002,
                                          live_analysis=NAME, live_analysis_parameters={"gain": 3.0})
    base_kw.update(kw)
    return drift_si.DriftSISettings(**base_kw)


def test_engine_feeds_the_analysis_section_by_section_and_records_it(registered: None, swift: HeadlessSwift) -> None:
    result = drift_si.DriftCorrectedSI(_settings()).run()
    assert result.complete, result.message
    (analysis,) = AcquiredFraction.instances
    assert analysis.gain == 3.0 and analysis.closed
    ups = analysis.updates
    assert ups[-1].final and all(not u.final for u in ups[:-1])
    partial = [u for u in ups if not u.final]
    assert partial, "no update during the run"
    for u in partial:  # NaN exactly where not acquired, rows of the section acquired
        assert np.array_equal(np.isfinite(u.si[..., 0]), u.acquired)
        assert u.acquired[u.rows].all() and not u.acquired[u.rows.stop:].any()
    assert ups[-1].acquired.all() and np.isfinite(ups[-1].si).all()
    main = result.main
    assert main is not None
    np.testing.assert_allclose(ups[-1].si, main.aligned.data)  # the final update sees the finished (shear-corrected) SI
    stats = result.si_xdata().metadata["drift_si"]["live_analysis"]
    assert stats["updates_done"] + stats["updates_skipped"] == stats["updates_submitted"] == 4 + 1
    assert len(stats["ms_per_update"]) == stats["updates_done"] and stats["final_update_done"]
    items = drift_si.create_data_items(swift.document_controller.document_model, result)
    titles = [i.title for i in items]
    assert "Acquired: acquired map" in titles and "Acquired: mean spectrum" in titles
    amap = next(i for i in items if i.title == "Acquired: acquired map")
    np.testing.assert_allclose(amap.xdata.data, 3.0)
    assert amap.xdata.metadata["insitu"]["live_analysis"]["updates_submitted"] == 5


def test_bad_analysis_choice_is_refused_before_the_run(registered: None) -> None:
    with pytest.raises(drift_si.DriftSIError, match="not available"):
        drift_si.DriftCorrectedSI(_settings(live_analysis="no such analysis")).run()
    with pytest.raises(drift_si.DriftSIError, match="outside its range"):
        drift_si.DriftCorrectedSI(_settings(live_analysis_parameters={"gain": -1.0})).run()
    assert drift_si.DriftCorrectedSI.active_run() is None


def test_panel_offers_the_analysis_and_shows_its_outputs_live(registered: None, swift: HeadlessSwift,
                                                              tmp_path: typing.Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSITU_SETTINGS_DIR", str(tmp_path))
    _settings(live_analysis="", live_analysis_parameters={}).save()
    dc = swift.document_controller
    panel = drift_si_panel.DriftSIPanel(dc, "drift-si-analysis", {})
    try:
        combo = panel._analysis_combo
        assert NAME in combo.items
        combo.current_index = combo.items.index(NAME)
        combo.on_current_item_changed(NAME)
        assert panel.settings.live_analysis == NAME
        panel._set_analysis_parameter(la.live_analysis_parameters(NAME)[0], "2")
        assert panel.settings.live_analysis_parameters == {"gain": 2.0}
        panel.start()
        deadline = time.monotonic() + 60
        while panel._run is not None and time.monotonic() < deadline:
            dc.periodic()
            time.sleep(0.02)
        dc.periodic()
        titles = [d.title for d in dc.document_model.data_items]
        assert "Acquired: acquired map (live)" in titles and "Acquired: mean spectrum (live)" in titles, titles
        assert "Acquired: acquired map" in titles  # saved with the SI at the end
        live = next(d for d in dc.document_model.data_items if d.title == "Acquired: acquired map (live)")
        np.testing.assert_allclose(live.xdata.data, 2.0)  # the last (final) update: every pixel acquired
        assert panel._status.text.startswith("complete")
    finally:
        panel.close()
