"""Drift model of a drift-corrected acquisition: prediction with an uncertainty, jumps as steps, a-posteriori path.

:class:`DriftPredictor` keeps the accepted drift measurements ``(t_i, d_i)`` (nm, in the frame of the scan offset:
sample coordinates). A *jump* (a measurement outside the prediction's uncertainty) is recorded as a **step**: the
smooth part of the drift is ``d_i - steps(t_i)``, and that part is what is fitted, so a jump never biases the rate.

* **prediction** at ``t``: weighted least-squares polynomial over the last ``window`` measurements of the smooth
  part (degree 0 with one point, 1 with two or three, 2 from four on: a quadratic follows acceleration and the
  curvature of a slow sinusoid), plus the steps. Its uncertainty (1 sigma, nm, per axis) combines the fit's
  extrapolation variance (residual scatter, at least ``measurement_sigma_nm``), the random walk
  ``walk_nm_per_sqrt_s * sqrt(dt)`` and the unmodelled next order (``max_rate`` with one point, ``max_accel`` with a
  linear fit, ``max_jerk`` with a quadratic), each bound taken as 3 sigma.
* **a-posteriori trajectory** (:meth:`DriftPredictor.trajectory_nm`): between measurements of one step segment a
  cubic Hermite interpolation whose slope at each measurement is the inverse-variance weighted mean of the two
  neighbouring secants (:func:`_weighted_hermite`; linear with two points), the prediction after the last
  measurement, held before the first. Times between the last measurement before a step and the step's measurement
  belong to no trustworthy segment (they are given the earlier segment's extrapolation; sections there are
  re-acquired or flagged).

Rotation helpers: a shift measured in scan-image pixels (rows, columns) of a scan rotated by ``rotation_rad`` is a
displacement ``R(rotation) @ (dy, dx)`` in sample coordinates (nion Geometry convention, as
``instrument_sim.samples.scan_positions_nm``: x' = cos x - sin y, y' = sin x + cos y); :func:`scan_to_sample` and
:func:`sample_to_scan` convert (..., 2) arrays of (y, x).
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import scipy.interpolate
from numpy.typing import NDArray

from processing.base import InputError, ParameterError

__all__ = ["Prediction", "DriftPredictor", "scan_to_sample", "sample_to_scan"]

FloatArray = NDArray[np.float64]
Vec2 = tuple[float, float]


def scan_to_sample(vectors: typing.Any, rotation_rad: float) -> FloatArray:
    """(..., 2) (y, x) vectors in scan-image axes -> sample axes, for a scan rotated by ``rotation_rad``."""
    v = np.asarray(vectors, dtype=np.float64)
    c, s = math.cos(rotation_rad), math.sin(rotation_rad)
    y, x = v[..., 0], v[..., 1]
    return np.stack([s * x + c * y, c * x - s * y], axis=-1)


def sample_to_scan(vectors: typing.Any, rotation_rad: float) -> FloatArray:
    """Inverse of :func:`scan_to_sample`."""
    return scan_to_sample(vectors, -rotation_rad)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Predicted drift (dy, dx) nm at ``time_s`` and its 1-sigma uncertainty per axis (nm)."""

    time_s: float
    drift_nm: Vec2
    sigma_nm: float
    n_points: int


def _weighted_hermite(t: FloatArray, d: FloatArray) -> scipy.interpolate.CubicHermiteSpline:
    """Cubic Hermite through the points ``(t (n,), d (n, 2))``, n >= 2, whose slope at each interior point is the mean
    of the two neighbouring secants weighted by their inverse variance (a secant over an interval h carries the
    points' noise as sigma / h: weight h**2); the end slopes are the end secants.

    Why not an interpolating cubic spline (used until session 9): the bootstrap's measurements lie 0.05-0.2 s apart
    before a gap of a whole section, and a spline through their noise bowed across the gap (one 24-line section:
    0.2-0.8 px added to a 0.1 px drift, unflagged; sweep seeds 9208, 9221). With even spacing the slopes are central
    differences and the path follows a sinusoid as the spline did (synthetic comparison over the issue's drift
    range with 0.001-0.01 nm noise: worst 0.013 nm for both; after a bootstrap: 0.016 nm, the spline 0.099 nm,
    PCHIP 0.024 nm, linear 0.031 nm; `tests/processing/test_drift_trajectory.py`)."""
    h = np.diff(t)
    secant = np.diff(d, axis=0) / h[:, None]
    slope = np.empty_like(d)
    slope[0], slope[-1] = secant[0], secant[-1]
    w_before, w_after = h[:-1, None] ** 2, h[1:, None] ** 2
    slope[1:-1] = (w_before * secant[:-1] + w_after * secant[1:]) / (w_before + w_after)
    return scipy.interpolate.CubicHermiteSpline(t, d, slope, axis=0)


