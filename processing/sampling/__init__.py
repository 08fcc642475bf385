"""Sparse and dynamic sampling of spectrum images: patterns, reconstruction (PCA inpainting, TV), SLADS-like policy.

See docs/decomposition.md ("Sparse scanning"). The simulated scan that acquires at arbitrary positions is
:mod:`instrument_sim.sparse_scan`.
"""
from __future__ import annotations

from processing.sampling.drift_sections import (DriftCorrectedAcquisition, SparseDriftResult,
                                                acquire_sparse_drift_corrected)
from processing.sampling.dynamic import DynamicSampling, dynamic_sampling, expected_reduction, next_positions
from processing.sampling.patterns import (PATTERNS, check_fraction, check_positions, jittered_grid_pattern,
                                          line_hopping_pattern, make_pattern, mask_from_positions, random_pattern)
from processing.sampling.reconstruct import SparseReconstruction, inpaint_pca, inpaint_tv

__all__ = ["DriftCorrectedAcquisition", "SparseDriftResult", "acquire_sparse_drift_corrected", "DynamicSampling",
           "dynamic_sampling", "expected_reduction", "next_positions", "PATTERNS",
           "check_fraction", "check_positions", "jittered_grid_pattern", "line_hopping_pattern", "make_pattern",
           "mask_from_positions", "random_pattern", "SparseReconstruction", "inpaint_pca", "inpaint_tv"]
