"""Assembly of a spectrum image (SI) from sections, and intra-section (shear) drift correction by resampling.

* :class:`SIAssembler` collects sections of rows into an (H, W, E) array with a per-row validity mask, so an
  aborted run still has exactly the rows that were acquired (``valid_rows``) and nothing else.
* :func:`pixel_times_s`: the acquisition time of every pixel of a raster section (row-major, optional flyback).
* :func:`shear_displacement_px`: the residual displacement of every pixel predicted from a drift rate, when the scan
  offset was held constant during the section (the drift inside a section shows as a shear).
* :func:`resample_displacement`: move every pixel back by its displacement (bilinear, vectorised over energy), so
  the intra-section shear is removed.

Sign convention (same as :mod:`processing.spectroscopy.drift`): the drift moves features by ``+d`` in scan coordinates; a pixel
recorded with the scan offset ``c`` shows the specimen point that was at ``position - (d - c)`` in the reference
frame. With ``r = (d - c) / pixel_size`` (pixels, (dy, dx)), the corrected SI is ``out[q] = si[q + r(q)]``.
"""
from __future__ import annotations

import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import InputError, ParameterError

__all__ = ["SIAssembler", "pixel_times_s", "shear_displacement_px", "resample_displacement"]

FloatArray = NDArray[np.float64]


class SIAssembler:
    """Collect (rows, W, E) sections into an (H, W, E) SI; remembers which rows were acquired.

    Parameters
    ----------
    height, width : SI size in pixels. n_channels : energy channels. dtype : storage dtype (float32 default).
    """

    def __init__(self, height: int, width: int, n_channels: int, *, dtype: typing.Any = np.float32) -> None:
        if min(height, width, n_channels) < 1:
            raise ParameterError(f"SI size must be >= 1 in every dimension; got {height}x{width}x{n_channels}.")
        self.data: NDArray[typing.Any] = np.zeros((height, width, n_channels), dtype=dtype)
        #: (H, W) True where the pixel was acquired
        self.valid_pixels: NDArray[np.bool_] = np.zeros((height, width), dtype=bool)

    @property
    def shape(self) -> tuple[int, int, int]:
        return typing.cast(tuple[int, int, int], self.data.shape)

    @property
    def valid_rows(self) -> NDArray[np.bool_]:
        """(H,) True for the rows whose every pixel was acquired."""
        return np.asarray(self.valid_pixels.all(axis=1), dtype=bool)

    @property
    def acquired_rows(self) -> int:
        """Number of complete rows."""
        return int(np.count_nonzero(self.valid_rows))

    @property
    def acquired_pixels(self) -> int:
        return int(np.count_nonzero(self.valid_pixels))

    @property
    def complete(self) -> bool:
        return bool(self.valid_pixels.all())

    def add_rows(self, row0: int, block: typing.Any, *, n_pixels: int | None = None) -> None:
        """Store ``block`` (rows, W, E) (or (rows, W) for a single-channel signal) at rows ``row0..row0+rows``.

        ``n_pixels``: only the first ``n_pixels`` pixels of the block (raster order) were acquired (an aborted
        section); the others are neither copied nor marked valid. Default: all.
        """
        array = np.asarray(block)
        h, w, e = self.shape
        if array.ndim == 2 and e == 1:
            array = array[..., None]
        if array.ndim != 3 or array.shape[1:] != (w, e):
            raise InputError(f"section has shape {array.shape}; expected (rows, {w}, {e}) for this SI.")
        rows = array.shape[0]
        if row0 < 0 or row0 + rows > h:
            raise InputError(f"section rows {row0}..{row0 + rows - 1} fall outside the SI height {h}.")
        count = rows * w if n_pixels is None else int(np.clip(n_pixels, 0, rows * w))
        target = self.data[row0:row0 + rows].reshape(rows * w, e)
        target[:count] = array.reshape(rows * w, e)[:count]
        self.valid_pixels[row0:row0 + rows].reshape(-1)[:count] = True


