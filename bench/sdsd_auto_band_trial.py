"""Trial (issue 10, a lead, not built into align_stack): the Gaussian low-pass sigma chosen from the stack itself.

    nice -n 10 .venv/bin/python bench/sdsd_auto_band_trial.py BASE_SEED N [lw | 60 | sim-eftem]

``choose`` (not used by the main below, kept for the record): the per-frame power spectrum minus a white noise floor
(median of the 0.4-0.5 cycles/px annulus) as the signal. ``choose_coherent`` (used): the signal common to adjacent
frames, Re(A_i* A_i+1) phase-corrected by the first pass's shifts, and everything else as noise. Both pick, from
CANDIDATES, the low-pass that maximises the generalised-cross-correlation precision figure
(sum k^2 W S)^2 / sum k^2 W^2 (2 S N + N^2), W = band^2 (high-pass 30 px kept), radially binned. Then SDSD and
frame-0 registration run with that sigma and with the default 2 px; RMS px against the truth, frame 0 = 0.
Outputs of session 12: bench/results/sdsd_auto_band_12000_*.txt (guard off). ``SIDELOBE_GUARD=0.5`` (skip a
band whose expected correlation surface has a secondary maximum above 0.5 of the main one) changed nothing on
sim-eftem (26 of 30 still at 0.5 px).
"""
import math
import pathlib
import sys

import numpy as np
import scipy.fft
import scipy.ndimage

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
from processing.alignment.stack_filters import _window
PAIRS = __import__("os").environ.get("COHERENCE_PAIRS", "adjacent")  # "adjacent" or "all"
GUARD = float(__import__("os").environ.get("SIDELOBE_GUARD", "0"))  # 0 = off; else the largest allowed sidelobe
CANDIDATES = (0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0)

