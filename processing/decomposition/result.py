"""The result of a decomposition and its display outputs (scree, component spectra in eV, maps in nm).

:class:`DecompositionResult` is what :func:`processing.decomposition.decompose`, the live analysis, the CLI and the
Swift computation all return/show; :meth:`DecompositionResult.outputs` turns it into ``processing.base`` outputs
(line plots and images with calibrations) and :meth:`DecompositionResult.to_dict` into arrays + JSON-able metadata
for a file.
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
from numpy.typing import NDArray

from processing import base
from processing.decomposition.pca import PCAModel

__all__ = ["DecompositionResult", "MAX_MAP_OUTPUTS"]

F64 = NDArray[np.float64]

#: maps shown as separate images (the others stay in the result / file)
MAX_MAP_OUTPUTS = 8


@dataclasses.dataclass(frozen=True)
class DecompositionResult:
    """method; scree: (r,) explained-variance ratio of the PCA of the same spectra (every method); n_significant:
    components above the noise floor; components: (k, d) spectra (PCA: unit-norm loadings in counts space; NMF,
    VCA: counts); maps: (ny, nx, k) scores / abundances, NaN where no usable spectrum; energy axis: channel i at
    energy_offset_eV + energy_scale_eV * i; pixel_size_nm: map pixel size; final: batch-refined; notes: what the
    user should know (spectra left out, values clipped, live approximations); reconstructed: (ny, nx, d) denoised
    SI when asked for."""

    method: str
    n_components: int
    scree: F64
    n_significant: int
    components: F64
    maps: F64
    map_units: str
    energy_offset_eV: float
    energy_scale_eV: float
    pixel_size_nm: float
    n_spectra: int
    final: bool
    notes: tuple[str, ...] = ()
    pca: PCAModel | None = None
    reconstructed: NDArray[np.float32] | None = None

    @property
    def energies_eV(self) -> F64:
        return np.asarray(self.energy_offset_eV + self.energy_scale_eV * np.arange(self.components.shape[1]), np.float64)

    def metadata(self) -> dict[str, typing.Any]:
        """JSON-able summary."""
        return {"method": self.method, "n_components": self.n_components, "n_significant": self.n_significant,
                "n_spectra": self.n_spectra, "final": self.final, "notes": list(self.notes),
                "scree": [float(v) for v in self.scree],
                "poisson_weighting": bool(self.pca.poisson) if self.pca is not None else None}

    def outputs(self) -> base.Outputs:
        """Scree (line), component spectra (k lines over eV), one image per map (nm), notes."""
        name = self.method.upper()
        eV = base.Calibration(self.energy_offset_eV, self.energy_scale_eV, "eV")
        nm = base.Calibration(0.0, self.pixel_size_nm, "nm")
        # titles stay the same from update to update (a live display keeps its data item); the state is in notes
        out: list[base.Output] = [
            base.LinePlotOutput("scree", np.log10(np.maximum(self.scree, 1e-12)).astype(np.float32),
                                base.Calibration(1.0, 1.0, "component"), "log10 explained variance ratio",
                                title=f"{name} scree"),
            base.LinePlotOutput("spectra", self.components.astype(np.float32), eV,
                                "counts" if self.method != "pca" else "loading",
                                labels=tuple(f"{name} {i + 1}" for i in range(self.n_components)),
                                title=f"{name} component spectra"),
        ]
        for i in range(min(self.n_components, MAX_MAP_OUTPUTS)):
            out.append(base.ImageOutput(f"map_{i + 1}", self.maps[..., i].astype(np.float32), (nm, nm),
                                        self.map_units, title=f"{name} {self.map_units} map {i + 1}"))
        notes = [f"{name}: {self.n_spectra} spectra, {self.n_significant} significant component(s)"
                 f"{', final (refined)' if self.final else ', live'}."] + list(self.notes)
        if self.n_components > MAX_MAP_OUTPUTS:
            notes.append(f"maps {MAX_MAP_OUTPUTS + 1}-{self.n_components} are in the result, not shown.")
        out.append(base.Notice("notes", " ".join(notes)))
        return tuple(out)
