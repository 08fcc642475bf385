"""SDSD stack alignment: Statistically Determined Spatial Drift (Schaffer, Grogger, Kothleitner, Ultramicroscopy
102 (2004) 27-36), as described in seed 001.

1. Pre-filter every frame once (:func:`processing.alignment.stack_filters.prefilter_spectra`): optional region,
   optional median and Sobel edge filters, a window (Hann/Tukey), and a Gaussian band-pass applied in Fourier space.
2. Cross-correlate the chosen pairs (all N(N-1)/2, or each frame against its K neighbours, or against the first /
   previous frame) on the band-limited spectra; integer peak on a coarse grid, then sub-pixel refinement by a local
   upsampled DFT (Guizar-Sicairos) down to the user's precision, then a parabola.
3. Weight each pair's shift by its correlation maximum (normalised, in [0, 1]) and solve for one shift per frame by
   weighted least squares over all pairs (frame 0 fixed at 0); reject pairs whose residual exceeds
   ``reject_sigma`` robust standard deviations and solve again until no pair changes (keeping the graph connected).

Conventions: arrays are (N, H, W) or (H, W), axes (y, x). ``shifts_px[k] = (dy, dx)`` is the displacement of the
content of frame ``k`` relative to frame 0 (``frame_k[y, x] ~= frame_0[y - dy, x - dx]``, the convention of
:mod:`processing.alignment.registration`); aligning frame ``k`` means shifting it by ``-shifts_px[k]``.

>>> import numpy as np, scipy.ndimage
>>> base = scipy.ndimage.gaussian_filter(np.random.default_rng(0).normal(size=(96, 96)), 3, mode="wrap")
>>> stack = np.stack([scipy.ndimage.shift(base, (0.4 * k, -0.3 * k), mode="grid-wrap") for k in range(5)])
>>> result = align_stack(stack, lowpass_sigma_px=1.0, window="none")  # circular shifts: no window needed
>>> np.round(result.shifts_px[4], 1).tolist()
[1.6, -1.2]
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import scipy.fft
import scipy.sparse
import scipy.sparse.csgraph
from numpy.typing import NDArray

from processing.alignment.stack_filters import SDSD_PARAMETERS, PairSpectra, sdsd_options
from processing.base import InputError, ParameterError

__all__ = ["SDSD_PARAMETERS", "SDSDResult", "PairMeasurement", "pair_list", "measure_pairs", "pair_weight",
           "solve_shifts", "align_stack", "sdsd_options"]

FloatArray = NDArray[np.float64]
_PRIOR_DEFAULT = str(next(p.default for p in SDSD_PARAMETERS if p.name == "drift_prior"))


@dataclasses.dataclass(frozen=True)
class PairMeasurement:
    """One measured pair: ``shift_px`` = position of frame j minus position of frame i (dy, dx) px;
    ``correlation`` = normalised correlation maximum in [-1, 1]; ``curvature_per_px2`` = curvature of the
    normalised correlation at the peak times the window overlap there (NaN when unknown). Their least-squares weight: :func:`pair_weight`
    (weighting "variance") or the correlation maximum clipped at 0 (weighting "correlation", the seed's rule)."""

    i: int
    j: int
    shift_px: tuple[float, float]
    correlation: float
    curvature_per_px2: float = float("nan")


@dataclasses.dataclass(frozen=True, eq=False)
class SDSDResult:
    """Result of :func:`align_stack`.

    shifts_px : (N, 2) float64, (dy, dx) px of each frame relative to frame 0.
    shifts_nm : (N, 2) float64, the same in calibrated units (``pixel_size_nm`` per px; equals px if 1).
    uncertainty_px : (N, 2) float64, one-sigma uncertainty of each shift from the least-squares residuals (NaN when
        the chosen pairs have no redundancy: modes "first" and "previous").
    pairs : every measured pair; ``rejected`` : the (i, j) pairs excluded by the robust re-weighting.
    residual_rms_px : weighted RMS residual of the kept pairs.
    notes : messages for the user (rejections, weak correlations, missing uncertainty).
    drift_prior : the temporal drift prior's fit when it was applied (option ``drift_prior``): random walk and
        frame noise estimated (px), velocity, jumps kept, step weights; None when off.
    """

    shifts_px: FloatArray
    shifts_nm: FloatArray
    uncertainty_px: FloatArray
    pairs: tuple[PairMeasurement, ...]
    rejected: tuple[tuple[int, int], ...]
    residual_rms_px: float
    reference: str
    pixel_size_nm: tuple[float, float]
    notes: tuple[str, ...] = ()
    drift_prior: dict[str, typing.Any] | None = None

    @property
    def n_frames(self) -> int:
        return int(self.shifts_px.shape[0])

    def to_dict(self) -> dict[str, typing.Any]:
        """JSON-serialisable summary (for metadata and the CLI)."""
        return {"shifts_px": self.shifts_px.tolist(), "shifts_nm": self.shifts_nm.tolist(),
                "uncertainty_px": [[None if not np.isfinite(v) else float(v) for v in row]
                                   for row in self.uncertainty_px],
                "rejected_pairs": [list(p) for p in self.rejected], "n_pairs": len(self.pairs),
                "residual_rms_px": self.residual_rms_px, "reference": self.reference,
                "pixel_size_nm": list(self.pixel_size_nm), "notes": list(self.notes),
                "drift_prior": self.drift_prior}


def pair_list(n_frames: int, reference: str, band_k: int = 10) -> list[tuple[int, int]]:
    """The (i, j) pairs (i < j) compared in mode ``reference``: "all", "banded" (|i - j| <= band_k), "first" (0, j),
    "previous" (j - 1, j)."""
    if n_frames < 2:
        raise InputError(f"alignment needs at least 2 frames; got {n_frames}. Acquire or load a longer series.")
    if reference == "all":
        return [(i, j) for i in range(n_frames) for j in range(i + 1, n_frames)]
    if reference == "banded":
        if band_k < 1:
            raise ParameterError(f"band_k must be >= 1; got {band_k}. Use e.g. 10.")
        return [(i, j) for i in range(n_frames) for j in range(i + 1, min(n_frames, i + band_k + 1))]
    if reference == "first":
        return [(0, j) for j in range(1, n_frames)]
    if reference == "previous":
        return [(j - 1, j) for j in range(1, n_frames)]
    raise ParameterError(f"reference must be one of all, banded, first, previous; got {reference!r}.")


# --------------------------------------------------------------------------------------------------------------
# pair correlation on band-limited spectra

def _dft_surface(cross: NDArray[np.complex64], spectra: PairSpectra, centres: FloatArray, step_px: float,
                 half_points: int) -> FloatArray:
    """Correlation values on a (2h+1)^2 grid of shifts around ``centres`` (n, 2) for a batch of cross spectra
    (n, My, Mxh) (a local matrix-multiply DFT, Guizar-Sicairos). Returns (n, 2h+1, 2h+1) float64:
    c[n, a, b] at shift centre + ((a - h), (b - h)) * step."""
    offsets = (np.arange(-half_points, half_points + 1) * step_px)
    sy = centres[:, 0:1] + offsets[None, :]                         # (n, p)
    sx = centres[:, 1:2] + offsets[None, :]
    phase_y = (2 * np.pi * sy[:, :, None] * spectra.fy[None, None, :]).astype(np.float32)       # (n, p, My)
    phase_x = (2 * np.pi * spectra.fx[None, :, None] * sx[:, None, :]).astype(np.float32)       # (n, Mxh, p)
    ey = np.exp(np.complex64(1j) * phase_y)
    ex = np.exp(np.complex64(1j) * phase_x)
    ex *= spectra.column_weights[None, :, None]                     # the rfft half-plane counts twice
    values = np.matmul(np.matmul(ey, cross), ex)
    return np.asarray(values.real, dtype=np.float64) * spectra.inverse_scale


def _envelope_at(envelope: FloatArray, shift_px: FloatArray) -> FloatArray:
    """The window overlap ``envelope`` (n,) by shift mod n, linearly interpolated at real shifts (any shape),
    floored at 0.05."""
    n = len(envelope)
    pos = np.mod(shift_px, n)
    lo = np.floor(pos).astype(np.intp)
    frac = pos - lo
    values = (1.0 - frac) * envelope[lo % n] + frac * envelope[(lo + 1) % n]
    return np.asarray(np.maximum(values, 0.05), dtype=np.float64)


def _parabola(m: FloatArray, c: FloatArray, p: FloatArray) -> FloatArray:
    denom = m - 2.0 * c + p
    safe = np.where(denom < 0, denom, -1.0)
    return np.where(denom < 0, np.clip(0.5 * (m - p) / safe, -0.5, 0.5), 0.0)


def _correlate_batch(spectra: PairSpectra, i_index: NDArray[np.intp], j_index: NDArray[np.intp],
                     subpixel_px: float, max_shift_px: float, inverted_contrast: bool = False,
                     ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Shifts (n, 2) px, normalised correlation maxima (n,) and peak curvatures (n,) 1/px^2 (of the normalised
    correlation, mean of y and x, times the window overlap at the shift: the fraction of the frame the pair
    shares, which scales the information it carries) for pairs (i, j): position of j minus i.
    With ``inverted_contrast`` the peak of |correlation| is used (a pair whose contrast is reversed, as between
    EFTEM slices or across a focal series, correlates negatively)."""
    cross = spectra.spectra[j_index] * np.conj(spectra.spectra[i_index])          # (n, My, Mxh) complex64
    low = cross[:, spectra.coarse_rows, :spectra.coarse_columns]
    coarse = scipy.fft.irfft2(low, s=spectra.grid_shape, axes=(-2, -1), workers=-1)
    my, mx = spectra.grid_shape
    gy, gx = spectra.grid_step_px
    # shift of grid index (a, b): a * gy (wrapped to +-H/2)
    ay = np.fft.fftfreq(my, 1.0 / my) * gy
    ax = np.fft.fftfreq(mx, 1.0 / mx) * gx
    allowed = (np.abs(ay)[:, None] <= max_shift_px) & (np.abs(ax)[None, :] <= max_shift_px)
    masked = np.where(allowed[None], np.abs(coarse) if inverted_contrast else coarse, -np.inf)
    flat = np.argmax(masked.reshape(len(i_index), -1), axis=1)
    if inverted_contrast:
        sign = np.sign(coarse.reshape(len(i_index), -1)[np.arange(len(i_index)), flat])
        cross = cross * sign.astype(np.complex64)[:, None, None]
    centres = np.stack([ay[flat // mx], ax[flat % mx]], axis=1).astype(np.float64)
    # refine: a 5 x 5 grid at a third of the coarse step, then 3 x 3 grids each a tenth of the previous
    # step (the parabola through the best point and its neighbours after each grid is far better than the step),
    # down to the requested precision; a grid whose best point is on its border is repeated, re-centred, before
    # the step shrinks
    step = max(gy, gx) / 3.0
    half = 2
    repeats = 0
    while True:
        surface = _dft_surface(cross, spectra, centres, step, half)
        n = surface.shape[0]
        side = 2 * half + 1
        best = surface.reshape(n, -1).argmax(axis=1)
        on_border = ((best // side) % (side - 1) == 0) | ((best % side) % (side - 1) == 0)
        by, bx = np.clip(best // side, 1, side - 2), np.clip(best % side, 1, side - 2)
        rows = np.arange(n)
        oy = _parabola(surface[rows, by - 1, bx], surface[rows, by, bx], surface[rows, by + 1, bx])
        ox = _parabola(surface[rows, by, bx - 1], surface[rows, by, bx], surface[rows, by, bx + 1])
        centres = centres + np.stack([(by - half + oy) * step, (bx - half + ox) * step], axis=1)
        if on_border.any() and repeats < 4:
            repeats += 1
            continue
        if step <= subpixel_px:
            break
        step = max(step / 10.0, subpixel_px)
        half, repeats = 1, 0
    value = surface[rows, by, bx]
    norm = np.maximum(spectra.norms[i_index] * spectra.norms[j_index], 1e-30)
    peak = value / norm
    cy = -(surface[rows, by - 1, bx] - 2.0 * value + surface[rows, by + 1, bx])
    cx = -(surface[rows, by, bx - 1] - 2.0 * value + surface[rows, by, bx + 1])
    curvature = np.maximum(0.5 * (cy + cx), 0.0) / (norm * step * step)
    overlap = _envelope_at(spectra.envelope_y, centres[:, 0]) * _envelope_at(spectra.envelope_x, centres[:, 1])
    return centres, np.clip(peak, -1.0, 1.0), curvature * overlap


def pair_weight(correlation: typing.Any, curvature_per_px2: typing.Any) -> FloatArray:
    """Inverse variance (up to one common factor) of a pair's shift measurement from its normalised correlation
    maximum r and the curvature H (1/px^2) of the normalised correlation at the peak.

    The shift error of a correlation peak is the noise of the surface's slope over its curvature. For two frames
    with coherence r (signal power over total power, noise and structure change both lower it), the slope noise
    variance is (1 - r^2) <k^2> / N_eff and the curvature is r <k^2> (<k^2> the band's second moment), so
    var(shift) ~ (1 - r^2) / (r H N_eff): the time-delay Cramer-Rao bound ((1 + 2 SNR) / SNR^2). N_eff (the number
    of independent pixels) is common to the pairs of a stack. Least squares wants weights = 1 / var: r H / (1 - r^2).
    """
    r = np.clip(np.abs(np.asarray(correlation, dtype=np.float64)), 1e-3, 0.999)
    h = np.maximum(np.asarray(curvature_per_px2, dtype=np.float64), 1e-12)
    return np.asarray(r * h / (1.0 - r * r), dtype=np.float64)


def measure_pairs(spectra: PairSpectra, pairs: typing.Sequence[tuple[int, int]], *, subpixel_px: float = 0.05,
                  max_shift_px: float | None = None, inverted_contrast: bool = False, batch_pairs: int = 64,
                  ) -> list[PairMeasurement]:
    """Correlate ``pairs`` of pre-filtered frames (see :func:`prefilter_spectra`); batched for speed."""
    if not 0.001 <= subpixel_px <= 0.5:
        raise ParameterError(f"subpixel_px must be in [0.001, 0.5] px; got {subpixel_px}. Use e.g. 0.05.")
    h, w = spectra.frame_shape
    limit = 0.45 * min(h, w) if not max_shift_px else float(max_shift_px)
    out: list[PairMeasurement] = []
    index = np.asarray(pairs, dtype=np.intp).reshape(-1, 2)
    for start in range(0, len(index), batch_pairs):
        chunk = index[start:start + batch_pairs]
        shifts, corr, curv = _correlate_batch(spectra, chunk[:, 0], chunk[:, 1], subpixel_px, limit,
                                              inverted_contrast)
        out.extend(PairMeasurement(int(i), int(j), (float(s[0]), float(s[1])), float(c), float(h))
                   for (i, j), s, c, h in zip(chunk.tolist(), shifts.tolist(), corr.tolist(), curv.tolist()))
    return out


# --------------------------------------------------------------------------------------------------------------
# weighted least squares with robust rejection

def _connected(n: int, pairs: NDArray[np.intp], keep: NDArray[np.bool_]) -> bool:
    kept = pairs[keep]
    graph = scipy.sparse.coo_matrix((np.ones(len(kept)), (kept[:, 0], kept[:, 1])), shape=(n, n))
    count, _labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
    return int(count) == 1


def _wls(n: int, pairs: NDArray[np.intp], d: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Positions (n, 2) with p_0 = 0 minimising sum w |p_j - p_i - d|^2, and the diagonal of the inverse normal
    matrix (n,) (0 for frame 0)."""
    lap = np.zeros((n, n))
    rhs = np.zeros((n, 2))
    np.add.at(lap, (pairs[:, 0], pairs[:, 0]), w)
    np.add.at(lap, (pairs[:, 1], pairs[:, 1]), w)
    np.add.at(lap, (pairs[:, 0], pairs[:, 1]), -w)
    np.add.at(lap, (pairs[:, 1], pairs[:, 0]), -w)
    np.add.at(rhs, pairs[:, 1], w[:, None] * d)
    np.add.at(rhs, pairs[:, 0], -w[:, None] * d)
    reduced = lap[1:, 1:] + 1e-12 * np.eye(n - 1)
    inverse = np.linalg.inv(reduced)
    positions = np.zeros((n, 2))
    positions[1:] = inverse @ rhs[1:]
    return positions, np.concatenate([[0.0], np.diag(inverse)])


def _separation_variance(pairs: NDArray[np.intp], keep: NDArray[np.bool_], standard_sq: FloatArray) -> FloatArray:
    """Per pair, the variance factor of its separation band |j - i|: the robust mean of the standardised squared
    residuals (per axis, ``standard_sq``) of the kept pairs in the band; bands hold >= max(8, N/2) kept pairs."""
    separation = pairs[:, 1] - pairs[:, 0]
    minimum = max(8, int(pairs.max()) // 2 + 1)
    overall = max(float(np.median(standard_sq[keep])) / math.log(2.0), 1e-300)
    factor = np.full(len(pairs), overall)
    members: list[int] = []
    band: list[int] = []
    values = np.unique(separation)
    for index, value in enumerate(values):
        band.append(int(value))
        members.extend(np.flatnonzero((separation == value) & keep).tolist())
        if len(members) >= minimum or index == len(values) - 1:
            if members:
                estimate = float(np.median(standard_sq[members])) / math.log(2.0)
                factor[np.isin(separation, band)] = max(estimate, 1e-6 * overall)
            members, band = [], []
    return factor


def solve_shifts(n_frames: int, measurements: typing.Sequence[PairMeasurement], *, reject_sigma: float = 3.0,
                 min_residual_px: float = 0.1, max_iterations: int = 10, weighting: str = "variance",
                 drift_prior: str | None = None, prior_info: dict[str, typing.Any] | None = None,
                 frame_noise_px: float | None = None,
                 ) -> tuple[FloatArray, FloatArray, tuple[tuple[int, int], ...], float, list[str]]:
    """Weighted least squares over pairs with robust rejection.

    weighting : "variance" (default): each pair weighted by the inverse variance of its measurement,
        :func:`pair_weight` (what least squares wants; pairs whose structure changed or whose peak is broad count
        less), then divided by the variance of the residuals of its separation band |j - i| (structure that
        changes along the series makes distant pairs err more than their noise says; estimated from the
        residuals, iterated with the rejection); "correlation": by the correlation maximum (the seed's rule, kept
        for comparison).

    drift_prior : "random-walk": the solution is then smoothed by the temporal drift prior (linear drift + random
        walk, strength estimated from the series, Huber-robust steps, jumps kept:
        :func:`processing.alignment.sdsd_prior.smooth_drift`); the uncertainty is its posterior; "off": the pair
        solution as is; None: the default of :data:`SDSD_PARAMETERS`. ``prior_info``, if given, receives the fit
        (:meth:`~processing.alignment.sdsd_prior.DriftPriorFit.to_dict`). ``frame_noise_px``: the frames' own
        noise measured on the images (:func:`~processing.alignment.sdsd_prior.split_frame_noise`, what
        :func:`align_stack` passes); None: estimated from the series' temporal statistics alone (weaker).

    Returns (shifts_px (N, 2), uncertainty_px (N, 2), rejected pairs, weighted RMS residual px, notes).
    A pair is rejected when its residual, in units of its own expected error (1 / sqrt(weight)), exceeds
    ``reject_sigma`` x the robust (MAD) scale of these standardised residuals, and is at least ``min_residual_px``;
    rejection never disconnects a frame from the others (reject_sigma = 0 disables it).
    """
    if not measurements:
        raise InputError("no pair was measured; alignment needs at least 2 frames.")
    pairs = np.asarray([(m.i, m.j) for m in measurements], dtype=np.intp)
    d = np.asarray([m.shift_px for m in measurements], dtype=np.float64)
    corr = np.asarray([m.correlation for m in measurements], dtype=np.float64)
    if weighting == "variance":
        curv = np.asarray([m.curvature_per_px2 for m in measurements], dtype=np.float64)
        w = pair_weight(corr, np.where(np.isfinite(curv), curv, 1.0))
        w = w / max(float(np.median(w)), 1e-300)
    elif weighting == "correlation":
        w = np.clip(corr, 1e-6, None)
    else:
        raise ParameterError(f"weighting must be 'variance' or 'correlation'; got {weighting!r}.")
    notes: list[str] = []
    if not _connected(n_frames, pairs, np.ones(len(pairs), bool)):
        raise InputError(f"the pairs do not connect all {n_frames} frames; use reference 'all' or a larger band_k.")
    keep = np.ones(len(pairs), dtype=bool)
    for _ in range(max_iterations):
        positions, diag = _wls(n_frames, pairs[keep], d[keep], w[keep])
        residual = np.linalg.norm(positions[pairs[:, 1]] - positions[pairs[:, 0]] - d, axis=1)
        if reject_sigma <= 0 or keep.sum() <= n_frames - 1:
            break
        # residuals in units of each pair's own expected error (1 / sqrt(weight)): a noisy pair, already weighted
        # down, is not rejected for a residual its variance explains
        standard = residual * np.sqrt(w)
        scale = 1.4826 * float(np.median(standard[keep]))
        new_keep = (standard <= reject_sigma * scale) | (residual <= min_residual_px)
        # never disconnect: restore the best rejected pairs until connected
        if not _connected(n_frames, pairs, new_keep):
            for index in np.argsort(residual):
                if not new_keep[index]:
                    new_keep[index] = True
                    if _connected(n_frames, pairs, new_keep):
                        break
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    if weighting == "variance" and int(keep.sum()) >= 2 * (n_frames - 1):
        # the a-priori weight models the shot noise; the error from structure changing along the series grows with
        # the frames' separation: estimated from the residuals of the kept pairs (variance per separation band)
        prior = w.copy()
        for _ in range(3):
            positions, diag = _wls(n_frames, pairs[keep], d[keep], w[keep])
            residual = np.linalg.norm(positions[pairs[:, 1]] - positions[pairs[:, 0]] - d, axis=1)
            new_w = prior / _separation_variance(pairs, keep, 0.5 * residual * residual * prior)
            new_w = new_w / max(float(np.median(new_w)), 1e-300)
            converged = bool(np.allclose(new_w, w, rtol=0.05))
            w = new_w
            if converged:
                break
    positions, diag = _wls(n_frames, pairs[keep], d[keep], w[keep])
    residual_vec = positions[pairs[:, 1]] - positions[pairs[:, 0]] - d
    kw, kr = w[keep], residual_vec[keep]
    rms = float(np.sqrt(np.sum(kw[:, None] * kr * kr) / max(2.0 * kw.sum(), 1e-30)))
    dof = int(keep.sum()) - (n_frames - 1)
    if dof > 0:
        sigma2 = np.sum(kw[:, None] * kr * kr, axis=0) / dof          # per axis
        uncertainty = np.sqrt(np.outer(diag, sigma2))
    else:
        uncertainty = np.full((n_frames, 2), np.nan)
        uncertainty[0] = 0.0
        notes.append("no redundant pairs (reference 'first' or 'previous'): the shift uncertainty cannot be "
                     "estimated; use reference 'all' or 'banded'.")
    rejected = tuple((int(a), int(b)) for a, b in pairs[~keep])
    if rejected:
        notes.append(f"{len(rejected)} of {len(pairs)} pairs rejected as inconsistent with the solution.")
    prior_mode = _PRIOR_DEFAULT if drift_prior is None else drift_prior
    if prior_mode not in ("off", "random-walk"):
        raise ParameterError(f"drift_prior must be 'off' or 'random-walk'; got {drift_prior!r}.")
    if prior_mode == "random-walk":
        positions, uncertainty = _apply_prior(n_frames, pairs[keep], measurements, keep, positions, uncertainty,
                                              notes, prior_info, frame_noise_px)
    weak = int(np.sum(np.asarray([m.correlation for m in measurements]) < 0.05))
    if weak:
        notes.append(f"{weak} pairs have a correlation maximum below 0.05: the frames share little structure; "
                     f"the shifts of those frames are uncertain.")
    return positions, uncertainty, rejected, rms, notes


def _apply_prior(n_frames: int, kept: NDArray[np.intp], measurements: typing.Sequence[PairMeasurement],
                 keep: NDArray[np.bool_], positions: FloatArray, uncertainty: FloatArray, notes: list[str],
                 prior_info: dict[str, typing.Any] | None, frame_noise_px: float | None,
                 ) -> tuple[FloatArray, FloatArray]:
    """The pair solution smoothed by the temporal drift prior (:mod:`processing.alignment.sdsd_prior`)."""
    from processing.alignment.sdsd_prior import MIN_FRAMES, frame_noise_scale, smooth_drift
    if n_frames < MIN_FRAMES:
        notes.append(f"drift prior not applied: {n_frames} frames, it needs at least {MIN_FRAMES} to estimate its "
                     f"strength; shifts as measured.")
        return positions, uncertainty
    corr = np.asarray([m.correlation for m in measurements], dtype=np.float64)[keep]
    curv = np.asarray([m.curvature_per_px2 for m in measurements], dtype=np.float64)[keep]
    omega = frame_noise_scale(n_frames, kept, pair_weight(corr, np.where(np.isfinite(curv), curv, 1.0)))
    fit = smooth_drift(positions, frame_noise=omega, pair_uncertainty_px=uncertainty, frame_noise_px=frame_noise_px)
    notes[:] = [n for n in notes if not n.startswith("no redundant pairs")] + list(fit.notes)
    if frame_noise_px is None:
        notes.append("drift prior: the frame noise was estimated from the series' temporal statistics alone (no "
                     "split-frame measurement): unreliable for short series (it can mistake a random walk for noise); "
                     "align_stack measures it on the images.")
    if prior_info is not None:
        prior_info.update(fit.to_dict())
    return fit.shifts_px, fit.uncertainty_px


# --------------------------------------------------------------------------------------------------------------

def align_stack(frames: typing.Any, *, pixel_size_nm: float | tuple[float, float] = 1.0,
                block_frames: int | None = None, **options: typing.Any) -> SDSDResult:
    """Measure the drift of a stack by SDSD.

    Parameters
    ----------
    frames : (N, H, W) array-like, N >= 2, real, finite: a numpy array or list of frames (in memory), a
        :class:`~processing.alignment.sdsd_blocks.FrameBlocks`, or a lazy stack (:class:`processing.io.stacks.Stack` from ``open_stack``, Dask array, memory map, h5py dataset),
        read in blocks (:mod:`processing.alignment.sdsd_blocks`: only a block of frames and the band-limited
        spectra the remaining pairs need are in memory; the result equals the in-memory one).
    pixel_size_nm : nm per px (scalar or (y, x)), for ``shifts_nm``.
    block_frames : frames read per block (multiple of 16); None: the whole stack if in memory, else 256 MB.
    **options : the SDSD parameters (:data:`SDSD_PARAMETERS`: reference, band_k, region, window, median_px,
        edge_filter, lowpass_sigma_px, highpass_sigma_px, subpixel_px, max_shift_px, reject_sigma, weighting,
        drift_prior).

    Returns
    -------
    SDSDResult (shifts relative to frame 0, per-frame uncertainty, rejected pairs).
    """
    from processing.alignment.sdsd_blocks import FrameBlocks, measure_in_blocks
    opts = sdsd_options(**options)
    source = frames if isinstance(frames, FrameBlocks) else FrameBlocks(frames, block_frames)
    n, (h, w) = source.n_frames, source.frame_shape
    if min(h, w) < 16:
        raise InputError(f"the frames are {h}x{w} px; alignment needs at least 16x16 px.")

    def run(o: dict[str, typing.Any]) -> SDSDResult:
        noise = None
        if o["drift_prior"] != "off":
            from processing.alignment.sdsd_prior import split_frame_noise
            noise = lambda: float(split_frame_noise(source, o)[0])  # noqa: E731
        return measure_and_solve(n, (h, w), o, lambda pairs, offsets: measure_in_blocks(source, o, pairs, offsets),
                                 pixel_size_nm=pixel_size_nm, frame_noise=noise)
    from processing.alignment.stack_band import with_band_choice
    return with_band_choice(run, lambda k: source.read(k, k + 1)[0], n, opts)


Measure = typing.Callable[[list[tuple[int, int]], NDArray[np.int64]],
                          tuple[list[PairMeasurement], list[str]]]


def measure_and_solve(n: int, frame_shape: tuple[int, int], opts: dict[str, typing.Any], measure: Measure, *,
                      pixel_size_nm: float | tuple[float, float] = 1.0,
                      frame_noise: typing.Callable[[], float] | None = None) -> SDSDResult:
    """SDSD's measure-solve loop, whoever measures the pairs (in memory or in blocks here, on a cluster in
    :mod:`processing.alignment.sdsd_dask`): measure every pair of the reference mode, solve, and while a frame moved
    more than 2 % of the frame, measure again the pairs whose whole-pixel pre-shifts changed (at most 4 times).

    n, frame_shape : frames and their (H, W) px. opts : :func:`sdsd_options`. measure(pairs, offsets) ->
    (measurements in the order of ``pairs``, pre-filter notes), offsets (N, 2) whole px each frame is moved back by.
    frame_noise() : the drift prior's per-frame noise (px), called once after the first measurement, or None.
    """
    h, w = frame_shape
    pairs = pair_list(n, str(opts["reference"]), int(opts["band_k"]))
    offsets = np.zeros((n, 2), dtype=np.int64)
    measurements, prefilter_notes = measure(pairs, offsets)
    large = 0.02 * min(h, w)
    split_noise = frame_noise() if frame_noise is not None else None
    for _pass in range(5):
        prior_info: dict[str, typing.Any] = {}
        shifts, uncertainty, rejected, rms, notes = solve_shifts(n, measurements,
                                                                 reject_sigma=float(opts["reject_sigma"]),
                                                                 weighting=str(opts["weighting"]),
                                                                 drift_prior=str(opts["drift_prior"]),
                                                                 prior_info=prior_info,
                                                                 frame_noise_px=split_noise)
        # the window and the content entering/leaving the frame bias large shifts towards zero: when a frame moved
        # more than 2 % of the frame, the pairs whose whole-pixel pre-shifts differ are measured again on frames
        # pre-shifted by the whole-pixel estimate (residuals < 1 px, bias negligible), until the estimate settles
        new_offsets = np.rint(shifts).astype(np.int64)
        big = [k for k, (i, j) in enumerate(pairs) if np.any(new_offsets[i] - new_offsets[j] != offsets[i] - offsets[j])]
        if _pass == 4 or not big or float(np.abs(shifts).max()) <= large or np.array_equal(new_offsets, offsets):
            break
        offsets = new_offsets
        again, prefilter_notes = measure([pairs[k] for k in big], offsets)
        for k, m in zip(big, again):
            measurements[k] = m
    notes = notes + prefilter_notes
    sizes = np.broadcast_to(np.asarray(pixel_size_nm, dtype=np.float64), (2,))
    py, px = float(sizes[0]), float(sizes[1])
    return SDSDResult(shifts_px=shifts, shifts_nm=shifts * np.asarray([py, px]), uncertainty_px=uncertainty,
                      pairs=tuple(measurements), rejected=rejected, residual_rms_px=rms,
                      reference=str(opts["reference"]), pixel_size_nm=(py, px), notes=tuple(notes),
                      drift_prior=prior_info or None)
