"""Sparse and dynamic sampling (issue 12): patterns, sparse scan with drift, PCA/TV inpainting, SLADS-like policy."""
from __future__ import annotations

import typing

import numpy as np
import pytest
import threadpoolctl

from processing.base import InputError, ParameterError
from processing.sampling import (PATTERNS, dynamic_sampling, inpaint_pca, inpaint_tv, make_pattern,
                                 mask_from_positions)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread() -> typing.Iterator[None]:
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def sim() -> typing.Any:
    from instrument_sim.decomposition_truth import two_phase_si
    from instrument_sim.eels_physics import EnergyAxis
    with threadpoolctl.threadpool_limits(1):
        return two_phase_si((40, 40), axis=EnergyAxis(380.0, 0.5, 1024), seed=3)


def _abundance_error(si: np.ndarray, sim: typing.Any) -> float:
    est = si.reshape(-1, si.shape[-1]) @ np.linalg.pinv(sim.spectra)
    return float(np.linalg.norm(est - sim.abundances.reshape(-1, 2)) / np.linalg.norm(sim.abundances))


@pytest.mark.parametrize("name", sorted(PATTERNS))
@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.25, 0.1])
def test_patterns_sample_the_requested_fraction_without_repeats(name: str, fraction: float) -> None:
    for seed in range(3):
        p = make_pattern(name, (40, 48), fraction, seed=seed)
        mask = mask_from_positions(p, (40, 48))
        assert mask.sum() == p.shape[0], "a pixel was sampled twice"
        assert abs(p.shape[0] / (40 * 48) - fraction) <= 0.02, f"{name} {fraction}: {p.shape[0]} positions"
        if name != "random":   # low-discrepancy patterns leave no large hole: every 2/sqrt(f)-px box is hit
            box = int(np.ceil(2.0 / np.sqrt(fraction)))
            for y in range(0, 40 - box + 1, box):
                for x in range(0, 48 - box + 1, box):
                    assert mask[y:y + box, x:x + box].any(), f"{name} {fraction}: empty box at {(y, x)}"


def test_line_hopping_visits_each_band_once_left_to_right() -> None:
    p = make_pattern("line_hopping", (40, 32), 0.25, seed=0)
    columns = p[:, 1].reshape(-1, 32)
    assert (columns == np.arange(32)).all()
    bands = p[:, 0].reshape(-1, 32)
    assert (bands.max(axis=1) - bands.min(axis=1) <= 4).all()


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, float("nan"), "half"])
def test_bad_sampling_fraction_is_refused(fraction: typing.Any) -> None:
    with pytest.raises(ParameterError, match="sampling fraction must be"):
        make_pattern("random", (10, 10), fraction)


def test_positions_outside_the_field_are_refused_by_reconstruction_and_scan(sim: typing.Any) -> None:
    from instrument_sim.errors import SimulatorParameterError
    from instrument_sim.sparse_scan import GridSpectrumField, acquire_positions
    bad = np.array([[0, 0], [40, 3], [5, -1]])
    with pytest.raises(InputError, match="2 of 3 probe positions lie outside the 40x40 field"):
        mask_from_positions(bad, (40, 40))
    with pytest.raises(SimulatorParameterError, match="2 of 3 probe positions lie outside"):
        acquire_positions(GridSpectrumField(sim), bad, shape_px=(40, 40), pixel_size_nm=sim.pixel_size_nm)


