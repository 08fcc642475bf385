"""Safety rules of the live drift chain (issue 13): lost tracking, least correction, several references.

A drift chain measured on a periodic specimen knows the drift only modulo the lattice; between reference scans
the drift model decides which alias is meant. When the model is wrong (a jump near half a period, a rate alias of
one period per reference interval on a slowly sampled clean lattice) every later measurement misses the prediction,
each one looks like a jump, and the chain can run away by a period per measurement: worse than no correction, at
quality ~0.98. These rules keep such a chain from being worse than uncorrected and from being silent:

* :func:`tracking_lost`: ``after`` consecutive accepted measurements the drift model did not follow
  (:func:`untracked`: jumps; a real jump is rare and the re-acquired section's measurement follows the step;
  optionally also ambiguities under a prediction window as wide as half the alias spacing), or a lost measurement
  just before, mean the model no longer tracks the register.
* :func:`least_correction`: while lost, among the aliases the content cannot tell apart the one **closest to the
  last trusted drift** (neither ambiguous nor a jump; the first reference scan at worst, i.e. no correction) is
  used: the least correction since the register was last known (hysteresis: the previous lost choice's alias
  while it stays within ``hold_fraction`` of a period of the anchor, so the choice does not flip between two aliases
  at the cell boundary). The scan then corrects only the drift modulo the lattice since that measurement: within
  a fraction of a period of "uncorrected from there on", never a run-away. The
  measurement is flagged ("tracking lost"), never a jump (re-acquiring cannot help), and the sections it brackets
  are flagged. On a periodic reference the tracking stays lost to the end of the run: a single candidate there
  is no content decision (the other aliases fell outside the search range or below the overlap).
* :func:`reference_consistency`: the reference scan is also registered against the **first** raw reference scan
  and the **previous** one; the drift chosen against the running template must agree with one candidate of each
  (modulo the lattice aliases those registrations find), else the measurement is inconsistent and flagged. On a
  clean lattice all three see the same aliases (this cannot resolve a whole-period error there: only the drift
  model or non-periodic content can); it catches a template corrupted by a bad update, a wrong match on
  non-periodic content, and contrast changes that move the best peak.
"""
from __future__ import annotations

import math
import typing

import numpy as np
from numpy.typing import NDArray

from processing.alignment.registration import translation_candidates
from processing.spectroscopy.drift_model import scan_to_sample

if typing.TYPE_CHECKING:
    from processing.spectroscopy.drift import DriftMeasurement

__all__ = ["untracked", "tracking_lost", "untrusted_run", "last_trusted_drift", "periodic_reference",
           "least_correction", "reference_consistency", "rate_check_wanted"]

Vec2 = tuple[float, float]


def untracked(m: DriftMeasurement, window_sigma: float | None = None) -> bool:
    """A measurement the drift model did not follow: a jump (outside the prediction's uncertainty); with
    ``window_sigma`` also one ambiguous between aliases while the prediction window (``window_sigma`` sigma) reaches
    half the alias spacing. (The engine uses jumps only: on a slowly drifting lattice under load the window is wide
    and the aliases compete at most measurements, yet the joint check follows the slow drift right; treating those
    as lost made the issue-5 lattice scenario 0.38 -> 24 px.)"""
    if m.jump_nm is not None:
        return True
    if window_sigma is None or not m.ambiguous or m.predicted_sigma_nm is None or m.alias_spacing_nm is None:
        return False
    return window_sigma * m.predicted_sigma_nm >= 0.5 * m.alias_spacing_nm


def tracking_lost(records: typing.Sequence[DriftMeasurement], after: int, window_sigma: float | None = None
                  ) -> bool:
    """True when the last accepted measurement was taken with tracking lost, or, on a periodic reference (at least
    half the accepted measurements saw several aliases), each of the last ``after`` (>= 1) accepted measurements
    (the reference scan excluded) is :func:`untracked`, or on any reference the last ``after`` measurements are an
    :func:`untrusted_run`; False with ``after`` <= 0 (off)."""
    if after <= 0:
        return False
    acc = [m for m in records if m.accepted and m.index > 0]
    if not acc:
        return False
    if acc[-1].lost or untrusted_run(records, after):
        return True
    # only on a periodic reference: most measurements see several aliases (a non-periodic one, e.g. particles,
    # shows a second match now and then; there the content decides and lost tracking would throw it away)
    if not periodic_reference(records):
        return False
    last = acc[-after:]
    return len(last) == after and all(untracked(m, window_sigma) for m in last)


def rate_check_wanted(records: typing.Sequence[DriftMeasurement]) -> bool:
    """True when the last measurement's lattice alias rests on the drift model's prior alone: accepted, on a
    periodic reference (several aliases match), not lost, not itself a rate check, and a jump, ambiguous or not
    verified by content.

    Then one more reference scan right away (a baseline of one scan's duration, ~0.05-0.15 s) measures the drift
    *rate* unambiguously (0.5 nm/s moves 0.05-0.08 nm there, far below half a lattice period). Without it a clean
    lattice sampled every ~0.9 s (Swift's synchronized acquisition start-up per section) cannot tell "the jump went
    back" from "the rate rose by one period per interval" (sweep seed 9207: two cancelling jumps of 0.4 period; the
    joint check took the rate alias and the register ran away by a period per measurement); with the short
    baseline the rate alias costs a velocity change the drift model does not allow at each such pair."""
    if not records:
        return False
    m = records[-1]
    return bool(m.accepted and m.index > 0 and not m.lost and not m.rate_check and m.n_candidates > 1
                and (m.ambiguous or m.unverified or m.jump_nm is not None))


