"""An in-situ TEM scene: crystalline nanoparticles with lattice fringes on an amorphous support, which melt and
recrystallise in a new orientation, seen through sample drift with dose-dependent shot noise.

Pure numpy/scipy/OpenCV/numba (no nion import); :mod:`instrument_sim.insitu_camera` wraps it as a Swift camera.

Model
-----
The sample is periodic with the *tile* period ``(H + 2 pad, W + 2 pad)`` px (``pad`` a little more than the largest
particle radius), so it never runs out however far it drifts, and each particle has exactly one image that can
touch the frame. Bright-field intensity (1 = vacuum-free support mean)::

    I = B(x) * T(x)
    B = 1 + support_contrast * s(x)                        (amorphous support; s: band-pass noise, std 1)
    T = 1 - thickness_contrast * h(r)
          + fringe_contrast * h(r) * cos(2 pi g.(x - c) + phi)      crystalline
          + molten_contrast * h(r) * m(x)                           molten (m: band-pass noise, std 1)
    h(r) = clip((R - r) / w + 1/2, 0, 1)                   (projected thickness, relative)

A supported metal or oxide nanoparticle is faceted (a truncated polyhedron seen down a zone axis): its projected
thickness is nearly uniform and drops to zero across the side facets, i.e. over about a pixel at these
magnifications. The model is that flat top with a linear edge ramp of width ``w = edge_width_px`` (default 1.5 px);
the particle radius ``R`` (truth) is the middle of the edge, where ``h = 1/2``, so the particle's projected area is
``pi R^2`` (to within ``pi w^2 / 12``).

The expected number of electrons per pixel is ``I * dose_e_per_px``; :func:`instrument_sim.noise.shot_noise` adds
Poisson noise. Each frame is the tile translated by the content offset (cubic interpolation, periodic borders).

Melting: particle ``k`` has a random phase ``phi_k`` in ``[0, melt_period_s)``. With ``u = t + phi_k``, its cycle is
``n = floor(u / melt_period_s)`` and it is molten during the last ``molten_duration_s`` of each cycle. Each cycle
has its own orientation (differing from the previous one by 20..160 degrees), lattice spacing (drawn from
``lattice_spacings_nm``) and fringe phase; the molten texture of the cycle is fixed (no liquid motion).

Conventions (ground truth, :class:`SceneTruth`)
-----------------------------------------------
* Frame coordinates are ``(y, x)`` px of the full, unbinned frame, row ``y`` downwards, column ``x`` to the right;
  the centre of pixel ``[i, j]`` is at ``(i, j)``. A binned/cropped readout ``(top, left, bottom, right)`` with
  binning ``b`` has its pixel ``[i, j]`` centred at ``(top + b*i + (b-1)/2, left + b*j + (b-1)/2)``.
* Content offset ``d`` (nm, ``(y, x)``): a feature at frame position ``p`` for ``d = 0`` is at
  ``p + d / pixel_size_nm``. Standalone, ``d`` is ``drift.offset_nm(t)``; the camera passes drift minus stage.
* Orientation ``theta`` (deg, in ``[0, 180)``) is the direction of the lattice wave vector measured
  counter-clockwise on screen from the +x axis with y pointing up, the convention of the analysis processors and of
  their colour-wheel legend (:mod:`processing.live.fft_analysis`). In array coordinates (rows going down) the wave vector
  is ``g = (g_row, g_col) = (-sin theta, cos theta) / spacing_px``, i.e. ``theta = atan2(-g_row, g_col)``: 0 deg
  means fringes varying along x (vertical fringe lines), 90 deg fringes varying along y (horizontal lines), 45 deg
  a wave vector pointing to the upper right of the screen (fringe lines from the upper left to the lower right).
  In ``numpy.fft.fftshift(numpy.fft.fft2(frame))`` of an N x N frame, the lattice peaks are at
  ``(N/2 -+ N sin(theta)/spacing_px, N/2 +- N cos(theta)/spacing_px)`` (row, column).

Example
-------
>>> scene = InSituScene(shape_px=(256, 256), n_particles=3, seed=1)
>>> frame = scene.render(0.0, exposure_s=0.05, rng=np.random.default_rng(0))
>>> frame.shape, frame.dtype.name
((256, 256), 'float32')
>>> len(scene.truth(0.0).particles)
3
"""
from __future__ import annotations

