"""Temporal drift prior for SDSD: the drift is continuous, so a frame's position is informed by its neighbours'.

SDSD's pair solve (:func:`processing.alignment.sdsd.solve_shifts`) gives positions ``y_k = p_k + e_k`` (N, 2): the
true position plus each frame's own measurement error ``e_k`` (its shot noise, which is in every pair that involves
frame k, so no pair statistics can see it) plus the small pair-specific errors of the least squares. The drift model
of the issue is a linear drift plus a random walk::

    p_{k+1} - p_k = v + u_k,    u_k ~ N(0, q / w_k) per axis,    e_k ~ N(0, r omega_k) per axis

with the velocity ``v`` and the start ``p_0`` free (flat priors). The posterior mean of ``p`` is the penalised
weighted least squares ``min sum_k |y_k - p_k|^2 / (r omega_k) + sum_k w_k |p_{k+1} - p_k - v|^2 / q`` (a smoother:
the pair least squares extended by the steps' penalty, with the pair solve's own small covariance left out of the
fit and added to the reported uncertainty). Nothing is tuned: ``q`` and ``r`` are estimated from the series itself by restricted maximum likelihood
(the first differences of ``y`` are ``v + u_k + e_{k+1} - e_k``: the frame noise makes them anti-correlated at lag
1, the random walk does not); ``r`` is profiled analytically, ``lambda = q / r`` by a grid over 9 decades refined by
a bounded scalar search. ``omega_k`` (relative frame noise, geometric mean 1) comes from the pairs' a-priori weights.

Jumps: a first difference more than ``JUMP_SIGMA`` robust sigmas (median centre, MAD scale of the 2-D deviation)
from the others is a jump of the specimen: it becomes a free offset of the model (a fixed effect), neither smoothed
nor counted in the random walk. Robust (Huber) on the other steps: a step whose smoothed size exceeds ``HUBER_C``
random-walk sigmas (2-D norm) counts linearly, by iteratively re-weighted least squares (``w_k = HUBER_C / t_k``).
The measurements themselves are not down-weighted (pair rejection has already judged them): a frame that really
moved is followed. The frame noise must be detectable: unless the likelihood-ratio test against no frame noise
(lambda -> infinity) passes at 5 % (``2 dlogL > 2.71``, the boundary null), the shifts are returned as measured.

Uncertainty per frame: the expected squared error of the reported shift relative to frame 0 over the posterior of
the strength (profile likelihood on the lambda grid, flat in log lambda): at each lambda the posterior variance
``r (Omega - Omega P Omega)`` plus the squared distance of that lambda's estimate from the reported one, plus, in
quadrature, the pair solve's own uncertainty (the pair-specific part the frame noise does not contain).
Cost: one symmetric eigendecomposition per robust iteration, O(N) per likelihood evaluation (N = 100: ~30 ms).
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import scipy.optimize
from numpy.typing import NDArray

__all__ = ["DriftPriorFit", "smooth_drift", "frame_noise_scale", "split_frame_noise", "checkerboard_halves",
           "MIN_FRAMES", "HUBER_C", "JUMP_SIGMA"]

FloatArray = NDArray[np.float64]

#: fewer frames than this: the prior's two variances cannot be estimated, the shifts are left as measured
MIN_FRAMES = 8
#: a step larger than this many random-walk sigmas (2-D norm of the smoothed step) counts linearly (Huber)
HUBER_C = 2.5
#: a first difference this many robust sigmas (2-D norm) from the median one is a jump of the specimen: a free
#: offset of the model (fixed effect), neither smoothed nor counted in the random walk
JUMP_SIGMA = 6.0
_LOG_LAMBDA = np.linspace(math.log(1e-4), math.log(1e5), 28)
_MAX_ROBUST_ITERATIONS = 20
_SPLIT_FRAMES = 32        # frames split for the frame-noise estimate (every ceil(N / 32)-th: a pooled median)
_CHUNK = 16              # frames split and measured together (the blocks' multiple: sdsd_blocks._FFT_BATCH)
_LRT_CRITICAL = 2.71   # 5 % level of the boundary likelihood-ratio test (50:50 chi2_0 / chi2_1)


@dataclasses.dataclass(frozen=True, eq=False)
class DriftPriorFit:
    """Result of :func:`smooth_drift`.

    shifts_px : (N, 2) posterior mean positions (dy, dx) px, frame 0 = 0.
    uncertainty_px : (N, 2) one-sigma posterior uncertainty of each shift relative to frame 0 (0 for frame 0).
    walk_px : estimated random-walk step sigma per axis, px/frame (sqrt q).
    frame_noise_px : estimated per-frame measurement noise sigma per axis, px (sqrt r, for omega = 1).
    velocity_px : (dy, dx) estimated linear drift per frame.
    jumps : k for each step k -> k + 1 taken as a jump of the specimen (its first difference more than
        ``JUMP_SIGMA`` robust sigmas from the others): a free offset, kept, not smoothed.
    step_weights : (N - 1,) Huber weights of the steps (1 = Gaussian, < 1 = counted linearly).
    notes : messages for the user.
    """

    shifts_px: FloatArray
    uncertainty_px: FloatArray
    walk_px: float
    frame_noise_px: float
    velocity_px: tuple[float, float]
    jumps: tuple[int, ...]
    step_weights: FloatArray
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, typing.Any]:
        return {"walk_px": self.walk_px, "frame_noise_px": self.frame_noise_px,
                "velocity_px": list(self.velocity_px), "jumps": list(self.jumps),
                "step_weights": self.step_weights.tolist(), "notes": list(self.notes)}


def frame_noise_scale(n_frames: int, pairs: NDArray[np.intp], pair_weights: FloatArray) -> FloatArray:
    """Relative measurement noise omega_k (N,) of each frame from the a-priori inverse variances of its pairs:
    a pair's variance is about the sum of its two frames' noise, so ``1 / mean_j w_kj`` follows frame k's noise.
    Normalised to geometric mean 1 and clipped to [0.1, 10] (a frame with no pair gets 1)."""
    total = np.zeros(n_frames)
    count = np.zeros(n_frames)
    for column in (0, 1):
        np.add.at(total, pairs[:, column], pair_weights)
        np.add.at(count, pairs[:, column], 1.0)
    mean = np.where(count > 0, total / np.maximum(count, 1.0), np.nan)
    omega = np.where(np.isfinite(mean) & (mean > 0), 1.0 / np.maximum(mean, 1e-300), np.nan)
    good = np.isfinite(omega)
    if not good.any():
        return np.ones(n_frames)
    omega = omega / math.exp(float(np.mean(np.log(omega[good]))))
    return np.asarray(np.clip(np.where(good, omega, 1.0), 0.1, 10.0), dtype=np.float64)


class _Model:
    """The REML likelihood of the linear-drift + random-walk model for observations Y (N, A) at fixed step weights.

    V(lambda) = lambda G + Omega (in units of r), G = M diag(1 / w) M^T (M[k, m] = 1 for m < k, so
    G[k, l] = sum_{m < min(k, l)} 1 / w_m). With G~ = Omega^-1/2 G Omega^-1/2 = U diag(mu) U^T (one eigh per set
    of step weights) every lambda costs O(N): V^-1 = Omega^-1/2 U diag(1 / (lambda mu + 1)) U^T Omega^-1/2."""

    def __init__(self, y: FloatArray, omega: FloatArray, step_weights: FloatArray,
                 jumps: NDArray[np.intp] | None = None, fixed_r: float | None = None) -> None:
        n = len(y)
        self.fixed_r = fixed_r
        self.y, self.omega, self.n = y, omega, n
        index = np.arange(n)
        # fixed effects: start, velocity, and one free offset per jump (frames after step m move by it)
        columns = [np.ones(n), index.astype(np.float64)]
        columns.extend((index > int(m)).astype(np.float64) for m in ([] if jumps is None else jumps))
        x = np.stack(columns, axis=1)
        self.x = x
        cumulative = np.concatenate([[0.0], np.cumsum(1.0 / step_weights)])
        z = 1.0 / np.sqrt(omega)
        g = cumulative[np.minimum.outer(index, index)] * z[:, None] * z[None, :]
        self.mu, self.u = np.linalg.eigh(g)
        self.mu = np.maximum(self.mu, 0.0)
        self.xt = self.u.T @ (z[:, None] * x)
        self.yt = self.u.T @ (z[:, None] * y)
        self.z = z
        self.log_omega = float(np.sum(np.log(omega)))
        self.n_eff = y.shape[1] * (n - x.shape[1])

    def parts(self, log_lambda: float) -> tuple[FloatArray, FloatArray, FloatArray, float]:
        """(d = 1 / (lambda mu + 1) (N,), A = X^T V^-1 X (F, F), beta (F, A), S = y^T P y summed over axes)."""
        d = 1.0 / (math.exp(log_lambda) * self.mu + 1.0)
        a = self.xt.T @ (d[:, None] * self.xt)
        b = self.xt.T @ (d[:, None] * self.yt)
        beta = np.asarray(np.linalg.solve(a, b), dtype=np.float64)
        s = float(np.sum(d[:, None] * self.yt * self.yt) - np.sum(b * beta))
        return d, a, beta, max(s, 1e-300)

    def negative_log_likelihood(self, log_lambda: float) -> float:
        d, a, _beta, s = self.parts(log_lambda)
        logdet_v = self.log_omega - float(np.sum(np.log(d)))
        logdet_a = math.log(max(float(np.linalg.det(a)), 1e-300))
        axes = int(self.y.shape[1])
        if self.fixed_r is not None:          # r known: the terms in r alone are constants
            return 0.5 * float(axes * (logdet_v + logdet_a) + s / self.fixed_r)
        return 0.5 * float(axes * (logdet_v + logdet_a) + self.n_eff * math.log(s / self.n_eff))

    def best_log_lambda(self) -> float:
        values = [self.negative_log_likelihood(float(v)) for v in _LOG_LAMBDA]
        k = int(np.argmin(values))
        lo, hi = _LOG_LAMBDA[max(k - 1, 0)], _LOG_LAMBDA[min(k + 1, len(_LOG_LAMBDA) - 1)]
        found = scipy.optimize.minimize_scalar(self.negative_log_likelihood, bounds=(float(lo), float(hi)),
                                               method="bounded", options={"xatol": 1e-3})
        return float(found.x) if float(found.fun) <= values[k] else float(_LOG_LAMBDA[k])

    def p_times_y(self, log_lambda: float) -> tuple[FloatArray, float, FloatArray]:
        """(P y (N, A), r = S / n_eff, beta (2, A)): P y = V^-1 (y - X beta) in units of 1 / r."""
        d, _a, beta, s = self.parts(log_lambda)
        py = self.z[:, None] * (self.u @ (d[:, None] * (self.yt - self.xt @ beta)))
        return py, (s / self.n_eff if self.fixed_r is None else self.fixed_r), beta

    def posterior_relative_variance(self, log_lambda: float) -> FloatArray:
        """Var(p_k - p_0 | y) / r (N,) for the posterior covariance r (Omega - Omega P Omega)."""
        d, a, _beta, _s = self.parts(log_lambda)
        # Omega P Omega = Omega^1/2 (U D U^T - U D Xt A^-1 Xt^T D U^T) Omega^1/2
        root = 1.0 / self.z
        f = self.u @ (d[:, None] * self.xt)                       # (N, F)
        fa = f @ np.linalg.inv(a)
        k_diag = (self.u * self.u) @ d - np.sum(fa * f, axis=1)
        k_col0 = self.u @ (d * self.u[0]) - fa @ f[0]
        c_diag = self.omega - root * root * k_diag
        c_col0 = -root * root[0] * k_col0
        c_col0[0] = self.omega[0] - root[0] ** 2 * k_diag[0]
        return np.asarray(np.maximum(c_diag - 2.0 * c_col0 + c_diag[0], 0.0), dtype=np.float64)


def smooth_drift(shifts_px: typing.Any, *, frame_noise: typing.Any = None, pair_uncertainty_px: typing.Any = None,
                 frame_noise_px: float | None = None, robust: bool = True) -> DriftPriorFit:
    """Posterior of the drift under the linear-drift + random-walk prior, its strength estimated from the series.

    shifts_px : (N, 2) px, positions from the pair solve (frame 0 = 0), N >= ``MIN_FRAMES``.
    frame_noise : (N,) relative frame noise omega_k (:func:`frame_noise_scale`); None = equal.
    pair_uncertainty_px : (N, 2) one-sigma uncertainty of the pair solve (added in quadrature; NaN = 0).
    frame_noise_px : the frames' own measurement noise (one sigma per axis, px), measured from the images
        (:func:`split_frame_noise`); None: estimated from the series' temporal statistics with the walk (REML),
        applied only when the likelihood-ratio test detects it.
    robust : Huber on the steps (a real jump is kept); False = Gaussian steps.
    """
    try:                        # small dense algebra: one BLAS thread (two threads on a busy machine cost 10x)
        from threadpoolctl import threadpool_limits
    except ImportError:         # pragma: no cover - threadpoolctl comes with scikit-learn
        return _smooth_drift(shifts_px, frame_noise, pair_uncertainty_px, frame_noise_px, robust)
    with threadpool_limits(limits=1, user_api="blas"):
        return _smooth_drift(shifts_px, frame_noise, pair_uncertainty_px, frame_noise_px, robust)


def _smooth_drift(shifts_px: typing.Any, frame_noise: typing.Any, pair_uncertainty_px: typing.Any,
                  frame_noise_px: float | None, robust: bool) -> DriftPriorFit:
    y = np.asarray(shifts_px, dtype=np.float64)
    n = len(y)
    if y.ndim != 2 or n < MIN_FRAMES or not np.isfinite(y).all():
        raise ValueError(f"smooth_drift needs finite (N >= {MIN_FRAMES}, A) positions; got shape {y.shape}.")
    omega = np.ones(n) if frame_noise is None else np.asarray(frame_noise, dtype=np.float64)
    # jumps: steps far outside the robust spread of the first differences (median centre, MAD scale of the 2-D
    # deviation) are free steps of the model (a jump must neither be smoothed nor inflate the random walk)
    differences = np.diff(y, axis=0)
    deviation = np.linalg.norm(differences - np.median(differences, axis=0), axis=1)
    scale = float(np.median(deviation)) / math.sqrt(2.0 * math.log(2.0))
    free = deviation > JUMP_SIGMA * max(scale, 1e-12)
    jump_steps = np.flatnonzero(free)
    weights = np.ones(n - 1)
    fixed_r = None if frame_noise_px is None else max(float(frame_noise_px) ** 2, 1e-12)
    for _ in range(_MAX_ROBUST_ITERATIONS):
        model = _Model(y, omega, weights, jump_steps, fixed_r)
        log_lambda = model.best_log_lambda()
        t = _standardised_steps(model, log_lambda, weights)
        if not robust:
            break
        new_weights = np.where(free, 1.0, np.minimum(1.0, HUBER_C / np.maximum(t, 1e-12)))
        if np.max(np.abs(new_weights - weights)) < 1e-3:
            break
        weights = new_weights
    # the frame noise must be detectable: the likelihood-ratio test against no frame noise (lambda -> infinity,
    # the shifts as measured) at 5 % (boundary null: 2 dlogL > 2.71); otherwise the measured shifts are kept
    gain = 2.0 * (model.negative_log_likelihood(float(_LOG_LAMBDA[-1])) - model.negative_log_likelihood(log_lambda))
    detected = gain > _LRT_CRITICAL or fixed_r is not None
    mean, relative, r, beta = _posterior(model, log_lambda)
    q = math.exp(log_lambda) * r
    if not detected:
        mean = y.copy()
    # the strength is estimated, not known: the reported variance is the expected squared error of the reported
    # shifts over the hyper-parameter's posterior (profile likelihood on the grid, flat in log lambda), within
    # (the posterior variance at each lambda) plus between (how far that lambda's estimate lies from ours)
    grid = np.append(_LOG_LAMBDA, log_lambda)
    nll = np.asarray([model.negative_log_likelihood(float(v)) for v in grid])
    mix = np.exp(-(nll - nll.min()))
    mix /= mix.sum()
    relative = np.zeros(n)
    for weight, value in zip(mix, grid):
        if weight > 1e-6:
            mean_i, relative_i, _r, _beta = _posterior(model, float(value))
            relative = relative + weight * (relative_i + np.mean((mean_i - mean) ** 2, axis=1))
    variance = relative[:, None] * np.ones((1, y.shape[1]))
    if pair_uncertainty_px is not None:
        pair = np.nan_to_num(np.asarray(pair_uncertainty_px, dtype=np.float64), nan=0.0)
        variance = variance + pair * pair
    uncertainty = np.sqrt(variance)
    uncertainty[0] = 0.0
    jumps = tuple(int(k) for k in np.flatnonzero(free))
    source = "measured on split frames" if fixed_r is not None else "from the series by REML"
    notes = [f"drift prior (linear drift + random walk): random walk {math.sqrt(q):.3g} px/frame (REML), frame noise "
             f"{math.sqrt(r):.3g} px per axis ({source})."]
    if not detected:
        mean = y.copy()
        notes = [f"drift prior: no frame noise detectable against the random walk ({math.sqrt(q):.3g} px/frame; "
                 f"likelihood-ratio {max(gain, 0.0):.2f} < {_LRT_CRITICAL}); shifts as measured."]
    if jumps:
        notes.append(f"drift prior: {len(jumps)} step(s) kept as jumps of the specimen (not smoothed), between "
                     f"frames {', '.join(f'{k}-{k + 1}' for k in jumps[:10])}.")
    return DriftPriorFit(shifts_px=mean, uncertainty_px=uncertainty, walk_px=math.sqrt(q),
                         frame_noise_px=math.sqrt(r), velocity_px=(float(beta[1, 0]), float(beta[1, 1])),
                         jumps=jumps, step_weights=weights, notes=tuple(notes))


def _posterior(model: _Model, log_lambda: float) -> tuple[FloatArray, FloatArray, float, FloatArray]:
    """(posterior mean (N, A) frame 0 = 0, posterior variance of p_k - p_0 per axis (N,) px^2, r px^2, beta)."""
    py, r, beta = model.p_times_y(log_lambda)
    mean = model.y - model.omega[:, None] * py
    return mean - mean[0], r * model.posterior_relative_variance(log_lambda), r, beta


def _standardised_steps(model: _Model, log_lambda: float, weights: FloatArray) -> FloatArray:
    """|smoothed step u_k| / sqrt(q) (N - 1,): u = lambda W^-1 M^T P y ((M^T z)_m = sum_{k > m} z_k), both in r."""
    py, r, _beta = model.p_times_y(log_lambda)
    tail = np.cumsum(py[::-1], axis=0)[::-1][1:]
    # u = lambda tail / w and sqrt(q) = sqrt(lambda r): t = sqrt(lambda / r) |tail / w|
    return np.asarray(np.linalg.norm(tail / weights[:, None], axis=1) * math.sqrt(math.exp(log_lambda) / r),
                      dtype=np.float64)


def checkerboard_halves(frames: typing.Any) -> NDArray[np.float32]:
    """(2N, H, W) float32: for each frame (N, H, W) two images with independent noise, interleaved: A keeps the
    pixels with y + x even and fills the others with the mean of their 4 neighbours (all even: the checkerboard),
    B the converse. Their shot (white) noise is independent; both show the same structure at full resolution up
    to a pattern at the Nyquist frequency, which the band-pass removes."""
    stack = np.asarray(frames, dtype=np.float32)
    n, h, w = stack.shape
    padded = np.pad(stack, ((0, 0), (1, 1), (1, 1)), mode="reflect")    # reflection keeps the checkerboard parity
    average = 0.25 * (padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:])
    even = (np.add.outer(np.arange(h), np.arange(w)) % 2 == 0)[None]
    out = np.empty((2 * n, h, w), dtype=np.float32)
    out[0::2] = np.where(even, stack, average)
    out[1::2] = np.where(even, average, stack)
    return out


def split_frame_noise(source: typing.Any, options: typing.Mapping[str, typing.Any]) -> tuple[float, int]:
    """The frames' own shift-measurement noise (one sigma per axis, px) from the data: every frame of ``source``
    (a :class:`~processing.alignment.sdsd_blocks.FrameBlocks`, read block by block) is split into its two
    checkerboard halves (:func:`checkerboard_halves`), pre-filtered and correlated with the SDSD options like any
    pair. Each half has half the dose, so the halves' relative shift has variance 2 r + 2 r = 4 r, r the frame's
    own error variance in a pair: r = median(s^2) / (4 x 0.455) over frames and axes (0.455 = median of chi^2_1);
    every ceil(N / 32)-th frame is used (at most 32: the pooled median needs no more; costs 2 x 32 pre-filtered
    half frames at most).
    Assumes spatially white noise (shot noise); noise correlated between neighbouring pixels (a detector's point
    spread) makes it an underestimate, i.e. the prior then smooths less. Returns (sigma px, frames used)."""
    from processing.alignment.sdsd import measure_pairs
    from processing.alignment.stack_filters import prefilter_spectra
    shifts: list[tuple[float, float]] = []
    stride = max(1, math.ceil(source.n_frames / _SPLIT_FRAMES))
    pending: list[NDArray[np.float32]] = []

    def measure(chunk: list[NDArray[np.float32]]) -> None:
        halves = checkerboard_halves(np.stack(chunk))
        spectra = prefilter_spectra(halves, options)
        measured = measure_pairs(spectra, [(2 * k, 2 * k + 1) for k in range(len(chunk))],
                                 subpixel_px=float(options["subpixel_px"]),
                                 max_shift_px=float(options["max_shift_px"]) or None,
                                 inverted_contrast=bool(options["inverted_contrast"]))
        shifts.extend(m.shift_px for m in measured)

    # every stride-th frame (at most _SPLIT_FRAMES), measured in chunks of _CHUNK in frame order whatever the
    # blocks: in memory == in blocks exactly
    for block in range(source.n_blocks):
        start, stop = source.block_range(block)
        chosen = [k for k in range(start, stop) if k % stride == 0]
        if not chosen:
            continue
        frames = source.read(start, stop)
        for k in chosen:
            pending.append(frames[k - start])
            if len(pending) == _CHUNK:
                measure(pending)
                pending = []
    if pending:
        measure(pending)
    values = np.square(np.asarray(shifts, dtype=np.float64)).ravel()
    return math.sqrt(float(np.median(values)) / (4.0 * 0.4549364)), len(shifts)