class DriftPredictor:
    """Smooth drift + steps, from accepted measurements (see the module docstring).

    Parameters (keyword-only; rates in nm/s, nm/s^2, nm/s^3)
    ---------------------------------------------------------
    window : measurements of the current fit (>= 2). measurement_sigma_nm : 1-sigma precision of one measurement.
    walk_nm_per_sqrt_s : random-walk amplitude expected. max_rate_nm_per_s, max_accel_nm_per_s2, max_jerk_nm_per_s3 :
        bounds (3 sigma) of what the fit of each order cannot know.
    """

    def __init__(self, *, window: int = 5, measurement_sigma_nm: float = 0.002, walk_nm_per_sqrt_s: float = 0.01,
                 max_rate_nm_per_s: float = 0.6, max_accel_nm_per_s2: float = 0.25,
                 max_jerk_nm_per_s3: float = 0.15) -> None:
        if window < 2:
            raise ParameterError(f"window must be >= 2 measurements; got {window}.")
        for name, value in (("measurement_sigma_nm", measurement_sigma_nm), ("walk_nm_per_sqrt_s", walk_nm_per_sqrt_s),
                            ("max_rate_nm_per_s", max_rate_nm_per_s), ("max_accel_nm_per_s2", max_accel_nm_per_s2),
                            ("max_jerk_nm_per_s3", max_jerk_nm_per_s3)):
            if not (value >= 0 and math.isfinite(value)):
                raise ParameterError(f"{name} must be finite and >= 0; got {value!r}.")
        self.window = int(window)
        self.measurement_sigma_nm = float(measurement_sigma_nm)
        self.walk_nm_per_sqrt_s = float(walk_nm_per_sqrt_s)
        self.max_rate_nm_per_s = float(max_rate_nm_per_s)
        self.max_accel_nm_per_s2 = float(max_accel_nm_per_s2)
        self.max_jerk_nm_per_s3 = float(max_jerk_nm_per_s3)
        self._t: list[float] = []
        self._d: list[Vec2] = []
        self._extra: list[bool] = []  # rate-check points: in the fit, but not counted in ``window``
        self._steps: list[tuple[float, Vec2]] = []  # (time of the measurement that saw it, step nm)
        self._z: list[float] = []  # normalised misses of the recent predictions (per axis), for the inflation
        self._step_sigma = 0.0  # uncertainty of the last step's size while few points follow it

    # -- input ------------------------------------------------------------------------------------------------
    def add(self, time_s: float, drift_nm: Vec2, *, step_nm: Vec2 | None = None, extra: bool = False) -> None:
        """An accepted measurement; ``step_nm``: the jump it revealed (then it starts a new step segment);
        ``extra``: a rate check taken right after the previous point (it joins the fit without pushing an older
        point out of ``window``: a short baseline must not shorten the span the rate is fitted over)."""
        if self._t and time_s < self._t[-1]:
            raise InputError(f"time_s={time_s} is earlier than the previous measurement ({self._t[-1]}); "
                             f"pass measurements in time order.")
        if len(self._t) >= 2 and step_nm is None:  # how well did the model predict this point? (adaptive sigma)
            value, sigma, _rate = self._fit(float(time_s))
            total = value + self._step_total(np.asarray([float(time_s)]))[0]
            miss = float(np.hypot(*(np.asarray(drift_nm, dtype=np.float64) - total)))
            self._z.append(min(miss / max(sigma, 1e-12) / math.sqrt(2.0), 6.0))
        if step_nm is not None:
            sigma_at_step = self._fit(float(time_s))[1] * self.inflation if len(self._t) >= 1 else 0.0
            self._steps.append((float(time_s), (float(step_nm[0]), float(step_nm[1]))))
            self._step_sigma = sigma_at_step
        self._t.append(float(time_s))
        self._d.append((float(drift_nm[0]), float(drift_nm[1])))
        self._extra.append(bool(extra))
        self._refine_last_step()

    def _refine_last_step(self) -> None:
        """Re-estimate the last step from both sides once points follow it: the step is the difference at its time
        between a fit of the points after it and a fit of the points before it (the first estimate, the miss of
        the prediction, also holds the prediction's own error)."""
        if not self._steps:
            return
        ts, _old = self._steps[-1]
        t = np.asarray(self._t, dtype=np.float64)
        post = t >= ts
        if np.count_nonzero(post) < 2 or np.count_nonzero(~post) < 2:
            return
        others = self._steps[:-1]
        d = np.asarray(self._d, dtype=np.float64).reshape(-1, 2).copy()
        for tsi, step in others:
            d[t >= tsi] -= np.asarray(step)
        tb, db = t[~post][-self.window:], d[~post][-self.window:]
        ta, da = t[post][:4], d[post][:4]

        def at(tt: FloatArray, dd: FloatArray, when: float, degree: int) -> FloatArray:
            deg = min(degree, tt.size - 1)
            return np.array([np.polyval(np.polyfit(tt - when, dd[:, k], deg), 0.0) for k in (0, 1)])

        before = at(tb, db, ts, 2 if tb.size >= 5 else 1)
        after = at(ta, da, ts, 1)
        refined = after - before
        self._steps[-1] = (ts, (float(refined[0]), float(refined[1])))

    @property
    def n_points(self) -> int:
        return len(self._t)

    @property
    def steps(self) -> tuple[tuple[float, Vec2], ...]:
        return tuple(self._steps)

    def _step_total(self, t: FloatArray) -> FloatArray:
        out = np.zeros(t.shape + (2,))
        for ts, step in self._steps:
            out[t >= ts] += np.asarray(step)
        return out

    def _smooth(self) -> tuple[FloatArray, FloatArray]:
        t = np.asarray(self._t, dtype=np.float64)
        d = np.asarray(self._d, dtype=np.float64).reshape(-1, 2)
        return t, d - self._step_total(t)

    # -- prediction -------------------------------------------------------------------------------------------
    def _fit(self, t_eval: float) -> tuple[FloatArray, float, FloatArray]:
        """(value (2,), 1-sigma nm, rate (2,)) of the smooth part at ``t_eval`` from the last ``window`` points."""
        t_all, d_all = self._smooth()
        counted = np.flatnonzero(~np.asarray(self._extra, dtype=bool))
        start = int(counted[-self.window]) if counted.size >= self.window else 0
        t, d = t_all[start:], d_all[start:]
        n = t.size
        dt = max(t_eval - t[-1], 0.0)
        walk_var = self.walk_nm_per_sqrt_s ** 2 * dt
        m2 = self.measurement_sigma_nm ** 2
        if n == 1:
            bound = self.max_rate_nm_per_s * dt
            return d[-1], math.sqrt(m2 + walk_var + (bound / 3.0) ** 2), np.zeros(2)
        tc = t - t[-1]
        scale = max(float(np.ptp(tc)), 1e-6)
        x = tc / scale
        xe = dt / scale

        def fit(degree: int) -> tuple[FloatArray, FloatArray, float, float, float]:
            """(value at t_eval, rate at t_eval, sse, extrapolation variance factor, dof) of a polynomial fit."""
            X = np.vander(x, degree + 1, increasing=True)  # 1, x, x^2
            coef, *_ = np.linalg.lstsq(X, d, rcond=None)
            sse = float(np.sum((d - X @ coef) ** 2))
            xv = np.array([xe ** k for k in range(degree + 1)])
            dxv = np.array([k * xe ** (k - 1) if k else 0.0 for k in range(degree + 1)]) / scale
            factor = float(xv @ np.linalg.pinv(X.T @ X) @ xv)
            return (np.asarray(xv @ coef, dtype=np.float64), np.asarray(dxv @ coef, dtype=np.float64), sse, factor,
                    float(n - (degree + 1)))

        value, rate, sse, factor, dof = fit(1)
        noise = max(sse / (2 * dof) if dof > 0 else 0.0, m2)
        if n < 4:  # a line through 2-3 points: the curvature is unknown, bounded by max_accel (3 sigma)
            span = float(np.ptp(tc))
            unmodelled = self.max_accel_nm_per_s2 * dt * (dt + span) / 2.0
            var = noise * (1.0 + factor) + (unmodelled / 3.0) ** 2
        else:
            span_all = float(np.ptp(tc))
            value_q, rate_q, sse_q, factor_q, dof_q = fit(2)
            noise_q = max(sse_q / (2 * dof_q) if dof_q > 0 else 0.0, m2)
            if (sse - sse_q) / 2.0 > 4.0 * noise_q and dt > 0.5 * span_all:
                # curvature, but far beyond the fitted points: a quadratic extrapolated that far runs away (a
                # long section, a slow camera); the line, uncertain by as much as the quadratic would differ
                var = noise * (1.0 + factor) + max(noise_q * factor_q, float(np.sum((value - value_q) ** 2)) / 2)
            elif (sse - sse_q) / 2.0 > 4.0 * noise_q:  # significant curvature (F test): follow it
                value, rate, noise = value_q, rate_q, noise_q
                unmodelled = self.max_jerk_nm_per_s3 * dt ** 3 / 6.0
                var = noise_q * (1.0 + factor_q) + (unmodelled / 3.0) ** 2
            else:  # straight within the noise: the line, uncertain by as much as a quadratic would differ
                var = noise * (1.0 + factor) + max(noise_q * factor_q, float(np.sum((value - value_q) ** 2)) / 2)
        return value, math.sqrt(var + walk_var), rate

    def predict(self, time_s: float) -> Prediction:
        """Drift and 1-sigma uncertainty at ``time_s`` ((0, 0) and an infinite sigma before any measurement)."""
        if not self._t:
            return Prediction(float(time_s), (0.0, 0.0), math.inf, 0)
        value, sigma, _rate = self._fit(float(time_s))
        total = value + self._step_total(np.asarray([float(time_s)]))[0]
        sigma *= self.inflation
        if self._steps and sum(1 for t in self._t if t >= self._steps[-1][0]) < 3:
            sigma = math.sqrt(sigma ** 2 + self._step_sigma ** 2)  # the step's size is not known well yet
        # physical bound: from the last measurement the drift cannot have moved faster than max_rate (an
        # extrapolated polynomial on badly spaced points can; then the bound holds and the sigma says so)
        last = np.asarray(self._d[-1], dtype=np.float64)
        dt = abs(float(time_s) - self._t[-1])
        limit = 1.5 * self.max_rate_nm_per_s * dt + 3.0 * self.measurement_sigma_nm
        delta = total - last
        size = float(np.hypot(*delta))
        if size > limit:
            total = last + delta * (limit / size)
            sigma = max(sigma, limit / 3.0)
        return Prediction(float(time_s), (float(total[0]), float(total[1])), sigma, len(self._t))

    @property
    def inflation(self) -> float:
        """Factor (>= 1) on the model's sigma: the RMS normalised miss of the last predictions (a model that
        misses more than it claims, e.g. a quadratic on a fast sinusoid, widens its own uncertainty)."""
        recent = self._z[-6:]
        if len(recent) < 2:
            return 1.0
        return max(1.0, float(np.sqrt(np.mean(np.square(recent)))) * 1.2)

    def rate_nm_per_s(self, time_s: float | None = None) -> Vec2:
        """Drift rate (dy, dx) nm/s of the smooth part at ``time_s`` (default: the last measurement)."""
        if len(self._t) < 2:
            return 0.0, 0.0
        _v, _s, rate = self._fit(self._t[-1] if time_s is None else float(time_s))
        return float(rate[0]), float(rate[1])

    # -- a posteriori -----------------------------------------------------------------------------------------
    def trajectory_nm(self, times_s: typing.Any) -> FloatArray:
        """Drift (..., 2) nm at ``times_s``: weighted Hermite through each step segment, prediction after the last
        point."""
        t_eval = np.asarray(times_s, dtype=np.float64)
        out = np.zeros(t_eval.shape + (2,))
        if not self._t:
            return out
        t_all = np.asarray(self._t, dtype=np.float64)
        d_all = np.asarray(self._d, dtype=np.float64).reshape(-1, 2)
        bounds = [ts for ts, _s in self._steps]
        seg_id = np.searchsorted(np.asarray(bounds), t_all, side="right") if bounds else np.zeros(t_all.size, int)
        flat_t = t_eval.reshape(-1)
        flat_out = out.reshape(-1, 2)
        last_t = t_all[-1]
        # segment of each evaluation time: the last segment starting at or before it
        starts = [float(t_all[seg_id == k][0]) for k in np.unique(seg_id)]
        ids = np.unique(seg_id)
        eval_seg = ids[np.clip(np.searchsorted(np.asarray(starts), flat_t, side="right") - 1, 0, len(ids) - 1)]
        for k in ids:
            sel_pts = seg_id == k
            ts, ds = t_all[sel_pts], d_all[sel_pts]
            if np.any(np.diff(ts) <= 0):  # measurements at the same time (times are non-decreasing): their mean
                ts, group = np.unique(ts, return_inverse=True)
                ds = np.stack([np.bincount(group, ds[:, a]) / np.bincount(group) for a in (0, 1)], axis=-1)
            sel = (eval_seg == k) & (flat_t <= last_t)
            if not sel.any():
                continue
            te = np.clip(flat_t[sel], ts[0], None)
            inside = te <= ts[-1]
            vals = np.empty((te.size, 2))
            if ts.size >= 2:  # (with two points the weighted Hermite is the straight line)
                vals[inside] = _weighted_hermite(ts, ds)(te[inside])
            else:
                vals[inside] = ds[0]
            if (~inside).any():  # after this segment's last point, before the next segment: extrapolate linearly
                rate = (ds[-1] - ds[-2]) / (ts[-1] - ts[-2]) if ts.size >= 2 and ts[-1] > ts[-2] else np.zeros(2)
                vals[~inside] = ds[-1] + (te[~inside] - ts[-1])[:, None] * rate[None, :]
            flat_out[sel] = vals
        after = flat_t > last_t
        if after.any():
            flat_out[after] = np.array([self.predict(float(v)).drift_nm for v in flat_t[after]])
        return out
