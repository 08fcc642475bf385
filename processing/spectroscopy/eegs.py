"""Electron energy-gain spectroscopy (EEGS) analysis: gain-peak intensity versus laser wavelength.

Energy axis convention (as Orsay's): energy **loss** in eV, so light-induced gain peaks sit at ``-n * hbar*omega``
(negative loss). The EEGS signal at one wavelength is the counts in the first gain sideband window
``[-hw - half_width, -hw + half_width]``, optionally minus the same window of a laser-off reference, normalised by
the ZLP (or total) counts and by the laser power; the EEGS "spectrum" is that value versus wavelength
(Auad et al., Nat. Commun. 2023). Spectra are arrays with the energy axis last: (E,), (N, E), (H, W, E)...

Functions: :func:`photon_energy_eV`, :func:`gain_window_eV`, :func:`window_sum`, :func:`gain_intensity`,
:func:`eegs_curve` (stack over wavelengths), :func:`find_resonance`.
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError
from processing.spectroscopy.spectrum_alignment import EnergyAxis

__all__ = ["HC_EV_NM", "photon_energy_eV", "gain_window_eV", "window_sum", "gain_intensity", "eegs_curve",
           "ResonanceResult", "find_resonance"]

FloatArray = NDArray[np.float64]
#: h*c in eV*nm (CODATA 2018: 1239.841984 eV nm)
HC_EV_NM = 1239.841984
Normalisation = typing.Literal["zlp", "total", "none"]


def photon_energy_eV(wavelength_nm: typing.Any) -> typing.Any:
    """Photon energy hbar*omega in eV for a vacuum wavelength in nm (scalar or array)."""
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    if not np.all(np.isfinite(lam) & (lam > 0)):
        raise ParameterError(f"wavelength_nm must be positive and finite; got {wavelength_nm!r}.")
    out = HC_EV_NM / lam
    return float(out) if out.ndim == 0 else out


def gain_window_eV(wavelength_nm: float, *, zlp_fwhm_eV: float, order: int = 1,
                   half_width_eV: float | None = None) -> tuple[float, float]:
    """Energy-loss window (low, high) in eV of the gain sideband of ``order`` at ``wavelength_nm``.

    Centre ``-order * hbar*omega``; half width ``half_width_eV`` (default: the ZLP FWHM, i.e. +-2.35 sigma of a
    Gaussian ZLP, which holds ~98 % of the sideband). Raises :class:`ParameterError` if the window would overlap
    the ZLP (|centre| - half width < ZLP FWHM): the photon energy is too small for this energy resolution.
    """
    if zlp_fwhm_eV <= 0:
        raise ParameterError(f"zlp_fwhm_eV must be > 0; got {zlp_fwhm_eV}. Measure it on a laser-off spectrum.")
    if order < 1:
        raise ParameterError(f"order must be >= 1 (first gain sideband = 1); got {order}.")
    hw = float(photon_energy_eV(wavelength_nm))
    half = zlp_fwhm_eV if half_width_eV is None else float(half_width_eV)
    if half <= 0:
        raise ParameterError(f"half_width_eV must be > 0; got {half_width_eV}.")
    centre = -order * hw
    if abs(centre) - half < zlp_fwhm_eV:
        raise ParameterError(
            f"the gain window at {wavelength_nm} nm (hw = {hw:.3f} eV, half width {half:.3f} eV) overlaps the ZLP "
            f"(FWHM {zlp_fwhm_eV:.3f} eV); use a shorter wavelength, a narrower window or better energy resolution.")
    return centre - half, centre + half


def _spectra(data: typing.Any) -> FloatArray:
    array = np.asarray(data)
    if np.iscomplexobj(array) or array.ndim < 1 or array.shape[-1] < 2:
        raise InputError(f"spectra must be a real array with the energy axis last; got shape {array.shape}.")
    out = np.asarray(array, dtype=np.float64)
    if not np.isfinite(out).all():
        raise InputError("spectra contain NaN/inf; replace invalid values before the EEGS analysis.")
    return out


def window_weights(axis: EnergyAxis, n_channels: int, low_eV: float, high_eV: float) -> FloatArray:
    """(E,) fraction of each channel (width = scale, centred on its energy) inside [low_eV, high_eV]."""
    centres = axis.energy(np.arange(n_channels))
    lo = centres - axis.scale_eV / 2
    hi = centres + axis.scale_eV / 2
    overlap = np.clip(np.minimum(hi, high_eV) - np.maximum(lo, low_eV), 0.0, None) / axis.scale_eV
    if overlap.sum() == 0:
        raise ParameterError(f"energy window [{low_eV:.3f}, {high_eV:.3f}] eV lies outside the spectrum axis "
                             f"[{centres[0]:.3f}, {centres[-1]:.3f}] eV; adjust the energy offset or the window.")
    return np.asarray(overlap, dtype=np.float64)


def window_sum(spectra: typing.Any, axis: EnergyAxis, low_eV: float, high_eV: float) -> FloatArray:
    """Counts of each spectrum inside the energy window (fractional edge channels). Shape ``spectra.shape[:-1]``."""
    data = _spectra(spectra)
    return np.asarray(data @ window_weights(axis, data.shape[-1], low_eV, high_eV), dtype=np.float64)


def gain_intensity(spectra: typing.Any, axis: EnergyAxis, wavelength_nm: float, *, zlp_fwhm_eV: float,
                   laser_power: float | None = None, normalise: Normalisation = "zlp",
                   reference: typing.Any | None = None, half_width_eV: float | None = None) -> FloatArray:
    """First-gain-sideband intensity of each spectrum (ZLP-aligned spectra, ZLP at 0 eV).

    Parameters
    ----------
    spectra : (..., E) counts, ZLP at 0 eV.
    axis : energy calibration. wavelength_nm : laser wavelength.
    zlp_fwhm_eV : ZLP full width at half maximum (sets the window and the ZLP integration range).
    laser_power : divide by this power (any unit, e.g. mW; the result is then "per mW"). None = no division.
    normalise : "zlp" divide by the counts in +-zlp_fwhm_eV around 0 (the unscattered beam), "total" by all counts,
        "none" raw counts.
    reference : laser-off spectra (..., E) or one (E,) spectrum; its normalised window value is subtracted
        (removes the ZLP tail and dark counts under the gain window).
    half_width_eV : window half width (default the ZLP FWHM).

    Returns
    -------
    (...) gain intensity (fraction of the beam per unit power with the defaults).
    """
    data = _spectra(spectra)
    low, high = gain_window_eV(wavelength_nm, zlp_fwhm_eV=zlp_fwhm_eV, half_width_eV=half_width_eV)

    def normalised(d: FloatArray) -> FloatArray:
        value = window_sum(d, axis, low, high)
        if normalise == "zlp":
            norm = window_sum(d, axis, -zlp_fwhm_eV, zlp_fwhm_eV)
        elif normalise == "total":
            norm = d.sum(axis=-1)
        elif normalise == "none":
            return value
        else:
            raise ParameterError(f"normalise must be 'zlp', 'total' or 'none'; got {normalise!r}.")
        if np.any(norm <= 0):
            raise InputError(f"{int(np.count_nonzero(norm <= 0))} spectra have no counts in the normalisation range "
                             f"({normalise}); check the ZLP alignment and the energy offset.")
        return np.asarray(value / norm, dtype=np.float64)

    gain = normalised(data)
    if reference is not None:
        ref = _spectra(reference)
        if ref.shape[-1] != data.shape[-1]:
            raise InputError(f"reference has {ref.shape[-1]} channels, spectra {data.shape[-1]}; use the same "
                             f"camera settings for the laser-off reference.")
        gain = gain - normalised(ref)
    if laser_power is not None:
        if not laser_power > 0:
            raise ParameterError(f"laser_power must be > 0 to normalise; got {laser_power}. Was the laser off?")
        gain = gain / laser_power
    return np.asarray(gain, dtype=np.float64)


def eegs_curve(spectra_per_wavelength: typing.Sequence[typing.Any], axis: EnergyAxis,
               wavelengths_nm: typing.Sequence[float], *, zlp_fwhm_eV: float,
               laser_powers: typing.Sequence[float] | None = None, normalise: Normalisation = "zlp",
               reference: typing.Any | None = None, half_width_eV: float | None = None) -> FloatArray:
    """Gain intensity for each wavelength: (L, ...) from L arrays of spectra (..., E) (a point, a line or a map).

    The window moves with the wavelength (centre -hc/lambda). See :func:`gain_intensity` for the options.
    """
    if len(spectra_per_wavelength) != len(wavelengths_nm):
        raise InputError(f"{len(spectra_per_wavelength)} spectra sets for {len(wavelengths_nm)} wavelengths; "
                         f"pass one set per wavelength.")
    if laser_powers is not None and len(laser_powers) != len(wavelengths_nm):
        raise InputError(f"{len(laser_powers)} laser powers for {len(wavelengths_nm)} wavelengths.")
    out = [gain_intensity(s, axis, float(lam), zlp_fwhm_eV=zlp_fwhm_eV,
                          laser_power=None if laser_powers is None else float(laser_powers[i]),
                          normalise=normalise, reference=reference, half_width_eV=half_width_eV)
           for i, (s, lam) in enumerate(zip(spectra_per_wavelength, wavelengths_nm))]
    return np.asarray(np.stack(out), dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class ResonanceResult:
    """Peak of an EEGS curve.

    peak_wavelength_nm: parabola-refined wavelength of the maximum (clipped to the neighbouring samples).
    peak_value: curve maximum. baseline: median of the curve. prominence: peak_value - baseline.
    relative_prominence: prominence / (robust noise of the curve: 1.4826 * MAD of the first differences / sqrt(2)),
    i.e. how many noise sigmas the peak stands out; a flat curve gives a small value.
    """

    peak_wavelength_nm: float
    peak_value: float
    baseline: float
    prominence: float
    relative_prominence: float


def find_resonance(wavelengths_nm: typing.Sequence[float], values: typing.Sequence[float]) -> ResonanceResult:
    """Locate the maximum of an EEGS curve (values versus increasing or decreasing wavelengths)."""
    lam = np.asarray(wavelengths_nm, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if lam.ndim != 1 or v.shape != lam.shape or len(lam) < 3:
        raise InputError(f"find_resonance needs >= 3 wavelengths and one value each; got {lam.shape}, {v.shape}.")
    if not (np.isfinite(v).all() and np.isfinite(lam).all()):
        raise InputError("EEGS curve contains NaN/inf values.")
    order = np.argsort(lam)
    lam, v = lam[order], v[order]
    i = int(np.argmax(v))
    peak_lam = float(lam[i])
    if 0 < i < len(v) - 1:
        x0, x1, x2 = lam[i - 1], lam[i], lam[i + 1]
        y0, y1, y2 = v[i - 1], v[i], v[i + 1]
        denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
        b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denom
        if a < 0:
            peak_lam = float(np.clip(-b / (2 * a), x0, x2))
    baseline = float(np.median(v))
    diffs = np.diff(v)
    noise = float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / np.sqrt(2.0))
    prominence = float(v[i] - baseline)
    scale = max(noise, 1e-12 * max(abs(float(v[i])), 1e-300))
    return ResonanceResult(peak_lam, float(v[i]), baseline, prominence, prominence / scale)
