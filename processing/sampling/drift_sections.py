"""Sparse acquisition in sections with the drift correction of the drift-corrected SI.

The probe positions of a sparse pattern (or of the batches of the dynamic sampling) are acquired in *sections* of
``section_positions`` positions. Before the first section and after each one a sub-scan of a reference region is
registered by the drift-corrected SI's own machinery, a
:class:`~processing.spectroscopy.drift.DriftEstimator` (template update, quality rejection, jumps and lattice
aliases, :class:`~processing.spectroscopy.drift_model.DriftPredictor` prediction with its uncertainty): the same
object, the same calls (``add_image(image, time_s=, pixel_size_nm=, applied_offset_nm=)`` with the offset in force,
``predict_offset_nm(t)``) as the engine between its raster sections. What differs from a raster SI is how the
prediction is applied: a raster section gets one scan offset (its middle), a parked probe can follow the drift
position by position, so each position is offset by the prediction at its own visit time (evaluated at
``prediction_points`` times across the section and interpolated; the prediction is a smooth polynomial there).

Sign convention (:mod:`processing.spectroscopy.drift`): ``drift_nm(t)`` is where the specimen has moved since the
first reference scan; the probe aimed at ``scan position + drift_nm(t)`` sees what the scan position showed then.

A scanner is anything with ``acquire(positions (b, 2), correction_nm(times (b,)) -> (b, 2)) -> (spectra (b, d),
times_s (b,))``, ``reference(offset_nm) -> (image (H, W), time_s)`` and ``reference_pixel_size_nm`` (y, x):
:class:`instrument_sim.sparse_scan.SimulatedSparseSTEM` on the simulator; on a microscope the probe parked at each
position (``stem_controller.probe_position``) and ``record_immediate`` of the reference sub-scan, as the
drift-corrected SI does (docs/decomposition.md).

:class:`DriftCorrectedAcquisition` is also the ``acquire(positions) -> spectra`` callable of
:func:`processing.sampling.dynamic.dynamic_sampling`, so the dynamic mode is drift-corrected too.
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError
from processing.sampling.patterns import check_positions
from processing.spectroscopy.drift import DriftEstimator, DriftMeasurement
from processing.spectroscopy.drift_guard import rate_check_wanted

__all__ = ["SectionScanner", "SparseDriftResult", "DriftCorrectedAcquisition", "acquire_sparse_drift_corrected",
           "sections_for_interval"]

F64 = NDArray[np.float64]
Vec2 = tuple[float, float]


class SectionScanner(typing.Protocol):
    """What the driver needs from a scan (see module doc)."""

    reference_pixel_size_nm: tuple[float, float]

    def acquire(self, positions_px: NDArray[np.int64], correction_nm: typing.Callable[[F64], F64] | None
                ) -> tuple[typing.Any, typing.Any]: ...

    def reference(self, offset_nm: Vec2) -> tuple[typing.Any, float]: ...


@dataclasses.dataclass(frozen=True)
class SparseDriftResult:
    """positions: (m, 2) (row, column) in acquisition order; spectra: (m, d) float32; times_s: (m,); applied_nm:
    (m, 2) the probe offset applied to each (the predicted drift; 0 without correction); sections: (start, stop)
    index ranges; measurements: every drift measurement (reference first); correct_drift; measured_nm: (m, 2) the
    a-posteriori drift at each visit time (the estimator's trajectory through all measurements, also those after
    the position); notes: what the user should know (rejected or ambiguous measurements)."""

    positions: NDArray[np.int64]
    spectra: NDArray[np.float32]
    times_s: F64
    applied_nm: F64
    sections: tuple[tuple[int, int], ...]
    measurements: tuple[DriftMeasurement, ...]
    correct_drift: bool
    measured_nm: F64
    notes: tuple[str, ...] = ()

    @property
    def residual_nm(self) -> F64:
        """(m, 2) measured (a-posteriori) drift minus the applied offset: what is left in the data by the
        estimator's own account."""
        return np.asarray(self.measured_nm - self.applied_nm, np.float64)

