"""Focal, energy-filtered and any-control series with auto-exposure: planning, the acquisition engine, scaling.

The engine drives a :class:`SeriesDevice` (the Swift glue adapts a camera hardware source and the instrument; tests
adapt the simulator directly): for each step it sets the control, acquires one frame at the current exposure,
measures the signal (:func:`processing.stack.exposure.frame_signal`) and, only if it leaves the thresholds,
changes the exposure by a power of two and acquires the slice again (at most ``max_retakes`` times). Dark references
come from a :class:`~processing.stack.exposure.DarkCache` (one per distinct exposure and binning). Raw slices are
stored as integers (uint16, or uint32 above 16 bits); every slice records its exposure, dark reference, control
value and signal. :meth:`SeriesResult.scaled` gives the series in counts per first-slice exposure:
``(raw_k - dark_k) * t_0 / t_k`` (camera corrections optional).

Abort (``abort_event``) stops between frames and keeps every slice acquired (``complete`` False); a second series
while one runs raises :class:`SeriesBusyError`. Controls are restored at the end.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError, ProcessingError
from processing.stack.corrections import CameraCorrections
from processing.stack.exposure import AutoExposurePolicy, DarkCache, frame_signal

__all__ = ["SeriesDevice", "SeriesPlan", "SeriesSlice", "SeriesResult", "SeriesBusyError", "focal_series_plan",
           "energy_series_plan", "run_series", "FOCUS_CONTROL", "ENERGY_CONTROL", "SLIT_WIDTH_CONTROL",
           "SLIT_CONTROL"]

FOCUS_CONTROL = "C10"
ENERGY_CONTROL = "EFTEM_EnergyOffset"
SLIT_WIDTH_CONTROL = "EFTEM_SlitWidth"
SLIT_CONTROL = "EFTEM_Slit"

ProgressCallback = typing.Callable[[int, int, float, str], None]


class SeriesBusyError(ProcessingError):
    """A series is already running."""


class SeriesDevice(typing.Protocol):
    """What the engine needs from a camera + instrument."""

    full_scale_counts: float

    def has_control(self, name: str) -> bool: ...

    def get_control(self, name: str) -> float: ...

    def set_control(self, name: str, value: float) -> None: ...

    def acquire(self, exposure_s: float, binning: int) -> NDArray[typing.Any]: ...

    def acquire_dark(self, exposure_s: float, binning: int) -> NDArray[typing.Any]: ...


@dataclasses.dataclass(frozen=True)
class SeriesPlan:
    """Steps of a series: ``control`` set to ``values[k] * control_scale`` (device units) for slice k.

    name: "focal", "energy" or any label. values: in ``units`` (nm, eV...). settings: controls set once before
    the series (e.g. slit in, slit width) and restored after.
    """

    name: str
    control: str
    values: tuple[float, ...]
    units: str
    control_scale: float = 1.0
    settings: tuple[tuple[str, float], ...] = ()
    settle_s: float = 0.0

    def __post_init__(self) -> None:
        if len(self.values) < 1:
            raise ParameterError("a series needs at least 1 step; set count >= 1.")
        if not all(math.isfinite(v) for v in self.values):
            raise ParameterError(f"series values must be finite; got {self.values[:5]}...")


def _steps(start: float, step: float, count: int, what: str) -> tuple[float, ...]:
    if int(count) != count or count < 1:
        raise ParameterError(f"{what} series count must be a whole number >= 1; got {count!r}.")
    if not (math.isfinite(start) and math.isfinite(step)):
        raise ParameterError(f"{what} series start and step must be finite; got {start!r}, {step!r}.")
    return tuple(float(start + k * step) for k in range(int(count)))


def focal_series_plan(start_nm: float, step_nm: float, count: int, *, settle_s: float = 0.0) -> SeriesPlan:
    """Defocus (C10) from ``start_nm`` in steps of ``step_nm`` for ``count`` images."""
    return SeriesPlan("focal", FOCUS_CONTROL, _steps(start_nm, step_nm, count, "focal"), "nm", 1e-9,
                      settle_s=settle_s)


def energy_series_plan(start_eV: float, step_eV: float, count: int, *, slit_width_eV: float,
                       settle_s: float = 0.0) -> SeriesPlan:
    """Energy offset from ``start_eV`` in steps of ``step_eV`` for ``count`` images, slit in at ``slit_width_eV``."""
    if not (math.isfinite(slit_width_eV) and slit_width_eV > 0):
        raise ParameterError(f"slit width must be > 0 eV; got {slit_width_eV!r}. Use e.g. 10 eV.")
    return SeriesPlan("energy", ENERGY_CONTROL, _steps(start_eV, step_eV, count, "energy"), "eV", 1.0,
                      settings=((SLIT_CONTROL, 1.0), (SLIT_WIDTH_CONTROL, float(slit_width_eV))), settle_s=settle_s)


@dataclasses.dataclass(frozen=True)
class SeriesSlice:
    """What one slice recorded: the control value (plan units), exposure (s), dark reference index, signal
    (percentile fraction of the usable range), status of the auto-exposure, exposures tried before it."""

    index: int
    value: float
    exposure_s: float
    dark_index: int
    signal_fraction: float
    saturated_fraction: float
    status: str
    tried_exposures_s: tuple[float, ...]
    t_s: float

    def to_dict(self) -> dict[str, typing.Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(eq=False)
class SeriesResult:
    """A finished (or aborted) series. ``raw``: (n, H, W) integer counts of the slices acquired; ``darks``: the
    dark references (index = ``SeriesSlice.dark_index``)."""

    plan: SeriesPlan
    raw: NDArray[typing.Any]
    slices: list[SeriesSlice]
    darks: list[NDArray[np.float32]]
    dark_exposures_s: list[float]
    binning: int
    complete: bool
    elapsed_s: float
    notes: list[str]

    @property
    def exposures_used_s(self) -> list[float]:
        return sorted({s.exposure_s for s in self.slices})

    @property
    def n_darks(self) -> int:
        return len(self.darks)

    def scaled(self, corrections: CameraCorrections | None = None) -> NDArray[np.float32]:
        """(n, H, W) float32 counts per first-slice exposure: ``(raw_k - dark_k) * t_0 / t_k``; with
        ``corrections`` (gain, defects; its dark is ignored: each slice uses its own) applied to each slice."""
        if not self.slices:
            raise InputError("the series has no slice; nothing to scale.")
        t0 = self.slices[0].exposure_s
        out = np.empty(self.raw.shape, dtype=np.float32)
        gain_only = CameraCorrections(gain=corrections.gain, defects=corrections.defects) if corrections else None
        for k, s in enumerate(self.slices):
            frame = self.raw[k].astype(np.float32) - self.darks[s.dark_index]
            if gain_only is not None:
                frame = gain_only.apply(frame)
            out[k] = frame * np.float32(t0 / s.exposure_s)
        return out

    def report(self) -> dict[str, typing.Any]:
        """Per series: exposures used, darks acquired, time spent, completeness, notes, and every slice."""
        return {"series": self.plan.name, "control": self.plan.control, "units": self.plan.units,
                "values": [s.value for s in self.slices], "exposures_used_s": self.exposures_used_s,
                "darks_acquired": self.n_darks, "dark_exposures_s": self.dark_exposures_s,
                "elapsed_s": self.elapsed_s, "complete": self.complete, "slices_acquired": len(self.slices),
                "slices_planned": len(self.plan.values), "binning": self.binning, "notes": list(self.notes),
                "slices": [s.to_dict() for s in self.slices]}


_RUN_LOCK = threading.Lock()


def _integer_dtype(full_scale_counts: float) -> type[np.unsignedinteger[typing.Any]]:
    return np.uint16 if full_scale_counts <= 65535 else np.uint32


def run_series(device: SeriesDevice, plan: SeriesPlan, *, exposure_s: float, binning: int = 1,
               policy: AutoExposurePolicy | None = None, max_retakes: int = 1,
               abort_event: threading.Event | None = None, progress: ProgressCallback | None = None,
               ignore_mask: NDArray[np.bool_] | None = None, frames_per_dark: int = 1) -> SeriesResult:
    """Acquire the series ``plan`` on ``device`` starting at ``exposure_s``.

    policy : auto-exposure thresholds (default :class:`AutoExposurePolicy` with the device's full scale); pass
        ``AutoExposurePolicy(enabled=False, ...)`` for a fixed exposure.
    max_retakes : exposure changes allowed per slice (the slice is re-acquired after each).
    abort_event : set it to stop after the current frame; slices acquired so far are kept (``complete`` False).
    progress : ``progress(done, total, seconds_remaining, message)`` after each slice.
    ignore_mask : pixels (e.g. known hot pixels) excluded from the signal measurement.
    """
    if not _RUN_LOCK.acquire(blocking=False):
        raise SeriesBusyError("a series acquisition is already running; wait for it to finish or abort it first.")
    try:
        return _run(device, plan, exposure_s=exposure_s, binning=binning, policy=policy, max_retakes=max_retakes,
                    abort_event=abort_event, progress=progress, ignore_mask=ignore_mask,
                    frames_per_dark=frames_per_dark)
    finally:
        _RUN_LOCK.release()


def _run(device: SeriesDevice, plan: SeriesPlan, *, exposure_s: float, binning: int,
         policy: AutoExposurePolicy | None, max_retakes: int, abort_event: threading.Event | None,
         progress: ProgressCallback | None, ignore_mask: NDArray[np.bool_] | None,
         frames_per_dark: int) -> SeriesResult:
    for name in (plan.control,) + tuple(n for n, _v in plan.settings):
        if not device.has_control(name):
            raise ParameterError(f"the instrument has no control '{name}' needed by the {plan.name} series; "
                                 f"check the instrument (an energy series needs an energy filter).")
    policy = policy if policy is not None else AutoExposurePolicy(full_scale_counts=device.full_scale_counts)
    if not (policy.min_exposure_s <= exposure_s <= policy.max_exposure_s):
        raise ParameterError(f"start exposure {exposure_s} s is outside [{policy.min_exposure_s}, "
                             f"{policy.max_exposure_s}] s; choose an exposure inside the limits.")
    if max_retakes < 0:
        raise ParameterError(f"max_retakes must be >= 0; got {max_retakes}.")
    started = time.monotonic()
    saved = {name: device.get_control(name) for name in (plan.control,) + tuple(n for n, _v in plan.settings)}
    darks = DarkCache(device.acquire_dark, frames_per_dark=frames_per_dark)
    dtype = _integer_dtype(policy.full_scale_counts)
    raw_slices: list[NDArray[typing.Any]] = []
    slices: list[SeriesSlice] = []
    notes: list[str] = []
    complete = True
    exposure = float(exposure_s)
    total = len(plan.values)
    try:
        for name, value in plan.settings:
            device.set_control(name, value)
        for k, value in enumerate(plan.values):
            if abort_event is not None and abort_event.is_set():
                complete = False
                break
            device.set_control(plan.control, value * plan.control_scale)
            if plan.settle_s > 0:
                time.sleep(plan.settle_s)
            tried: list[float] = []
            while True:
                dark = darks.get(exposure, binning)
                frame = np.asarray(device.acquire(exposure, binning))
                if frame.ndim != 2:
                    raise InputError(f"the camera returned shape {frame.shape} for slice {k}; expected a 2-D frame.")
                if raw_slices and frame.shape != raw_slices[0].shape:
                    raise InputError(f"slice {k} has shape {frame.shape}, the series {raw_slices[0].shape}: the "
                                     f"camera's binning or readout area changed during the series; the series stops "
                                     f"here (the {len(raw_slices)} slices acquired are kept). Keep the binning and "
                                     f"readout area fixed while a series runs, then start it again.")
                signal, saturated = frame_signal(frame, dark.data, policy, ignore_mask)
                decision = policy.decide(signal_counts=signal, saturated_fraction=saturated, exposure_s=exposure,
                                         dark_level_counts=dark.level_counts)
                usable = max(policy.full_scale_counts - dark.level_counts, 1.0)
                if decision.changed and len(tried) < max_retakes and not (abort_event and abort_event.is_set()):
                    tried.append(exposure)
                    exposure = decision.exposure_s
                    continue
                status = decision.status
                if decision.status != "ok":
                    limit = " (exposure limit reached)" if decision.limited or not decision.changed else ""
                    notes.append(f"slice {k} ({value:g} {plan.units}): signal {signal / usable:.1%} of full scale is "
                                 f"{decision.status}{limit} after {len(tried)} exposure change(s).")
                break
            raw_slices.append(np.clip(np.rint(frame), 0, np.iinfo(dtype).max).astype(dtype))
            slices.append(SeriesSlice(k, float(value), exposure, dark.index, signal / usable, saturated, status,
                                      tuple(tried), time.monotonic() - started))
            if progress is not None:
                done = k + 1
                elapsed = time.monotonic() - started
                progress(done, total, elapsed / done * (total - done), f"slice {done}/{total} at {value:g} "
                                                                      f"{plan.units}, {exposure * 1e3:g} ms")
        else:
            complete = True
        if not complete:
            notes.append(f"aborted: {len(slices)} of {total} slices acquired (kept, marked incomplete).")
    except BaseException as e:
        complete = False
        notes.append(f"stopped by an error after {len(slices)} of {total} slices: {e}")
        if not slices:
            raise
    finally:
        for name, value in saved.items():
            try:
                device.set_control(name, value)
            except Exception as e:  # restoring must not hide the data
                notes.append(f"could not restore control {name}: {e}")
    references = darks.references
    raw = np.stack(raw_slices) if raw_slices else np.zeros((0, 0, 0), dtype=dtype)
    return SeriesResult(plan=plan, raw=raw, slices=slices, darks=[d.data for d in references],
                        dark_exposures_s=[d.exposure_s for d in references], binning=binning, complete=complete,
                        elapsed_s=time.monotonic() - started, notes=notes)
