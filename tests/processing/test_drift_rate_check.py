"""Issue 13 (session 11): the rate check, one more reference scan right after a measurement whose lattice alias
rests on the drift model alone (:func:`processing.spectroscopy.drift_guard.rate_check_wanted`).

Sweep seed 9207 (perovskite): two jumps of ~0.4 period, 0.46 s apart, that nearly cancel; reference scans every
~0.87 s (Swift's synchronized acquisition start-up per section). A clean lattice then cannot tell "the jump went
back" from "the rate rose by one period per interval": the joint check took the rate alias and the register ran
away by a period per measurement (8.8 px vs 1.5 px uncorrected). Reproduced here on the synthetic clean crystal of
``test_drift_issue13`` (seeded; the same draws with and without the check), with the engine's loop: bootstrap scans,
one measurement per interval, and with the check an extra scan 0.14 s later when it is wanted. Ground truth is
the drawn drift; nothing depends on timing.
"""
from __future__ import annotations

import typing

import numpy as np
import pytest

from processing.spectroscopy.drift import DriftEstimator, DriftMeasurement
from processing.spectroscopy.drift_consistency import annotate, resolve_chain
from processing.spectroscopy.drift_guard import rate_check_wanted
from processing.spectroscopy.drift_model import DriftPredictor

from test_drift_issue13 import PERIOD_NM, PIXEL_NM, _crystal, _scan

INTERVAL_S = 0.87
CHECK_S = 0.14


def _run(seed: int, rate_check: bool) -> tuple[list[float], list[float | None], list[DriftMeasurement]]:
    """(live error nm, final error nm (None: not used), final records) of one chain over 12 s."""
    rng = np.random.default_rng(900 + seed)
    spec = _crystal(0.0, seed=seed)
    est = DriftEstimator(quality_threshold=0.4, rate_window=4, jump_floor_nm=0.02, max_shift_fraction=0.3)
    angle = rng.uniform(0, 2 * np.pi)
    rate = rng.uniform(0.0, 0.25) * np.array([np.cos(angle), np.sin(angle)])
    phi = rng.uniform(0, 2 * np.pi)
    jump1 = rng.uniform(0.38, 0.45) * PERIOD_NM * np.array([np.cos(phi), np.sin(phi)])
    jump2 = -jump1 * rng.uniform(0.9, 1.1)  # nearly cancelling
    t1 = 0.38 + rng.uniform(0.3, 0.6)
    t2 = t1 + rng.uniform(0.35, 0.6)

    def truth(t: float) -> np.ndarray:
        return typing.cast(np.ndarray, rate * t + (jump1 if t > t1 else 0.0) + (jump2 if t > t2 else 0.0))

    def measure(t: float, check: bool = False) -> None:
        off = est.predict_offset_nm(t)
        est.add_image(_scan(spec, truth(t) - np.asarray(off), rng), time_s=t, pixel_size_nm=(PIXEL_NM, PIXEL_NM),
                      applied_offset_nm=off, rate_check=check)

    for t in (0.0, 0.12, 0.38):  # the reference and the doubling bootstrap
        measure(t)
    t = 0.38
    while t < 12.0:
        t += INTERVAL_S
        measure(t)
        if rate_check and rate_check_wanted(est.records):
            t += CHECK_S
            measure(t, check=True)
    records = est.records
    final = annotate(records, resolve_chain(records, **est.chain_parameters()))
    live = [float(np.hypot(*(np.asarray(m.drift_nm) - truth(m.time_s)))) for m in records]
    done = [None if m.final_drift_nm is None else float(np.hypot(*(np.asarray(m.final_drift_nm) - truth(m.time_s))))
            for m in final]
    return live, done, list(final)


def test_without_the_check_two_cancelling_jumps_make_the_register_run_away() -> None:
    """The failure (old behaviour, the check off): on these draws the chain runs away, every measurement a period
    further, and the retrospective check cannot bring it back (the runaway is the smooth path)."""
    worst = [max(_run(seed, rate_check=False)[0]) for seed in (0, 1)]
    assert min(worst) > 5 * PERIOD_NM, worst


@pytest.mark.parametrize("seed", range(8))
def test_with_the_check_the_register_never_runs_away_and_ends_right(seed: int) -> None:
    live, final, records = _run(seed, rate_check=True)
    # live: at most one lattice vector off (a diagonal alias is sqrt(2) periods), never a period per measurement
    assert max(live) < 1.5 * PERIOD_NM, np.round(live, 3).tolist()
    # after the run: every measurement used is on the right alias
    used = [e for e in final if e is not None]
    assert max(used) < PERIOD_NM / 4, np.round(used, 3).tolist()
    checks = [m for m in records if m.rate_check]
    assert all(not rate_check_wanted(records[: m.index + 1]) for m in checks)  # never a check after a check
    assert len(records) - len(checks) >= 15  # the regular sampling is unchanged


def test_a_rate_check_point_does_not_push_an_older_point_out_of_the_fit_window() -> None:
    """Four points 0.87 s apart and a check 0.14 s after the last: the fit still spans the four intervals, so the
    prediction 0.87 s later is as certain as without the check (a check counted in the window shortened the span,
    and the 4.5-sigma jump threshold grew by half: tests/plugin/test_drift_si_issue13.py's repeated jump)."""
    def predictor(check: bool) -> DriftPredictor:
        p = DriftPredictor(window=4, measurement_sigma_nm=0.005)
        for k in range(5):
            p.add(k * INTERVAL_S, (0.1 * k * INTERVAL_S, 0.0))
        if check:
            p.add(4 * INTERVAL_S + CHECK_S, (0.1 * (4 * INTERVAL_S + CHECK_S), 0.0), extra=True)
        return p
    t_next = 5 * INTERVAL_S + CHECK_S
    with_check, without = predictor(True).predict(t_next), predictor(False).predict(t_next)
    assert with_check.sigma_nm <= without.sigma_nm * 1.05, (with_check.sigma_nm, without.sigma_nm)
    assert with_check.drift_nm[0] == pytest.approx(0.1 * t_next, abs=0.01)
    counted = DriftPredictor(window=4, measurement_sigma_nm=0.005)
    for k in range(5):
        counted.add(k * INTERVAL_S, (0.1 * k * INTERVAL_S, 0.0))
    counted.add(4 * INTERVAL_S + CHECK_S, (0.1 * (4 * INTERVAL_S + CHECK_S), 0.0))  # counted: the span shrinks
    assert counted.predict(t_next).sigma_nm > with_check.sigma_nm
