"""An imaging energy filter for the simulated TEM camera: with the slit in, the camera sees an energy-filtered
(EFTEM) image of a spectroscopic specimen (default the DyScO3 perovskite of :mod:`instrument_sim.samples`), built from
the same per-material spectra the EELS spectrometer models (:mod:`instrument_sim.eels_physics`).

Pure numpy; no Swift import.

Model
-----
The spectrum at each specimen point is linear in a few components (ZLP, plasmons, background, one edge spectrum per
element; :class:`~instrument_sim.eels_physics.SpectrumBasis`). The slit passes ``[E0 - w/2, E0 + w/2]`` (energy
offset ``E0``, slit width ``w``; the channels are integrated with their fractional overlap), so each component
becomes one number and the filtered image is::

    I(x) = N * [ P0(t) Z + sum_n Pn(t) Pl_n + t B + sum_el atoms_el(x) Edge_el ]

with ``t = t/lambda`` and ``atoms_el`` the specimen's maps. The zero-loss image is bright (about exp(-t/lambda) of
the beam), core-loss images hundreds of times weaker: the reason a series needs auto-exposure. An energy drift
(``shift_eV``) moves the spectrum under the slit. :meth:`EnergyFilteredSpecimen.expected_spectrum` gives the truth
spectrum at any pixel for comparison with a series.

Instrument controls used by the camera (added by :func:`instrument_sim.insitu_camera.make_insitu_camera`):
``EFTEM_Slit`` (0 out, 1 in), ``EFTEM_EnergyOffset`` (eV), ``EFTEM_SlitWidth`` (eV).
"""
from __future__ import annotations

import math
import threading
import typing

import numpy as np
from numpy.typing import NDArray

from instrument_sim.eels_physics import EnergyAxis, SpectrumModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.samples import PerovskiteSample, Sample

__all__ = ["EnergyFilteredSpecimen", "FilteredView", "slit_weights", "SLIT_CONTROL", "ENERGY_OFFSET_CONTROL", "SLIT_WIDTH_CONTROL"]

FloatArray = NDArray[np.float64]

SLIT_CONTROL = "EFTEM_Slit"
ENERGY_OFFSET_CONTROL = "EFTEM_EnergyOffset"
SLIT_WIDTH_CONTROL = "EFTEM_SlitWidth"


def slit_weights(axis: EnergyAxis, energy_offset_eV: float, slit_width_eV: float) -> FloatArray:
    """Fraction of each channel of ``axis`` inside the slit ``[E0 - w/2, E0 + w/2]``; shape (C,)."""
    if not (math.isfinite(slit_width_eV) and slit_width_eV > 0):
        raise SimulatorParameterError(f"slit width must be > 0 eV; got {slit_width_eV!r}. Use e.g. 10 eV.")
    if not math.isfinite(energy_offset_eV):
        raise SimulatorParameterError(f"energy offset must be finite; got {energy_offset_eV!r}.")
    edges = axis.bin_edges_eV
    lo, hi = energy_offset_eV - 0.5 * slit_width_eV, energy_offset_eV + 0.5 * slit_width_eV
    overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)
    return np.asarray(overlap / axis.dispersion_eV_per_channel, dtype=np.float64)


