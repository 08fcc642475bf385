"""Deterministic, random-access drift models for the simulated instrument.

A drift model maps a time ``t_s`` (seconds since the simulation started, ``t_s >= 0``) to an offset. The same model
(same parameters, same ``seed``) returns the same offset for the same time, whatever the order or the batch in which
times are asked for, so a camera can ask for one time per frame and a scan device for one time per pixel, and tests
can ask for the ground truth afterwards.

Sample drift (:class:`DriftModel`), offset ``(y, x)`` in nm, is the sum of

* a linear term ``rate_nm_per_s * t``,
* a sinusoid ``sine_amplitude_nm * sin(2 pi t / sine_period_s)`` (e.g. thermal oscillation),
* a Brownian random walk with standard deviation ``random_walk_nm_per_sqrt_s * sqrt(t)`` *per axis*,
  sampled on a fine grid (:data:`WALK_GRID_S`) and linearly interpolated, hence continuous,
* jumps (a Poisson process with ``jump_rate_per_s``), each of length ``jump_size_nm`` in a uniformly random
  direction. The offset is right-continuous: a jump at ``tau`` is included for ``t >= tau``.

All terms are 0 at ``t = 0``. Energy drift (:class:`EnergyDriftModel`), offset in eV, is the 1-D analogue (linear,
optional random walk, jumps of ``+-jump_size_meV``).

Example
-------
>>> m = DriftModel(rate_nm_per_s=(0.1, -0.2), seed=1)
>>> m.offset_nm(10.0).round(6).tolist()
[1.0, -2.0]
>>> m.offset_nm(np.array([0.0, 1.0])).shape
(2, 2)
"""
from __future__ import annotations

import dataclasses
import math
import threading
import typing

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from instrument_sim.errors import SimulatorParameterError

__all__ = ["DriftModel", "EnergyDriftModel", "WALK_GRID_S", "WALK_CHUNK_S"]

FloatArray = NDArray[np.float64]

#: Grid step of the random walk (s). Between grid points the walk is linearly interpolated.
WALK_GRID_S = 0.002
#: Length of one independently seeded chunk of the random walk (s).
WALK_CHUNK_S = 8.0
_STEPS_PER_CHUNK = int(round(WALK_CHUNK_S / WALK_GRID_S))
#: Length of one block of the jump process (s).
_JUMP_BLOCK_S = 8192.0
_CHUNK_BLOCK = 1024  # number of walk chunks whose end-to-end totals are drawn together
_CACHE_CHUNKS = 64

# stream identifiers, so that the components of one model never share random numbers
_STREAM_WALK_TOTALS = 1
_STREAM_WALK_BRIDGE = 2
_STREAM_JUMPS = 3


def _as_times(t_s: ArrayLike) -> FloatArray:
    t = np.asarray(t_s, dtype=np.float64)
    if t.size and not bool(np.all(np.isfinite(t))):
        raise SimulatorParameterError(
            "drift times must be finite; got NaN or infinity. Remedy: pass times in seconds since the start.")
    if t.size and float(t.min()) < 0.0:
        raise SimulatorParameterError(
            f"drift times must be >= 0 s (seconds since the simulation started); got min {float(t.min())!r}. "
            "Remedy: subtract the start time, or clip at 0.")
    return t


