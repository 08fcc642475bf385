"""Decomposition (issue 12): streaming PCA = batch PCA, Poisson weighting, merge, NMF, VCA, bad input."""
from __future__ import annotations

import typing

import numpy as np
import pytest
import scipy.optimize
import threadpoolctl

from processing.base import InputError, ParameterError
from processing.decomposition import Decomposer, StreamingPCA, batch_nmf, batch_pca, decompose, subspace_angles_deg
from processing.decomposition.nmf import reconstruction_error


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread() -> typing.Iterator[None]:
    with threadpoolctl.threadpool_limits(1):   # 2 shared cores: BLAS threads only spin against each other
        yield


def _mixture(seed: int, n: int = 1200, d: int = 256, k: int = 3, counts: float = 20.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = np.arange(d)
    centres = rng.uniform(0.15, 0.85, k) * d
    spectra = np.stack([np.exp(-0.5 * ((e - c) / (0.05 * d)) ** 2) for c in centres]) + 0.3
    return rng.poisson(counts * rng.random((n, k)) @ spectra).astype(np.float32)


@pytest.mark.parametrize("poisson", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_pca_refined_equals_batch_pca_over_random_sections(seed: int, poisson: bool) -> None:
    x = _mixture(seed)
    rng = np.random.default_rng(100 + seed)
    cuts = np.sort(rng.choice(np.arange(1, x.shape[0]), 7, replace=False))   # sections of random sizes
    pca = StreamingPCA(x.shape[1], n_components=3, poisson=poisson, seed=seed)
    for block in np.split(x, cuts):
        pca.partial_fit(block)
    ref = batch_pca(x, n_components=3, poisson=poisson)
    refined = pca.refined_model(x)
    angles = subspace_angles_deg(refined.components, ref.components)
    ev = refined.explained_variance[:3] / ref.explained_variance[:3] - 1
    assert angles.max() < 1.0, f"{angles=}"
    assert np.abs(ev).max() < 0.01, f"{ev=}"
    assert refined.total_variance == pytest.approx(ref.total_variance, rel=1e-9)
    live = pca.model()   # before refinement: the live estimate (rank-r truncation); the strongest within degrees
    live_angles = subspace_angles_deg(live.components[:1], ref.components[:1])
    assert live_angles.max() < 10.0, f"{live_angles=}"


def test_poisson_weighting_is_keenan_kotula() -> None:
    x = _mixture(3).astype(np.float64)
    model = batch_pca(x, n_components=2, poisson=True)
    g = x.sum(axis=1)[:, None]
    h = x.mean(axis=0)[None, :]
    y = x / np.sqrt(g * h)                      # HyperSpy's normalisation (up to a constant)
    yc = y - y.mean(axis=0)
    _, _, vt = np.linalg.svd(yc, full_matrices=False)
    assert subspace_angles_deg(model.components, vt[:2]).max() < 1e-4


def test_merged_states_refine_to_batch_and_merge_is_order_independent() -> None:
    x = _mixture(4)
    parts = np.array_split(x, 4)
    states = []
    for p in parts:
        s = StreamingPCA(x.shape[1], n_components=3, poisson=True, seed=1)
        s.partial_fit(p)
        states.append(s)
    left = StreamingPCA(x.shape[1], n_components=3, poisson=True, seed=1)
    left.merge(states[0]).merge(states[1]).merge(states[2]).merge(states[3])
    tree_a = StreamingPCA(x.shape[1], n_components=3, poisson=True, seed=1).merge(states[3]).merge(states[2])
    tree_b = StreamingPCA(x.shape[1], n_components=3, poisson=True, seed=1).merge(states[1]).merge(states[0])
    tree_a.merge(tree_b)
    ref = batch_pca(x, n_components=3, poisson=True)
    for merged in (left, tree_a):
        assert merged.state.n == x.shape[0]
        np.testing.assert_allclose(merged.state.mean, left.state.mean, rtol=1e-9, atol=1e-12)
        angles = subspace_angles_deg(merged.refined_model(x).components, ref.components)
        assert angles.max() < 1.0, f"{angles=}"


def _match(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    c = np.corrcoef(np.vstack([found, truth]))[: found.shape[0], found.shape[0]:]
    rows, cols = scipy.optimize.linear_sum_assignment(-c)
    return typing.cast(np.ndarray, c[rows, cols])


@pytest.fixture(scope="module", params=[0, 1, 2])
def two_phase(request: pytest.FixtureRequest) -> typing.Any:
    from instrument_sim.decomposition_truth import two_phase_si
    from instrument_sim.eels_physics import EnergyAxis
    with threadpoolctl.threadpool_limits(1):
        return two_phase_si((32, 32), axis=EnergyAxis(380.0, 0.5, 1024), seed=int(request.param))


def test_two_phase_scree_count_nmf_vca_spectra_and_denoising_against_truth(two_phase: typing.Any) -> None:
    sim = two_phase
    true_corr = float(np.corrcoef(sim.spectra)[0, 1])
    assert true_corr < 0.9, "the two phases must be distinguishable for the test to mean anything"
    pca = decompose(sim.counts, method="pca", n_components=4, reconstruct=True)
    lo, hi = sim.n_significant
    assert lo <= pca.n_significant <= hi, f"{pca.n_significant=} truth {sim.n_significant}"
    raw_err = np.linalg.norm(sim.counts - sim.expected)
    pca2 = decompose(sim.counts, method="pca", n_components=lo, reconstruct=True)
    assert pca2.reconstructed is not None
    factor = raw_err / np.linalg.norm(pca2.reconstructed - sim.expected)
    assert factor > 3.0, f"PCA denoising factor {factor:.2f}"
    for method in ("nmf", "vca"):
        result = decompose(sim.counts, method=method, n_components=2)
        corr = _match(result.components, sim.spectra)
        assert corr.min() >= 0.95, f"{method}: {corr=} (true spectra correlate {true_corr:.3f})"
        maps = result.maps.reshape(-1, 2)
        map_corr = _match(maps.T, sim.abundances.reshape(-1, 2).T)
        assert map_corr.min() >= 0.9, f"{method}: {map_corr=}"
    x = sim.counts.reshape(-1, sim.counts.shape[-1])
    nmf = decompose(sim.counts, method="nmf", n_components=2)
    ours = reconstruction_error(x, nmf.maps.reshape(-1, 2), nmf.components)
    ref = batch_nmf(x, n_components=2)
    theirs = reconstruction_error(x, ref.abundances, ref.components)  # type: ignore[arg-type]
    assert ours <= 1.02 * theirs, f"NMF error {ours:.1f} vs batch {theirs:.1f}"


def test_perovskite_scree_count_and_denoising_against_truth() -> None:
    from instrument_sim.decomposition_truth import perovskite_si
    from instrument_sim.eels_physics import EnergyAxis
    sim = perovskite_si((32, 32), axis=EnergyAxis(380.0, 0.5, 1024), seed=0)
    result = decompose(sim.counts, method="pca", n_components=4)
    lo, hi = sim.n_significant
    assert lo >= 2 and lo <= result.n_significant <= hi, f"{result.n_significant=} truth {sim.n_significant}"
    denoised = decompose(sim.counts, method="pca", n_components=result.n_significant, reconstruct=True)
    assert denoised.reconstructed is not None
    factor = np.linalg.norm(sim.counts - sim.expected) / np.linalg.norm(denoised.reconstructed - sim.expected)
    assert factor > 3.0, f"{factor=}"


def test_outputs_have_energy_and_nm_calibrations() -> None:
    x = _mixture(5, n=256, d=64).reshape(16, 16, 64)
    result = decompose(x, method="pca", n_components=3, energy_offset_eV=400.0, energy_scale_eV=0.5,
                       pixel_size_nm=0.2)
    outputs = {o.name: o for o in result.outputs()}
    spectra = outputs["spectra"]
    assert spectra.x_calibration.units == "eV" and spectra.x_calibration.offset == 400.0  # type: ignore[union-attr]
    assert spectra.data.shape == (3, 64)                                                   # type: ignore[union-attr]
    map_1 = outputs["map_1"]
    assert map_1.calibrations[0].units == "nm" and map_1.calibrations[1].scale == 0.2      # type: ignore[union-attr]
    assert outputs["scree"].data.shape == (13,)                                            # type: ignore[union-attr]


def test_fewer_spectra_than_components_is_refused_with_a_message() -> None:
    x = _mixture(6, n=4, d=32).reshape(2, 2, 32)
    with pytest.raises(InputError, match="cannot extract 5 components from 4 usable spectra"):
        decompose(x, method="pca", n_components=5)


def test_nan_spectra_of_an_aborted_si_are_left_out_and_reported() -> None:
    x = _mixture(7, n=400, d=64).reshape(20, 20, 64)
    aborted = x.copy()
    aborted[15:] = np.nan
    aborted[14, 10:] = np.nan
    result = decompose(aborted, method="pca", n_components=3)
    assert result.n_spectra == 14 * 20 + 10
    assert np.isnan(result.maps[15:]).all() and np.isfinite(result.maps[:14]).all()
    clean = decompose(x[:14].reshape(14, 20, 64), method="pca", n_components=3)
    assert clean.n_spectra == 280 and "left out" not in " ".join(clean.notes)
    # the NaN rows are reported when the engine is fed the whole SI (the live path)
    engine = Decomposer(aborted.shape, method="pca", n_components=3)
    engine.ingest(aborted)
    assert engine.nan_spectra == 110
    assert any("110 spectra with NaN" in n for n in engine.result(aborted).notes)


def test_negative_counts_are_refused_by_nmf_or_clipped_on_request() -> None:
    x = _mixture(8, n=400, d=64).reshape(20, 20, 64) - 5.0
    with pytest.raises(InputError, match="NMF needs non-negative counts.*clip_negative=True"):
        decompose(x, method="nmf", n_components=2)
    result = decompose(x, method="nmf", n_components=2, clip_negative=True)
    assert (result.components >= 0).all()
    assert any("negative count values were set to 0" in n for n in result.notes)
    assert decompose(x, method="pca", n_components=2, poisson=False).components.shape == (2, 64)
    # read noise: a few small negative values, positive means: Poisson weighting works and says so
    rng = np.random.default_rng(1)
    noisy = _mixture(8, n=400, d=64).reshape(20, 20, 64) + rng.normal(0, 1.5, (20, 20, 64)).astype(np.float32)
    assert (noisy < 0).any()
    result = decompose(noisy, method="pca", n_components=2, poisson=True)
    assert any("negative count value(s) (read noise" in n for n in result.notes), result.notes
    # background-subtracted data: channel means <= 0, Poisson weighting is refused with the remedy
    subtracted = x - x.mean(axis=(0, 1)) - 1.0
    with pytest.raises(InputError, match="Poisson weighting needs positive mean counts per channel.*switch Poisson"):
        decompose(subtracted, method="pca", n_components=2, poisson=True)


def test_bad_shapes_and_methods_have_clear_messages() -> None:
    with pytest.raises(InputError, match="must be 3-D"):
        decompose(np.zeros(10), method="pca", n_components=1)
    with pytest.raises(ParameterError, match="method must be one of"):
        decompose(np.ones((4, 4, 8)), method="ica", n_components=1)
    with pytest.raises(ParameterError, match="whole number >= 1"):
        decompose(np.ones((4, 4, 8)), method="pca", n_components=0)


def test_dask_localcluster_pca_equals_batch() -> None:
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("dask.distributed")
    from processing.decomposition.distributed import decompose_dask
    x = _mixture(9, n=1024, d=128).reshape(32, 32, 128)
    x[5, 7] = np.nan
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        result = decompose_dask(da.from_array(x, chunks=(5, 16, -1)), n_components=3, client=client)
    ref = batch_pca(x, n_components=3, poisson=True)
    assert result.pca is not None
    angles = subspace_angles_deg(result.pca.components, ref.components)
    assert angles.max() < 1.0, f"{angles=}"
    np.testing.assert_allclose(result.pca.explained_variance[:3], ref.explained_variance[:3], rtol=0.01)
    assert np.isnan(result.maps[5, 7]).all() and result.n_spectra == 1023
