"""The reconstructed (denoised) SI on request for every method (issue 12): Python call, live analysis (per update
and final), Dask, command line; against the simulator's noise-free SI."""
from __future__ import annotations

import json
import pathlib
import typing

import numpy as np
import pytest
import threadpoolctl

from processing import cli
from processing.decomposition import decompose
from processing.decomposition.live import LiveDecomposition
from processing.spectroscopy.live_analysis import SectionUpdate

METHODS = ("pca", "nmf", "vca")


@pytest.fixture(autouse=True)
def _one_blas_thread() -> typing.Iterator[None]:
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def two_phase() -> typing.Any:
    from instrument_sim.decomposition_truth import two_phase_si
    from instrument_sim.eels_physics import EnergyAxis
    with threadpoolctl.threadpool_limits(1):
        return two_phase_si((24, 24), axis=EnergyAxis(380.0, 1.0, 512), seed=8)


def _error(si: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(si - truth) / np.linalg.norm(truth))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_denoised_si_closer_to_the_truth_than_the_raw_si(two_phase: typing.Any,
                                                                             method: str) -> None:
    result = decompose(two_phase.counts, method=method, n_components=2, reconstruct=True)
    assert result.reconstructed is not None and result.reconstructed.shape == two_phase.counts.shape
    assert result.reconstructed.dtype == np.float32
    raw, denoised = _error(two_phase.counts, two_phase.expected), _error(result.reconstructed, two_phase.expected)
    assert raw / denoised > 5, f"{method}: raw {raw:.4f} vs denoised {denoised:.4f}"
    assert decompose(two_phase.counts, method=method, n_components=2).reconstructed is None   # only on request


def _updates(si: np.ndarray, rows: int = 4) -> typing.Iterator[SectionUpdate]:
    ny = si.shape[0]
    acquired = np.zeros(si.shape[:2], bool)
    partial = np.full(si.shape, np.nan, np.float32)
    for index, start in enumerate(range(0, ny, rows)):
        acquired[start:start + rows] = True
        partial[start:start + rows] = si[start:start + rows]
        yield SectionUpdate(si=partial.copy(), haadf=None, acquired=acquired.copy(), rows=slice(start, start + rows),
                            energy_offset_eV=380.0, energy_scale_eV=1.0, pixel_size_nm=0.5, section_index=index,
                            final=start + rows >= ny)


@pytest.mark.parametrize("method", METHODS)
def test_live_decomposition_shows_the_denoised_si_per_update_and_the_final_one_equals_offline(
        two_phase: typing.Any, method: str) -> None:
    live = LiveDecomposition(method=method, n_components=2, reconstruct=True)
    last: typing.Any = None
    for update in _updates(two_phase.counts):
        outputs = {o.name: o for o in live.update(update)}
        if "spectra" not in outputs:          # not enough spectra yet
            assert "denoised_si" not in outputs
            continue
        denoised = outputs["denoised_si"]
        data = np.asarray(getattr(denoised, "data"))
        assert data.shape == two_phase.counts.shape
        assert np.isnan(data[~update.acquired]).all() and np.isfinite(data[update.acquired]).all()
        cals = getattr(denoised, "calibrations")
        assert [c.units for c in cals] == ["nm", "nm", "eV"] and cals[2].offset == 380.0 and cals[0].scale == 0.5
        last = data
    offline = decompose(two_phase.counts, method=method, n_components=2, energy_offset_eV=380.0,
                        energy_scale_eV=1.0, pixel_size_nm=0.5, reconstruct=True)
    assert offline.reconstructed is not None and last is not None
    np.testing.assert_allclose(last, offline.reconstructed, rtol=1e-3, atol=1e-3 * float(two_phase.counts.max()))
    assert len(live.timings_ms) >= 2 and all(t["total_ms"] >= t["fold_ms"] for t in live.timings_ms)
    plain = LiveDecomposition(method=method, n_components=2)            # off by default
    names = {o.name for u in _updates(two_phase.counts) for o in plain.update(u)}
    assert "denoised_si" not in names


def test_dask_pca_gives_the_same_denoised_si_as_in_memory(two_phase: typing.Any) -> None:
    import dask.array as da
    from processing.decomposition.distributed import decompose_dask
    result = decompose_dask(da.from_array(two_phase.counts, chunks=(8, 12, -1)), n_components=2, reconstruct=True)
    memory = decompose(two_phase.counts, method="pca", n_components=2, reconstruct=True)
    assert result.reconstructed is not None and memory.reconstructed is not None
    np.testing.assert_allclose(result.reconstructed, memory.reconstructed, rtol=1e-3,
                               atol=1e-4 * float(two_phase.counts.max()))
    assert decompose_dask(da.from_array(two_phase.counts, chunks=(12, 24, -1)), n_components=2).reconstructed is None


@pytest.mark.parametrize("method", METHODS)
def test_cli_writes_the_denoised_si_for_every_method(tmp_path: pathlib.Path, two_phase: typing.Any,
                                                     method: str) -> None:
    source = tmp_path / "si.npy"
    np.save(source, two_phase.counts)
    out = tmp_path / "out.npz"
    assert cli.main(["decompose", "--input", str(source), "--output", str(out), "--method", method,
                     "--components", "2", "--reconstruct"]) == 0
    with np.load(out) as f:
        denoised = f["reconstructed"]
        assert json.loads(str(f["summary"]))["method"] == method
    assert _error(two_phase.counts, two_phase.expected) / _error(denoised, two_phase.expected) > 5


def test_cli_hspy_output_puts_the_denoised_si_next_to_the_maps(tmp_path: pathlib.Path, two_phase: typing.Any,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from rsciio.hspy import file_reader
    source = tmp_path / "si.npy"
    np.save(source, two_phase.counts)
    out = tmp_path / "maps.hspy"
    assert cli.main(["decompose", "--input", str(source), "--output", str(out), "--method", "vca",
                     "--components", "2", "--reconstruct"]) == 0
    assert "denoised SI: " in capsys.readouterr().out
    (signal,) = file_reader(str(tmp_path / "maps_denoised.hspy"))
    assert signal["data"].shape == two_phase.counts.shape
    assert signal["metadata"]["Signal"]["signal_type"] == "EELS"
    assert [a["units"] for a in signal["axes"]] == ["nm", "nm", "eV"]
    (maps,) = file_reader(str(out))
    assert maps["data"].shape == (2, 24, 24)
    assert cli.main(["decompose", "--input", str(source), "--output", str(tmp_path / "plain.hspy"), "--method",
                     "pca", "--components", "2"]) == 0
    assert not (tmp_path / "plain_denoised.hspy").exists()
