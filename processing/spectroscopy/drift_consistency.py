"""Retrospective consistency check of a whole drift-measurement chain: lattice aliases unwrapped jointly.

Live, each reference scan is decided when it is acquired (:class:`~processing.spectroscopy.drift.DriftEstimator`):
on a periodic specimen it keeps every translation the content cannot tell apart (``candidates_nm``, lattice
aliases) and takes the one nearest the prediction. A wrong live choice (a jump near half a period, a prediction
that missed) puts the chain one period off from there on. At the end of the run every measurement is known, so the
chain can be unwrapped **jointly**, like phase unwrapping: among all combinations of candidates, the path whose
drift is the most plausible under the drift model is chosen by dynamic programming, and each measurement's
choice is checked against its best alternative (min-marginals).

Model (all in sample axes, nm): between three consecutive used measurements ``a, b, c`` (times ``t_a < t_b <
t_c``) the change of mean velocity ``dv = (c - b)/dt2 - (b - a)/dt1`` is Gaussian with variance
``(accel_sigma * (dt1 + dt2)/2)^2 + measurement_sigma^2 * (2/dt1^2 + 2/dt2^2) + walk^2 * (1/dt1 + 1/dt2)``; its
cost is ``min(|dv|^2 / var, jump_cost)``: a jump (a step) costs a constant, never more, so a real jump is not
explained away by a chain of aliases. The first measurement (the reference) is fixed.

Outputs per measurement (:class:`ChainSolution`): the drift chosen, ``margin`` (cost of the best path through
another candidate minus the best path: the log-likelihood evidence for the choice), and a verdict:
``consistent`` (one candidate, or the choice is clear), ``resolved`` (ambiguous live, clear jointly), ``re-placed``
(jointly another alias than live, clear), ``ambiguous`` (margin below ``ambiguity_margin``: the register may be
off by an alias from here until a measurement whose content decides), ``outlier`` (removing it lowers the total
cost by more than ``outlier_gain`` jump costs: a spike that no jump explains; not used).
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import ParameterError

if typing.TYPE_CHECKING:
    from processing.spectroscopy.drift import DriftMeasurement
    from processing.spectroscopy.drift_model import DriftPredictor

__all__ = ["ChainSolution", "resolve_chain", "annotate", "rebuild_predictor"]

FloatArray = NDArray[np.float64]
Vec2 = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class ChainSolution:
    """Result of :func:`resolve_chain`, one entry per input measurement (in the input order)."""

    drift_nm: tuple[Vec2 | None, ...]
    verdict: tuple[str, ...]
    margin: tuple[float, ...]
    cost: float
    #: per measurement, the candidates (nm) whose best path costs less than ``ambiguity_margin`` more than the
    #: chosen one's (the hypotheses the path search cannot tell apart; the chosen one first); () when not computed
    tied_nm: tuple[tuple[Vec2, ...], ...] = ()

    def used(self) -> list[int]:
        return [i for i, v in enumerate(self.verdict) if v not in ("outlier", "rejected")]


def _lattice_basis(points: FloatArray) -> list[FloatArray]:
    """One or two shortest independent difference vectors of the candidate positions (the alias lattice)."""
    diffs = (points[:, None, :] - points[None, :, :]).reshape(-1, 2)
    lengths = np.hypot(diffs[:, 0], diffs[:, 1])
    keep = lengths > 0.05
    diffs, lengths = diffs[keep], lengths[keep]
    if diffs.size == 0:
        return []
    order = np.argsort(lengths)
    a1 = diffs[order[0]]
    for k in order[1:]:
        cross = abs(a1[0] * diffs[k][1] - a1[1] * diffs[k][0])
        if cross > 0.5 * lengths[order[0]] * lengths[k]:  # at least 30 degrees apart
            return [a1, diffs[k]]
    return [a1]


def _candidates(m: DriftMeasurement, lattice_extent: int) -> FloatArray:
    """The measurement's candidates; when several (a lattice), completed by the aliases up to ``lattice_extent``
    periods from the chosen one that the search range did not cover (a live chain that slipped has the truth
    outside it; a clean lattice matches them all equally)."""
    cands = list(m.candidates_nm) or [m.drift_nm]
    if not any(abs(c[0] - m.drift_nm[0]) < 1e-9 and abs(c[1] - m.drift_nm[1]) < 1e-9 for c in cands):
        cands.insert(0, m.drift_nm)
    points = np.asarray(cands, dtype=np.float64).reshape(-1, 2)
    if len(points) < 2 or lattice_extent <= 0:
        return points
    basis = _lattice_basis(points)
    if not basis:
        return points
    k = np.arange(-lattice_extent, lattice_extent + 1, dtype=np.float64)
    if len(basis) == 2:
        i, j = np.meshgrid(k, k, indexing="ij")
        virtual = (points[0][None, :] + i.reshape(-1, 1) * basis[0][None, :] + j.reshape(-1, 1) * basis[1][None, :])
    else:
        virtual = points[0][None, :] + k[:, None] * basis[0][None, :]
    tol = 0.3 * float(np.hypot(*basis[0]))
    dist = np.hypot(*(virtual[:, None, :] - points[None, :, :]).transpose(2, 0, 1)).min(axis=1)
    return np.concatenate([points, virtual[dist > tol]], axis=0)


class _Model(typing.NamedTuple):
    accel_sigma: float
    meas_sigma: float
    walk: float
    jump_cost: float
    jump_cost_per_nm: float
    max_rate: float = math.inf
    rate_sigma: float = 0.2
    scale2: float = 1.0  # variance scale found from the chain itself (<= 1)


def _rate_cost(a: FloatArray, b: FloatArray, ta: float, tb: float, model: _Model) -> FloatArray:
    """(len a, len b) soft bound on the mean speed between two measurements: 0 up to ``max_rate``, then
    ((speed - max_rate) / rate_sigma)^2 (a lattice alias every sampling interval is a fast, smooth 'rate alias')."""
    if not math.isfinite(model.max_rate):
        return np.zeros((len(a), len(b)))
    dt = max(tb - ta, 1e-6)
    speed = np.hypot(*((b[None, :, :] - a[:, None, :]) / dt).transpose(2, 0, 1))
    return np.asarray((np.maximum(speed - model.max_rate, 0.0) / model.rate_sigma) ** 2, dtype=np.float64)


def _triple_cost(a: FloatArray, b: FloatArray, c: FloatArray, ta: float, tb: float, tc: float,
                 model: _Model) -> FloatArray:
    """(len a, len b, len c) cost of every candidate triple."""
    dt1 = max(tb - ta, 1e-6)
    dt2 = max(tc - tb, 1e-6)
    chi2 = _chi2(a, b, c, ta, tb, tc, model)
    # a step costs a constant plus a little per nm of step (the smaller of a jump and its alias is more likely)
    size = np.sqrt(chi2 * _variance(dt1, dt2, model)) * 0.5 * (dt1 + dt2)
    return np.asarray(np.minimum(chi2, model.jump_cost + model.jump_cost_per_nm * size), dtype=np.float64)


def _variance(dt1: float, dt2: float, model: _Model) -> float:
    return model.scale2 * ((model.accel_sigma * 0.5 * (dt1 + dt2)) ** 2
                           + model.meas_sigma ** 2 * (2 / dt1 ** 2 + 2 / dt2 ** 2)
                           + model.walk ** 2 * (1 / dt1 + 1 / dt2))


def _chi2(a: FloatArray, b: FloatArray, c: FloatArray, ta: float, tb: float, tc: float, model: _Model
          ) -> FloatArray:
    dt1 = max(tb - ta, 1e-6)
    dt2 = max(tc - tb, 1e-6)
    v1 = (b[None, :, :] - a[:, None, :]) / dt1  # (A, B, 2)
    v2 = (c[None, :, :] - b[:, None, :]) / dt2  # (B, C, 2)
    dv = v2[None, :, :, :] - v1[:, :, None, :]  # (A, B, C, 2)
    return np.asarray(np.sum(dv ** 2, axis=-1) / _variance(dt1, dt2, model), dtype=np.float64)


def _path_cost(times: FloatArray, values: FloatArray, model: _Model) -> float:
    """Cost of one path (n, 2) at ``times`` (n,): the rate bounds and every second difference, as in the DP."""
    if len(times) < 2:
        return 0.0
    dt = np.maximum(np.diff(times), 1e-6)
    vel = np.diff(values, axis=0) / dt[:, None]
    cost = 0.0
    if math.isfinite(model.max_rate):
        cost += float(np.sum((np.maximum(np.hypot(vel[:, 0], vel[:, 1]) - model.max_rate, 0.0)
                              / model.rate_sigma) ** 2))
    if len(times) >= 3:
        dt1, dt2 = dt[:-1], dt[1:]
        var = model.scale2 * ((model.accel_sigma * 0.5 * (dt1 + dt2)) ** 2
                              + model.meas_sigma ** 2 * (2 / dt1 ** 2 + 2 / dt2 ** 2)
                              + model.walk ** 2 * (1 / dt1 + 1 / dt2))
        chi2 = np.sum((vel[1:] - vel[:-1]) ** 2, axis=1) / var
        size = np.sqrt(chi2 * var) * 0.5 * (dt1 + dt2)
        cost += float(np.sum(np.minimum(chi2, model.jump_cost + model.jump_cost_per_nm * size)))
    return cost


def _slip_ambiguous(times: FloatArray, values: FloatArray, bases: list[list[FloatArray]], model: _Model,
                    margin: float) -> NDArray[np.bool_]:
    """(n,) True where the register could have slipped by one lattice vector at or before the measurement, up to
    the next measurement whose content decides (a single candidate): the path shifted by an alias from there on
    costs less than ``margin`` more. Independent of the candidates found (a chain that ran away has the truth
    outside them): a slow sampling of a clean lattice cannot tell a drift rate from that rate plus one period per
    interval."""
    n = len(times)
    out = np.zeros(n, dtype=bool)
    base = _path_cost(times, values, model)
    for k in range(1, n):
        if not bases[k]:
            continue
        end = next((j for j in range(k + 1, n) if not bases[j]), n)
        vectors = list(bases[k])
        if len(vectors) == 2:
            vectors += [vectors[0] + vectors[1], vectors[0] - vectors[1]]
        best = math.inf
        for v in vectors:
            for sign in (1.0, -1.0):
                shifted = values.copy()
                shifted[k:end] += sign * v
                best = min(best, _path_cost(times, shifted, model) - base)
        if best < margin:
            out[k:end] = True
    return out


def _scale_from_path(times: list[float], cands: list[FloatArray], path: list[int], model: _Model) -> float:
    """Variance scale (<= 1) of the smooth model from the chain itself: twice the median chi^2 of the path's
    non-jump second differences over its expectation (1.386, chi^2 with 2 dof); 1 with fewer than 4 of them."""
    values = []
    for k in range(2, len(times)):
        pts = [cands[k - j][path[k - j]][None, :] for j in (2, 1, 0)]
        v = float(_chi2(pts[0], pts[1], pts[2], times[k - 2], times[k - 1], times[k], model)[0, 0, 0])
        if v < model.jump_cost:
            values.append(v)
    if len(values) < 4:
        return 1.0
    return float(np.clip(2.0 * np.median(values) / 1.386, 0.2, 1.0))


def _solve(times: list[float], cands: list[FloatArray], model: _Model
           ) -> tuple[float, list[int], list[FloatArray]]:
    """Minimum-cost path over the candidates (pair-state Viterbi) and the min-marginal cost of every candidate."""
    n = len(times)
    if n == 0:
        return 0.0, [], []
    if n == 1:
        return 0.0, [0], [np.where(np.arange(len(cands[0])) == 0, 0.0, math.inf)]
    # forward: F[k] (len k-1, len k): best cost of a path ending with the pair (k-1, k)
    forward: list[FloatArray] = [np.zeros((1, 1))]  # dummy for k = 0
    forward.append(_rate_cost(cands[0], cands[1], times[0], times[1], model))
    triples: list[FloatArray] = [np.zeros(0), np.zeros(0)]
    for k in range(2, n):
        t3 = _triple_cost(cands[k - 2], cands[k - 1], cands[k], times[k - 2], times[k - 1], times[k], model)
        t3 = t3 + _rate_cost(cands[k - 1], cands[k], times[k - 1], times[k], model)[None, :, :]
        triples.append(t3)
        forward.append(np.min(forward[k - 1][:, :, None] + t3, axis=0))
    # backward: B[k] (len k-1, len k): best cost of the rest given the pair (k-1, k)
    backward: list[FloatArray] = [np.zeros(0)] * n
    backward[n - 1] = np.zeros_like(forward[n - 1])
    for k in range(n - 1, 1, -1):
        backward[k - 1] = np.min(triples[k] + backward[k][None, :, :], axis=2)
    total = float(np.min(forward[n - 1]))
    # min-marginal of candidate j at k: min over pairs (k-1, k) with k = j (k >= 1), or (0, 1) with 0 = j
    marginals: list[FloatArray] = []
    for k in range(n):
        if k == 0:
            marginals.append(np.min(forward[1] + backward[1], axis=1))
        else:
            marginals.append(np.min(forward[k] + backward[k], axis=0))
    path = [int(np.argmin(mk)) for mk in marginals]
    return total, path, marginals


def resolve_chain(measurements: typing.Sequence[DriftMeasurement], *, accel_sigma_nm_per_s2: float = 0.25 / 3,
                  measurement_sigma_nm: float = 0.01, walk_nm_per_sqrt_s: float = 0.02, jump_cost: float = 25.0,
                  ambiguity_margin: float = 6.0, outlier_gain: float = 2.2, max_outliers: int | None = None,
                  jump_cost_per_nm: float = 40.0, adapt_scale: bool = True, lattice_extent: int = 3,
                  max_rate_nm_per_s: float = math.inf, rate_sigma_nm_per_s: float = 0.1, slip_test: bool = False
                  ) -> ChainSolution:
    """Unwrap the accepted measurements jointly (see the module docstring); rejected ones keep "rejected".

    Parameters (keyword-only): accel_sigma_nm_per_s2 (1 sigma of the smooth drift's acceleration),
    measurement_sigma_nm, walk_nm_per_sqrt_s (random walk), jump_cost (cost of a step, chi^2 units),
    ambiguity_margin (a choice is clear when every other candidate costs at least this much more),
    outlier_gain (a measurement is an outlier when removing it saves more than this many jump costs),
    max_outliers (default: a quarter of the measurements), jump_cost_per_nm (added cost per nm of a step: of a
    jump and its alias the smaller step is preferred), adapt_scale (shrink the smooth model's variance to what the
    chain's own second differences show, at most 1, at least 0.2, with a factor-2 margin), lattice_extent
    (aliases up to this many periods from the chosen one are candidates too, see :func:`_candidates`),
    max_rate_nm_per_s / rate_sigma_nm_per_s (soft bound on the speed between measurements, :func:`_rate_cost`),
    slip_test (also call ambiguous what a one-period slip of the chosen path explains nearly as well,
    :func:`_slip_ambiguous`; off by default: it flags well-sampled chains too).
    """
    if not (accel_sigma_nm_per_s2 > 0 and measurement_sigma_nm > 0 and walk_nm_per_sqrt_s >= 0
            and jump_cost > 0 and ambiguity_margin >= 0 and outlier_gain > 0):
        raise ParameterError(f"resolve_chain: sigmas and costs must be positive; got accel "
                             f"{accel_sigma_nm_per_s2}, measurement {measurement_sigma_nm}, walk "
                             f"{walk_nm_per_sqrt_s}, jump_cost {jump_cost}, margin {ambiguity_margin}, outlier_gain "
                             f"{outlier_gain}.")
    model = _Model(accel_sigma_nm_per_s2, measurement_sigma_nm, walk_nm_per_sqrt_s, jump_cost, jump_cost_per_nm,
                   max_rate_nm_per_s, rate_sigma_nm_per_s)
    n_all = len(measurements)
    verdict = ["rejected" if not m.accepted else "" for m in measurements]
    # measurements taken with the tracking lost are no evidence on the register (least-correction choices): they
    # keep their live value, ambiguous
    used = [i for i, m in enumerate(measurements) if m.accepted and not m.lost]
    for i, m in enumerate(measurements):
        if m.accepted and m.lost:
            verdict[i] = "ambiguous"
    all_cands = [_candidates(m, lattice_extent) for m in measurements]
    if used:  # the reference is fixed where it was
        all_cands[used[0]] = all_cands[used[0]][:1]

    def solve(idx: list[int]) -> tuple[float, list[int], list[FloatArray]]:
        return _solve([measurements[i].time_s for i in idx], [all_cands[i] for i in idx], model)

    total, path, marginals = solve(used)
    if adapt_scale:  # the drift's own smoothness (a slow drift tells aliases apart over longer gaps)
        scale2 = _scale_from_path([measurements[i].time_s for i in used], [all_cands[i] for i in used], path, model)
        if scale2 < 1.0:
            model = model._replace(scale2=scale2)
            total, path, marginals = solve(used)
    limit = max(1, len(used) // 4) if max_outliers is None else max(0, int(max_outliers))
    outliers: list[int] = []
    while len(outliers) < limit and len(used) >= 4:
        best_gain, best_k = 0.0, -1
        for k in range(1, len(used)):  # never the reference
            gain = total - solve(used[:k] + used[k + 1:])[0]
            if gain > best_gain:
                best_gain, best_k = gain, k
        if best_k < 0 or best_gain <= outlier_gain * jump_cost:
            break
        outliers.append(used.pop(best_k))
        total, path, marginals = solve(used)
    for i in outliers:
        verdict[i] = "outlier"
    chosen_values = np.array([all_cands[i][path[k]] for k, i in enumerate(used)]).reshape(-1, 2)
    bases = [_lattice_basis(_candidates(measurements[i], 0)) if k > 0 else [] for k, i in enumerate(used)]
    slipped = _slip_ambiguous(np.array([measurements[i].time_s for i in used]), chosen_values, bases, model,
                              ambiguity_margin)
    drift: list[Vec2 | None] = [None if not (m.accepted and m.lost) else m.drift_nm for m in measurements]
    margin = [math.inf if not (m.accepted and m.lost) else 0.0 for m in measurements]
    tied: list[tuple[Vec2, ...]] = [() for _ in measurements]
    for k, i in enumerate(used):
        cands = all_cands[i]
        chosen = cands[path[k]]
        drift[i] = (float(chosen[0]), float(chosen[1]))
        mk = marginals[k]
        others = np.delete(mk, path[k])
        margin[i] = float(np.min(others) - mk[path[k]]) if others.size else math.inf
        close = [j for j in np.argsort(mk) if j != path[k] and mk[j] - mk[path[k]] < ambiguity_margin]
        tied[i] = tuple((float(cands[j][0]), float(cands[j][1])) for j in [path[k]] + close)
        m = measurements[i]
        live = np.asarray(m.drift_nm)
        moved = float(np.hypot(*(chosen - live))) > 1e-6
        if margin[i] < ambiguity_margin or (slip_test and slipped[k]) or (m.ambiguous and len(m.candidates_nm) < 2):
            verdict[i] = "ambiguous"  # (an ambiguous record without its candidates cannot be re-checked)
        elif moved:
            verdict[i] = "re-placed"
        elif m.ambiguous:
            verdict[i] = "resolved"
        else:
            verdict[i] = "consistent"
    return ChainSolution(tuple(drift), tuple(verdict), tuple(margin), float(total), tuple(tied))


def annotate(measurements: typing.Sequence[DriftMeasurement], solution: ChainSolution
             ) -> tuple[DriftMeasurement, ...]:
    """The measurements with ``retro`` and ``final_drift_nm`` set from ``solution`` (rejected ones unchanged).

    A measurement the joint check leaves ambiguous keeps its live value: the joint path is then no better founded
    than the live decision (which followed the data as it came), and moving it could only add a period of error
    to a section that is flagged anyway (seen in the sweep: a re-placement along a rate alias ran away)."""
    out = []
    for m, verdict, d in zip(measurements, solution.verdict, solution.drift_nm):
        if verdict == "rejected":
            out.append(m)
        elif verdict == "ambiguous":
            out.append(dataclasses.replace(m, retro=verdict, final_drift_nm=m.drift_nm))
        else:
            out.append(dataclasses.replace(m, retro=verdict, final_drift_nm=d))
    return tuple(out)


def rebuild_predictor(measurements: typing.Sequence[DriftMeasurement], template: DriftPredictor | None = None, *,
                      jump_sigma: float = 4.5, jump_floor_nm: float = 0.02) -> DriftPredictor:
    """A drift model fed with the measurements' ``final_drift_nm`` (``drift_nm`` where the check did not run),
    outliers and rejected ones left out; a miss of its prediction larger than ``jump_sigma`` sigma and
    ``jump_floor_nm`` is a step, as live. ``template`` gives the model's parameters."""
    from processing.spectroscopy.drift_model import DriftPredictor as _Predictor
    p = template or _Predictor()
    out = _Predictor(window=p.window, measurement_sigma_nm=p.measurement_sigma_nm,
                     walk_nm_per_sqrt_s=p.walk_nm_per_sqrt_s, max_rate_nm_per_s=p.max_rate_nm_per_s,
                     max_accel_nm_per_s2=p.max_accel_nm_per_s2, max_jerk_nm_per_s3=p.max_jerk_nm_per_s3)
    for m in measurements:
        if not m.accepted or m.retro == "outlier":
            continue
        d = m.final_drift_nm if m.final_drift_nm is not None else m.drift_nm
        step: Vec2 | None = None
        if out.n_points:
            pred = out.predict(m.time_s)
            miss = (d[0] - pred.drift_nm[0], d[1] - pred.drift_nm[1])
            if math.isfinite(pred.sigma_nm) and math.hypot(*miss) > max(jump_sigma * pred.sigma_nm, jump_floor_nm):
                step = miss
        out.add(m.time_s, d, step_nm=step, extra=m.rate_check)
    return out
