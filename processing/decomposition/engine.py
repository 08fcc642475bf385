"""One decomposition engine for live and offline use: :class:`Decomposer` and the one-call :func:`decompose`.

A :class:`Decomposer` is built for an SI shape (ny, nx, d). :meth:`Decomposer.ingest` folds in the spectra that
became available (a mask of new pixels; NaN spectra are left out and counted); :meth:`Decomposer.result` returns a
:class:`~processing.decomposition.result.DecompositionResult` of everything so far, ``final=True`` adding the batch
refinement over all ingested spectra (PCA: power iterations + Rayleigh-Ritz, equal to a batch PCA; NMF: batch NMF
from the mini-batch factors; VCA: on the refined PCA subspace). :func:`decompose` feeds an SI section by section
to a Decomposer, so the offline result is computed by exactly the code the live analysis runs.

Every method runs a streaming PCA too: it gives the scree plot and the number of significant components.
"""
from __future__ import annotations

import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError
from processing.decomposition._validate import METHODS, as_si, check_components, check_nonnegative, finite_spectra
from processing.decomposition.nmf import StreamingNMF
from processing.decomposition.pca import PCAModel, StreamingPCA, significant_components
from processing.decomposition.result import DecompositionResult
from processing.decomposition.vca import vca

__all__ = ["Decomposer", "decompose"]

F64 = NDArray[np.float64]


class Decomposer:
    """Incremental decomposition of one SI.

    Parameters
    ----------
    shape : (ny, nx, d)
    method : "pca" | "nmf" | "vca"
    n_components : k (PCA components, NMF components, VCA endmembers)
    poisson : Keenan-Kotula weighting of the PCA (PCA and VCA; NMF uses raw counts)
    clip_negative : NMF/VCA: set negative counts to 0 (counted) instead of refusing them
    energy_offset_eV, energy_scale_eV, pixel_size_nm : calibrations of the outputs
    seed : every random choice (range finder, NMF init, VCA directions)
    """

    def __init__(self, shape: tuple[int, int, int], *, method: str = "pca", n_components: int = 3,
                 poisson: bool = True, clip_negative: bool = False, energy_offset_eV: float = 0.0,
                 energy_scale_eV: float = 1.0, pixel_size_nm: float = 1.0, seed: int = 0) -> None:
        if method not in METHODS:
            raise ParameterError(f"method must be one of {list(METHODS)}; got {method!r}.")
        ny, nx, d = (int(v) for v in shape)
        self.shape = (ny, nx, d)
        self.method = method
        self.n_components = check_components(n_components, 10**12, d)
        self.poisson = bool(poisson)
        self.clip_negative = bool(clip_negative)
        self.energy_offset_eV = float(energy_offset_eV)
        self.energy_scale_eV = float(energy_scale_eV)
        self.pixel_size_nm = float(pixel_size_nm)
        self.seed = int(seed)
        pca_k = max(self.n_components - 1, 1) if method == "vca" else self.n_components
        self.pca = StreamingPCA(d, n_components=pca_k, poisson=self.poisson, seed=seed)
        self.nmf = StreamingNMF(d, n_components=self.n_components, seed=seed,
                                clip_negative=clip_negative) if method == "nmf" else None
        self.ingested = np.zeros((ny, nx), bool)
        #: (ny, nx) pixels whose spectra are in the decomposition
        self.usable = np.zeros((ny, nx), bool)
        self.nan_spectra = 0
        self.negative_values = 0
        self.negatives_clipped = 0
        self._nmf_abundances = np.full((ny, nx, self.n_components), np.nan) if method == "nmf" else None

    def ingest(self, si: NDArray[np.floating[typing.Any]], new: NDArray[np.bool_] | None = None) -> int:
        """Fold in the pixels of ``si`` (ny, nx, d) marked in ``new`` (default: all not yet ingested).

        Pixels with any NaN/inf channel are left out (counted in ``nan_spectra``); returns the spectra added.
        """
        if si.shape != self.shape:
            raise InputError(f"the SI has shape {si.shape}; this decomposition was set up for {self.shape}.")
        candidates = ~self.ingested if new is None else (new & ~self.ingested)
        usable, left_out = finite_spectra(np.asarray(si), candidates)
        self.nan_spectra += left_out
        self.ingested |= candidates
        idx = np.nonzero(usable.reshape(-1))[0]
        if idx.size == 0:
            return 0
        x = np.asarray(si, np.float32).reshape(-1, self.shape[2])[idx]
        if self.method in ("nmf", "vca"):
            x, clipped = check_nonnegative(x, clip_negative=self.clip_negative, method=self.method)
            self.negatives_clipped += clipped
        self.negative_values += int(np.count_nonzero(x < 0))
        self.pca.partial_fit(x)
        if self.nmf is not None and self._nmf_abundances is not None:
            self.nmf.partial_fit(x)
            if self.nmf.fitted:
                self._nmf_abundances.reshape(-1, self.n_components)[idx] = self.nmf.transform(x)
        self.usable |= usable
        return int(idx.size)

    def result(self, si: NDArray[np.floating[typing.Any]], *, final: bool = False,
               reconstruct: bool = False) -> DecompositionResult:
        """The decomposition of the ingested spectra of ``si``; ``final``: batch refinement first."""
        mask = self.usable
        flat = mask.reshape(-1)
        n = int(flat.sum())
        d = self.shape[2]
        check_components(self.n_components, n, d)
        x = np.asarray(si, np.float32).reshape(-1, d)[flat]
        if self.method in ("nmf", "vca") and self.clip_negative:
            x = np.maximum(x, 0)
        notes: list[str] = []
        if self.nan_spectra:
            notes.append(f"{self.nan_spectra} spectra with NaN values (not acquired) were left out.")
        if self.negative_values and not self.negatives_clipped:
            notes.append(f"{self.negative_values} negative count value(s) (read noise or background subtraction)"
                         + ("; the Poisson weighting uses per-spectrum totals and channel means, which are positive."
                            if self.poisson else "."))
        if self.negatives_clipped:
            notes.append(f"{self.negatives_clipped} negative count values were set to 0 before {self.method.upper()}.")
        pca: PCAModel = self.pca.refined_model(x) if final else self.pca.model()
        scree = pca.explained_variance_ratio
        n_sig = significant_components(pca.explained_variance, total_variance=pca.total_variance, n_spectra=n,
                                       n_channels=d)
        ny, nx, _ = self.shape
        k = self.n_components
        maps = np.full((ny * nx, k), np.nan)
        recon_model: typing.Callable[[NDArray[np.float32]], F64]
        if self.method == "pca":
            components = pca.spectra_counts()
            maps[flat] = pca.transform(x, k)
            map_units = "score"

            def recon_model(spectra: NDArray[np.float32]) -> F64:
                return pca.reconstruct(spectra, k)
        elif self.method == "nmf":
            assert self.nmf is not None and self._nmf_abundances is not None
            if final:
                start = vca(x, pca, k, seed=self.seed).components if pca.components.shape[0] >= k - 1 else None
                model = self.nmf.refine(x, init_components=start)
                components, maps[flat] = model.components, model.abundances
                self._nmf_abundances.reshape(-1, k)[flat] = model.abundances
            else:
                components = self.nmf.components
                maps[:] = self._nmf_abundances.reshape(-1, k)
                notes.append("live NMF: the abundances of earlier sections were computed with the components of "
                             "their time; the final refinement recomputes all.")
            map_units = "abundance"
            h = components

            def recon_model(spectra: NDArray[np.float32]) -> F64:
                w = maps[flat] if spectra.shape[0] == n else self.nmf.transform(spectra)  # type: ignore[union-attr]
                return typing.cast(F64, w @ h)
        else:
            v = vca(x, pca, k, seed=self.seed)
            components, maps[flat] = v.components, v.abundances
            map_units = "abundance"
            e = v.components

            def recon_model(spectra: NDArray[np.float32]) -> F64:
                return typing.cast(F64, maps[flat] @ e)
        if n < 50:
            notes.append(f"only {n} spectra: the number of significant components is not reliable yet.")
        if n_sig >= scree.size:
            notes.append(f"all {scree.size} kept components are above the noise floor: there may be more "
                         f"significant components than shown.")
        reconstructed: NDArray[np.float32] | None = None
        if reconstruct:
            flat_si = np.full((ny * nx, d), np.nan, np.float32)
            flat_si[flat] = recon_model(x)
            reconstructed = flat_si.reshape(self.shape)
        return DecompositionResult(
            method=self.method, n_components=k, scree=scree, n_significant=n_sig,
            components=np.asarray(components, np.float64), maps=maps.reshape(ny, nx, k), map_units=map_units,
            energy_offset_eV=self.energy_offset_eV, energy_scale_eV=self.energy_scale_eV,
            pixel_size_nm=self.pixel_size_nm, n_spectra=n, final=final, notes=tuple(notes), pca=pca,
            reconstructed=reconstructed)


