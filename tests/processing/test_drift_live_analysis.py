"""The live-analysis hook of the drift-corrected SI, without Swift: registry, parameter validation, the runner
(newest update only, skipped updates counted, errors kept off the acquisition thread, the final update waited for)."""
from __future__ import annotations

import threading
import typing

import numpy as np
import pytest

from processing import base
from processing.spectroscopy import live_analysis as la


def _update(index: int, *, final: bool = False, ny: int = 6, nx: int = 5, ne: int = 7) -> la.SectionUpdate:
    rng = np.random.default_rng(index)
    si = np.full((ny, nx, ne), np.nan, np.float32)
    rows = slice(0, min(ny, index + 1))
    si[rows] = rng.poisson(10.0, size=si[rows].shape)
    acquired = np.isfinite(si[..., 0])
    return la.SectionUpdate(si=si, haadf=None, acquired=acquired, rows=rows, energy_offset_eV=-5.0,
                            energy_scale_eV=0.1, pixel_size_nm=0.2, section_index=index, final=final)


class MeanSpectrum:
    title = "Mean spectrum"
    parameters = (base.Parameter("scale", "Scale", "real", 1.0, min=0.0, max=10.0),)

    def __init__(self, scale: float = 1.0, gate: threading.Event | None = None) -> None:
        self.scale = scale
        self.gate = gate
        self.seen: list[int] = []
        self.closed = False
        self.started = threading.Event()

    def update(self, update: la.SectionUpdate) -> base.Outputs:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10.0)
        self.seen.append(update.section_index)
        mean = np.nanmean(update.si[update.acquired], axis=0) * self.scale
        return (base.LinePlotOutput("mean", mean, base.Calibration(update.energy_offset_eV, update.energy_scale_eV,
                                                                   "eV")),)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def registered() -> typing.Iterator[str]:
    la.register_live_analysis("test mean spectrum", MeanSpectrum)
    yield "test mean spectrum"
    la.unregister_live_analysis("test mean spectrum")


def test_registry_declares_parameters_and_validates_values(registered: str) -> None:
    assert registered in la.LIVE_ANALYSES
    assert [p.name for p in la.live_analysis_parameters(registered)] == ["scale"]
    analysis = la.create_live_analysis(registered, {"scale": 2.5})
    assert isinstance(analysis, MeanSpectrum) and analysis.scale == 2.5
    with pytest.raises(base.ParameterError, match="outside its range"):
        la.create_live_analysis(registered, {"scale": 50.0})
    with pytest.raises(base.ParameterError, match="no parameter"):
        la.create_live_analysis(registered, {"sigma": 1.0})
    with pytest.raises(base.ParameterError, match="no live analysis"):
        la.create_live_analysis("does not exist")


def test_runner_keeps_only_the_newest_update_and_counts_the_skipped() -> None:
    gate = threading.Event()
    analysis = MeanSpectrum(gate=gate)
    runner = la.LiveAnalysisRunner(analysis)
    runner.submit(_update(0))
    assert analysis.started.wait(10.0)  # the worker is held inside the first update ...
    for i in range(1, 5):  # ... so 1..3 wait in the one-slot mailbox and are replaced by newer ones
        runner.submit(_update(i, final=i == 4))
    gate.set()
    assert runner.finish(timeout_s=30.0)
    stats = runner.stats()
    assert analysis.seen[0] == 0 and analysis.seen[-1] == 4, analysis.seen
    assert stats["updates_submitted"] == 5
    assert stats["updates_done"] + stats["updates_skipped"] == 5, stats
    assert stats["updates_skipped"] >= 1 and stats["final_update_done"] and analysis.closed
    assert len(stats["ms_per_update"]) == stats["updates_done"] and stats["error"] == ""
    (out,) = runner.outputs
    assert isinstance(out, base.LinePlotOutput)
    full = _update(4).si
    np.testing.assert_allclose(out.data, np.nanmean(full.reshape(-1, full.shape[-1]), axis=0), rtol=1e-6)


def test_an_analysis_error_becomes_a_notice_not_an_exception() -> None:
    class Broken(MeanSpectrum):
        def update(self, update: la.SectionUpdate) -> base.Outputs:
            raise RuntimeError("boom")
    runner = la.LiveAnalysisRunner(Broken())
    runner.submit(_update(0, final=True))  # must not raise here (acquisition thread) ...
    assert runner.finish(timeout_s=30.0)
    assert "boom" in runner.error and runner.stats()["error"]
    assert any(isinstance(o, base.Notice) and "boom" in o.text for o in runner.outputs)  # ... but be shown


def test_finish_times_out_instead_of_blocking_forever() -> None:
    gate = threading.Event()
    runner = la.LiveAnalysisRunner(MeanSpectrum(gate=gate))
    runner.submit(_update(0))
    assert not runner.finish(timeout_s=0.2)
    assert "did not finish" in runner.error
    gate.set()