import dataclasses
import math
import threading
import typing

import cv2
import numpy as np
import scipy.ndimage
from numpy.typing import ArrayLike, NDArray

from instrument_sim.drift import DriftModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.noise import DEFAULT_NORMAL_THRESHOLD, shot_noise

__all__ = ["InSituScene", "SceneTruth", "ParticleTruth"]

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]

_STREAM_LAYOUT = 11
_STREAM_SUPPORT = 12
_STREAM_CYCLE = 13
_STREAM_MOLTEN = 14
_STREAM_PHASE = 15


@dataclasses.dataclass(frozen=True)
class ParticleTruth:
    """Ground truth of one particle at one time.

    Attributes
    ----------
    index : int
        Particle number (stable over time).
    centre_px : (y, x), px
        Centre in full-frame coordinates (may be outside the frame; see ``visible``).
    radius_px, radius_nm : float
        Radius of the particle's edge (the middle of its edge ramp): projected area ``pi radius_px**2``.
    orientation_deg : float, deg in [0, 180)
        Direction of the lattice wave vector, counter-clockwise on screen from +x (y up), the processors' and colour
        wheel's convention (module docstring). Meaningless while ``molten``.
    spacing_nm, spacing_px : float
        Lattice-plane spacing of the current crystalline cycle.
    molten : bool
        True while the particle is molten (no fringes).
    cycle : int
        Melt cycle number (a new orientation each cycle).
    visible : bool
        The disk intersects the frame.
    inside_frame : bool
        The whole disk is inside the frame.
    """

    index: int
    centre_px: tuple[float, float]
    radius_px: float
    radius_nm: float
    orientation_deg: float
    spacing_nm: float
    spacing_px: float
    molten: bool
    cycle: int
    visible: bool
    inside_frame: bool


@dataclasses.dataclass(frozen=True, eq=False)
class SceneTruth:
    """Ground truth of the scene at time ``t_s`` (compared by identity: it holds arrays).

    Attributes
    ----------
    t_s : float, s
    offset_nm : ndarray (2,), nm
        Content offset ``(y, x)`` (drift, minus stage when rendered by the camera).
    offset_px : ndarray (2,), px
        ``offset_nm / pixel_size_nm``.
    pixel_size_nm : float
    shape_px : (H, W)
    particles : tuple of ParticleTruth
    """

    t_s: float
    offset_nm: FloatArray
    offset_px: FloatArray
    pixel_size_nm: float
    shape_px: tuple[int, int]
    particles: tuple[ParticleTruth, ...]

    @property
    def visible_particles(self) -> tuple[ParticleTruth, ...]:
        return tuple(p for p in self.particles if p.visible)


@dataclasses.dataclass(frozen=True)
class _Particle:
    centre_tile: tuple[float, float]   # (y, x) in tile px
    radius_px: float
    box: tuple[int, int, int, int]     # y0, y1, x0, x1 in the tile
    phase_s: float


@dataclasses.dataclass(frozen=True)
class _CycleState:
    cycle: int
    molten: bool


