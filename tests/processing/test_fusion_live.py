"""Live fusion (LiveAnalysis) fed SectionUpdates of a simulated SI filling section by section."""
from __future__ import annotations

import numpy as np
import pytest

from processing.base import ImageOutput, LinePlotOutput, Notice
from processing.fusion.live import LIVE_FUSION_NAME, LiveFusion
from processing.spectroscopy import live_analysis

from test_fusion_truth import AXIS, ELEMENTS, PIXEL_NM, rms, scene


def _updates(s: dict[str, np.ndarray], section_rows: int) -> list[live_analysis.SectionUpdate]:
    ny, nx, _ = s["si"].shape
    out = []
    si = np.full(s["si"].shape, np.nan, np.float32)
    haadf = np.full((ny, nx), np.nan, np.float32)
    acquired = np.zeros((ny, nx), bool)
    for k, row0 in enumerate(range(0, ny, section_rows)):
        rows = slice(row0, min(row0 + section_rows, ny))
        si[rows] = s["si"][rows]
        haadf[rows] = s["haadf"][rows]
        acquired[rows] = True
        out.append(live_analysis.SectionUpdate(si.copy(), haadf.copy(), acquired.copy(), rows, AXIS.offset_eV,
                                               AXIS.scale_eV, PIXEL_NM, k, rows.stop >= ny))
    return out


def test_registered_and_created_by_name() -> None:
    assert LIVE_FUSION_NAME in live_analysis.LIVE_ANALYSES
    analysis = live_analysis.create_live_analysis(LIVE_FUSION_NAME, {"elements": "Sc,Dy,O"})
    assert isinstance(analysis, LiveFusion) and analysis.elements == ELEMENTS
    with pytest.raises(Exception, match="at least two elements"):
        live_analysis.create_live_analysis(LIVE_FUSION_NAME, {"elements": "Sc"})


def test_live_fusion_updates_as_si_fills_with_warm_start() -> None:
    s = scene(48, 1e4, 21)
    analysis = LiveFusion(elements="Sc,Dy,O")
    updates = _updates(s, 8)
    for u in updates:
        outputs = analysis.update(u)
    names = {o.name for o in outputs}
    assert {"fused_Sc", "fused_Dy", "fused_O", "predicted_haadf", "convergence", "status"} <= names
    final = {o.name: o for o in outputs}
    fused_dy = final["fused_Dy"]
    assert isinstance(fused_dy, ImageOutput) and fused_dy.data.shape == (48, 48)
    assert fused_dy.calibrations[0].scale == pytest.approx(PIXEL_NM) and fused_dy.calibrations[0].units == "nm"
    assert isinstance(final["convergence"], LinePlotOutput) and final["convergence"].data.shape[0] == 4
    # the final live result matches the truth about as well as an offline fusion (Dy gains > 2x over raw)
    assert rms(s["raw"]["Dy"], s["truth"]["Dy"]) / rms(fused_dy.data, s["truth"]["Dy"]) > 2.0
    # warm start: the last update starts from a much lower cost than a cold start on the same data
    cold = LiveFusion(elements="Sc,Dy,O")
    cold.update(updates[-1])
    warm_start_cost, warm_final = analysis.costs[-1]
    cold_start_cost, cold_final = cold.costs[-1]
    assert warm_start_cost < 0.7 * cold_start_cost, (analysis.costs, cold.costs)
    assert warm_final < 1.02 * cold_final
    status = final["status"]
    assert isinstance(status, Notice) and "warm start" in status.text


def test_no_haadf_and_too_few_rows_are_notices_not_errors() -> None:
    s = scene(24, 1e4, 22)
    u = _updates(s, 2)[0]
    assert isinstance(LiveFusion().update(u)[0], Notice)
    no_haadf = live_analysis.SectionUpdate(u.si, None, u.acquired, u.rows, u.energy_offset_eV, u.energy_scale_eV,
                                           u.pixel_size_nm, 0, False)
    out = LiveFusion().update(no_haadf)
    assert isinstance(out[0], Notice) and "HAADF" in out[0].text


def test_runner_records_ms_per_update_and_never_blocks() -> None:
    s = scene(32, 1e4, 23)
    runner = live_analysis.LiveAnalysisRunner(LiveFusion(elements="Sc,Dy,O"))
    for u in _updates(s, 4):
        runner.submit(u)
    assert runner.finish(timeout_s=120.0)
    stats = runner.stats()
    assert stats["updates_done"] + stats["updates_skipped"] == stats["updates_submitted"] == 8
    assert stats["final_update_done"] and not stats["error"]
    assert any(o.name == "fused_Dy" for o in runner.outputs)
