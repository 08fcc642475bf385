"""numba kernels of threshold + tracking (:mod:`processing.live.tracking`): histogram, run-length labelling, convex
hulls, painting the label image.

Compiled like every kernel of :mod:`processing.live._kernels` (``njit(cache=True, nogil=True)``, single-threaded);
nothing here validates its input: :mod:`processing.live.tracking` does.
"""
from __future__ import annotations

import numpy as np

from processing.live._kernels import _kernel


@_kernel
def histogram_f32(data: np.ndarray, edges: np.ndarray, counts: np.ndarray) -> None:
    """counts[i] += number of values with edges[i] <= v < edges[i+1] (last bin closed), like numpy.histogram.

    data: (H, W) float32 with every value in [edges[0], edges[-1]]; edges: (n+1,) float32 linearly spaced.
    """
    n = edges.size - 1
    first = edges[0]
    scale = np.float32(n) / (edges[n] - first)  # an estimate: the edge comparisons below make the bin exact
    for y in range(data.shape[0]):
        for x in range(data.shape[1]):
            v = data[y, x]
            i = int((v - first) * scale)
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
def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@_kernel
def label_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          np.ndarray, np.ndarray]:
    """8-connected regions of a uint8 (H, W) mask (nonzero = foreground) from row runs and union-find.

    Returns (run_y, run_x0, run_x1, run_region) per run (int32, x1 inclusive) and per region (numbered in raster
    order of their first pixel, like ``skimage.measure.label``): area (int64), sum_y, sum_x (float64, for the
    centroid), bbox (m, 4) int64 (top, left, bottom, right inclusive).
    """
    h, w = mask.shape
    n = 0
    for y in range(h):
        prev = False
        for x in range(w):
            v = mask[y, x] != 0
            if v and not prev:
                n += 1
            prev = v
    ry = np.empty(n, np.int32)
    rx0 = np.empty(n, np.int32)
    rx1 = np.empty(n, np.int32)
    parent = np.empty(n, np.int32)
    k = 0
    prev_start = 0
    prev_end = 0
    for y in range(h):
        row_start = k
        p = prev_start
        x = 0
        while x < w:
            if mask[y, x] == 0:
                x += 1
                continue
            x0 = x
            while x < w and mask[y, x] != 0:
                x += 1
            ry[k] = y
            rx0[k] = x0
            rx1[k] = x - 1
            parent[k] = k
            while p < prev_end and rx1[p] < x0 - 1:
                p += 1
            q = p
            while q < prev_end and rx0[q] <= x:
                a = _find(parent, k)
                b = _find(parent, q)
                if a < b:
                    parent[b] = a
                elif b < a:
                    parent[a] = b
                q += 1
            k += 1
        prev_start = row_start
        prev_end = k
    region_of_root = np.full(n, -1, np.int32)
    run_region = np.empty(n, np.int32)
    m = 0
    for i in range(n):
        r = _find(parent, i)
        if region_of_root[r] < 0:
            region_of_root[r] = m
            m += 1
        run_region[i] = region_of_root[r]
    area = np.zeros(m, np.int64)
    sum_y = np.zeros(m, np.float64)
    sum_x = np.zeros(m, np.float64)
    bbox = np.empty((m, 4), np.int64)
    bbox[:, 0] = h
    bbox[:, 1] = w
    bbox[:, 2] = -1
    bbox[:, 3] = -1
    for i in range(n):
        g = run_region[i]
        length = rx1[i] - rx0[i] + 1
        area[g] += length
        sum_y[g] += np.float64(ry[i]) * length
        sum_x[g] += (np.float64(rx0[i]) + np.float64(rx1[i])) * 0.5 * length
        bbox[g, 0] = min(bbox[g, 0], ry[i])
        bbox[g, 1] = min(bbox[g, 1], rx0[i])
        bbox[g, 2] = max(bbox[g, 2], ry[i])
        bbox[g, 3] = max(bbox[g, 3], rx1[i])
    return ry, rx0, rx1, run_region, area, sum_y, sum_x, bbox


@_kernel
def region_hull_candidates(ry: np.ndarray, rx0: np.ndarray, rx1: np.ndarray, run_region: np.ndarray, region: int,
                           top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """Pixels (y, x) of ``region`` that start or end a row or a column run (skimage's ``possible_hull``):
    (n, 2) int64 frame coordinates."""
    h = bottom - top + 1
    w = right - left + 1
    row_lo = np.full(h, -1, np.int64)
    row_hi = np.full(h, -1, np.int64)
    col_lo = np.full(w, -1, np.int64)
    col_hi = np.full(w, -1, np.int64)
    for i in range(ry.size):
        if run_region[i] != region:
            continue
        y = ry[i] - top
        a = rx0[i] - left
        b = rx1[i] - left
        if row_lo[y] < 0 or a < row_lo[y]:
            row_lo[y] = a
        if b > row_hi[y]:
            row_hi[y] = b
        for x in range(a, b + 1):
            if col_lo[x] < 0 or y < col_lo[x]:
                col_lo[x] = y
            if y > col_hi[x]:
                col_hi[x] = y
    out = np.empty((2 * (h + w), 2), np.int64)
    n = 0
    for y in range(h):
        if row_lo[y] >= 0:
            out[n, 0] = y + top
            out[n, 1] = row_lo[y] + left
            out[n + 1, 0] = y + top
            out[n + 1, 1] = row_hi[y] + left
            n += 2
    for x in range(w):
        if col_lo[x] >= 0:
            out[n, 0] = col_lo[x] + top
            out[n, 1] = x + left
            out[n + 1, 0] = col_hi[x] + top
            out[n + 1, 1] = x + left
            n += 2
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
def count_pixels_in_hull(hull: np.ndarray) -> np.int64:
    """Number of pixel centres (2y, 2x) inside or on the convex polygon ``hull`` (doubled integer coordinates)."""
    m = hull.shape[0]
    y_lo = hull[:, 0].min()
    y_hi = hull[:, 0].max()
    total = np.int64(0)
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
def paint_runs(ry: np.ndarray, rx0: np.ndarray, rx1: np.ndarray, run_region: np.ndarray, region: int,
               out: np.ndarray) -> None:
    """out[run] = 2 for the runs of ``region``, 1 for the other runs (out: zeroed uint8 (H, W))."""
    for i in range(ry.size):
        v = 2 if run_region[i] == region else 1
        for x in range(rx0[i], rx1[i] + 1):
            out[ry[i], x] = v
