"""Simulated samples: what the probe sees at any position (nm), noise-free, plus drift-free truth renderings.

Pure numpy; no Swift import. Positions are sample coordinates in nm, (y, x), any array shape. Every quantity is
a deterministic function of position (and of the sample's seed), so the scan can render the sample at
``position + drift(t_pixel)`` pixel by pixel and a test can render the same field without drift as ground truth.

Samples
-------
* :class:`PerovskiteSample` ("perovskite"): a DyScO3-like ABO3 perovskite seen along a pseudo-cubic [100] axis:
  pure Dy columns (A sites), Sc+O columns (B sites) and pure O columns. HAADF ~ sum_i n_i Z_i^gamma (gamma 1.7)
  blurred by the probe; each column contributes its elements' edges (atoms under the probe, with a settable EELS
  delocalisation). Non-periodic detail (per-column occupancy scatter, slow thickness variation) makes images
  registrable.
* :class:`NanoparticleSample` ("nanoparticles"): metal (Ag) spheres on a thin amorphous carbon support; HAADF from
  the projected thickness; an EEGS near-field coupling map that decays away from the particles and an optical
  resonance (centre, Q).

Example
-------
>>> s = make_sample("perovskite", seed=1)
>>> y, x = scan_positions_nm((8, 8), fov_size_nm=(2.0, 2.0), center_nm=(0.0, 0.0))
>>> s.scattering(y, x)["HAADF"].shape
(8, 8)
"""
from __future__ import annotations

import abc
import dataclasses
import math
import typing

import numpy as np
from numpy.typing import NDArray

from instrument_sim import pinem
from instrument_sim.eels_physics import FWHM_PER_SIGMA, EdgeTable, SpectrumModel, load_edge_table
from instrument_sim.errors import SimulatorParameterError

__all__ = [
    "HAADF_FRACTION_PER_ATOM_ZGAMMA", "Sample", "PerovskiteSample", "NanoparticleSample", "LaserState",
    "SAMPLE_NAMES", "make_sample", "scan_positions_nm", "truth_image", "expected_spectra", "truth_spectrum_image",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: HAADF detector: fraction of the incident electrons scattered onto it per atom under the probe, per Z^gamma.
HAADF_FRACTION_PER_ATOM_ZGAMMA = 2.0e-6
#: MAADF detector: the same for its (lower) exponent.
MAADF_FRACTION_PER_ATOM_ZGAMMA = 1.2e-5
MAADF_GAMMA = 1.2
CHANNELS = ("HAADF", "MAADF")


def _check_channels(channels: typing.Iterable[str]) -> tuple[str, ...]:
    names = tuple(channels)
    for name in names:
        if name not in CHANNELS:
            raise SimulatorParameterError(f"unknown detector channel {name!r}; channels: {CHANNELS}.")
    return names


def _as_positions(y_nm: typing.Any, x_nm: typing.Any) -> tuple[FloatArray, FloatArray]:
    y = np.asarray(y_nm, dtype=np.float64)
    x = np.asarray(x_nm, dtype=np.float64)
    if y.shape != x.shape:
        y, x = np.broadcast_arrays(y, x)
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(x))):
        raise SimulatorParameterError("probe positions must be finite numbers (nm); got NaN or inf.")
    return y, x


