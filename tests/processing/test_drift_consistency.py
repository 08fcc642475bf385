"""Retrospective consistency check of the drift chain (issue 13): alias slips unwrapped jointly, flagged only where
the chain cannot tell, outliers left out. Ground truth: a known drift sampled like the engine's reference scans,
each measurement offering every lattice alias (0.395 nm) within the search range as a candidate."""
from __future__ import annotations

import numpy as np
import pytest

from processing.spectroscopy.drift import DriftMeasurement
from processing.spectroscopy.drift_consistency import rebuild_predictor, resolve_chain
from processing.spectroscopy.si_result import PassGeometry, PassResult, SectionRecord, SIRunResult, assign_verdicts
from processing.spectroscopy.si_settings import DriftSISettings

PERIOD_NM = 0.395
ALIASES = np.array([(i * PERIOD_NM, j * PERIOD_NM) for i in (-1, 0, 1) for j in (-1, 0, 1)])


def _truth(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear + sinusoid + a little random walk (nm), as the simulator's drift."""
    rate = rng.uniform(-0.4, 0.4, 2)
    amp = rng.uniform(0.0, 0.4, 2)
    period = rng.uniform(15.0, 60.0)
    walk = np.cumsum(rng.normal(0.0, 0.004, (t.size, 2)), axis=0)
    d = t[:, None] * rate[None, :] + amp[None, :] * np.sin(2 * np.pi * t[:, None] / period) + walk
    return d - d[0]


def _chain(truth: np.ndarray, t: np.ndarray, live: np.ndarray, *, lattice: bool = True,
           anchored: tuple[int, ...] = ()) -> list[DriftMeasurement]:
    """Records whose live value is ``live`` and whose candidates are the lattice aliases around it (only the true
    value where the content decides: index 0 and ``anchored``)."""
    out = []
    for i, (ti, tr, lv) in enumerate(zip(t, truth, live)):
        if i == 0 or not lattice or i in anchored:
            cands: tuple[tuple[float, float], ...] = ((float(tr[0]), float(tr[1])),)
        else:
            base = tr + np.round((lv - tr) / PERIOD_NM) * PERIOD_NM  # aliases centred on the live choice
            cands = tuple((float(c[0]), float(c[1])) for c in base[None, :] + ALIASES)
        out.append(DriftMeasurement(i, float(ti), (0.0, 0.0), (0.0, 0.0), (0.075, 0.075),
                                    (float(lv[0]), float(lv[1])), 0.99, True, candidates_nm=cands,
                                    n_candidates=len(cands), ambiguous=len(cands) > 1 and i > 0))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_an_alias_slip_of_the_live_chain_is_unwrapped(seed: int) -> None:
    """The live chain slipped by one period at a random measurement (and stayed there): the joint fit puts every
    measurement back on the true drift (re-placed, not flagged)."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.4, 1.2, 24)) - 0.4
    t[0] = 0.0
    truth = _truth(t, rng)
    live = truth.copy()
    k = int(rng.integers(3, 20))
    live[k:] += PERIOD_NM * np.array([1.0, 0.0]) if rng.random() < 0.5 else PERIOD_NM * np.array([0.0, -1.0])
    sol = resolve_chain(_chain(truth, t, live))
    final = np.array(sol.drift_nm)
    assert np.abs(final - truth).max() < 1e-9, (k, sol.verdict)
    assert all(v == "re-placed" for v in sol.verdict[k:]), sol.verdict
    assert "ambiguous" not in sol.verdict


def test_a_jump_of_half_a_period_on_a_clean_lattice_is_flagged_from_there_on_only() -> None:
    """A step of half a period on a lattice without non-periodic content: its alias is exactly as plausible, so the
    register is unknown from that measurement until the end (no content anchor): those are ambiguous, the earlier
    ones consistent. A content anchor after it (a single candidate) resolves everything."""
    rng = np.random.default_rng(3)
    t = np.arange(16) * 0.6
    truth = _truth(t, rng)
    truth[9:] += np.array([0.5 * PERIOD_NM, 0.0])
    sol = resolve_chain(_chain(truth, t, truth))
    assert all(v in ("consistent", "resolved") for v in sol.verdict[:9]), sol.verdict
    assert all(v == "ambiguous" for v in sol.verdict[9:]), sol.verdict
    anchored = resolve_chain(_chain(truth, t, truth, anchored=(13,)))
    assert "ambiguous" not in anchored.verdict and np.abs(np.array(anchored.drift_nm) - truth).max() < 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_a_real_jump_smaller_than_half_a_period_is_kept_not_aliased(seed: int) -> None:
    rng = np.random.default_rng(10 + seed)
    t = np.arange(18) * 0.5
    truth = _truth(t, rng)
    k = int(rng.integers(4, 14))
    truth[k:] += rng.choice([-1, 1]) * rng.uniform(0.05, 0.3) * PERIOD_NM * np.array([1.0, 0.0])
    sol = resolve_chain(_chain(truth, t, truth))
    assert np.abs(np.array(sol.drift_nm) - truth).max() < 1e-9 and "ambiguous" not in sol.verdict, sol.verdict


def test_an_isolated_bad_match_is_an_outlier_and_the_trajectory_ignores_it() -> None:
    """A measurement 1 nm off (a wrong match on non-periodic content), alone: left out, the rebuilt trajectory
    follows the others."""
    rng = np.random.default_rng(5)
    t = np.arange(14) * 0.5
    truth = _truth(t, rng)
    live = truth.copy()
    live[7] += (0.8, -0.6)
    records = _chain(truth, t, live, lattice=False)
    records[7] = DriftMeasurement(7, float(t[7]), (0.0, 0.0), (0.0, 0.0), (0.075, 0.075),
                                  (float(live[7, 0]), float(live[7, 1])), 0.6, True)
    sol = resolve_chain(records)
    assert sol.verdict[7] == "outlier" and sol.verdict.count("outlier") == 1, sol.verdict
    from processing.spectroscopy.drift_consistency import annotate
    predictor = rebuild_predictor(annotate(records, sol))
    assert np.abs(predictor.trajectory_nm(t[7]) - truth[7]).max() < 0.05


def _result_with(records: list[DriftMeasurement], t: np.ndarray) -> SIRunResult:
    settings = DriftSISettings(si_size_px=(4 * (len(t) - 1), 8))
    result = SIRunResult(settings)
    result.passes.append(PassResult(0, PassGeometry(settings.scan_field, settings.si_size_px, 0.002), 4, label="EELS"))
    for i in range(len(t) - 1):  # one section of 4 rows between consecutive measurements
        result.sections.append(SectionRecord(i, 0, 4 * i, 4, float(t[i]) + 0.01, float(t[i + 1]) - 0.01,
                                             (0.0, 0.0), float(t[i]), 32))
    result.measurements = tuple(records)
    return result


def test_one_ambiguous_measurement_flags_only_the_sections_it_affects() -> None:
    """Old: one ambiguous measurement flagged every later section. Now: a live ambiguity that the joint fit resolves
    flags nothing; one it cannot resolve (half-period jump, no anchor after) flags the sections from it on, and the
    sections before it stay trusted."""
    rng = np.random.default_rng(7)
    t = np.arange(12) * 0.6
    truth = _truth(t, rng)
    resolved = _result_with(_chain(truth, t, truth), t)  # every measurement ambiguous live, one smooth path
    assign_verdicts(resolved, correct_drift=True)
    assert all(s.trusted for s in resolved.sections[:-1]), [s.flags for s in resolved.sections]
    truth[6:] += np.array([0.0, 0.5 * PERIOD_NM])
    unresolved = _result_with(_chain(truth, t, truth), t)
    assign_verdicts(unresolved, correct_drift=True)
    trusted = [s.trusted for s in unresolved.sections]
    assert trusted[:5] == [True] * 5 and not any(trusted[5:]), [s.flags for s in unresolved.sections]


def _run_away(seed: int, *, joint: bool, count_unverified: bool = True) -> tuple[float, float, float, int]:
    """Old failure 2 on a clean lattice: fast sinusoid (0.5 nm, 10 s) + 0.3 nm/s, reference scans 1.2 s apart, a
    jump of 0.55 period at 7 s. Returns (RMS error of the live trajectory, RMS error of the final trajectory,
    RMS of no correction, number of final drifts off by more than a quarter period and not flagged)."""
    from test_drift_issue13 import PIXEL_NM, _crystal, _scan

    from processing.spectroscopy.drift import DriftEstimator
    from processing.spectroscopy.drift_consistency import annotate
    spec = _crystal(0.0, seed=seed)
    rng = np.random.default_rng(100 + seed)
    est = DriftEstimator(quality_threshold=0.4, rate_window=5, jump_floor_nm=0.03, max_shift_fraction=0.3,
                         joint_unwrap=joint)
    times = np.array([0.0, 0.3, 0.6] + list(np.arange(1.6, 16.0, 1.2)))
    truth = (times[:, None] * 0.3 * np.array([np.cos(seed), np.sin(seed)])[None, :]
             + 0.5 * np.sin(2 * np.pi * times / 10.0)[:, None] * np.array([1.0, -0.7]))
    truth[times > 7.0] += 0.55 * PERIOD_NM * np.array([0.6, 0.8])
    for t, drift in zip(times, truth):
        off = est.predict_offset_nm(float(t))
        est.add_image(_scan(spec, drift - np.asarray(off), rng), time_s=float(t), pixel_size_nm=(PIXEL_NM, PIXEL_NM),
                      applied_offset_nm=off)
    live = est.trajectory_nm(times)
    records = annotate(est.records, resolve_chain(est.records, **est.chain_parameters()))
    final = rebuild_predictor(records, est.predictor).trajectory_nm(times)
    error = np.hypot(*(final - truth).T)

    def rms(v: np.ndarray) -> float:
        return float(np.sqrt(np.mean(v ** 2)))

    from processing.spectroscopy.si_result import register_unverified_since
    # their sections are flagged "alias not verified by content" (count_unverified=False: the old flags only)
    unverified = register_unverified_since(records) if count_unverified else {}
    silent = sum(1 for m, e in zip(records, error) if e > PERIOD_NM / 4 and not (m.flagged or m.index in unverified))
    return rms(np.hypot(*(live - truth).T)), rms(error), rms(np.hypot(*truth.T)), silent


def test_run_away_scenario_is_contained_and_every_period_error_is_flagged() -> None:
    """Old failure 2 (the chain ran away by a period per reference scan) on a clean lattice with fast drift and a
    0.55-period jump: with the old live choice (prediction only, no joint check) the error ends larger than no
    correction on every seed; the live chain chosen by the whole chain so far plus the retrospective check ends
    smaller than the old one on every seed, smaller than no correction in the median, and whatever stays off by
    more than a quarter period is flagged (no silent error). (Before the lost-tracking rule one seed of three ended
    above no correction, 3.4 vs 2.5 nm RMS, flagged; with it all three end below: 0.74 / 0.89 / 0.99 x no correction;
    the 8-seed version is in test_drift_guard.py.) Session 5: with every alias kept (48 candidates, not 12) the
    joint check of seed 2 settles on a wrong smooth path that was flagged only because the true alias was missing;
    its measurements from 2.8 s on are "alias not verified by content" (the prediction window held several
    aliases), and that flag counts here."""
    old = [_run_away(seed, joint=False) for seed in range(3)]
    new = [_run_away(seed, joint=True) for seed in range(3)]
    assert all(o[0] > o[2] for o in old), old  # the old behaviour: worse than uncorrected
    assert all(n[1] < o[0] for n, o in zip(new, old)), (new, old)
    assert float(np.median([n[1] / n[2] for n in new])) < 1.0, new
    assert all(n[3] == 0 for n in new), new
