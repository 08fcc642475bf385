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

Drift measurement between sections (what the drift-corrected SI does): :func:`reference_scan` records a raster
sub-scan of a reference region (a detector image of an :class:`ImageField`, e.g. the nanoparticles of
:func:`reference_particles` beside the SI field) with the scan offset in force and the drift acting per pixel;
:class:`SimulatedSparseSTEM` bundles the spectra field, the reference region, the drift and a clock, and offers
``acquire(positions, correction_nm)`` / ``reference(offset_nm)``, the scanner interface of
:mod:`processing.sampling.drift_sections`.
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
           "raster_time_s", "ImageField", "SampleImageField", "ReferenceScan", "reference_scan",
           "SimulatedSparseSTEM", "reference_particles", "drift_scenario"]

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


class ImageField(typing.Protocol):
    """Noise-free detector counts (m,) expected at sample points (nm, each (m,))."""

    def expected_image(self, y_nm: F64, x_nm: F64) -> F64: ...


class SampleImageField:
    """A :class:`instrument_sim.samples.Sample`'s annular-detector signal (``channel``) at ``electrons_per_pixel``."""

    def __init__(self, sample: Sample, *, channel: str = "HAADF", electrons_per_pixel: float = 2e4) -> None:
        self.sample, self.channel, self.electrons = sample, channel, float(electrons_per_pixel)

    def expected_image(self, y_nm: F64, x_nm: F64) -> F64:
        signals = self.sample.scattering(y_nm, x_nm, channels=(self.channel,))
        return np.asarray(signals[self.channel], np.float64) * self.electrons


def reference_particles(center_nm: tuple[float, float], *, size_nm: float = 8.0, n_particles: int = 7,
                        seed: int = 0) -> Sample:
    """Small Ag particles (radius 0.8-2 nm) on carbon around ``center_nm``: a reference region with features in
    both directions and no lattice (no aliases), for drift measurement beside an SI field."""
    from instrument_sim.samples import NanoparticleSample
    rng = np.random.default_rng(seed)
    centers: list[tuple[float, float]] = []
    radii: list[float] = []
    for _ in range(500):
        if len(centers) >= n_particles:
            break
        r = float(rng.uniform(0.8, 2.0))
        c = (center_nm[0] + rng.uniform(-0.4, 0.4) * size_nm, center_nm[1] + rng.uniform(-0.4, 0.4) * size_nm)
        if all(np.hypot(c[0] - a, c[1] - b) > r + rr + 0.3 for (a, b), rr in zip(centers, radii)):
            centers.append((float(c[0]), float(c[1])))
            radii.append(r)
    return NanoparticleSample(centers_nm=centers, radii_nm=radii, support_thickness_nm=5.0, seed=seed)


@dataclasses.dataclass(frozen=True)
class ReferenceScan:
    """image: (H, W) float32 counts; time_s: time of its middle pixel; t_start_s / t_end_s; content_offset_nm:
    (H, W, 2) the true drift per pixel (ground truth)."""

    image: NDArray[np.float32]
    time_s: float
    t_start_s: float
    t_end_s: float
    content_offset_nm: F64


def reference_scan(field: ImageField, *, center_nm: tuple[float, float], shape_px: tuple[int, int],
                   pixel_size_nm: float, offset_nm: tuple[float, float] = (0.0, 0.0), pixel_time_s: float = 10e-6,
                   flyback_s: float = 30e-6, t0_s: float = 0.0,
                   drift: DriftModel | typing.Callable[[F64], F64] | None = None,
                   rng: np.random.Generator | None = None) -> ReferenceScan:
    """A raster sub-scan (``shape_px``, ``pixel_size_nm``) of the reference region centred at ``center_nm`` with the
    scan offset ``offset_nm`` in force: pixel (i, j) aims at ``center + (-H/2 + i, -W/2 + j) * pixel + offset`` at
    ``t0 + i (W dwell + flyback) + j dwell`` and sees the sample there minus the drift at that time; Poisson counts."""
    h, w = int(shape_px[0]), int(shape_px[1])
    if h < 4 or w < 4 or not (pixel_size_nm > 0 and pixel_time_s > 0 and flyback_s >= 0):
        raise SimulatorParameterError(f"a reference scan needs at least 4x4 pixels, pixel_size_nm and pixel_time_s "
                                      f"> 0, flyback_s >= 0; got {shape_px!r}, {pixel_size_nm!r}, "
                                      f"{pixel_time_s!r}, {flyback_s!r}.")
    ii, jj = np.mgrid[0:h, 0:w].astype(np.float64)
    times = t0_s + ii * (w * pixel_time_s + flyback_s) + jj * pixel_time_s
    y = center_nm[0] + (-h / 2 + ii) * pixel_size_nm + offset_nm[0]
    x = center_nm[1] + (-w / 2 + jj) * pixel_size_nm + offset_nm[1]
    content = _content(drift, times.reshape(-1)).reshape(h, w, 2)
    expected = field.expected_image((y - content[..., 0]).reshape(-1), (x - content[..., 1]).reshape(-1))
    rng = rng if rng is not None else np.random.default_rng(0)
    image = rng.poisson(np.maximum(expected, 0)).astype(np.float32).reshape(h, w)
    t_end = float(t0_s + h * (w * pixel_time_s + flyback_s))
    return ReferenceScan(image=image, time_s=float(t0_s + 0.5 * (t_end - t0_s)), t_start_s=float(t0_s),
                         t_end_s=t_end, content_offset_nm=content)


