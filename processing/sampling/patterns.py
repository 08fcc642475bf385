"""Sparse scan patterns at a sampling fraction: random, jittered grid (low discrepancy), line hopping.

Every pattern returns probe positions ``(m, 2)`` int64 ``(row, column)`` pixels of a ``(ny, nx)`` field, in the
order the probe visits them (row by row, left to right, as a scan would), with ``m = round(fraction * ny * nx)``
(line hopping: one position per column and band). :func:`check_fraction` and :func:`check_positions` give the
messages for a fraction of 0 or > 1 and for positions outside the field.

References: jittered sampling (Cook 1986, DOI 10.1145/7529.8927); line hopping for compressed sensing STEM
(Kovarik et al. 2016, DOI 10.1063/1.4943086); SLADS (Godaliyadda et al. 2018, DOI 10.1109/TCI.2017.2766201).
"""
from __future__ import annotations

import math
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError

__all__ = ["PATTERNS", "check_fraction", "check_positions", "mask_from_positions", "random_pattern",
           "jittered_grid_pattern", "line_hopping_pattern", "make_pattern"]

IntArray = NDArray[np.int64]


def check_fraction(fraction: typing.Any) -> float:
    """``fraction`` as a float in (0, 1], or a ParameterError saying why not."""
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise ParameterError(f"the sampling fraction must be a number in (0, 1]; got {fraction!r}.") from None
    if not (0.0 < f <= 1.0) or not math.isfinite(f):
        raise ParameterError(f"the sampling fraction must be in (0, 1] (e.g. 0.25 for 25 %); got {fraction!r}. "
                             f"0 acquires nothing; above 1 would sample pixels more than once.")
    return f


def _check_shape(shape: typing.Sequence[int]) -> tuple[int, int]:
    ny, nx = (int(v) for v in shape)
    if ny < 1 or nx < 1:
        raise ParameterError(f"the field must be at least 1x1 pixels; got {tuple(shape)!r}.")
    return ny, nx


def check_positions(positions: typing.Any, shape: typing.Sequence[int]) -> IntArray:
    """``positions`` as (m, 2) int64 (row, column) inside ``shape``, or an InputError naming the bad ones."""
    ny, nx = _check_shape(shape)
    p = np.asarray(positions)
    if p.ndim != 2 or p.shape[1] != 2:
        raise InputError(f"positions must be an (m, 2) array of (row, column) pixels; got shape {p.shape}.")
    if p.shape[0] == 0:
        raise InputError("no positions given: a sparse scan needs at least one probe position.")
    if not np.issubdtype(p.dtype, np.integer):
        if not np.isfinite(p).all() or not np.allclose(p, np.round(p)):
            raise InputError("positions must be whole pixel indices (row, column); round them or use a pattern.")
        p = np.round(p)
    p = p.astype(np.int64)
    outside = (p[:, 0] < 0) | (p[:, 0] >= ny) | (p[:, 1] < 0) | (p[:, 1] >= nx)
    if outside.any():
        first = p[np.argmax(outside)]
        raise InputError(f"{int(outside.sum())} of {p.shape[0]} probe positions lie outside the {ny}x{nx} field "
                         f"(first: row {int(first[0])}, column {int(first[1])}); rows must be in [0, {ny - 1}] "
                         f"and columns in [0, {nx - 1}]. Clip them or enlarge the field.")
    return p


def mask_from_positions(positions: typing.Any, shape: typing.Sequence[int]) -> NDArray[np.bool_]:
    """(ny, nx) bool, True where a position was sampled."""
    p = check_positions(positions, shape)
    mask = np.zeros(_check_shape(shape), bool)
    mask[p[:, 0], p[:, 1]] = True
    return mask


def _scan_order(p: IntArray) -> IntArray:
    return p[np.lexsort((p[:, 1], p[:, 0]))]


def random_pattern(shape: typing.Sequence[int], fraction: float, *, seed: int = 0) -> IntArray:
    """Uniformly random pixels, ``round(fraction * ny * nx)`` of them (at least 1), in scan order."""
    ny, nx = _check_shape(shape)
    f = check_fraction(fraction)
    m = max(1, int(round(f * ny * nx)))
    flat = np.random.default_rng(seed).choice(ny * nx, size=m, replace=False)
    return _scan_order(np.stack([flat // nx, flat % nx], axis=1).astype(np.int64))


def jittered_grid_pattern(shape: typing.Sequence[int], fraction: float, *, seed: int = 0) -> IntArray:
    """One random pixel per cell of a grid of ~``1/fraction``-pixel cells (low discrepancy), topped up/trimmed at
    random to exactly ``round(fraction * ny * nx)`` positions."""
    ny, nx = _check_shape(shape)
    f = check_fraction(fraction)
    m = max(1, int(round(f * ny * nx)))
    rng = np.random.default_rng(seed)
    cy = max(1, int(round(ny * math.sqrt(f))))
    cx = max(1, int(round(m / cy)))
    ys = np.linspace(0, ny, cy + 1)
    xs = np.linspace(0, nx, cx + 1)
    picks = set()
    for i in range(cy):
        for j in range(cx):
            y0, y1 = int(ys[i]), max(int(ys[i + 1]), int(ys[i]) + 1)
            x0, x1 = int(xs[j]), max(int(xs[j + 1]), int(xs[j]) + 1)
            picks.add((int(rng.integers(y0, min(y1, ny))), int(rng.integers(x0, min(x1, nx)))))
    chosen = np.asarray(sorted(picks), np.int64).reshape(-1, 2)
    flat = chosen[:, 0] * nx + chosen[:, 1]
    if flat.size > m:
        flat = rng.choice(flat, size=m, replace=False)
    elif flat.size < m:
        rest = np.setdiff1d(np.arange(ny * nx), flat)
        flat = np.concatenate([flat, rng.choice(rest, size=m - flat.size, replace=False)])
    return _scan_order(np.stack([flat // nx, flat % nx], axis=1).astype(np.int64))


def line_hopping_pattern(shape: typing.Sequence[int], fraction: float, *, seed: int = 0) -> IntArray:
    """The probe sweeps each band of ~``1/fraction`` rows once, left to right, hopping at random between the rows
    of the band at every column (Kovarik et al. 2016): one position per column and band, visiting order kept."""
    ny, nx = _check_shape(shape)
    f = check_fraction(fraction)
    rng = np.random.default_rng(seed)
    n_bands = max(1, min(ny, int(round(f * ny))))
    edges = np.linspace(0, ny, n_bands + 1)
    out = []
    for b in range(n_bands):
        y0, y1 = int(round(edges[b])), max(int(round(edges[b + 1])), int(round(edges[b])) + 1)
        rows = rng.integers(y0, min(y1, ny), size=nx)
        out.append(np.stack([rows, np.arange(nx)], axis=1))
    return np.concatenate(out).astype(np.int64)


PATTERNS: dict[str, typing.Callable[..., IntArray]] = {
    "random": random_pattern, "jittered": jittered_grid_pattern, "line_hopping": line_hopping_pattern}


def make_pattern(name: str, shape: typing.Sequence[int], fraction: float, *, seed: int = 0) -> IntArray:
    """A pattern by name ("random", "jittered", "line_hopping")."""
    if name not in PATTERNS:
        raise ParameterError(f"unknown sampling pattern {name!r}; choose one of {sorted(PATTERNS)}.")
    return PATTERNS[name](shape, fraction, seed=seed)
