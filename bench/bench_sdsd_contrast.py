"""SDSD vs frame-0 registration vs HyperSpy as the contrast changes along the series (issue 10, proof 1).

    nice -n 10 .venv/bin/python bench/bench_sdsd_contrast.py [--seeds 30] [--base-seed 9000] [--no-hyperspy]

Series: 20 frames of 256^2 px, 10 counts/px/frame (Poisson), linear drift 0.2-1.5 px/frame + random walk
0.1-0.6 px/frame, contrast 0.1-0.4, texture 2-5 px (the distribution of ``bench_sdsd.py``), and the structure
turning along the series by an angle ``theta``: frame k shows ``cos(phi_k) A + sin(phi_k) B`` of two independent
textures, ``phi_k = theta k / (N - 1)``, so the noise-free correlation of frame 0 with frame k is ``cos(phi_k)`` and
neighbours always correlate ``cos(theta / 19)``. Levels: theta = 0 (no change), 30 deg (end correlation 0.87),
60 deg (0.5: what the simulator's energy filter gives across Sc L2,3 and O K, see ``--calibrate``), 90 deg (0: the
last frame shares nothing with the first), 120 deg (-0.5: contrast reversed; both methods with
``inverted_contrast=True``). Plus "sim-eftem": the simulator's own energy-filtered perovskite
(:class:`instrument_sim.energy_filter.FilteredView`, 0.2 nm/px) 370-560 eV, slit 10 eV, every slice scaled to 10
counts/px, the same drift law.

Methods (all with the same pre-filter, correlator, sub-pixel peak and pre-shift passes, defaults of
:func:`processing.alignment.sdsd.align_stack`; only the pair list / weights differ):

* ``sdsd``: all pairs, inverse-variance weights (the default);
* ``banded``: K = 5;
* ``first``: every frame registered to frame 0 (``reference="first"``): the baseline of the issue;
* ``floor``: not a method but the limit of any pair-based estimate: each noisy frame registered to its own
  noise-free version gives its frame-specific error e_k (the part of every pair error that involves frame k,
  first order in its noise); ``e_k - e_0`` is what is left when all pair-specific errors (noise x noise, structure
  change) are averaged away. RMS over frames, frame-0 referenced;
* ``sdsd_clean``: SDSD on the noise-free frames: the error from the structure change alone (a pair of frames whose
  structure differs correlates with a bias, which no noise averaging removes);
* ``hyperspy``: ``estimate_shift2D(reference="stat", sub_pixel_factor=20)`` with Hanning + median + Sobel, in
  ``.venv-bench``.

Errors: RMS over frames of |estimated - true| px with frame 0 = 0 for both (frame-0 referenced). Figures per level:
median / 90th percentile / worst over seeds, pooled RMS, and the per-scenario ratio SDSD / first.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import typing

import numpy as np
import scipy.ndimage

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from processing.alignment.sdsd import align_stack, measure_pairs  # noqa: E402
from processing.alignment.stack_filters import prefilter_spectra, sdsd_options, validate_stack  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from bench_sdsd import BENCH_PYTHON, HYPERSPY_SCRIPT, rms  # noqa: E402

LEVELS: tuple[typing.Any, ...] = (0, 30, 60, 90, 120, "sim-eftem")


def _drift(rng: np.random.Generator, n: int) -> np.ndarray:
    speed = rng.uniform(0.2, 1.5)
    angle = rng.uniform(0, 2 * np.pi)
    walk = rng.uniform(0.1, 0.6)
    true = np.arange(n)[:, None] * speed * np.array([np.sin(angle), np.cos(angle)])
    true = true + np.cumsum(rng.normal(0, walk, (n, 2)), axis=0)
    return true - true[0]


def scenario(seed: int, level: typing.Any, n: int = 20, size: int = 256, dose: float = 10.0,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(noisy frames (n, size, size) float32, clean frames (expected counts), true shifts (n, 2) px)."""
    rng = np.random.default_rng(seed)
    pad = 64
    if level == "sim-eftem":
        from instrument_sim.energy_filter import EnergyFilteredSpecimen, FilteredView
        from instrument_sim.samples import PerovskiteSample
        view = FilteredView(EnergyFilteredSpecimen(PerovskiteSample(seed=int(seed))), (size, size), 0.2)
        true = _drift(rng, n)
        energies = np.linspace(370.0, 560.0, n)
        origin = rng.uniform(0, 400, 2)
        clean = []
        for e, s in zip(energies, true):
            # content offset in nm: frame content displaced by +s px
            image = view.image(tuple((origin + s) * 0.2), energy_offset_eV=float(e), slit_width_eV=10.0,
                               electrons_per_px=1.0).astype(np.float64)
            clean.append(dose * image / image.mean())
        clean_a = np.asarray(clean)
    else:
        sigma = rng.uniform(2.0, 5.0)
        textures = [scipy.ndimage.gaussian_filter(rng.normal(size=(size + 2 * pad,) * 2), sigma, mode="wrap")
                    for _ in range(2)]
        textures = [t / t.std() for t in textures]
        true = _drift(rng, n)
        contrast = rng.uniform(0.1, 0.4)
        theta = np.deg2rad(float(level))
        clean_l = []
        for k, s in enumerate(true):
            phi = theta * k / (n - 1)
            texture = np.cos(phi) * textures[0] + np.sin(phi) * textures[1]
            moved = scipy.ndimage.shift(texture, s, order=3, mode="grid-wrap")[pad:pad + size, pad:pad + size]
            clean_l.append(dose * np.clip(1 + contrast * moved, 0, None))
        clean_a = np.asarray(clean_l)
    noisy = rng.poisson(clean_a).astype(np.float32)
    return noisy, clean_a.astype(np.float32), true


