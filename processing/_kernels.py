"""numba kernels of the fast live processors (single-threaded, GIL-free, cached on disk).

Every kernel is ``@njit(cache=True, nogil=True)`` so two Python threads (see :mod:`processing.parallel`) run two of
them on two cores at once; none uses numba's own threading layer (OpenMP pools spinning against each other on two
cores were measured 10x slower). Compilation happens once per machine (disk cache next to this file); call
:func:`processing.warmup.warm_up` early to load them off the live path.

Nothing here validates its input: the callers in :mod:`processing.tiles`, :mod:`processing.fft_analysis` and
:mod:`processing.tracking` do.
"""
from __future__ import annotations

import typing

import numba
import numpy as np

_F = typing.TypeVar("_F", bound=typing.Callable[..., typing.Any])


def _kernel(fn: _F) -> _F:
    return typing.cast(_F, numba.njit(cache=True, nogil=True, error_model="numpy")(fn))


def _fast_kernel(fn: _F) -> _F:
    # 'nnan'/'nsz' only (lets LLVM vectorise max reductions): these kernels see no NaN (power is clamped to FLT_MIN
    # before the log). No 'contract'/'arcp': sums must round like scipy.ndimage's.
    return typing.cast(_F, numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"nnan", "nsz"})(fn))


# ----------------------------------------------------------------------------------------------------------------
# float32 natural log, vectorisable (musl logf, < 1 ulp for normal positive input)

_LN2_HI = np.float32(6.9313812256e-01)
_LN2_LO = np.float32(9.0580006145e-06)
_LG1 = np.float32(0.66666662693)
_LG2 = np.float32(0.40000972152)
_LG3 = np.float32(0.28498786688)
_LG4 = np.float32(0.24279078841)
FLT_MIN = np.float32(1.17549435e-38)


@_kernel
def log_inplace_f32(buf: np.ndarray, kbuf: np.ndarray) -> None:
    """Replace the positive normal float32 values of 1-D ``buf`` by their natural log (``kbuf``: scratch, same size)."""
    n = buf.size
    ib = buf.view(np.int32)
    for i in range(n):
        ix = ib[i] + np.int32(0x3F800000 - 0x3F3504F3)
        kbuf[i] = np.float32((ix >> 23) - 0x7F)
        ib[i] = (ix & np.int32(0x007FFFFF)) + np.int32(0x3F3504F3)
    for i in range(n):
        f = buf[i] - np.float32(1.0)
        s = f / (np.float32(2.0) + f)
        z = s * s
        w = z * z
        t1 = w * (_LG2 + w * _LG4)
        t2 = z * (_LG1 + w * _LG3)
        r = t2 + t1
        hfsq = np.float32(0.5) * f * f
        dk = kbuf[i]
        buf[i] = s * (hfsq + r) + dk * _LN2_LO - hfsq + f + dk * _LN2_HI


# ----------------------------------------------------------------------------------------------------------------
# tile engine helpers

@_kernel
def window_rows(data: np.ndarray, y0: int, y1: int, step: int, n_tiles_x: int, wx: np.ndarray,
                out: np.ndarray) -> None:
    """out[y - y0, j, :] = data[y, j*step : j*step+T] * wx for y in [y0, y1) (out: (y1-y0, n_tiles_x, T) f32)."""
    t = wx.size
    for y in range(y0, y1):
        for j in range(n_tiles_x):
            x0 = j * step
            for k in range(t):
                out[y - y0, j, k] = data[y, x0 + k] * wx[k]


@_kernel
def store_ring(rows: np.ndarray, y0: int, ring: np.ndarray) -> None:
    """ring[(y0 + r) % T] = rows[r] (the row-FFT ring buffer of one band: (T, n_tiles_x, Kx) complex64)."""
    t = ring.shape[0]
    for r in range(rows.shape[0]):
        dst = (y0 + r) % t
        for j in range(rows.shape[1]):
            for k in range(rows.shape[2]):
                ring[dst, j, k] = rows[r, j, k]


@_kernel
def gather_tiles(ring: np.ndarray, j0: int, j1: int, wy_rot: np.ndarray, out: np.ndarray) -> None:
    """out[t, r, :] = ring[r, j0 + t, :] * wy_rot[r] (out: (j1-j0, T, Kx) complex64, one contiguous block per tile)."""
    t_size = ring.shape[0]
    kx = ring.shape[2]
    for t in range(j1 - j0):
        for r in range(t_size):
            w = wy_rot[r]
            for k in range(kx):
                out[t, r, k] = ring[r, j0 + t, k] * w