class DriftCorrectedAcquisition:
    """Drift-corrected sparse acquisition on ``scanner`` (see module doc); call it with positions (b, 2), as many
    times as wanted (dynamic sampling); the drift state carries over between calls.

    Parameters (keyword-only)
    -------------------------
    section_positions : positions per section (between two reference scans), >= 1.
    correct_drift : False acquires the same sections and reference scans (same time and dose) without applying the
        prediction: the uncorrected comparison.
    estimator : the :class:`DriftEstimator` (default: its defaults, as the drift-corrected SI's default settings).
    prediction_points : times per section at which the prediction is evaluated (>= 2).
    bootstrap_measurements, bootstrap_interval_s : extra reference scans before the first section, this far apart
        (the drift-corrected SI's defaults: 2, 0.3 s), so that the first section is corrected with a rate; the
        scanner waits with its ``wait(seconds)`` (skipped, with a note, when it has none).
    rate_check : as the drift-corrected SI's: after a reference scan whose lattice alias rests on the drift model
        alone, one more at once (:func:`~processing.spectroscopy.drift_guard.rate_check_wanted`).
    """

    def __init__(self, scanner: SectionScanner, *, section_positions: int = 128, correct_drift: bool = True,
                 estimator: DriftEstimator | None = None, prediction_points: int = 9,
                 bootstrap_measurements: int = 2, bootstrap_interval_s: float = 0.3, rate_check: bool = True) -> None:
        if int(bootstrap_measurements) != bootstrap_measurements or bootstrap_measurements < 0 or not (
                bootstrap_interval_s >= 0):
            raise ParameterError(f"bootstrap_measurements must be a whole number >= 0 and bootstrap_interval_s >= 0; "
                                 f"got {bootstrap_measurements!r}, {bootstrap_interval_s!r}.")
        if int(section_positions) != section_positions or section_positions < 1:
            raise ParameterError(f"section_positions must be a whole number >= 1; got {section_positions!r}.")
        if int(prediction_points) != prediction_points or prediction_points < 2:
            raise ParameterError(f"prediction_points must be a whole number >= 2; got {prediction_points!r}.")
        self.scanner = scanner
        self.section_positions = int(section_positions)
        self.correct_drift = bool(correct_drift)
        self.estimator = estimator if estimator is not None else DriftEstimator()
        self.prediction_points = int(prediction_points)
        self.bootstrap_measurements = int(bootstrap_measurements)
        self.bootstrap_interval_s = float(bootstrap_interval_s)
        self.rate_check = bool(rate_check)
        self._notes: list[str] = []
        self._positions: list[NDArray[np.int64]] = []
        self._spectra: list[NDArray[np.float32]] = []
        self._times: list[F64] = []
        self._applied: list[F64] = []
        self._sections: list[tuple[int, int]] = []
        self._count = 0
        self._section_s: float | None = None

    def _offset(self, time_s: float) -> Vec2:
        return self.estimator.predict_offset_nm(time_s) if self.correct_drift else (0.0, 0.0)

    def _measure(self) -> DriftMeasurement:
        """A reference scan after a section, with the prediction at its start (the end of the last section)."""
        return self._register(self._offset(float(self._times[-1][-1])) if self._times else (0.0, 0.0))

    def _measure_now(self) -> None:
        """A reference scan before any section (bootstrap, after a wait), with the prediction for its time."""
        self._register(self._offset(self.estimator.records[-1].time_s + self.bootstrap_interval_s))

    def _register(self, offset: Vec2, rate_check: bool = False) -> DriftMeasurement:
        """Record the reference sub-scan with ``offset`` in force and register it (the SI engine's call)."""
        image, time_s = self.scanner.reference(offset)
        py, px = self.scanner.reference_pixel_size_nm
        return self.estimator.add_image(np.asarray(image, np.float64), time_s=float(time_s),
                                        pixel_size_nm=(float(py), float(px)), applied_offset_nm=offset,
                                        rate_check=rate_check)

    def _correction(self, times: F64) -> F64:
        t = np.asarray(times, np.float64).reshape(-1)
        if not self.correct_drift or t.size == 0:
            return np.zeros((t.size, 2))
        lo, hi = float(t.min()), float(t.max())
        knots = np.linspace(lo, hi, self.prediction_points) if hi > lo else np.asarray([lo])
        values = np.asarray([self.estimator.predict_offset_nm(float(k)) for k in knots], np.float64)
        if knots.size == 1:
            return np.repeat(values, t.size, axis=0)
        return np.stack([np.interp(t, knots, values[:, 0]), np.interp(t, knots, values[:, 1])], axis=1)

    def __call__(self, positions_px: typing.Any) -> NDArray[np.float32]:
        """Acquire ``positions_px`` (b, 2) in sections; returns their spectra (b, d) in the given order."""
        p = np.asarray(positions_px)
        shape = getattr(self.scanner, "shape_px", None)
        if shape is not None:
            p = check_positions(p, shape)
        elif p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0:
            raise InputError(f"positions must be a non-empty (b, 2) array of (row, column) pixels; got {p.shape}.")
        p = p.astype(np.int64)
        if not self.estimator.records:
            self._measure()                                  # the reference: drift 0 at this time
            wait = getattr(self.scanner, "wait", None)
            if self.bootstrap_measurements and not callable(wait):
                self._notes.append("the scanner cannot wait: no bootstrap measurements, the first section is "
                                   "corrected without a drift rate.")
            elif callable(wait):
                for _ in range(self.bootstrap_measurements):
                    wait(self.bootstrap_interval_s)
                    self._measure_now()
        out: list[NDArray[np.float32]] = []
        for start in range(0, p.shape[0], self.section_positions):
            block = p[start:start + self.section_positions]
            applied: list[F64] = []

            def correction(times: F64) -> F64:
                c = self._correction(times)
                applied.append(c)
                return c

            spectra, times = self.scanner.acquire(block, correction)
            spectra = np.asarray(spectra, np.float32)
            times_arr = np.asarray(times, np.float64).reshape(-1)
            if spectra.shape[0] != block.shape[0] or times_arr.size != block.shape[0]:
                raise InputError(f"the scanner returned {spectra.shape[0]} spectra and {times_arr.size} times for "
                                 f"{block.shape[0]} positions; it must return one of each per position.")
            self._positions.append(block)
            self._spectra.append(spectra)
            self._times.append(times_arr)
            self._applied.append(applied[-1] if applied else np.zeros((block.shape[0], 2)))
            self._sections.append((self._count, self._count + block.shape[0]))
            self._count += block.shape[0]
            out.append(spectra)
            self._measure()                                  # after every section (also the last): brackets it
            if self.rate_check and rate_check_wanted(self.estimator.records):
                self._register(self._offset(self.estimator.records[-1].time_s), rate_check=True)
        return np.vstack(out)

    def result(self) -> SparseDriftResult:
        """Everything acquired so far."""
        if not self._positions:
            raise InputError("nothing was acquired yet; call the acquisition with positions first.")
        records = self.estimator.records
        notes: list[str] = list(self._notes)
        rejected = [m for m in records if not m.accepted]
        ambiguous = [m for m in records if m.ambiguous]
        if rejected:
            notes.append(f"{len(rejected)} of {len(records)} drift measurements were rejected ("
                         f"{rejected[0].reason}); the prediction bridged them.")
        if ambiguous:
            notes.append(f"{len(ambiguous)} drift measurement(s) were ambiguous between lattice aliases: the "
                         f"correction of the following section may be off by an alias.")
        if not self.correct_drift:
            notes.append("drift correction off: the probe positions were not corrected.")
        times = np.concatenate(self._times)
        return SparseDriftResult(positions=np.vstack(self._positions), spectra=np.vstack(self._spectra),
                                 times_s=times, applied_nm=np.vstack(self._applied),
                                 sections=tuple(self._sections), measurements=records,
                                 correct_drift=self.correct_drift,
                                 measured_nm=np.asarray(self.estimator.trajectory_nm(times), np.float64).reshape(-1, 2),
                                 notes=tuple(notes))


