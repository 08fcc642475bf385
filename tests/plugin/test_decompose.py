"""Swift glue of the decomposition (issue 12): Processing > In-situ > Decompose SI on an SI data item, bad input as
error text, and the live PCA / NMF / VCA during a drift-corrected SI on the simulated STEM (headless Swift)."""
from __future__ import annotations

import time
import typing

import numpy as np
import pytest
from nion.data import Calibration, DataAndMetadata
from nion.swift.model import DataItem
from nion.utils import Geometry

from nionswift_plugin.insitu import decompose_computation
from processing.decomposition import decompose, subspace_angles_deg
from processing.decomposition.live import LIVE_NAMES
from processing.spectroscopy import live_analysis as la


def _add(document_controller: typing.Any, data: np.ndarray, title: str) -> typing.Any:
    cals = [Calibration.Calibration(0, 0.5, "nm"), Calibration.Calibration(0, 0.5, "nm")]
    if data.ndim == 3:
        cals.append(Calibration.Calibration(380.0, 1.0, "eV"))
    item = DataItem.new_data_item(DataAndMetadata.new_data_and_metadata(data, dimensional_calibrations=cals))
    item.title = title
    document_controller.document_model.append_data_item(item)
    return item


def _recompute(document_controller: typing.Any) -> None:
    for _ in range(4):
        document_controller.document_model.recompute_all()
        document_controller.periodic()


@pytest.fixture(scope="module")
def two_phase() -> typing.Any:
    from instrument_sim.decomposition_truth import two_phase_si
    from instrument_sim.eels_physics import EnergyAxis
    return two_phase_si((24, 24), axis=EnergyAxis(380.0, 1.0, 512), seed=5)


def test_decompose_si_outputs_calibrated_results_and_reruns_on_parameters(document_controller: typing.Any,
                                                                          two_phase: typing.Any) -> None:
    dm = document_controller.document_model
    si = _add(document_controller, two_phase.counts, "two-phase SI")
    target = decompose_computation.decompose_item(dm, si, method="pca", n_components=3)
    _recompute(document_controller)
    computation = dm.get_data_item_computation(target)
    assert target.xdata is not None, computation.error_text
    expected = decompose(two_phase.counts, method="pca", n_components=3, energy_offset_eV=380.0,
                         energy_scale_eV=1.0, pixel_size_nm=0.5)
    by_title = {d.title: d for d in dm.data_items}
    spectra = by_title[f"{decompose_computation.TITLE}: PCA component spectra"].xdata
    assert spectra.data.shape == (3, 512)
    assert spectra.dimensional_calibrations[-1].units == "eV" and spectra.dimensional_calibrations[-1].offset == 380
    assert subspace_angles_deg(spectra.data, expected.components).max() < 0.01
    map_1 = by_title[f"{decompose_computation.TITLE}: PCA score map 1"].xdata
    assert map_1.data.shape == (24, 24) and map_1.dimensional_calibrations[0].units == "nm"
    assert map_1.dimensional_calibrations[1].scale == pytest.approx(0.5)
    summary = target.xdata.metadata["insitu"]["decomposition"]
    lo, hi = two_phase.n_significant
    assert lo <= summary["n_significant"] <= hi, summary
    names = {v.name for v in computation.variables}
    assert {"si", "method", "n_components", "poisson", "clip_negative", "reconstruct"} <= names
    computation.set_input_value("method", "nmf")
    computation.set_input_value("n_components", 2)
    computation.set_input_value("reconstruct", True)
    _recompute(document_controller)
    titles = {d.title for d in dm.data_items}
    assert f"{decompose_computation.TITLE}: NMF component spectra" in titles, titles
    assert f"{decompose_computation.TITLE}: NMF denoised SI" in titles, titles
    nmf = next(d for d in dm.data_items if d.title == f"{decompose_computation.TITLE}: NMF component spectra")
    corr = np.corrcoef(np.vstack([nmf.xdata.data, two_phase.spectra]))[:2, 2:]
    assert np.sort(corr.max(axis=0)).min() >= 0.95, corr