class EnergyFilteredSpecimen:
    """A spectroscopic specimen seen through the energy filter.

    Parameters
    ----------
    sample : Sample, optional
        Default :class:`~instrument_sim.samples.PerovskiteSample` (Dy, Sc, O; Sc L2,3 at 402 eV, O K at 532 eV).
    zlp_fwhm_eV : float
        Energy resolution of the illumination (default 1 eV).
    max_energy_eV, dispersion_eV : float
        Energy axis of the internal spectrum model (default -20 .. 1000 eV at 0.25 eV).
    """

    def __init__(self, sample: Sample | None = None, *, zlp_fwhm_eV: float = 1.0, max_energy_eV: float = 1000.0,
                 dispersion_eV: float = 0.25) -> None:
        self.sample = sample if sample is not None else PerovskiteSample(seed=3)
        n = int(math.ceil((max_energy_eV + 20.0) / dispersion_eV)) + 1
        self.axis = EnergyAxis(offset_eV=-20.0, dispersion_eV_per_channel=dispersion_eV, n_channels=n)
        self.model = SpectrumModel(self.axis, zlp_fwhm_eV=zlp_fwhm_eV)
        self.__lock = threading.Lock()
        self.__maps: dict[tuple[typing.Any, ...], tuple[FloatArray, dict[str, FloatArray], NDArray[np.intp]]] = {}

    def _maps(self, y_nm: FloatArray, x_nm: FloatArray) -> tuple[FloatArray, dict[str, FloatArray], NDArray[np.intp]]:
        key = (y_nm.shape, round(float(y_nm.flat[0]), 6), round(float(x_nm.flat[0]), 6),
               round(float(y_nm.flat[-1]), 6), round(float(x_nm.flat[-1]), 6))
        with self.__lock:
            cached = self.__maps.get(key)
        if cached is not None:
            return cached
        t = self.sample.t_over_mfp(y_nm, x_nm)
        composition = self.sample.composition(y_nm, x_nm)
        material = self.sample.material_index(y_nm, x_nm)
        maps = (np.asarray(t, np.float64), {k: np.asarray(v, np.float64) for k, v in composition.items()},
                np.asarray(material, np.intp))
        with self.__lock:
            if len(self.__maps) > 8:
                self.__maps.clear()
            self.__maps[key] = maps
        return maps

    def filtered_image(self, y_nm: FloatArray, x_nm: FloatArray, *, energy_offset_eV: float, slit_width_eV: float,
                       electrons_per_px: float, shift_eV: float = 0.0) -> FloatArray:
        """Expected electrons per pixel through the slit, shape of ``y_nm`` (positions in nm)."""
        weights = slit_weights(self.axis, energy_offset_eV, slit_width_eV)
        t, composition, material = self._maps(y_nm, x_nm)
        out = np.zeros(t.shape, dtype=np.float64)
        from instrument_sim.eels_physics import plasmon_weights
        for index, name in enumerate(self.sample.materials):
            sel = material == index
            if not sel.any():
                continue
            basis = self.model.basis(material=name, elements=self.sample.elements, shift_eV=shift_eV)
            zlp = float(basis.zlp @ weights)
            plasmons = basis.plasmons @ weights
            background = float(basis.background @ weights)
            p = plasmon_weights(t[sel], basis.plasmons.shape[0])
            value = p[:, 0] * zlp + p[:, 1:] @ plasmons + t[sel] * background
            for element, atoms in composition.items():
                value += atoms[sel] * float(basis.edges[element] @ weights)
            out[sel] = value
        return out * float(electrons_per_px)

    def expected_spectrum(self, y_nm: float, x_nm: float, *, shift_eV: float = 0.0) -> tuple[FloatArray, FloatArray]:
        """(energies_eV (C,), fraction of the beam per channel (C,)) at one specimen point: the truth spectrum."""
        y, x = np.asarray([[float(y_nm)]]), np.asarray([[float(x_nm)]])
        t, composition, material = self._maps(y, x)
        basis = self.model.basis(material=self.sample.materials[int(material.flat[0])],
                                 elements=self.sample.elements, shift_eV=shift_eV)
        spectrum = basis.combine(t_over_mfp=float(t.flat[0]),
                                 composition={k: float(v.flat[0]) for k, v in composition.items()})
        return self.axis.energies_eV, spectrum

    def slit_integral(self, y_nm: float, x_nm: float, *, energy_offset_eV: float, slit_width_eV: float,
                      shift_eV: float = 0.0) -> float:
        """Fraction of the beam passing the slit at one point (the truth value of one EFTEM pixel per electron)."""
        _energies, spectrum = self.expected_spectrum(y_nm, x_nm, shift_eV=shift_eV)
        return float(spectrum @ slit_weights(self.axis, energy_offset_eV, slit_width_eV))


class FilteredView:
    """Energy-filtered frames of an :class:`EnergyFilteredSpecimen` on a camera of ``shape_px`` at ``pixel_size_nm``
    for any content offset, fast: the specimen maps are computed once on a tile a little larger than the sensor
    (re-centred every ``step_px`` of drift) and each frame is the filtered tile translated by the sub-step offset.

    Frame pixel (i, j) shows the specimen point ``((i, j) * pixel_size_nm - offset_nm)`` (the camera's content
    offset convention, :mod:`instrument_sim.insitu_scene`).
    """

    def __init__(self, specimen: EnergyFilteredSpecimen, shape_px: tuple[int, int], pixel_size_nm: float, *,
                 step_px: int = 16) -> None:
        self.specimen = specimen
        self.shape_px = (int(shape_px[0]), int(shape_px[1]))
        self.pixel_size_nm = float(pixel_size_nm)
        self.step_px = int(step_px)
        self.margin_px = self.step_px + 4
        self.__tiles: dict[tuple[int, int], tuple[FloatArray, FloatArray]] = {}

    def _tile_positions(self, origin: tuple[int, int]) -> tuple[FloatArray, FloatArray]:
        tile = self.__tiles.get(origin)
        if tile is None:
            h, w = self.shape_px
            m = self.margin_px
            rows = (np.arange(h + 2 * m) - m + origin[0]) * self.pixel_size_nm
            cols = (np.arange(w + 2 * m) - m + origin[1]) * self.pixel_size_nm
            yy, xx = np.meshgrid(rows, cols, indexing="ij")
            tile = (yy, xx)
            if len(self.__tiles) > 4:
                self.__tiles.clear()
            self.__tiles[origin] = tile
        return tile

    def image(self, offset_nm: typing.Sequence[float], *, energy_offset_eV: float, slit_width_eV: float,
              electrons_per_px: float, shift_eV: float = 0.0) -> NDArray[np.float32]:
        """Expected electrons per (unbinned) pixel, float32 ``shape_px``."""
        import cv2
        shift_px = -np.asarray(offset_nm, dtype=np.float64) / self.pixel_size_nm   # specimen px under frame px 0
        origin = (int(round(shift_px[0] / self.step_px)) * self.step_px,
                  int(round(shift_px[1] / self.step_px)) * self.step_px)
        yy, xx = self._tile_positions(origin)
        tile = self.specimen.filtered_image(yy, xx, energy_offset_eV=energy_offset_eV, slit_width_eV=slit_width_eV,
                                            electrons_per_px=electrons_per_px, shift_eV=shift_eV).astype(np.float32)
        frac = shift_px - np.asarray(origin, dtype=np.float64)
        m = self.margin_px
        matrix = np.array([[1.0, 0.0, m + frac[1]], [0.0, 1.0, m + frac[0]]], dtype=np.float64)
        h, w = self.shape_px
        out = cv2.warpAffine(tile, matrix, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT)
        return np.maximum(out, 0.0).astype(np.float32)
