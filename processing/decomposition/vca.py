"""Vertex component analysis (Nascimento & Dias 2005, DOI 10.1109/TGRS.2005.844293) on a PCA subspace.

The spectra are reduced to the k-1 leading PCA scores (offline: :func:`processing.decomposition.pca.batch_pca`;
live: the streaming PCA of the SI so far), lifted to k dimensions with a constant coordinate (the
low-SNR projective form of VCA) and the k most extreme pixels are picked one by one: project on a random direction
orthogonal to the endmembers found so far, take the pixel of largest |projection|. Endmember spectra are the
PCA-denoised spectra of those pixels (counts); abundances are non-negative least squares of every spectrum on the
endmembers, solved in the k-dimensional subspace.
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
import scipy.optimize
from numpy.typing import NDArray

from processing.base import InputError
from processing.decomposition.pca import PCAModel

__all__ = ["VCAModel", "vca_indices", "vca"]

F64 = NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class VCAModel:
    """indices: (k,) rows of the purest spectra; components: (k, d) endmember spectra (counts);
    abundances: (n, k) >= 0 (units: multiples of each endmember spectrum)."""

    indices: NDArray[np.int64]
    components: F64
    abundances: F64


def vca_indices(scores: F64, n_endmembers: int, *, seed: int = 0) -> NDArray[np.int64]:
    """Indices of ``n_endmembers`` extreme rows of ``scores`` (n, >= n_endmembers - 1) (VCA, projective form)."""
    z = np.asarray(scores, np.float64)[:, :max(n_endmembers - 1, 0)]
    n = z.shape[0]
    if n < n_endmembers:
        raise InputError(f"VCA needs at least {n_endmembers} spectra for {n_endmembers} endmembers; got {n}. "
                         f"Ask for fewer components or acquire more spectra.")
    c = float(np.max(np.linalg.norm(z, axis=1))) if z.size else 1.0
    y = np.hstack([z, np.full((n, 1), c if c > 0 else 1.0)])       # (n, k)
    k = n_endmembers
    rng = np.random.default_rng(seed)
    a = np.zeros((k, k))
    a[-1, 0] = 1.0
    chosen: list[int] = []
    for i in range(k):
        w = rng.standard_normal(k)
        basis = a[:, :i] if i else a[:, :1]
        f = w - basis @ np.linalg.lstsq(basis, w, rcond=None)[0]
        f /= max(float(np.linalg.norm(f)), 1e-30)
        v = np.abs(y @ f)
        if chosen:
            v[chosen] = -1.0
        idx = int(np.argmax(v))
        chosen.append(idx)
        a[:, i] = y[idx]
    return np.asarray(chosen, np.int64)


def vca(spectra: NDArray[np.floating[typing.Any]], pca: PCAModel, n_endmembers: int, *, seed: int = 0) -> VCAModel:
    """VCA of raw spectra (n, d) in the subspace of ``pca`` (which needs >= n_endmembers - 1 components)."""
    x = np.asarray(spectra, np.float64)
    k = int(n_endmembers)
    if pca.components.shape[0] < k - 1:
        raise InputError(f"VCA with {k} endmembers needs a PCA with {k - 1} components; it has "
                         f"{pca.components.shape[0]}.")
    scores = pca.transform(x, k - 1) if k > 1 else np.zeros((x.shape[0], 0))
    idx = vca_indices(scores, k, seed=seed)
    endmembers = pca.reconstruct(x[idx], k - 1) if k > 1 else x[idx].copy()
    endmembers = np.maximum(endmembers, 0.0)
    # NNLS in the k-dimensional (uncentred) subspace spanned by the mean and the k-1 components (weighted space)
    cw = pca.channel_weight
    basis, _ = np.linalg.qr(np.vstack([pca.mean[None, :], pca.components[:k - 1]]).T)   # (d, k)
    x_coords = (x * cw) @ basis                                                          # (n, k)
    e_plain = (endmembers * cw) @ basis                                                  # (k, k)
    abundances = np.empty((x.shape[0], k))
    for i in range(x.shape[0]):
        abundances[i] = scipy.optimize.nnls(e_plain.T, x_coords[i])[0]
    return VCAModel(indices=idx, components=endmembers, abundances=abundances)