def pixel_times_s(start_s: float, rows: int, width: int, pixel_time_s: float, *, flyback_s: float = 0.0,
                  ) -> FloatArray:
    """(rows, width) acquisition time of each pixel of a raster section started at ``start_s``.

    Pixel (i, j) is at ``start + i * (width * pixel_time + flyback) + (j + 0.5) * pixel_time``.
    """
    if pixel_time_s <= 0 or rows < 1 or width < 1:
        raise ParameterError(f"need pixel_time_s > 0 and a non-empty section; got {pixel_time_s}, {rows}x{width}.")
    line_s = width * pixel_time_s + flyback_s
    i = np.arange(rows, dtype=np.float64)[:, None]
    j = np.arange(width, dtype=np.float64)[None, :]
    return np.asarray(start_s + i * line_s + (j + 0.5) * pixel_time_s, dtype=np.float64)


def shear_displacement_px(times_s: typing.Any, reference_time_s: typing.Any, rate_nm_per_s: tuple[float, float],
                          pixel_size_nm: tuple[float, float]) -> FloatArray:
    """Residual displacement (…, 2) in pixels, (dy, dx) = rate * (t - t_ref) / pixel size.

    ``reference_time_s`` is the time for which the scan offset of the pixel's section was computed (scalar or
    broadcastable to ``times_s``).
    """
    if pixel_size_nm[0] <= 0 or pixel_size_nm[1] <= 0:
        raise ParameterError(f"pixel_size_nm must be positive; got {pixel_size_nm}.")
    dt = np.asarray(times_s, dtype=np.float64) - np.asarray(reference_time_s, dtype=np.float64)
    return np.stack([dt * rate_nm_per_s[0] / pixel_size_nm[0], dt * rate_nm_per_s[1] / pixel_size_nm[1]], axis=-1)


def resample_displacement(si: typing.Any, displacement_px: typing.Any, *,
                          valid_rows: typing.Any | None = None) -> FloatArray:
    """Remove a known per-pixel displacement from an SI: ``out[y, x] = si[y + dy(y, x), x + dx(y, x)]`` (bilinear).

    Parameters
    ----------
    si : (H, W) image or (H, W, E) spectrum image.
    displacement_px : (H, W, 2) residual displacement (dy, dx) of each pixel (see module docstring).
    valid_rows : optional (H,) bool; sampling is clamped to the valid rows (the rows of an incomplete SI that
        were never acquired are not used and stay zero).

    Returns
    -------
    float64 array of the shape of ``si``.
    """
    data = np.asarray(si, dtype=np.float64)
    squeeze = data.ndim == 2
    if squeeze:
        data = data[..., None]
    if data.ndim != 3:
        raise InputError(f"si must be (H, W) or (H, W, E); got shape {data.shape}.")
    h, w, _e = data.shape
    disp = np.asarray(displacement_px, dtype=np.float64)
    if disp.shape != (h, w, 2) or not np.isfinite(disp).all():
        raise InputError(f"displacement_px must be finite with shape ({h}, {w}, 2); got {disp.shape}.")
    rows = np.ones(h, bool) if valid_rows is None else np.asarray(valid_rows, dtype=bool)
    if rows.shape != (h,):
        raise InputError(f"valid_rows must have shape ({h},); got {rows.shape}.")
    out = np.zeros_like(data)
    if not rows.any():
        return out[..., 0] if squeeze else out
    valid_idx = np.flatnonzero(rows)
    lo, hi = int(valid_idx.min()), int(valid_idx.max())
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    sy = np.clip(yy + disp[..., 0], lo, hi)
    sx = np.clip(xx + disp[..., 1], 0, w - 1)
    y0 = np.clip(np.floor(sy).astype(np.int64), lo, max(hi - 1, lo))
    x0 = np.clip(np.floor(sx).astype(np.int64), 0, max(w - 2, 0))
    y1 = np.minimum(y0 + 1, hi)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = np.clip(sy - y0, 0.0, 1.0)[..., None]
    fx = np.clip(sx - x0, 0.0, 1.0)[..., None]
    out = ((1 - fy) * (1 - fx) * data[y0, x0] + (1 - fy) * fx * data[y0, x1]
           + fy * (1 - fx) * data[y1, x0] + fy * fx * data[y1, x1])
    out[~rows] = 0.0
    result = out[..., 0] if squeeze else out
    return np.asarray(result, dtype=np.float64)