def floor_error(noisy: np.ndarray, clean: np.ndarray, options: dict[str, typing.Any]) -> float:
    """RMS over frames of e_k - e_0, e_k = shift of noisy frame k against its own clean version."""
    n = len(noisy)
    interleaved = np.empty((2 * n,) + noisy.shape[1:], np.float32)
    interleaved[0::2] = clean
    interleaved[1::2] = noisy
    spectra = prefilter_spectra(validate_stack(interleaved), sdsd_options(**options))
    pairs = measure_pairs(spectra, [(2 * k, 2 * k + 1) for k in range(n)],
                          inverted_contrast=bool(options.get("inverted_contrast", False)))
    e = np.asarray([p.shift_px for p in pairs])
    return rms(e - e[0], np.zeros_like(e))


def stats(values: typing.Any) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(np.median(v)), float(np.percentile(v, 90)), float(v.max())


def fmt(values: typing.Any) -> str:
    m, p, w = stats(values)
    return f"{m:.3f} / {p:.3f} / {w:.3f}"


def run_level(level: typing.Any, seeds: typing.Sequence[int], hyperspy: bool) -> dict[str, typing.Any]:
    options: dict[str, typing.Any] = {"inverted_contrast": True} if level == 120 else {}
    errors: dict[str, list[float]] = {"sdsd": [], "sdsd_prior": [], "banded": [], "banded_prior": [], "first": [],
                                      "floor": [], "sdsd_clean": [], "hyperspy": []}
    series: dict[str, np.ndarray] = {}
    truths = {}
    for seed in seeds:
        noisy, clean, true = scenario(seed, level)
        errors["sdsd"].append(rms(align_stack(noisy, drift_prior="off", **options).shifts_px, true))
        errors["sdsd_prior"].append(rms(align_stack(noisy, drift_prior="random-walk", **options).shifts_px, true))
        errors["banded"].append(rms(align_stack(noisy, reference="banded", band_k=5, drift_prior="off",
                                                **options).shifts_px, true))
        errors["banded_prior"].append(rms(align_stack(noisy, reference="banded", band_k=5, drift_prior="random-walk",
                                                      **options).shifts_px, true))
        errors["first"].append(rms(align_stack(noisy, reference="first", drift_prior="off", **options).shifts_px,
                                   true))
        errors["floor"].append(floor_error(noisy, clean, options))
        errors["sdsd_clean"].append(rms(align_stack(clean, drift_prior="off", **options).shifts_px, true))
        series[f"s{seed}"] = noisy
        truths[f"s{seed}"] = true
    if hyperspy and BENCH_PYTHON.exists():
        with tempfile.TemporaryDirectory() as folder:
            path = pathlib.Path(folder) / "series.npz"
            np.savez(path, **series)
            out = subprocess.run([str(BENCH_PYTHON), "-c", HYPERSPY_SCRIPT, str(path)], capture_output=True,
                                 text=True, timeout=7200)
        if out.returncode == 0:
            estimates = json.loads(out.stdout.strip().splitlines()[-1])
            for key in series:
                estimate = np.asarray(estimates[key])
                errors["hyperspy"].append(rms(estimate - estimate[0], truths[key]))
        else:
            print("HyperSpy failed:", out.stderr[-2000:])
    return errors


