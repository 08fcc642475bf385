"""Streaming, mergeable PCA of spectrum images, with Keenan-Kotula Poisson weighting as an option.

:class:`StreamingPCA` holds sufficient statistics of the spectra seen so far: the count ``n``, the mean, the
per-channel sum of squared deviations (Chan et al. merge) and a rank-``r`` factor ``S V^T`` of the centred scatter
(``r = n_components + oversample``). A block of spectra is folded in by a rank-``r`` Brand update (Brand 2006,
DOI 10.1016/j.laa.2005.07.021): project the centred block on ``V``, find the residual's dominant directions with a
seeded randomized range finder (one power iteration), SVD of a small ``(r + b + 1) x (2 r)`` core. Cost per block of
``b`` spectra x ``d`` channels: O(b d r); memory O(d r). Two states merge (:meth:`StreamingPCA.merge`, associative up
to the rank-``r`` truncation), which is what the Dask path (:mod:`processing.decomposition.distributed`) does per
chunk.

Poisson weighting (Keenan & Kotula 2004, DOI 10.1002/sia.1657): ``Y_ij = X_ij / sqrt(t_i h_j)`` with ``t_i`` the
total counts of spectrum ``i`` and ``h_j`` the mean spectrum. ``t_i`` is known per spectrum; ``h`` only at the end.
The state is therefore kept for ``X_ij / sqrt(t_i)`` and the channel weighting ``diag(h)^-1/2`` is applied to the
factor when a result is asked for: exact for the mean and the total variance, and for the scatter up to the
truncation (no fixed early estimate of ``h``, no second pass).
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError
from processing.decomposition._validate import as_si, check_components, finite_spectra

__all__ = ["StreamingPCA", "PCAState", "PCAModel", "batch_pca", "refine_pca", "chunk_products",
           "significant_components", "subspace_angles_deg"]

F64 = NDArray[np.float64]
F32 = NDArray[np.float32]

#: per-spectrum totals below this (counts) are clipped before the Poisson weighting (empty spectra)
MIN_TOTAL_COUNTS = 1.0


@dataclasses.dataclass
class PCAState:
    """Mergeable sufficient statistics (all in the row-weighted space when ``poisson``).

    n: spectra seen; mean: (d,); m2: (d,) per-channel sum of squared deviations; sv: (r,) singular values and
    basis: (d, r) right singular vectors of the centred data; raw_sum: (d,) sum of the raw spectra (for ``h``).
    """

    n: int
    mean: F64
    m2: F64
    sv: F64
    basis: F64
    raw_sum: F64


@dataclasses.dataclass(frozen=True)
class PCAModel:
    """A PCA result in the weighted space: ``Y = X / sqrt(t h)`` (Poisson) or ``Y = X``.

    mean: (d,); components: (k, d) orthonormal rows; explained_variance: (r,) variance per kept component
    (counts^2, or weighted units); total_variance: sum over channels; channel_weight: (d,) 1/sqrt(h) or ones;
    poisson: whether per-spectrum weighting applies; n_spectra: spectra the model was built from.
    """

    mean: F64
    components: F64
    explained_variance: F64
    total_variance: float
    channel_weight: F64
    poisson: bool
    n_spectra: int

    @property
    def explained_variance_ratio(self) -> F64:
        return self.explained_variance / self.total_variance if self.total_variance > 0 else self.explained_variance * 0

    def row_weight(self, spectra: NDArray[np.floating[typing.Any]]) -> F64:
        """(n,) per-spectrum weight 1/sqrt(t_i) (ones without Poisson weighting)."""
        if not self.poisson:
            return np.ones(spectra.shape[0])
        return np.asarray(1.0 / np.sqrt(np.maximum(spectra.sum(axis=1, dtype=np.float64), MIN_TOTAL_COUNTS)), np.float64)

    def transform(self, spectra: NDArray[np.floating[typing.Any]], n_components: int | None = None) -> F64:
        """Scores (n, k) of raw spectra (n, d)."""
        k = self.components.shape[0] if n_components is None else n_components
        y = spectra * self.row_weight(spectra)[:, None] * self.channel_weight[None, :]
        return np.asarray((y - self.mean) @ self.components[:k].T, np.float64)

    def reconstruct(self, spectra: NDArray[np.floating[typing.Any]], n_components: int | None = None) -> F64:
        """Denoised spectra (n, d) in counts: the projection of the spectra on the first k components."""
        k = self.components.shape[0] if n_components is None else n_components
        scores = self.transform(spectra, k)
        y = self.mean + scores @ self.components[:k]
        return np.asarray(y / self.row_weight(spectra)[:, None] / self.channel_weight[None, :], np.float64)

    def spectra_counts(self) -> F64:
        """Component spectra (k, d) in the raw (unweighted) channel space, unit norm, for display."""
        c = self.components / self.channel_weight[None, :]
        return typing.cast(F64, c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-30))


class StreamingPCA:
    """PCA of spectra arriving in blocks (sections of an SI, chunks of a Dask array).

    Parameters
    ----------
    n_channels : int
        d, channels per spectrum.
    n_components : int, keyword-only
        k, components reported (scree shows ``k + oversample``).
    poisson : bool
        Keenan-Kotula weighting (needs non-negative counts).
    oversample : int
        extra directions kept in the state (accuracy of the first k; cost grows linearly).
    seed : int
        seed of the randomized range finder (results are reproducible).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> pca = StreamingPCA(64, n_components=2)
    >>> for block in np.array_split(rng.poisson(5.0, (300, 64)).astype(np.float32), 3):
    ...     pca.partial_fit(block)
    >>> pca.model().components.shape
    (2, 64)
    """

    def __init__(self, n_channels: int, *, n_components: int, poisson: bool = False, oversample: int = 10,
                 sketch_width: int | None = None, power_iteration: bool = True, seed: int = 0) -> None:
        if int(n_channels) != n_channels or n_channels < 1:
            raise ParameterError(f"n_channels must be a positive whole number; got {n_channels!r}.")
        self.n_channels = int(n_channels)
        self.n_components = check_components(n_components, 10**12, self.n_channels)
        if int(oversample) != oversample or oversample < 0:
            raise ParameterError(f"oversample must be a whole number >= 0; got {oversample!r}.")
        self.rank = min(self.n_components + int(oversample), self.n_channels)
        #: new directions looked for in each block's residual, and whether one power iteration sharpens them
        self.sketch_width = int(sketch_width) if sketch_width is not None else self.rank
        self.power_iteration = bool(power_iteration)
        self.poisson = bool(poisson)
        self.seed = int(seed)
        self._rng = np.random.default_rng(seed)
        d = self.n_channels
        self.state = PCAState(0, np.zeros(d), np.zeros(d), np.zeros(0), np.zeros((d, 0)), np.zeros(d))

    # -- updates ------------------------------------------------------------------------------------------------
    def partial_fit(self, spectra: NDArray[np.floating[typing.Any]]) -> None:
        """Fold in a block of spectra (b, d) (finite; non-negative with Poisson weighting)."""
        x = np.asarray(spectra)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise InputError(f"a block of spectra must be (n_spectra, {self.n_channels}); got shape {x.shape}.")
        if x.shape[0] == 0:
            return
        if not np.isfinite(x).all():
            raise InputError(f"the block has {int(x.size - np.count_nonzero(np.isfinite(x)))} NaN/inf value(s); "
                             f"leave out spectra that were not acquired (see finite_spectra).")
        state, centred = self._block_state(x)
        self.merge_state(state, centred)

    def _block_state(self, x: NDArray[np.floating[typing.Any]]) -> tuple[PCAState, F64]:
        raw_sum = x.sum(axis=0, dtype=np.float64)
        if self.poisson:
            totals = x.sum(axis=1, dtype=np.float64)   # single negative values (read noise) are fine: the
            y = (x / np.sqrt(np.maximum(totals, MIN_TOTAL_COUNTS))[:, None]).astype(np.float32)
        else:
            y = np.asarray(x, np.float32)
        n = y.shape[0]
        mean = y.mean(axis=0, dtype=np.float64)
        yc = y - mean.astype(np.float32)
        m2 = np.einsum("ij,ij->j", yc, yc, dtype=np.float64)
        return PCAState(n, mean, m2, np.zeros(0), np.zeros((self.n_channels, 0)), raw_sum), yc

    def merge_state(self, other: PCAState, block: F64 | None = None) -> None:
        """Merge a state into this one; ``block``: the centred spectra behind ``other`` when it has no factor."""
        a = self.state
        if other.n == 0:
            return
        n = a.n + other.n
        delta = other.mean - a.mean
        mean = a.mean + delta * (other.n / n)
        m2 = a.m2 + other.m2 + delta * delta * (a.n * other.n / n)
        correction = np.sqrt(a.n * other.n / n) * delta
        rows = block if block is not None else other.sv[:, None] * other.basis.T
        if a.n > 0:
            rows = np.vstack([rows, correction[None, :].astype(rows.dtype)])
        sv, basis = self._fold(a.sv, a.basis, rows)
        self.state = PCAState(n, mean, m2, sv, basis, a.raw_sum + other.raw_sum)

    def merge(self, other: StreamingPCA) -> StreamingPCA:
        """Merge another StreamingPCA (same channels and options) into this one; returns self."""
        if other.n_channels != self.n_channels or other.poisson != self.poisson:
            raise ParameterError(f"cannot merge PCA states of {other.n_channels} vs {self.n_channels} channels, "
                                 f"Poisson {other.poisson} vs {self.poisson}; build both with the same options.")
        self.merge_state(other.state)
        return self

    def _fold(self, sv: F64, basis: F64, rows: F64) -> tuple[F64, F64]:
        """Rank-r factor of ``basis diag(sv^2) basis^T + rows^T rows``."""
        r = self.rank
        if basis.shape[1] == 0:
            _, s, vt = np.linalg.svd(rows, full_matrices=False)
            return s[:r].copy(), vt[:r].T.copy()
        basis32 = basis.astype(rows.dtype)                         # heavy products in the block's precision
        p = rows @ basis32                                         # (b, r0)
        resid = rows - p @ basis32.T                               # (b, d)
        q = min(self.sketch_width, resid.shape[0], self.n_channels - basis.shape[1])
        p64 = p.astype(np.float64)
        if q > 0:
            g = self._rng.standard_normal((resid.shape[0], q)).astype(resid.dtype)
            sketch = resid.T @ g                                   # range of the residual (randomized)
            if self.power_iteration:
                sketch = resid.T @ (resid @ sketch)
            sketch64 = sketch.astype(np.float64)
            sketch64 -= basis @ (basis.T @ sketch64)               # orthogonal to the basis (round-off)
            qb, _ = np.linalg.qr(sketch64)
            rq = (resid @ qb.astype(resid.dtype)).astype(np.float64)   # (b, q)
            # Gram of the core [[diag(sv), 0], [p, rq]]: (r0 + q) x (r0 + q), from small matrices only
            gram = np.block([[np.diag(sv * sv) + p64.T @ p64, p64.T @ rq], [rq.T @ p64, rq.T @ rq]])
            full = np.hstack([basis, qb])
        else:
            gram = np.diag(sv * sv) + p64.T @ p64
            full = basis
        evals, evecs = np.linalg.eigh((gram + gram.T) / 2)
        order = np.argsort(evals)[::-1][:r]
        return np.sqrt(np.maximum(evals[order], 0.0)), full @ evecs[:, order]

    # -- results ------------------------------------------------------------------------------------------------
    def refined_model(self, spectra: NDArray[np.floating[typing.Any]], *, n_passes: int = 8,
                      n_components: int | None = None) -> PCAModel:
        """The model refined on all the spectra (n, d) seen: equals a batch PCA (see :func:`refine_pca`)."""
        model = self.model(n_components=self.rank)
        return refine_pca(model, lambda v: chunk_products(spectra, model, v), n_passes=n_passes,
                          n_components=self.n_components if n_components is None else n_components)

    def model(self, n_components: int | None = None) -> PCAModel:
        """The PCA model of everything seen so far (components (k, d); scree over the kept rank)."""
        st = self.state
        if st.n < 2:
            raise InputError(f"PCA needs at least 2 spectra; {st.n} seen so far.")
        k = min(self.n_components if n_components is None else n_components, st.sv.size)
        if self.poisson:
            raw_mean = st.raw_sum / st.n
            bad = int(np.count_nonzero(raw_mean <= 0))
            if bad > 0.05 * self.n_channels:
                raise InputError(
                    f"Poisson weighting needs positive mean counts per channel; {bad} of {self.n_channels} channels "
                    f"have a mean <= 0 (background-subtracted data?). Decompose the raw counts or switch Poisson "
                    f"weighting off.")
            h = np.maximum(raw_mean, max(float(raw_mean.mean()), 1e-12) * 1e-6)
            w = 1.0 / np.sqrt(h)
            _, s, vt = np.linalg.svd(st.sv[:, None] * st.basis.T * w[None, :], full_matrices=False)
            mean, total = st.mean * w, float(np.sum(st.m2 * w * w))
        else:
            w = np.ones(self.n_channels)
            s, vt, mean, total = st.sv, st.basis.T, st.mean, float(st.m2.sum())
        vt = _sign_fix(vt)
        return PCAModel(mean=mean, components=vt[:k].copy(), explained_variance=s * s / max(st.n - 1, 1),
                        total_variance=total / max(st.n - 1, 1), channel_weight=w, poisson=self.poisson,
                        n_spectra=st.n)


def chunk_products(spectra: NDArray[np.floating[typing.Any]], model: PCAModel, basis: F64
                   ) -> tuple[F64, F64]:
    """One chunk's share of a refinement pass: (Yc^T Yc V (d, r), (Yc V)^T (Yc V) (r, r)); sums over chunks.

    spectra: (b, d) raw finite spectra; Yc: weighted, centred with the model's mean; basis V: (d, r).
    """
    x = np.asarray(spectra)
    y = (x * model.row_weight(x)[:, None] * model.channel_weight[None, :]).astype(np.float32)
    y -= model.mean.astype(np.float32)
    z = y @ basis.astype(np.float32)
    return (y.T @ z).astype(np.float64), (z.T @ z).astype(np.float64)


def refine_pca(model: PCAModel, products: typing.Callable[[F64], tuple[F64, F64]], *, n_passes: int = 8,
               n_components: int | None = None, tolerance_deg: float = 0.01) -> PCAModel:
    """Block power iterations + Rayleigh-Ritz from ``model``'s subspace, over all the data (batch-equivalent).

    ``products(V)`` returns the summed :func:`chunk_products` of every chunk (in memory, a Dask reduction...).
    The mean, weights and total variance of ``model`` are exact already; the subspace converges as
    (lambda_{r+1} / lambda_k)^passes: strong components reach the batch result in 2-3 passes, weak ones (near the
    noise floor) take more; passes stop when the leading k directions move less than ``tolerance_deg`` (at most
    ``n_passes``). Explained
    variances are the exact Ritz values of the data's covariance.
    """
    if int(n_passes) != n_passes or n_passes < 1:
        raise ParameterError(f"n_passes must be a whole number >= 1; got {n_passes!r}.")
    basis = model.components.T.copy()
    gram = np.zeros((basis.shape[1],) * 2)
    k_check = basis.shape[1] if n_components is None else min(int(n_components), basis.shape[1])
    previous: F64 | None = None
    for i in range(int(n_passes)):
        cv, gram = products(basis)
        _, vecs = np.linalg.eigh((gram + gram.T) / 2)
        lead = (basis @ vecs[:, ::-1][:, :k_check]).T            # current Ritz estimate of the leading k
        if i == n_passes - 1 or (previous is not None
                                 and float(subspace_angles_deg(previous, lead).max()) < tolerance_deg):
            break                                                 # Rayleigh-Ritz on this basis below
        previous = lead
        basis, _ = np.linalg.qr(cv)
    evals, evecs = np.linalg.eigh((gram + gram.T) / 2)
    order = np.argsort(evals)[::-1]
    vt = _sign_fix((basis @ evecs[:, order]).T)
    k = vt.shape[0] if n_components is None else min(int(n_components), vt.shape[0])
    n = model.n_spectra
    return PCAModel(mean=model.mean, components=vt[:k].copy(),
                    explained_variance=np.maximum(evals[order], 0) / max(n - 1, 1),
                    total_variance=model.total_variance, channel_weight=model.channel_weight, poisson=model.poisson,
                    n_spectra=n)


def _sign_fix(vt: F64) -> F64:
    """Make the largest-magnitude entry of each component positive (deterministic signs)."""
    if vt.size == 0:
        return vt
    idx = np.argmax(np.abs(vt), axis=1)
    signs = np.sign(vt[np.arange(vt.shape[0]), idx])
    signs[signs == 0] = 1
    return typing.cast(F64, vt * signs[:, None])


def batch_pca(si: typing.Any, *, n_components: int, poisson: bool = False) -> PCAModel:
    """Reference batch PCA (one SVD of the whole, weighted, centred data) with the same conventions.

    si: (ny, nx, d) or (n, d); NaN spectra are left out.
    """
    data = as_si(si)
    mask, _ = finite_spectra(data)
    x = data[mask].astype(np.float64)
    k = check_components(n_components, x.shape[0], x.shape[1])
    if poisson:
        h = np.maximum(x.mean(axis=0), 1e-12)
        w = 1.0 / np.sqrt(h)
        y = x / np.sqrt(np.maximum(x.sum(axis=1), MIN_TOTAL_COUNTS))[:, None] * w[None, :]
    else:
        w = np.ones(x.shape[1])
        y = x
    mean = y.mean(axis=0)
    yc = y - mean
    _, s, vt = np.linalg.svd(yc, full_matrices=False)
    n = y.shape[0]
    return PCAModel(mean=mean, components=_sign_fix(vt)[:k].copy(), explained_variance=s * s / max(n - 1, 1),
                    total_variance=float(np.sum(yc * yc)) / max(n - 1, 1), channel_weight=w, poisson=poisson,
                    n_spectra=n)


def significant_components(explained_variance: F64, *, total_variance: float, n_spectra: int, n_channels: int,
                           margin: float = 1.2) -> int:
    """Number of components above the noise floor (Marchenko-Pastur edge of white noise), for the scree plot.

    The noise variance per channel is estimated from the variance not explained by the kept components,
    sigma^2 = (total - sum(kept)) / (d (m - r) / m) with m = min(n - 1, d) non-zero eigenvalues; a component is significant when its variance exceeds
    ``margin * sigma^2 (1 + sqrt(d / n))^2``, widened by the finite-size (Tracy-Widom) spread
    ``1 + 3 min(n, d)^(-2/3)``. Meant for Poisson-weighted data (homoscedastic noise); on
    unweighted counts it is an estimate (the noise is not white).
    """
    ev = np.asarray(explained_variance, np.float64)
    r = ev.size
    if r == 0 or n_channels <= r:
        return int(r)
    m = min(max(n_spectra - 1, 1), n_channels)          # non-zero noise eigenvalues
    if m <= r:
        return 0
    sigma2 = max(total_variance - float(ev.sum()), 0.0) / (n_channels * (m - r) / m)
    edge = sigma2 * (1.0 + np.sqrt(n_channels / max(n_spectra, 1))) ** 2
    above = ev > margin * (1.0 + 3.0 * min(n_spectra, n_channels) ** (-2.0 / 3.0)) * edge  # + Tracy-Widom spread
    return int(np.argmin(above)) if not above.all() else int(r)


def subspace_angles_deg(a: F64, b: F64) -> F64:
    """Principal angles (deg) between the row spaces of a (k, d) and b (k, d)."""
    qa, _ = np.linalg.qr(np.asarray(a, np.float64).T)
    qb, _ = np.linalg.qr(np.asarray(b, np.float64).T)
    s = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), -1.0, 1.0)
    return typing.cast(F64, np.degrees(np.arccos(s)))
