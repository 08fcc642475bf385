"""PCA of a big spectrum image on Dask (``dask.distributed``): per-chunk states merged in a tree, then refined.

Each chunk of rows of a ``dask.array`` SI (ny, nx, d) becomes a :class:`~processing.decomposition.pca.PCAState`
on a worker; states are merged pairwise (:meth:`StreamingPCA.merge_state`, the same merge the live path uses);
then ``n_passes`` refinement passes sum the per-chunk :func:`~processing.decomposition.pca.chunk_products` (so the
result equals a batch PCA of the whole SI), and the score maps are computed chunk by chunk. Only (d, r) matrices
travel between workers; the SI is read ``1 + n_passes + 1`` times (states, passes, maps).

>>> import dask.array as da, numpy as np                                        # doctest: +SKIP
>>> from dask.distributed import Client, LocalCluster
>>> with LocalCluster(n_workers=2, processes=False) as cluster, Client(cluster) as client:
...     result = decompose_dask(da.from_array(si, chunks=(8, -1, -1)), n_components=3, client=client)
"""
from __future__ import annotations

import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError
from processing.decomposition._validate import check_components
from processing.decomposition.pca import (PCAModel, PCAState, StreamingPCA, chunk_products, refine_pca,
                                          significant_components)
from processing.decomposition.result import DecompositionResult

__all__ = ["decompose_dask"]

F64 = NDArray[np.float64]


def _finite_rows(block: NDArray[typing.Any]) -> NDArray[np.float32]:
    x = np.asarray(block, np.float32).reshape(-1, block.shape[-1])
    return x[np.isfinite(x).all(axis=1)]


def _chunk_state(block: NDArray[typing.Any], n_components: int, poisson: bool, seed: int) -> PCAState:
    pca = StreamingPCA(block.shape[-1], n_components=n_components, poisson=poisson, seed=seed)
    pca.partial_fit(_finite_rows(block))
    return pca.state


def _merge(a: PCAState, b: PCAState, n_channels: int, n_components: int, poisson: bool, seed: int) -> PCAState:
    pca = StreamingPCA(n_channels, n_components=n_components, poisson=poisson, seed=seed)
    pca.state = a
    pca.merge_state(b)
    return pca.state


def _products(block: NDArray[typing.Any], model: PCAModel, basis: F64) -> tuple[F64, F64]:
    x = _finite_rows(block)
    if x.shape[0] == 0:
        return np.zeros((basis.shape[0], basis.shape[1])), np.zeros((basis.shape[1], basis.shape[1]))
    return chunk_products(x, model, basis)


def _scores(block: NDArray[typing.Any], model: PCAModel, k: int) -> NDArray[np.float32]:
    x = np.asarray(block, np.float32)
    flat = x.reshape(-1, x.shape[-1])
    out = np.full((flat.shape[0], k), np.nan, np.float32)
    ok = np.isfinite(flat).all(axis=1)
    if ok.any():
        out[ok] = model.transform(flat[ok], k)
    return out.reshape(x.shape[:-1] + (k,))


def _denoised(block: NDArray[typing.Any], model: PCAModel, k: int) -> NDArray[np.float32]:
    x = np.asarray(block, np.float32)
    flat = x.reshape(-1, x.shape[-1])
    out = np.full(flat.shape, np.nan, np.float32)
    ok = np.isfinite(flat).all(axis=1)
    if ok.any():
        out[ok] = model.reconstruct(flat[ok], k)
    return out.reshape(x.shape)


def decompose_dask(si: typing.Any, *, n_components: int, poisson: bool = True, client: typing.Any = None,
                   n_passes: int = 8, energy_offset_eV: float = 0.0, energy_scale_eV: float = 1.0,
                   pixel_size_nm: float = 1.0, reconstruct: bool = False, seed: int = 0) -> DecompositionResult:
    """PCA of a ``dask.array`` SI (ny, nx, d) (chunked along y/x only) on ``client`` (a ``dask.distributed``
    Client; None: the default scheduler). NaN spectra are left out. ``reconstruct``: also the denoised SI
    (ny, nx, d) float32 (computed per chunk on the workers, gathered in memory)."""
    import importlib
    dask: typing.Any = importlib.import_module("dask")            # untyped library: typed through Any
    da: typing.Any = importlib.import_module("dask.array")

    array = si if isinstance(si, da.Array) else da.asarray(si)
    if array.ndim != 3:
        raise InputError(f"the SI must be 3-D (y, x, energy); got shape {array.shape}.")
    if len(array.chunks[2]) != 1:
        array = array.rechunk({2: -1})
    d = int(array.shape[2])
    k = check_components(n_components, int(array.shape[0] * array.shape[1]), d)
    blocks = [b for b in array.to_delayed().ravel()]

    def run(*things: typing.Any) -> typing.Any:
        if client is not None:
            return client.gather(client.compute(list(things)))
        return dask.compute(*things)

    states = [dask.delayed(_chunk_state)(b, k, poisson, seed) for b in blocks]
    while len(states) > 1:  # pairwise tree merge
        merged = [dask.delayed(_merge)(states[i], states[i + 1], d, k, poisson, seed)
                  for i in range(0, len(states) - 1, 2)]
        states = merged + ([states[-1]] if len(states) % 2 else [])
    (state,) = run(states[0])
    pca = StreamingPCA(d, n_components=k, poisson=poisson, seed=seed)
    pca.state = state
    start = pca.model(n_components=pca.rank)

    def products(basis: F64) -> tuple[F64, F64]:
        parts = run(*[dask.delayed(_products)(b, start, basis) for b in blocks])
        return np.sum([p[0] for p in parts], axis=0), np.sum([p[1] for p in parts], axis=0)

    model = refine_pca(start, products, n_passes=n_passes, n_components=k)
    score_blocks = array.map_blocks(_scores, model, k, dtype=np.float32, chunks=array.chunks[:2] + ((k,),))
    (maps,) = run(score_blocks)
    reconstructed = None
    if reconstruct:
        (reconstructed,) = run(array.map_blocks(_denoised, model, k, dtype=np.float32))
        reconstructed = np.asarray(reconstructed, np.float32)
    return DecompositionResult(
        method="pca", n_components=k, scree=model.explained_variance_ratio,
        n_significant=significant_components(model.explained_variance, total_variance=model.total_variance,
                                             n_spectra=model.n_spectra, n_channels=d),
        components=model.spectra_counts(), maps=np.asarray(maps, np.float64), map_units="score",
        energy_offset_eV=energy_offset_eV, energy_scale_eV=energy_scale_eV, pixel_size_nm=pixel_size_nm,
        n_spectra=model.n_spectra, final=True, notes=(), pca=model, reconstructed=reconstructed)
