"""Translation registration of two images by normalised cross-correlation (NCC) with a sub-pixel peak fit.

Used by the drift-corrected spectrum imaging (issue 5) to measure how far the reference region moved between two
sub-scans, but generic: any pair of same-size 2-D images.

Conventions
-----------
Arrays are (y, x). A *shift* ``s = (dy, dx)`` in pixels means the content of ``moving`` is the content of
``reference`` displaced by ``s``: ``moving[y, x] ~= reference[y - dy, x - dx]`` (the same sign as
``scipy.ndimage.shift(reference, s)``).

Algorithm
---------
1. :func:`prefilter`: Gaussian low-pass (shot noise) and optional Gaussian high-pass (slow background, contrast
   gradients from beam damage or thickness), as recommended by SDSD / the measurements in
   ``docs/acquisition-reference.md`` §5.2 (pre-filtering gives most of the gain at low dose).
2. :func:`ncc_surface`: the zero-mean NCC over the *overlap* of the two images for every integer shift (Padfield's
   masked NCC computed with six FFT correlations), so values are true correlation coefficients in [-1, 1]
   whatever the shift, unlike a plain FFT correlation that favours zero shift.
3. :func:`register_translation`: integer peak inside ``max_shift_px``, then 1-D parabola through the three values
   around the peak in y and in x, then (``refine_iterations``) resample ``moving`` back by the estimate and fit
   the parabola again around zero, which removes the parabola's bias for sharp peaks.
   ``quality`` = NCC at the peak (1 = identical up to brightness/contrast).
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
import scipy.fft
import scipy.ndimage
from numpy.typing import NDArray

from processing.base import InputError, ParameterError

__all__ = ["RegistrationResult", "prefilter", "ncc_surface", "register_translation", "translation_candidates",
           "shift_image"]

FloatArray = NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class RegistrationResult:
    """Result of :func:`register_translation`.

    shift_px: (dy, dx) displacement of ``moving`` relative to ``reference`` in pixels (sub-pixel).
    quality: normalised cross-correlation at the peak, in [-1, 1].
    overlap_fraction: fraction of the image area shared by the two images at that shift.
    """

    shift_px: tuple[float, float]
    quality: float
    overlap_fraction: float

    def to_dict(self) -> dict[str, typing.Any]:
        return {"shift_px": list(self.shift_px), "quality": self.quality, "overlap_fraction": self.overlap_fraction}


def _as_image(data: typing.Any, what: str) -> FloatArray:
    array = np.asarray(data)
    if np.iscomplexobj(array) or array.ndim != 2:
        raise InputError(f"{what} must be a real 2-D image (H, W); got shape {array.shape}, dtype {array.dtype}. "
                         f"Pass one scan frame.")
    if min(array.shape) < 4:
        raise InputError(f"{what} is {array.shape[0]}x{array.shape[1]} px; registration needs at least 4x4 px. "
                         f"Enlarge the reference region.")
    out = np.asarray(array, dtype=np.float64)
    if not np.isfinite(out).all():
        raise InputError(f"{what} contains NaN/inf values; registration needs finite data. "
                         f"Check the detector or replace invalid pixels first.")
    return out


def prefilter(image: typing.Any, *, lowpass_sigma_px: float = 1.0, highpass_sigma_px: float | None = None,
              ) -> FloatArray:
    """Noise-robust pre-filter: Gaussian low-pass, optional subtraction of a wide Gaussian (high-pass).

    Parameters
    ----------
    image : (H, W) array, any real dtype.
    lowpass_sigma_px : Gaussian sigma in pixels against shot noise; 0 disables.
    highpass_sigma_px : sigma of the background removed (pixels); ``None`` disables. Use a few times the size of
        the features that carry the registration (e.g. 4-10 px).

    Returns
    -------
    (H, W) float64 array.
    """
    data = _as_image(image, "image")
    if lowpass_sigma_px < 0 or (highpass_sigma_px is not None and highpass_sigma_px <= lowpass_sigma_px):
        raise ParameterError(
            f"prefilter needs lowpass_sigma_px >= 0 and highpass_sigma_px > lowpass_sigma_px (or None); got "
            f"{lowpass_sigma_px} and {highpass_sigma_px}. Choose e.g. 1.0 and 8.0.")
    out = scipy.ndimage.gaussian_filter(data, lowpass_sigma_px, mode="nearest") if lowpass_sigma_px > 0 else data
    if highpass_sigma_px is not None:
        out = out - scipy.ndimage.gaussian_filter(data, highpass_sigma_px, mode="nearest")
    return np.asarray(out, dtype=np.float64)


def ncc_surface(reference: typing.Any, moving: typing.Any, *, min_overlap_fraction: float = 0.25,
                ) -> tuple[FloatArray, FloatArray]:
    """NCC over the overlap for every integer shift.

    Parameters
    ----------
    reference, moving : (H, W) arrays of the same shape.
    min_overlap_fraction : shifts whose overlap is smaller than this fraction of H*W get NCC = -1.

    Returns
    -------
    ncc : (2H-1, 2W-1) array; ``ncc[H-1+dy, W-1+dx]`` is the correlation coefficient for shift (dy, dx).
    overlap : (2H-1, 2W-1) array, number of overlapping pixels for each shift.
    """
    a = _as_image(reference, "reference")
    b = _as_image(moving, "moving")
    if a.shape != b.shape:
        raise InputError(f"reference {a.shape} and moving {b.shape} images differ in shape; registration needs "
                         f"two images of the same size (same sub-scan settings).")
    h, w = a.shape
    a = a - a.mean()
    b = b - b.mean()
    shape = (scipy.fft.next_fast_len(2 * h - 1, real=True), scipy.fft.next_fast_len(2 * w - 1, real=True))
    fa, fb = scipy.fft.rfft2(a, shape), scipy.fft.rfft2(b, shape)
    fa2, fb2 = scipy.fft.rfft2(a * a, shape), scipy.fft.rfft2(b * b, shape)
    ones = scipy.fft.rfft2(np.ones_like(a), shape)

    def corr(f_moving: NDArray[np.complex128], f_ref: NDArray[np.complex128]) -> FloatArray:
        # c[s] = sum_x moving(x) ref(x - s), re-ordered so that index (h-1+dy, w-1+dx) holds shift (dy, dx)
        full = scipy.fft.irfft2(f_moving * np.conj(f_ref), shape)
        full = np.roll(full, (h - 1, w - 1), axis=(0, 1))
        return np.asarray(full[:2 * h - 1, :2 * w - 1], dtype=np.float64)

    n = np.rint(corr(ones, ones))
    cab = corr(fb, fa)
    sa, sa2 = corr(ones, fa), corr(ones, fa2)
    sb, sb2 = corr(fb, ones), corr(fb2, ones)
    valid = n >= max(min_overlap_fraction * h * w, 4.0)
    n_safe = np.where(valid, n, 1.0)
    var_a = sa2 - sa * sa / n_safe
    var_b = sb2 - sb * sb / n_safe
    denom = np.sqrt(np.clip(var_a, 0, None) * np.clip(var_b, 0, None))
    scale = max(float(np.sum(a * a)), float(np.sum(b * b)), 1e-300)
    valid &= denom > 1e-9 * scale
    ncc = np.full(n.shape, -1.0)
    ncc[valid] = (cab[valid] - sa[valid] * sb[valid] / n_safe[valid]) / denom[valid]
    return np.clip(ncc, -1.0, 1.0), n


def _parabola_offset(m: float, c: float, p: float) -> float:
    """Vertex offset of the parabola through (-1, m), (0, c), (1, p), clipped to [-0.5, 0.5]."""
    denom = m - 2.0 * c + p
    if denom >= 0:  # not a maximum (flat or convex): stay on the integer peak
        return 0.0
    return float(np.clip(0.5 * (m - p) / denom, -0.5, 0.5))


def _peak(ncc: FloatArray, center: tuple[int, int], max_shift_px: tuple[float, float],
          weight: FloatArray | None = None) -> tuple[int, int]:
    h2, w2 = ncc.shape
    cy, cx = center
    yy = np.abs(np.arange(h2) - cy)[:, None] <= max_shift_px[0]
    xx = np.abs(np.arange(w2) - cx)[None, :] <= max_shift_px[1]
    score = ncc if weight is None else ncc * weight
    masked = np.where(yy & xx, score, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(masked)), ncc.shape)
    return int(iy), int(ix)


def _subpixel(ncc: FloatArray, iy: int, ix: int) -> tuple[float, float]:
    h2, w2 = ncc.shape
    oy = _parabola_offset(ncc[iy - 1, ix], ncc[iy, ix], ncc[iy + 1, ix]) if 0 < iy < h2 - 1 else 0.0
    ox = _parabola_offset(ncc[iy, ix - 1], ncc[iy, ix], ncc[iy, ix + 1]) if 0 < ix < w2 - 1 else 0.0
    return oy, ox


def _candidates(score: FloatArray, center: tuple[int, int], max_shift_px: tuple[float, float], count: int,
                ) -> list[tuple[int, int]]:
    """Integer positions of the ``count`` highest local maxima of ``score`` inside the search window (best first).

    Several candidates matter for periodic specimens: the true peak may fall between two pixels and lose, on the
    integer grid, to a lattice alias that happens to fall on a pixel; the sub-pixel refinement decides.
    """
    h2, w2 = score.shape
    cy, cx = center
    yy = np.abs(np.arange(h2) - cy)[:, None] <= max_shift_px[0]
    xx = np.abs(np.arange(w2) - cx)[None, :] <= max_shift_px[1]
    masked = np.where(yy & xx, score, -np.inf)
    local = (masked == scipy.ndimage.maximum_filter(masked, size=3, mode="constant", cval=-np.inf)) & np.isfinite(masked)
    flat = np.flatnonzero(local)
    if flat.size == 0:
        iy, ix = _peak(score, center, max_shift_px)
        return [(iy, ix)]
    order = flat[np.argsort(masked.reshape(-1)[flat])[::-1]][:max(count, 1)]
    top = masked.reshape(-1)[order[0]]
    out = [(int(i // w2), int(i % w2)) for i in order if masked.reshape(-1)[i] >= top - 0.25]
    return out


def _refine(a: FloatArray, b: FloatArray, dy: float, dx: float, min_overlap_fraction: float,
            ) -> tuple[float, float, float] | None:
    """One resample-and-refit pass around (dy, dx): returns the refined shift and the NCC at it, or None when the
    overlap is too small to refine."""
    h, w = a.shape
    # compare only the interior that the back-shift fills with real data (edge replication biases to 0)
    my, mx = int(np.ceil(abs(dy))) + 2, int(np.ceil(abs(dx))) + 2
    if h - 2 * my < 8 or w - 2 * mx < 8:
        return None
    back = scipy.ndimage.shift(b, (-dy, -dx), order=3, mode="nearest")[my:h - my, mx:w - mx]
    ncc_r, _n = ncc_surface(a[my:h - my, mx:w - mx], back, min_overlap_fraction=min_overlap_fraction)
    hr, wr = back.shape
    ry, rx = _peak(ncc_r, (hr - 1, wr - 1), (1.0, 1.0))
    sy, sx = _subpixel(ncc_r, ry, rx)
    return dy + ry - (hr - 1) + sy, dx + rx - (wr - 1) + sx, float(ncc_r[ry, rx])


def shift_image(image: typing.Any, shift_px: tuple[float, float], *, order: int = 3) -> FloatArray:
    """Resample ``image`` displaced by ``shift_px`` (dy, dx); edges repeat the nearest pixel. (H, W) float64."""
    data = _as_image(image, "image")
    return np.asarray(scipy.ndimage.shift(data, shift_px, order=order, mode="nearest"), dtype=np.float64)


def register_translation(reference: typing.Any, moving: typing.Any, *, lowpass_sigma_px: float = 1.0,
                         highpass_sigma_px: float | None = None, max_shift_px: float | tuple[float, float] | None = None,
                         min_overlap_fraction: float = 0.25, refine_iterations: int = 1,
                         overlap_power: float = 1.0, max_candidates: int = 4) -> RegistrationResult:
    """Measure the sub-pixel translation of ``moving`` relative to ``reference``.

    Parameters
    ----------
    reference, moving : (H, W) images of the same shape (any real dtype).
    lowpass_sigma_px, highpass_sigma_px : pre-filter, see :func:`prefilter` (applied to both images).
    max_shift_px : largest |dy|, |dx| searched (pixels); default half the image size.
    min_overlap_fraction : smallest overlap (fraction of the area) for a shift to be considered.
    refine_iterations : number of resample-and-refit passes after the first sub-pixel estimate (0 = parabola only).
    overlap_power : the integer peak is the maximum of ``NCC * overlap_fraction**overlap_power``: among nearly equal
        matches the one with the larger overlap (the smaller shift) wins. This matters for periodic specimens (a
        crystal lattice gives an NCC peak every lattice period, and a small-overlap peak is favoured by noise);
        0 = plain NCC maximum. The sub-pixel fit and the quality use the plain NCC.
    max_candidates : number of local maxima (within 0.25 of the best score) refined to sub-pixel precision before
        choosing; the winner is the best *refined* NCC times the overlap weight (a true peak between two pixels
        can otherwise lose to a lattice alias that falls on a pixel).

    Returns
    -------
    RegistrationResult with ``shift_px`` (dy, dx) such that ``moving ~= scipy.ndimage.shift(reference, shift_px)``.

    Examples
    --------
    >>> import numpy as np, scipy.ndimage
    >>> ref = scipy.ndimage.gaussian_filter(np.random.default_rng(0).normal(size=(48, 48)), 2)
    >>> mov = scipy.ndimage.shift(ref, (2.3, -1.6), mode="nearest")
    >>> r = register_translation(ref, mov)
    >>> [round(v, 1) for v in r.shift_px], r.quality > 0.95
    ([2.3, -1.6], True)
    """
    if refine_iterations < 0:
        raise ParameterError(f"refine_iterations must be >= 0; got {refine_iterations}.")
    if not 0.0 < min_overlap_fraction <= 1.0:
        raise ParameterError(f"min_overlap_fraction must be in (0, 1]; got {min_overlap_fraction}.")
    a = prefilter(reference, lowpass_sigma_px=lowpass_sigma_px, highpass_sigma_px=highpass_sigma_px)
    b = prefilter(moving, lowpass_sigma_px=lowpass_sigma_px, highpass_sigma_px=highpass_sigma_px)
    h, w = a.shape
    if max_shift_px is None:
        limits = (h / 2.0, w / 2.0)
    elif isinstance(max_shift_px, (int, float)):
        limits = (float(max_shift_px), float(max_shift_px))
    else:
        limits = (float(max_shift_px[0]), float(max_shift_px[1]))
    if min(limits) < 0:
        raise ParameterError(f"max_shift_px must be >= 0; got {max_shift_px}.")
    if overlap_power < 0:
        raise ParameterError(f"overlap_power must be >= 0; got {overlap_power}.")
    found = _refined_candidates(a, b, limits, min_overlap_fraction=min_overlap_fraction,
                                refine_iterations=refine_iterations, overlap_power=overlap_power,
                                max_candidates=max_candidates)
    _score, dy, dx, quality = max(found, key=lambda c: c[0])
    overlap = (1.0 - abs(dy) / h) * (1.0 - abs(dx) / w)
    return RegistrationResult((dy, dx), quality, overlap)


def translation_candidates(reference: typing.Any, moving: typing.Any, *, lowpass_sigma_px: float = 1.0,
                           highpass_sigma_px: float | None = None,
                           max_shift_px: float | tuple[float, float] | None = None,
                           min_overlap_fraction: float = 0.25, refine_iterations: int = 1,
                           max_candidates: int = 12) -> list[RegistrationResult]:
    """Every well-matching translation of ``moving`` relative to ``reference``, best NCC first.

    The local maxima of the NCC surface within 0.25 of the best (up to ``max_candidates``), each refined to
    sub-pixel precision like :func:`register_translation` (plain NCC, no overlap weighting). On a periodic specimen
    these are the lattice aliases of the true shift: a caller that knows where the shift should be (a prediction
    with an uncertainty) tells them apart, or learns that it cannot (several aliases of nearly the same quality
    inside its uncertainty window). Same conventions and parameters as :func:`register_translation`.
    """
    if refine_iterations < 0:
        raise ParameterError(f"refine_iterations must be >= 0; got {refine_iterations}.")
    if not 0.0 < min_overlap_fraction <= 1.0:
        raise ParameterError(f"min_overlap_fraction must be in (0, 1]; got {min_overlap_fraction}.")
    a = prefilter(reference, lowpass_sigma_px=lowpass_sigma_px, highpass_sigma_px=highpass_sigma_px)
    b = prefilter(moving, lowpass_sigma_px=lowpass_sigma_px, highpass_sigma_px=highpass_sigma_px)
    h, w = a.shape
    if max_shift_px is None:
        limits = (h / 2.0, w / 2.0)
    elif isinstance(max_shift_px, (int, float)):
        limits = (float(max_shift_px), float(max_shift_px))
    else:
        limits = (float(max_shift_px[0]), float(max_shift_px[1]))
    if min(limits) < 0:
        raise ParameterError(f"max_shift_px must be >= 0; got {max_shift_px}.")
    found = _refined_candidates(a, b, limits, min_overlap_fraction=min_overlap_fraction,
                                refine_iterations=refine_iterations, overlap_power=0.0,
                                max_candidates=max_candidates)
    out: list[RegistrationResult] = []
    for _score, dy, dx, quality in sorted(found, key=lambda c: -c[3]):
        if any(abs(dy - r.shift_px[0]) < 0.5 and abs(dx - r.shift_px[1]) < 0.5 for r in out):
            continue  # two integer maxima refined onto the same peak
        out.append(RegistrationResult((dy, dx), quality, (1.0 - abs(dy) / h) * (1.0 - abs(dx) / w)))
    return out


def _refined_candidates(a: FloatArray, b: FloatArray, limits: tuple[float, float], *, min_overlap_fraction: float,
                        refine_iterations: int, overlap_power: float, max_candidates: int
                        ) -> list[tuple[float, float, float, float]]:
    """(score, dy, dx, quality) of the refined local maxima of the (overlap-weighted) NCC of prefiltered images."""
    h, w = a.shape
    ncc, n = ncc_surface(a, b, min_overlap_fraction=min_overlap_fraction)
    weight = (n / float(h * w)) ** overlap_power if overlap_power > 0 else np.ones_like(ncc)
    found: list[tuple[float, float, float, float]] = []
    for iy, ix in _candidates(ncc * weight, (h - 1, w - 1), limits, max_candidates):
        oy, ox = _subpixel(ncc, iy, ix)
        dy, dx = iy - (h - 1) + oy, ix - (w - 1) + ox
        quality = float(ncc[iy, ix])
        for _ in range(refine_iterations):
            if quality <= 0:
                break
            refined = _refine(a, b, dy, dx, min_overlap_fraction)
            if refined is None:
                break
            dy, dx, quality = refined
        dy = float(np.clip(dy, -limits[0], limits[0]))
        dx = float(np.clip(dx, -limits[1], limits[1]))
        frac = (1.0 - abs(dy) / h) * (1.0 - abs(dx) / w)
        found.append((quality * frac ** overlap_power, dy, dx, quality))
    return found


def phase_correlation_shift_px(reference: NDArray[np.floating[typing.Any]],
                               moving: NDArray[np.floating[typing.Any]]) -> tuple[float, float]:
    """Translation (dy, dx) in pixels that moves ``moving`` onto ``reference``, by phase correlation.

    Both (H, W) of the same shape. Sub-pixel by a parabola through the correlation peak and its neighbours.
    Fast (a few ms at 512²) and used on the live path (drift-robust live difference); :func:`register_translation`
    is the slower, more accurate and quality-checked registration used for drift correction.
    """
    if reference.shape != moving.shape:
        raise InputError(f"images to register must have the same shape; got {reference.shape} and {moving.shape}.")
    fa = scipy.fft.rfft2(reference - reference.mean(), workers=1)
    fb = scipy.fft.rfft2(moving - moving.mean(), workers=1)
    cross = fa * np.conj(fb)
    cross /= np.maximum(np.abs(cross), 1e-12)
    corr = scipy.fft.irfft2(cross, s=reference.shape, workers=1)
    peak = np.unravel_index(int(np.argmax(corr)), corr.shape)
    shift = []
    for axis, (index, n) in enumerate(zip(peak, corr.shape)):
        before = corr[tuple((index - 1) % n if a == axis else peak[a] for a in range(2))]
        after = corr[tuple((index + 1) % n if a == axis else peak[a] for a in range(2))]
        center = corr[peak]
        denominator = before - 2.0 * center + after
        delta = 0.5 * (before - after) / denominator if denominator != 0 else 0.0
        value = index + float(np.clip(delta, -0.5, 0.5))
        shift.append(value - n if value > n / 2 else value)
    return shift[0], shift[1]