@_kernel
def _sym5(c: float, m1: float, p1: float, m2: float, p2: float, w0: float, w1: float, w2: float) -> np.float32:
    """One output of scipy.ndimage's symmetric 5-tap correlate1d (float64 sums, float32 result)."""
    return np.float32(np.float64(c) * w0 + (np.float64(m2) + np.float64(p2)) * w2
                      + (np.float64(m1) + np.float64(p1)) * w1)


@_fast_kernel
def tile_post(spec: np.ndarray, max_power: np.ndarray, want_peaks: bool, allowed: np.ndarray,
              gauss: np.ndarray, smooth: bool, theta_deg: np.ndarray, spacing_cpp: np.ndarray,
              strength: np.ndarray, row: int, col0: int) -> None:
    """Reduce the half-plane spectra of a run of tiles.

    spec: (n, T, Kx) complex64, Kx = T//2+1, unshifted half-plane of each tile (rows ky = 0..T-1, cols kx = 0..T/2).
    max_power: (T, Kx) float32 running per-pixel maximum of |F|^2 (updated in place).
    If ``want_peaks``: for each tile, the reference colour-map peak search on the fftshifted log-power plane: 5-tap
    Gaussian (weights ``gauss``, 'reflect' borders, axis 0 then axis 1, float64 sums stored as float32) if
    ``smooth``, then the first maximum (raster order) over rows 0..T/2-1 where ``allowed`` (T/2, T) is true;
    results go to ``theta_deg[row, col0 + i]`` (0..180), ``spacing_cpp`` (cycles/px) and ``strength``
    (smoothed log power at the peak).
    """
    n = spec.shape[0]
    t = spec.shape[1]
    kx_n = spec.shape[2]
    h = t // 2
    n_log_rows = h + 2
    power = np.empty((t, kx_n), np.float32)
    plane = np.empty(n_log_rows * t, np.float32)
    scratch = np.empty(n_log_rows * t, np.float32)
    vert = np.empty((h, t), np.float32)
    horiz = np.empty(t, np.float32)
    w0 = gauss[2]
    w1 = gauss[1]
    w2 = gauss[0]
    for i in range(n):
        for ky in range(t):
            for kx in range(kx_n):
                c = spec[i, ky, kx]
                p = c.real * c.real + c.imag * c.imag
                power[ky, kx] = p
                if p > max_power[ky, kx]:
                    max_power[ky, kx] = p
        if not want_peaks:
            continue
        # shifted rows 0..h+1, all columns: row r <-> ky = (r - h) mod t, col c <-> kx = (c - h) mod t
        for r in range(n_log_rows):
            ky = (r - h) % t
            kym = (t - ky) % t
            base = r * t
            # c in 0..h-1 -> kx = c + h (kx >= h): kx == h is in the half plane, others mirrored
            p = power[ky, h]
            plane[base] = p if p > FLT_MIN else FLT_MIN
            for c in range(1, h):
                p = power[kym, h - c]
                plane[base + c] = p if p > FLT_MIN else FLT_MIN
            for c in range(h, t):
                p = power[ky, c - h]
                plane[base + c] = p if p > FLT_MIN else FLT_MIN
        log_inplace_f32(plane, scratch)
        if smooth:
            for r in range(h):
                rm1 = r - 1 if r >= 1 else 0
                rm2 = r - 2 if r >= 2 else 1 - r
                b0 = r * t
                bm1 = rm1 * t
                bm2 = rm2 * t
                bp1 = (r + 1) * t
                bp2 = (r + 2) * t
                for c in range(t):
                    # scipy.ndimage's symmetric correlate1d order: centre, then the +-2 pair, then the +-1 pair
                    acc = (np.float64(plane[b0 + c]) * w0
                           + (np.float64(plane[bm2 + c]) + np.float64(plane[bp2 + c])) * w2
                           + (np.float64(plane[bm1 + c]) + np.float64(plane[bp1 + c])) * w1)
                    vert[r, c] = np.float32(acc)
        else:
            for r in range(h):
                for c in range(t):
                    vert[r, c] = plane[r * t + c]
        best = np.float32(-np.inf)
        best_r = -1
        best_c = -1
        for r in range(h):
            if smooth:
                v = vert[r]
                # borders with scipy 'reflect' (d c b a | a b c d)
                horiz[0] = _sym5(v[0], v[1], v[0], v[2], v[1], w0, w1, w2)
                horiz[1] = _sym5(v[1], v[0], v[2], v[0], v[3], w0, w1, w2)
                for c in range(2, t - 2):
                    horiz[c] = _sym5(v[c], v[c - 1], v[c + 1], v[c - 2], v[c + 2], w0, w1, w2)
                horiz[t - 2] = _sym5(v[t - 2], v[t - 3], v[t - 1], v[t - 4], v[t - 1], w0, w1, w2)
                horiz[t - 1] = _sym5(v[t - 1], v[t - 2], v[t - 1], v[t - 3], v[t - 2], w0, w1, w2)
            else:
                for c in range(t):
                    horiz[c] = vert[r, c]
            # first maximum in raster order among allowed pixels
            row_best = np.float32(-np.inf)
            for c in range(t):
                val = horiz[c] if allowed[r, c] else np.float32(-np.inf)
                row_best = max(row_best, val)
            if row_best > best:
                for c in range(t):
                    if allowed[r, c] and horiz[c] == row_best:
                        best = row_best
                        best_r = r
                        best_c = c
                        break
        if best_r < 0:  # every pixel masked (excluded by parameter validation); marked, turned into NaN by the caller
            theta_deg[row, col0 + i] = -1.0
            spacing_cpp[row, col0 + i] = 0.0
            strength[row, col0 + i] = 0.0
            continue
        x = np.float64(best_c - h)
        y = np.float64(h - best_r)
        theta = np.degrees(np.arctan2(y, x)) % 180.0
        theta_deg[row, col0 + i] = np.float32(theta)
        spacing_cpp[row, col0 + i] = np.float32(np.hypot(x, y) / t)
        strength[row, col0 + i] = best


