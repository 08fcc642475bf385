"""Auto-exposure by the rules of seed 001, and the dark-reference cache.

Rules (:class:`AutoExposurePolicy`):

* the signal is a percentile (default 99.5 %) of the dark-subtracted frame, never the maximum pixel (hot pixels and
  cosmic rays would drive it), as a fraction of the detector's usable range (full scale minus the dark level);
* the exposure changes only when the signal leaves ``[lower, upper]`` (e.g. 5 % and 80 %), or when more than
  ``max_saturated_fraction`` of the pixels reach full scale;
* and then only by a power of two, the one that brings the signal closest to the middle of the band (geometric mean
  of the thresholds), within ``[min_exposure_s, max_exposure_s]``.

:class:`DarkCache` acquires a dark reference only for an (exposure, binning) not used before.

>>> policy = AutoExposurePolicy(lower_fraction=0.05, upper_fraction=0.8, full_scale_counts=1000)
>>> policy.decide(signal_counts=900.0, saturated_fraction=0.0, exposure_s=0.4).exposure_s
0.1
>>> policy.decide(signal_counts=300.0, saturated_fraction=0.0, exposure_s=0.4).changed
False
"""
from __future__ import annotations

import dataclasses
import math
import threading
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError

__all__ = ["AutoExposurePolicy", "ExposureDecision", "DarkCache", "DarkReference", "frame_signal"]

Float32Array = NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class ExposureDecision:
    """exposure_s: exposure to use; changed: differs from the current one; status: "ok", "under", "over",
    "saturated"; limited: the ideal exposure was outside [min, max] (the thresholds cannot be met)."""

    exposure_s: float
    changed: bool
    status: str
    limited: bool
    factor: float


@dataclasses.dataclass(frozen=True)
class AutoExposurePolicy:
    """Auto-exposure thresholds. Fractions are of the usable range (full scale - dark level)."""

    lower_fraction: float = 0.05
    upper_fraction: float = 0.8
    percentile: float = 99.5
    full_scale_counts: float = 16383.0
    min_exposure_s: float = 0.001
    max_exposure_s: float = 60.0
    max_saturated_fraction: float = 1e-4
    enabled: bool = True

    def __post_init__(self) -> None:
        if not (0.0 < self.lower_fraction < self.upper_fraction <= 1.0):
            raise ParameterError(
                f"auto-exposure needs 0 < lower < upper <= 1 (fractions of full scale); got lower "
                f"{self.lower_fraction} and upper {self.upper_fraction}. Choose e.g. 0.05 and 0.8.")
        if self.upper_fraction / self.lower_fraction < 2.0:
            raise ParameterError(
                f"upper/lower = {self.upper_fraction / self.lower_fraction:.2f} < 2: exposures change by factors of "
                f"two, so the band must span at least a factor of 2 or no exposure can stay inside it. Widen it.")
        if not (0.0 < self.percentile <= 100.0):
            raise ParameterError(f"percentile must be in (0, 100]; got {self.percentile}.")
        if not (0.0 < self.min_exposure_s <= self.max_exposure_s) or not math.isfinite(self.max_exposure_s):
            raise ParameterError(f"need 0 < min_exposure_s <= max_exposure_s; got {self.min_exposure_s} and "
                                 f"{self.max_exposure_s}.")
        if not self.full_scale_counts > 0:
            raise ParameterError(f"full_scale_counts must be > 0; got {self.full_scale_counts}.")

    def decide(self, *, signal_counts: float, saturated_fraction: float, exposure_s: float,
               dark_level_counts: float = 0.0) -> ExposureDecision:
        """The exposure for the next frame given this frame's signal (percentile above dark, counts)."""
        usable = max(self.full_scale_counts - dark_level_counts, 1.0)
        fraction = max(float(signal_counts), 0.0) / usable
        saturated = saturated_fraction > self.max_saturated_fraction
        if not self.enabled:
            return ExposureDecision(exposure_s, False, "saturated" if saturated else "ok", False, 1.0)
        if not saturated and self.lower_fraction <= fraction <= self.upper_fraction:
            return ExposureDecision(exposure_s, False, "ok", False, 1.0)
        target = math.sqrt(self.lower_fraction * self.upper_fraction)
        if saturated:
            # the percentile under-reports a saturated frame: at least halve, more if the percentile says so
            power = min(-1, int(math.floor(math.log2(target / max(fraction, 1e-12)))))
            status = "saturated"
        elif fraction <= 0.0:
            power = int(math.floor(math.log2(self.max_exposure_s / exposure_s)))
            status = "under"
        else:
            power = int(round(math.log2(target / fraction)))
            status = "under" if fraction < self.lower_fraction else "over"
            if power == 0:
                power = 1 if status == "under" else -1
        new = exposure_s * 2.0 ** power
        limited = False
        while new > self.max_exposure_s * (1 + 1e-9):
            new /= 2.0
            limited = True
        while new < self.min_exposure_s * (1 - 1e-9):
            new *= 2.0
            limited = True
        return ExposureDecision(new, not math.isclose(new, exposure_s), status, limited, new / exposure_s)


