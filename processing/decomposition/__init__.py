"""Decomposition of spectrum images: streaming, mergeable PCA (Poisson weighting), mini-batch NMF, VCA.

Public entry points: :func:`decompose` (one call, offline), :class:`Decomposer` (incremental, what the live
analysis runs), :class:`StreamingPCA`, :class:`StreamingNMF`, :func:`vca`, :func:`decompose_dask` (Dask
distributed over a big SI, in :mod:`processing.decomposition.distributed`). See docs/decomposition.md.
"""
from __future__ import annotations

from processing.decomposition.engine import Decomposer, decompose
from processing.decomposition.nmf import StreamingNMF, batch_nmf
from processing.decomposition.pca import StreamingPCA, batch_pca, subspace_angles_deg
from processing.decomposition.result import DecompositionResult
from processing.decomposition.vca import vca

__all__ = ["Decomposer", "decompose", "StreamingNMF", "batch_nmf", "StreamingPCA", "batch_pca",
           "subspace_angles_deg", "DecompositionResult", "vca"]
