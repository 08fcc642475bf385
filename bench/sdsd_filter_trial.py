"""Trial (issue 10, session 11): does a wider pre-filter band let SDSD beat frame-0 registration by more? SDSD
averages the noise x noise part of the pair errors over many pairs, frame-0 registration does not, so its best band
might be wider. ``bench_sdsd.scenario`` (linear drift + random walk, 20 x 256^2, 10 counts/px), both methods with
the same low-pass sigma (px), per seed. Run from the repository root:
    nice -n 10 .venv/bin/python bench/sdsd_filter_trial.py 11000 8 0.7,1.2,2.0
Result: bench/results/sdsd_filter_11000.txt and bench/results_sdsd.md (the wider band helps both methods; the
ratio to the best-filtered frame-0 registration stays 0.78-0.96 at the median)."""
from __future__ import annotations

import sys

import numpy as np

sys.path.insert(0, "bench")
sys.path.insert(0, ".")
from bench_sdsd import rms, scenario  # noqa: E402
from processing.alignment.sdsd import align_stack  # noqa: E402


def main() -> None:
    base, n = int(sys.argv[1]), int(sys.argv[2])
    sigmas = [float(x) for x in sys.argv[3].split(",")]
    res: dict[float, dict[str, list[float]]] = {lp: {"sdsd": [], "first": []} for lp in sigmas}
    for s in range(n):
        frames, true, params = scenario(base + s)
        line = [f"{base + s} texture {params['sigma_px']:.1f} px, contrast {params['contrast']:.2f}:"]
        for lp in sigmas:
            a = rms(align_stack(frames, lowpass_sigma_px=lp, drift_prior="off").shifts_px, true)
            b = rms(align_stack(frames, lowpass_sigma_px=lp, reference="first", drift_prior="off").shifts_px, true)
            res[lp]["sdsd"].append(a)
            res[lp]["first"].append(b)
            line.append(f"lowpass {lp}: SDSD {a:.3f} / frame 0 {b:.3f}")
        print(" ".join(line), flush=True)
    best_first = np.min([res[lp]["first"] for lp in sigmas], axis=0)
    for lp in sigmas:
        a, b = np.asarray(res[lp]["sdsd"]), np.asarray(res[lp]["first"])
        r = a / best_first
        print(f"lowpass {lp}: median SDSD {np.median(a):.3f} px, frame 0 {np.median(b):.3f} px; per-seed ratio "
              f"SDSD / frame 0 (same filter) {np.median(a / b):.3f}; SDSD / best-filtered frame 0 median "
              f"{np.median(r):.3f}, <= 0.6 in {int((r <= 0.6).sum())} of {n}")


if __name__ == "__main__":
    main()