def frame_signal(frame: typing.Any, dark: typing.Any, policy: AutoExposurePolicy,
                 ignore: NDArray[np.bool_] | None = None) -> tuple[float, float]:
    """(percentile of frame - dark in counts, fraction of pixels at full scale), ignoring ``ignore`` pixels."""
    raw = np.asarray(frame)
    if raw.ndim != 2:
        raise InputError(f"a frame must be 2-D; got shape {raw.shape}.")
    data = raw.astype(np.float32) - np.asarray(dark, dtype=np.float32)
    saturated = raw >= policy.full_scale_counts
    if ignore is not None:
        data = data[~ignore]
        saturated = saturated[~ignore]
    if not np.isfinite(data).all():
        raise InputError("the frame contains NaN/inf values; the camera returned invalid data.")
    return float(np.percentile(data, policy.percentile)), float(np.mean(saturated))


@dataclasses.dataclass(frozen=True, eq=False)
class DarkReference:
    """One dark reference: index (in acquisition order), exposure, binning, mean frame (float32) and its level."""

    index: int
    exposure_s: float
    binning: int
    data: Float32Array
    n_frames: int

    @property
    def level_counts(self) -> float:
        return float(np.median(self.data))


class DarkCache:
    """Dark references per (exposure, binning), acquired on demand by ``acquire(exposure_s, binning) -> frame``
    (the device blanks the beam). Thread safe; :attr:`acquired` counts what was actually acquired."""

    def __init__(self, acquire: typing.Callable[[float, int], typing.Any], *, frames_per_dark: int = 1) -> None:
        if frames_per_dark < 1:
            raise ParameterError(f"frames_per_dark must be >= 1; got {frames_per_dark}.")
        self.__acquire = acquire
        self.frames_per_dark = int(frames_per_dark)
        self.__lock = threading.Lock()
        self.__darks: dict[tuple[float, int], DarkReference] = {}

    @staticmethod
    def _key(exposure_s: float, binning: int) -> tuple[float, int]:
        return (round(float(exposure_s), 9), int(binning))

    def get(self, exposure_s: float, binning: int) -> DarkReference:
        key = self._key(exposure_s, binning)
        with self.__lock:
            cached = self.__darks.get(key)
            if cached is not None:
                return cached
            frames = [np.asarray(self.__acquire(exposure_s, binning), dtype=np.float32)
                      for _ in range(self.frames_per_dark)]
            dark = DarkReference(len(self.__darks), float(exposure_s), int(binning),
                                 np.mean(frames, axis=0).astype(np.float32), len(frames))
            self.__darks[key] = dark
            return dark

    def peek(self, exposure_s: float, binning: int) -> DarkReference | None:
        with self.__lock:
            return self.__darks.get(self._key(exposure_s, binning))

    @property
    def references(self) -> list[DarkReference]:
        with self.__lock:
            return sorted(self.__darks.values(), key=lambda d: d.index)

    @property
    def acquired(self) -> int:
        with self.__lock:
            return len(self.__darks)
