"""Sparse scanning with the drift-corrected SI's drift correction (issue 12): sections, reference scans, the
DriftEstimator's prediction applied per probe position; against the simulator's ground truth over drift scenarios."""
from __future__ import annotations

import typing

import numpy as np
import pytest
import threadpoolctl

from processing.base import InputError, ParameterError
from processing.sampling import dynamic_sampling, inpaint_pca, make_pattern
from processing.sampling.drift_sections import DriftCorrectedAcquisition, acquire_sparse_drift_corrected
from processing.spectroscopy.drift import DriftEstimator

SHAPE = (32, 32)
REF_CENTER_NM = (0.0, 14.0)      # the reference region beside the 16 nm SI field
SEEDS = (3, 4, 5, 6, 7)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread() -> typing.Iterator[None]:
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def sim() -> typing.Any:
    from instrument_sim.decomposition_truth import two_phase_si
    from instrument_sim.eels_physics import EnergyAxis
    with threadpoolctl.threadpool_limits(1):
        return two_phase_si(SHAPE, axis=EnergyAxis(380.0, 1.0, 512), seed=21)


def _stem(sim: typing.Any, drift: typing.Any, seed: int, **kw: typing.Any) -> typing.Any:
    from instrument_sim.sparse_scan import GridSpectrumField, SampleImageField, SimulatedSparseSTEM, reference_particles
    ref = SampleImageField(reference_particles(REF_CENTER_NM, seed=seed))
    return SimulatedSparseSTEM(GridSpectrumField(sim), ref, shape_px=SHAPE, pixel_size_nm=sim.pixel_size_nm,
                               reference_center_nm=REF_CENTER_NM, drift=drift, seed=100 + seed,
                               pixel_time_s=kw.pop("pixel_time_s", 10e-3), **kw)


def _abundance_error(si: np.ndarray, sim: typing.Any) -> float:
    est = si.reshape(-1, si.shape[-1]) @ np.linalg.pinv(sim.spectra)
    return float(np.linalg.norm(est - sim.abundances.reshape(-1, 2)) / np.linalg.norm(sim.abundances))


def _residual_px(stem: typing.Any, positions: np.ndarray) -> float:
    """RMS distance (SI pixels) between where each spectrum was meant to be and the sample point it saw."""
    return float(np.sqrt(np.mean(np.sum((stem.seen_px() - positions) ** 2, axis=1))))


def test_the_estimator_is_the_drift_corrected_si_machinery_and_brackets_every_section(sim: typing.Any) -> None:
    from instrument_sim.sparse_scan import drift_scenario
    estimator = DriftEstimator(quality_threshold=0.5)
    stem = _stem(sim, drift_scenario(3), 3)
    p = make_pattern("jittered", SHAPE, 0.5, seed=0)
    r = acquire_sparse_drift_corrected(stem, p, section_positions=100, estimator=estimator)
    n_sections = int(np.ceil(p.shape[0] / 100))
    assert len(r.sections) == n_sections and r.sections[-1][1] == p.shape[0]
    checks = [m for m in estimator.records if m.rate_check]  # (the rate check after an unverified alias)
    assert len(estimator.records) - len(checks) == 1 + 2 + n_sections, "reference + 2 bootstrap + one per section"
    assert all(not estimator.records[m.index - 1].rate_check and m.index > 3 for m in checks)
    assert r.measurements == estimator.records and all(m.accepted for m in r.measurements)
    np.testing.assert_array_equal(r.positions, p)
    # the reference scans are recorded with the offset the estimator predicted for them (as the SI engine does)
    for m, ref in zip(r.measurements[1:], stem.references[1:]):
        assert m.applied_offset_nm == pytest.approx(m.predicted_drift_nm, abs=0.05), f"{m}"
    # the applied probe offsets are the prediction at each visit time
    t = r.times_s[r.sections[-1][0]]
    assert r.applied_nm[r.sections[-1][0]] == pytest.approx(np.asarray(
        estimator.predictor.predict(t).drift_nm), abs=0.2)


@pytest.mark.parametrize("seed", SEEDS)
def test_drift_correction_keeps_the_probe_on_the_planned_pixels(sim: typing.Any, seed: int) -> None:
    """Ground truth: the sample point each spectrum saw vs the pixel it is stored at; also the estimator's own
    account of the drift vs the true drift."""
    from instrument_sim.sparse_scan import drift_scenario
    drift = drift_scenario(seed)
    p = make_pattern("jittered", SHAPE, 0.5, seed=seed)
    runs = {}
    for label, correct in (("corrected", True), ("uncorrected", False)):
        stem = _stem(sim, drift, seed)
        r = acquire_sparse_drift_corrected(stem, p, section_positions=100, correct_drift=correct)
        runs[label] = (_residual_px(stem, p), r, stem)
    corrected, uncorrected = runs["corrected"][0], runs["uncorrected"][0]
    true_drift_px = float(np.max(np.hypot(*(drift.offset_nm(runs["corrected"][1].times_s)
                                            - drift.offset_nm(runs["corrected"][2].references[0].time_s)).T)))
    true_drift_px /= sim.pixel_size_nm
    assert corrected < 0.25, f"{seed=}: residual {corrected:.3f} px with correction (drift {true_drift_px:.2f} px)"
    if true_drift_px > 1.0:
        assert uncorrected > 3 * corrected, f"{seed=}: {uncorrected=:.3f} {corrected=:.3f} px"
    r, stem = runs["corrected"][1], runs["corrected"][2]
    truth_nm = drift.offset_nm(r.times_s) - drift.offset_nm(stem.references[0].time_s)
    err_nm = np.hypot(*(r.measured_nm - truth_nm).T)
    assert float(np.median(err_nm)) < 0.05, f"{seed=}: measured drift off by {np.median(err_nm):.3f} nm"
    assert "drift correction off" in " ".join(runs["uncorrected"][1].notes)


