"""The SDSD low-pass chosen from the stack itself (option ``lowpass_auto``; docs/stack.md, "Low-pass from data").

A fixed Gaussian low-pass (2 px by default) throws away signal on fine textures and keeps noise on coarse ones. Here
the band is chosen from the frames, after a first SDSD pass gave their shifts:

1. **What the pairs share.** For up to ``max_pairs`` pairs spread over the pairs the solve uses (all pairs, the
   band of K neighbours, frame 0, the previous frame), the cross spectrum ``Re(A_i* A_j)`` phase-corrected by the
   first pass's shift is the signal common to the two frames, ``S(k)``; the rest of the frames' power is, for the
   registration, noise ``N(k)`` (shot noise and the structure that changes between them). Averaged over the pairs.
2. **Precision.** Isolated strong peaks of ``S`` (a lattice's Bragg spots: they fix the shift only modulo the period)
   are left out here. For each candidate low-pass (the high-pass kept), the generalised cross-correlation figure
   ``(sum k^2 W S)^2 / sum k^2 W^2 (2 S N + N^2)``, ``W = band^2`` (the pair's cross-spectrum weight), is the
   inverse variance of the peak position up to a constant.
3. **Alias guard.** The expected correlation surface ``E(r)`` of the common signal through that band, and the noise
   of ``E(0) - E(r)``: every secondary local maximum of ``E`` must lie ``guard_sigma`` noise sigmas below the main
   peak, else a periodic specimen's aliases can win the peak search (measured on the simulator's EFTEM perovskite:
   without the guard the precision figure picks 0.5 px there, where the 2 px period's aliases then win and SDSD errs
   1.5x more; with it 29 of 30 series keep 2 px). Near the peak (``NEAR_PX``) the surface is searched on a fine
   grid: a fine lattice let through by a narrow low-pass ripples the peak between the integer samples, and its
   ripple maxima then compete in the sub-pixel search.

The most precise band that passes the guard is chosen, if its figure is at least ``MIN_GAIN`` x the first pass's
band's (else that band stays: a flat figure is noise); if none passes, the first pass's low-pass stays. Pure numpy.
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import scipy.fft
import scipy.ndimage
from numpy.typing import NDArray

from processing.alignment.stack_filters import _window, gaussian_band, parse_region, prepare_frame

if typing.TYPE_CHECKING:
    from processing.alignment.sdsd import SDSDResult

__all__ = ["BandChoice", "LOWPASS_CANDIDATES_PX", "choose_lowpass_sigma", "with_band_choice"]

FloatArray = NDArray[np.float64]

#: low-pass sigmas (px) tried; those >= the high-pass sigma are skipped
LOWPASS_CANDIDATES_PX: tuple[float, ...] = (0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0)

#: the expected correlation surface is also searched for secondary maxima within NEAR_PX of the peak on a grid of
#: NEAR_STEP_PX (a fine lattice's ripple falls between the integer samples)
NEAR_PX = 4.0
NEAR_STEP_PX = 0.2

#: the band changes only when its precision figure is at least MIN_GAIN x the first pass's (a flat figure is noise)
MIN_GAIN = 1.2

#: a frequency whose common power exceeds SPOT_FACTOR x the median power at its radius is a Bragg spot
SPOT_FACTOR = 10.0

#: frame spectra held at once while the pairs are summed (oldest dropped first)
_SPECTRA_KEPT = 8

#: radial bins of the precision figure (0 .. 0.5 cycles/px, plus the corners)
_BINS = 64


@dataclasses.dataclass(frozen=True)
class BandChoice:
    """lowpass_sigma_px : chosen (px). figures : {sigma: (precision figure relative to the chosen, alias margin in
    noise sigmas)} for every candidate tried. pairs : (i, j) pairs measured. note : one line for the result."""

    lowpass_sigma_px: float
    figures: dict[float, tuple[float, float]]
    pairs: tuple[tuple[int, int], ...]
    note: str


def _spread(pairs: typing.Sequence[tuple[int, int]], count: int) -> list[tuple[int, int]]:
    if len(pairs) <= count:
        return list(pairs)
    picks = np.unique(np.linspace(0, len(pairs) - 1, count).round().astype(int))
    return [pairs[int(q)] for q in picks]


def choose_lowpass_sigma(read: typing.Callable[[int], NDArray[np.float32]], n_frames: int,
                         shifts_px: FloatArray, options: typing.Mapping[str, typing.Any], *,
                         max_pairs: int = 24, guard_sigma: float = 5.0,
                         candidates: typing.Sequence[float] = LOWPASS_CANDIDATES_PX) -> BandChoice:
    """The low-pass sigma (px) for SDSD on this stack.

    read(k) : frame k as (H, W) float32 (the whole frame; the ``region`` option crops it here).
    shifts_px : (N, 2) first-pass shifts (content of frame k moved by +shift against frame 0).
    options : :func:`processing.alignment.stack_filters.sdsd_options` (reference, band_k, region, window,
        median_px, edge_filter, lowpass_sigma_px (the fallback), highpass_sigma_px).
    """
    from processing.alignment.sdsd import pair_list
    fallback = float(options["lowpass_sigma_px"])
    sh = float(options["highpass_sigma_px"])
    frame0 = read(0)
    top, left, bottom, right = parse_region(options["region"], (frame0.shape[0], frame0.shape[1]))
    h, w = bottom - top, right - left
    window = _window(str(options["window"]), h, w)
    pairs = _spread(pair_list(n_frames, str(options["reference"]), int(options["band_k"])), max_pairs)
    spectra: dict[int, NDArray[np.complex128]] = {}

    def spectrum(k: int) -> NDArray[np.complex128]:
        # the pairs come ordered by their first frame: a few recent spectra cover the reuse, memory stays bounded
        if k not in spectra:
            if len(spectra) >= _SPECTRA_KEPT:
                del spectra[next(iter(spectra))]
            frame = (frame0 if k == 0 else read(k))[top:bottom, left:right].astype(np.float32)
            spectra[k] = scipy.fft.rfft2(prepare_frame(frame, options, window).astype(np.float64))
        return spectra[k]

    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    power = np.zeros((h, w // 2 + 1))
    common = np.zeros_like(power)
    sign = -1.0 if options.get("inverted_contrast") else 1.0
    for i, j in pairs:
        a, b = spectrum(i), spectrum(j)
        d = np.asarray(shifts_px[j], dtype=np.float64) - np.asarray(shifts_px[i], dtype=np.float64)
        cross = np.real(np.conj(a) * b * np.exp(2j * np.pi * (ky * d[0] + kx * d[1])))
        if sign < 0 and float(cross.sum()) < 0:        # a reversed-contrast pair shares its structure negated
            cross = -cross
        common += cross
        power += 0.5 * (np.abs(a) ** 2 + np.abs(b) ** 2)
    common /= len(pairs)            # unbiased per frequency; clipped only where a power must be >= 0
    power /= len(pairs)
    common_power = np.clip(common, 0.0, None)
    noise = np.maximum(power - common_power, 0.0)
    k2 = ky ** 2 + kx ** 2
    k = np.sqrt(k2)
    half_weights = np.full(kx.shape, 2.0)
    half_weights[0, 0] = 1.0
    weights = np.broadcast_to(half_weights, k.shape)
    bins = np.minimum((k / 0.5 * _BINS).astype(int), _BINS).ravel()
    count = np.bincount(bins, weights=weights.ravel(), minlength=_BINS + 1)
    # the precision figure is for broadband content: isolated strong peaks (a lattice's Bragg spots) measure the
    # shift only modulo the period, which the peak search cannot exploit (measured: a 2.4 px lattice let through a
    # 1 px low-pass triples the figure and worsens the pair errors, 0.78 vs 0.42 px RMS); they are left out of it
    # (not out of the alias guard below)
    median_power = np.asarray([np.median(power.ravel()[bins == b]) if np.any(bins == b) else 0.0
                               for b in range(_BINS + 1)])
    spots = (common.ravel() > SPOT_FACTOR * median_power[bins]).reshape(common.shape)
    broadband = np.where(spots, 0.0, common)
    keep = np.where(spots, 0.0, 1.0)
    count_bb = np.bincount(bins, weights=(weights * keep).ravel(), minlength=_BINS + 1)
    s_r = np.clip(np.bincount(bins, weights=(broadband * weights).ravel(), minlength=_BINS + 1) /
                  np.maximum(count_bb, 1), 0.0, None)
    n_r = np.bincount(bins, weights=(noise * weights * keep).ravel(), minlength=_BINS + 1) / np.maximum(count_bb, 1)
    k_r = (np.arange(_BINS + 1) + 0.5) * 0.5 / _BINS
    var_k = 2 * common_power * noise + noise ** 2
    offsets = np.arange(-NEAR_PX, NEAR_PX + NEAR_STEP_PX / 2, NEAR_STEP_PX)
    centre = int(np.argmin(np.abs(offsets)))
    zoom_y = np.exp(2j * np.pi * offsets[:, None] * np.fft.fftfreq(h)[None, :])          # (G, H)
    zoom_x = np.exp(2j * np.pi * offsets[:, None] * np.fft.rfftfreq(w)[None, :]) * half_weights  # (G, W/2+1)
    figures: dict[float, tuple[float, float]] = {}
    best: tuple[float, float] | None = None
    for sigma in candidates:
        if sh > 0 and sigma >= sh:
            continue
        band_r = gaussian_band(k_r ** 2, sigma, sh) ** 2
        info = float((count_bb * k_r ** 2 * band_r * s_r).sum() ** 2 /
                     max(float((count_bb * k_r ** 2 * band_r ** 2 * (2 * s_r * n_r + n_r ** 2)).sum()), 1e-300))
        band2 = gaussian_band(k2, sigma, sh) ** 2
        surface = scipy.fft.irfft2(band2 * common, s=(h, w))
        spread = scipy.fft.irfft2(band2 ** 2 * var_k, s=(h, w))
        peaks = surface == scipy.ndimage.maximum_filter(surface, size=3, mode="wrap")
        peaks[0, 0] = False
        if peaks.any():
            # irfft2 divides by H W: the sums over frequencies are H W surface and H W spread
            sd = np.sqrt(np.maximum(2.0 * (spread[0, 0] - spread[peaks]), 1e-300) / (h * w))
            margin = float(np.min((surface[0, 0] - surface[peaks]) / sd))
        else:
            margin = math.inf
        # near the peak the integer grid cannot see a fine lattice's ripple (a 2.4 px period through a 1 px
        # low-pass: pair errors 0.78 vs 0.42 px RMS, as the ripple maxima compete): the same test on a fine grid
        near_e = _zoom(band2 * common, zoom_y, zoom_x) / (h * w)
        near_v = _zoom(band2 ** 2 * var_k, zoom_y, zoom_x) / (h * w)
        near_peaks = near_e == scipy.ndimage.maximum_filter(near_e, size=3, mode="nearest")
        near_peaks[centre, centre] = False
        near_peaks[[0, -1], :] = False
        near_peaks[:, [0, -1]] = False
        if near_peaks.any():
            sd = np.sqrt(np.maximum(2.0 * (near_v[centre, centre] - near_v[near_peaks]), 1e-300) / (h * w))
            margin = min(margin, float(np.min((near_e[centre, centre] - near_e[near_peaks]) / sd)))
        figures[sigma] = (info, margin)
        if margin >= guard_sigma and (best is None or info > best[1]):
            best = (sigma, info)
    kept = figures.get(fallback)
    if best is not None and kept is not None and kept[1] >= guard_sigma and best[1] < MIN_GAIN * kept[0]:
        best = (fallback, kept[0])          # not worth a change: the figure is too flat around the first pass's band
    if best is None:
        note = (f"low-pass from data: no band kept periodic (lattice) aliases {guard_sigma:g} sigma below the "
                f"true peak; the low-pass stays {fallback:g} px")
        chosen = fallback
    else:
        chosen = best[0]
        note = (f"low-pass from data: {chosen:g} px (first pass at {fallback:g} px; alias margin "
                f"{figures[chosen][1]:.0f} sigma; {len(pairs)} pairs)")
    top_info = max((f[0] for f in figures.values()), default=1.0) or 1.0
    relative = {s: (f[0] / top_info, f[1]) for s, f in figures.items()}
    return BandChoice(lowpass_sigma_px=float(chosen), figures=relative, pairs=tuple(pairs), note=note)


def _zoom(half_spectrum: FloatArray, zoom_y: NDArray[np.complex128], zoom_x: NDArray[np.complex128]) -> FloatArray:
    """sum over the full plane of a real, symmetric spectrum given on its rfft half (H, W/2+1) times
    exp(2 pi i k.r), at the grid r = (offsets_y, offsets_x) of ``zoom_y`` (G, H) and ``zoom_x`` (G, W/2+1, the half
    plane's column weights folded in): (G, G)."""
    return np.asarray(np.real(zoom_y @ half_spectrum @ zoom_x.T), dtype=np.float64)


def with_band_choice(run: typing.Callable[[dict[str, typing.Any]], "SDSDResult"],
                     read: typing.Callable[[int], NDArray[np.float32]], n: int,
                     opts: dict[str, typing.Any]) -> "SDSDResult":
    """``run(opts)``, or with ``lowpass_auto``: a first pass at ``lowpass_sigma_px``, the low-pass chosen from the
    stack (:func:`processing.alignment.stack_band.choose_lowpass_sigma`, reading frames with ``read(k)``), and a
    second pass with it when it differs; the choice is the result's first note."""
    if not opts.get("lowpass_auto"):
        return run(opts)
    first_opts = {**opts, "lowpass_auto": False}
    first = run(first_opts)
    choice = choose_lowpass_sigma(read, n, first.shifts_px, first_opts)
    result = first if choice.lowpass_sigma_px == float(opts["lowpass_sigma_px"]) else \
        run({**first_opts, "lowpass_sigma_px": choice.lowpass_sigma_px})
    return dataclasses.replace(result, notes=(choice.note,) + tuple(result.notes))