def _band_pass_noise(shape: tuple[int, int], rng: np.random.Generator, *, period_px: float, width: float,
                     low_pass_weight: float = 0.0, low_pass_px: float = 0.0) -> Float32Array:
    """Periodic noise whose spectrum is a ring at ``1/period_px`` (relative width ``width``), std 1."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, np.newaxis]
    fx = np.fft.rfftfreq(shape[1])[np.newaxis, :]
    f = np.sqrt(fy * fy + fx * fx)
    f0 = 1.0 / period_px
    ring = np.exp(-0.5 * ((f - f0) / (width * f0)) ** 2)
    if low_pass_weight > 0.0:
        ring = ring + low_pass_weight * np.exp(-0.5 * (f * low_pass_px) ** 2)
    ring[0, 0] = 0.0
    out = np.fft.irfft2(np.fft.rfft2(white) * ring, s=shape)
    out /= out.std() + 1e-12
    return out.astype(np.float32)


class InSituScene:
    """Crystalline nanoparticles on amorphous support, melting and recrystallising, for an in-situ TEM camera.

    Parameters
    ----------
    shape_px : (H, W), px
        Frame shape (default 1024 x 1024).
    pixel_size_nm : float, nm
        Pixel size (default 0.06 nm: lattice fringes of 0.2-0.35 nm span 3.4-5.8 px).
    n_particles : int, optional
        Number of particles (default: 10 per 1024 x 1024 px, at least 1).
    radius_range_nm : (min, max), nm
        Particle radii are uniform in this range (default 1.8-4.5 nm).
    lattice_spacings_nm : sequence of float, nm
        Lattice-plane spacings to choose from for each crystalline cycle (default Au{111} 0.235, CeO2{200} 0.272,
        CeO2{111} 0.313). Must be >= 2.5 px.
    melt_period_s : float or None, s
        Period of the melt/recrystallise cycle (default 20 s); None: never melt.
    molten_duration_s : float, s
        Molten time at the end of each cycle (default 4 s, < melt_period_s).
    drift : DriftModel, optional
        Sample drift used when no explicit offset is given (default: none).
    seed : int
        Seed of the layout, textures and cycles.
    dose_rate_e_per_px_per_s : float, e/px/s
        Electrons per unbinned pixel per second at intensity 1 (default 1200, i.e. 60 e/px in 50 ms).
    support_contrast, thickness_contrast, fringe_contrast, molten_contrast : float
        Contrast of the model terms (module docstring).
    edge_width_px : float, px
        Width of the particle's edge ramp (default 1.5 px, at most 4 px); the truth radius is the middle of the edge.
    """

    def __init__(self, *, shape_px: tuple[int, int] = (1024, 1024), pixel_size_nm: float = 0.06,
                 n_particles: int | None = None, radius_range_nm: tuple[float, float] = (1.8, 4.5),
                 lattice_spacings_nm: typing.Sequence[float] = (0.235, 0.272, 0.313),
                 melt_period_s: float | None = 20.0, molten_duration_s: float = 4.0,
                 drift: DriftModel | None = None, seed: int = 0, dose_rate_e_per_px_per_s: float = 1200.0,
                 support_contrast: float = 0.08, thickness_contrast: float = 0.3, fringe_contrast: float = 0.25,
                 molten_contrast: float = 0.15, edge_width_px: float = 1.5) -> None:
        h, w = _check_shape(shape_px)
        self.shape_px = (h, w)
        self.pixel_size_nm = _positive("pixel_size_nm", pixel_size_nm)
        r_min, r_max = (float(v) for v in radius_range_nm)
        if not (0.0 < r_min <= r_max):
            raise SimulatorParameterError(
                f"radius_range_nm must be (min, max) with 0 < min <= max; got {radius_range_nm!r}.")
        spacings = tuple(float(s) for s in lattice_spacings_nm)
        if not spacings or min(spacings) / self.pixel_size_nm < 2.5:
            raise SimulatorParameterError(
                f"lattice_spacings_nm must be non-empty and each >= 2.5 px ({2.5 * self.pixel_size_nm:.3f} nm at "
                f"pixel_size_nm={self.pixel_size_nm}); got {lattice_spacings_nm!r}. Remedy: use a smaller pixel size.")
        self.lattice_spacings_nm = spacings
        self.radius_range_nm = (r_min, r_max)
        if melt_period_s is not None:
            melt_period_s = _positive("melt_period_s", melt_period_s)
            if not (0.0 <= molten_duration_s < melt_period_s):
                raise SimulatorParameterError(
                    f"molten_duration_s must be in [0, melt_period_s={melt_period_s}); got {molten_duration_s!r}.")
        self.melt_period_s = melt_period_s
        self.molten_duration_s = float(molten_duration_s)
        self.drift = drift if drift is not None else DriftModel()
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SimulatorParameterError(f"seed must be a non-negative integer; got {seed!r}.")
        self.seed = int(seed)
        self.dose_rate_e_per_px_per_s = _non_negative("dose_rate_e_per_px_per_s", dose_rate_e_per_px_per_s)
        self.support_contrast = _non_negative("support_contrast", support_contrast)
        self.thickness_contrast = _non_negative("thickness_contrast", thickness_contrast)
        self.fringe_contrast = _non_negative("fringe_contrast", fringe_contrast)
        self.molten_contrast = _non_negative("molten_contrast", molten_contrast)
        self.edge_width_px = _positive("edge_width_px", edge_width_px)
        if self.edge_width_px > 4.0:
            raise SimulatorParameterError(
                f"edge_width_px must be in (0, 4] px (the particle patches hold R + 2 px); got {edge_width_px!r}.")
        if (self.thickness_contrast + max(self.fringe_contrast, 3 * self.molten_contrast) >= 1.0
                or self.support_contrast >= 0.25):
            raise SimulatorParameterError(
                "contrasts too large: need thickness + max(fringe, 3*molten) < 1 and support < 0.25 so that "
                f"intensities stay positive; got thickness {self.thickness_contrast}, fringe {self.fringe_contrast}, "
                f"molten {self.molten_contrast}, support {self.support_contrast}. Remedy: lower them.")

        r_max_px = r_max / self.pixel_size_nm
        self.pad_px = int(math.ceil(r_max_px)) + 3
        self.tile_shape_px = (h + 2 * self.pad_px, w + 2 * self.pad_px)
        if n_particles is None:
            n_particles = max(1, int(round(10 * h * w / 1024 ** 2)))
        if isinstance(n_particles, bool) or not isinstance(n_particles, (int, np.integer)) or n_particles < 0:
            raise SimulatorParameterError(f"n_particles must be a non-negative integer; got {n_particles!r}.")
        self.n_particles = int(n_particles)

        self.__particles = self.__place_particles()
        support_rng = np.random.default_rng([self.seed, _STREAM_SUPPORT])
        texture = _band_pass_noise(self.tile_shape_px, support_rng, period_px=0.35 / self.pixel_size_nm, width=0.5,
                                   low_pass_weight=0.35, low_pass_px=2.0 / self.pixel_size_nm)
        self.__support = (1.0 + self.support_contrast * texture).astype(np.float32)
        self.__tile = self.__support.copy()
        self.__tile_states: list[_CycleState | None] = [None] * self.n_particles
        self.__orientations: list[list[float]] = [[] for _ in range(self.n_particles)]
        self.__lock = threading.Lock()

    # --- layout

    def __place_particles(self) -> tuple[_Particle, ...]:
        rng = np.random.default_rng([self.seed, _STREAM_LAYOUT])
        ph, pw = self.tile_shape_px
        r_min, r_max = self.radius_range_nm
        boxes: list[tuple[int, int, int, int]] = []
        particles: list[_Particle] = []
        for _ in range(self.n_particles):
            for _attempt in range(5000):
                radius = rng.uniform(r_min, r_max) / self.pixel_size_nm
                half = int(math.ceil(radius)) + 2
                cy = rng.uniform(half, ph - half - 1)
                cx = rng.uniform(half, pw - half - 1)
                box = (int(math.floor(cy)) - half, int(math.floor(cy)) + half + 2,
                       int(math.floor(cx)) - half, int(math.floor(cx)) + half + 2)
                if all(box[1] <= b[0] or b[1] <= box[0] or box[3] <= b[2] or b[3] <= box[2] for b in boxes):
                    break
            else:
                raise SimulatorParameterError(
                    f"cannot place {self.n_particles} non-overlapping particles of radius up to {r_max} nm in a "
                    f"{self.shape_px} px frame at {self.pixel_size_nm} nm/px. Remedy: fewer or smaller particles.")
            boxes.append(box)
            phase = rng.uniform(0.0, self.melt_period_s) if self.melt_period_s is not None else 0.0
            particles.append(_Particle((float(cy), float(cx)), float(radius), box, float(phase)))
        return tuple(particles)

    # --- cycles

    def __cycle_state(self, k: int, t_s: float) -> _CycleState:
        if self.melt_period_s is None:
            return _CycleState(0, False)
        u = t_s + self.__particles[k].phase_s
        cycle = int(math.floor(u / self.melt_period_s))
        molten = (u - cycle * self.melt_period_s) >= self.melt_period_s - self.molten_duration_s
        return _CycleState(cycle, bool(molten))

    def __orientation_deg(self, k: int, cycle: int) -> float:
        orientations = self.__orientations[k]
        while len(orientations) <= cycle:
            n = len(orientations)
            rng = np.random.default_rng([self.seed, _STREAM_CYCLE, k, n])
            if n == 0:
                orientations.append(float(rng.uniform(0.0, 180.0)))
            else:
                orientations.append(float((orientations[-1] + rng.uniform(20.0, 160.0)) % 180.0))
        return orientations[cycle]

    def __cycle_lattice(self, k: int, cycle: int) -> tuple[float, float, float]:
        """(orientation_deg, spacing_nm, fringe phase rad) of cycle ``cycle`` of particle ``k``."""
        rng = np.random.default_rng([self.seed, _STREAM_PHASE, k, cycle])
        spacing = self.lattice_spacings_nm[int(rng.integers(0, len(self.lattice_spacings_nm)))]
        return self.__orientation_deg(k, cycle), spacing, float(rng.uniform(0.0, 2.0 * math.pi))

    # --- composition

    def __particle_transmission(self, k: int, state: _CycleState) -> Float32Array:
        p = self.__particles[k]
        y0, y1, x0, x1 = p.box
        dy = (np.arange(y0, y1, dtype=np.float64) - p.centre_tile[0])[:, np.newaxis]
        dx = (np.arange(x0, x1, dtype=np.float64) - p.centre_tile[1])[np.newaxis, :]
        thickness = _edge_profile(np.sqrt(dy * dy + dx * dx), p.radius_px, self.edge_width_px)
        transmission = 1.0 - self.thickness_contrast * thickness
        if state.molten:
            rng = np.random.default_rng([self.seed, _STREAM_MOLTEN, k, state.cycle])
            texture = _band_pass_noise((y1 - y0, x1 - x0), rng, period_px=0.3 / self.pixel_size_nm, width=0.4)
            transmission = transmission + self.molten_contrast * thickness * texture
        else:
            orientation_deg, spacing_nm, phase = self.__cycle_lattice(k, state.cycle)
            theta = math.radians(orientation_deg)
            spacing_px = spacing_nm / self.pixel_size_nm
            # counter-clockwise on screen (y up): the wave vector's row component is -sin(theta)
            gy, gx = -math.sin(theta) / spacing_px, math.cos(theta) / spacing_px
            fringes = np.cos(2.0 * math.pi * (gy * dy + gx * dx) + phase)
            transmission = transmission + self.fringe_contrast * thickness * fringes
        return transmission.astype(np.float32)

    def __update_tile(self, t_s: float) -> None:
        for k, p in enumerate(self.__particles):
            state = self.__cycle_state(k, t_s)
            if state != self.__tile_states[k]:
                y0, y1, x0, x1 = p.box
                self.__tile[y0:y1, x0:x1] = self.__support[y0:y1, x0:x1] * self.__particle_transmission(k, state)
                self.__tile_states[k] = state

    # --- public API

    def offset_nm(self, t_s: float) -> FloatArray:
        """The scene's own drift offset ``(y, x)`` nm at ``t_s``."""
        return self.drift.offset_nm(t_s)

    def clean_image(self, t_s: float, *, offset_nm: ArrayLike | None = None,
                    area: tuple[int, int, int, int] | None = None, binning: int = 1,
                    margin_px: int = 0) -> Float32Array:
        """Noise-free intensity (1 = support mean), float32 ``(h // binning, w // binning)``; binning sums.

        ``margin_px`` (a multiple of ``binning``) extends the area by that many unbinned pixels on every side (the
        specimen continues beyond the field of view: what a delocalising contrast transfer brings in)."""
        t_s = _time(t_s)
        offset = self.offset_nm(t_s) if offset_nm is None else _offset(offset_nm)
        top, left, bottom, right = self.__check_area(area)
        b = _binning(binning, bottom - top, right - left)
        if margin_px:
            if margin_px < 0 or margin_px % b:
                raise SimulatorParameterError(f"margin_px must be >= 0 and a multiple of the binning {b}; "
                                              f"got {margin_px!r}.")
            top, left, bottom, right = top - margin_px, left - margin_px, bottom + margin_px, right + margin_px
        sy, sx = offset / self.pixel_size_nm
        ph, pw = self.tile_shape_px
        ty = (top + self.pad_px - sy) % ph
        tx = (left + self.pad_px - sx) % pw
        matrix = np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]], dtype=np.float64)
        with self.__lock:
            self.__update_tile(t_s)
            clean = cv2.warpAffine(self.__tile, matrix, (right - left, bottom - top),
                                   flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_WRAP)
        if b > 1:
            hb, wb = (bottom - top) // b, (right - left) // b
            # INTER_AREA with an integer factor is the exact block mean; times b*b gives the block sum
            clean = cv2.resize(clean[:hb * b, :wb * b], (wb, hb), interpolation=cv2.INTER_AREA) * float(b * b)
        np.maximum(clean, 0.0, out=clean)
        return typing.cast(Float32Array, clean)

    def render(self, t_s: float, *, exposure_s: float, rng: np.random.Generator, dose_e_per_px: float | None = None,
               offset_nm: ArrayLike | None = None, area: tuple[int, int, int, int] | None = None, binning: int = 1,
               noise: bool = True, normal_threshold: float = DEFAULT_NORMAL_THRESHOLD) -> Float32Array:
        """Render one frame (electrons per output pixel) at time ``t_s``.

        Parameters
        ----------
        t_s : float, s
            Scene time (>= 0): drift, melt state.
        exposure_s : float, s
            Exposure; the dose is ``dose_rate_e_per_px_per_s * exposure_s`` unless ``dose_e_per_px`` is given.
        rng : numpy.random.Generator
            Noise source.
        dose_e_per_px : float, optional, e per unbinned pixel at intensity 1
            Overrides the dose computed from the exposure.
        offset_nm : (y, x) nm, optional
            Content offset; default ``self.drift.offset_nm(t_s)``.
        area : (top, left, bottom, right) px, optional
            Readout area in frame coordinates (default: the whole frame).
        binning : int
            Sum ``binning x binning`` blocks (the area is cropped to a multiple).
        noise : bool
            False returns the expected counts (no shot noise).

        Returns
        -------
        ndarray (h // binning, w // binning), float32, electrons
        """
        if dose_e_per_px is None:
            dose = self.dose_rate_e_per_px_per_s * _non_negative("exposure_s", exposure_s)
        else:
            dose = _non_negative("dose_e_per_px", dose_e_per_px)
        expected = self.clean_image(t_s, offset_nm=offset_nm, area=area, binning=binning)
        expected *= np.float32(dose)
        if not noise:
            return expected
        return shot_noise(expected, rng, normal_threshold=normal_threshold)

    def truth(self, t_s: float, *, offset_nm: ArrayLike | None = None) -> SceneTruth:
        """Ground truth at ``t_s`` (with the same ``offset_nm`` as given to :meth:`render`)."""
        t_s = _time(t_s)
        offset = self.offset_nm(t_s) if offset_nm is None else _offset(offset_nm)
        shift = offset / self.pixel_size_nm
        h, w = self.shape_px
        ph, pw = self.tile_shape_px
        particles = []
        with self.__lock:
            states = [self.__cycle_state(k, t_s) for k in range(self.n_particles)]
            lattices = [self.__cycle_lattice(k, states[k].cycle) for k in range(self.n_particles)]
        for k, p in enumerate(self.__particles):
            cy = (p.centre_tile[0] - self.pad_px + shift[0] + self.pad_px) % ph - self.pad_px
            cx = (p.centre_tile[1] - self.pad_px + shift[1] + self.pad_px) % pw - self.pad_px
            r = p.radius_px
            state = states[k]
            orientation_deg, spacing_nm, _phase = lattices[k]
            visible = (-r < cy < h - 1 + r) and (-r < cx < w - 1 + r)
            inside = (r <= cy <= h - 1 - r) and (r <= cx <= w - 1 - r)
            particles.append(ParticleTruth(
                index=k, centre_px=(float(cy), float(cx)), radius_px=r, radius_nm=r * self.pixel_size_nm,
                orientation_deg=orientation_deg, spacing_nm=spacing_nm, spacing_px=spacing_nm / self.pixel_size_nm,
                molten=state.molten, cycle=state.cycle, visible=bool(visible), inside_frame=bool(inside)))
        return SceneTruth(t_s=t_s, offset_nm=offset, offset_px=shift, pixel_size_nm=self.pixel_size_nm,
                          shape_px=self.shape_px, particles=tuple(particles))

    def next_transition_s(self, t_s: float) -> float:
        """Earliest time > ``t_s`` at which any particle melts or recrystallises (inf if never)."""
        if self.melt_period_s is None or self.n_particles == 0:
            return math.inf
        period = self.melt_period_s
        best = math.inf
        for p in self.__particles:
            u = t_s + p.phase_s
            for edge in (period - self.molten_duration_s, period):
                n = math.floor((u - edge) / period) + 1
                best = min(best, n * period + edge - p.phase_s)
        return best

    def __check_area(self, area: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
        h, w = self.shape_px
        if area is None:
            return 0, 0, h, w
        try:
            top, left, bottom, right = (int(v) for v in area)
        except (TypeError, ValueError):
            raise SimulatorParameterError(f"area must be (top, left, bottom, right); got {area!r}.") from None
        if not (0 <= top < bottom <= h and 0 <= left < right <= w):
            raise SimulatorParameterError(
                f"area {area!r} must lie inside the {h}x{w} frame with top < bottom and left < right.")
        return top, left, bottom, right


def _edge_profile(r_px: FloatArray, radius_px: float, edge_width_px: float) -> FloatArray:
    """Relative projected thickness of a faceted particle at distance ``r_px`` from its centre: 1 inside, a linear
    ramp of width ``edge_width_px`` centred on ``radius_px`` (value 1/2 there), 0 outside."""
    return typing.cast(FloatArray, np.clip((radius_px - r_px) / edge_width_px + 0.5, 0.0, 1.0))


def _check_shape(shape_px: typing.Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape_px)
    except (TypeError, ValueError):
        raise SimulatorParameterError(f"shape_px must be (height, width); got {shape_px!r}.") from None
    if not (16 <= h <= 16384 and 16 <= w <= 16384):
        raise SimulatorParameterError(f"shape_px sides must be between 16 and 16384 px; got {shape_px!r}.")
    return h, w


def _positive(name: str, value: float) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0.0):
        raise SimulatorParameterError(f"{name} must be finite and > 0; got {value!r}.")
    return v


def _non_negative(name: str, value: float) -> float:
    v = float(value)
    if not (math.isfinite(v) and v >= 0.0):
        raise SimulatorParameterError(f"{name} must be finite and >= 0; got {value!r}.")
    return v


def _time(t_s: float) -> float:
    t = float(t_s)
    if not (math.isfinite(t) and t >= 0.0):
        raise SimulatorParameterError(f"t_s must be finite and >= 0 s; got {t_s!r}.")
    return t


def _offset(offset_nm: ArrayLike) -> FloatArray:
    offset = np.asarray(offset_nm, dtype=np.float64)
    if offset.shape != (2,) or not bool(np.isfinite(offset).all()):
        raise SimulatorParameterError(f"offset_nm must be a finite (y, x) pair in nm; got {offset_nm!r}.")
    return offset


def _binning(binning: int, h: int, w: int) -> int:
    if isinstance(binning, bool) or not isinstance(binning, (int, np.integer)) or binning < 1 or binning > min(h, w):
        raise SimulatorParameterError(f"binning must be an integer between 1 and the area size {min(h, w)}; "
                                      f"got {binning!r}.")
    return int(binning)
