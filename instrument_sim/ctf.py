"""Weak-object contrast transfer for the simulated TEM camera: defocus (the instrument's C10), spherical aberration
(C30 = Cs) and high tension (EHT) change the image as a microscope does.

Pure numpy; no Swift import.

Model
-----
The scene's noise-free image ``1 + d(x)`` is the aberration-free, in-focus (amplitude-contrast) image. The specimen
is a weak object ``psi = 1 - a + i phi`` with amplitude ``a = -d / 2`` and phase ``phi = -phase_ratio * d / 2``
(thicker and heavier regions scatter more and shift the phase more). To first order the image is::

    I = 1 + F^-1[ D(k) (cos chi(k) - phase_ratio sin chi(k)) E_t(k) E_s(k) ]      D = F[d]

with the aberration function in Nion's convention (C10 < 0 is underfocus; Scherzer focus C10 = -sqrt(4/3 Cs lambda))::

    chi(k) = pi lambda C10 k^2 + (pi / 2) C30 lambda^3 k^4

and the temporal (focal spread ``Delta``) and spatial (illumination semi-angle ``alpha``) coherence envelopes::

    E_t = exp(-(pi lambda Delta)^2 k^4 / 2)
    E_s = exp(-(pi alpha / lambda)^2 (C10 lambda k + C30 lambda^3 k^3)^2)

With C10 = C30 = 0 the transfer is exactly 1 (the scene image itself): the camera renders as before unless the
optics are set. Contrast reverses where ``cos chi - phase_ratio sin chi`` changes sign, so fringes of a given
spacing fade and return with reversed contrast as the defocus changes (:func:`transfer`).

>>> round(electron_wavelength_nm(200e3) * 1e3, 3)   # pm
2.508
>>> float(transfer(np.array([2.0]), defocus_m=0.0, cs_m=0.0, high_tension_V=200e3)[0])
1.0
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from instrument_sim.errors import SimulatorParameterError

__all__ = ["Optics", "electron_wavelength_nm", "aberration_chi", "transfer", "apply_ctf", "scherzer_defocus_m"]

FloatArray = NDArray[np.float64]

_H = 6.62607015e-34
_M0 = 9.1093837015e-31
_E = 1.602176634e-19
_C = 299792458.0


def electron_wavelength_nm(high_tension_V: float) -> float:
    """Relativistic electron wavelength (nm) at an accelerating voltage (V)."""
    v = float(high_tension_V)
    if not (math.isfinite(v) and v > 0):
        raise SimulatorParameterError(f"high tension must be > 0 V; got {high_tension_V!r}. Set EHT, e.g. 200e3.")
    return _H / math.sqrt(2 * _M0 * _E * v * (1 + _E * v / (2 * _M0 * _C ** 2))) * 1e9


def scherzer_defocus_m(cs_m: float, high_tension_V: float) -> float:
    """Scherzer defocus (m) in Nion's sign convention (negative = underfocus)."""
    return -math.sqrt(4.0 / 3.0 * abs(cs_m) * electron_wavelength_nm(high_tension_V) * 1e-9)


@dataclasses.dataclass(frozen=True)
class Optics:
    """Optics parameters that are not instrument controls: phase/amplitude ratio of the specimen, focal spread
    (nm) and illumination semi-angle (rad)."""

    phase_ratio: float = 3.0
    focal_spread_nm: float = 4.0
    convergence_rad: float = 0.1e-3

    def __post_init__(self) -> None:
        for name in ("phase_ratio", "focal_spread_nm", "convergence_rad"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SimulatorParameterError(f"Optics.{name} must be finite and >= 0; got {value!r}.")


def aberration_chi(k_per_nm: FloatArray, *, defocus_m: float, cs_m: float, high_tension_V: float) -> FloatArray:
    """chi(k) in rad for spatial frequencies k (1/nm)."""
    lam = electron_wavelength_nm(high_tension_V)
    c10, c30 = defocus_m * 1e9, cs_m * 1e9
    k2 = np.asarray(k_per_nm, dtype=np.float64) ** 2
    return np.asarray(math.pi * lam * c10 * k2 + 0.5 * math.pi * c30 * lam ** 3 * k2 * k2, dtype=np.float64)


def transfer(k_per_nm: FloatArray, *, defocus_m: float, cs_m: float, high_tension_V: float,
             optics: Optics = Optics()) -> FloatArray:
    """The contrast transfer ``(cos chi - phase_ratio sin chi) E_t E_s`` at frequencies k (1/nm); 1 when
    C10 = C30 = 0."""
    k = np.asarray(k_per_nm, dtype=np.float64)
    if defocus_m == 0.0 and cs_m == 0.0:
        return np.ones_like(k)
    lam = electron_wavelength_nm(high_tension_V)
    chi = aberration_chi(k, defocus_m=defocus_m, cs_m=cs_m, high_tension_V=high_tension_V)
    c10, c30 = defocus_m * 1e9, cs_m * 1e9
    e_t = np.exp(-0.5 * (math.pi * lam * optics.focal_spread_nm) ** 2 * k ** 4)
    e_s = np.exp(-(math.pi * optics.convergence_rad / lam) ** 2 * (c10 * lam * k + c30 * lam ** 3 * k ** 3) ** 2)
    return np.asarray((np.cos(chi) - optics.phase_ratio * np.sin(chi)) * e_t * e_s, dtype=np.float64)


def apply_ctf(image: NDArray[np.float32], *, pixel_size_nm: float, defocus_m: float, cs_m: float,
              high_tension_V: float, mean_level: float, optics: Optics = Optics()) -> NDArray[np.float32]:
    """Image (H, W) of expected counts whose mean level (vacuum/support) is ``mean_level`` through the CTF.

    The deviation from ``mean_level`` is transferred; the result is clipped at 0 (a strong object through a large
    defocus would otherwise go negative: the weak-object model's limit). Returns float32 (H, W).
    """
    if defocus_m == 0.0 and cs_m == 0.0:
        return image
    if not (pixel_size_nm > 0):
        raise SimulatorParameterError(f"pixel_size_nm must be > 0; got {pixel_size_nm!r}.")
    h, w = image.shape
    deviation = np.asarray(image, dtype=np.float64) - mean_level
    spectrum = scipy.fft.rfft2(deviation, workers=1)
    ky = scipy.fft.fftfreq(h, d=pixel_size_nm)[:, None]
    kx = scipy.fft.rfftfreq(w, d=pixel_size_nm)[None, :]
    k = np.sqrt(ky * ky + kx * kx)
    spectrum *= transfer(k, defocus_m=defocus_m, cs_m=cs_m, high_tension_V=high_tension_V, optics=optics)
    out = mean_level + np.asarray(scipy.fft.irfft2(spectrum, s=(h, w), workers=1), dtype=np.float64)
    return np.asarray(np.maximum(out, 0.0), dtype=np.float32)
