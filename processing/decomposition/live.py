"""Live decomposition of a drift-corrected SI as it fills: one :class:`~processing.spectroscopy.live_analysis.LiveAnalysis`
per method ("Decomposition PCA", "Decomposition NMF", "Decomposition VCA"; parameters: components, Poisson weighting,
denoised SI).

Each update folds the newly acquired spectra (every acquired pixel not seen yet, so an update the runner skipped
loses nothing) into a :class:`~processing.decomposition.engine.Decomposer`, then shows the scree plot, the
component spectra (eV) and the maps (nm) of the SI so far; the final update adds the batch refinement (the result
then equals the offline :func:`~processing.decomposition.decompose` of the same spectra). ``timings_ms`` records,
per update, the time of the state update alone ("fold") and of the whole update with the outputs ("total").

With *Denoised SI* on, every update also outputs the reconstructed SI of the pixels acquired so far ("denoised_si":
(ny, nx, d) counts, NaN where not acquired; a 3-D :class:`processing.base.ImageOutput` with (nm, nm, eV)
calibrations, which the Swift glue turns into an SI data item); the final update's, from the refined
decomposition, is saved with the SI. Its cost (the projection of every acquired spectrum) is part of
``timings_ms`` "total".
"""
from __future__ import annotations

import functools
import time
import typing

import numpy as np
import threadpoolctl

from processing import base
from processing.decomposition.engine import Decomposer
from processing.spectroscopy import live_analysis

__all__ = ["LiveDecomposition", "LIVE_PARAMETERS", "LIVE_NAMES", "register"]

LIVE_PARAMETERS = (
    base.Parameter("n_components", "Components", "integral", 3, 1, 20,
                   description="PCA components / NMF components / VCA endmembers"),
    base.Parameter("poisson", "Poisson weighting", "boolean", True,
                   description="Keenan-Kotula weighting of the PCA (PCA, VCA)"),
    base.Parameter("reconstruct", "Denoised SI", "boolean", False,
                   description="also show the reconstructed (denoised) SI, updated per section, saved at the end"),
)
#: live analysis name -> method
LIVE_NAMES = {"Decomposition PCA": "pca", "Decomposition NMF": "nmf", "Decomposition VCA": "vca"}


class LiveDecomposition:
    """A live decomposition (``method`` "pca" | "nmf" | "vca") of the SI of one run."""

    parameters = LIVE_PARAMETERS

    def __init__(self, *, method: str = "pca", n_components: int = 3, poisson: bool = True, reconstruct: bool = False,
                 seed: int = 0) -> None:
        self.method = method
        self.n_components = int(n_components)
        self.poisson = bool(poisson)
        self.reconstruct = bool(reconstruct)
        self.seed = int(seed)
        self.title = f"Decomposition ({method.upper()}, {self.n_components} components)"
        self.engine: Decomposer | None = None
        self.timings_ms: list[dict[str, float]] = []
        Decomposer((1, 1, max(self.n_components, 1)), method=method, n_components=self.n_components)  # validates

    def update(self, update: live_analysis.SectionUpdate) -> base.Outputs:
        # one BLAS thread: on a loaded machine (acquisition, display, other analyses) more OpenBLAS threads only
        # spin against each other (measured 10x slower with 2 threads on 2 busy cores, bench_decomposition.py)
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            return self._update(update)

    def _update(self, update: live_analysis.SectionUpdate) -> base.Outputs:
        t0 = time.perf_counter()
        si = update.si
        if self.engine is None or self.engine.shape != si.shape:
            self.engine = Decomposer(typing.cast(tuple[int, int, int], si.shape), method=self.method,
                                     n_components=self.n_components, poisson=self.poisson,
                                     energy_offset_eV=update.energy_offset_eV,
                                     energy_scale_eV=update.energy_scale_eV, pixel_size_nm=update.pixel_size_nm,
                                     clip_negative=False, seed=self.seed)
        engine = self.engine
        added = engine.ingest(si, np.asarray(update.acquired, bool))
        t_fold = time.perf_counter()
        n = int(engine.usable.sum())
        if n < max(self.n_components + 1, 2):
            return (base.Notice("status", f"{self.title}: {n} spectra so far; waiting for more than "
                                          f"{self.n_components} before the first decomposition."),)
        result = engine.result(si, final=update.final, reconstruct=self.reconstruct)
        outputs = result.outputs()
        if result.reconstructed is not None:
            outputs = outputs + (self._denoised(result, update),)
        t_end = time.perf_counter()
        timing = {"fold_ms": 1e3 * (t_fold - t0), "total_ms": 1e3 * (t_end - t0), "spectra_added": float(added)}
        self.timings_ms.append(timing)
        status = (f"{self.title}: {n} spectra, section {update.section_index}{' (final, refined)' if update.final else ''}"
                  f"; state update {timing['fold_ms']:.1f} ms, with outputs {timing['total_ms']:.1f} ms; "
                  f"{result.n_significant} significant component(s).")
        return outputs + (base.Notice("status", status),)

    @staticmethod
    def _denoised(result: typing.Any, update: live_analysis.SectionUpdate) -> base.ImageOutput:
        nm = base.Calibration(0.0, update.pixel_size_nm, "nm")
        eV = base.Calibration(update.energy_offset_eV, update.energy_scale_eV, "eV")
        # a 3-D "image" (ny, nx, d): the glue's output_to_xdata makes it an SI data item (2 collection axes + eV)
        calibrations = typing.cast(tuple[base.Calibration, base.Calibration], (nm, nm, eV))
        return base.ImageOutput("denoised_si", result.reconstructed, calibrations, "counts",
                                title=f"{result.method.upper()} denoised SI")

    def close(self) -> None:
        self.engine = None


def register() -> None:
    """Offer the three live decompositions in the Drift-corrected SI panel (idempotent)."""
    for name, method in LIVE_NAMES.items():
        live_analysis.register_live_analysis(name, functools.partial(LiveDecomposition, method=method),
                                             parameters=LIVE_PARAMETERS)


register()