def acquire_sparse_drift_corrected(scanner: SectionScanner, positions_px: typing.Any, *, section_positions: int = 128,
                                   correct_drift: bool = True, estimator: DriftEstimator | None = None,
                                   prediction_points: int = 9, bootstrap_measurements: int = 2,
                                   bootstrap_interval_s: float = 0.3, rate_check: bool = True) -> SparseDriftResult:
    """Acquire ``positions_px`` (m, 2) on ``scanner`` in sections with drift correction (see module doc)."""
    acq = DriftCorrectedAcquisition(scanner, section_positions=section_positions, correct_drift=correct_drift,
                                    estimator=estimator, prediction_points=prediction_points,
                                    bootstrap_measurements=bootstrap_measurements,
                                    bootstrap_interval_s=bootstrap_interval_s, rate_check=rate_check)
    acq(positions_px)
    return acq.result()


def sections_for_interval(interval_s: float, position_time_s: float) -> int:
    """Positions per section for sections of about ``interval_s`` at ``position_time_s`` per position."""
    if not (interval_s > 0 and position_time_s > 0) or not math.isfinite(interval_s / position_time_s):
        raise ParameterError(f"interval_s and position_time_s must be > 0; got {interval_s!r}, {position_time_s!r}.")
    return max(1, int(round(interval_s / position_time_s)))
