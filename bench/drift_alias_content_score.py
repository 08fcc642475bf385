"""Trial (issue 13, session 12), part 2 of 2: does the non-periodic part of the reference scans tell a lattice alias
from the true shift? Each scan captured by ``bench/drift_alias_content_capture.py`` against the first one: the
candidates of ``translation_candidates`` (the aliases), the true one labelled by the simulator's drift; both scans
with the lattice removed (every Bragg spot, a 3 x 3 local maximum of the power above 8 x its median, zeroed, and
DC); the NCC of those "diffuse" parts over the overlap at each candidate. Result on seed 9302 (docs/drift_si.md):
the diffuse NCC at the true shift falls with the distance moved (0.95, 0.91, 0.68, 0.52 at 0.002-0.4 nm; at zero
shift it is 0.14 and -0.10 from the third scan on, so it is the specimen's content, not the scan frame), down to the
aliases' level (0.41-0.50): at the jump (scan 4) 0.52 vs 0.50, no decision.

    .venv/bin/python bench/drift_alias_content_score.py drift_alias_content_SEED.pkl
"""
import math
import pathlib
import pickle
import sys

import numpy as np
import scipy.ndimage
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from processing.alignment.registration import translation_candidates
d = pickle.load(open(sys.argv[1], "rb")); c = d["captured"]
t0 = np.array(c[0]["truth"]); a0 = np.array(c[0]["applied"])
R0 = c[0]["image"]; th = c[0]["rotation"]; px = c[0]["pixel"][0]
def rot(v, s):
    cs, sn = math.cos(s * th), math.sin(s * th)
    return np.array([cs * v[0] + sn * v[1], -sn * v[0] + cs * v[1]])
def notch(img, factor=8.0, radius=1):
    f = np.fft.fft2(img - img.mean())
    p = np.abs(f) ** 2
    med = np.median(p)
    peaks = (p == scipy.ndimage.maximum_filter(p, size=3, mode="wrap")) & (p > factor * med)
    peaks[0, 0] = True
    mask = scipy.ndimage.binary_dilation(peaks, iterations=radius, structure=np.ones((3, 3)), border_value=0)
    f[mask] = 0
    return np.real(np.fft.ifft2(f)), int(peaks.sum())
def shifted(img, s):
    f = np.fft.fft2(img); ky = np.fft.fftfreq(img.shape[0])[:, None]; kx = np.fft.fftfreq(img.shape[1])[None, :]
    return np.real(np.fft.ifft2(f * np.exp(2j * np.pi * (ky * s[0] + kx * s[1]))))
def score(A, B, s):
    # B content moved by +s relative to A: compare A[y,x] with B[y+s]
    Bs = shifted(B, s)
    h, w = A.shape; iy0, iy1 = max(0, int(math.ceil(-s[0]))), min(h, int(math.floor(h - s[0])))
    ix0, ix1 = max(0, int(math.ceil(-s[1]))), min(w, int(math.floor(w - s[1])))
    a = A[iy0:iy1, ix0:ix1]; b = Bs[iy0:iy1, ix0:ix1]
    a = a - a.mean(); b = b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum())), a.size
for sign in (1, -1):
    # convention check on measurement 3 (no alias error)
    r = c[3]; cands = translation_candidates(R0, r["image"], max_candidates=48)
    truth = np.array(r["truth"]) - t0
    best = min(cands, key=lambda q: np.linalg.norm(np.array(r["applied"]) - a0 + rot(np.array(q.shift_px) * px, sign) - truth))
    print("sign", sign, "m3 residual nm", np.round(np.array(r["applied"]) - a0 + rot(np.array(best.shift_px) * px, sign) - truth, 3))
SIGN = int(sys.argv[2]) if len(sys.argv) > 2 else 1
D0, n0 = notch(R0)
print("bragg peaks in R0", n0)
wins = 0; total = 0
for k, r in enumerate(c[1:], 1):
    cands = translation_candidates(R0, r["image"], max_candidates=48)
    truth = np.array(r["truth"]) - t0
    implied = [np.array(r["applied"]) - a0 + rot(np.array(q.shift_px) * px, SIGN) for q in cands]
    errs = [np.linalg.norm(i - truth) for i in implied]
    it = int(np.argmin(errs))
    if errs[it] > 0.05:
        print(k, "truth not among candidates", round(errs[it], 3)); continue
    Dk, _ = notch(r["image"])
    sc = [score(D0, Dk, q.shift_px) for q in cands]
    # only candidates with substantial overlap and near-equal full NCC (the real ambiguity)
    top = max(q.quality for q in cands)
    comp = [j for j, q in enumerate(cands) if q.quality > top - 0.02 and sc[j][1] > 0.4 * R0.size]
    if it not in comp or len(comp) < 2:
        continue
    others = [sc[j][0] for j in comp if j != it]
    total += 1; wins += sc[it][0] > max(others)
    print(k, "true diffuse ncc %.3f (full %.4f)  best other %.3f  n %d  overlap %d" % (sc[it][0], cands[it].quality, max(others), len(comp), sc[it][1]))
print("true alias wins", wins, "of", total)
