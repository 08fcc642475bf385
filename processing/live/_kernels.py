"""numba kernels of the fast live processors (single-threaded, GIL-free, cached on disk).

Every kernel is ``@njit(cache=True, nogil=True)`` so two Python threads (see :mod:`processing.execution.parallel`) run two of
them on two cores at once; none uses numba's own threading layer (OpenMP pools spinning against each other on two
cores were measured 10x slower). Compilation happens once per machine (disk cache next to this file); call
:func:`processing.warmup.warm_up` early to load them off the live path.

Nothing here validates its input: the callers in :mod:`processing.live.tiles` and :mod:`processing.live.fft_analysis`
do. The tracking kernels are in :mod:`processing.live._tracking_kernels`.
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
                out: np.ndarray) -> int:
    """out[y - y0, j, :] = data[y, j*step : j*step+T] * wx for y in [y0, y1) (out: (y1-y0, n_tiles_x, T) f32).
    Returns the number of non-finite products (NaN/inf pixels inside tiles)."""
    t = wx.size
    bad = 0
    for y in range(y0, y1):
        src = data[y]
        for j in range(n_tiles_x):
            dst = out[y - y0, j]
            seg = src[j * step:j * step + t]
            for k in range(t):
                v = seg[k] * wx[k]
                dst[k] = v
                bad += (v - v) != 0  # NaN or inf
    return bad


@_kernel
def store_ring(rows: np.ndarray, y0: int, ring: np.ndarray) -> None:
    """ring[(y0 + r) % T] = rows[r] (the row-FFT ring buffer of one band: (T, n_tiles_x, Kx) complex64)."""
    t = ring.shape[0]
    for r in range(rows.shape[0]):
        dst = ring[(y0 + r) % t]
        src = rows[r]
        for j in range(rows.shape[1]):
            d = dst[j]
            s = src[j]
            for k in range(rows.shape[2]):
                d[k] = s[k]


@_kernel
def _column_fft(ringf: np.ndarray, j: int, wy_rot: np.ndarray, bitrev: np.ndarray, tw_re: np.ndarray,
                tw_im: np.ndarray, re: np.ndarray, im: np.ndarray) -> None:
    """re + i*im (T, Kx) = FFT along the rows of ring[:, j, :] * wy_rot[:, None] (radix 2/4, T a power of two).

    ringf: the (T, n_x, 2*Kx) float32 view of the complex64 row-FFT ring. Vectorised across the Kx columns.
    """
    t = ringf.shape[0]
    kx = re.shape[1]
    for r in range(t):
        dst = bitrev[r]
        w = wy_rot[r]
        src = ringf[r, j]
        dr = re[dst]
        di = im[dst]
        for k in range(kx):
            dr[k] = src[2 * k] * w
            di[k] = src[2 * k + 1] * w
    for a in range(0, t, 2):  # first stage: twiddle 1
        ar = re[a]
        ai = im[a]
        br = re[a + 1]
        bi = im[a + 1]
        for k in range(kx):
            x = ar[k]
            y = ai[k]
            u = br[k]
            v = bi[k]
            ar[k] = x + u
            ai[k] = y + v
            br[k] = x - u
            bi[k] = y - v
    m = 2  # size of the sub-transforms done so far
    while m < t:
        if 4 * m <= t:  # two radix-2 stages fused (radix 2^2): half the passes over the planes
            sa = t // (2 * m)
            sb = t // (4 * m)
            for start in range(0, t, 4 * m):
                for jj in range(m):
                    war = tw_re[jj * sa]
                    wai = tw_im[jj * sa]
                    wbr = tw_re[jj * sb]
                    wbi = tw_im[jj * sb]
                    wcr = wbi  # w_c = -i * w_b
                    wci = -wbr
                    r0 = re[start + jj]
                    i0 = im[start + jj]
                    r1 = re[start + jj + m]
                    i1 = im[start + jj + m]
                    r2 = re[start + jj + 2 * m]
                    i2 = im[start + jj + 2 * m]
                    r3 = re[start + jj + 3 * m]
                    i3 = im[start + jj + 3 * m]
                    for k in range(kx):
                        x0 = r0[k]
                        y0 = i0[k]
                        x1 = r1[k]
                        y1 = i1[k]
                        x2 = r2[k]
                        y2 = i2[k]
                        x3 = r3[k]
                        y3 = i3[k]
                        tr = war * x1 - wai * y1
                        ti = war * y1 + wai * x1
                        a0r = x0 + tr
                        a0i = y0 + ti
                        a1r = x0 - tr
                        a1i = y0 - ti
                        tr = war * x3 - wai * y3
                        ti = war * y3 + wai * x3
                        a2r = x2 + tr
                        a2i = y2 + ti
                        a3r = x2 - tr
                        a3i = y2 - ti
                        tr = wbr * a2r - wbi * a2i
                        ti = wbr * a2i + wbi * a2r
                        r0[k] = a0r + tr
                        i0[k] = a0i + ti
                        r2[k] = a0r - tr
                        i2[k] = a0i - ti
                        tr = wcr * a3r - wci * a3i
                        ti = wcr * a3i + wci * a3r
                        r1[k] = a1r + tr
                        i1[k] = a1i + ti
                        r3[k] = a1r - tr
                        i3[k] = a1i - ti
            m *= 4
        else:
            s2 = t // (2 * m)
            for start in range(0, t, 2 * m):
                for jj in range(m):
                    wr = tw_re[jj * s2]
                    wi = tw_im[jj * s2]
                    ar = re[start + jj]
                    ai = im[start + jj]
                    br = re[start + jj + m]
                    bi = im[start + jj + m]
                    for k in range(kx):
                        x = br[k]
                        y = bi[k]
                        tr = wr * x - wi * y
                        ti = wr * y + wi * x
                        p = ar[k]
                        q = ai[k]
                        br[k] = p - tr
                        bi[k] = q - ti
                        ar[k] = p + tr
                        ai[k] = q + ti
            m *= 2


@_fast_kernel
def tile_row(ringf: np.ndarray, wy_rot: np.ndarray, bitrev: np.ndarray, tw_re: np.ndarray, tw_im: np.ndarray,
             max_power: np.ndarray, want_peaks: bool, negmask: np.ndarray, gauss: np.ndarray, smooth: bool,
             theta_deg: np.ndarray, spacing_cpp: np.ndarray, strength: np.ndarray, row: int) -> None:
    """Column FFTs and reductions of one row of tiles, from the ring of row spectra.

    ringf: (T, n_x, 2*Kx) float32 view of the (T, n_x, Kx) complex64 ring (rows in ring order); wy_rot: the y
    window rotated to ring order. For each tile j: power |F|^2 of the unshifted half plane (T, Kx); running
    per-pixel maximum into ``max_power`` (T, Kx). If ``want_peaks``: the reference colour-map peak on the
    fftshifted natural-log power: 5-tap Gaussian (``gauss``, scipy 'reflect' borders, axis 0 then 1; float32 sums)
    if ``smooth``, excluded pixels where ``negmask`` (T/2, T) is -inf, first maximum in raster order over rows
    0..T/2-1 -> ``theta_deg[row, j]`` (0..180, counter-clockwise from +x, y up), ``spacing_cpp`` (cycles/px),
    ``strength`` (smoothed log power at the peak); -1 in ``theta_deg`` when every pixel is excluded.
    """
    t = ringf.shape[0]
    n_x = ringf.shape[1]
    kx_n = ringf.shape[2] // 2
    h = t // 2
    nl = h + 2
    re = np.empty((t, kx_n), np.float32)
    im = np.empty((t, kx_n), np.float32)
    power = np.empty((t, kx_n), np.float32)
    plane = np.empty((nl, t), np.float32)
    flat = plane.reshape(nl * t)
    scratch = np.empty(nl * t, np.float32)
    vert = np.empty(t, np.float32)
    hrow = np.empty(t, np.float32)
    colmax = np.empty(t, np.float32)
    colrow = np.empty(t, np.int64)
    w0 = np.float32(gauss[2])
    w1 = np.float32(gauss[1])
    w2 = np.float32(gauss[0])
    for j in range(n_x):
        _column_fft(ringf, j, wy_rot, bitrev, tw_re, tw_im, re, im)
        for ky in range(t):
            rr = re[ky]
            ii = im[ky]
            p_row = power[ky]
            m_row = max_power[ky]
            for k in range(kx_n):
                p = rr[k] * rr[k] + ii[k] * ii[k]
                m = m_row[k]
                m_row[k] = p if p > m else m
                p_row[k] = p if p > FLT_MIN else FLT_MIN
        if not want_peaks:
            continue
        # fftshifted rows 0..h+1: row r <-> ky = (r - h) mod t; column c <-> kx = (c - h) mod t, kx > h mirrored
        for r in range(nl):
            ky = (r - h) % t
            src = power[ky]
            srcm = power[(t - ky) % t]
            dst = plane[r]
            dst[0] = src[h]
            for c in range(1, h):
                dst[c] = srcm[h - c]
            for c in range(h):
                dst[h + c] = src[c]
        log_inplace_f32(flat, scratch)
        for c in range(t):
            colmax[c] = -np.inf
            colrow[c] = -1
        for r in range(h):
            if smooth:
                p0 = plane[r]
                pm1 = plane[r - 1 if r >= 1 else 0]
                pm2 = plane[r - 2 if r >= 2 else 1 - r]
                pp1 = plane[r + 1]
                pp2 = plane[r + 2]
                for c in range(t):  # scipy's symmetric order: centre, +-2 pair, +-1 pair
                    vert[c] = p0[c] * w0 + (pm2[c] + pp2[c]) * w2 + (pm1[c] + pp1[c]) * w1
                hrow[0] = vert[0] * w0 + (vert[1] + vert[2]) * w2 + (vert[0] + vert[1]) * w1
                hrow[1] = vert[1] * w0 + (vert[0] + vert[3]) * w2 + (vert[0] + vert[2]) * w1
                for c in range(t - 4):
                    hrow[c + 2] = vert[c + 2] * w0 + (vert[c] + vert[c + 4]) * w2 + (vert[c + 1] + vert[c + 3]) * w1
                hrow[t - 2] = vert[t - 2] * w0 + (vert[t - 4] + vert[t - 1]) * w2 + (vert[t - 3] + vert[t - 1]) * w1
                hrow[t - 1] = vert[t - 1] * w0 + (vert[t - 3] + vert[t - 2]) * w2 + (vert[t - 2] + vert[t - 1]) * w1
            else:
                src = plane[r]
                for c in range(t):
                    hrow[c] = src[c]
            nm = negmask[r]
            for c in range(t):  # per column: max over rows so far and the first row reaching it
                v = hrow[c] + nm[c]
                gt = v > colmax[c]
                colmax[c] = v if gt else colmax[c]
                colrow[c] = r if gt else colrow[c]
        best = np.float32(-np.inf)
        best_r = -1
        best_c = -1
        for c in range(t):  # raster-order first maximum: highest value, then lowest row, then lowest column
            if colrow[c] >= 0 and (colmax[c] > best or (colmax[c] == best and colrow[c] < best_r)):
                best = colmax[c]
                best_r = colrow[c]
                best_c = c
        if best_r < 0:
            theta_deg[row, j] = -1.0
            spacing_cpp[row, j] = 0.0
            strength[row, j] = 0.0
            continue
        x = np.float64(best_c - h)
        y = np.float64(h - best_r)
        theta_deg[row, j] = np.float32(np.degrees(np.arctan2(y, x)) % 180.0)
        spacing_cpp[row, j] = np.float32(np.hypot(x, y) / t)
        strength[row, j] = best


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