def test_reconstruction_with_drift_correction_is_close_to_the_drift_free_one(sim: typing.Any) -> None:
    """Abundance-map error of the PCA inpainting, drift-free vs corrected vs uncorrected, over 5 drift scenarios
    (the same pattern and dose in each)."""
    from instrument_sim.sparse_scan import drift_scenario
    errors: dict[str, list[float]] = {"free": [], "corrected": [], "uncorrected": []}
    for seed in SEEDS:
        p = make_pattern("jittered", SHAPE, 0.5, seed=seed)
        for label, drift, correct in (("free", None, True), ("corrected", drift_scenario(seed), True),
                                      ("uncorrected", drift_scenario(seed), False)):
            r = acquire_sparse_drift_corrected(_stem(sim, drift, seed), p, section_positions=100,
                                               correct_drift=correct)
            errors[label].append(_abundance_error(inpaint_pca(r.spectra, r.positions, SHAPE,
                                                              n_components=2).si, sim))
    med = {k: float(np.median(v)) for k, v in errors.items()}
    worst_ratio = max(c / f for c, f in zip(errors["corrected"], errors["free"]))
    assert med["corrected"] <= 1.15 * med["free"], f"{errors}"
    assert worst_ratio <= 1.4, f"{errors}"
    assert med["uncorrected"] >= 1.5 * med["corrected"], f"{errors}"


def test_dynamic_sampling_runs_drift_corrected(sim: typing.Any) -> None:
    from instrument_sim.sparse_scan import drift_scenario
    stem = _stem(sim, drift_scenario(4), 4)
    acq = DriftCorrectedAcquisition(stem, section_positions=64)
    d = dynamic_sampling(acq, SHAPE, fraction=0.25, n_batches=3, n_components=2, seed=4)
    r = acq.result()
    np.testing.assert_array_equal(r.positions, d.positions)
    assert _residual_px(stem, d.positions) < 0.25
    assert len(r.measurements) == 1 + 2 + len(r.sections)
    assert len(r.sections) >= len(d.batches)        # every batch is cut into sections


def test_bad_input_gives_clear_messages(sim: typing.Any) -> None:
    stem = _stem(sim, None, 3)
    with pytest.raises(ParameterError, match="section_positions must be a whole number >= 1"):
        DriftCorrectedAcquisition(stem, section_positions=0)
    with pytest.raises(ParameterError, match="bootstrap_measurements must be"):
        DriftCorrectedAcquisition(stem, bootstrap_measurements=-1)
    with pytest.raises(InputError, match="lie outside the 32x32 field"):
        DriftCorrectedAcquisition(stem)(np.array([[0, 0], [32, 1]]))
    with pytest.raises(InputError, match="nothing was acquired yet"):
        DriftCorrectedAcquisition(stem).result()

    class Short:
        reference_pixel_size_nm = (0.25, 0.25)

        def acquire(self, positions: np.ndarray, correction: typing.Any) -> tuple[np.ndarray, np.ndarray]:
            return np.zeros((positions.shape[0] - 1, 8)), np.zeros(positions.shape[0] - 1)

        def reference(self, offset: typing.Any) -> tuple[np.ndarray, float]:
            return stem.reference(offset)

    with pytest.raises(InputError, match="returned 3 spectra and 3 times for 4 positions"):
        DriftCorrectedAcquisition(Short(), bootstrap_measurements=0)(np.array([[0, 0], [0, 1], [1, 0], [1, 1]]))
    class NoWait:        # a scanner without wait(): no bootstrap, said in the notes
        reference_pixel_size_nm = (0.25, 0.25)

        def acquire(self, positions: np.ndarray, correction: typing.Any) -> tuple[np.ndarray, np.ndarray]:
            return np.ones((positions.shape[0], 8)), 1.0 + 1e-3 * np.arange(positions.shape[0])

        def reference(self, offset: typing.Any) -> tuple[np.ndarray, float]:
            image, _t = stem.reference(offset)
            return image, 2.0

    notes = acquire_sparse_drift_corrected(NoWait(), np.array([[0, 0], [0, 1]])).notes
    assert any("cannot wait" in n for n in notes), notes
