"""Drift estimation from repeated sub-scans of a reference region, with an updated template and rejection log.

Model and sign convention
-------------------------
``drift_nm(t) = (dy, dx)``: where the specimen has moved in scan coordinates since the first reference scan (t0):
a feature at scan position ``p`` at t0 is at ``p + drift_nm(t)`` at time t. To keep imaging the same area the scan
centre must follow the drift: ``scan_offset_nm = +drift_nm``. A reference sub-scan recorded with the scan centre
already moved by ``applied_offset_nm`` shows the *residual* ``drift - applied`` as a content shift of
``(drift - applied) / pixel_size`` pixels, so each measurement yields ``drift = applied + shift_px * pixel_size``.

Improvements over Nion's ``DriftTracker`` (``docs/acquisition-reference.md`` §2.3):

* the template is **updated**: a running average of the accepted measurements, each resampled back into the
  template frame (so contrast change from beam damage or contamination does not break the match) —
  ``template_weight`` sets the weight of the newest image (0 = fixed first image as in Nion);
* each measurement has a **quality** (peak NCC); below ``quality_threshold`` it is **rejected**, logged and never
  used for the correction or the rate;
* jumps larger than ``max_step_nm`` relative to the prediction can also be rejected (optional);
* the **rate** is a robust (Siegel repeated-median) linear fit over the last ``rate_window``
  accepted measurements, and :meth:`DriftEstimator.predict_offset_nm` extrapolates from the last accepted position
  with that rate (not only the last measurement).

Prediction, jumps and aliases (issue 13): the estimator owns a :class:`~processing.spectroscopy.drift_model.DriftPredictor`
(prediction with an uncertainty; jumps are steps, not rate). Each reference scan is matched against *every*
well-matching translation (:func:`processing.alignment.registration.translation_candidates`): on a periodic specimen
these are lattice aliases. A candidate is chosen by content when it alone matches (quality margin
``alias_quality_margin``), else by the prediction when exactly one alias lies inside the prediction window
(``alias_window_sigma`` sigma); otherwise the measurement is **ambiguous**: the candidate nearest the prediction is
used and the measurement is flagged (``ambiguous``), never reported as a clean 0.98-quality match. A measurement
farther from the prediction than ``jump_sigma`` sigma (and than ``jump_floor_nm``) is a **jump** (``jump_nm``). All
drifts are in sample coordinates (the frame of the scan offset); shifts measured on a scan rotated by
``rotation_rad`` are rotated into it.

The record list (:attr:`DriftEstimator.records`) is an immutable tuple of frozen :class:`DriftMeasurement`
objects, JSON-serialisable through :meth:`DriftEstimator.to_json` / :func:`records_from_json`.
"""
from __future__ import annotations

import json
import math
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError
from processing.alignment.registration import prefilter, shift_image, translation_candidates
from processing.spectroscopy.drift_consistency import annotate, rebuild_predictor, resolve_chain
from processing.spectroscopy.drift_guard import (last_trusted_drift, least_correction, periodic_reference,
                                                 reference_consistency, tracking_lost, untrusted_run)
from processing.spectroscopy.drift_model import DriftPredictor, Prediction, scan_to_sample
from processing.spectroscopy.drift_records import (DriftMeasurement, Vec2, _vec, drift_trajectory_nm,
                                                   records_from_json, robust_rate)

__all__ = ["DriftMeasurement", "DriftEstimator", "robust_rate", "records_from_json", "drift_trajectory_nm"]


