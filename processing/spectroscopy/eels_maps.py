"""Elemental maps from an EELS spectrum image: core-loss edge signal above a power-law background.

For each spectrum the background ``A * E**-r`` is fitted (least squares in log-log) on a pre-edge window and
extrapolated under the signal window; the map is the integrated counts minus the integrated background. Spectra
are (..., E) arrays on a linear axis (:class:`processing.spectroscopy.spectrum_alignment.EnergyAxis`).
"""
from __future__ import annotations

import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError
from processing.spectroscopy.eegs import window_weights
from processing.spectroscopy.spectrum_alignment import EnergyAxis

__all__ = ["edge_map"]

FloatArray = NDArray[np.float64]


def edge_map(spectra: typing.Any, axis: EnergyAxis, onset_eV: float, *, pre_window_eV: float = 40.0,
             signal_window_eV: float = 40.0, gap_eV: float = 2.0) -> FloatArray:
    """Background-subtracted edge intensity of every spectrum.

    Parameters
    ----------
    spectra : (..., E) counts. axis : the energy calibration.
    onset_eV : edge onset (e.g. 402 for Sc L3, 1295 for Dy M5).
    pre_window_eV : width of the background fit window, ending ``gap_eV`` below the onset.
    signal_window_eV : width of the integration window starting at the onset.

    Returns
    -------
    (...) edge counts (may be negative in noise where there is no element).
    """
    data = np.asarray(spectra, dtype=np.float64)
    if data.ndim < 1 or not np.isfinite(data).all():
        raise InputError(f"spectra must be a finite (..., E) array; got shape {data.shape}.")
    n = data.shape[-1]
    energies = axis.energy(np.arange(n))
    lo_b, hi_b = onset_eV - gap_eV - pre_window_eV, onset_eV - gap_eV
    if lo_b <= 0 or onset_eV + signal_window_eV > energies[-1] or lo_b < energies[0]:
        raise ParameterError(
            f"edge at {onset_eV} eV with a {pre_window_eV} eV pre-edge and {signal_window_eV} eV signal window needs "
            f"the axis to cover {lo_b:.1f}..{onset_eV + signal_window_eV:.1f} eV (and positive energies); it covers "
            f"{energies[0]:.1f}..{energies[-1]:.1f} eV. Change the energy offset/dispersion or the windows.")
    pre = (energies >= lo_b) & (energies < hi_b)
    if np.count_nonzero(pre) < 3:
        raise ParameterError(f"the pre-edge window {lo_b:.1f}..{hi_b:.1f} eV holds fewer than 3 channels; widen it.")
    flat = data.reshape(-1, n)
    x = np.log(energies[pre])
    y = np.log(np.clip(flat[:, pre], 1e-3, None))
    xm = x.mean()
    slope = ((x - xm)[None, :] * (y - y.mean(axis=1, keepdims=True))).sum(axis=1) / ((x - xm) ** 2).sum()
    intercept = y.mean(axis=1) - slope * xm
    weights = window_weights(axis, n, onset_eV, onset_eV + signal_window_eV)
    sel = weights > 0
    model = np.exp(intercept[:, None] + slope[:, None] * np.log(energies[sel])[None, :])
    signal = flat[:, sel] @ weights[sel] - model @ weights[sel]
    return np.asarray(signal.reshape(data.shape[:-1]), dtype=np.float64)