def _check_finite(name: str, value: float, *, minimum: float | None = None, strictly: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SimulatorParameterError(f"{name} must be a real number; got {value!r}.") from None
    if not math.isfinite(v):
        raise SimulatorParameterError(f"{name} must be finite; got {value!r}.")
    if minimum is not None and (v < minimum or (strictly and v == minimum)):
        relation = ">" if strictly else ">="
        raise SimulatorParameterError(f"{name} must be {relation} {minimum}; got {value!r}.")
    return v


def _check_pair(name: str, value: typing.Any) -> tuple[float, float]:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise SimulatorParameterError(f"{name} must be a pair (y, x) of numbers; got {value!r}.") from None
    return _check_finite(name, a), _check_finite(name, b)


def _check_seed(value: typing.Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or int(value) < 0:
        raise SimulatorParameterError(f"seed must be a non-negative integer; got {value!r}.")
    return int(value)


@numba.njit(cache=True)
def _walk_kernel(t: FloatArray, k_min: int, chunks: FloatArray, out: FloatArray) -> None:  # pragma: no cover
    """out[i] += linear interpolation of chunk ``floor(t/C) - k_min`` of ``chunks`` (nk, S+1, ndim) at ``t[i]``."""
    steps = chunks.shape[1] - 1
    for i in range(t.shape[0]):
        k = int(math.floor(t[i] / WALK_CHUNK_S))
        local = (t[i] - k * WALK_CHUNK_S) / WALK_GRID_S
        i0 = int(math.floor(local))
        if i0 < 0:
            i0 = 0
        elif i0 > steps - 1:
            i0 = steps - 1
        f = local - i0
        c = k - k_min
        for a in range(out.shape[1]):
            v0 = chunks[c, i0, a]
            out[i, a] += v0 + f * (chunks[c, i0 + 1, a] - v0)


@numba.njit(cache=True)
def _linear_sine_kernel(t: FloatArray, rate: FloatArray, amplitude: FloatArray, omega: float,
                        out: FloatArray) -> None:  # pragma: no cover
    """out[i] = rate * t[i] + amplitude * sin(omega * t[i])."""
    for i in range(t.shape[0]):
        s = math.sin(omega * t[i]) if omega != 0.0 else 0.0
        for a in range(out.shape[1]):
            out[i, a] = rate[a] * t[i] + amplitude[a] * s


class _RandomWalk:
    """Brownian motion in ``ndim`` dimensions, random access, thread-safe.

    Chunk ``k`` covers ``[k*C, (k+1)*C)``. The chunk's end-to-end increments are drawn in blocks (seeded by block
    index) and cumulated; inside a chunk a Brownian bridge (seeded by chunk index) joins the two ends. The result is
    an exact Brownian motion sampled on the grid, independent of the order of evaluation.
    """

    def __init__(self, *, ndim: int, sigma_per_sqrt_s: float, seed: int) -> None:
        self.ndim = ndim
        self.sigma = sigma_per_sqrt_s
        self.seed = seed
        self._starts = np.zeros((1, ndim))  # starts[k] = W(k*C)
        self._totals = np.zeros((0, ndim))
        self._cache: dict[int, FloatArray] = {}
        self._lock = threading.Lock()

    def _ensure_starts(self, k_max: int) -> None:
        while self._starts.shape[0] <= k_max + 1:
            block = self._totals.shape[0] // _CHUNK_BLOCK
            rng = np.random.default_rng([self.seed, _STREAM_WALK_TOTALS, block])
            totals = rng.standard_normal((_CHUNK_BLOCK, self.ndim)) * (self.sigma * math.sqrt(WALK_CHUNK_S))
            self._totals = np.concatenate([self._totals, totals])
            self._starts = np.concatenate([np.zeros((1, self.ndim)), np.cumsum(self._totals, axis=0)])

    def _chunk(self, k: int) -> FloatArray:
        cached = self._cache.get(k)
        if cached is not None:
            return cached
        n = _STEPS_PER_CHUNK
        rng = np.random.default_rng([self.seed, _STREAM_WALK_BRIDGE, k])
        steps = rng.standard_normal((n, self.ndim)) * (self.sigma * math.sqrt(WALK_GRID_S))
        s = np.concatenate([np.zeros((1, self.ndim)), np.cumsum(steps, axis=0)])
        frac = (np.arange(n + 1, dtype=np.float64) / n)[:, np.newaxis]
        values: FloatArray = self._starts[k] + s - frac * s[n] + frac * self._totals[k]
        if len(self._cache) >= _CACHE_CHUNKS:
            self._cache.pop(next(iter(self._cache)))
        self._cache[k] = values
        return values

    def evaluate(self, t: FloatArray) -> FloatArray:
        """``t`` flat, >= 0. Returns ``(len(t), ndim)``."""
        out = np.zeros((t.shape[0], self.ndim))
        self.add_to(t, out)
        return out

    def add_to(self, t: FloatArray, out: FloatArray) -> None:
        """Add the walk at the flat times ``t`` (>= 0) to ``out`` ``(len(t), ndim)``."""
        if t.shape[0] == 0:
            return
        k_min, k_max = int(float(t.min()) // WALK_CHUNK_S), int(float(t.max()) // WALK_CHUNK_S)
        with self._lock:
            self._ensure_starts(k_max)
            if k_max - k_min < _CACHE_CHUNKS:  # one kernel call over a stack of the chunks
                chunks = np.stack([self._chunk(k) for k in range(k_min, k_max + 1)])
                _walk_kernel(t, k_min, chunks, out)
                return
            # many chunks: visit the times in chunk order, generating each chunk once
            order = np.argsort(t, kind="stable")
            sorted_t = t[order]
            k_sorted = np.floor(sorted_t / WALK_CHUNK_S).astype(np.int64)
            starts = np.flatnonzero(np.diff(k_sorted)) + 1
            for lo, hi in zip(np.concatenate([[0], starts]).tolist(), np.concatenate([starts, [len(t)]]).tolist()):
                k = int(k_sorted[lo])
                part = np.zeros((hi - lo, self.ndim))
                _walk_kernel(sorted_t[lo:hi], k, self._chunk(k)[np.newaxis], part)
                out[order[lo:hi]] += part


class _JumpProcess:
    """Compound Poisson process of fixed-size jumps in random directions (random signs in 1-D), random access."""

    def __init__(self, *, ndim: int, rate_per_s: float, size: float, seed: int) -> None:
        self.ndim = ndim
        self.rate = rate_per_s
        self.size = size
        self.seed = seed
        self._blocks: list[tuple[FloatArray, FloatArray]] = []  # (sorted times, cumulative jumps incl. leading 0)
        self._block_starts = np.zeros((1, ndim))
        self._lock = threading.Lock()

    def _ensure_blocks(self, b_max: int) -> None:
        while len(self._blocks) <= b_max:
            b = len(self._blocks)
            rng = np.random.default_rng([self.seed, _STREAM_JUMPS, b])
            count = int(rng.poisson(self.rate * _JUMP_BLOCK_S))
            times = np.sort(b * _JUMP_BLOCK_S + rng.uniform(0.0, _JUMP_BLOCK_S, count))
            if self.ndim == 1:
                vectors = (rng.integers(0, 2, count) * 2 - 1).astype(np.float64)[:, np.newaxis] * self.size
            else:
                angle = rng.uniform(0.0, 2.0 * math.pi, count)
                vectors = np.stack([np.sin(angle), np.cos(angle)], axis=-1) * self.size
            cumulative = np.concatenate([np.zeros((1, self.ndim)), np.cumsum(vectors, axis=0)])
            self._blocks.append((times, cumulative))
            self._block_starts = np.concatenate([self._block_starts, self._block_starts[-1:] + cumulative[-1:]])

    def evaluate(self, t: FloatArray) -> FloatArray:
        out = np.zeros((t.shape[0], self.ndim))
        if t.shape[0] == 0:
            return out
        t_min, t_max = float(t.min()), float(t.max())
        b_min, b_max = int(t_min // _JUMP_BLOCK_S), int(t_max // _JUMP_BLOCK_S)
        with self._lock:
            self._ensure_blocks(b_max)
            b_all = np.floor(t / _JUMP_BLOCK_S).astype(np.int64) if b_min != b_max else None
            for b in range(b_min, b_max + 1):
                mask: typing.Any = slice(None) if b_all is None else (b_all == b)
                times, cumulative = self._blocks[b]
                inside = times[(times > t_min) & (times <= t_max)]
                if inside.size == 0:  # no jump within the requested times: constant
                    before = int(np.searchsorted(times, t_min, side="right"))
                    out[mask] = self._block_starts[b] + cumulative[before]
                else:
                    index = np.searchsorted(times, t[mask], side="right")
                    out[mask] = self._block_starts[b] + cumulative[index]
        return out

    def jump_times_s(self, t_max_s: float) -> FloatArray:
        with self._lock:
            self._ensure_blocks(int(math.floor(t_max_s / _JUMP_BLOCK_S)))
            times = np.concatenate([blk[0] for blk in self._blocks])
        return times[times <= t_max_s]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DriftModel:
    """Sample drift: linear + sinusoid + random walk + jumps; offset ``(y, x)`` in nm, 0 at ``t = 0``.

    Parameters
    ----------
    rate_nm_per_s : (vy, vx), nm/s
        Linear drift velocity.
    sine_amplitude_nm : (ay, ax), nm
        Amplitude of the sinusoidal term (both axes in phase).
    sine_period_s : float, s, > 0
        Period of the sinusoidal term.
    random_walk_nm_per_sqrt_s : float, nm/sqrt(s), >= 0
        Standard deviation of the random walk per axis after 1 s (variance grows linearly with t).
    jump_rate_per_s : float, 1/s, >= 0
        Mean number of sudden jumps per second.
    jump_size_nm : float, nm, >= 0
        Length of each jump (random direction).
    seed : int
        Seed of every random component.
    """

    rate_nm_per_s: tuple[float, float] = (0.0, 0.0)
    sine_amplitude_nm: tuple[float, float] = (0.0, 0.0)
    sine_period_s: float = 60.0
    random_walk_nm_per_sqrt_s: float = 0.0
    jump_rate_per_s: float = 0.0
    jump_size_nm: float = 0.0
    seed: int = 0
    _walk: _RandomWalk = dataclasses.field(init=False, repr=False, compare=False)
    _jumps: _JumpProcess = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "rate_nm_per_s", _check_pair("rate_nm_per_s", self.rate_nm_per_s))
        setattr_(self, "sine_amplitude_nm", _check_pair("sine_amplitude_nm", self.sine_amplitude_nm))
        setattr_(self, "sine_period_s", _check_finite("sine_period_s", self.sine_period_s, minimum=0.0, strictly=True))
        setattr_(self, "random_walk_nm_per_sqrt_s",
                 _check_finite("random_walk_nm_per_sqrt_s", self.random_walk_nm_per_sqrt_s, minimum=0.0))
        setattr_(self, "jump_rate_per_s", _check_finite("jump_rate_per_s", self.jump_rate_per_s, minimum=0.0))
        setattr_(self, "jump_size_nm", _check_finite("jump_size_nm", self.jump_size_nm, minimum=0.0))
        setattr_(self, "seed", _check_seed(self.seed))
        setattr_(self, "_walk", _RandomWalk(ndim=2, sigma_per_sqrt_s=self.random_walk_nm_per_sqrt_s, seed=self.seed))
        setattr_(self, "_jumps", _JumpProcess(ndim=2, rate_per_s=self.jump_rate_per_s, size=self.jump_size_nm,
                                              seed=self.seed))

    def replace(self, **changes: typing.Any) -> DriftModel:
        """Return a copy with some parameters changed (e.g. ``model.replace(seed=3)``)."""
        return dataclasses.replace(self, **changes)

    @property
    def is_static(self) -> bool:
        """True when the offset is 0 at all times."""
        return (self.rate_nm_per_s == (0.0, 0.0) and self.sine_amplitude_nm == (0.0, 0.0)
                and self.random_walk_nm_per_sqrt_s == 0.0 and (self.jump_rate_per_s == 0.0 or self.jump_size_nm == 0.0))

    def offset_nm(self, t_s: ArrayLike) -> FloatArray:
        """Sample offset at time(s) ``t_s``.

        Parameters
        ----------
        t_s : float or array of shape (...), s, >= 0
            Seconds since the simulation started.

        Returns
        -------
        ndarray of shape (..., 2), float64, nm
            ``(y, x)`` offset of the sample; 0 at ``t = 0``.
        """
        t = _as_times(t_s)
        flat = np.ascontiguousarray(t.reshape(-1))
        out = np.empty((flat.shape[0], 2))
        omega = 2.0 * math.pi / self.sine_period_s if self.sine_amplitude_nm != (0.0, 0.0) else 0.0
        _linear_sine_kernel(flat, np.asarray(self.rate_nm_per_s), np.asarray(self.sine_amplitude_nm), omega, out)
        if self.random_walk_nm_per_sqrt_s > 0.0:
            self._walk.add_to(flat, out)
        if self.jump_rate_per_s > 0.0 and self.jump_size_nm > 0.0:
            out += self._jumps.evaluate(flat)
        return out.reshape(t.shape + (2,))

    def jump_times_s(self, t_max_s: float) -> FloatArray:
        """Times (s, sorted) of the jumps in ``[0, t_max_s]`` (ground truth for jump-detection tests)."""
        if self.jump_rate_per_s == 0.0 or self.jump_size_nm == 0.0:
            return np.zeros(0)
        return self._jumps.jump_times_s(_check_finite("t_max_s", t_max_s, minimum=0.0))


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnergyDriftModel:
    """Energy (e.g. zero-loss peak) drift: linear + optional random walk + jumps of ``+-jump_size_meV``.

    Parameters
    ----------
    rate_meV_per_s : float, meV/s
        Linear drift rate.
    jump_rate_per_s : float, 1/s, >= 0
        Mean number of jumps per second.
    jump_size_meV : float, meV, >= 0
        Size of each jump (random sign).
    seed : int
        Seed of the random components.
    random_walk_meV_per_sqrt_s : float, meV/sqrt(s), >= 0
        Standard deviation of the random walk after 1 s (default 0).
    """

    rate_meV_per_s: float = 0.0
    jump_rate_per_s: float = 0.0
    jump_size_meV: float = 0.0
    seed: int = 0
    random_walk_meV_per_sqrt_s: float = 0.0
    _walk: _RandomWalk = dataclasses.field(init=False, repr=False, compare=False)
    _jumps: _JumpProcess = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "rate_meV_per_s", _check_finite("rate_meV_per_s", self.rate_meV_per_s))
        setattr_(self, "jump_rate_per_s", _check_finite("jump_rate_per_s", self.jump_rate_per_s, minimum=0.0))
        setattr_(self, "jump_size_meV", _check_finite("jump_size_meV", self.jump_size_meV, minimum=0.0))
        setattr_(self, "seed", _check_seed(self.seed))
        setattr_(self, "random_walk_meV_per_sqrt_s",
                 _check_finite("random_walk_meV_per_sqrt_s", self.random_walk_meV_per_sqrt_s, minimum=0.0))
        # distinct seed streams from a DriftModel with the same seed
        setattr_(self, "_walk", _RandomWalk(ndim=1, sigma_per_sqrt_s=self.random_walk_meV_per_sqrt_s * 1e-3,
                                            seed=self.seed + 7919))
        setattr_(self, "_jumps", _JumpProcess(ndim=1, rate_per_s=self.jump_rate_per_s,
                                              size=self.jump_size_meV * 1e-3, seed=self.seed + 7919))

    def replace(self, **changes: typing.Any) -> EnergyDriftModel:
        """Return a copy with some parameters changed."""
        return dataclasses.replace(self, **changes)

    def offset_eV(self, t_s: ArrayLike) -> FloatArray:
        """Energy offset at time(s) ``t_s``.

        Parameters
        ----------
        t_s : float or array of shape (...), s, >= 0

        Returns
        -------
        ndarray of shape (...), float64, eV
            0 at ``t = 0``.
        """
        t = _as_times(t_s)
        flat = t.reshape(-1)
        out = flat * (self.rate_meV_per_s * 1e-3)
        if self.random_walk_meV_per_sqrt_s > 0.0:
            out = out + self._walk.evaluate(flat)[:, 0]
        if self.jump_rate_per_s > 0.0 and self.jump_size_meV > 0.0:
            out = out + self._jumps.evaluate(flat)[:, 0]
        return out.reshape(t.shape)

    def jump_times_s(self, t_max_s: float) -> FloatArray:
        """Times (s, sorted) of the jumps in ``[0, t_max_s]``."""
        if self.jump_rate_per_s == 0.0 or self.jump_size_meV == 0.0:
            return np.zeros(0)
        return self._jumps.jump_times_s(_check_finite("t_max_s", t_max_s, minimum=0.0))
