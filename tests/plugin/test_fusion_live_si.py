"""Live fusion during a drift-corrected SI on the simulated STEM (headless Swift): the HAADF acquired in the same
run, fused with the SI's EELS edge maps after every section; against the specimen's true composition."""
from __future__ import annotations

import contextlib
import time
import typing

import numpy as np
import pytest
from nion.utils import Geometry

from instrument_sim.configuration import SimulatorConfiguration
from instrument_sim.drift import DriftModel
from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES, stem_parts
from nionswift_plugin.insitu import drift_si, drift_si_panel, fusion_computation
from nionswift_plugin.insitu.headless import HeadlessSwift
from processing.fusion.eels import edge_maps
from processing.fusion.live import LIVE_FUSION_NAME
from processing.spectroscopy import live_analysis as la
from processing.spectroscopy.spectrum_alignment import EnergyAxis

FOV_NM = 4.0


@contextlib.contextmanager
def simulated_stem() -> typing.Iterator[HeadlessSwift]:
    """Headless Swift with the simulated STEM: perovskite, no drift, 1.5 eV/channel from -20 eV, 4 nm context scan."""
    config = SimulatorConfiguration(seed=4, drift=DriftModel(rate_nm_per_s=(0.0, 0.0), seed=4),
                                    device_factories=STEM_DEVICE_FACTORIES)
    with HeadlessSwift(config) as s:
        instrument = s.simulator.instrument
        for name, value in (("EELS_Dispersion", 1.5), ("ZLPoffset", -20.0)):
            instrument.SetVal(name, value)
        scan = s.hardware_source("insitu_scan")
        fp = scan.get_current_frame_parameters()
        fp.fov_nm = FOV_NM
        fp.pixel_size = Geometry.IntSize(128, 128)
        scan.set_current_frame_parameters(fp)
        yield s


@pytest.fixture(scope="module")
def swift() -> typing.Iterator[HeadlessSwift]:
    with simulated_stem() as s:
        yield s


def _settings(**kw: typing.Any) -> drift_si.DriftSISettings:
    base: dict[str, typing.Any] = dict(si_size_px=(24, 24), section_lines=4, exposure_s=0.002, camera_binning=1,
                                       scan_field=(0.25, 0.25, 0.5, 0.5), correct_drift=False, correct_shear=False,
                                       correct_energy=False, bootstrap_measurements=0,
                                       live_analysis=LIVE_FUSION_NAME,
                                       live_analysis_parameters={"elements": "Sc,Dy,O"})
    base.update(kw)
    return drift_si.DriftSISettings(**base)


def _truth(swift: HeadlessSwift, settings: drift_si.DriftSISettings) -> dict[str, np.ndarray]:
    scan = swift.hardware_source("insitu_scan")
    fp = scan.get_current_frame_parameters()
    top, left, h, w = settings.scan_field
    ny, nx = settings.si_size_px
    y = fp.center_nm.y + (top - 0.5) * FOV_NM + np.arange(ny) * h * FOV_NM / ny
    x = fp.center_nm.x + (left - 0.5) * FOV_NM + np.arange(nx) * w * FOV_NM / nx
    yy, xx = np.meshgrid(y, x, indexing="ij")
    sample = stem_parts(swift.simulator.instrument).specimen.sample
    return {k: np.asarray(v) for k, v in sample.composition(yy, xx).items()}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_live_fusion_during_the_run_beats_the_raw_maps(swift: HeadlessSwift) -> None:
    settings = _settings()
    result = drift_si.DriftCorrectedSI(settings).run()
    assert result.complete, result.message
    stats = result.si_xdata().metadata["drift_si"]["live_analysis"]
    assert stats["title"] == LIVE_FUSION_NAME and not stats["error"], stats
    assert stats["final_update_done"] and stats["updates_done"] >= 2
    items = drift_si.create_data_items(swift.document_controller.document_model, result)
    by_title = {i.title: i for i in items}
    fused = {el: by_title[f"{LIVE_FUSION_NAME}: Fused {el}"].xdata.data for el in ("Sc", "Dy", "O")}
    si = result.si_xdata()
    energy = si.dimensional_calibrations[-1]
    raw = edge_maps(si.data, EnergyAxis(offset_eV=energy.offset, scale_eV=energy.scale), ("Sc", "Dy", "O"))
    truth = _truth(swift, settings)
    for el in ("Dy", "Sc"):
        c_raw, c_fused = _corr(raw[el], truth[el]), _corr(fused[el], truth[el])
        assert c_fused > c_raw, (el, c_raw, c_fused)
    # the action on the SI result: its HAADF channel + its edge maps, fused offline (same answer quality)
    si_item = next(i for i in items if i.xdata is not None and len(i.xdata.data_shape) == 3)
    dm = swift.document_controller.document_model
    target = fusion_computation.fuse_drift_si_result(dm, si_item)
    for _ in range(4):
        dm.recompute_all()
        swift.document_controller.periodic()
    assert target.xdata is not None, dm.get_data_item_computation(target).error_text
    offline_dy = next(d for d in dm.data_items if d.title == f"{fusion_computation.TITLE}: Fused Dy").xdata.data
    assert _corr(offline_dy, truth["Dy"]) > _corr(raw["Dy"], truth["Dy"])
    print("live fusion ms per update", stats["ms_per_update"], "section interval", stats["section_interval_s_median"])


def test_panel_offers_live_fusion(swift: HeadlessSwift, tmp_path: typing.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSITU_SETTINGS_DIR", str(tmp_path))
    _settings(live_analysis="", live_analysis_parameters={}, si_size_px=(12, 12)).save()
    dc = swift.document_controller
    panel = drift_si_panel.DriftSIPanel(dc, "drift-si-fusion", {})
    try:
        combo = panel._analysis_combo
        assert LIVE_FUSION_NAME in combo.items
        combo.current_index = combo.items.index(LIVE_FUSION_NAME)
        combo.on_current_item_changed(LIVE_FUSION_NAME)
        names = [p.name for p in la.live_analysis_parameters(LIVE_FUSION_NAME)]
        assert names[0] == "elements" and "lambda_tv" in names
        panel.start()
        deadline = time.monotonic() + 120
        while panel._run is not None and time.monotonic() < deadline:
            dc.periodic()
            time.sleep(0.02)
        dc.periodic()
        titles = [d.title for d in dc.document_model.data_items]
        assert f"{LIVE_FUSION_NAME}: Fused Dy (live)" in titles, titles
        assert f"{LIVE_FUSION_NAME}: Fused Dy" in titles
    finally:
        panel.close()
