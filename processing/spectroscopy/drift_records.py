"""Drift measurements (:class:`DriftMeasurement`, frozen, JSON-serialisable) and what is computed from a list of
them alone: the robust rate (:func:`robust_rate`) and the drift trajectory (:func:`drift_trajectory_nm`).

The estimator that makes them is :class:`processing.spectroscopy.drift.DriftEstimator` (which re-exports these
names); the sign convention is in :mod:`processing.spectroscopy.drift`.
"""
from __future__ import annotations

import dataclasses
import json
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError

__all__ = ["DriftMeasurement", "robust_rate", "records_from_json", "drift_trajectory_nm", "Vec2"]

Vec2 = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class DriftMeasurement:
    """One drift measurement (immutable).

    index: 0-based measurement number (the reference scan is 0). time_s: time of the reference sub-scan (s).
    applied_offset_nm: scan offset (dy, dx) in nm in force while the sub-scan was recorded.
    shift_px: residual content shift (dy, dx) measured on the sub-scan, pixels. pixel_size_nm: (y, x) of the sub-scan.
    drift_nm: total drift (dy, dx) in nm = applied + shift * pixel size. quality: peak NCC.
    accepted: used for the correction; reason: why it was rejected ("" when accepted).
    predicted_drift_nm: what the estimator predicted for this time before the measurement (None for the first).
    """

    index: int
    time_s: float
    applied_offset_nm: Vec2
    shift_px: Vec2
    pixel_size_nm: Vec2
    drift_nm: Vec2
    quality: float
    accepted: bool
    reason: str = ""
    predicted_drift_nm: Vec2 | None = None
    #: 1-sigma uncertainty (nm, per axis) of the prediction (None for the first)
    predicted_sigma_nm: float | None = None
    #: the step (nm) when the measurement lies outside the prediction's uncertainty (a jump), else None
    jump_nm: Vec2 | None = None
    #: several lattice aliases fit and the prediction cannot tell them apart: the value may be off by an alias
    ambiguous: bool = False
    #: number of well-matching translations (aliases) and the smallest distance between them (nm)
    n_candidates: int = 1
    alias_spacing_nm: float | None = None
    #: scan rotation (rad) of the reference scan: shift_px is in scan-image axes, drift_nm in sample axes
    rotation_rad: float = 0.0
    #: drift (sample axes, nm) of every candidate the content cannot tell apart (the chosen one included); the
    #: retrospective consistency check of the whole chain chooses among them
    candidates_nm: tuple[Vec2, ...] = ()
    #: verdict of the retrospective check of the whole chain (:mod:`processing.spectroscopy.drift_consistency`):
    #: "" (not run), "consistent", "resolved" (ambiguous live, unique in the joint fit), "re-placed" (the joint fit
    #: chose another alias than the live decision), "ambiguous" (still more than one alias fits), "outlier"
    #: (inconsistent with the rest of the chain: not used)
    retro: str = ""
    #: drift (nm) the retrospective check settled on (None when not run or an outlier)
    final_drift_nm: Vec2 | None = None
    #: measured with the tracking lost (:func:`~processing.spectroscopy.drift_guard.tracking_lost`): the register is
    #: unknown by whole lattice periods; the alias closest to no correction was used (flagged)
    lost: bool = False
    #: the references (comma-separated: "first", "previous") whose own registration disagrees with the drift chosen
    #: against the running template (:func:`~processing.spectroscopy.drift_guard.reference_consistency`; flagged)
    inconsistent: str = ""
    #: the content could not tell the aliases apart and the prediction could not either (no alias inside its
    #: window: a jump or an acceleration the model did not foresee; or several inside it: a window wider than the
    #: alias spacing): the choice rests on the drift model's smoothness prior alone, "alias not verified by content"
    #: (:func:`~processing.spectroscopy.si_result.assign_verdicts` flags every section whose register depends on it
    #: until a measurement the content decides)
    unverified: bool = False
    #: taken right after the previous measurement to measure the rate (:func:`~processing.spectroscopy.drift_guard.
    #: rate_check_wanted`): a short baseline, not a new sampling interval
    rate_check: bool = False
    #: (the reference scan only) translations beyond 1 px at which it matches itself with NCC >= 0.9: > 0 for a
    #: lattice, whose aliases its content cannot tell apart (:func:`~processing.spectroscopy.si_result.
    #: register_unverified_since`)
    self_aliases: int = 0

    @property
    def flagged(self) -> bool:
        """Not trustworthy: rejected, inconsistent with the chain, or ambiguous between lattice aliases (after the
        retrospective check when it ran: a live ambiguity it resolved is no longer flagged)."""
        if not self.accepted or self.retro in ("ambiguous", "outlier") or self.lost or self.inconsistent:
            return True
        if self.retro in ("consistent", "resolved", "re-placed"):
            return False
        return self.ambiguous

    def to_dict(self) -> dict[str, typing.Any]:
        d = dataclasses.asdict(self)
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = [[float(x) for x in v] if isinstance(v, (tuple, list)) else float(v) for v in value]
        d["flagged"] = self.flagged
        return d

    @classmethod
    def from_dict(cls, d: typing.Mapping[str, typing.Any]) -> DriftMeasurement:
        pred = d.get("predicted_drift_nm")
        jump = d.get("jump_nm")
        sigma = d.get("predicted_sigma_nm")
        spacing = d.get("alias_spacing_nm")
        return cls(index=int(d["index"]), time_s=float(d["time_s"]),
                   applied_offset_nm=_vec(d["applied_offset_nm"]), shift_px=_vec(d["shift_px"]),
                   pixel_size_nm=_vec(d["pixel_size_nm"]), drift_nm=_vec(d["drift_nm"]),
                   quality=float(d["quality"]), accepted=bool(d["accepted"]), reason=str(d.get("reason", "")),
                   predicted_drift_nm=None if pred is None else _vec(pred),
                   predicted_sigma_nm=None if sigma is None else float(sigma),
                   jump_nm=None if jump is None else _vec(jump), ambiguous=bool(d.get("ambiguous", False)),
                   n_candidates=int(d.get("n_candidates", 1)),
                   alias_spacing_nm=None if spacing is None else float(spacing),
                   rotation_rad=float(d.get("rotation_rad", 0.0)),
                   candidates_nm=tuple(_vec(c) for c in d.get("candidates_nm", ()) or ()),
                   retro=str(d.get("retro", "")),
                   final_drift_nm=None if d.get("final_drift_nm") is None else _vec(d["final_drift_nm"]),
                   lost=bool(d.get("lost", False)), inconsistent=str(d.get("inconsistent", "")),
                   unverified=bool(d.get("unverified", False)), rate_check=bool(d.get("rate_check", False)),
                   self_aliases=int(d.get("self_aliases", 0)))


