"""Element maps of an EELS spectrum image for fusion: the edge windows of :mod:`processing.spectroscopy.eels_maps`
with a background that stays linear in the counts at low dose.

A per-pixel power-law fit (:func:`processing.spectroscopy.eels_maps.edge_map`) is unstable on a few counts per
channel (a pre-edge window with zeros gives a wild extrapolation, maps with outliers of 100x the signal). Here the
power law is fitted once, on the mean spectrum of the acquired pixels, and scaled to each pixel by its pre-edge
counts: ``map = signal-window counts - (pixel pre-edge counts / mean pre-edge counts) * mean background``. The map
is a linear function of the counts (its noise is the Poisson noise of the windows) and equals the power-law map on
the mean spectrum.
"""
from __future__ import annotations

import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError
from processing.fusion.elements import element_symbol
from processing.spectroscopy.eegs import window_weights
from processing.spectroscopy.eels_maps import edge_map
from processing.spectroscopy.spectrum_alignment import EnergyAxis

__all__ = ["EDGE_ONSETS_EV", "edge_onset_eV", "edge_maps"]

#: the edge used for the map of each element (eV): K edges of light elements, L3 of 3d metals, M5 of lanthanides
EDGE_ONSETS_EV: dict[str, float] = {
    "B": 188.0, "C": 284.0, "N": 401.0, "O": 532.0, "F": 685.0, "Na": 1072.0, "Mg": 1305.0, "Al": 1560.0,
    "Si": 1839.0, "Ca": 346.0, "Sc": 402.0, "Ti": 456.0, "V": 513.0, "Cr": 575.0, "Mn": 640.0, "Fe": 708.0,
    "Co": 779.0, "Ni": 855.0, "Cu": 931.0, "Zn": 1020.0, "Sr": 1940.0, "Y": 2080.0, "Zr": 2222.0, "Ag": 367.0,
    "Ba": 781.0, "La": 832.0, "Ce": 883.0, "Pr": 931.0, "Nd": 978.0, "Sm": 1080.0, "Eu": 1131.0, "Gd": 1185.0,
    "Tb": 1241.0, "Dy": 1295.0, "Ho": 1351.0, "Er": 1409.0,
}


def edge_onset_eV(element: str) -> float:
    """Onset of the edge used to map ``element`` (see :data:`EDGE_ONSETS_EV`)."""
    symbol = element_symbol(element)
    if symbol not in EDGE_ONSETS_EV:
        raise ParameterError(f"no EELS edge known for {symbol}; known: {', '.join(sorted(EDGE_ONSETS_EV))}. Give the "
                             f"edge onset explicitly (onsets_eV={{'{symbol}': ...}}).")
    return EDGE_ONSETS_EV[symbol]


def edge_maps(si: typing.Any, axis: EnergyAxis, elements: typing.Sequence[str], *,
              onsets_eV: typing.Mapping[str, float] | None = None, pre_window_eV: float = 40.0,
              signal_window_eV: float = 40.0, gap_eV: float = 2.0,
              acquired: typing.Any = None) -> dict[str, NDArray[np.float64]]:
    """Background-subtracted edge counts (H, W) of each element of an SI (H, W, E) on ``axis``.

    ``acquired`` (H, W) bool: pixels holding data (others, e.g. NaN rows of a running SI, come out NaN).
    """
    data = np.asarray(si)
    if data.ndim != 3:
        raise InputError(f"the spectrum image must be (H, W, E); got shape {data.shape}.")
    h, w, n = data.shape
    valid = np.ones((h, w), bool) if acquired is None else np.asarray(acquired, dtype=bool)
    if valid.shape != (h, w):
        raise InputError(f"acquired must be (H, W) = {(h, w)}; got {valid.shape}.")
    if not valid.any():
        raise InputError("no pixel of the spectrum image is acquired yet; nothing to map.")
    flat = data.reshape(h * w, n)
    inside = valid.ravel()
    spectra = flat if inside.all() else flat[inside]  # a view when every pixel is acquired
    if spectra.dtype not in (np.float32, np.float64):
        spectra = spectra.astype(np.float64)
    if not np.isfinite(spectra).all():
        raise InputError("the acquired spectra contain NaN/inf values; mark those pixels as not acquired.")
    mean = spectra.mean(axis=0, dtype=np.float64)
    energies = axis.energy(np.arange(n))
    columns: list[NDArray[np.float64]] = []
    for element in elements:
        onset = float((onsets_eV or {}).get(element, 0.0)) or edge_onset_eV(element)
        mean_signal = float(edge_map(mean[None, :], axis, onset, pre_window_eV=pre_window_eV,
                                     signal_window_eV=signal_window_eV, gap_eV=gap_eV)[0])
        weights = window_weights(axis, n, onset, onset + signal_window_eV)
        lo, hi = onset - gap_eV - pre_window_eV, onset - gap_eV
        pre = ((energies >= lo) & (energies < hi)).astype(np.float64)
        mean_background = float(mean @ weights) - mean_signal
        mean_pre = float(mean @ pre)
        if not mean_pre > 0:
            raise InputError(f"the pre-edge window {lo:.0f}-{hi:.0f} eV of {element} holds no counts on average; the "
                             f"SI has no signal there: check the energy offset or the element.")
        # map = signal-window counts - (pre-edge counts / mean pre-edge counts) * mean background: one projection
        columns.append(weights - pre * (mean_background / mean_pre))
    projected = spectra @ np.stack(columns, axis=1).astype(spectra.dtype)  # (pixels, elements), one BLAS call
    out: dict[str, NDArray[np.float64]] = {}
    for i, element in enumerate(elements):
        full = np.full((h, w), np.nan)
        full.reshape(-1)[inside] = projected[:, i]
        out[element] = full
    return out
