"""Input checks shared by every decomposition: SI shape, NaN spectra, component counts, negative counts.

Every message says the problem, the value and the remedy (``processing.base.InputError`` / ``ParameterError``).
"""
from __future__ import annotations

import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError

__all__ = ["as_si", "finite_spectra", "check_components", "check_nonnegative", "METHODS"]

METHODS = ("pca", "nmf", "vca")


def as_si(data: typing.Any, *, what: str = "spectrum image") -> NDArray[np.float32]:
    """``data`` as a float32 (ny, nx, n_channels) array (a 2-D (n_spectra, n_channels) array becomes (1, n, c))."""
    array = np.asarray(data)
    if np.iscomplexobj(array) or array.dtype == object or array.dtype.fields is not None:
        raise InputError(f"the {what} has dtype {array.dtype}; expected real counts. Take abs() or the real part.")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise InputError(f"the {what} must be 3-D (y, x, energy); got shape {array.shape}. For a single spectrum "
                         f"there is nothing to decompose; for a 4-D data set pick one energy-loss axis.")
    if min(array.shape) < 1:
        raise InputError(f"the {what} is empty (shape {array.shape}).")
    return np.asarray(array, dtype=np.float32)


def finite_spectra(si: NDArray[np.float32], acquired: NDArray[np.bool_] | None = None
                   ) -> tuple[NDArray[np.bool_], int]:
    """(mask (ny, nx) of spectra that are acquired and entirely finite, number of acquired spectra left out)."""
    finite = np.isfinite(si).all(axis=-1)
    if acquired is not None:
        if acquired.shape != finite.shape:
            raise InputError(f"the acquired mask has shape {acquired.shape}; the SI has {finite.shape} pixels.")
        left_out = int(np.count_nonzero(acquired & ~finite))
        return np.asarray(acquired & finite, bool), left_out
    return np.asarray(finite, bool), int(finite.size - np.count_nonzero(finite))


def check_components(n_components: typing.Any, n_spectra: int, n_channels: int) -> int:
    """``n_components`` as an int in [1, min(n_spectra, n_channels)] or a clear error."""
    try:
        k = int(n_components)
    except (TypeError, ValueError):
        raise ParameterError(f"the number of components must be a whole number; got {n_components!r}.") from None
    if k != n_components or k < 1:
        raise ParameterError(f"the number of components must be a whole number >= 1; got {n_components!r}.")
    limit = min(n_spectra, n_channels)
    if k > limit:
        raise InputError(
            f"cannot extract {k} components from {n_spectra} usable spectra of {n_channels} channels: at most "
            f"{limit}. Ask for fewer components or acquire more spectra (NaN spectra of an aborted SI do not count).")
    return k


def check_nonnegative(spectra: NDArray[np.floating[typing.Any]], *, clip_negative: bool, method: str
                      ) -> tuple[NDArray[np.float32], int]:
    """Return (spectra, number of negative values set to 0) or raise when NMF/VCA abundances would be wrong."""
    negative = int(np.count_nonzero(spectra < 0))
    if negative == 0:
        return np.asarray(spectra, np.float32), 0
    if not clip_negative:
        raise InputError(
            f"{method.upper()} needs non-negative counts; the data has {negative} negative value(s) (minimum "
            f"{float(np.min(spectra)):.3g}), e.g. after background subtraction. Decompose the raw counts, use PCA, "
            f"or pass clip_negative=True to set them to 0 (the result then records how many were clipped).")
    return np.maximum(spectra, 0).astype(np.float32), negative
