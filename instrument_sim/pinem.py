"""Electron-light interaction (PINEM / EEGS) for the simulated instrument.

Pure numpy/scipy; no Swift import.

Physics (photon-induced near-field electron microscopy): an electron crossing an optical near field of coupling
strength ``beta`` leaves with its energy changed by ``n * hbar_omega`` with probability ``J_n(2|beta|)^2``
(``n`` > 0: gain, the peak at energy loss ``E = -n * hbar_omega``). The measured spectrum is::

    S(E) = (1 - f) * S0(E) + f * sum_n J_n(2|beta|)^2 * S0(E + n * hbar_omega)

with ``f`` the fraction of electrons that meet a laser pulse (:func:`laser_on_fraction`) and ``S0`` the laser-off
spectrum. ``|beta|^2`` is proportional to the peak laser power, to a spatial coupling map that decays away from the
sample's particles (:func:`coupling_map`) and to an optical resonance, a Lorentzian in photon energy with a
centre and quality factor (:func:`lorentzian_resonance`).

Example
-------
>>> w = sideband_weights(0.5, n_max=10)
>>> round(float(w.sum()), 6)
1.0
>>> round(photon_energy_eV(532.0), 4)
2.3306
"""
from __future__ import annotations

import math
import typing

import numpy as np
import scipy.special
from numpy.typing import NDArray

from instrument_sim.errors import SimulatorParameterError

__all__ = [
    "HC_EV_NM", "photon_energy_eV", "sideband_weights", "sideband_orders", "lorentzian_resonance", "coupling_map",
    "beta_abs", "laser_on_fraction", "apply_pinem",
]

FloatArray = NDArray[np.float64]
HC_EV_NM = 1239.84198  # h c in eV nm


def photon_energy_eV(wavelength_nm: float) -> float:
    """hbar omega in eV for a wavelength in nm (1239.84 / lambda)."""
    if not (wavelength_nm > 0 and math.isfinite(wavelength_nm)):
        raise SimulatorParameterError(f"wavelength_nm must be positive and finite; got {wavelength_nm!r}.")
    return HC_EV_NM / wavelength_nm


def sideband_orders(beta: float, *, n_max: int | None = None) -> NDArray[np.int64]:
    """Orders -N..N that carry all but ~1e-12 of the probability for coupling ``|beta|``; shape (2N+1,)."""
    if n_max is None:
        # J_n(x) is negligible for |n| > x + a few x^(1/3); 2|beta| + 10 is ample.
        n_max = int(math.ceil(2.0 * abs(beta) + 4.0 * (2.0 * abs(beta)) ** (1.0 / 3.0) + 8.0))
    return np.arange(-n_max, n_max + 1)


def sideband_weights(beta: float, *, n_max: int | None = None) -> FloatArray:
    """Probabilities J_n(2|beta|)^2 for n = -N..N (see :func:`sideband_orders`); shape (2N+1,), sums to 1."""
    if not (beta >= 0 and math.isfinite(beta)):
        raise SimulatorParameterError(f"|beta| must be finite and >= 0; got {beta!r}.")
    n = sideband_orders(beta, n_max=n_max)
    return typing.cast(FloatArray, scipy.special.jv(n, 2.0 * beta) ** 2)


def lorentzian_resonance(photon_energy: float | FloatArray, *, center_eV: float, q_factor: float) -> FloatArray:
    """Optical resonance (peak 1 at ``center_eV``; FWHM = center_eV / q_factor) at the photon energy (eV)."""
    if not (center_eV > 0 and q_factor > 0):
        raise SimulatorParameterError(
            f"resonance centre and Q must be > 0; got center_eV={center_eV!r}, q_factor={q_factor!r}.")
    gamma = center_eV / q_factor
    x = 2.0 * (np.asarray(photon_energy, dtype=np.float64) - center_eV) / gamma
    return 1.0 / (1.0 + x * x)