# ----------------------------------------------------------------------------------------------------------------
# radial profile

@_kernel
def radial_accumulate(spec: np.ndarray, bins: np.ndarray, weights: np.ndarray, sums: np.ndarray,
                      maxima: np.ndarray) -> None:
    """sums[b] += w * |spec|^2 and maxima[b] = max(maxima[b], |spec|^2) over spec (H, n) complex64 with bin table
    ``bins`` (H, n) int32 (-1 = outside the profile) and column weights ``weights`` (n,) float64."""
    for y in range(spec.shape[0]):
        for x in range(spec.shape[1]):
            b = bins[y, x]
            if b < 0:
                continue
            c = spec[y, x]
            p = np.float64(c.real) * c.real + np.float64(c.imag) * c.imag
            sums[b] += p * weights[x]
            if p > maxima[b]:
                maxima[b] = p


# ----------------------------------------------------------------------------------------------------------------
# tracking

@_kernel
def histogram_f32(data: np.ndarray, edges: np.ndarray, counts: np.ndarray) -> None:
    """counts[i] += number of values with edges[i] <= v < edges[i+1] (last bin closed), like numpy.histogram.

    data: (H, W) float32 with every value in [edges[0], edges[-1]]; edges: (n+1,) float32 linearly spaced.
    """
    n = edges.size - 1
    first = edges[0]
    denom = edges[n] - first
    nn = np.float32(n)
    for y in range(data.shape[0]):
        for x in range(data.shape[1]):
            v = data[y, x]
            i = int(((v - first) / denom) * nn)
            if i >= n:
                i = n - 1
            if i < 0:
                i = 0
            while i > 0 and v < edges[i]:
                i -= 1
            while i < n - 1 and v >= edges[i + 1]:
                i += 1
            counts[i] += 1