def test_sparse_scan_applies_drift_and_its_correction() -> None:
    from instrument_sim.drift import DriftModel
    from instrument_sim.sparse_scan import acquire_positions, raster_time_s

    class Ramp:   # expected spectrum = x position: the content seen tells where the probe really was
        def expected_spectra(self, y_nm: np.ndarray, x_nm: np.ndarray) -> np.ndarray:
            return np.repeat((1e4 * (x_nm + 50.0))[:, None], 4, axis=1)

    drift = DriftModel(rate_nm_per_s=(0.0, 2.0))
    p = make_pattern("random", (20, 20), 0.25, seed=1)
    plain = acquire_positions(Ramp(), p, shape_px=(20, 20), pixel_size_nm=1.0, pixel_time_s=0.01, drift=drift)
    corrected = acquire_positions(Ramp(), p, shape_px=(20, 20), pixel_size_nm=1.0, pixel_time_s=0.01, drift=drift,
                                  correction_nm=drift.offset_nm)
    nominal = (-10 + p[:, 1]).astype(float)
    lag = nominal - plain.seen_nm[:, 1]
    np.testing.assert_allclose(lag, 2.0 * plain.times_s, atol=1e-9)              # drift moved the content
    np.testing.assert_allclose(corrected.seen_nm[:, 1], nominal, atol=1e-9)     # the correction cancels it
    x_from_counts = corrected.spectra.mean(axis=1) / 1e4 - 50.0
    np.testing.assert_allclose(x_from_counts, nominal, atol=0.1)
    as_callable = acquire_positions(Ramp(), p, shape_px=(20, 20), pixel_size_nm=1.0, pixel_time_s=0.01,
                                    drift=drift.offset_nm)          # e.g. SimInstrument.scan_content_offset_nm
    np.testing.assert_allclose(as_callable.seen_nm, plain.seen_nm)
    assert plain.scan_time_s < 0.3 * raster_time_s((20, 20), pixel_time_s=0.01)
    assert plain.dose_fraction == pytest.approx(0.25)


@pytest.mark.parametrize("fraction", [0.5, 0.25, 0.1])
def test_inpainting_recovers_the_abundances_from_a_sparse_scan(sim: typing.Any, fraction: float) -> None:
    from instrument_sim.sparse_scan import GridSpectrumField, acquire_positions
    field = GridSpectrumField(sim)
    full = acquire_positions(field, make_pattern("random", (40, 40), 1.0), shape_px=(40, 40),
                             pixel_size_nm=sim.pixel_size_nm, rng=np.random.default_rng(9))
    raw_error = _abundance_error(full.spectra.reshape(40, 40, -1), sim)   # patterns are in scan order
    errors = {}
    for seed in range(3):
        p = make_pattern("jittered", (40, 40), fraction, seed=seed)
        scan = acquire_positions(field, p, shape_px=(40, 40), pixel_size_nm=sim.pixel_size_nm,
                                 rng=np.random.default_rng(seed))
        for method, fn in (("pca", inpaint_pca), ("tv", inpaint_tv)):
            r = fn(scan.spectra, p, (40, 40), n_components=2)
            assert r.si.shape == sim.expected.shape and r.mask.sum() == p.shape[0]
            errors.setdefault(method, []).append(_abundance_error(r.si, sim))
    limit = {0.5: 0.08, 0.25: 0.09, 0.1: 0.15}[fraction]
    for method, values in errors.items():
        assert np.median(values) < limit, f"{method} at {fraction}: {values} (raw full scan {raw_error:.3f})"
    assert np.median(errors["tv"]) <= 1.1 * np.median(errors["pca"]), f"{errors}"


def test_dynamic_sampling_puts_extra_samples_at_the_interface(sim: typing.Any) -> None:
    from instrument_sim.sparse_scan import GridSpectrumField, acquire_positions
    field = GridSpectrumField(sim)
    rng = np.random.default_rng(0)

    def acquire(positions: np.ndarray) -> np.ndarray:
        return acquire_positions(field, positions, shape_px=(40, 40), pixel_size_nm=sim.pixel_size_nm,
                                 rng=rng).spectra

    result = dynamic_sampling(acquire, (40, 40), fraction=0.2, n_components=2, seed=0)
    assert abs(result.positions.shape[0] - 320) <= 2 and sum(result.batches) == result.positions.shape[0]
    mask = mask_from_positions(result.positions, (40, 40))
    assert mask.sum() == result.positions.shape[0]
    a = sim.abundances[..., 0] / sim.abundances.sum(axis=-1)
    interface = (a > 0.1) & (a < 0.9)
    later = mask_from_positions(result.positions[result.batches[0]:], (40, 40))
    density_interface = later[interface].mean()
    density_elsewhere = later[~interface].mean()
    assert density_interface > 1.5 * density_elsewhere, f"{density_interface=:.3f} {density_elsewhere=:.3f}"
