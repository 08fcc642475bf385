"""Issue 13, remaining failure classes: a drift chain on a clean lattice that loses the register must end no worse
than uncorrected and never silently off (lost tracking + least correction), hypotheses the path search cannot tell
apart resolve towards the least correction, and a reference scan is checked against the first and the previous
reference scans. Ground truth: the synthetic crystal and drift of ``test_drift_consistency`` / ``test_drift_issue13``
(seeded); no timing."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from processing.spectroscopy.drift import DriftEstimator, DriftMeasurement
from processing.spectroscopy.drift_consistency import resolve_chain
from processing.spectroscopy.drift_guard import least_correction, reference_consistency, tracking_lost
from processing.spectroscopy.si_result import assign_verdicts

PERIOD_NM = 0.395


def _record(i: int, t: float, drift: tuple[float, float], **kw: object) -> DriftMeasurement:
    kw.setdefault("n_candidates", 9)  # a lattice: several aliases
    return DriftMeasurement(i, t, (0.0, 0.0), (0.0, 0.0), (0.075, 0.075), drift, 0.99, True, **kw)  # type: ignore[arg-type]


def test_tracking_is_lost_after_consecutive_jumps_or_ambiguities_only() -> None:
    ref = _record(0, 0.0, (0.0, 0.0), reason="reference")
    ok = _record(1, 1.0, (0.1, 0.0))
    jump = _record(2, 2.0, (0.5, 0.0), jump_nm=(0.3, 0.0))
    amb = _record(3, 3.0, (0.6, 0.0), ambiguous=True, predicted_sigma_nm=0.07, alias_spacing_nm=PERIOD_NM)
    tight = _record(3, 3.0, (0.6, 0.0), ambiguous=True, predicted_sigma_nm=0.02, alias_spacing_nm=PERIOD_NM)
    assert not tracking_lost([ref, ok, jump], 2)  # one jump: a real jump is re-acquired and followed
    assert not tracking_lost([ref, ok, jump, amb], 2)  # the engine's default: jumps only
    assert tracking_lost([ref, ok, jump, jump], 2)
    # a non-periodic reference (one candidate at most measurements): jumps never make it lost (sweep seed 5008,
    # particles: 4 jumps in a row made it lost and worse than uncorrected)
    single = [dataclasses.replace(r, n_candidates=1) for r in (ok, jump, jump)]
    assert not tracking_lost([ref] + single, 2)
    assert tracking_lost([ref, ok, jump, amb], 2, 3.0)  # optional: the prediction window (0.21 nm) reaches half
    assert not tracking_lost([ref, ok, jump, tight], 2, 3.0)  # ambiguous by content under a tight prediction
    assert not tracking_lost([ref, ok, jump, amb], 0)  # off
    lost = _record(4, 4.0, (0.0, 0.0), lost=True, ambiguous=True)
    assert tracking_lost([ref, ok, lost], 2)  # stays lost until the content decides
    assert not tracking_lost([ref, ok, lost, _record(5, 5.0, (1.0, 0.0))], 2)


def test_least_correction_takes_the_alias_nearest_the_anchor_with_hysteresis() -> None:
    drifts = [np.array([k * PERIOD_NM + 0.18, 0.0]) for k in (-2, -1, 0, 1)]
    assert least_correction(drifts, [0, 1, 2, 3], None, PERIOD_NM) == 2  # 0.18 nm, not -0.215
    # held: the previous lost choice was at -0.2 nm, its alias (-0.215) is within 0.75 period: no flip
    assert least_correction(drifts, [0, 1, 2, 3], (-0.2, 0.0), PERIOD_NM) == 1
    # a hold that strayed beyond 0.75 period from zero goes back to the smallest
    assert least_correction(drifts, [0, 1, 2, 3], (-0.6, 0.0), PERIOD_NM) == 2
    # the anchor is the last trusted drift (least correction since then), not zero
    assert least_correction(drifts, [0, 1, 2, 3], None, PERIOD_NM, anchor=(0.5, 0.0)) == 3


def _texture(seed: int, n: int = 48) -> np.ndarray:
    import scipy.ndimage
    rng = np.random.default_rng(seed)
    return np.asarray(scipy.ndimage.gaussian_filter(rng.normal(size=(n, n)), 1.5), dtype=np.float64)


def test_reference_consistency_flags_a_drift_the_first_and_previous_scans_do_not_confirm() -> None:
    """Non-periodic content shifted by a known 3 px (0.225 nm): the right drift is confirmed by both references, a
    drift 0.3 nm off by neither; a reference too different to match (noise) is skipped, not counted against."""
    import scipy.ndimage
    spec = _texture(4)
    first = spec[8:40, 8:40]
    moved = np.asarray(scipy.ndimage.shift(spec, (3.0, 0.0), order=3), dtype=np.float64)[8:40, 8:40]
    kw = dict(pixel_size_nm=(0.075, 0.075), rotation_rad=0.0, lowpass_sigma_px=1.0, highpass_sigma_px=None,
              max_shift_fraction=0.4, tolerance_nm=0.06, min_quality=0.5)
    refs = [("first", first, (0.0, 0.0)), ("previous", first, (0.0, 0.0))]
    assert reference_consistency(moved, (0.225, 0.0), (0.0, 0.0), refs, **kw) == []  # type: ignore[arg-type]
    assert reference_consistency(moved, (0.525, 0.0), (0.0, 0.0), refs, **kw) == ["first", "previous"]  # type: ignore[arg-type]
    # the previous scan was recorded with 0.1 nm of residual: its own frame is accounted for
    prev = np.asarray(scipy.ndimage.shift(spec, (1.0 / 0.75 * 1.0, 0.0), order=3), dtype=np.float64)[8:40, 8:40]
    assert reference_consistency(moved, (0.225, 0.0), (0.0, 0.0), [("previous", prev, (0.1, 0.0))],
                                 **kw) == []  # type: ignore[arg-type]
    noise = np.random.default_rng(9).normal(size=(32, 32))
    assert reference_consistency(moved, (0.525, 0.0), (0.0, 0.0), [("first", noise, (0.0, 0.0))],
                                 **kw) == []  # type: ignore[arg-type]


def test_lost_measurements_keep_their_value_in_the_joint_check_and_flag_their_sections() -> None:
    from test_drift_consistency import _chain, _result_with, _truth
    rng = np.random.default_rng(11)
    t = np.arange(10) * 0.8
    truth = _truth(t, rng)
    records = _chain(truth, t, truth)
    for k in (6, 7, 8, 9):  # lost from measurement 6 on: least-correction values, a period off
        off = (float(truth[k, 0]) - PERIOD_NM, float(truth[k, 1]))
        records[k] = dataclasses.replace(records[k], drift_nm=off, lost=True, ambiguous=True)
    sol = resolve_chain(records)
    assert sol.verdict[6:] == ("ambiguous",) * 4 and sol.drift_nm[6:] == tuple(r.drift_nm for r in records[6:])
    result = _result_with(records, t)
    assign_verdicts(result, correct_drift=True)
    assert all(not s.trusted and any("tracking lost" in f for f in s.flags) for s in result.sections[5:])
    assert all(r.flagged for r in result.measurements[6:])


def test_hypotheses_the_path_search_cannot_tell_apart_are_reported() -> None:
    """A half-period step on a clean lattice with no content anchor: the joint check lists both hypotheses
    (``ChainSolution.tied_nm``, in the metadata as the measurement's alternatives)."""
    from test_drift_consistency import _chain, _truth
    rng = np.random.default_rng(3)
    t = np.arange(16) * 0.6
    truth = _truth(t, rng)
    truth[9:] += np.array([0.5 * PERIOD_NM, 0.0])
    sol = resolve_chain(_chain(truth, t, truth))
    assert sol.verdict[-1] == "ambiguous" and len(sol.tied_nm[-1]) >= 2
    gaps = [np.hypot(c[0] - sol.tied_nm[-1][0][0], c[1] - sol.tied_nm[-1][0][1]) for c in sol.tied_nm[-1][1:]]
    assert min(gaps) == pytest.approx(PERIOD_NM, abs=0.01)
    assert all(len(x) == 1 for x, v in zip(sol.tied_nm, sol.verdict) if v == "consistent")


def _run_away(seed: int, count_unverified: bool = True, **estimator: object) -> tuple[float, float, int]:
    """The run-away scenario of ``test_drift_consistency`` (fast sinusoid + 0.3 nm/s on a clean lattice, reference
    scans 1.2 s apart, a 0.55-period jump): (RMS error of the final trajectory, RMS of no correction, number of
    final drifts off by more than a quarter period and not flagged)."""
    from test_drift_consistency import _run_away as run
    import processing.spectroscopy.drift as drift_module
    original = drift_module.DriftEstimator.__init__

    def patched(self: DriftEstimator, **kw: object) -> None:
        original(self, **{**kw, **estimator})  # type: ignore[arg-type]

    drift_module.DriftEstimator.__init__ = patched  # type: ignore[method-assign]
    try:
        _live, final, uncorrected, silent = run(seed, joint=True, count_unverified=count_unverified)
    finally:
        drift_module.DriftEstimator.__init__ = original  # type: ignore[method-assign]
    return final, uncorrected, silent


def test_a_chain_that_lost_the_register_is_never_worse_than_uncorrected_nor_silent() -> None:
    """(With ``lost_on_wide_ambiguity``: this run-away has no jumps, its prediction window grows instead; the
    engine's default counts jumps only, see :func:`processing.spectroscopy.drift_guard.untracked`.) Old (joint check without lost tracking, ``lost_after=0``): on 8 seeds, 3 end worse than no correction (up to
    1.44x) and 2 have drifts off by whole periods that nothing flags. Now: nothing silently off, the median 0.87x no
    correction, and no seed more than 5 % above it (the alias nearest the last trusted drift errs by the lattice
    vector nearest the drift since then, a fraction of a period from "uncorrected from there on": one seed of 8
    ends 1.4 % above no correction, flagged; stated, not hidden)."""
    # (the old engine: 12 candidates, no "alias not verified by content" flag)
    old = [_run_away(seed, count_unverified=False, lost_after=0, check_references=False, max_candidates=12)
           for seed in range(8)]
    assert sum(1 for f, u, _s in old if f > u) >= 2 and sum(s for _f, _u, s in old) >= 1, old
    new = [_run_away(seed, lost_on_wide_ambiguity=True, lost_after=2) for seed in range(8)]
    assert all(s == 0 for _f, _u, s in new), new
    assert all(f <= 1.05 * u for f, u, _s in new), new
    assert float(np.median([f / u for f, u, _s in new])) < 0.95, new


def test_a_run_of_rejected_or_unconfirmed_matches_holds_the_offset_at_the_last_trusted_drift() -> None:
    """Session 5, sweep seed 8001 (particles, a reference sheared under load): the matches were poor (NCC 0.25-0.6),
    most rejected, the accepted ones not confirmed by the previous scan, and the prediction extrapolated from them ran
    away (47 px vs 6 px uncorrected). Now after 4 such measurements in a row the tracking is lost on any reference:
    the offset holds at the last trusted drift (old code: the rate extrapolated, here 0.2 nm/s x 3 s further)."""
    import scipy.ndimage

    from processing.spectroscopy.drift_guard import last_trusted_drift, untrusted_run

    rng = np.random.default_rng(8001)
    scene = scipy.ndimage.gaussian_filter(rng.normal(size=(128, 128)), 3.0)  # non-periodic content
    pixel = 0.075

    def scan(drift_nm: np.ndarray, offset_nm: tuple[float, float]) -> np.ndarray:
        moved = scipy.ndimage.shift(scene, (np.asarray(drift_nm) - np.asarray(offset_nm)) / pixel, order=3,
                                    mode="grid-wrap")
        return moved[48:80, 48:80] + rng.normal(0.0, 0.02, (32, 32))

    est = DriftEstimator(quality_threshold=0.5, rate_window=4, jump_floor_nm=0.03)
    rate = np.array([0.2, -0.1])
    for t in (0.0, 0.5, 1.0, 1.5):
        off = est.predict_offset_nm(t)
        est.add_image(scan(rate * t, off), time_s=t, pixel_size_nm=(pixel, pixel), applied_offset_nm=off)
    trusted = est.accepted[-1].drift_nm
    assert np.allclose(trusted, rate * 1.5, atol=0.02)
    for t in (2.0, 2.5, 3.0, 3.5):  # the reference is lost in noise: every match rejected
        off = est.predict_offset_nm(t)
        m = est.add_image(rng.normal(size=(32, 32)), time_s=t, pixel_size_nm=(pixel, pixel), applied_offset_nm=off)
        assert not m.accepted
    assert untrusted_run(est.records, 4) and est.tracking_lost
    assert last_trusted_drift(est.records) == trusted
    assert np.allclose(est.predict_offset_nm(4.5), trusted)  # old code: trusted + rate * 3 s
    records = list(est.records)
    assert not untrusted_run(records[:-1], 4)  # three in a row are not enough
