"""Detector noise models: counting (Poisson) noise on the signal plus read noise, or a Merlin-like counting detector.

Pure numpy; no Swift import. Input is always the *expected number of electrons* per detector pixel (noise-free,
from the physics); output is what the detector reads (float32 counts).

* :class:`IntegratingDetector` (CCD/CMOS-like): ``counts = gain * Poisson(electrons) + Normal(0, read_noise)``,
  so the variance is ``gain * mean + read_noise^2`` (``gain = 1``, no read noise: variance = mean).
* :class:`CameraArtefacts` (switchable, for the in-situ camera): bias, dark current growing with exposure, per-pixel
  gain non-uniformity, hot and dead pixels, read noise, saturation at full scale; integer counts.
* :class:`CountingDetector` (Merlin/Medipix-like): each electron is counted at most once if its deposited charge
  passes the threshold, with a per-pixel detection efficiency map (the "gain map"), dead pixels that always read
  0, and a counter depth that saturates. No read noise. Counts = min(Poisson(electrons * efficiency), max_count).

Example
-------
>>> det = IntegratingDetector(counts_per_electron=1.0, read_noise_counts=0.0)
>>> frame = det.read(np.full((4, 4), 100.0), np.random.default_rng(0))
>>> frame.dtype
dtype('float32')
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
from numpy.typing import NDArray

from instrument_sim.errors import SimulatorParameterError

__all__ = ["Detector", "IntegratingDetector", "CountingDetector", "CameraArtefacts", "ArtefactMaps", "poisson_counts"]

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]


def poisson_counts(expected: NDArray[typing.Any], rng: np.random.Generator) -> FloatArray:
    """Poisson sample of ``expected`` (>= 0, finite), as float64; raises a clear error on bad input."""
    lam = np.asarray(expected, dtype=np.float64)
    if lam.size and (not np.all(np.isfinite(lam)) or lam.min() < 0):
        raise SimulatorParameterError(
            "expected electron counts must be finite and >= 0; got NaN/inf or negative values "
            f"(min {float(np.nanmin(lam)) if lam.size else 0.0!r}). Check the beam current and exposure.")
    return rng.poisson(lam).astype(np.float64)


class Detector(typing.Protocol):
    def read(self, expected_electrons: NDArray[typing.Any], rng: np.random.Generator) -> Float32Array: ...


@dataclasses.dataclass(frozen=True)
class IntegratingDetector:
    """Integrating camera: gain (counts per electron), Gaussian read noise (counts rms), constant dark level."""

    counts_per_electron: float = 1.0
    read_noise_counts: float = 0.0
    dark_level_counts: float = 0.0

    def __post_init__(self) -> None:
        if not (self.counts_per_electron > 0 and math.isfinite(self.counts_per_electron)):
            raise SimulatorParameterError(
                f"counts_per_electron must be positive; got {self.counts_per_electron!r}.")
        if not (self.read_noise_counts >= 0 and math.isfinite(self.read_noise_counts)):
            raise SimulatorParameterError(f"read_noise_counts must be >= 0; got {self.read_noise_counts!r}.")

    def read(self, expected_electrons: NDArray[typing.Any], rng: np.random.Generator) -> Float32Array:
        """One read-out: shape of ``expected_electrons``, float32 counts."""
        counts = poisson_counts(expected_electrons, rng)
        if self.counts_per_electron != 1.0:
            counts *= self.counts_per_electron
        if self.read_noise_counts > 0:
            counts += rng.normal(0.0, self.read_noise_counts, counts.shape)
        if self.dark_level_counts:
            counts += self.dark_level_counts
        return counts.astype(np.float32)


class CountingDetector:
    """Merlin-like hybrid pixel counting detector.

    Parameters (keyword-only)
    -------------------------
    shape : detector shape (rows, columns); frames given to :meth:`read` must have it.
    efficiency_mean, efficiency_spread : per-pixel detection efficiency (probability that an electron passes the
        threshold): normal(mean, spread) clipped to [0, 1]; the "gain map".
    dead_pixel_fraction : fraction of pixels that never count.
    counter_bits : counter depth (12-bit -> saturates at 4095 counts per frame).
    seed : fixes the efficiency map and the dead pixels (the noise comes from the caller's generator).
    """

    def __init__(self, *, shape: tuple[int, int], efficiency_mean: float = 0.92, efficiency_spread: float = 0.03,
                 dead_pixel_fraction: float = 0.001, counter_bits: int = 12, seed: int = 0) -> None:
        if len(shape) != 2 or min(shape) < 1:
            raise SimulatorParameterError(f"shape must be (rows, columns) >= 1; got {shape!r}.")
        if not 0 < efficiency_mean <= 1 or efficiency_spread < 0:
            raise SimulatorParameterError(
                f"efficiency_mean must be in (0, 1] and efficiency_spread >= 0; got {efficiency_mean!r}, "
                f"{efficiency_spread!r}.")
        if not 0 <= dead_pixel_fraction < 1:
            raise SimulatorParameterError(f"dead_pixel_fraction must be in [0, 1); got {dead_pixel_fraction!r}.")
        if not 1 <= counter_bits <= 32:
            raise SimulatorParameterError(f"counter_bits must be 1..32; got {counter_bits!r}.")
        rng = np.random.default_rng(seed)
        self.shape = (int(shape[0]), int(shape[1]))
        self.efficiency_map = np.clip(rng.normal(efficiency_mean, efficiency_spread, self.shape), 0.0, 1.0)
        self.dead_pixels = rng.random(self.shape) < dead_pixel_fraction
        self.efficiency_map[self.dead_pixels] = 0.0
        self.max_count = float(2 ** counter_bits - 1)

    def read(self, expected_electrons: NDArray[typing.Any], rng: np.random.Generator) -> Float32Array:
        """One frame: thresholded counts, float32, saturating at the counter depth."""
        lam = np.asarray(expected_electrons, dtype=np.float64)
        if lam.shape[-2:] != self.shape:
            raise SimulatorParameterError(
                f"frame shape {lam.shape} does not match the counting detector shape {self.shape}; build the "
                f"detector with shape=(rows, columns) of the frames you read.")
        counts = poisson_counts(lam * self.efficiency_map, rng)
        np.minimum(counts, self.max_count, out=counts)
        return counts.astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class ArtefactMaps:
    """Per-pixel truth of :class:`CameraArtefacts` for one sensor shape: gain (relative, mean 1), dark current
    (counts/s), dead and hot masks; all (H, W)."""

    gain: FloatArray
    dark_counts_per_s: FloatArray
    dead: NDArray[np.bool_]
    hot: NDArray[np.bool_]


@dataclasses.dataclass(frozen=True)
class CameraArtefacts:
    """Camera artefacts that can be switched on for the simulated in-situ camera (all in counts).

    counts = clip(round(gain_map * signal + bias + Poisson(dark_rate * exposure) + Normal(0, read_noise)),
                  0, full_scale); dead pixels read the bias (plus read noise) only.

    bias_counts : offset of every pixel. dark_counts_per_s : mean dark current. gain_spread : relative rms of
    the per-pixel gain map (flat-field non-uniformity, with a smooth vignetting of ``vignetting`` at the corners).
    hot_pixel_fraction / hot_dark_counts_per_s : pixels with a much larger dark current. dead_pixel_fraction.
    read_noise_counts. full_scale_counts : saturation (e.g. 16383 for 14 bits). seed : fixes the maps.
    """

    bias_counts: float = 100.0
    dark_counts_per_s: float = 20.0
    gain_spread: float = 0.05
    vignetting: float = 0.1
    hot_pixel_fraction: float = 2e-4
    hot_dark_counts_per_s: float = 4000.0
    dead_pixel_fraction: float = 2e-4
    read_noise_counts: float = 2.0
    full_scale_counts: float = 16383.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("bias_counts", "dark_counts_per_s", "gain_spread", "vignetting", "hot_dark_counts_per_s",
                     "read_noise_counts"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SimulatorParameterError(f"CameraArtefacts.{name} must be finite and >= 0; got {value!r}.")
        for name in ("hot_pixel_fraction", "dead_pixel_fraction"):
            if not 0 <= getattr(self, name) < 0.5:
                raise SimulatorParameterError(f"CameraArtefacts.{name} must be in [0, 0.5); got {getattr(self, name)!r}.")
        if not self.full_scale_counts > self.bias_counts:
            raise SimulatorParameterError(
                f"full_scale_counts ({self.full_scale_counts}) must exceed bias_counts ({self.bias_counts}).")

    def maps(self, shape: tuple[int, int]) -> ArtefactMaps:
        """The per-pixel maps for a sensor of ``shape`` (deterministic for a seed)."""
        return _artefact_maps(self, (int(shape[0]), int(shape[1])))

    def read(self, signal_counts: NDArray[typing.Any], *, exposure_s: float, rng: np.random.Generator,
             area: tuple[int, int, int, int] | None = None, binning: int = 1,
             sensor_shape: tuple[int, int] | None = None) -> Float32Array:
        """Counts (integers in float32) for a frame whose ideal signal (gain 1, no offset) is ``signal_counts``,
        read from ``area`` (top, left, bottom, right) of the sensor with ``binning`` (maps averaged/summed over
        each binned block; a block containing a dead pixel reads as dead)."""
        signal = np.asarray(signal_counts, dtype=np.float64)
        hb, wb = signal.shape
        shape = sensor_shape if sensor_shape is not None else (hb * binning, wb * binning)
        top, left, _bottom, _right = area if area is not None else (0, 0) + tuple(shape)
        maps = self.maps(shape)
        ys, xs = slice(top, top + hb * binning), slice(left, left + wb * binning)

        def block(a: NDArray[typing.Any], how: str) -> FloatArray:
            cut = np.asarray(a[ys, xs], dtype=np.float64)
            if binning == 1:
                return cut
            blocks = cut.reshape(hb, binning, wb, binning)
            return np.asarray(blocks.mean(axis=(1, 3)) if how == "mean" else blocks.sum(axis=(1, 3)))

        gain = block(maps.gain, "mean")
        dark = block(maps.dark_counts_per_s, "sum")
        dead = block(maps.dead, "sum") > 0
        counts = gain * signal + self.bias_counts
        if exposure_s > 0:
            counts += rng.poisson(np.maximum(dark * exposure_s, 0.0))
        if self.read_noise_counts > 0:
            counts += rng.normal(0.0, self.read_noise_counts, counts.shape)
        counts[dead] = self.bias_counts + (rng.normal(0.0, self.read_noise_counts, int(dead.sum()))
                                           if self.read_noise_counts > 0 else 0.0)
        return np.clip(np.rint(counts), 0.0, self.full_scale_counts).astype(np.float32)


_MAP_CACHE: dict[tuple[CameraArtefacts, tuple[int, int]], ArtefactMaps] = {}


def _artefact_maps(artefacts: CameraArtefacts, shape: tuple[int, int]) -> ArtefactMaps:
    key = (artefacts, shape)
    cached = _MAP_CACHE.get(key)
    if cached is not None:
        return cached
    rng = np.random.default_rng([artefacts.seed, 0xA27E])
    h, w = shape
    yy = (np.arange(h) - (h - 1) / 2.0)[:, None] / max(h / 2.0, 1.0)
    xx = (np.arange(w) - (w - 1) / 2.0)[None, :] / max(w / 2.0, 1.0)
    vignette = 1.0 - artefacts.vignetting * 0.5 * (yy * yy + xx * xx)
    gain = vignette * (1.0 + artefacts.gain_spread * rng.standard_normal(shape))
    gain = np.clip(gain / gain.mean(), 0.05, None)
    hot = rng.random(shape) < artefacts.hot_pixel_fraction
    dead = (rng.random(shape) < artefacts.dead_pixel_fraction) & ~hot
    dark = artefacts.dark_counts_per_s * (1.0 + 0.1 * rng.standard_normal(shape)).clip(0.0, None)
    dark[hot] = artefacts.hot_dark_counts_per_s
    maps = ArtefactMaps(gain=gain, dark_counts_per_s=dark, dead=dead, hot=hot)
    if len(_MAP_CACHE) > 8:
        _MAP_CACHE.clear()
    _MAP_CACHE[key] = maps
    return maps
