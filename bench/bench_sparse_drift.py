"""Sparse scanning under drift (issue 12): element-map error with the drift-corrected SI's correction vs drift-free
vs uncorrected, over drift scenarios drawn from seeds (issue-13 ranges: linear up to 0.5 nm/s, sinusoid up to
0.5 nm per axis with a 10-60 s period, random walk up to 0.02 nm/sqrt(s); no jumps).

    .venv/bin/python bench/bench_sparse_drift.py [--n 10] [--first-seed 0] [--out bench/results_sparse.md]

Per scenario: the two-phase SI (48x48, 1024 channels, 0.5 nm pixels: a 24 nm field), 5 ms dwell per position,
sections of 200 positions (1 s) bracketed by 32x32 reference sub-scans (0.25 nm pixels, 10 us dwell, 11 ms) of
small particles beside the field, registered by :class:`processing.spectroscopy.drift.DriftEstimator` (2 bootstrap
scans 0.3 s apart). Patterns: jittered at 100/50/25/10 % and dynamic at 25 %. Three runs with the same pattern,
timing and dose: drift-free, drift uncorrected, drift corrected. Element maps (Ti, Fe, La) of the PCA-inpainted
SI vs the noise-free SI (as bench_sparse.py); probe residual = RMS distance (SI px) between the pixel a spectrum is
stored at and the sample point it saw (simulator truth). The section "Drift correction" of the output file is
replaced; the rest of the file is kept.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import typing

import numpy as np
import threadpoolctl

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_sparse import element_maps, map_error  # noqa: E402
from instrument_sim.decomposition_truth import two_phase_si  # noqa: E402
from instrument_sim.eels_physics import EnergyAxis as SimAxis  # noqa: E402
from instrument_sim.sparse_scan import (GridSpectrumField, SampleImageField, SimulatedSparseSTEM,  # noqa: E402
                                        drift_scenario, reference_particles)
from processing.sampling import DriftCorrectedAcquisition, dynamic_sampling, inpaint_pca, make_pattern  # noqa: E402
from processing.spectroscopy.spectrum_alignment import EnergyAxis  # noqa: E402

SHAPE = (48, 48)
REF_CENTER_NM = (0.0, 20.0)
DWELL_S = 5e-3
SECTION = 200
CASES = (("jittered", 1.0), ("jittered", 0.5), ("jittered", 0.25), ("jittered", 0.1), ("dynamic", 0.25))
RUNS = ("free", "uncorrected", "corrected")
MARK = "## Drift correction (sparse scan under drift)"


def run_case(sim: typing.Any, seed: int, pattern: str, fraction: float, run: str) -> dict[str, float]:
    drift = None if run == "free" else drift_scenario(seed)
    stem = SimulatedSparseSTEM(GridSpectrumField(sim), SampleImageField(reference_particles(REF_CENTER_NM, seed=seed)),
                               shape_px=SHAPE, pixel_size_nm=sim.pixel_size_nm, reference_center_nm=REF_CENTER_NM,
                               drift=drift, pixel_time_s=DWELL_S, seed=1000 + seed)
    acq = DriftCorrectedAcquisition(stem, section_positions=SECTION, correct_drift=(run != "uncorrected"))
    if pattern == "dynamic":
        positions = dynamic_sampling(acq, SHAPE, fraction=fraction, n_components=2, seed=seed).positions
    else:
        positions = make_pattern(pattern, SHAPE, fraction, seed=seed)
        acq(positions)
    r = acq.result()
    recon = inpaint_pca(r.spectra, r.positions, SHAPE, n_components=2)
    axis = EnergyAxis(offset_eV=sim.energy_offset_eV, scale_eV=sim.energy_scale_eV)
    err = map_error(element_maps(recon.si, axis), element_maps(sim.expected, axis))
    residual = float(np.sqrt(np.mean(np.sum((stem.seen_px() - r.positions) ** 2, axis=1))))
    # the same reconstruction from the noise-free spectra at the points really seen: the drift's effect alone
    seen_nm = np.vstack([scan.seen_nm for scan in stem.scans])
    clean = stem.field.expected_spectra(seen_nm[:, 0], seen_nm[:, 1])
    clean_err = map_error(element_maps(inpaint_pca(clean, r.positions, SHAPE, n_components=2).si, axis),
                          element_maps(sim.expected, axis))
    truth = drift_scenario(seed).offset_nm(r.times_s) if drift is not None else np.zeros((r.times_s.size, 2))
    span_px = float(np.max(np.hypot(*(truth - truth[0]).T))) / sim.pixel_size_nm
    return {"error": err, "clean_error": clean_err, "residual_px": residual, "drift_px": span_px, "time_s": stem.time_s,
            "rejected": float(sum(1 for m in r.measurements if not m.accepted)),
            "reference_s": float(sum(x.t_end_s - x.t_start_s for x in stem.references))}


def stats(values: list[float]) -> str:
    v = np.asarray(values)
    return f"{np.median(v):.3f} / {np.percentile(v, 90):.3f} / {v.max():.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results_sparse.md"))
    args = parser.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + args.n))
    rows: dict[tuple[str, float, str], list[dict[str, float]]] = {}
    t0 = time.perf_counter()
    with threadpoolctl.threadpool_limits(1):
        for seed in seeds:
            sim = two_phase_si(SHAPE, axis=SimAxis(380.0, 0.5, 1024), seed=10 + seed)
            for pattern, fraction in CASES:
                for run in RUNS:
                    rows.setdefault((pattern, fraction, run), []).append(run_case(sim, seed, pattern, fraction, run))
            print(f"seed {seed} done, {time.perf_counter() - t0:.0f} s", flush=True)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "sparse_drift.json").write_text(json.dumps(
        {f"{p} {f} {r}": v for (p, f, r), v in rows.items()}, indent=1))
    lines = [MARK, "",
             f"`.venv/bin/python bench/bench_sparse_drift.py --n {args.n} --first-seed {args.first_seed}`, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.perf_counter() - t0:.0f} s on the shared "
             f"2-core machine (other engineers' jobs running; the figures are errors, not times).", "",
             "Drift drawn per seed over the issue-13 ranges (linear <= 0.5 nm/s, sinusoid <= 0.5 nm per axis, "
             "period 10-60 s, random walk <= 0.02 nm/sqrt(s)); 5 ms dwell, sections of 200 positions (1 s) "
             "bracketed by reference sub-scans registered by the drift-corrected SI's `DriftEstimator`; PCA "
             "inpainting. Each cell: median / 90th pct / worst over the seeds. Ratio = corrected / drift-free "
             "error of the same seed.", "",
             "| pattern | fraction | element-map error: drift-free | uncorrected | corrected | "
             "ratio corrected / free |", "|---|---|---|---|---|---|"]
    for pattern, fraction in CASES:
        free, unc, cor = (rows[(pattern, fraction, r)] for r in RUNS)
        ratio = [c["error"] / f["error"] for c, f in zip(cor, free)]
        lines.append(f"| {pattern} | {100 * fraction:.0f} % | {stats([f['error'] for f in free])} | "
                     f"{stats([u['error'] for u in unc])} | {stats([c['error'] for c in cor])} | {stats(ratio)} |")
    lines += ["", "The drift alone (no counting noise): the same reconstruction from the noise-free spectra at the "
                  "points the probe really saw (simulator truth), and the probe residual (RMS distance, SI pixels, "
                  "between the pixel a spectrum is stored at and the point it saw).", "",
              "| pattern | fraction | drift over the scan (px) | noise-free error: drift-free | uncorrected | "
              "corrected | probe residual (px): uncorrected | corrected |", "|---|---|---|---|---|---|---|---|"]
    for pattern, fraction in CASES:
        free, unc, cor = (rows[(pattern, fraction, r)] for r in RUNS)
        lines.append(f"| {pattern} | {100 * fraction:.0f} % | {stats([c['drift_px'] for c in cor])} | "
                     f"{stats([f['clean_error'] for f in free])} | {stats([u['clean_error'] for u in unc])} | "
                     f"{stats([c['clean_error'] for c in cor])} | {stats([u['residual_px'] for u in unc])} | "
                     f"{stats([c['residual_px'] for c in cor])} |")
    by_run = {run: int(sum(c["rejected"] for (p, f, r), v in rows.items() if r == run for c in v)) for run in RUNS}
    rejected = f"{sum(by_run.values())} ({', '.join(f'{k} {v}' for k, v in by_run.items())})"
    ref_share = [c["reference_s"] / c["time_s"] for v in rows.values() for c in v]
    lines += ["", f"Drift measurements rejected: {rejected}; without correction the reference region "
                  f"can drift beyond the search range (40 % of the sub-scan). Reference scans take "
                  f"{100 * float(np.median(ref_share)):.1f} % of the run time (median; the run includes the 0.6 s "
                  f"bootstrap wait, beam blanked). The spread of the drift-free error over noise realisations of "
                  f"one scenario is about +-15 %: the ratio is within that noise when it is near 1.", ""]
    out = pathlib.Path(args.out)
    text = out.read_text() if out.exists() else ""
    if MARK in text:
        text = text[:text.index(MARK)].rstrip() + "\n"
    out.write_text(text.rstrip() + "\n\n" + "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
