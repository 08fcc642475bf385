"""Sparse scanning on the simulated STEM: spectra at an arbitrary list of probe positions, with drift.

:func:`acquire_positions` visits the given (row, column) pixels of a field in the given order. The probe of pixel
``p`` aims at its scan position (nm, Swift's scan calibration: ``-fov/2 + index * pixel``) plus the scan offset
``correction_nm(t)`` (the drift the drift-corrected SI predicts; None: no correction) and sees the sample at
``aim - drift(t)``: drift still applies and its correction too. Time: one dwell per position plus ``settle_s`` for
every hop that is not to the next pixel of the same row (a real scan's settling after a jump; flyback included).
The spectra are Poisson counts of a :class:`SpectrumField` (any simulated specimen evaluated at off-grid points).

The real Swift scan interface (nionswift-instrumentation 23.6, ``scan_base.ScanFrameParameters``) describes a
raster: full frame, a (rotated) sub-scan rectangle or a line; it has no list of positions. On a microscope the
patterns therefore map to: line hopping = a sequence of 1-line sub-scans with the blanker gating the skipped
pixels; random / jittered / dynamic = the probe parked at each position with ``stem_controller.probe_position``
(fractional coordinates; what point spectra use), one camera frame per position, or a full raster with the
beam blanked outside the chosen pixels (dose saved, time not). docs/decomposition.md gives the details.
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
from numpy.typing import NDArray

from instrument_sim.drift import DriftModel
from instrument_sim.errors import SimulatorParameterError

if typing.TYPE_CHECKING:
    from instrument_sim.decomposition_truth import SimulatedSI
    from instrument_sim.eels_physics import SpectrumModel
    from instrument_sim.samples import Sample

__all__ = ["SpectrumField", "GridSpectrumField", "SampleSpectrumField", "SparseScanResult", "acquire_positions",
           "raster_time_s"]

F64 = NDArray[np.float64]


class SpectrumField(typing.Protocol):
    """Noise-free spectra (m, d) expected at sample points (nm, field-centred, each (m,))."""

    def expected_spectra(self, y_nm: F64, x_nm: F64) -> F64: ...


class GridSpectrumField:
    """A simulated SI's expected spectra, bilinearly interpolated between its pixels (linear mixtures stay exact
    linear mixtures: the abundance maps are interpolated, the component spectra are kept)."""

    def __init__(self, si: SimulatedSI) -> None:
        self.si = si
        self.shape_px = si.expected.shape[:2]

    def expected_spectra(self, y_nm: F64, x_nm: F64) -> F64:
        ny, nx = self.shape_px
        ps = self.si.pixel_size_nm
        fy = np.clip(np.asarray(y_nm) / ps + ny / 2, 0, ny - 1)
        fx = np.clip(np.asarray(x_nm) / ps + nx / 2, 0, nx - 1)
        y0 = np.minimum(np.floor(fy).astype(int), ny - 2) if ny > 1 else np.zeros_like(fy, int)
        x0 = np.minimum(np.floor(fx).astype(int), nx - 2) if nx > 1 else np.zeros_like(fx, int)
        wy = (fy - y0)[:, None]
        wx = (fx - x0)[:, None]
        e = self.si.expected
        y1, x1 = np.minimum(y0 + 1, ny - 1), np.minimum(x0 + 1, nx - 1)
        return np.asarray((1 - wy) * (1 - wx) * e[y0, x0] + (1 - wy) * wx * e[y0, x1]
                          + wy * (1 - wx) * e[y1, x0] + wy * wx * e[y1, x1], np.float64)


class SampleSpectrumField:
    """A :class:`instrument_sim.samples.Sample` (e.g. the DyScO3-like lattice) through the EELS model."""

    def __init__(self, sample: Sample, model: SpectrumModel, *, electrons_per_pixel: float) -> None:
        self.sample, self.model, self.electrons = sample, model, float(electrons_per_pixel)

    def expected_spectra(self, y_nm: F64, x_nm: F64) -> F64:
        from instrument_sim.samples import expected_spectra
        return np.asarray(expected_spectra(self.sample, self.model, y_nm, x_nm, electrons=self.electrons),
                          np.float64)


@dataclasses.dataclass(frozen=True)
class SparseScanResult:
    """positions_px: (m, 2) visited (row, column) in order; spectra: (m, d) float32 counts; times_s: (m,) visit
    times; aim_nm: (m, 2) where the probe was sent (scan position + correction); seen_nm: (m, 2) the sample point it
    saw; scan_time_s: total time; dose_fraction: m / (ny nx)."""

    positions_px: NDArray[np.int64]
    spectra: NDArray[np.float32]
    times_s: F64
    aim_nm: F64
    seen_nm: F64
    scan_time_s: float
    dose_fraction: float


def raster_time_s(shape_px: tuple[int, int], *, pixel_time_s: float, flyback_s: float = 30e-6) -> float:
    """Time of a full raster of the field (the reference for the time saved)."""
    ny, nx = shape_px
    return float(ny * (nx * pixel_time_s + flyback_s))


def acquire_positions(field: SpectrumField, positions_px: typing.Any, *, shape_px: tuple[int, int],
                      pixel_size_nm: float, pixel_time_s: float = 1e-3, settle_s: float = 30e-6,
                      drift: DriftModel | typing.Callable[[F64], F64] | None = None,
                      correction_nm: typing.Callable[[F64], F64] | None = None, t0_s: float = 0.0,
                      rng: np.random.Generator | None = None) -> SparseScanResult:
    """Acquire spectra at ``positions_px`` (m, 2) of a ``shape_px`` field (see module doc).

    ``drift``: a :class:`DriftModel`, or any ``offset_nm(times_s) -> (m, 2)`` callable such as the running
    simulator's ``SimInstrument.scan_content_offset_nm`` (drift - stage - probe shift), with ``t0_s`` its clock
    (``instrument.time_s()``), so a sparse scan sees the same sample motion as the raster scans of a session.
    """
    ny, nx = int(shape_px[0]), int(shape_px[1])
    if not (pixel_size_nm > 0 and pixel_time_s > 0 and settle_s >= 0):
        raise SimulatorParameterError(f"pixel_size_nm and pixel_time_s must be > 0 and settle_s >= 0; got "
                                      f"{pixel_size_nm!r}, {pixel_time_s!r}, {settle_s!r}.")
    p = np.asarray(positions_px)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0 or not np.issubdtype(p.dtype, np.integer):
        raise SimulatorParameterError(f"positions_px must be a non-empty (m, 2) integer array of (row, column) "
                                      f"pixels; got shape {p.shape}, dtype {p.dtype}.")
    p = p.astype(np.int64)
    outside = (p[:, 0] < 0) | (p[:, 0] >= ny) | (p[:, 1] < 0) | (p[:, 1] >= nx)
    if outside.any():
        first = p[np.argmax(outside)]
        raise SimulatorParameterError(
            f"{int(outside.sum())} of {p.shape[0]} probe positions lie outside the {ny}x{nx} field (first: row "
            f"{int(first[0])}, column {int(first[1])}); the scan cannot reach them. Clip them to the field.")
    rng = rng if rng is not None else np.random.default_rng(0)
    hop = np.ones(p.shape[0], bool)
    hop[1:] = ~((p[1:, 0] == p[:-1, 0]) & (p[1:, 1] == p[:-1, 1] + 1))
    steps = pixel_time_s + settle_s * hop
    times = t0_s + np.cumsum(steps) - pixel_time_s
    scan_nm = np.stack([(-ny / 2 + p[:, 0]) * pixel_size_nm, (-nx / 2 + p[:, 1]) * pixel_size_nm], axis=1)
    aim = scan_nm + (np.asarray(correction_nm(times), np.float64).reshape(-1, 2) if correction_nm is not None
                     else 0.0)
    if drift is None:
        content = np.zeros((p.shape[0], 2))
    elif isinstance(drift, DriftModel):
        content = drift.offset_nm(times).reshape(-1, 2)
    else:   # e.g. SimInstrument.scan_content_offset_nm: drift - stage - probe shift of the running simulator
        content = np.asarray(drift(times), np.float64).reshape(-1, 2)
    seen = aim - content
    expected = field.expected_spectra(seen[:, 0], seen[:, 1])
    spectra = rng.poisson(np.maximum(expected, 0)).astype(np.float32)
    return SparseScanResult(positions_px=p, spectra=spectra, times_s=times, aim_nm=aim, seen_nm=seen,
                            scan_time_s=float(np.sum(steps)), dose_fraction=p.shape[0] / (ny * nx))