@_kernel
def region_hull_candidates(labels: np.ndarray, label: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Pixels (y, x) of region ``label`` inside the box that start or end a row or a column run (bbox coordinates),
    i.e. skimage's ``possible_hull``: an (n, 2) int64 array."""
    row_lo = np.full(h, -1, np.int64)
    row_hi = np.full(h, -1, np.int64)
    col_lo = np.full(w, -1, np.int64)
    col_hi = np.full(w, -1, np.int64)
    for y in range(h):
        for x in range(w):
            if labels[y0 + y, x0 + x] == label:
                if row_lo[y] < 0:
                    row_lo[y] = x
                row_hi[y] = x
                if col_lo[x] < 0:
                    col_lo[x] = y
                col_hi[x] = y
    out = np.empty((2 * (h + w), 2), np.int64)
    n = 0
    for y in range(h):
        if row_lo[y] >= 0:
            out[n, 0] = y
            out[n, 1] = row_lo[y]
            n += 1
            out[n, 0] = y
            out[n, 1] = row_hi[y]
            n += 1
    for x in range(w):
        if col_lo[x] >= 0:
            out[n, 0] = col_lo[x]
            out[n, 1] = x
            n += 1
            out[n, 0] = col_hi[x]
            out[n, 1] = x
            n += 1
    return out[:n]


@_kernel
def convex_hull_doubled(points: np.ndarray) -> np.ndarray:
    """Convex hull (counter-clockwise, no collinear points) of pixel edge midpoints, in doubled integer coordinates.

    points: (n, 2) int64 pixel centres (y, x). Each pixel contributes (2y±1, 2x) and (2y, 2x±1) (skimage's
    ``offset_coordinates``). Returns (m, 2) int64 hull vertices (Y, X) = doubled coordinates (Andrew's chain).
    """
    n = points.shape[0]
    pts = np.empty((4 * n, 2), np.int64)
    for i in range(n):
        y = 2 * points[i, 0]
        x = 2 * points[i, 1]
        pts[4 * i, 0] = y - 1
        pts[4 * i, 1] = x
        pts[4 * i + 1, 0] = y + 1
        pts[4 * i + 1, 1] = x
        pts[4 * i + 2, 0] = y
        pts[4 * i + 2, 1] = x - 1
        pts[4 * i + 3, 0] = y
        pts[4 * i + 3, 1] = x + 1
    key = pts[:, 0] * (1 << 32) + pts[:, 1]
    order = np.argsort(key)
    srt = pts[order]
    m = srt.shape[0]
    hull = np.empty((2 * m + 1, 2), np.int64)
    k = 0
    for i in range(m):
        while k >= 2 and ((hull[k - 1, 0] - hull[k - 2, 0]) * (srt[i, 1] - hull[k - 2, 1])
                          - (hull[k - 1, 1] - hull[k - 2, 1]) * (srt[i, 0] - hull[k - 2, 0])) <= 0:
            k -= 1
        hull[k] = srt[i]
        k += 1
    lower = k + 1
    for i in range(m - 2, -1, -1):
        while k >= lower and ((hull[k - 1, 0] - hull[k - 2, 0]) * (srt[i, 1] - hull[k - 2, 1])
                              - (hull[k - 1, 1] - hull[k - 2, 1]) * (srt[i, 0] - hull[k - 2, 0])) <= 0:
            k -= 1
        hull[k] = srt[i]
        k += 1
    return hull[:k - 1]


@_kernel
def count_pixels_in_hull(hull: np.ndarray) -> int:
    """Number of pixel centres (2y, 2x) inside or on the convex polygon ``hull`` (doubled integer coordinates)."""
    m = hull.shape[0]
    y_lo = hull[:, 0].min()
    y_hi = hull[:, 0].max()
    total = 0
    ys = (y_lo + 1) // 2
    ye = y_hi // 2
    for yy in range(ys, ye + 1):
        yd = 2 * yy
        # x-extent of the polygon on the line Y = yd, as exact rationals
        lo_num = np.int64(0)
        lo_den = np.int64(0)
        hi_num = np.int64(0)
        hi_den = np.int64(0)
        first = True
        for e in range(m):
            ay = hull[e, 0]
            ax = hull[e, 1]
            by = hull[(e + 1) % m, 0]
            bx = hull[(e + 1) % m, 1]
            if (ay - yd) * (by - yd) > 0:
                continue
            if ay == by:
                cands_n = (ax, bx)
                cands_d = (np.int64(1), np.int64(1))
            else:
                den = by - ay
                num = ax * den + (yd - ay) * (bx - ax)
                if den < 0:
                    den = -den
                    num = -num
                cands_n = (num, num)
                cands_d = (den, den)
            for q in range(2):
                num = cands_n[q]
                den = cands_d[q]
                if first:
                    lo_num, lo_den, hi_num, hi_den = num, den, num, den
                    first = False
                else:
                    if num * lo_den < lo_num * den:
                        lo_num, lo_den = num, den
                    if num * hi_den > hi_num * den:
                        hi_num, hi_den = num, den
        if first:
            continue
        # integers x with lo <= 2x <= hi
        x_lo = -((-lo_num) // (2 * lo_den))
        x_hi = hi_num // (2 * hi_den)
        if x_hi >= x_lo:
            total += x_hi - x_lo + 1
    return total


@_kernel
def region_image(mask: np.ndarray, labels: np.ndarray, label: int, out: np.ndarray) -> None:
    """out = 0 (background), 1 (other regions after morphology), 2 (the tracked region ``label``); uint8 (H, W)."""
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            if labels[y, x] == label and label > 0:
                out[y, x] = 2
            elif mask[y, x] != 0:
                out[y, x] = 1
            else:
                out[y, x] = 0
