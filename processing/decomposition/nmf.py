"""Mini-batch NMF of spectrum images, updated per section, with a final batch refinement.

:class:`StreamingNMF` wraps scikit-learn's ``MiniBatchNMF.partial_fit`` (Lefevre et al. 2011 online NMF;
Frobenius loss) for the live updates; :meth:`StreamingNMF.refine` runs scikit-learn's batch ``NMF`` (coordinate
descent) on all the spectra, started from the mini-batch factors, so the final reconstruction error is that of a
batch NMF of the same rank (:func:`batch_nmf` is the reference). Negative counts are refused with a message, or
clipped to 0 on request (and counted). Components: (k, d) spectra in counts per unit abundance; abundances:
(n, k) >= 0.
"""
from __future__ import annotations

import dataclasses
import typing
import warnings

import numpy as np
from numpy.typing import NDArray
from sklearn.decomposition import NMF, MiniBatchNMF
from sklearn.exceptions import ConvergenceWarning

from processing.base import InputError
from processing.decomposition._validate import check_components, check_nonnegative

__all__ = ["StreamingNMF", "NMFModel", "batch_nmf", "reconstruction_error"]

F64 = NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class NMFModel:
    """components: (k, d) spectra; abundances: (n, k) for the spectra given to the fit (or None)."""

    components: F64
    abundances: F64 | None
    n_spectra: int
    negatives_clipped: int = 0


def reconstruction_error(spectra: NDArray[np.floating[typing.Any]], abundances: F64, components: F64) -> float:
    """Frobenius norm ||X - W H|| (counts)."""
    return float(np.linalg.norm(np.asarray(spectra, np.float64) - abundances @ components))


class StreamingNMF:
    """NMF of spectra arriving in blocks (b, d); ``refine(all_spectra)`` gives the batch-quality result.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> h = np.abs(rng.standard_normal((2, 32))); w = rng.random((400, 2))
    >>> nmf = StreamingNMF(32, n_components=2, seed=0)
    >>> for block in np.array_split(rng.poisson(20 * w @ h).astype(np.float32), 4):
    ...     nmf.partial_fit(block)
    >>> nmf.components.shape
    (2, 32)
    """

    def __init__(self, n_channels: int, *, n_components: int, seed: int = 0, clip_negative: bool = False) -> None:
        self.n_channels = int(n_channels)
        self.n_components = check_components(n_components, 10**12, self.n_channels)
        self.seed = int(seed)
        self.clip_negative = bool(clip_negative)
        self.negatives_clipped = 0
        self.n_spectra = 0
        self._pending: list[NDArray[np.float32]] = []   # spectra waiting until there are >= k of them
        self._mb = MiniBatchNMF(n_components=self.n_components, init="nndsvda", batch_size=1024,
                                random_state=self.seed, max_iter=200, forget_factor=0.7)
        self._fitted = False

    def _check(self, spectra: NDArray[np.floating[typing.Any]]) -> NDArray[np.float32]:
        x = np.asarray(spectra)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise InputError(f"a block of spectra must be (n_spectra, {self.n_channels}); got shape {x.shape}.")
        if not np.isfinite(x).all():
            raise InputError("the block has NaN/inf values; leave out spectra that were not acquired.")
        x, clipped = check_nonnegative(x, clip_negative=self.clip_negative, method="nmf")
        self.negatives_clipped += clipped
        return x

    def partial_fit(self, spectra: NDArray[np.floating[typing.Any]]) -> None:
        """Fold in a block of spectra (b, d), non-negative (blocks smaller than k wait for the next one)."""
        x = self._check(spectra)
        if x.shape[0] == 0:
            return
        self.n_spectra += x.shape[0]
        if not self._fitted:
            self._pending.append(x)
            x = np.concatenate(self._pending)
            if x.shape[0] < max(self.n_components, 2):
                return
            self._pending = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._mb.partial_fit(x)
        self._fitted = True

    @property
    def fitted(self) -> bool:
        return self._fitted

    @property
    def components(self) -> F64:
        if not self._fitted:
            raise InputError(f"NMF needs at least {self.n_components} spectra; {self.n_spectra} seen so far.")
        return np.asarray(self._mb.components_, np.float64)

    def transform(self, spectra: NDArray[np.floating[typing.Any]]) -> F64:
        """Abundances (n, k) of spectra (n, d) with the current components."""
        x = self._check(spectra)
        _ = self.components
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return np.asarray(self._mb.transform(x), np.float64)

    def refine(self, spectra: NDArray[np.floating[typing.Any]], *, max_iter: int = 100,
               init_components: F64 | None = None) -> NMFModel:
        """Batch NMF of all the spectra (n, d), started from the mini-batch components or ``init_components``
        (k, d) (e.g. VCA endmembers: NMF's rotational ambiguity is then resolved towards pure-pixel spectra)."""
        x = self._check(spectra).astype(np.float64)
        check_components(self.n_components, x.shape[0], x.shape[1])
        h0 = self.components.copy() if init_components is None else np.maximum(np.asarray(init_components,
                                                                                           np.float64), 0)
        if h0.shape != (self.n_components, self.n_channels):
            raise InputError(f"init_components must be ({self.n_components}, {self.n_channels}); got {h0.shape}.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if init_components is None:
                w0 = np.asarray(self._mb.transform(x.astype(np.float32)), np.float64)
            else:
                w0 = np.maximum(np.linalg.lstsq(h0.T, x.T, rcond=None)[0].T, 0)
            model = NMF(n_components=self.n_components, init="custom", max_iter=max_iter, tol=1e-4,
                        random_state=self.seed)
            w = model.fit_transform(x, W=np.maximum(w0, 1e-12), H=np.maximum(h0, 1e-12))
        return NMFModel(components=np.asarray(model.components_, np.float64), abundances=np.asarray(w, np.float64),
                        n_spectra=x.shape[0], negatives_clipped=self.negatives_clipped)


def batch_nmf(spectra: NDArray[np.floating[typing.Any]], *, n_components: int, seed: int = 0,
              max_iter: int = 500) -> NMFModel:
    """Reference: scikit-learn batch NMF (nndsvda init, coordinate descent, Frobenius loss) of spectra (n, d)."""
    x = np.asarray(spectra, np.float64)
    k = check_components(n_components, x.shape[0], x.shape[1])
    check_nonnegative(x, clip_negative=False, method="nmf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = NMF(n_components=k, init="nndsvda", max_iter=max_iter, tol=1e-5, random_state=seed)
        w = model.fit_transform(x.astype(np.float64))
    return NMFModel(components=np.asarray(model.components_, np.float64), abundances=np.asarray(w, np.float64),
                    n_spectra=x.shape[0])
