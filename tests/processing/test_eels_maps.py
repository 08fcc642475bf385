"""Known-answer test of processing.spectroscopy.eels_maps.edge_map: power-law background + an edge of known size."""
from __future__ import annotations

import numpy as np
import pytest

from processing.base import ParameterError
from processing.spectroscopy.eels_maps import edge_map
from processing.spectroscopy.spectrum_alignment import EnergyAxis

AXIS = EnergyAxis(offset_eV=100.0, scale_eV=1.0)
E = AXIS.energy(np.arange(600))


def test_edge_counts_recovered_under_power_law() -> None:
    amplitudes = np.array([0.0, 50.0, 200.0])
    background = 1e9 * E ** -3.0
    spectra = background[None, :] + amplitudes[:, None] * (E[None, :] >= 400.0)  # step edge at 400 eV
    m = edge_map(spectra, AXIS, 400.0, pre_window_eV=60.0, signal_window_eV=40.0)
    assert m == pytest.approx(amplitudes * 40.0, rel=1e-3, abs=1.0)


def test_window_outside_axis_is_explained() -> None:
    with pytest.raises(ParameterError, match="cover"):
        edge_map(np.ones((2, 600)), AXIS, 690.0)