def align_section_energy(spectra: typing.Any, axis: typing.Any, *, width: int, mode: str = "spectrum",
                         search_eV: tuple[float, float] | None = (-5.0, 5.0), correct: bool = True
                         ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ZLP of every spectrum of a section (sub-channel precision) and the spectra aligned on it (gain side kept).

    ``spectra``: (n, E) in raster order (n may stop inside a row: an aborted section). ``mode`` "row" aligns every
    row on its median ZLP. A spectrum without a measurable ZLP is aligned on the section median. Returns
    (aligned (n, E), zlp_eV (n,) NaN where not found, applied shift_eV (n,)). When the ZLP cannot be measured at all
    (e.g. outside the recorded range), nothing is shifted and zlp is all NaN.
    """
    from processing.spectroscopy.spectrum_alignment import align_zlp, zlp_position_eV
    flat = np.asarray(spectra, dtype=np.float64)
    n = flat.shape[0]
    try:
        zlp = np.asarray(zlp_position_eV(flat, axis, search_eV=search_eV), dtype=np.float64)
    except Exception:  # ZLP outside the recorded range: keep the raw data, the caller records why
        zlp = np.full(n, np.nan)
    ok = np.isfinite(zlp)
    if not (correct and ok.any()):
        return flat, zlp, np.zeros(n)
    used = zlp.copy()
    if mode == "row":
        rows_idx = np.arange(n) // max(width, 1)
        for r in np.unique(rows_idx):
            sel = (rows_idx == r) & ok
            if sel.any():
                used[rows_idx == r] = np.median(zlp[sel])
    used[~np.isfinite(used)] = np.median(zlp[ok])
    aligned = np.asarray(align_zlp(flat, axis, zlp_eV=used).aligned, dtype=np.float64)
    return aligned, zlp, -used


def resample_scattered(si: typing.Any, residual_px: typing.Any, valid: typing.Any
                       ) -> tuple[NDArray[typing.Any], FloatArray]:
    """Resample an SI whose pixels were not where they should be, from their true positions.

    Pixel ``q`` (row, col) shows the drift-free content of position ``q - residual_px[q]`` (SI pixels). Every
    valid pixel is placed there and the SI is interpolated (linear, on the Delaunay triangulation of those
    positions; nearest pixel outside their hull) back onto the regular grid, so the sections' offsets and the
    drift inside them are undone without mixing a section's rows with the wrong positions of its neighbours.

    Parameters: si (H, W, E) or (H, W); residual_px (H, W, 2) (dy, dx); valid (H, W) bool (pixels to use).
    Returns (resampled SI, same shape and dtype; invalid pixels unchanged) and ``correction_px`` (H, W, 2): the
    residual interpolated at each output pixel (``out[q] ~= si[q + correction_px[q]]``).
    """
    import scipy.interpolate
    data = np.asarray(si)
    squeeze = data.ndim == 2
    cube = data[..., None] if squeeze else data
    r = np.asarray(residual_px, dtype=np.float64)
    mask = np.asarray(valid, dtype=bool) & np.isfinite(r).all(axis=-1)
    h, w, e = cube.shape
    if r.shape != (h, w, 2) or mask.shape != (h, w):
        raise InputError(f"residual_px {r.shape} and valid {mask.shape} must match the SI ({h}, {w}).")
    correction = np.zeros((h, w, 2))
    out = cube.copy()
    if np.count_nonzero(mask) < 3:
        return (out[..., 0] if squeeze else out), correction
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    points = np.stack([yy[mask] - r[mask][:, 0], xx[mask] - r[mask][:, 1]], axis=1)
    values = np.concatenate([cube[mask].astype(np.float64), r[mask]], axis=1)
    targets = np.stack([yy[mask], xx[mask]], axis=1)
    try:
        interpolated = scipy.interpolate.LinearNDInterpolator(points, values)(targets)
    except Exception:  # degenerate geometry (e.g. a single row): nearest only
        interpolated = np.full((targets.shape[0], values.shape[1]), np.nan)
    missing = ~np.isfinite(interpolated).all(axis=1)
    if missing.any():
        interpolated[missing] = scipy.interpolate.NearestNDInterpolator(points, values)(targets[missing])
    out[mask] = interpolated[:, :e].astype(cube.dtype)
    correction[mask] = interpolated[:, e:]
    return (out[..., 0] if squeeze else out), correction