def _content(drift: DriftModel | typing.Callable[[F64], F64] | None, times: F64) -> F64:
    if drift is None:
        return np.zeros((times.size, 2))
    if isinstance(drift, DriftModel):
        return np.asarray(drift.offset_nm(times), np.float64).reshape(-1, 2)
    return np.asarray(drift(times), np.float64).reshape(-1, 2)


class SimulatedSparseSTEM:
    """The simulated STEM for sparse scanning with drift: spectra at probe positions, reference sub-scans, a clock.

    ``field``: the SI's spectra (``shape_px`` pixels of ``pixel_size_nm``, centred on 0); ``reference``: the
    reference region's detector image (``reference_center_nm``, ``reference_shape_px`` pixels of
    ``reference_pixel_size_nm``); ``drift``: the sample drift (the same for both: one specimen). The clock starts at
    ``t0_s`` and advances with every acquisition and reference scan. ``truth`` collects, per acquired position, the
    sample point the probe really saw (nm) and its aim, for the ground-truth comparison.
    Implements the scanner interface of :class:`processing.sampling.drift_sections.SectionScanner`.
    """

    def __init__(self, field: SpectrumField, reference: ImageField, *, shape_px: tuple[int, int],
                 pixel_size_nm: float, reference_center_nm: tuple[float, float],
                 reference_shape_px: tuple[int, int] = (32, 32), reference_pixel_size_nm: float = 0.25,
                 pixel_time_s: float = 5e-3, settle_s: float = 30e-6, reference_pixel_time_s: float = 10e-6,
                 drift: DriftModel | typing.Callable[[F64], F64] | None = None, t0_s: float = 0.0,
                 seed: int = 0) -> None:
        self.field, self.reference_field = field, reference
        self.shape_px = (int(shape_px[0]), int(shape_px[1]))
        self.pixel_size_nm = float(pixel_size_nm)
        self.reference_center_nm = (float(reference_center_nm[0]), float(reference_center_nm[1]))
        self.reference_shape_px = (int(reference_shape_px[0]), int(reference_shape_px[1]))
        self.reference_pixel_size_nm = (float(reference_pixel_size_nm), float(reference_pixel_size_nm))
        self.pixel_time_s, self.settle_s = float(pixel_time_s), float(settle_s)
        self.reference_pixel_time_s = float(reference_pixel_time_s)
        self.drift = drift
        self.time_s = float(t0_s)
        self.rng = np.random.default_rng(seed)
        self.scans: list[SparseScanResult] = []
        self.references: list[ReferenceScan] = []

    def acquire(self, positions_px: typing.Any, correction_nm: typing.Callable[[F64], F64] | None
                ) -> tuple[NDArray[np.float32], F64]:
        """Spectra (b, d) and visit times (b,) at ``positions_px`` (b, 2), the probe offset by ``correction_nm(t)``."""
        r = acquire_positions(self.field, positions_px, shape_px=self.shape_px, pixel_size_nm=self.pixel_size_nm,
                              pixel_time_s=self.pixel_time_s, settle_s=self.settle_s, drift=self.drift,
                              correction_nm=correction_nm, t0_s=self.time_s, rng=self.rng)
        self.time_s += r.scan_time_s
        self.scans.append(r)
        return r.spectra, r.times_s

    def reference(self, offset_nm: tuple[float, float]) -> tuple[NDArray[np.float32], float]:
        """A reference sub-scan (H, W) with the scan offset ``offset_nm`` in force, and the time of its middle."""
        r = reference_scan(self.reference_field, center_nm=self.reference_center_nm,
                           shape_px=self.reference_shape_px, pixel_size_nm=self.reference_pixel_size_nm[0],
                           offset_nm=offset_nm, pixel_time_s=self.reference_pixel_time_s, t0_s=self.time_s,
                           drift=self.drift, rng=self.rng)
        self.time_s = r.t_end_s
        self.references.append(r)
        return r.image, r.time_s

    def seen_px(self) -> F64:
        """(m, 2) the sample points really seen by all acquired positions, in SI pixels (row, column)."""
        if not self.scans:
            return np.zeros((0, 2))
        seen = np.vstack([s.seen_nm for s in self.scans])
        return seen / self.pixel_size_nm + np.asarray(self.shape_px, np.float64) / 2

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass (the beam blanked: no dose)."""
        self.time_s += max(float(seconds), 0.0)


def drift_scenario(seed: int, *, max_rate_nm_per_s: float = 0.5, max_sine_nm: float = 0.5,
                   sine_period_range_s: tuple[float, float] = (10.0, 60.0),
                   max_walk_nm_per_sqrt_s: float = 0.02) -> DriftModel:
    """A drift drawn from ``seed`` over the issue-13 ranges (no jumps): linear (speed uniform up to
    ``max_rate_nm_per_s``, random direction) + sinusoid (amplitude up to ``max_sine_nm`` per axis, period in
    ``sine_period_range_s``) + random walk (up to ``max_walk_nm_per_sqrt_s``)."""
    rng = np.random.default_rng(seed)
    speed, angle = rng.uniform(0.0, max_rate_nm_per_s), rng.uniform(0.0, 2 * np.pi)
    return DriftModel(rate_nm_per_s=(float(speed * np.sin(angle)), float(speed * np.cos(angle))),
                      sine_amplitude_nm=(float(rng.uniform(0, max_sine_nm)), float(rng.uniform(0, max_sine_nm))),
                      sine_period_s=float(rng.uniform(*sine_period_range_s)),
                      random_walk_nm_per_sqrt_s=float(rng.uniform(0, max_walk_nm_per_sqrt_s)), seed=int(seed))
