"""Electron energy-loss spectrum model: zero-loss peak, plasmons, power-law background and core-loss edges.

Pure numpy/scipy; no Swift import. Edge onsets, white lines and material low-loss properties come from the data
table ``instrument_sim/data/edges.json`` (add elements or materials there, not in code).

A spectrum at one probe position is linear in a few coefficients::

    S(E) = N * [ P0 * ZLP(E) + sum_n Pn * Plasmon_n(E) + (t/lambda) * Background(E) + sum_el atoms_el * Edges_el(E) ]

with ``Pn = exp(-t/lambda) (t/lambda)^n / n!`` (Poisson multiple plasmon scattering), ``N`` the electrons in the
exposure and ``atoms_el`` the number of atoms of each element under the probe. Every component is integrated over
each channel's width (erf for Gaussians, arctan for Lorentzians), so the areas are exact whatever the dispersion.
An energy drift (ZLP offset ``shift_eV``) moves the whole spectrum: ``S_measured(E) = S(E - shift_eV)``.

Example
-------
>>> axis = EnergyAxis(offset_eV=-10.0, dispersion_eV_per_channel=0.1, n_channels=200)
>>> model = SpectrumModel(axis, zlp_fwhm_eV=0.3)
>>> s = model.spectrum(electrons=1000.0, t_over_mfp=0.0, material="C", composition={})
>>> round(float(s.sum()), 3)
1000.0
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import typing

import numpy as np
import scipy.special
from numpy.typing import NDArray

from instrument_sim.errors import SimulatorParameterError

__all__ = [
    "Edge", "Material", "EdgeTable", "load_edge_table", "EnergyAxis", "SpectrumModel", "SpectrumBasis",
    "gaussian_bins", "lorentzian_bins", "plasmon_bins", "plasmon_weights", "FWHM_PER_SIGMA",
]

FloatArray = NDArray[np.float64]
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
DEFAULT_TABLE_PATH = pathlib.Path(__file__).parent / "data" / "edges.json"
_PLASMON_ORDERS = 4


@dataclasses.dataclass(frozen=True)
class Edge:
    """One core-loss edge (e.g. Sc L3). See ``data/edges.json`` for the meaning of each field."""

    element: str
    name: str
    onset_eV: float
    step_per_atom_per_eV: float
    decay_exponent: float
    onset_width_eV: float
    white_line_area_eV: float
    white_line_fwhm_eV: float
    white_line_shift_eV: float

    @property
    def label(self) -> str:
        return f"{self.element} {self.name}"


@dataclasses.dataclass(frozen=True)
class Material:
    """Low-loss properties of a material (volume plasmon, inelastic mean free path, power-law background)."""

    name: str
    plasmon_eV: float
    plasmon_fwhm_eV: float
    mean_free_path_nm: float
    background_exponent: float
    background_per_eV_at_100eV: float


class EdgeTable:
    """The element/material table read from JSON: atomic numbers, edges and low-loss properties."""

    def __init__(self, data: typing.Mapping[str, typing.Any], *, source: str = "<dict>") -> None:
        self.source = source
        self._atomic_numbers: dict[str, int] = {}
        self._edges: dict[str, tuple[Edge, ...]] = {}
        self._materials: dict[str, Material] = {}
        try:
            for element, entry in data["elements"].items():
                if element.startswith("_"):
                    continue
                self._atomic_numbers[element] = int(entry["Z"])
                self._edges[element] = tuple(
                    Edge(element=element, name=str(e["name"]), onset_eV=float(e["onset_eV"]),
                         step_per_atom_per_eV=float(e["step_per_atom_per_eV"]),
                         decay_exponent=float(e["decay_exponent"]), onset_width_eV=float(e["onset_width_eV"]),
                         white_line_area_eV=float(e["white_line_area_eV"]),
                         white_line_fwhm_eV=float(e["white_line_fwhm_eV"]),
                         white_line_shift_eV=float(e["white_line_shift_eV"]))
                    for e in entry["edges"])
            for name, entry in data["materials"].items():
                if name.startswith("_"):
                    continue
                self._materials[name] = Material(name=name, plasmon_eV=float(entry["plasmon_eV"]),
                                                 plasmon_fwhm_eV=float(entry["plasmon_fwhm_eV"]),
                                                 mean_free_path_nm=float(entry["mean_free_path_nm"]),
                                                 background_exponent=float(entry["background_exponent"]),
                                                 background_per_eV_at_100eV=float(entry["background_per_eV_at_100eV"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SimulatorParameterError(
                f"edge table {source} is malformed ({exc!r}); each element needs Z and a list of edges with "
                f"onset_eV, step_per_atom_per_eV, decay_exponent, onset_width_eV, white_line_area_eV, "
                f"white_line_fwhm_eV, white_line_shift_eV; each material needs plasmon_eV, plasmon_fwhm_eV, "
                f"mean_free_path_nm, background_exponent, background_per_eV_at_100eV.") from None

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(self._edges)

    @property
    def materials(self) -> tuple[str, ...]:
        return tuple(self._materials)

    def atomic_number(self, element: str) -> int:
        self._check_element(element)
        return self._atomic_numbers[element]

    def edges(self, element: str) -> tuple[Edge, ...]:
        """The edges of ``element`` in table order (e.g. Sc -> (L3 402 eV, L2 407 eV))."""
        self._check_element(element)
        return self._edges[element]

    def material(self, name: str) -> Material:
        if name not in self._materials:
            raise SimulatorParameterError(
                f"material {name!r} is not in the edge table {self.source}; known materials: "
                f"{sorted(self._materials)}. Add it to the table's 'materials' section.")
        return self._materials[name]

    def _check_element(self, element: str) -> None:
        if element not in self._edges:
            raise SimulatorParameterError(
                f"element {element!r} is not in the edge table {self.source}; known elements: "
                f"{sorted(self._edges)}. Add it to the table's 'elements' section.")


@functools.lru_cache(maxsize=8)
def load_edge_table(path: str | None = None) -> EdgeTable:
    """Load (and cache) the edge table; ``None`` loads the packaged ``data/edges.json``."""
    file_path = pathlib.Path(path) if path is not None else DEFAULT_TABLE_PATH
    try:
        data = json.loads(file_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SimulatorParameterError(f"cannot read edge table {file_path} ({exc}); give a valid JSON file.") from None
    return EdgeTable(data, source=str(file_path))


@dataclasses.dataclass(frozen=True)
class EnergyAxis:
    """Spectrometer energy axis: channel ``i`` is centred on ``offset_eV + i * dispersion_eV_per_channel``.

    This is Swift's calibration convention (calibrated = offset + scale * index).
    """

    offset_eV: float
    dispersion_eV_per_channel: float
    n_channels: int

    def __post_init__(self) -> None:
        if not (self.dispersion_eV_per_channel > 0 and math.isfinite(self.dispersion_eV_per_channel)):
            raise SimulatorParameterError(
                f"dispersion_eV_per_channel must be a positive finite number; got {self.dispersion_eV_per_channel!r}. "
                f"Typical values are 0.01-2 eV per channel.")
        if not math.isfinite(self.offset_eV):
            raise SimulatorParameterError(f"offset_eV must be finite; got {self.offset_eV!r}.")
        if int(self.n_channels) != self.n_channels or self.n_channels < 1:
            raise SimulatorParameterError(f"n_channels must be a positive integer; got {self.n_channels!r}.")

    @property
    def energies_eV(self) -> FloatArray:
        """Channel centres, shape (n_channels,), eV."""
        return self.offset_eV + self.dispersion_eV_per_channel * np.arange(self.n_channels, dtype=np.float64)

    @property
    def bin_edges_eV(self) -> FloatArray:
        """Channel boundaries, shape (n_channels + 1,), eV."""
        d = self.dispersion_eV_per_channel
        return self.offset_eV - 0.5 * d + d * np.arange(self.n_channels + 1, dtype=np.float64)

    def channel_of(self, energy_eV: float) -> float:
        """Fractional channel index whose centre is ``energy_eV``."""
        return (energy_eV - self.offset_eV) / self.dispersion_eV_per_channel


def gaussian_bins(bin_edges_eV: FloatArray, center_eV: float, fwhm_eV: float) -> FloatArray:
    """Fraction of a unit-area Gaussian (centre, FWHM) falling in each bin; shape (len(bin_edges) - 1,)."""
    sigma = fwhm_eV / FWHM_PER_SIGMA
    cdf = 0.5 * scipy.special.erf((bin_edges_eV - center_eV) / (sigma * math.sqrt(2.0)))
    return typing.cast(FloatArray, np.diff(cdf))


def lorentzian_bins(bin_edges_eV: FloatArray, center_eV: float, fwhm_eV: float) -> FloatArray:
    """Fraction of a unit-area Lorentzian (centre, FWHM) falling in each bin; shape (len(bin_edges) - 1,)."""
    cdf = np.arctan(2.0 * (bin_edges_eV - center_eV) / fwhm_eV) / math.pi
    return np.diff(cdf)


def plasmon_bins(bin_edges_eV: FloatArray, plasmon_eV: float, fwhm_eV: float) -> FloatArray:
    """Unit-area damped-oscillator plasmon shape L(E - Ep) - L(E + Ep) on E > 0 (zero at E <= 0), per bin.

    L is a Lorentzian of the given FWHM; subtracting the mirror image makes the loss vanish at zero energy, as the
    Drude energy-loss function does, so plasmon intensity never leaks under or below the ZLP.
    """
    x = np.maximum(bin_edges_eV, 0.0)
    scale = 2.0 / fwhm_eV

    def cdf(e: FloatArray | float) -> FloatArray:
        return np.arctan(scale * np.asarray(e)) / math.pi

    integral = (cdf(x - plasmon_eV) - cdf(x + plasmon_eV)) - (cdf(-plasmon_eV) - cdf(plasmon_eV))
    area = float(cdf(plasmon_eV) - cdf(-plasmon_eV))
    return np.diff(integral) / area


def plasmon_weights(t_over_mfp: float | FloatArray, n_max: int = _PLASMON_ORDERS) -> FloatArray:
    """Poisson weights P_n = exp(-t/l) (t/l)^n / n!, n = 0..n_max; shape (..., n_max + 1).

    The last weight takes the tail (orders > n_max), so the weights sum to exactly 1.
    """
    t = np.asarray(t_over_mfp, dtype=np.float64)
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise SimulatorParameterError(f"t_over_mfp must be finite and >= 0; got {t_over_mfp!r}.")
    n = np.arange(n_max + 1)
    w = np.exp(-t[..., None]) * t[..., None] ** n / np.asarray([math.factorial(k) for k in range(n_max + 1)], float)
    w[..., -1] += 1.0 - w.sum(axis=-1)
    return typing.cast(FloatArray, w)


@dataclasses.dataclass(frozen=True)
class SpectrumBasis:
    """Per-channel component spectra (fraction of the incident electrons per channel) at one ZLP shift.

    zlp: (C,); plasmons: (n_max, C) for orders 1..n_max of ``material``; background: (C,) per unit t/lambda;
    edges: element -> (C,) for one atom under the probe (all of that element's edges, white lines included).
    """

    shift_eV: float
    zlp: FloatArray
    plasmons: FloatArray
    background: FloatArray
    edges: typing.Mapping[str, FloatArray]

    def combine(self, *, t_over_mfp: float, composition: typing.Mapping[str, float]) -> FloatArray:
        """Spectrum for one electron: shape (C,). ``composition`` = atoms of each element under the probe."""
        w = plasmon_weights(t_over_mfp, self.plasmons.shape[0])
        spectrum = w[0] * self.zlp + w[1:] @ self.plasmons + t_over_mfp * self.background
        for element, atoms in composition.items():
            if atoms:
                spectrum = spectrum + atoms * self._edge(element)
        return typing.cast(FloatArray, spectrum)

    def combine_many(self, *, t_over_mfp: FloatArray, composition: typing.Mapping[str, FloatArray]) -> FloatArray:
        """Vectorised :meth:`combine` over P probe positions: t_over_mfp (P,), composition el -> (P,); -> (P, C)."""
        t = np.asarray(t_over_mfp, dtype=np.float64).reshape(-1)
        w = plasmon_weights(t, self.plasmons.shape[0])
        out = w[:, :1] * self.zlp[None, :] + w[:, 1:] @ self.plasmons + t[:, None] * self.background[None, :]
        for element, atoms in composition.items():
            out += np.asarray(atoms, dtype=np.float64).reshape(-1)[:, None] * self._edge(element)[None, :]
        return out

    def _edge(self, element: str) -> FloatArray:
        if element not in self.edges:
            raise SimulatorParameterError(
                f"element {element!r} was not included in this spectrum basis (has {sorted(self.edges)}); "
                f"build the basis with elements=[..., {element!r}].")
        return self.edges[element]


class SpectrumModel:
    """The EELS spectrum model on one energy axis, with a settable ZLP width (energy resolution).

    Parameters
    ----------
    axis : EnergyAxis
        Channels of the spectrometer.
    zlp_fwhm_eV : float, keyword-only
        Energy resolution (FWHM of the Gaussian ZLP), e.g. 0.3 eV monochromated, 1.0 eV not. It also broadens
        edge onsets and white lines.
    table : EdgeTable, optional
        Element/material table; default the packaged ``data/edges.json``.
    """

    def __init__(self, axis: EnergyAxis, *, zlp_fwhm_eV: float = 1.0, table: EdgeTable | None = None) -> None:
        if not (zlp_fwhm_eV > 0 and math.isfinite(zlp_fwhm_eV)):
            raise SimulatorParameterError(
                f"zlp_fwhm_eV must be a positive finite number; got {zlp_fwhm_eV!r}. Use e.g. 0.3 (monochromated) "
                f"or 1.0 (cold FEG).")
        self.axis = axis
        self.zlp_fwhm_eV = float(zlp_fwhm_eV)
        self.table = table if table is not None else load_edge_table()
        self._cache: dict[tuple[float, str, tuple[str, ...]], SpectrumBasis] = {}

    def basis(self, *, material: str, elements: typing.Iterable[str] = (), shift_eV: float = 0.0) -> SpectrumBasis:
        """Component spectra at a ZLP shift (eV; the whole spectrum moves by it). Cached per 0.1 meV of shift."""
        elements_key = tuple(sorted(set(elements)))
        key = (round(float(shift_eV), 4), material, elements_key)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        mat = self.table.material(material)
        edges_eV = self.axis.bin_edges_eV - shift_eV
        centres = 0.5 * (edges_eV[1:] + edges_eV[:-1])
        d = self.axis.dispersion_eV_per_channel
        res = self.zlp_fwhm_eV
        zlp = gaussian_bins(edges_eV, 0.0, res)
        plasmons = np.stack([
            plasmon_bins(edges_eV, n * mat.plasmon_eV, math.hypot(n * mat.plasmon_fwhm_eV, res))
            for n in range(1, _PLASMON_ORDERS + 1)])
        # power-law background A (E/100 eV)^-r, switched on smoothly above a few plasmon energies.
        e_min = 3.0 * mat.plasmon_eV
        e_clip = np.maximum(centres, e_min)
        switch = 0.5 * (1.0 + scipy.special.erf((centres - e_min) / (0.25 * e_min * math.sqrt(2.0))))
        background = mat.background_per_eV_at_100eV * (e_clip / 100.0) ** (-mat.background_exponent) * switch * d
        edge_spectra = {element: self._edge_spectrum(element, edges_eV, centres) for element in elements_key}
        basis = SpectrumBasis(shift_eV=float(shift_eV), zlp=zlp, plasmons=plasmons, background=background,
                              edges=edge_spectra)
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = basis
        return basis

    def _edge_spectrum(self, element: str, edges_eV: FloatArray, centres: FloatArray) -> FloatArray:
        d = self.axis.dispersion_eV_per_channel
        out = np.zeros_like(centres)
        for edge in self.table.edges(element):
            width = math.hypot(edge.onset_width_eV, self.zlp_fwhm_eV) / FWHM_PER_SIGMA
            rise = 0.5 * (1.0 + scipy.special.erf((centres - edge.onset_eV) / (width * math.sqrt(2.0))))
            tail = (np.maximum(centres, edge.onset_eV) / edge.onset_eV) ** (-edge.decay_exponent)
            out += edge.step_per_atom_per_eV * rise * tail * d
            if edge.white_line_area_eV > 0:
                out += edge.step_per_atom_per_eV * edge.white_line_area_eV * lorentzian_bins(
                    edges_eV, edge.onset_eV + edge.white_line_shift_eV, edge.white_line_fwhm_eV + 0.5 * self.zlp_fwhm_eV)
        return out

    def spectrum(self, *, electrons: float, t_over_mfp: float, material: str,
                 composition: typing.Mapping[str, float], shift_eV: float = 0.0) -> FloatArray:
        """Expected electrons per channel (noise-free), shape (C,).

        electrons: incident electrons in the exposure; t_over_mfp: thickness / inelastic mean free path;
        composition: atoms of each element under the probe; shift_eV: ZLP position (energy drift).
        """
        basis = self.basis(material=material, elements=composition.keys(), shift_eV=shift_eV)
        return electrons * basis.combine(t_over_mfp=t_over_mfp, composition=composition)

    def edge_integral(self, element: str, *, window_eV: tuple[float, float], shift_eV: float = 0.0) -> float:
        """Integrated signal of one atom of ``element`` in an energy window (fraction of incident electrons)."""
        basis = self.basis(material=self.table.materials[0], elements=[element], shift_eV=shift_eV)
        e = self.axis.energies_eV
        mask = (e >= window_eV[0]) & (e < window_eV[1])
        return float(basis.edges[element][mask].sum())