def coupling_map(y_nm: FloatArray, x_nm: FloatArray, *, centers_nm: FloatArray, radii_nm: FloatArray,
                 decay_length_nm: float) -> FloatArray:
    """Spatial near-field coupling (0..1) at probe positions: exp(-d / decay) with d the distance to the nearest
    particle surface (1 on and inside particles).

    y_nm, x_nm: probe positions (any shape, same shape); centers_nm: (P, 2) particle centres (y, x);
    radii_nm: (P,). Returns an array of the positions' shape.
    """
    if not decay_length_nm > 0:
        raise SimulatorParameterError(f"decay_length_nm must be > 0; got {decay_length_nm!r}.")
    y = np.asarray(y_nm, dtype=np.float64)
    x = np.asarray(x_nm, dtype=np.float64)
    centers = np.asarray(centers_nm, dtype=np.float64).reshape(-1, 2)
    radii = np.asarray(radii_nm, dtype=np.float64).reshape(-1)
    out = np.zeros(np.broadcast(y, x).shape, dtype=np.float64)
    for (cy, cx), r in zip(centers, radii):
        d = np.maximum(np.hypot(y - cy, x - cx) - r, 0.0)
        np.maximum(out, np.exp(-d / decay_length_nm), out=out)
    return out


def beta_abs(*, peak_power_mW: float, coupling: float | FloatArray, resonance: float | FloatArray,
             beta_squared_per_mW: float) -> FloatArray:
    """|beta| = sqrt(beta_squared_per_mW * peak power * coupling * resonance)."""
    if peak_power_mW < 0 or beta_squared_per_mW < 0:
        raise SimulatorParameterError(
            f"power and beta_squared_per_mW must be >= 0; got {peak_power_mW!r}, {beta_squared_per_mW!r}.")
    b2 = beta_squared_per_mW * peak_power_mW * np.asarray(coupling, dtype=np.float64) * np.asarray(resonance)
    return typing.cast(FloatArray, np.sqrt(np.maximum(b2, 0.0)))


def laser_on_fraction(*, shutter_open: bool, pulse_frequency_Hz: float, pulse_width_s: float,
                      pulse_delay_s: float = 0.0, blanker_duty: float = 1.0) -> float:
    """Fraction of the transmitted electrons that meet a laser pulse.

    The laser emits pulses of width ``pulse_width_s`` at ``pulse_frequency_Hz`` (0 Hz = continuous wave). The
    electron beam is gated by a blanker open a fraction ``blanker_duty`` of each laser period, its window centred
    ``pulse_delay_s`` after the pulse centre. The result is the overlap of the two windows divided by the
    electron window (1 for CW light with the shutter open, 0 with the shutter closed).
    """
    if not 0.0 < blanker_duty <= 1.0:
        raise SimulatorParameterError(f"blanker_duty must be in (0, 1]; got {blanker_duty!r}.")
    if pulse_frequency_Hz < 0 or pulse_width_s < 0:
        raise SimulatorParameterError(
            f"pulse frequency and width must be >= 0; got {pulse_frequency_Hz!r} Hz, {pulse_width_s!r} s.")
    if not shutter_open:
        return 0.0
    if pulse_frequency_Hz == 0:
        return 1.0
    period = 1.0 / pulse_frequency_Hz
    if pulse_width_s >= period:
        return 1.0
    e_half = 0.5 * blanker_duty * period
    l_half = 0.5 * pulse_width_s
    delay = (pulse_delay_s + 0.5 * period) % period - 0.5 * period  # nearest pulse
    overlap = 0.0
    for k in (-1, 0, 1):  # electron window may overlap the neighbouring pulses
        centre = delay + k * period
        overlap += max(0.0, min(centre + e_half, l_half) - max(centre - e_half, -l_half))
    return float(min(overlap / (2.0 * e_half), 1.0))


def apply_pinem(spectrum_at_shift: typing.Callable[[float], FloatArray], *, beta: float, photon_energy: float,
                on_fraction: float, shift_eV: float = 0.0, min_weight: float = 1e-9) -> FloatArray:
    """PINEM-modified spectrum: (1 - f) S0(E - shift) + f sum_n J_n(2|beta|)^2 S0(E - shift + n hbar_omega).

    ``spectrum_at_shift(s)`` must return the laser-off spectrum with its ZLP at energy ``s`` (shape (C,)); the
    n-th sideband is that spectrum with its ZLP at ``shift_eV - n * photon_energy`` (gain for n > 0).
    """
    if not 0.0 <= on_fraction <= 1.0:
        raise SimulatorParameterError(f"on_fraction must be in [0, 1]; got {on_fraction!r}.")
    base = spectrum_at_shift(shift_eV)
    if on_fraction == 0.0 or beta == 0.0:
        return base
    orders = sideband_orders(beta)
    weights = sideband_weights(beta)
    out = (1.0 - on_fraction) * base
    for n, w in zip(orders, weights):
        if w < min_weight:
            continue
        out = out + on_fraction * w * (base if n == 0 else spectrum_at_shift(shift_eV - float(n) * photon_energy))
    return out
