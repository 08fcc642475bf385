"""The a-posteriori drift trajectory across a long section after the clustered bootstrap measurements (issue 13).

Found in the session-9 sweep (seeds 9208, 9221: the whole 24-line SI in one section): the bootstrap's reference
scans lie 0.05-0.2 s apart, the next measurement a section (1.5-2.5 s) later, and an interpolating cubic spline through
the bootstrap's measurement noise bowed across the section (0.2-0.8 px where the drift was 0.1 px, unflagged).
"""
from __future__ import annotations

import numpy as np

from processing.spectroscopy.drift_model import DriftPredictor


def _drift_nm(t: np.ndarray, rate: np.ndarray, amplitude: np.ndarray, period_s: float, phase: float) -> np.ndarray:
    return t[:, None] * rate[None, :] + amplitude[None, :] * np.sin(2 * np.pi * t[:, None] / period_s + phase)


def test_the_trajectory_does_not_bow_across_a_long_section_after_the_bootstrap() -> None:
    rng = np.random.default_rng(913)
    excess_nm = []
    for _ in range(60):
        rate = rng.uniform(-0.5, 0.5, 2)
        amplitude = rng.uniform(0.0, 0.5, 2)
        period_s, phase = rng.uniform(10.0, 60.0), rng.uniform(0, 2 * np.pi)
        first_scan_s = rng.uniform(0.04, 0.08)  # the doubling bootstrap: waits of 0, 1 and 2 scans
        times = np.array([0.0, first_scan_s, 3.0 * first_scan_s])
        times = np.concatenate([times, times[-1] + rng.uniform(1.5, 2.5) * np.arange(1, rng.integers(2, 4))])
        measured = _drift_nm(times, rate, amplitude, period_s, phase) + rng.normal(0.0, 0.006, (times.size, 2))
        predictor = DriftPredictor()
        for t, d in zip(times, measured):
            predictor.add(float(t), (float(d[0]), float(d[1])))
        gap = np.linspace(times[2], times[-1], 400)
        truth = _drift_nm(gap, rate, amplitude, period_s, phase)
        error = float(np.abs(predictor.trajectory_nm(gap) - truth).max())
        # what no interpolation can avoid: the drift's curvature between the measurements (linear interpolation of
        # the true drift at the measurement times) and their noise (4 sigma)
        exact = _drift_nm(times, rate, amplitude, period_s, phase)
        sampling = max(float(np.abs(np.interp(gap, times, exact[:, k]) - truth[:, k]).max()) for k in (0, 1))
        excess_nm.append(error - sampling - 4 * 0.006)
    # an interpolating cubic spline through the bootstrap's noise: up to 2.3 nm beyond that on these seeds (PCHIP 0.08)
    assert max(excess_nm) < 0.0, sorted(excess_nm)[-5:]