def periodic_reference(records: typing.Sequence[DriftMeasurement]) -> bool:
    """At least half the accepted measurements (the reference scan excluded) saw several aliases: a lattice."""
    acc = [m for m in records if m.accepted and m.index > 0]
    return bool(acc) and sum(1 for m in acc if m.n_candidates > 1) >= 0.5 * len(acc)


def untrusted_run(records: typing.Sequence[DriftMeasurement], after: int) -> bool:
    """True when each of the last ``after`` (>= 1) measurements (the reference scan excluded) was rejected or not
    confirmed by the previous reference scan (the first one alone may be stale: beam damage changes the content,
    test_drift.test_updated_template_survives_contrast_loss_where_fixed_reference_fails): on any reference (a poor
    match, e.g. a particle's edge sheared by fast drift under load) the chain then follows nothing it can trust and
    its prediction, extrapolated from
    wrong matches, runs away (sweep seed 8001, particles: 47 px vs 6 px uncorrected). False with ``after`` <= 0."""
    if after <= 0:
        return False
    last = [m for m in records if m.index > 0][-after:]
    return len(last) == after and all((not m.accepted) or "previous" in m.inconsistent for m in last)


def last_trusted_drift(records: typing.Sequence[DriftMeasurement], *, skip_inconsistent: bool = True) -> Vec2:
    """Drift (nm) of the last accepted measurement that is neither lost, ambiguous, a jump nor (with
    ``skip_inconsistent``) inconsistent; (0, 0) (no correction) when there is none."""
    return next((r.drift_nm for r in reversed(records) if r.accepted and not (
        r.lost or r.ambiguous or r.jump_nm is not None or (skip_inconsistent and r.inconsistent))), (0.0, 0.0))


def least_correction(drifts: typing.Sequence[NDArray[np.float64]], choices: typing.Sequence[int],
                     previous: Vec2 | None, spacing_nm: float | None, *, anchor: Vec2 = (0.0, 0.0),
                     hold_fraction: float = 0.75) -> int:
    """Index (into ``drifts``, among ``choices``) of the alias closest to ``anchor`` (the last trusted drift; (0, 0)
    = no correction at all): the least correction since then.

    previous: the drift chosen at the previous lost measurement (None at the first): its nearest alias is kept
    while it stays within ``hold_fraction`` x ``spacing_nm`` of the anchor (hysteresis against flipping at the cell
    boundary)."""
    a = np.asarray(anchor, dtype=np.float64)
    smallest = min(choices, key=lambda i: float(np.hypot(*(drifts[i] - a))))
    if previous is None or spacing_nm is None:
        return smallest
    held = min(choices, key=lambda i: float(np.hypot(drifts[i][0] - previous[0], drifts[i][1] - previous[1])))
    return held if float(np.hypot(*(drifts[held] - a))) <= hold_fraction * spacing_nm else smallest


def reference_consistency(image: NDArray[np.float64], chosen_nm: Vec2, applied_nm: Vec2,
                          references: typing.Sequence[tuple[str, NDArray[np.float64], Vec2]], *,
                          pixel_size_nm: Vec2, rotation_rad: float, lowpass_sigma_px: float,
                          highpass_sigma_px: float | None, max_shift_fraction: float, tolerance_nm: float,
                          min_quality: float, max_candidates: int = 12) -> list[str]:
    """Labels of the ``references`` that disagree with ``chosen_nm`` (the drift, nm in sample axes, of ``image``
    recorded at the scan offset ``applied_nm``).

    references: (label, raw reference scan, its residual = its drift - the offset applied while it was recorded).
    ``image`` is registered against each: a content shift ``s`` (px) means the drift ``applied + R(s * pixel) +
    residual``. A reference disagrees when none of its well-matching candidates (NCC >= ``min_quality``) lies
    within ``tolerance_nm`` of ``chosen_nm``; a reference whose best match is below ``min_quality`` (too different
    to tell) is skipped. ``max_candidates``: as in :func:`~processing.alignment.registration.translation_candidates`
    (too few drop aliases of a fine lattice, the true one included, and a right drift is then called
    inconsistent)."""
    disagree: list[str] = []
    h, w = image.shape
    pix = np.asarray(pixel_size_nm, dtype=np.float64)
    for label, ref, residual in references:
        cands = translation_candidates(ref, image, lowpass_sigma_px=lowpass_sigma_px,
                                       highpass_sigma_px=highpass_sigma_px,
                                       max_shift_px=(max_shift_fraction * h, max_shift_fraction * w),
                                       max_candidates=max_candidates)
        good = [c for c in cands if c.quality >= min_quality]
        if not good:
            continue
        base = np.asarray(applied_nm, dtype=np.float64) + np.asarray(residual, dtype=np.float64)
        miss = min(float(math.hypot(*(base + scan_to_sample(np.asarray(c.shift_px) * pix, rotation_rad)
                                      - np.asarray(chosen_nm)))) for c in good)
        if miss > tolerance_nm:
            disagree.append(label)
    return disagree