@pytest.mark.parametrize("case", ["image", "too many components", "negative counts for nmf"])
def test_bad_input_becomes_error_text(document_controller: typing.Any, case: str) -> None:
    dm = document_controller.document_model
    rng = np.random.default_rng(0)
    if case == "image":
        item = _add(document_controller, rng.random((16, 16)), "image")
        document_controller.select_display_items_in_data_panel([dm.get_display_item_for_data_item(item)])
        with pytest.raises(ValueError, match="select a spectrum image"):    # the menu action refuses a 2-D item
            decompose_computation.decompose_selection(document_controller)
        target = decompose_computation.decompose_item(dm, item)            # the computation explains it
        _recompute(document_controller)
        error = dm.get_data_item_computation(target).error_text or ""
        assert "must be a spectrum image (y, x, energy); got shape (16, 16)" in error, error
        return
    data = rng.poisson(5.0, (4, 4, 32)).astype(np.float32)
    values: dict[str, typing.Any] = {"n_components": 40}
    if case == "negative counts for nmf":
        data = data - 10.0
        values = {"method": "nmf", "n_components": 2}
    si = _add(document_controller, data, case)
    target = decompose_computation.decompose_item(dm, si, **values)
    _recompute(document_controller)
    error = dm.get_data_item_computation(target).error_text or ""
    expected = "cannot extract 40 components" if case == "too many components" else "NMF needs non-negative counts"
    assert expected in error, error
    assert target.xdata is None


# --- live, during a drift-corrected SI on the simulator ------------------------------------------------------------

@pytest.fixture(scope="module")
def stem() -> typing.Iterator[typing.Any]:
    from instrument_sim.configuration import SimulatorConfiguration
    from instrument_sim.drift import DriftModel
    from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES
    from nionswift_plugin.insitu.headless import HeadlessSwift
    config = SimulatorConfiguration(seed=6, drift=DriftModel(rate_nm_per_s=(0.0, 0.0), seed=6),
                                    device_factories=STEM_DEVICE_FACTORIES)
    with HeadlessSwift(config) as s:
        instrument = s.simulator.instrument
        for name, value in (("EELS_Dispersion", 1.5), ("ZLPoffset", -20.0)):
            instrument.SetVal(name, value)
        scan = s.hardware_source("insitu_scan")
        fp = scan.get_current_frame_parameters()
        fp.fov_nm = 4.0
        fp.pixel_size = Geometry.IntSize(128, 128)
        scan.set_current_frame_parameters(fp)
        decompose_computation.register()
        yield s


def _settings(**kw: typing.Any) -> typing.Any:
    from nionswift_plugin.insitu import drift_si
    base: dict[str, typing.Any] = dict(si_size_px=(24, 24), section_lines=4, exposure_s=0.002, camera_binning=1,
                                       scan_field=(0.25, 0.25, 0.5, 0.5), correct_drift=False, correct_shear=False,
                                       correct_energy=False, bootstrap_measurements=0,
                                       live_analysis="Decomposition PCA",
                                       live_analysis_parameters={"n_components": 3, "poisson": True})
    base.update(kw)
    return drift_si.DriftSISettings(**base)


def test_live_pca_during_a_drift_corrected_si_equals_the_offline_decomposition(stem: typing.Any) -> None:
    from nionswift_plugin.insitu import drift_si
    result = drift_si.DriftCorrectedSI(_settings()).run()
    assert result.complete, result.message
    stats = result.si_xdata().metadata["drift_si"]["live_analysis"]
    assert not stats["error"] and stats["final_update_done"] and stats["updates_done"] >= 2, stats
    assert stats["section_interval_s_median"] is not None and stats["ms_per_update_median"] is not None
    items = drift_si.create_data_items(stem.document_controller.document_model, result)
    by_title = {i.title: i for i in items}
    title = next(t for t in by_title if t.endswith("PCA component spectra"))
    live_spectra = by_title[title].xdata
    assert live_spectra.dimensional_calibrations[-1].units == "eV"
    # created from a script (not the panel): the k component spectra are k labelled lines, not an image
    shown = stem.document_controller.document_model.get_display_item_for_data_item(by_title[title])
    assert shown.display_type == "line_plot" and len(shown.display_layers) == live_spectra.data.shape[0]
    assert any(t.endswith("PCA score map 1") for t in by_title), sorted(by_title)
    assert any("scree" in t for t in by_title), sorted(by_title)
    si = result.si_xdata()
    energy = si.dimensional_calibrations[-1]
    offline = decompose(si.data, method="pca", n_components=3, energy_offset_eV=energy.offset,
                        energy_scale_eV=energy.scale)
    angles = subspace_angles_deg(live_spectra.data[:offline.n_significant],
                                 offline.components[:offline.n_significant])
    assert offline.n_significant >= 1 and angles.max() < 1.0, f"{angles=}"
    # Processing > In-situ > Decompose SI on the saved SI item gives the same components
    dm = stem.document_controller.document_model
    si_item = next(i for i in items if i.xdata is not None and len(i.xdata.data_shape) == 3)
    target = decompose_computation.decompose_item(dm, si_item, method="pca", n_components=3)
    _recompute(stem.document_controller)
    assert target.xdata is not None, dm.get_data_item_computation(target).error_text
    menu_spectra = next(d for d in dm.data_items if d.title == f"{decompose_computation.TITLE}: PCA component spectra")
    angles = subspace_angles_deg(menu_spectra.xdata.data[:offline.n_significant],
                                 offline.components[:offline.n_significant])
    assert angles.max() < 0.01, f"{angles=}"
    print("live PCA ms per update", stats["ms_per_update"], "section interval s", stats["section_interval_s_median"],
          "skipped", stats["updates_skipped"])