def _hash_uniform(*keys: NDArray[np.int64], seed: int) -> FloatArray:
    """Deterministic uniform [0, 1) numbers from integer keys (splitmix64 mixing); shape of the broadcast keys."""
    h = np.full(np.broadcast(*keys).shape, np.uint64(seed * 0x9E3779B97F4A7C15 % (1 << 64)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in keys:
            h = h ^ (np.asarray(k).astype(np.int64).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(31))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class _SmoothField:
    """A smooth random field (sum of a few plane waves), mean 0, amplitude ~1; deterministic per seed."""

    def __init__(self, *, seed: int, wavelengths_nm: tuple[float, float], n_waves: int = 6) -> None:
        rng = np.random.default_rng(seed)
        lam = rng.uniform(*wavelengths_nm, n_waves)
        angle = rng.uniform(0, 2 * math.pi, n_waves)
        self._ky = 2 * math.pi / lam * np.sin(angle)
        self._kx = 2 * math.pi / lam * np.cos(angle)
        self._phase = rng.uniform(0, 2 * math.pi, n_waves)
        self._norm = math.sqrt(2.0 / n_waves)

    def __call__(self, y: FloatArray, x: FloatArray) -> FloatArray:
        out = np.zeros(y.shape, dtype=np.float64)
        for ky, kx, ph in zip(self._ky, self._kx, self._phase):
            out += np.cos(ky * y + kx * x + ph)
        return out * self._norm


class Sample(abc.ABC):
    """What the probe sees at a position: detector signals, atoms under the probe, t/lambda, EEGS coupling."""

    name: str = ""
    #: materials whose low-loss (plasmon, background) the spectrum uses; index = :meth:`material_index`.
    materials: tuple[str, ...] = ()
    #: elements that contribute core-loss edges.
    elements: tuple[str, ...] = ()
    #: optical resonance of the sample's near field (EEGS): centre (eV) and quality factor.
    resonance_center_eV: float = 2.5
    resonance_q: float = 10.0

    @abc.abstractmethod
    def scattering(self, y_nm: typing.Any, x_nm: typing.Any, *,
                   channels: typing.Iterable[str] = CHANNELS) -> dict[str, FloatArray]:
        """Fraction of the incident electrons reaching each annular detector in ``channels`` ("HAADF", "MAADF")."""

    @abc.abstractmethod
    def composition(self, y_nm: typing.Any, x_nm: typing.Any) -> dict[str, FloatArray]:
        """Atoms of each element under the probe (EELS-weighted), per position."""

    @abc.abstractmethod
    def t_over_mfp(self, y_nm: typing.Any, x_nm: typing.Any) -> FloatArray:
        """Thickness over inelastic mean free path at each position."""

    def material_index(self, y_nm: typing.Any, x_nm: typing.Any) -> IntArray:
        """Index into :attr:`materials` of the low-loss material at each position."""
        y, _ = _as_positions(y_nm, x_nm)
        return np.zeros(y.shape, dtype=np.int64)

    def coupling(self, y_nm: typing.Any, x_nm: typing.Any) -> FloatArray:
        """EEGS near-field coupling 0..1 at each position (0: no electron-light interaction)."""
        y, _ = _as_positions(y_nm, x_nm)
        return np.zeros(y.shape, dtype=np.float64)

    def settings(self) -> dict[str, typing.Any]:
        """The sample's parameters (JSON-serialisable), for metadata and persistence."""
        return {"name": self.name}


class PerovskiteSample(Sample):
    """DyScO3-like perovskite lattice of atomic columns (pseudo-cubic [100] projection).

    Parameters (keyword-only)
    -------------------------
    a_nm : pseudo-cubic lattice parameter (0.395 nm).
    thickness_nm : mean specimen thickness; atoms per column = thickness / a.
    probe_fwhm_nm : probe size for the annular detectors.
    eels_fwhm_nm : effective EELS probe/delocalisation width (column-to-column cross-talk of the edges).
    gamma : HAADF Z exponent (~1.7).
    rotation_rad : in-plane orientation of the lattice.
    occupancy_scatter : relative per-column scatter of the column occupancy (non-periodic detail).
    thickness_variation : relative amplitude of a slow thickness variation (wavelengths 8-30 nm).
    seed : fixes the column scatter and the thickness variation.
    """

    name = "perovskite"
    materials = ("DyScO3",)
    elements = ("Dy", "Sc", "O")
    # site (u, v) in the unit cell, and atoms of each element per cell along the beam
    _SITES: tuple[tuple[float, float, dict[str, int]], ...] = (
        (0.0, 0.0, {"Dy": 1}),
        (0.5, 0.5, {"Sc": 1, "O": 1}),
        (0.5, 0.0, {"O": 1}),
        (0.0, 0.5, {"O": 1}),
    )

    def __init__(self, *, a_nm: float = 0.395, thickness_nm: float = 20.0, probe_fwhm_nm: float = 0.09,
                 eels_fwhm_nm: float = 0.12, gamma: float = 1.7, rotation_rad: float = 0.0,
                 occupancy_scatter: float = 0.05, thickness_variation: float = 0.1, seed: int = 0,
                 table: EdgeTable | None = None) -> None:
        for label, value in (("a_nm", a_nm), ("thickness_nm", thickness_nm), ("probe_fwhm_nm", probe_fwhm_nm),
                             ("eels_fwhm_nm", eels_fwhm_nm), ("gamma", gamma)):
            if not (value > 0 and math.isfinite(value)):
                raise SimulatorParameterError(f"PerovskiteSample {label} must be positive and finite; got {value!r}.")
        if not 0 <= occupancy_scatter < 1 or not 0 <= thickness_variation < 1:
            raise SimulatorParameterError(
                f"occupancy_scatter and thickness_variation must be in [0, 1); got {occupancy_scatter!r}, "
                f"{thickness_variation!r}.")
        self.a_nm = float(a_nm)
        self.thickness_nm = float(thickness_nm)
        self.probe_fwhm_nm = float(probe_fwhm_nm)
        self.eels_fwhm_nm = float(eels_fwhm_nm)
        self.gamma = float(gamma)
        self.rotation_rad = float(rotation_rad)
        self.occupancy_scatter = float(occupancy_scatter)
        self.thickness_variation = float(thickness_variation)
        self.seed = int(seed)
        self.table = table if table is not None else load_edge_table()
        self._thickness_field = _SmoothField(seed=self.seed + 101, wavelengths_nm=(8.0, 30.0))
        z = {el: float(self.table.atomic_number(el)) for el in self.elements}
        self._site_zgamma = tuple(sum(n * z[el] ** self.gamma for el, n in s[2].items()) for s in self._SITES)
        self._site_zmaadf = tuple(sum(n * z[el] ** MAADF_GAMMA for el, n in s[2].items()) for s in self._SITES)

    def settings(self) -> dict[str, typing.Any]:
        return {"name": self.name, "a_nm": self.a_nm, "thickness_nm": self.thickness_nm,
                "probe_fwhm_nm": self.probe_fwhm_nm, "eels_fwhm_nm": self.eels_fwhm_nm, "gamma": self.gamma,
                "rotation_rad": self.rotation_rad, "seed": self.seed}

    def column_positions_nm(self, *, fov_size_nm: tuple[float, float], center_nm: tuple[float, float] = (0.0, 0.0)
                            ) -> dict[str, FloatArray]:
        """Positions (N, 2) (y, x) nm of the columns in a field, keyed "Dy", "ScO", "O" (ground truth)."""
        h, w = fov_size_nm
        r = math.hypot(h, w) / 2 / self.a_nm + 2
        iu, iv = np.meshgrid(np.arange(-math.ceil(r), math.ceil(r) + 1), np.arange(-math.ceil(r), math.ceil(r) + 1))
        out: dict[str, list[FloatArray]] = {"Dy": [], "ScO": [], "O": []}
        keys = ("Dy", "ScO", "O", "O")
        cu, cv = self._lattice_coords(np.asarray(center_nm[0]), np.asarray(center_nm[1]))
        for (su, sv, _), key in zip(self._SITES, keys):
            u = (np.floor(cu) + iu + su).ravel().astype(np.float64)
            v = (np.floor(cv) + iv + sv).ravel().astype(np.float64)
            y, x = self._from_lattice(u, v)
            inside = (np.abs(y - center_nm[0]) <= h / 2) & (np.abs(x - center_nm[1]) <= w / 2)
            out[key].append(np.stack([y[inside], x[inside]], axis=1))
        return {k: np.concatenate(v) for k, v in out.items()}

    def _lattice_coords(self, y: FloatArray, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        c, s = math.cos(self.rotation_rad), math.sin(self.rotation_rad)
        return (c * x + s * y) / self.a_nm, (-s * x + c * y) / self.a_nm

    def _from_lattice(self, u: FloatArray, v: FloatArray) -> tuple[FloatArray, FloatArray]:
        c, s = math.cos(self.rotation_rad), math.sin(self.rotation_rad)
        x = (c * u - s * v) * self.a_nm
        y = (s * u + c * v) * self.a_nm
        return y, x

    def _site_weights(self, y: FloatArray, x: FloatArray, fwhm_nm: float) -> FloatArray:
        """Per site of the unit cell, sum over the nearest columns of occupancy * exp(-d^2 / 2 sigma^2): (4,) + shape.

        For each site the four columns of its sub-lattice surrounding the position are summed (every column closer
        than one lattice parameter; farther ones contribute < exp(-a^2 / 2 sigma^2), negligible for sigma << a).
        A column's weight is 1 when the probe sits on it (for unit occupancy).
        """
        u, v = self._lattice_coords(y, x)
        sigma_cells = fwhm_nm / FWHM_PER_SIGMA / self.a_nm
        sites = np.asarray([(s[0], s[1]) for s in self._SITES], dtype=np.float64)  # (4, 2)
        u1, v1 = u.reshape(1, 1, -1), v.reshape(1, 1, -1)
        cu = np.floor(u1 - sites[:, 0, None, None]) + np.asarray([0.0, 0.0, 1.0, 1.0])[None, :, None]  # (4, 4, N)
        cv = np.floor(v1 - sites[:, 1, None, None]) + np.asarray([0.0, 1.0, 0.0, 1.0])[None, :, None]
        d2 = (u1 - cu - sites[:, 0, None, None]) ** 2 + (v1 - cv - sites[:, 1, None, None]) ** 2
        weight = np.exp((-0.5 / (sigma_cells * sigma_cells)) * d2)
        if self.occupancy_scatter > 0:
            site_index = np.arange(4, dtype=np.int64)[:, None, None]
            rnd = _hash_uniform(cu.astype(np.int64), cv.astype(np.int64), site_index, seed=self.seed)
            weight *= 1.0 + self.occupancy_scatter * math.sqrt(12.0) * (rnd - 0.5)
        out: FloatArray = weight.sum(axis=1).reshape((4,) + y.shape)
        return out

    def _column_sum(self, y: FloatArray, x: FloatArray, fwhm_nm: float,
                    site_values: typing.Sequence[float]) -> FloatArray:
        """sum over columns of site_value * occupancy * exp(-d^2 / 2 sigma^2) (peak 1 on a column)."""
        return typing.cast(FloatArray, np.tensordot(np.asarray(site_values, dtype=np.float64),
                                                    self._site_weights(y, x, fwhm_nm), axes=1))

    def _atoms_per_column(self, y: FloatArray, x: FloatArray) -> FloatArray:
        t = self.thickness_nm * (1.0 + self.thickness_variation * self._thickness_field(y, x))
        return t / self.a_nm

    def scattering(self, y_nm: typing.Any, x_nm: typing.Any, *,
                   channels: typing.Iterable[str] = CHANNELS) -> dict[str, FloatArray]:
        y, x = _as_positions(y_nm, x_nm)
        n = self._atoms_per_column(y, x)
        out: dict[str, FloatArray] = {}
        for channel in _check_channels(channels):
            if channel == "HAADF":
                out[channel] = HAADF_FRACTION_PER_ATOM_ZGAMMA * n * self._column_sum(
                    y, x, self.probe_fwhm_nm, self._site_zgamma)
            else:
                out[channel] = MAADF_FRACTION_PER_ATOM_ZGAMMA * n * self._column_sum(
                    y, x, 1.5 * self.probe_fwhm_nm, self._site_zmaadf)
        return out

    def composition(self, y_nm: typing.Any, x_nm: typing.Any) -> dict[str, FloatArray]:
        y, x = _as_positions(y_nm, x_nm)
        n = self._atoms_per_column(y, x)
        weights = self._site_weights(y, x, self.eels_fwhm_nm)
        return {el: n * np.tensordot(np.asarray([float(s[2].get(el, 0)) for s in self._SITES]), weights, axes=1)
                for el in self.elements}

    def t_over_mfp(self, y_nm: typing.Any, x_nm: typing.Any) -> FloatArray:
        y, x = _as_positions(y_nm, x_nm)
        mfp = self.table.material(self.materials[0]).mean_free_path_nm
        return self._atoms_per_column(y, x) * self.a_nm / mfp


class NanoparticleSample(Sample):
    """Metal nanoparticles (spheres) on a thin amorphous support, for plasmons and EEGS.

    Parameters (keyword-only)
    -------------------------
    particle_material / particle_element : low-loss material and core-loss element of the particles ("Ag").
    support_thickness_nm : carbon support thickness.
    n_particles, radius_range_nm, field_nm : particles placed (seeded, non-overlapping) in a square field of side
        ``field_nm`` centred on 0; ``centers_nm`` / ``radii_nm`` give them explicitly instead.
    decay_length_nm : decay of the near-field coupling away from a particle surface.
    resonance_center_eV, resonance_q : the particles' optical resonance.
    probe_area_nm2 : area over which "atoms under the probe" are counted.
    seed : fixes particle placement and support texture.
    """

    name = "nanoparticles"
    _DENSITY_PER_NM3 = {"Ag": 58.6, "Au": 59.0, "C": 100.0}

    def __init__(self, *, particle_material: str = "Ag", particle_element: str = "Ag",
                 support_thickness_nm: float = 10.0, n_particles: int = 12,
                 radius_range_nm: tuple[float, float] = (5.0, 20.0), field_nm: float = 300.0,
                 centers_nm: typing.Sequence[tuple[float, float]] | None = None,
                 radii_nm: typing.Sequence[float] | None = None, decay_length_nm: float = 15.0,
                 resonance_center_eV: float = 2.4, resonance_q: float = 12.0, probe_area_nm2: float = 0.05,
                 seed: int = 0, table: EdgeTable | None = None) -> None:
        self.table = table if table is not None else load_edge_table()
        self.table.material(particle_material)
        self.table.edges(particle_element)
        if not (support_thickness_nm >= 0 and decay_length_nm > 0 and probe_area_nm2 > 0):
            raise SimulatorParameterError(
                f"support_thickness_nm must be >= 0, decay_length_nm and probe_area_nm2 > 0; got "
                f"{support_thickness_nm!r}, {decay_length_nm!r}, {probe_area_nm2!r}.")
        self.particle_material = particle_material
        self.particle_element = particle_element
        self.materials = (particle_material, "C")
        self.elements = tuple(dict.fromkeys((particle_element, "C")))
        self.support_thickness_nm = float(support_thickness_nm)
        self.decay_length_nm = float(decay_length_nm)
        self.resonance_center_eV = float(resonance_center_eV)
        self.resonance_q = float(resonance_q)
        self.probe_area_nm2 = float(probe_area_nm2)
        self.seed = int(seed)
        if centers_nm is not None:
            centers = np.asarray(centers_nm, dtype=np.float64).reshape(-1, 2)
            radii = np.asarray(radii_nm if radii_nm is not None else [10.0] * len(centers), dtype=np.float64)
            if radii.shape != (len(centers),) or np.any(radii <= 0):
                raise SimulatorParameterError(
                    f"radii_nm must give one positive radius per centre ({len(centers)}); got {radii_nm!r}.")
        else:
            centers, radii = self._place(n_particles, radius_range_nm, field_nm)
        self.centers_nm = centers
        self.radii_nm = radii
        self._support_field = _SmoothField(seed=self.seed + 7, wavelengths_nm=(3.0, 40.0), n_waves=10)

    def _place(self, n: int, radius_range_nm: tuple[float, float], field_nm: float) -> tuple[FloatArray, FloatArray]:
        rng = np.random.default_rng(self.seed)
        centers: list[tuple[float, float]] = []
        radii: list[float] = []
        for _ in range(200 * max(n, 1)):
            if len(centers) >= n:
                break
            r = float(rng.uniform(*radius_range_nm))
            c = rng.uniform(-field_nm / 2 + r, field_nm / 2 - r, 2)
            if all(math.hypot(c[0] - cy, c[1] - cx) > r + rr + 2.0 for (cy, cx), rr in zip(centers, radii)):
                centers.append((float(c[0]), float(c[1])))
                radii.append(r)
        return np.asarray(centers, dtype=np.float64).reshape(-1, 2), np.asarray(radii, dtype=np.float64)

    def settings(self) -> dict[str, typing.Any]:
        return {"name": self.name, "particle_material": self.particle_material,
                "support_thickness_nm": self.support_thickness_nm, "decay_length_nm": self.decay_length_nm,
                "resonance_center_eV": self.resonance_center_eV, "resonance_q": self.resonance_q,
                "centers_nm": self.centers_nm.tolist(), "radii_nm": self.radii_nm.tolist(), "seed": self.seed}

    def particle_thickness_nm(self, y_nm: typing.Any, x_nm: typing.Any) -> FloatArray:
        """Projected particle thickness 2 sqrt(R^2 - r^2) (sum over particles), nm."""
        y, x = _as_positions(y_nm, x_nm)
        t = np.zeros(y.shape, dtype=np.float64)
        for (cy, cx), r in zip(self.centers_nm, self.radii_nm):
            d2 = (y - cy) ** 2 + (x - cx) ** 2
            t += 2.0 * np.sqrt(np.maximum(r * r - d2, 0.0))
        return t

    def _support_thickness(self, y: FloatArray, x: FloatArray) -> FloatArray:
        return self.support_thickness_nm * (1.0 + 0.25 * self._support_field(y, x))

    def composition(self, y_nm: typing.Any, x_nm: typing.Any) -> dict[str, FloatArray]:
        y, x = _as_positions(y_nm, x_nm)
        tp = self.particle_thickness_nm(y, x)
        ts = self._support_thickness(y, x)
        out = {self.particle_element: self._DENSITY_PER_NM3.get(self.particle_element, 60.0) * tp * self.probe_area_nm2}
        out["C"] = out.get("C", 0.0) + self._DENSITY_PER_NM3["C"] * ts * self.probe_area_nm2
        return out

    def scattering(self, y_nm: typing.Any, x_nm: typing.Any, *,
                   channels: typing.Iterable[str] = CHANNELS) -> dict[str, FloatArray]:
        _check_channels(channels)
        comp = self.composition(y_nm, x_nm)
        haadf = np.zeros_like(next(iter(comp.values())))
        maadf = np.zeros_like(haadf)
        for el, atoms in comp.items():
            z = float(self.table.atomic_number(el))
            haadf += HAADF_FRACTION_PER_ATOM_ZGAMMA * atoms * z ** 1.7
            maadf += MAADF_FRACTION_PER_ATOM_ZGAMMA * atoms * z ** MAADF_GAMMA
        return {"HAADF": haadf, "MAADF": maadf}

    def t_over_mfp(self, y_nm: typing.Any, x_nm: typing.Any) -> FloatArray:
        y, x = _as_positions(y_nm, x_nm)
        mp = self.table.material(self.particle_material).mean_free_path_nm
        mc = self.table.material("C").mean_free_path_nm
        return self.particle_thickness_nm(y, x) / mp + self._support_thickness(y, x) / mc

    def material_index(self, y_nm: typing.Any, x_nm: typing.Any) -> IntArray:
        return np.where(self.particle_thickness_nm(y_nm, x_nm) > 0, 0, 1).astype(np.int64)

    def coupling(self, y_nm: typing.Any, x_nm: typing.Any) -> FloatArray:
        y, x = _as_positions(y_nm, x_nm)
        return pinem.coupling_map(y, x, centers_nm=self.centers_nm, radii_nm=self.radii_nm,
                                  decay_length_nm=self.decay_length_nm)


SAMPLE_NAMES = ("perovskite", "nanoparticles")


def make_sample(name: str, *, seed: int = 0, **options: typing.Any) -> Sample:
    """Build a sample by name ("perovskite" = DyScO3-like lattice, "nanoparticles" = Ag particles on carbon)."""
    if name in ("perovskite", "DyScO3"):
        return PerovskiteSample(seed=seed, **options)
    if name in ("nanoparticles", "particles"):
        return NanoparticleSample(seed=seed, **options)
    raise SimulatorParameterError(f"unknown sample {name!r}; choose one of {list(SAMPLE_NAMES)}.")


def scan_positions_nm(shape_px: tuple[int, int], *, fov_size_nm: tuple[float, float],
                      center_nm: tuple[float, float] = (0.0, 0.0), rotation_rad: float = 0.0
                      ) -> tuple[FloatArray, FloatArray]:
    """Probe positions (y, x) in nm of a scan of ``shape_px`` pixels (each (H, W)).

    Pixel (i, j) sits at ``(-fov/2 + i * fov/H, -fov/2 + j * fov/W)`` relative to the scan centre (Swift's scan
    calibration: offset -fov/2, scale fov/N), rotated by ``rotation_rad`` (nion Geometry convention:
    x' = cos x - sin y, y' = sin x + cos y) and shifted by ``center_nm``.
    """
    h, w = int(shape_px[0]), int(shape_px[1])
    if h < 1 or w < 1:
        raise SimulatorParameterError(f"scan shape must be at least 1x1 pixels; got {shape_px!r}.")
    fh, fw = float(fov_size_nm[0]), float(fov_size_nm[1])
    if not (fh > 0 and fw > 0):
        raise SimulatorParameterError(f"fov_size_nm must be positive; got {fov_size_nm!r}.")
    dy = -fh / 2 + np.arange(h, dtype=np.float64) * (fh / h)
    dx = -fw / 2 + np.arange(w, dtype=np.float64) * (fw / w)
    yy, xx = np.meshgrid(dy, dx, indexing="ij")
    c, s = math.cos(rotation_rad), math.sin(rotation_rad)
    x = c * xx - s * yy + float(center_nm[1])
    y = s * xx + c * yy + float(center_nm[0])
    return y, x


def truth_image(sample: Sample, *, shape_px: tuple[int, int], fov_size_nm: tuple[float, float],
                center_nm: tuple[float, float] = (0.0, 0.0), rotation_rad: float = 0.0,
                electrons_per_pixel: float = 1.0, channel: str = "HAADF") -> FloatArray:
    """Drift-free, noise-free detector image of a field: expected counts (H, W) = fraction * electrons."""
    if channel not in CHANNELS:
        raise SimulatorParameterError(f"channel must be one of {CHANNELS}; got {channel!r}.")
    y, x = scan_positions_nm(shape_px, fov_size_nm=fov_size_nm, center_nm=center_nm, rotation_rad=rotation_rad)
    return sample.scattering(y, x, channels=(channel,))[channel] * electrons_per_pixel


@dataclasses.dataclass(frozen=True)
class LaserState:
    """Laser settings relevant to the spectrum (see :mod:`instrument_sim.pinem`).

    power_mW is the average power; during a pulse the power is power / (width * frequency).
    beta_squared_per_mW: |beta|^2 per mW of peak power at full coupling and on resonance (the "laser coupling").
    """

    wavelength_nm: float = 532.0
    power_mW: float = 0.0
    shutter_open: bool = False
    pulse_frequency_Hz: float = 0.0
    pulse_width_s: float = 0.0
    pulse_delay_s: float = 0.0
    blanker_duty: float = 1.0
    beta_squared_per_mW: float = 0.5

    @property
    def peak_power_mW(self) -> float:
        duty = self.pulse_width_s * self.pulse_frequency_Hz
        return self.power_mW / duty if 0 < duty < 1 else self.power_mW

    @property
    def on_fraction(self) -> float:
        return pinem.laser_on_fraction(shutter_open=self.shutter_open, pulse_frequency_Hz=self.pulse_frequency_Hz,
                                       pulse_width_s=self.pulse_width_s, pulse_delay_s=self.pulse_delay_s,
                                       blanker_duty=self.blanker_duty)

    def beta_at(self, sample: Sample, y_nm: typing.Any, x_nm: typing.Any) -> FloatArray:
        """|beta| at probe positions for this laser on ``sample``."""
        resonance = pinem.lorentzian_resonance(pinem.photon_energy_eV(self.wavelength_nm),
                                               center_eV=sample.resonance_center_eV, q_factor=sample.resonance_q)
        return pinem.beta_abs(peak_power_mW=self.peak_power_mW, coupling=sample.coupling(y_nm, x_nm),
                              resonance=resonance, beta_squared_per_mW=self.beta_squared_per_mW)


def expected_spectra(sample: Sample, model: SpectrumModel, y_nm: typing.Any, x_nm: typing.Any, *,
                     electrons: float | FloatArray, shift_eV: float = 0.0,
                     laser: LaserState | None = None) -> FloatArray:
    """Noise-free spectra (expected electrons per channel) at probe positions: shape positions.shape + (C,).

    electrons: incident electrons per position (scalar or positions-shaped); shift_eV: ZLP offset (energy drift);
    laser: EEGS laser state (None or shutter closed: no electron-light interaction).
    """
    y, x = _as_positions(y_nm, x_nm)
    shape = y.shape
    yf, xf = y.reshape(-1), x.reshape(-1)
    e = np.broadcast_to(np.asarray(electrons, dtype=np.float64), shape).reshape(-1)
    comp = {k: v.reshape(-1) for k, v in sample.composition(yf, xf).items()}
    t = sample.t_over_mfp(yf, xf).reshape(-1)
    mat = sample.material_index(yf, xf).reshape(-1)
    out = np.empty((yf.size, model.axis.n_channels), dtype=np.float64)
    betas = laser.beta_at(sample, yf, xf) if laser is not None and laser.on_fraction > 0 else None
    for m_index, material in enumerate(sample.materials):
        sel = np.nonzero(mat == m_index)[0]
        if sel.size == 0:
            continue
        if betas is None:
            basis = model.basis(material=material, elements=sample.elements, shift_eV=shift_eV)
            out[sel] = basis.combine_many(t_over_mfp=t[sel], composition={k: v[sel] for k, v in comp.items()})
            continue
        assert laser is not None
        hw = pinem.photon_energy_eV(laser.wavelength_nm)
        for i in sel:
            def at_shift(s: float, i: int = int(i)) -> FloatArray:
                b = model.basis(material=material, elements=sample.elements, shift_eV=s)
                return b.combine(t_over_mfp=float(t[i]), composition={k: float(v[i]) for k, v in comp.items()})
            out[i] = pinem.apply_pinem(at_shift, beta=float(betas[i]), photon_energy=hw,
                                       on_fraction=laser.on_fraction, shift_eV=shift_eV)
    out *= e[:, None]
    return out.reshape(shape + (model.axis.n_channels,))


def truth_spectrum_image(sample: Sample, model: SpectrumModel, *, shape_px: tuple[int, int],
                         fov_size_nm: tuple[float, float], center_nm: tuple[float, float] = (0.0, 0.0),
                         rotation_rad: float = 0.0, electrons_per_pixel: float = 1.0, shift_eV: float = 0.0,
                         laser: LaserState | None = None) -> FloatArray:
    """Drift-free, noise-free spectrum image of a field: (H, W, C) expected electrons per channel."""
    y, x = scan_positions_nm(shape_px, fov_size_nm=fov_size_nm, center_nm=center_nm, rotation_rad=rotation_rad)
    return expected_spectra(sample, model, y, x, electrons=electrons_per_pixel, shift_eV=shift_eV, laser=laser)
