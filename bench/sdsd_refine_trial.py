"""Trial (issue 10): refine SDSD by registering each frame to the aligned average of the others (2 iterations),
on new seeds 9100-9109, theta = 0 and 60 deg (bench_sdsd_contrast scenarios). Run from the repository root:
    nice -n 10 .venv/bin/python bench/sdsd_refine_trial.py
Result in bench/results_sdsd.md (no gain: the refinement keeps e_k and adds the mixed reference's bias)."""
from __future__ import annotations

import sys

import numpy as np

sys.path.insert(0, "bench")
sys.path.insert(0, ".")
from bench_sdsd_contrast import scenario
from bench_sdsd import rms
from processing.alignment.sdsd import align_stack, measure_pairs
from processing.alignment.stack_filters import prefilter_spectra, sdsd_options, validate_stack
from processing.alignment.stack_shift import apply_shifts
opts = sdsd_options()
for level in (0, 60):
    r_sdsd, r_ref, r_first = [], [], []
    for seed in range(9100, 9110):
        noisy, clean, true = scenario(seed, level)
        s = align_stack(noisy).shifts_px
        for _ in range(2):
            aligned = apply_shifts(noisy, s, method="fourier", crop="pad")   # fourier keeps the frame size? pad: larger
            frames = np.nan_to_num(aligned.frames, nan=float(np.nanmean(aligned.frames)))
            total = frames.sum(axis=0)
            new = np.zeros_like(s)
            for k in range(len(noisy)):
                ref = (total - frames[k]) / (len(noisy) - 1)
                spectra = prefilter_spectra(validate_stack(np.stack([ref, frames[k]])), opts)
                d = measure_pairs(spectra, [(0, 1)])[0].shift_px
                new[k] = s[k] + np.asarray(d)
            s = new - new[0]
        r_sdsd.append(rms(align_stack(noisy).shifts_px, true)); r_ref.append(rms(s, true))
        r_first.append(rms(align_stack(noisy, reference="first").shifts_px, true))
    print(level, "sdsd", np.round(np.median(r_sdsd), 3), "refined", np.round(np.median(r_ref), 3), "first", np.round(np.median(r_first), 3),
          "ratio refined/first median", np.round(np.median(np.array(r_ref) / np.array(r_first)), 3))