def test_panel_offers_the_three_live_decompositions(stem: typing.Any, tmp_path: typing.Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from nionswift_plugin.insitu import drift_si_panel
    monkeypatch.setenv("INSITU_SETTINGS_DIR", str(tmp_path))
    _settings(live_analysis="", live_analysis_parameters={}, si_size_px=(12, 12)).save()
    dc = stem.document_controller
    panel = drift_si_panel.DriftSIPanel(dc, "drift-si-decompose", {})
    try:
        combo = panel._analysis_combo
        for name in LIVE_NAMES:
            assert name in combo.items, combo.items
            assert [p.name for p in la.live_analysis_parameters(name)] == ["n_components", "poisson", "reconstruct"]
        combo.current_index = combo.items.index("Decomposition VCA")
        combo.on_current_item_changed("Decomposition VCA")
        panel.start()
        deadline = time.monotonic() + 120
        while panel._run is not None and time.monotonic() < deadline:
            dc.periodic()
            time.sleep(0.02)
        dc.periodic()
        titles = [d.title for d in dc.document_model.data_items]
        assert any("VCA component spectra" in t for t in titles), titles
    finally:
        panel.close()


def _run_panel(stem: typing.Any, tmp_path: typing.Any, monkeypatch: pytest.MonkeyPatch, **settings: typing.Any
               ) -> tuple[typing.Any, typing.Any]:
    """Run a drift-corrected SI from the panel (its own live items), return (panel, the run's result)."""
    from nionswift_plugin.insitu import drift_si_panel
    monkeypatch.setenv("INSITU_SETTINGS_DIR", str(tmp_path))
    _settings(**settings).save()
    dc = stem.document_controller
    panel = drift_si_panel.DriftSIPanel(dc, "drift-si-decompose-lines", {})
    panel.start()
    run = panel._run
    assert run is not None, panel._status.text
    # the panel clears its run on the main thread once the run has finished and its items are made (a listener
    # attached here could miss a run that ended before it: then this loop waited out its whole deadline)
    deadline = time.monotonic() + 180
    while (panel._run is not None or run.is_running) and time.monotonic() < deadline:
        dc.periodic()
        time.sleep(0.02)
    for _ in range(5):
        dc.periodic()
    return panel, run.result


def _layers(document_model: typing.Any, item: typing.Any) -> tuple[str, list[str]]:
    display_item = document_model.get_display_item_for_data_item(item)
    return display_item.display_type, [layer.label for layer in display_item.display_layers]


def test_live_component_spectra_are_k_labelled_lines_over_eV_not_an_image(stem: typing.Any, tmp_path: typing.Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (issue 12): the live (k, n) component spectra were shown as an image."""
    before = set(stem.document_controller.document_model.data_items)
    panel, result = _run_panel(stem, tmp_path, monkeypatch, si_size_px=(12, 12),
                               live_analysis_parameters={"n_components": 3, "poisson": True})
    try:
        assert result.complete, result.message
        dm = stem.document_controller.document_model
        live = {key: item for key, item in panel._live_items.items() if key.startswith("analysis:")}
        spectra = next(i for k, i in live.items() if k.endswith("PCA component spectra"))
        xdata = spectra.xdata
        assert xdata.data.shape == (3, result.si_xdata().data_shape[-1]), xdata.data.shape
        assert xdata.dimensional_calibrations[-1].units == "eV"
        display_type, labels = _layers(dm, spectra)
        assert display_type == "line_plot", display_type
        assert labels[:3] == ["PCA 1", "PCA 2", "PCA 3"], labels
        scree = next(i for k, i in live.items() if k.endswith("PCA scree"))
        assert len(scree.xdata.data_shape) == 1 and _layers(dm, scree)[0] in (None, "line_plot")
        maps = [i for k, i in live.items() if "score map" in k]
        assert maps and all(_layers(dm, m)[0] != "line_plot" for m in maps)   # maps stay images
        # the items the panel saves with the SI at the end are lines too
        saved = [d for d in dm.data_items if d.title.endswith("PCA component spectra") and d not in before]
        assert saved, [d.title for d in dm.data_items]
        for d in saved:
            assert _layers(dm, d)[0] == "line_plot" and _layers(dm, d)[1][:3] == ["PCA 1", "PCA 2", "PCA 3"]
    finally:
        panel.close()


def test_live_denoised_si_on_request_updates_and_is_saved_with_the_si(stem: typing.Any, tmp_path: typing.Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    panel, result = _run_panel(stem, tmp_path, monkeypatch, si_size_px=(12, 12),
                               live_analysis="Decomposition NMF",
                               live_analysis_parameters={"n_components": 2, "poisson": True, "reconstruct": True})
    try:
        assert result.complete, result.message
        stats = result.live_analysis_stats
        assert not stats["error"] and stats["final_update_done"], stats
        dm = stem.document_controller.document_model
        live = next(i for k, i in panel._live_items.items() if k.endswith("NMF denoised SI"))
        si = result.si_xdata()
        assert live.xdata.data_shape == si.data_shape
        assert live.xdata.collection_dimension_count == 2 and live.xdata.datum_dimension_count == 1
        assert [c.units for c in live.xdata.dimensional_calibrations] == ["nm", "nm", "eV"]
        saved = [d for d in dm.data_items if d.title.endswith("NMF denoised SI") and d is not live]
        assert saved, [d.title for d in dm.data_items]
        offline = decompose(si.data, method="nmf", n_components=2,
                            energy_offset_eV=si.dimensional_calibrations[-1].offset,
                            energy_scale_eV=si.dimensional_calibrations[-1].scale, reconstruct=True)
        assert offline.reconstructed is not None
        np.testing.assert_allclose(saved[-1].xdata.data, offline.reconstructed, rtol=1e-3,
                                   atol=1e-3 * float(np.nanmax(si.data)))
        print("live NMF + denoised SI: ms per update", stats["ms_per_update"], "section interval s",
              stats["section_interval_s_median"], "skipped", stats["updates_skipped"])
    finally:
        panel.close()


def test_every_labelled_rows_output_is_shown_as_lines_and_nothing_else() -> None:
    """The panel's rule (fusion convergence, component spectra, time series: lines; maps, SIs, 1-D plots: not)."""
    from nionswift_plugin.insitu import drift_si
    from nionswift_plugin.insitu.drift_si_panel import _line_labels
    from processing import base
    outputs = (
        base.LinePlotOutput("convergence", np.ones((4, 12), np.float32), base.Calibration(0, 1, "iteration"), "",
                            ("HAADF", "Poisson", "TV", "total"), "Fusion convergence"),
        base.LinePlotOutput("spectra", np.ones((2, 64), np.float32), base.Calibration(380, 1, "eV"),
                            labels=("NMF 1", "NMF 2"), title="NMF component spectra"),
        base.TimeSeriesOutput("t", np.arange(5.0), np.ones((2, 5)), labels=("a", "b"), title="series"),
        base.LinePlotOutput("scree", np.ones(8, np.float32), title="scree"),
        base.ImageOutput("map_1", np.ones((6, 6), np.float32), title="map"),
        base.ImageOutput("denoised_si", np.ones((6, 6, 64), np.float32),
                         typing.cast(typing.Any, (base.Calibration(), base.Calibration(), base.Calibration())),
                         title="denoised SI"),
    )
    labels = {title.split(": ")[-1]: _line_labels(x) for title, x in drift_si.live_analysis_xdatas(outputs, None)}
    assert labels == {"Fusion convergence": ["HAADF", "Poisson", "TV", "total"],
                      "NMF component spectra": ["NMF 1", "NMF 2"], "series": ["a", "b"], "scree": None,
                      "map": None, "denoised SI": None}, labels


@pytest.mark.parametrize("method", ["pca", "vca"])
def test_decompose_si_gives_the_denoised_si_for_pca_and_vca(document_controller: typing.Any, two_phase: typing.Any,
                                                            method: str) -> None:
    """(NMF: in the rerun test above.) The denoised SI item is a calibrated SI closer to the truth than the raw SI."""
    dm = document_controller.document_model
    si = _add(document_controller, two_phase.counts, f"two-phase SI {method}")
    target = decompose_computation.decompose_item(dm, si, method=method, n_components=2, reconstruct=True)
    _recompute(document_controller)
    assert target.xdata is not None, dm.get_data_item_computation(target).error_text
    title = f"{decompose_computation.TITLE}: {method.upper()} denoised SI"
    denoised = [d for d in dm.data_items if d.title == title]
    assert denoised, [d.title for d in dm.data_items]
    xdata = denoised[-1].xdata
    assert xdata.data_shape == two_phase.counts.shape
    assert xdata.collection_dimension_count == 2 and xdata.datum_dimension_count == 1
    assert [c.units for c in xdata.dimensional_calibrations] == ["nm", "nm", "eV"]
    raw = np.linalg.norm(two_phase.counts - two_phase.expected)
    assert raw / np.linalg.norm(xdata.data - two_phase.expected) > 5