def _vec(v: typing.Any) -> Vec2:
    seq = list(v)
    if len(seq) != 2:
        raise InputError(f"expected a (y, x) pair; got {v!r}.")
    return float(seq[0]), float(seq[1])


def records_from_json(text: str) -> tuple[DriftMeasurement, ...]:
    """Rebuild the measurement records written by :meth:`DriftEstimator.to_json`."""
    payload = json.loads(text)
    items = payload["measurements"] if isinstance(payload, dict) else payload
    return tuple(DriftMeasurement.from_dict(d) for d in items)


def robust_rate(times_s: typing.Sequence[float], values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Robust slope of ``values`` (n, k) versus ``times_s`` (n,): Siegel's repeated median, per column.

    For each point the median of its slopes to all other points, then the median of those: a single jump (even at
    the end of the window) or a single bad point does not bias the rate (50 % breakdown point, unlike least squares
    or Theil-Sen, whose pairs straddling a late jump can be the majority). Returns a (k,) array (value units per
    second); zeros when fewer than two distinct times.
    """
    t = np.asarray(times_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64).reshape(len(t), -1)
    if len(t) < 2:
        return np.zeros(v.shape[1])
    dt = t[None, :] - t[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = (v[None, :, :] - v[:, None, :]) / dt[:, :, None]
    slopes[np.broadcast_to((dt == 0)[:, :, None], slopes.shape)] = np.nan
    per_point = np.nanmedian(slopes, axis=1) if np.isfinite(slopes).any() else np.zeros((len(t), v.shape[1]))
    if not np.isfinite(per_point).any():
        return np.zeros(v.shape[1])
    return np.asarray(np.nanmedian(per_point, axis=0), dtype=np.float64)


def drift_trajectory_nm(records: typing.Sequence[DriftMeasurement], times_s: typing.Any, *,
                        extrapolation_rate_nm_per_s: Vec2 | None = None) -> NDArray[np.float64]:
    """A-posteriori drift (…, 2) in nm at ``times_s`` from the accepted measurements: piecewise linear between them
    (the constant rate between two reference scans), extrapolated with ``extrapolation_rate_nm_per_s`` (default:
    the rate of the last two accepted measurements) after the last and held before the first.
    """
    acc = [m for m in records if m.accepted]
    t = np.asarray(times_s, dtype=np.float64)
    if not acc:
        return np.zeros(t.shape + (2,))
    tm = np.array([m.time_s for m in acc])
    dm = np.array([m.drift_nm for m in acc])
    out = np.stack([np.interp(t, tm, dm[:, 0]), np.interp(t, tm, dm[:, 1])], axis=-1)
    if extrapolation_rate_nm_per_s is None:
        rate = (dm[-1] - dm[-2]) / (tm[-1] - tm[-2]) if len(acc) >= 2 and tm[-1] > tm[-2] else np.zeros(2)
    else:
        rate = np.asarray(extrapolation_rate_nm_per_s, dtype=np.float64)
    after = t > tm[-1]
    out[after] = dm[-1] + (t[after] - tm[-1])[:, None] * rate[None, :]
    return np.asarray(out, dtype=np.float64)
