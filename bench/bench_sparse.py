"""Sparse-scanning bench (issue 12): element-map error vs sampling fraction (100/50/25/10 %), random vs jittered vs
line hopping vs dynamic (SLADS-like), PCA-subspace inpainting vs Huber-TV reconstruction; dose and time saved.

    .venv/bin/python bench/bench_sparse.py [--quick] [--out bench/results_sparse.md]

Data: the simulator's two-phase SI (48x48, 1024 channels 380-892 eV), acquired by the simulated sparse scan
(:mod:`instrument_sim.sparse_scan`, 1 ms dwell, 30 us settling per hop). Element maps (Ti L2,3, Fe L2,3, La M4,5)
by background-subtracted edge integration (:func:`processing.spectroscopy.eels_maps.edge_map`) of the
reconstructed SI, compared with the same maps of the noise-free SI (the truth): relative RMS error, median / 90th
pct / worst over seeds. The 100 % raw row is the full raster without any reconstruction (noise only).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import threadpoolctl

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from instrument_sim.decomposition_truth import two_phase_si  # noqa: E402
from instrument_sim.eels_physics import EnergyAxis as SimAxis  # noqa: E402
from instrument_sim.sparse_scan import GridSpectrumField, acquire_positions, raster_time_s  # noqa: E402
from processing.sampling import dynamic_sampling, inpaint_pca, inpaint_tv, make_pattern  # noqa: E402
from processing.spectroscopy.eels_maps import edge_map  # noqa: E402
from processing.spectroscopy.spectrum_alignment import EnergyAxis  # noqa: E402

EDGES = {"Ti": 456.0, "Fe": 708.0, "La": 832.0}
SHAPE = (48, 48)
DWELL_S, SETTLE_S = 1e-3, 30e-6


def element_maps(si: np.ndarray, axis: EnergyAxis) -> dict[str, np.ndarray]:
    return {el: edge_map(si, axis, onset, pre_window_eV=30.0, signal_window_eV=30.0) for el, onset in EDGES.items()}


def map_error(est: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> float:
    """Mean over elements of the relative RMS error."""
    return float(np.mean([np.linalg.norm(est[k] - truth[k]) / np.linalg.norm(truth[k]) for k in truth]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results_sparse.md"))
    args = parser.parse_args()
    seeds = (0, 1) if args.quick else (0, 1, 2, 3)
    fractions = (1.0, 0.5, 0.25, 0.1)
    sim_axis = SimAxis(380.0, 0.5, 1024)
    axis = EnergyAxis(offset_eV=380.0, scale_eV=0.5)
    errors: dict[tuple[str, str, float], list[float]] = {}
    times: dict[tuple[str, float], list[float]] = {}
    t_start = time.perf_counter()
    with threadpoolctl.threadpool_limits(1):
        for seed in seeds:
            sim = two_phase_si(SHAPE, axis=sim_axis, seed=10 + seed)
            truth = element_maps(sim.expected, axis)
            field = GridSpectrumField(sim)
            full = acquire_positions(field, make_pattern("random", SHAPE, 1.0), shape_px=SHAPE,
                                     pixel_size_nm=sim.pixel_size_nm, pixel_time_s=DWELL_S, settle_s=SETTLE_S,
                                     rng=np.random.default_rng(seed))
            errors.setdefault(("raster", "raw", 1.0), []).append(
                map_error(element_maps(full.spectra.reshape(SHAPE + (-1,)), axis), truth))
            for f in fractions:
                for pattern in ("random", "jittered", "line_hopping"):
                    p = make_pattern(pattern, SHAPE, f, seed=seed)
                    scan = acquire_positions(field, p, shape_px=SHAPE, pixel_size_nm=sim.pixel_size_nm,
                                             pixel_time_s=DWELL_S, settle_s=SETTLE_S,
                                             rng=np.random.default_rng(100 + seed))
                    times.setdefault((pattern, f), []).append(scan.scan_time_s)
                    for method, fn in (("pca", inpaint_pca), ("tv", inpaint_tv)):
                        r = fn(scan.spectra, p, SHAPE, n_components=2)
                        errors.setdefault((pattern, method, f), []).append(map_error(element_maps(r.si, axis), truth))
                rng = np.random.default_rng(200 + seed)
                spent = [0.0]

                def acquire(positions: np.ndarray) -> np.ndarray:
                    s = acquire_positions(field, positions, shape_px=SHAPE, pixel_size_nm=sim.pixel_size_nm,
                                          pixel_time_s=DWELL_S, settle_s=SETTLE_S, rng=rng)
                    spent[0] += s.scan_time_s
                    return s.spectra

                d = dynamic_sampling(acquire, SHAPE, fraction=f, n_components=2, seed=seed)
                times.setdefault(("dynamic", f), []).append(spent[0])
                errors.setdefault(("dynamic", "pca", f), []).append(
                    map_error(element_maps(d.reconstruction.si, axis), truth))
                r_tv = inpaint_tv(d.spectra, d.positions, SHAPE, n_components=2)
                errors.setdefault(("dynamic", "tv", f), []).append(map_error(element_maps(r_tv.si, axis), truth))
    raster = raster_time_s(SHAPE, pixel_time_s=DWELL_S)

    def fmt(v: list[float]) -> str:
        a = np.asarray(v)
        return f"{np.median(a):.3f} / {np.percentile(a, 90):.3f} / {a.max():.3f}"

    lines = ["# Sparse scanning bench (issue 12)", "",
             f"`.venv/bin/python bench/bench_sparse.py{' --quick' if args.quick else ''}`, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, seeds {list(seeds)}, "
             f"{time.perf_counter() - t_start:.0f} s on a shared 2-core machine.", "",
             "Element-map error = mean over Ti, Fe, La of ||map(reconstruction) - map(noise-free SI)|| / "
             "||map(noise-free SI)||, median / 90th pct / worst over seeds. Dose = fraction of the raster's "
             f"electrons; time = simulated scan time vs the full raster ({raster:.2f} s at {DWELL_S * 1e3:.0f} ms "
             f"dwell + 30 us flyback/line; each hop adds {SETTLE_S * 1e6:.0f} us settling).", "",
             f"Full raster, raw spectra, no reconstruction: **{fmt(errors[('raster', 'raw', 1.0)])}**", "",
             "| fraction | dose saved | pattern | time saved | error, PCA inpainting | error, Huber-TV |",
             "|---|---|---|---|---|---|"]
    for f in fractions:
        for pattern in ("random", "jittered", "line_hopping", "dynamic"):
            saved = 1 - np.median(times[(pattern, f)]) / raster
            saved_text = f"{saved:.0%}".replace("-0%", "0%")   # negative: hops cost settling time
            lines.append(f"| {f:.0%} | {1 - f:.0%} | {pattern} | {saved_text} | {fmt(errors[(pattern, 'pca', f)])} | "
                         f"{fmt(errors[(pattern, 'tv', f)])} |")
    lines.append("")
    text = "\n".join(lines)
    pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