def choose_coherent(stack, shifts, sh=30.0, window="tukey", npairs=8, nbins=64):
    """Common signal power from adjacent pairs phase-corrected by their measured shift; the rest is noise."""
    n, h, w = stack.shape
    if PAIRS == "all":
        # pairs spread over every separation, as the all-pairs solve uses them
        allp = [(i, j) for i in range(n) for j in range(i + 1, n)]
        pick = np.unique(np.linspace(0, len(allp) - 1, min(len(allp), 3 * npairs)).round().astype(int))
        pairs = [allp[q] for q in pick]
    else:
        pairs = [(i, i + 1) for i in np.unique(np.linspace(0, n - 2, min(n - 1, npairs)).round().astype(int))]
    win = _window(window, h, w)
    ky = np.fft.fftfreq(h)[:, None]; kx = np.fft.rfftfreq(w)[None, :]
    def spec(i):
        f = stack[i].astype(np.float32); return scipy.fft.rfft2((f - f.mean()) * win, workers=-1)
    p = np.zeros((h, w // 2 + 1)); c = np.zeros_like(p)
    cache = {}
    for i, jj in pairs:
        a = cache.setdefault(i, spec(i)); b = cache.setdefault(jj, spec(jj))
        d = np.asarray(shifts[jj]) - np.asarray(shifts[i])
        # b holds content moved by +d: b ~ a * exp(-2 pi i k.d); undo it
        ph = np.exp(2j * np.pi * (ky * d[0] + kx * d[1]))
        c += np.real(np.conj(a) * b * ph); p += 0.5 * (np.abs(a) ** 2 + np.abs(b) ** 2)
    p /= len(pairs); c /= len(pairs)
    k = np.sqrt(ky ** 2 + kx ** 2)
    cw = np.full(kx.shape, 2.0); cw[0, 0] = 1.0
    bins = np.minimum((k / 0.5 * nbins).astype(int), nbins)
    cnt = np.bincount(bins.ravel(), weights=np.broadcast_to(cw, k.shape).ravel(), minlength=nbins + 1)
    pr = np.bincount(bins.ravel(), weights=(p * cw).ravel(), minlength=nbins + 1) / np.maximum(cnt, 1)
    cr = np.bincount(bins.ravel(), weights=(c * cw).ravel(), minlength=nbins + 1) / np.maximum(cnt, 1)
    kc = (np.arange(nbins + 1) + 0.5) * 0.5 / nbins
    s2 = np.clip(cr, 0.0, None); noise = np.maximum(pr - s2, 1e-12 * pr.max())
    best = None
    k2 = ky ** 2 + kx ** 2
    yy = np.minimum(np.arange(h), h - np.arange(h))[:, None]; xx = np.minimum(np.arange(w), w - np.arange(w))[None, :]
    rr = np.sqrt(yy ** 2 + xx ** 2)
    c2 = np.clip(c, 0.0, None)
    for sl in CANDIDATES:
        b = np.exp(-2 * math.pi ** 2 * sl ** 2 * kc ** 2) - (np.exp(-2 * math.pi ** 2 * sh ** 2 * kc ** 2) if sh else 0)
        W = b ** 2
        num = (cnt * kc ** 2 * W * s2).sum() ** 2
        den = (cnt * kc ** 2 * W ** 2 * (2 * s2 * noise + noise ** 2)).sum()
        j = num / max(den, 1e-300)
        if GUARD:
            # alias risk: the expected correlation surface E(r) of the common signal through this band and the noise
            # of E(0) - E(r); every secondary local maximum must lie GUARD noise sigmas below the main peak
            b2 = np.exp(-2 * math.pi ** 2 * sl ** 2 * k2) - (np.exp(-2 * math.pi ** 2 * sh ** 2 * k2) if sh else 0)
            w2 = b2 ** 2
            ncross = np.maximum(p - c2, 0.0)
            var_k = 2 * c2 * ncross + ncross ** 2
            e = scipy.fft.irfft2(w2 * c2, s=(h, w))
            v = scipy.fft.irfft2(w2 ** 2 * var_k, s=(h, w))
            peaks = (e == scipy.ndimage.maximum_filter(e, size=3, mode="wrap"))
            peaks[0, 0] = False
            if peaks.any():
                margin = e[0, 0] - e[peaks]
                # irfft2 divides by h w: the sums are h w e and h w v
                sd = np.sqrt(np.maximum(2 * (v[0, 0] - v[peaks]), 1e-300) / (h * w))
                if float(np.min(margin / sd)) < GUARD:
                    continue
        if best is None or j > best[1]: best = (sl, j)
    return (best[0] if best else 2.0), None


def choose(stack, sh=30.0, window="tukey", nmax=8, nbins=64):
    n, h, w = stack.shape
    idx = np.unique(np.linspace(0, n - 1, min(n, nmax)).round().astype(int))
    win = _window(window, h, w)
    block = stack[idx].astype(np.float32)
    block = (block - block.mean(axis=(1, 2), keepdims=True)) * win
    p = (np.abs(scipy.fft.rfft2(block, workers=-1)) ** 2).mean(axis=0)
    ky = np.fft.fftfreq(h)[:, None]; kx = np.fft.rfftfreq(w)[None, :]
    k = np.sqrt(ky ** 2 + kx ** 2)
    cw = np.full(kx.shape, 2.0); cw[0, 0] = 1.0
    bins = np.minimum((k / 0.5 * nbins).astype(int), nbins)  # bin nbins = corners beyond 0.5
    cnt = np.bincount(bins.ravel(), weights=np.broadcast_to(cw, k.shape).ravel(), minlength=nbins + 1)
    pr = np.bincount(bins.ravel(), weights=(p * cw).ravel(), minlength=nbins + 1) / np.maximum(cnt, 1)
    kc = (np.arange(nbins + 1) + 0.5) * 0.5 / nbins
    noise = float(np.median(pr[int(0.8 * nbins):nbins]))
    s2 = np.maximum(pr - noise, 0.0)
    best = None; out = {}
    for sl in CANDIDATES:
        b = np.exp(-2 * math.pi ** 2 * sl ** 2 * kc ** 2) - (np.exp(-2 * math.pi ** 2 * sh ** 2 * kc ** 2) if sh else 0)
        W = b ** 2
        num = (cnt * kc ** 2 * W * s2).sum() ** 2
        den = (cnt * kc ** 2 * W ** 2 * (2 * s2 * noise + noise ** 2)).sum()
        j = num / max(den, 1e-300); out[sl] = j
        if best is None or j > best[1]: best = (sl, j)
    return best[0], out

if __name__ == "__main__":
    from bench_sdsd import scenario, rms
    from processing.alignment.sdsd import align_stack
    base, nseeds = int(sys.argv[1]), int(sys.argv[2]); LEVEL = sys.argv[3] if len(sys.argv) > 3 else "lw"
    rows = []
    for seed in range(base, base + nseeds):
        if LEVEL == "lw":
            frames, true, prm = scenario(seed)
        else:
            from bench_sdsd_contrast import scenario as cs
            frames, _c, true = cs(seed, LEVEL if LEVEL == "sim-eftem" else int(LEVEL)); prm = {"sigma_px": 0, "contrast": 0}
        first_pass = align_stack(frames).shifts_px
        sl, _ = choose_coherent(frames, first_pass)
        r = dict(seed=seed, tex=round(prm["sigma_px"], 2), con=round(prm["contrast"], 2), auto=sl)
        for name, kw in (("sdsd2", {}), ("first2", {"reference": "first"})):
            r[name] = rms(align_stack(frames, **kw).shifts_px, true)
        for name, kw in (("sdsdA", {}), ("firstA", {"reference": "first"})):
            r[name] = rms(align_stack(frames, lowpass_sigma_px=sl, **kw).shifts_px, true)
        rows.append(r); print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    a = lambda k: np.array([r[k] for r in rows])
    for k in ("sdsd2", "sdsdA", "first2", "firstA"):
        v = a(k); print(k, "median %.3f p90 %.3f worst %.3f" % (np.median(v), np.percentile(v, 90), v.max()))
    q = a("sdsdA") / a("sdsd2"); print("sdsdA/sdsd2 median %.3f p90 %.3f worst %.3f better %d/%d" % (np.median(q), np.percentile(q, 90), q.max(), (q < 1).sum(), len(q)))
