"""Fast, seeded shot noise (Poisson) for simulated detectors.

:func:`shot_noise` draws a Poisson count for every element of an array of expected counts. Below
``normal_threshold`` expected counts it samples the Poisson distribution exactly (inversion of the cumulative distribution);
at or above it uses the normal approximation ``round(lam + sqrt(lam) * z)`` (clipped at 0), whose mean and variance
match the Poisson ones. Random numbers come from a counter-based generator (SplitMix64 of ``key + index``), so the
result depends only on the key drawn from ``rng`` and not on the number of threads. Numba-compiled and parallel:
about 5-10 ms per 1024x1024 frame on 2 cores.

Example
-------
>>> import numpy as np
>>> counts = shot_noise(np.full((4, 4), 3.0), np.random.default_rng(0))
>>> counts.dtype, counts.shape, bool((counts >= 0).all())
(dtype('float32'), (4, 4), True)
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from instrument_sim.errors import SimulatorParameterError

__all__ = ["shot_noise", "DEFAULT_NORMAL_THRESHOLD"]

#: Expected counts at and above which the normal approximation is used.
DEFAULT_NORMAL_THRESHOLD = 20.0

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53
_MAX_K = 1000
_INVERSE = np.concatenate([[0.0], 1.0 / np.arange(1, _MAX_K + 1, dtype=np.float64)])


@numba.njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def _uniform(z: np.uint64) -> float:  # pragma: no cover - compiled
    # in (0, 1]
    return (float(_mix(z) >> _S11) + 1.0) * _INV53


@numba.njit(cache=True, parallel=True)
def _shot_noise_kernel(lam: NDArray[np.float32], key: np.uint64, threshold: float, inverse: NDArray[np.float64],
                       out: NDArray[np.float32]) -> None:  # pragma: no cover - compiled
    n = lam.shape[0]
    two_pi = 2.0 * math.pi
    n_pairs = (n + 1) // 2
    for p in numba.prange(n_pairs):
        i0 = 2 * p
        base = key + np.uint64(p) * _GOLDEN * np.uint64(4)
        u1 = _uniform(base)
        u2 = _uniform(base + _GOLDEN)
        r = math.sqrt(-2.0 * math.log(u1))
        normals = (r * math.cos(two_pi * u2), r * math.sin(two_pi * u2))
        for j in range(2):
            i = i0 + j
            if i >= n:
                break
            m = float(lam[i])
            if m <= 0.0:
                out[i] = 0.0
            elif m >= threshold:
                v = math.floor(m + math.sqrt(m) * normals[j] + 0.5)
                out[i] = v if v > 0.0 else 0.0
            else:
                # inversion of the cumulative distribution with one uniform
                u = _uniform(base + _GOLDEN * np.uint64(2 + j))
                prob = math.exp(-m)
                cumulative = prob
                k = 0
                while u > cumulative and k < _MAX_K:
                    k += 1
                    prob *= m * inverse[k]
                    cumulative += prob
                out[i] = k


def shot_noise(expected: ArrayLike, rng: np.random.Generator, *,
               normal_threshold: float = DEFAULT_NORMAL_THRESHOLD) -> NDArray[np.float32]:
    """Poisson-distributed counts with the given expectation.

    Parameters
    ----------
    expected : array of any shape, counts (>= 0)
        Expected number of counts (e.g. electrons) per element.
    rng : numpy.random.Generator
        Source of the seed (one 64-bit draw per call).
    normal_threshold : float
        Expected counts at and above which the normal approximation is used (default 20).

    Returns
    -------
    ndarray, same shape, float32
        Integer-valued counts.
    """
    lam = np.ascontiguousarray(expected, dtype=np.float32)
    if lam.size and not bool(np.isfinite(lam).all()):
        raise SimulatorParameterError("expected counts must be finite; got NaN or infinity. "
                                      "Remedy: check the dose and the clean image.")
    if lam.size and float(lam.min()) < 0.0:
        raise SimulatorParameterError(f"expected counts must be >= 0; got min {float(lam.min())!r}. "
                                      "Remedy: clip the clean image at 0 before scaling by the dose.")
    if not (normal_threshold > 0.0 and math.isfinite(normal_threshold)):
        raise SimulatorParameterError(f"normal_threshold must be > 0; got {normal_threshold!r}.")
    out = np.empty(lam.shape, np.float32)
    key = np.uint64(int(rng.integers(0, 2**63 - 1, dtype=np.int64)))
    if lam.size:
        _shot_noise_kernel(lam.reshape(-1), key, float(normal_threshold), _INVERSE, out.reshape(-1))
    return out