class DriftEstimator:
    """Measure drift on successive reference sub-scans and predict the scan offset that cancels it.

    Parameters (keyword-only)
    -------------------------
    quality_threshold : NCC below which a measurement is rejected (0..1).
    template_weight : weight of the newest accepted image in the running-average template (0 = fixed reference;
        1 = always the last image).
    rate_window : measurements of the drift model's local fit (>= 2), see :class:`DriftPredictor`.
    max_step_nm : reject a measurement whose drift differs from the prediction by more than this (None = off).
    lowpass_sigma_px, highpass_sigma_px : registration pre-filter (see :func:`processing.alignment.registration.prefilter`).
    max_shift_fraction : largest residual shift searched, as a fraction of the sub-scan size.
    template_min_quality : an accepted measurement updates the template only if its quality reaches this value
        (a sub-scan sheared by a jump during the scan is used for the correction but does not blur the template).
    jump_sigma, jump_floor_nm : a jump is a miss of the prediction larger than both ``jump_sigma`` sigma and
        ``jump_floor_nm`` (the size below which a jump does not matter for the acquisition).
    alias_quality_margin, alias_noise_factor : candidates whose NCC is within ``max(alias_quality_margin,
        alias_noise_factor * (1 - best NCC))`` of the best are indistinguishable by content (the noise scale).
    alias_window_sigma : half-width of the prediction window (sigma) used to tell aliases apart.
    joint_unwrap, ambiguity_margin : when aliases compete, choose among them by the most plausible drift path over
        the whole chain so far (:func:`~processing.spectroscopy.drift_consistency.resolve_chain`, whose min-marginal
        evidence below ``ambiguity_margin`` makes the measurement ambiguous) instead of the prediction alone.
    jump_alias_ratio : a jump (no alias in the window) is resolved to the nearest alias only when its miss is at
        most this fraction of the next alias's miss (else ambiguous).
    predictor : the drift model (default :class:`DriftPredictor` with ``window=rate_window``).
    lost_after, lost_on_wide_ambiguity : tracking is lost after this many consecutive untracked measurements (jumps;
        with ``lost_on_wide_ambiguity`` also ambiguities while the prediction window reaches half the alias spacing:
        :func:`~processing.spectroscopy.drift_guard.untracked`; 0 = off; 4: a real jump is followed by the model,
        so real jumps in a row are rare, and the re-acquisition test injects three) on a periodic reference; from
        then on to the end of the run the alias closest to the last trusted drift is used and
        flagged (:mod:`processing.spectroscopy.drift_guard`).
    max_candidates : largest number of translations the registration keeps (its local NCC maxima, best first):
        at least the number of lattice aliases in the search range (a 32 px reference scan of a 0.395 nm lattice
        at 0.075 nm/px holds ~13-25; with 12 the true alias, whose NCC ranked 4th after refinement, was dropped
        before refinement on sweep seed 5016 and the chain ran away by a period per measurement).
    check_references, reference_tolerance_px : also register each reference scan against the first and the previous
        raw reference scans; a drift none of their candidates confirms within ``reference_tolerance_px`` reference
        pixels (at least 0.05 nm) is flagged inconsistent.

    Usage
    -----
    >>> est = DriftEstimator()
    >>> m0 = est.add_image(ref_image, time_s=0.0, pixel_size_nm=(0.2, 0.2))       # doctest: +SKIP
    >>> offset = est.predict_offset_nm(t_next)                                     # doctest: +SKIP
    >>> m1 = est.add_image(img, time_s=t_next, pixel_size_nm=(0.2, 0.2), applied_offset_nm=offset)  # doctest: +SKIP
    """

    def __init__(self, *, quality_threshold: float = 0.5, template_weight: float = 0.3, rate_window: int = 4,
                 max_step_nm: float | None = None, lowpass_sigma_px: float = 1.0,
                 highpass_sigma_px: float | None = None, max_shift_fraction: float = 0.4,
                 template_min_quality: float = 0.9, jump_sigma: float = 4.5, jump_floor_nm: float = 0.02,
                 alias_quality_margin: float = 0.002, alias_noise_factor: float = 2.0,
                 alias_window_sigma: float = 3.0, jump_alias_ratio: float = 0.4,
                 predictor: DriftPredictor | None = None, joint_unwrap: bool = True,
                 ambiguity_margin: float = 6.0, lost_after: int = 4, check_references: bool = True,
                 reference_tolerance_px: float = 1.5, lost_on_wide_ambiguity: bool = False,
                 max_candidates: int = 48) -> None:
        if not 0.0 <= quality_threshold < 1.0:
            raise ParameterError(f"quality_threshold must be in [0, 1); got {quality_threshold}. Typical: 0.3-0.7.")
        if not 0.0 <= template_weight <= 1.0:
            raise ParameterError(f"template_weight must be in [0, 1]; got {template_weight}.")
        if rate_window < 2:
            raise ParameterError(f"rate_window must be >= 2 measurements; got {rate_window}.")
        if max_step_nm is not None and max_step_nm <= 0:
            raise ParameterError(f"max_step_nm must be > 0 or None; got {max_step_nm}.")
        if not 0.0 < max_shift_fraction <= 0.5:
            raise ParameterError(f"max_shift_fraction must be in (0, 0.5]; got {max_shift_fraction}.")
        if not (jump_sigma > 0 and jump_floor_nm >= 0 and alias_quality_margin >= 0 and alias_window_sigma > 0):
            raise ParameterError(f"jump_sigma ({jump_sigma}) and alias_window_sigma ({alias_window_sigma}) must be "
                                 f"> 0, jump_floor_nm ({jump_floor_nm}) and alias_quality_margin "
                                 f"({alias_quality_margin}) >= 0.")
        self.quality_threshold = float(quality_threshold)
        self.template_weight = float(template_weight)
        self.rate_window = int(rate_window)
        self.max_step_nm = max_step_nm
        self.lowpass_sigma_px = float(lowpass_sigma_px)
        self.highpass_sigma_px = highpass_sigma_px
        self.max_shift_fraction = float(max_shift_fraction)
        self.template_min_quality = float(template_min_quality)
        self.jump_sigma = float(jump_sigma)
        self.jump_floor_nm = float(jump_floor_nm)
        self.alias_quality_margin = float(alias_quality_margin)
        self.alias_noise_factor = float(alias_noise_factor)
        self.jump_alias_ratio = float(jump_alias_ratio)
        self.alias_window_sigma = float(alias_window_sigma)
        self.joint_unwrap = bool(joint_unwrap)
        self.ambiguity_margin = float(ambiguity_margin)
        self.lost_after = int(lost_after)
        self.lost_on_wide_ambiguity = bool(lost_on_wide_ambiguity)
        self.check_references = bool(check_references)
        self.reference_tolerance_px = float(reference_tolerance_px)
        if max_candidates < 1:
            raise ParameterError(f"max_candidates must be >= 1; got {max_candidates}. Typical: 12-48.")
        self.max_candidates = int(max_candidates)
        self._first_raw: NDArray[np.float64] | None = None
        self._previous_raw: tuple[NDArray[np.float64], Vec2] | None = None
        self._predictor_template = predictor
        self.predictor = predictor if predictor is not None else DriftPredictor(window=self.rate_window)
        self._records: list[DriftMeasurement] = []
        self._template: NDArray[np.float64] | None = None
        self._shape: tuple[int, int] | None = None

    # -- state ---------------------------------------------------------------------------------------------
    @property
    def records(self) -> tuple[DriftMeasurement, ...]:
        """Every measurement so far (accepted and rejected), oldest first."""
        return tuple(self._records)

    @property
    def accepted(self) -> tuple[DriftMeasurement, ...]:
        return tuple(m for m in self._records if m.accepted)

    @property
    def rejected(self) -> tuple[DriftMeasurement, ...]:
        return tuple(m for m in self._records if not m.accepted)

    @property
    def template(self) -> NDArray[np.float64] | None:
        """The current reference template (H, W) (a copy), or None before the first image."""
        return None if self._template is None else self._template.copy()

    @property
    def alias_spacing_nm(self) -> float | None:
        """Smallest alias distance (nm) seen so far (the lattice period of a crystal), None when never seen."""
        spacings = [m.alias_spacing_nm for m in self._records if m.alias_spacing_nm is not None]
        return min(spacings) if spacings else None

    def reset(self) -> None:
        self._records.clear()
        self._template = None
        self._shape = None
        self._first_raw = None
        self._previous_raw = None
        p = self.predictor
        self.predictor = DriftPredictor(window=p.window, measurement_sigma_nm=p.measurement_sigma_nm,
                                        walk_nm_per_sqrt_s=p.walk_nm_per_sqrt_s, max_rate_nm_per_s=p.max_rate_nm_per_s,
                                        max_accel_nm_per_s2=p.max_accel_nm_per_s2,
                                        max_jerk_nm_per_s3=p.max_jerk_nm_per_s3)

    def chain_parameters(self) -> dict[str, typing.Any]:
        """Parameters of the joint unwrapping (:func:`~processing.spectroscopy.drift_consistency.resolve_chain`)
        from the drift model: acceleration bound (3 sigma), measurement precision, random walk."""
        p = self.predictor
        return {"accel_sigma_nm_per_s2": max(p.max_accel_nm_per_s2, 1e-3) / 3.0,
                "measurement_sigma_nm": max(p.measurement_sigma_nm, 0.005),
                "walk_nm_per_sqrt_s": max(p.walk_nm_per_sqrt_s, 0.01), "ambiguity_margin": self.ambiguity_margin,
                "max_rate_nm_per_s": p.max_rate_nm_per_s if p.max_rate_nm_per_s > 0 else math.inf}

    # -- prediction ----------------------------------------------------------------------------------------
    def rate_nm_per_s(self) -> Vec2:
        """Drift rate (dy, dx) in nm/s of the smooth drift at the last accepted measurement (0 if < 2)."""
        return self.predictor.rate_nm_per_s()

    def predict(self, time_s: float) -> Prediction:
        """Predicted drift at ``time_s`` with its 1-sigma uncertainty (nm)."""
        return self.predictor.predict(time_s)

    @property
    def tracking_lost(self) -> bool:
        """The drift model no longer tracks the register (:func:`~processing.spectroscopy.drift_guard.tracking_lost`)."""
        return tracking_lost(self._records, self.lost_after,
                             self.alias_window_sigma if self.lost_on_wide_ambiguity else None)

    def predict_offset_nm(self, time_s: float) -> Vec2:
        """Predicted drift (dy, dx) in nm at ``time_s``: the scan offset to apply so that the scan follows the
        specimen. (0, 0) before any measurement. With the tracking lost: the last (least-correction) drift, held."""
        acc = self.accepted
        if acc and acc[-1].lost:
            return acc[-1].drift_nm
        if untrusted_run(self._records, self.lost_after):
            return last_trusted_drift(self._records)  # nothing trusted lately: hold, never extrapolate wrong matches
        return self.predictor.predict(time_s).drift_nm

    def alias_safe_interval_s(self, time_s: float, max_interval_s: float, *, fraction: float = 0.4) -> float:
        """Longest interval (<= ``max_interval_s``) after ``time_s`` whose prediction window (``alias_window_sigma``
        sigma) stays within ``fraction`` of the alias spacing, so the next reference scan can tell the aliases apart
        by the prediction; ``max_interval_s`` when no alias has been seen (non-periodic reference)."""
        spacing = self.alias_spacing_nm
        if spacing is None or max_interval_s <= 0 or self.tracking_lost:
            return max_interval_s  # (lost: shorter sections cannot regain the register, only add time)
        limit = fraction * spacing

        def ok(dt: float) -> bool:
            return self.alias_window_sigma * self.predictor.predict(time_s + dt).sigma_nm <= limit

        if ok(max_interval_s):
            return max_interval_s
        lo, hi = 0.0, max_interval_s
        for _ in range(12):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        return lo

    def trajectory_nm(self, times_s: typing.Any) -> NDArray[np.float64]:
        """A-posteriori drift (..., 2) nm at ``times_s`` (:meth:`DriftPredictor.trajectory_nm`)."""
        return self.predictor.trajectory_nm(times_s)

    # -- measurement ---------------------------------------------------------------------------------------
    def add_image(self, image: typing.Any, *, time_s: float, pixel_size_nm: Vec2,
                  applied_offset_nm: Vec2 = (0.0, 0.0), rotation_rad: float = 0.0,
                  rate_check: bool = False) -> DriftMeasurement:
        """Register a reference sub-scan and record the measurement.

        Parameters
        ----------
        image : (H, W) reference-region sub-scan. The first image becomes the template (drift = applied offset).
        time_s : acquisition time (s), increasing.
        pixel_size_nm : (y, x) pixel size of the sub-scan in nm.
        applied_offset_nm : scan offset (dy, dx) in force during this sub-scan (sample axes, as the scan centre).
        rotation_rad : scan rotation of the sub-scan; its pixel shifts are rotated into sample axes.
        rate_check : taken right after the previous one to measure the rate (not a new sampling interval).

        Returns
        -------
        The :class:`DriftMeasurement` (also appended to :attr:`records`).
        """
        data = np.asarray(image, dtype=np.float64)
        if data.ndim != 2:
            raise InputError(f"reference sub-scan must be a 2-D image; got shape {data.shape}.")
        if pixel_size_nm[0] <= 0 or pixel_size_nm[1] <= 0:
            raise ParameterError(f"pixel_size_nm must be positive; got {pixel_size_nm}.")
        if self._records and time_s < self._records[-1].time_s:
            raise InputError(f"time_s={time_s} is earlier than the previous measurement "
                             f"({self._records[-1].time_s}); pass monotonic times.")
        applied = _vec(applied_offset_nm)
        pixel = _vec(pixel_size_nm)
        index = len(self._records)
        if self._template is None:
            prefilter(data, lowpass_sigma_px=0.0)  # validates; the template is kept unfiltered
            self._template = data.copy()
            self._shape = typing.cast(tuple[int, int], data.shape)
            # the content's own periodicity: the translations (beyond 1 px) at which the scan matches itself
            h0, w0 = data.shape
            own = translation_candidates(data, data, lowpass_sigma_px=self.lowpass_sigma_px,
                                         highpass_sigma_px=self.highpass_sigma_px, max_candidates=self.max_candidates,
                                         max_shift_px=(self.max_shift_fraction * h0, self.max_shift_fraction * w0))
            self_aliases = sum(1 for c in own if math.hypot(*c.shift_px) > 1.0 and c.quality >= 0.9
                               and c.overlap_fraction >= 0.5)
            m = DriftMeasurement(index, float(time_s), applied, (0.0, 0.0), pixel, applied, 1.0, True, "reference",
                                 rotation_rad=float(rotation_rad), self_aliases=self_aliases)
            self._records.append(m)
            self.predictor.add(float(time_s), applied)
            self._first_raw = data.copy()
            self._previous_raw = (data.copy(), (0.0, 0.0))
            return m
        if data.shape != self._shape:
            raise InputError(f"reference sub-scan shape {data.shape} differs from the first one {self._shape}; "
                             f"keep the reference-region size constant during a run.")
        lost_before = self.tracking_lost
        prediction = self.predictor.predict(time_s)
        predicted = prediction.drift_nm
        h, w = data.shape
        candidates = translation_candidates(self._template, data, lowpass_sigma_px=self.lowpass_sigma_px,
                                            highpass_sigma_px=self.highpass_sigma_px,
                                            max_shift_px=(self.max_shift_fraction * h, self.max_shift_fraction * w),
                                            max_candidates=self.max_candidates)
        pix = np.asarray(pixel)
        drifts = [np.asarray(applied) + scan_to_sample(np.asarray(c.shift_px) * pix, rotation_rad)
                  for c in candidates]
        # the content's best match (NCC times overlap, as register_translation: small-overlap noise peaks lose),
        # and every other match as good by NCC with a fair overlap: the aliases it cannot be told from
        primary = max(range(len(candidates)), key=lambda i: candidates[i].quality * candidates[i].overlap_fraction)
        best_q = candidates[primary].quality
        # non-periodic content (defects, thickness, contamination) lowers an alias's NCC by more than the noise
        # does: the margin scales with the noise level (1 - best NCC), at least alias_quality_margin
        # (capped: a poor match, NCC far below 1, is not a lattice whose aliases tie; its best peak is the content's)
        margin = min(max(self.alias_quality_margin, self.alias_noise_factor * (1.0 - best_q)), 0.02)
        competitive = [primary] + [i for i, c in enumerate(candidates) if i != primary and c.overlap_fraction >= 0.5
                                   and c.quality >= best_q - margin]
        miss = [float(np.hypot(*(drifts[i] - np.asarray(predicted)))) for i in range(len(candidates))]
        sigma = prediction.sigma_nm
        window = max(self.alias_window_sigma * sigma, self.jump_floor_nm)
        spacing: float | None = None
        if len(competitive) > 1:
            spacing = min(float(np.hypot(*(drifts[i] - drifts[j]))) for i in competitive for j in competitive
                          if i < j)
        ambiguous = False
        note = ""
        if len(competitive) == 1:
            chosen = competitive[0]
        else:
            inside = [i for i in competitive if miss[i] <= window]
            ranked = sorted(competitive, key=lambda i: miss[i])
            chosen = ranked[0]
            # a jump (nothing in the window): the smaller jump is taken only when it is clearly smaller than the
            # next alias (a miss of at most jump_alias_ratio times the next one); a jump near half a period is
            # ambiguous and flagged, never silently locked onto an alias
            clear_jump = not inside and miss[ranked[0]] <= self.jump_alias_ratio * miss[ranked[1]]
            if len(inside) > 1 or (not inside and not clear_jump):
                # the prediction cannot decide for sure: the alias nearest the prediction is taken (phase
                # unwrapping: right whenever the prediction misses by less than half the alias spacing, and it
                # never runs away, whereas the content's best match is a random alias on a clean lattice); the
                # measurement is flagged and the retrospective check of the whole chain decides at the end
                chosen = ranked[0]
                ambiguous = True
                note = (f"ambiguous: {len(competitive)} lattice aliases {spacing:.3f} nm apart match within "
                        f"{margin:.4f} NCC and {len(inside)} lie in the prediction window "
                        f"(±{window:.3f} nm); the alias nearest the prediction is used")
        joint = None
        # lost on a periodic reference stays lost to the end of the run: a single candidate there is no content
        # decision (the other aliases fell outside the search range or below the overlap), so it cannot regain the
        # register; its aliases are those of the previous lost measurement
        # (the alias rule applies on a periodic reference only; elsewhere a lost chain holds the offset,
        # predict_offset_nm, and the content of each new match decides)
        lost = lost_before and periodic_reference(self._records) and (
            len(competitive) > 1 or (bool(self.accepted) and self.accepted[-1].lost))
        lost_drift: NDArray[np.float64] | None = None
        if lost:
            # the drift model lost the register (consecutive jumps/ambiguities): no path over the chain can be
            # trusted; the alias closest to the last trusted drift (least correction since then) holds the scan
            # within a fraction of a period of "uncorrected from there on", never a run-away
            prev = self.accepted[-1]
            anchor = last_trusted_drift(self.accepted, skip_inconsistent=False)
            options = [drifts[i] for i in competitive]
            if prev.lost and prev.candidates_nm:  # the lattice of aliases seen last, around each candidate
                offsets = [np.asarray(c) - np.asarray(prev.drift_nm) for c in prev.candidates_nm]
                options += [d + o for d in list(options) for o in offsets if float(np.hypot(*o)) > 1e-9]
            if spacing is None:
                spacing = prev.alias_spacing_nm or self.alias_spacing_nm
            k = least_correction(options, range(len(options)), prev.drift_nm if prev.lost else None, spacing,
                                 anchor=anchor)
            lost_drift = options[k]
            chosen = min(competitive, key=lambda i: float(np.hypot(*(drifts[i] - lost_drift))))
            ambiguous = True
            note = (f"tracking lost ({self.lost_after} consecutive untracked measurements on a periodic reference: the "
                    f"register is unknown by whole lattice periods); of the aliases ({spacing or 0.0:.3f} nm apart) "
                    f"the one closest to the last trusted drift is used (least correction since then)")
        elif (self.joint_unwrap and len(competitive) > 1 and len(self.accepted) >= 2
                and candidates[chosen].quality >= self.quality_threshold):
            # phase unwrapping over the whole chain so far (not only the last few points of the prediction): the
            # alias of the most plausible drift path, ambiguous when another alias is nearly as plausible
            cands = tuple((float(drifts[i][0]), float(drifts[i][1])) for i in competitive)
            provisional = DriftMeasurement(index, float(time_s), applied, (0.0, 0.0), pixel,
                                           (float(drifts[chosen][0]), float(drifts[chosen][1])), 1.0, True,
                                           candidates_nm=cands, n_candidates=len(competitive))
            joint = resolve_chain(list(self._records) + [provisional], max_outliers=0, lattice_extent=0,
                                  **self.chain_parameters())
            final = joint.drift_nm[-1]
            if final is not None:
                chosen = min(competitive, key=lambda i: float(np.hypot(drifts[i][0] - final[0],
                                                                        drifts[i][1] - final[1])))
            ambiguous = joint.verdict[-1] == "ambiguous"
            note = (f"ambiguous: {len(competitive)} lattice aliases {spacing:.3f} nm apart match within "
                    f"{margin:.4f} NCC and the drift path so far cannot tell them apart (evidence "
                    f"{joint.margin[-1]:.1f} < {self.ambiguity_margin:.1f}); the most plausible is used"
                    ) if ambiguous else ""
        # the register rests on the drift model's prior alone when neither the content (several aliases) nor the
        # prediction (not exactly one alias inside its window) decides; the joint check's smoothest path is then a
        # preference, not evidence (sweep seeds 2006: a 0.56-period jump; 7008: a rate alias at the first interval)
        n_inside = sum(1 for i in competitive if miss[i] <= window)
        unverified = len(competitive) > 1 and not lost and math.isfinite(sigma) and n_inside != 1
        if unverified:
            note = (note + "; " if note else "") + (
                f"alias not verified by content: {len(competitive)} lattice aliases match and {n_inside} lie in the "
                f"prediction window (±{window:.3f} nm)")
        result = candidates[chosen]
        shift = result.shift_px
        drift_arr = drifts[chosen] if lost_drift is None else lost_drift
        drift = (float(drift_arr[0]), float(drift_arr[1]))
        step = (drift[0] - predicted[0], drift[1] - predicted[1])
        jump = (not lost and math.isfinite(sigma)
                and miss[chosen] > max(self.jump_sigma * sigma, self.jump_floor_nm))
        reason = ""
        if result.quality < self.quality_threshold:
            reason = f"quality {result.quality:.3f} < threshold {self.quality_threshold:.3f}"
        elif self.max_step_nm is not None and len(self.accepted) >= 2 and miss[chosen] > self.max_step_nm:
            reason = f"jump {miss[chosen]:.2f} nm from prediction > max_step_nm {self.max_step_nm:.2f}"
        accepted = not reason
        inconsistent = ""
        if accepted and self.check_references and self._first_raw is not None and self._previous_raw is not None:
            refs: list[tuple[str, NDArray[np.float64], Vec2]] = [("first", self._first_raw, (0.0, 0.0))]
            if len(self.accepted) >= 2:
                refs.append(("previous", self._previous_raw[0], self._previous_raw[1]))
            disagree = reference_consistency(
                data, drift, applied, refs, pixel_size_nm=pixel, rotation_rad=float(rotation_rad),
                lowpass_sigma_px=self.lowpass_sigma_px, highpass_sigma_px=self.highpass_sigma_px,
                max_shift_fraction=self.max_shift_fraction,
                tolerance_nm=max(self.reference_tolerance_px * max(pixel), 0.05), min_quality=self.quality_threshold,
                max_candidates=self.max_candidates)
            if disagree:
                inconsistent = ",".join(disagree)
                note = (note + "; " if note else "") + (
                    f"inconsistent: the registration against the {' and the '.join(disagree)} reference scan(s) "
                    f"does not confirm this drift")
        m = DriftMeasurement(index, float(time_s), applied, (float(shift[0]), float(shift[1])), pixel, drift,
                             float(result.quality), accepted, reason or note, predicted,
                             predicted_sigma_nm=float(sigma) if math.isfinite(sigma) else None,
                             jump_nm=step if (jump and accepted) else None, ambiguous=ambiguous and accepted,
                             n_candidates=len(competitive), alias_spacing_nm=spacing, rotation_rad=float(rotation_rad),
                             candidates_nm=(tuple((float(drifts[i][0]), float(drifts[i][1])) for i in competitive)
                                            if lost_drift is None or len(competitive) > 1 else
                                            tuple((float(c[0]) - self.accepted[-1].drift_nm[0] + drift[0],
                                                   float(c[1]) - self.accepted[-1].drift_nm[1] + drift[1])
                                                  for c in self.accepted[-1].candidates_nm) or (drift,)),
                             lost=lost and accepted, inconsistent=inconsistent, unverified=unverified and accepted,
                             rate_check=bool(rate_check))
        self._records.append(m)
        if accepted:
            self._previous_raw = (data.copy(), (drift[0] - applied[0], drift[1] - applied[1]))
        if accepted and joint is not None and any(
                d is not None and r.accepted and (abs(d[0] - r.drift_nm[0]) > 1e-9 or abs(d[1] - r.drift_nm[1]) > 1e-9)
                for r, d in zip(self._records, joint.drift_nm)):
            # the joint fit re-placed earlier measurements: the drift model follows the unwrapped chain
            self.predictor = rebuild_predictor(annotate(self._records, joint), self.predictor,
                                               jump_sigma=self.jump_sigma, jump_floor_nm=self.jump_floor_nm)
        elif accepted and lost:
            pass  # the drift model keeps what it knew; the offset is held (predict_offset_nm)
        elif accepted:
            self.predictor.add(float(time_s), drift, step_nm=step if jump else None, extra=bool(rate_check))
        if accepted and self.template_weight > 0 and result.quality >= self.template_min_quality:
            aligned = shift_image(data, (-shift[0], -shift[1]))
            # match brightness/contrast to the template before averaging (dose or damage changes the level)
            t = self._template
            a_std = float(aligned.std())
            if a_std > 0:
                aligned = (aligned - aligned.mean()) / a_std * float(t.std()) + float(t.mean())
            self._template = (1.0 - self.template_weight) * t + self.template_weight * aligned
        return m

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, typing.Any]:
        return {"settings": {"quality_threshold": self.quality_threshold, "template_weight": self.template_weight,
                             "rate_window": self.rate_window, "max_step_nm": self.max_step_nm,
                             "lowpass_sigma_px": self.lowpass_sigma_px, "highpass_sigma_px": self.highpass_sigma_px,
                             "max_shift_fraction": self.max_shift_fraction,
                             "template_min_quality": self.template_min_quality, "jump_sigma": self.jump_sigma,
                             "jump_floor_nm": self.jump_floor_nm, "alias_quality_margin": self.alias_quality_margin,
                             "alias_noise_factor": self.alias_noise_factor,
                             "jump_alias_ratio": self.jump_alias_ratio,
                             "alias_window_sigma": self.alias_window_sigma},
                "measurements": [m.to_dict() for m in self._records]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