def calibrate() -> None:
    """Noise-free correlation (band-passed like SDSD) of slice k with slice 0 in the simulator's EFTEM series, to
    compare with cos(phi_k) of the model."""
    from instrument_sim.energy_filter import EnergyFilteredSpecimen, FilteredView
    view = FilteredView(EnergyFilteredSpecimen(), (256, 256), 0.2)
    energies = np.linspace(370.0, 560.0, 20)

    def bandpass(a: np.ndarray) -> np.ndarray:
        a = a / a.mean() - 1.0
        return np.asarray(scipy.ndimage.gaussian_filter(a, 2) - scipy.ndimage.gaussian_filter(a, 30))

    slices = [bandpass(view.image((0.0, 0.0), energy_offset_eV=float(e), slit_width_eV=10.0,
                                  electrons_per_px=1.0).astype(np.float64)) for e in energies]
    corr = [float(np.corrcoef(slices[0].ravel(), s.ravel())[0, 1]) for s in slices]
    print("simulator EFTEM 370-560 eV, correlation with slice 0:", " ".join(f"{c:.2f}" for c in corr))
    print("relative contrast after band-pass (std):", " ".join(f"{s.std():.3f}" for s in slices[::3]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--base-seed", type=int, default=9000)
    parser.add_argument("--levels", default=",".join(str(v) for v in LEVELS))
    parser.add_argument("--no-hyperspy", action="store_true")
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    if args.calibrate:
        calibrate()
    seeds = list(range(args.base_seed, args.base_seed + args.seeds))
    print(f"seeds {seeds[0]}..{seeds[-1]}")
    pooled_all: dict[str, list[float]] = {}
    ratios_all: dict[str, list[float]] = {}
    for raw in args.levels.split(","):
        level: typing.Any = raw if raw == "sim-eftem" else int(raw)
        t0 = time.perf_counter()
        errors = run_level(level, seeds, not args.no_hyperspy)
        floor_ratio = np.asarray(errors["floor"]) / np.asarray(errors["first"])
        print(f"=== level {level} ({time.perf_counter() - t0:.0f} s)")
        for name, values in errors.items():
            if values:
                pooled = float(np.sqrt(np.mean(np.square(values))))
                pooled_all.setdefault(name, []).extend(values)
                fails = int(np.sum(np.asarray(values) > 1.0))
                print(f"  {name:12s} RMS px median/p90/worst {fmt(values)}  pooled {pooled:.3f}  >1px {fails}")
        for name in ("sdsd", "sdsd_prior", "banded", "banded_prior"):
            ratio = np.asarray(errors[name]) / np.asarray(errors["first"])
            ratios_all.setdefault(name, []).extend(ratio.tolist())
            pooled_ratio = float(np.sqrt(np.mean(np.square(errors[name])) / np.mean(np.square(errors["first"]))))
            print(f"  ratio {name}/first  {fmt(ratio)}  (<= 0.6 in {int(np.sum(ratio <= 0.6))}/{len(ratio)}); "
                  f"pooled {pooled_ratio:.3f}")
        print(f"  ratio floor/first {fmt(floor_ratio)}  (the best any pair-based method could do)")
        for name, base in (("sdsd_prior", "sdsd"), ("banded_prior", "banded")):
            ratio = np.asarray(errors[name]) / np.asarray(errors[base])
            print(f"  ratio {name}/{base} {fmt(ratio)}  (better in {int(np.sum(ratio < 0.999))}, worse in "
                  f"{int(np.sum(ratio > 1.001))} of {len(ratio)})")
        if errors["hyperspy"]:
            for name in ("sdsd", "sdsd_prior"):
                hs = np.asarray(errors[name]) / np.asarray(errors["hyperspy"])
                print(f"  ratio {name}/hyperspy {fmt(hs)}  (lower in {int(np.sum(hs < 1))}/{len(hs)})")
        sys.stdout.flush()
    print("=== all levels")
    for name, values in pooled_all.items():
        print(f"  {name:9s} pooled RMS {float(np.sqrt(np.mean(np.square(values)))):.3f}")
    for name, values in ratios_all.items():
        print(f"  ratio {name}/first all scenarios {fmt(values)}  (<= 0.6 in {int(np.sum(np.asarray(values) <= 0.6))}"
              f"/{len(values)})")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
