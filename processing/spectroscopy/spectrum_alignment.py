"""Energy-drift correction: zero-loss-peak (ZLP) position with sub-channel precision and spectrum alignment.

Spectra are arrays whose **last axis is energy loss**: (E,), (N, E) or an SI (H, W, E). The energy axis is linear:
``energy_eV = offset_eV + scale_eV * channel``. Negative energy loss is the energy-gain side (EEGS peaks at -n*hw),
so the alignment keeps the whole axis (nothing is cropped): every spectrum is resampled onto the *same* axis so
that its ZLP sits at exactly 0 eV; channels that come from outside the recorded range get ``fill_value``.

* :func:`zlp_position_eV`: per spectrum, integer maximum (inside an optional search window), then a weighted
  least-squares parabola fit to ``log(counts)`` over the points above half maximum in ``±fit_half_width`` channels
  (a Gaussian fit; exact for a Gaussian ZLP, robust to shot noise because each point is weighted by its counts).
* :func:`shift_spectra`: sub-channel shift along the last axis (cubic B-spline, linear, or Fourier).
* :func:`align_zlp`: both together; returns the aligned data, measured ZLP positions and applied shifts.
  ``per="spectrum"`` aligns each spectrum on its own ZLP; ``per="row"`` uses the median ZLP of each SI row (one
  value per scan line, more robust at low counts); ``per="global"`` one value for everything.
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
import scipy.ndimage
from numpy.typing import NDArray

from processing.base import InputError, ParameterError

__all__ = ["EnergyAxis", "zlp_position_eV", "shift_spectra", "align_zlp", "AlignmentResult"]

FloatArray = NDArray[np.float64]
ShiftMethod = typing.Literal["cubic", "linear", "fourier"]


@dataclasses.dataclass(frozen=True)
class EnergyAxis:
    """Linear energy-loss axis: ``energy_eV = offset_eV + scale_eV * channel``."""

    offset_eV: float
    scale_eV: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale_eV) and self.scale_eV > 0):
            raise ParameterError(f"energy scale must be a positive number of eV/channel; got {self.scale_eV}. "
                                 f"Check the spectrometer calibration.")

    def channel(self, energy_eV: typing.Any) -> typing.Any:
        return (np.asarray(energy_eV, dtype=np.float64) - self.offset_eV) / self.scale_eV

    def energy(self, channel: typing.Any) -> typing.Any:
        return self.offset_eV + self.scale_eV * np.asarray(channel, dtype=np.float64)


def _spectra(data: typing.Any) -> FloatArray:
    array = np.asarray(data)
    if np.iscomplexobj(array) or array.ndim < 1 or array.shape[-1] < 5:
        raise InputError(f"spectra must be a real array with the energy axis last and at least 5 channels; got "
                         f"shape {array.shape}, dtype {array.dtype}.")
    out = np.asarray(array, dtype=np.float64)
    if not np.isfinite(out).all():
        raise InputError("spectra contain NaN/inf values; replace invalid channels before ZLP alignment.")
    return out


def zlp_position_eV(spectra: typing.Any, axis: EnergyAxis, *, search_eV: tuple[float, float] | None = None,
                    fit_half_width: int = 4) -> FloatArray:
    """ZLP position of every spectrum, in eV, with sub-channel precision.

    Parameters
    ----------
    spectra : (..., E) counts.
    axis : the energy calibration.
    search_eV : (low, high) energy window in which the ZLP maximum is searched; default the whole axis.
        Use it when a gain/loss peak could be higher than the ZLP.
    fit_half_width : half width (channels) of the fit window around the maximum.

    Returns
    -------
    (...) array of ZLP positions in eV (the shape of ``spectra`` without the last axis).
    """
    data = _spectra(spectra)
    n = data.shape[-1]
    if fit_half_width < 1:
        raise ParameterError(f"fit_half_width must be >= 1 channel; got {fit_half_width}.")
    flat = data.reshape(-1, n)
    lo, hi = 0, n
    if search_eV is not None:
        c0, c1 = sorted((float(axis.channel(search_eV[0])), float(axis.channel(search_eV[1]))))
        lo, hi = max(int(np.floor(c0)), 0), min(int(np.ceil(c1)) + 1, n)
        if hi - lo < 3:
            raise ParameterError(f"search window {search_eV} eV covers {max(hi - lo, 0)} channel(s) of the "
                                 f"{axis.energy(0):.2f}..{axis.energy(n - 1):.2f} eV axis; widen it.")
    peak = lo + np.argmax(flat[:, lo:hi], axis=1)
    offsets = np.arange(-fit_half_width, fit_half_width + 1)
    idx = np.clip(peak[:, None] + offsets[None, :], 0, n - 1)
    y = np.take_along_axis(flat, idx, axis=1)
    ymax = np.take_along_axis(flat, peak[:, None], axis=1)
    # points above half maximum, contiguous with the peak, inside the axis
    inside = (peak[:, None] + offsets[None, :] >= 0) & (peak[:, None] + offsets[None, :] <= n - 1)
    w = np.where(inside & (y > 0.5 * ymax) & (y > 0), y, 0.0)
    # walk outwards from the centre and stop at the first point below half maximum on each side
    mid = fit_half_width
    for k in range(1, fit_half_width + 1):
        w[:, mid + k] = np.where(w[:, mid + k - 1] > 0, w[:, mid + k], 0.0)
        w[:, mid - k] = np.where(w[:, mid - k + 1] > 0, w[:, mid - k], 0.0)
    logy = np.log(np.where(w > 0, y, 1.0))
    x = offsets.astype(np.float64)
    # weighted least squares of log y = a + b x + c x^2 with weights w (Caruana / Guo Gaussian fit)
    s = [np.sum(w * x ** k, axis=1) for k in range(5)]
    t = [np.sum(w * logy * x ** k, axis=1) for k in range(3)]
    mat = np.stack([np.stack([s[0], s[1], s[2]], -1), np.stack([s[1], s[2], s[3]], -1),
                    np.stack([s[2], s[3], s[4]], -1)], -2)
    rhs = np.stack(t, -1)
    npts = np.count_nonzero(w, axis=1)
    det = np.linalg.det(mat)
    good = (npts >= 3) & (np.abs(det) > 1e-12 * np.maximum(s[0], 1.0) ** 3)
    sub = np.zeros(len(flat))
    if np.any(good):
        coef = np.linalg.solve(mat[good], rhs[good][..., None])[..., 0]
        b, c = coef[:, 1], coef[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex = np.where(c < 0, -b / (2 * c), 0.0)
        sub[good] = np.clip(np.nan_to_num(vertex), -fit_half_width, fit_half_width)
    # fall back to a 3-point parabola on the counts where the Gaussian fit had too few points (very narrow ZLP)
    bad = ~good
    if np.any(bad):
        p = peak[bad]
        m0 = flat[bad, np.clip(p - 1, 0, n - 1)]
        c0 = flat[bad, p]
        p0 = flat[bad, np.clip(p + 1, 0, n - 1)]
        denom = m0 - 2 * c0 + p0
        with np.errstate(divide="ignore", invalid="ignore"):
            sub[bad] = np.where(denom < 0, np.clip(0.5 * (m0 - p0) / denom, -0.5, 0.5), 0.0)
    positions = axis.energy(peak + sub)
    return np.asarray(positions, dtype=np.float64).reshape(data.shape[:-1])


def shift_spectra(spectra: typing.Any, shift_channels: typing.Any, *, method: ShiftMethod = "cubic",
                  fill_value: float = 0.0) -> FloatArray:
    """Move every spectrum along its last axis by a fractional number of channels.

    ``out[..., k] = in[..., k - shift]`` (positive shift moves features to higher channels). Channels whose source
    lies outside the recorded range are set to ``fill_value``.

    Parameters
    ----------
    spectra : (..., E) array. shift_channels : scalar or array broadcastable to ``spectra.shape[:-1]``.
    method : "cubic" (B-spline, default; preserves peak shapes), "linear" (never negative, slight broadening),
        or "fourier" (band-limited; reflect-padded to limit ringing).

    Returns
    -------
    (..., E) float64 array.
    """
    data = _spectra(spectra)
    n = data.shape[-1]
    shifts = np.broadcast_to(np.asarray(shift_channels, dtype=np.float64), data.shape[:-1]).reshape(-1)
    if not np.isfinite(shifts).all():
        raise InputError("shift_channels contains NaN/inf; pass finite shifts (failed ZLP fits?).")
    flat = data.reshape(-1, n)
    k = np.arange(n, dtype=np.float64)
    src = k[None, :] - shifts[:, None]
    outside = (src < -1e-9) | (src > n - 1 + 1e-9)
    if method == "fourier":
        pad = n // 2
        padded = np.pad(flat, ((0, 0), (pad, pad)), mode="reflect")
        m = padded.shape[1]
        freq = np.fft.rfftfreq(m)
        spec = np.fft.rfft(padded, axis=1) * np.exp(-2j * np.pi * freq[None, :] * shifts[:, None])
        out = np.fft.irfft(spec, m, axis=1)[:, pad:pad + n]
    elif method == "linear":
        i0 = np.clip(np.floor(src).astype(np.int64), 0, n - 2)
        f = np.clip(src - i0, 0.0, 1.0)
        out = (1 - f) * np.take_along_axis(flat, i0, 1) + f * np.take_along_axis(flat, i0 + 1, 1)
    elif method == "cubic":
        coef = scipy.ndimage.spline_filter1d(flat, order=3, axis=1, mode="mirror")
        i1 = np.floor(src).astype(np.int64)
        t = src - i1
        weights = ((1 - t) ** 3 / 6, (3 * t ** 3 - 6 * t ** 2 + 4) / 6, (-3 * t ** 3 + 3 * t ** 2 + 3 * t + 1) / 6,
                   t ** 3 / 6)
        out = np.zeros_like(flat)
        for j, wj in zip(range(-1, 3), weights):
            idx = i1 + j
            idx = np.where(idx < 0, -idx, idx)  # mirror, as in the spline filter
            idx = np.where(idx > n - 1, 2 * (n - 1) - idx, idx)
            out += wj * np.take_along_axis(coef, np.clip(idx, 0, n - 1), 1)
    else:
        raise ParameterError(f"method must be 'cubic', 'linear' or 'fourier'; got {method!r}.")
    out = np.where(outside, fill_value, out)
    return np.asarray(out.reshape(data.shape), dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class AlignmentResult:
    """Result of :func:`align_zlp`.

    aligned: (..., E) spectra with their ZLP at 0 eV (same axis as the input).
    zlp_eV: (...) measured ZLP positions before alignment. shift_eV: (...) energy shift applied to each spectrum
    (= -zlp position used; add it to an energy to go from the raw to the aligned axis).
    """

    aligned: FloatArray
    zlp_eV: FloatArray
    shift_eV: FloatArray


def align_zlp(spectra: typing.Any, axis: EnergyAxis, *, per: typing.Literal["spectrum", "row", "global"] = "spectrum",
              search_eV: tuple[float, float] | None = None, fit_half_width: int = 4,
              method: ShiftMethod = "cubic", fill_value: float = 0.0,
              zlp_eV: typing.Any | None = None) -> AlignmentResult:
    """Align spectra so that the ZLP is at 0 eV, keeping the gain side; record the shifts.

    Parameters
    ----------
    spectra : (E,), (N, E) or (H, W, E) counts.
    axis : energy calibration (must contain 0 eV for the result to show the ZLP).
    per : "spectrum" (each spectrum its own ZLP), "row" (median over the second-last axis, one value per SI row
        / section line; needs ndim >= 2), or "global".
    zlp_eV : pre-measured ZLP positions (shape ``spectra.shape[:-1]``) to use instead of measuring.
    search_eV, fit_half_width : see :func:`zlp_position_eV`. method, fill_value : see :func:`shift_spectra`.
    """
    data = _spectra(spectra)
    measured = (zlp_position_eV(data, axis, search_eV=search_eV, fit_half_width=fit_half_width)
                if zlp_eV is None else np.broadcast_to(np.asarray(zlp_eV, np.float64), data.shape[:-1]).copy())
    if per == "spectrum":
        used = measured
    elif per == "row":
        if data.ndim < 2:
            raise ParameterError("per='row' needs at least a (N, E) array; use per='spectrum' for one spectrum.")
        used = np.broadcast_to(np.median(measured, axis=-1, keepdims=True), measured.shape)
    elif per == "global":
        used = np.full(measured.shape, float(np.median(measured)))
    else:
        raise ParameterError(f"per must be 'spectrum', 'row' or 'global'; got {per!r}.")
    shift_eV = -np.asarray(used, dtype=np.float64)
    aligned = shift_spectra(data, shift_eV / axis.scale_eV, method=method, fill_value=fill_value)
    return AlignmentResult(aligned, np.asarray(measured, dtype=np.float64), shift_eV)
