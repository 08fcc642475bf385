"""Simulated spectrum images whose components the simulator knows: a two-phase SI and a DyScO3-like SI.

:func:`two_phase_si`: two phases (a TiO2-like Ti+O phase and a LaFeO3-like La+Fe+O phase, spectra from
:class:`instrument_sim.eels_physics.SpectrumModel`) in a field with a smooth interface and a smooth thickness
variation. The expected SI is exactly ``thickness(y, x) * (a(y, x) S_A + (1 - a(y, x)) S_B)``: linear mixing of two
known spectra with known abundance maps ``thickness * a`` and ``thickness * (1 - a)``. The counts are Poisson.

:func:`perovskite_si`: the atomic-resolution DyScO3-like sample of :mod:`instrument_sim.samples` (Sc L2,3 and O K
in the window; element maps = atoms of each element under the probe).

Both report :attr:`SimulatedSI.n_significant`, the number of principal components of the noise-free SI (centred,
Keenan-Kotula weighted) whose variance is above the detection threshold of the Poisson noise
(``sigma^2 sqrt(d / n)``, the Baik-Ben Arous-Peche transition: weaker components cannot be told from noise by any
PCA of this size), as a range (clearly, possibly): see :func:`significant_components_truth`.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from numpy.typing import NDArray

from instrument_sim.eels_physics import EnergyAxis, SpectrumModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.samples import PerovskiteSample, truth_spectrum_image

__all__ = ["SimulatedSI", "two_phase_si", "perovskite_si", "significant_components_truth", "CORE_LOSS_AXIS"]

F64 = NDArray[np.float64]

#: 2048 channels, 0.25 eV/channel from 380 eV: Sc L2,3, Ti L2,3, O K, Fe L2,3, La M4,5
CORE_LOSS_AXIS = EnergyAxis(offset_eV=380.0, dispersion_eV_per_channel=0.25, n_channels=2048)


@dataclasses.dataclass(frozen=True)
class SimulatedSI:
    """counts: (ny, nx, d) float32 Poisson counts; expected: (ny, nx, d) noise-free; spectra: (m, d) true
    component spectra (counts per unit abundance) or None; abundances: (ny, nx, m) true abundance maps or None;
    element_maps: element -> (ny, nx) atoms under the probe; energy axis; pixel_size_nm; n_significant."""

    counts: NDArray[np.float32]
    expected: F64
    spectra: F64 | None
    abundances: F64 | None
    element_maps: dict[str, F64]
    energy_offset_eV: float
    energy_scale_eV: float
    pixel_size_nm: float
    n_significant: tuple[int, int]
    labels: tuple[str, ...] = ()


def significant_components_truth(expected: F64) -> tuple[int, int]:
    """(clearly, possibly) significant components of the noise-free SI (ny, nx, d): variance above 4x, resp.
    1/4x, the Poisson detection threshold (see module doc). An estimate in [clearly, possibly] is right; a
    component within a factor 4 of the threshold is at the edge of what any PCA of this size can detect."""
    x = np.asarray(expected, np.float64).reshape(-1, expected.shape[-1])
    n, d = x.shape
    t = np.maximum(x.sum(axis=1), 1.0)
    h = np.maximum(x.mean(axis=0), 1e-12)
    y = x / np.sqrt(t[:, None] * h[None, :])
    noise_var = float(np.mean(x / (t[:, None] * h[None, :])))       # Poisson variance in the weighted space
    yc = y - y.mean(axis=0)
    gram = yc @ yc.T if n <= d else yc.T @ yc
    signal_var = np.clip(np.linalg.eigvalsh(gram), 0, None)[::-1] / max(n - 1, 1)
    threshold = noise_var * math.sqrt(d / n)
    return int(np.count_nonzero(signal_var > 4 * threshold)), int(np.count_nonzero(signal_var > threshold / 4))


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, wavelength_px: float) -> F64:
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    out = np.zeros(shape)
    for _ in range(4):
        angle = rng.uniform(0, 2 * math.pi)
        k = 2 * math.pi / (wavelength_px * rng.uniform(0.7, 1.4))
        out += np.cos(k * (math.cos(angle) * xx + math.sin(angle) * yy) + rng.uniform(0, 2 * math.pi))
    return out / 4


def two_phase_si(shape_px: tuple[int, int] = (64, 64), *, axis: EnergyAxis = CORE_LOSS_AXIS,
                 electrons_per_pixel: float = 2e6, interface_width_px: float = 3.0, thickness_variation: float = 0.3,
                 pixel_size_nm: float = 0.5, seed: int = 0) -> SimulatedSI:
    """A two-phase SI with known spectra and abundance maps (see module doc). ``seed`` fixes geometry and noise."""
    ny, nx = int(shape_px[0]), int(shape_px[1])
    if ny < 2 or nx < 2:
        raise SimulatorParameterError(f"the SI must be at least 2x2 pixels; got {shape_px!r}.")
    if not 0 <= thickness_variation < 1:
        raise SimulatorParameterError(f"thickness_variation must be in [0, 1); got {thickness_variation!r}.")
    rng = np.random.default_rng(seed)
    model = SpectrumModel(axis, zlp_fwhm_eV=1.0)
    t_over_mfp = 0.4
    phase_a = {"Ti": 30.0, "O": 60.0}
    phase_b = {"La": 20.0, "Fe": 20.0, "O": 60.0}
    spectra = np.stack([
        electrons_per_pixel * model.basis(material="C", elements=comp.keys()).combine(t_over_mfp=t_over_mfp,
                                                                                  composition=comp)
        for comp in (phase_a, phase_b)])
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    # a wavy interface plus a round inclusion of phase A in phase B
    boundary = 0.45 * nx + 0.08 * nx * np.sin(2 * math.pi * yy / ny * rng.uniform(0.8, 1.5) + rng.uniform(0, 6))
    a = 0.5 * (1 - np.tanh((xx - boundary) / interface_width_px))
    cy, cx, r = rng.uniform(0.6, 0.8) * ny, rng.uniform(0.7, 0.85) * nx, 0.12 * min(ny, nx)
    a = np.maximum(a, 0.5 * (1 - np.tanh((np.hypot(yy - cy, xx - cx) - r) / interface_width_px)))
    thickness = 1.0 + thickness_variation * _smooth_field((ny, nx), rng, 0.6 * max(ny, nx))
    abundances = np.stack([thickness * a, thickness * (1 - a)], axis=-1)
    expected = abundances @ spectra
    counts = rng.poisson(expected).astype(np.float32)
    elements = {el: abundances[..., 0] * phase_a.get(el, 0.0) + abundances[..., 1] * phase_b.get(el, 0.0)
                for el in ("Ti", "La", "Fe", "O")}
    return SimulatedSI(counts=counts, expected=expected, spectra=spectra, abundances=abundances,
                       element_maps=elements, energy_offset_eV=axis.offset_eV,
                       energy_scale_eV=axis.dispersion_eV_per_channel, pixel_size_nm=pixel_size_nm,
                       n_significant=significant_components_truth(expected), labels=("TiO2-like", "LaFeO3-like"))


def perovskite_si(shape_px: tuple[int, int] = (48, 48), *, axis: EnergyAxis = CORE_LOSS_AXIS,
                  fov_nm: float = 4.0, electrons_per_pixel: float = 2e6, seed: int = 0) -> SimulatedSI:
    """The DyScO3-like sample's SI (drift-free), Poisson counts; truth = element maps and the expected SI."""
    ny, nx = int(shape_px[0]), int(shape_px[1])
    sample = PerovskiteSample(seed=seed)
    model = SpectrumModel(axis, zlp_fwhm_eV=1.0)
    expected = truth_spectrum_image(sample, model, shape_px=(ny, nx), fov_size_nm=(fov_nm * ny / nx, fov_nm),
                                    electrons_per_pixel=electrons_per_pixel)
    from instrument_sim.samples import scan_positions_nm
    y, x = scan_positions_nm((ny, nx), fov_size_nm=(fov_nm * ny / nx, fov_nm))
    comp = sample.composition(y, x)
    rng = np.random.default_rng(seed + 7)
    counts = rng.poisson(expected).astype(np.float32)
    return SimulatedSI(counts=counts, expected=expected, spectra=None, abundances=None,
                       element_maps={k: np.asarray(v, np.float64) for k, v in comp.items()},
                       energy_offset_eV=axis.offset_eV, energy_scale_eV=axis.dispersion_eV_per_channel,
                       pixel_size_nm=fov_nm / nx, n_significant=significant_components_truth(expected),
                       labels=tuple(comp))
