"""Known-answer tests of processing.spectroscopy.drift.DriftEstimator on a synthetic specimen that drifts by a known amount."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage

from processing.base import InputError, ParameterError
from processing.spectroscopy.drift import DriftEstimator, records_from_json, robust_rate

PIXEL_NM = 0.5
N = 48


def _specimen(seed: int = 0, n: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    img = np.zeros((n, n))
    for _ in range(250):
        y, x = rng.uniform(0, n, 2)
        s = rng.uniform(1.2, 2.5)
        img += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
    return img


def _subscan(specimen: np.ndarray, drift_nm: np.ndarray, offset_nm: tuple[float, float],
             rng: np.random.Generator | None, contrast: float = 1.0, dose: float = 30.0) -> np.ndarray:
    """Scan of the N x N region at the centre: content displaced by (drift - offset) / pixel size."""
    shift = (np.asarray(drift_nm) - np.asarray(offset_nm)) / PIXEL_NM
    moved = scipy.ndimage.shift(specimen, shift, order=3, mode="nearest")
    c = (specimen.shape[0] - N) // 2
    img = np.clip(moved[c:c + N, c:c + N], 0, None) * contrast + 0.2
    return img if rng is None else rng.poisson(img * dose) / dose


def _true_drift(t: float) -> np.ndarray:
    return np.array([0.08 * t, -0.05 * t])


def test_follows_linear_drift_with_prediction() -> None:
    spec = _specimen()
    rng = np.random.default_rng(1)
    est = DriftEstimator(quality_threshold=0.4)
    times = np.arange(0.0, 60.0, 5.0)
    for t in times:
        offset = est.predict_offset_nm(t)
        m = est.add_image(_subscan(spec, _true_drift(t), offset, rng), time_s=t, pixel_size_nm=(PIXEL_NM, PIXEL_NM),
                          applied_offset_nm=offset)
        assert m.accepted
        assert np.allclose(m.drift_nm, _true_drift(t), atol=0.06)  # 0.12 px
    assert est.rate_nm_per_s() == pytest.approx((0.08, -0.05), abs=0.006)
    # the prediction extrapolates from the rate, not only the last position
    assert np.allclose(est.predict_offset_nm(70.0), _true_drift(70.0), atol=0.1)
    # once the rate is known, the applied offset already cancels most of the drift (residual < 1 px)
    late = est.records[4:]
    assert max(np.hypot(*m.shift_px) for m in late) < 1.0


def test_low_quality_measurement_rejected_logged_and_not_applied() -> None:
    spec = _specimen()
    rng = np.random.default_rng(2)
    est = DriftEstimator(quality_threshold=0.5)
    for t in (0.0, 5.0, 10.0):
        off = est.predict_offset_nm(t)
        est.add_image(_subscan(spec, _true_drift(t), off, rng), time_s=t, pixel_size_nm=(PIXEL_NM,) * 2,
                      applied_offset_nm=off)
    before = est.predict_offset_nm(15.0)
    garbage = rng.poisson(np.full((N, N), 5.0)).astype(float)  # beam blanked / lost region: pure noise
    m = est.add_image(garbage, time_s=15.0, pixel_size_nm=(PIXEL_NM,) * 2, applied_offset_nm=before)
    assert not m.accepted and "quality" in m.reason and m.quality < 0.5
    assert est.rejected == (m,)
    assert est.predict_offset_nm(15.0) == before  # never applied
    assert len(est.accepted) == 3 and len(est.records) == 4


def test_updated_template_survives_contrast_loss_where_fixed_reference_fails() -> None:
    """Beam damage: the specimen contrast fades and a new pattern grows; the running template follows."""
    spec = _specimen(0)
    damage = _specimen(7)
    rng = np.random.default_rng(3)
    results = {}
    for weight in (0.0, 0.5):
        est = DriftEstimator(quality_threshold=0.45, template_weight=weight)
        errors = []
        for k, t in enumerate(np.arange(0.0, 100.0, 5.0)):
            f = k / 19.0
            drift = _true_drift(t)
            off = est.predict_offset_nm(t)
            img = (_subscan(spec, drift, off, None, contrast=1.0 - 0.9 * f)
                   + _subscan(damage, drift, off, None, contrast=1.2 * f))
            img = rng.poisson(img * 30.0) / 30.0
            m = est.add_image(img, time_s=t, pixel_size_nm=(PIXEL_NM,) * 2, applied_offset_nm=off)
            if m.accepted:
                errors.append(np.hypot(*(np.asarray(m.drift_nm) - drift)))
        final_error = float(np.hypot(*(np.asarray(est.predict_offset_nm(100.0)) - _true_drift(100.0))))
        results[weight] = (len(est.rejected), final_error, max(errors))
    # updated template: every measurement accepted, error stays below 0.7 px although the pattern was replaced
    assert results[0.5][0] == 0 and results[0.5][2] < 0.35 and results[0.5][1] < 0.35
    # fixed first image (Nion's DriftTracker behaviour): the late images no longer match: rejected, or matched to
    # the wrong content (the final position is then off by nanometres)
    assert results[0.0][0] >= 3 or results[0.0][1] > 1.0


def test_rate_is_robust_to_a_jump() -> None:
    t = np.arange(6.0)
    values = np.stack([0.1 * t, 0.2 * t], axis=1)
    values[4:, 0] += 5.0  # a jump between t=3 and t=4
    rate = robust_rate(t, values)
    assert rate == pytest.approx([0.1, 0.2], abs=1e-9)
    # a jump at the very last point of a 4-point window (the default rate_window) is ignored too
    last4 = values[:4].copy()
    last4[3, 1] -= 3.0
    assert robust_rate(t[:4], last4) == pytest.approx([0.1, 0.2], abs=1e-9)


def test_max_step_rejects_outlier() -> None:
    spec = _specimen()
    est = DriftEstimator(quality_threshold=0.3, max_step_nm=2.0)
    for t in (0.0, 5.0, 10.0):
        off = est.predict_offset_nm(t)
        est.add_image(_subscan(spec, _true_drift(t), off, None), time_s=t, pixel_size_nm=(PIXEL_NM,) * 2,
                      applied_offset_nm=off)
    off = est.predict_offset_nm(15.0)
    m = est.add_image(_subscan(spec, _true_drift(15.0) + np.array([4.0, 0.0]), off, None), time_s=15.0,
                      pixel_size_nm=(PIXEL_NM,) * 2, applied_offset_nm=off)
    assert not m.accepted and "jump" in m.reason


def test_records_are_json_round_trip_and_immutable() -> None:
    spec = _specimen()
    est = DriftEstimator()
    for t in (0.0, 4.0):
        off = est.predict_offset_nm(t)
        est.add_image(_subscan(spec, _true_drift(t), off, None), time_s=t, pixel_size_nm=(PIXEL_NM,) * 2,
                      applied_offset_nm=off)
    text = est.to_json()
    assert json.loads(text)["settings"]["quality_threshold"] == est.quality_threshold
    assert records_from_json(text) == est.records
    with pytest.raises(AttributeError):
        est.records[0].accepted = False  # type: ignore[misc]


def test_bad_input() -> None:
    est = DriftEstimator()
    est.add_image(np.ones((16, 16)) + np.eye(16), time_s=1.0, pixel_size_nm=(1.0, 1.0))
    with pytest.raises(InputError, match="shape"):
        est.add_image(np.ones((8, 8)), time_s=2.0, pixel_size_nm=(1.0, 1.0))
    with pytest.raises(InputError, match="earlier"):
        est.add_image(np.ones((16, 16)), time_s=0.5, pixel_size_nm=(1.0, 1.0))
    with pytest.raises(ParameterError, match="quality_threshold"):
        DriftEstimator(quality_threshold=1.5)


def test_drift_trajectory_interpolates_accepted_only() -> None:
    from processing.spectroscopy.drift import DriftMeasurement, drift_trajectory_nm
    recs = [DriftMeasurement(0, 0.0, (0, 0), (0, 0), (1, 1), (0.0, 0.0), 1.0, True),
            DriftMeasurement(1, 10.0, (0, 0), (0, 0), (1, 1), (1.0, -2.0), 0.9, True),
            DriftMeasurement(2, 15.0, (0, 0), (0, 0), (1, 1), (50.0, 50.0), 0.1, False, "quality"),
            DriftMeasurement(3, 20.0, (0, 0), (0, 0), (1, 1), (3.0, -4.0), 0.9, True)]
    traj = drift_trajectory_nm(recs, np.array([5.0, 15.0, 30.0]))
    assert np.allclose(traj, [[0.5, -1.0], [2.0, -3.0], [5.0, -6.0]])
