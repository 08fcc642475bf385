"""Peak/background of a lattice peak in a power spectrum, one definition shared by the Max-FFT ground-truth tests
(synthetic patches in test_fft_analysis.py, simulated particles in test_simulator_ground_truth.py).

Definition (docs/processors-ground-truth.md): the maximum power within 2.5 px of either Friedel peak, over the
median power of the annulus at the peak's |k| (radius +-25 %, without the 6 px around both peaks), both measured in
the spectrum as displayed (for the Max-FFT: the per-pixel maximum over all tiles).
"""
from __future__ import annotations

import numpy as np


def peak_to_background(power: np.ndarray, centre: tuple[float, float], peak: tuple[float, float]) -> float:
    """Peak/background of the lattice peak at offset ``peak`` (row, col) px from ``centre`` (row, col) px of the
    fftshifted (H, W) power spectrum ``power`` (linear power, not log)."""
    cy, cx = centre
    yy, xx = np.mgrid[0:power.shape[0], 0:power.shape[1]]
    near = np.zeros(power.shape, bool)
    for sign in (1, -1):
        near |= np.hypot(yy - (cy + sign * peak[0]), xx - (cx + sign * peak[1])) <= 2.5
    radius = np.hypot(*peak)
    rr = np.hypot(yy - cy, xx - cx)
    annulus = (np.abs(rr - radius) <= 0.25 * radius) & ~near
    for sign in (1, -1):
        annulus &= np.hypot(yy - (cy + sign * peak[0]), xx - (cx + sign * peak[1])) > 6
    return float(power[near].max() / np.median(power[annulus]))


def full_frame_power(data: np.ndarray) -> np.ndarray:
    """fftshifted power spectrum ``|fft2(data - mean)|**2`` of a (H, W) frame, float64."""
    centred = np.asarray(data, np.float64) - float(np.mean(data))
    power: np.ndarray = np.fft.fftshift(np.abs(np.fft.fft2(centred)) ** 2)
    return power