def decompose(si: typing.Any, *, method: str = "pca", n_components: int = 3, poisson: bool = True,
              clip_negative: bool = False, energy_offset_eV: float = 0.0, energy_scale_eV: float = 1.0,
              pixel_size_nm: float = 1.0, rows_per_section: int = 4, reconstruct: bool = False,
              seed: int = 0) -> DecompositionResult:
    """Decompose a spectrum image (ny, nx, d) counts; NaN spectra (aborted SI) are left out and reported.

    The SI is fed section by section (``rows_per_section`` rows) to a :class:`Decomposer`, then refined, as the
    live analysis does. ``reconstruct=True`` adds the denoised SI (ny, nx, d), NaN where not usable.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> si = rng.poisson(10.0, (8, 8, 32)).astype(np.float32)
    >>> decompose(si, method="pca", n_components=2).components.shape
    (2, 32)
    """
    data = as_si(si)
    ny, nx, d = data.shape
    usable, _ = finite_spectra(data)
    check_components(n_components, int(usable.sum()), d)
    if int(rows_per_section) != rows_per_section or rows_per_section < 1:
        raise ParameterError(f"rows_per_section must be a whole number >= 1; got {rows_per_section!r}.")
    engine = Decomposer((ny, nx, d), method=method, n_components=n_components, poisson=poisson,
                        clip_negative=clip_negative, energy_offset_eV=energy_offset_eV,
                        energy_scale_eV=energy_scale_eV, pixel_size_nm=pixel_size_nm, seed=seed)
    for start in range(0, ny, int(rows_per_section)):
        section = np.zeros((ny, nx), bool)
        section[start:start + int(rows_per_section)] = True
        engine.ingest(data, section)
    return engine.result(data, final=True, reconstruct=reconstruct)
