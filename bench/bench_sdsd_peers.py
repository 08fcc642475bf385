"""SDSD against the frame-0 registrations a user has at hand (issue 10, proof 1), on the same series.

    nice -n 10 .venv/bin/python bench/bench_sdsd_peers.py [--seeds 30] [--base-seed 12000] [--levels ...]

The issue's baseline is "registering every frame to the first". ``bench_sdsd.py`` and ``bench_sdsd_contrast.py``
measure it with *our own* pre-filter, correlator and sub-pixel peak (``align_stack(reference="first")``): the
strictest reading, where only the pair list differs. This bench adds the frame-0 registrations a microscopist
would actually run on the same frames:

* ``swift``: Nion Swift's own **Processing > Align Sequence** measurement,
  ``nion.data.Core.function_sequence_measure_relative_translation(series, frame 0, subtract_means=True)``
  (what ``function_sequence_align`` applies: every frame against frame 0, parabola on the cross-correlation peak);
* ``skimage``: ``skimage.registration.phase_cross_correlation(frame 0, frame k, upsample_factor=20)``, the usual
  notebook registration (its default ``normalization="phase"`` whitens the spectrum, shot noise included);
  ``skimage_cc``: the same with ``normalization=None`` (plain cross-correlation), the fairer of the two;
* ``first``: ours, every frame to frame 0 (same machinery as SDSD);
* ``sdsd``: ``align_stack`` defaults (all pairs, inverse-variance weights);
* ``sdsd_auto`` / ``first_auto``: SDSD / frame 0 with ``lowpass_auto=True`` (the low-pass chosen from the stack,
  :mod:`processing.alignment.stack_band`).

Series: ``lw`` = ``bench_sdsd.scenario`` (linear drift + random walk, the structure mixing towards a second texture),
``theta60`` = ``bench_sdsd_contrast.scenario(.., 60)`` (end correlation 0.5, the simulator's EFTEM strength) and
``sim-eftem`` (the simulator's energy-filtered perovskite 370-560 eV). 20 frames of 256^2, 10 counts/px/frame.
Error: RMS over frames of |estimate - truth| px, frame 0 = 0 for every method. Per-scenario ratios SDSD / baseline:
median / 90th percentile / worst, and how many are <= 0.6. The signs of the peers are fixed once on a noise-free
shifted pair (printed), not per scenario.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import typing

import numpy as np
import scipy.ndimage

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from processing.alignment.sdsd import align_stack  # noqa: E402
from bench_sdsd import rms, scenario as lw_scenario  # noqa: E402
from bench_sdsd_contrast import scenario as contrast_scenario  # noqa: E402

LEVELS = ("lw", "theta60", "sim-eftem")


def swift_frame0(frames: np.ndarray) -> np.ndarray:
    """(n, 2) content shifts px from Swift's own sequence-alignment measurement (frame 0 the reference)."""
    from nion.data import Core, DataAndMetadata
    xdata = DataAndMetadata.new_data_and_metadata(data=np.asarray(frames, np.float32),
                                                  data_descriptor=DataAndMetadata.DataDescriptor(True, 0, 2))
    translations = Core.function_sequence_measure_relative_translation(xdata, xdata[0], True)
    return SWIFT_SIGN * np.asarray(translations.data, dtype=np.float64)


def skimage_frame0(frames: np.ndarray, normalization: str | None = "phase") -> np.ndarray:
    from skimage.registration import phase_cross_correlation
    out = [np.zeros(2)]
    for frame in frames[1:]:
        shift, _error, _phase = phase_cross_correlation(frames[0], frame, upsample_factor=20,
                                                        normalization=normalization)
        out.append(np.asarray(shift, dtype=np.float64))
    return SKIMAGE_SIGN * np.asarray(out)


SWIFT_SIGN = 1.0
SKIMAGE_SIGN = 1.0


def calibrate_signs() -> None:
    """Fix each peer's sign on a noise-free texture moved by a known content shift (+2.3, -1.6) px."""
    global SWIFT_SIGN, SKIMAGE_SIGN
    rng = np.random.default_rng(0)
    texture = scipy.ndimage.gaussian_filter(rng.normal(size=(256, 256)), 3.0, mode="wrap")
    true = np.array([2.3, -1.6])
    frames = np.asarray([texture, scipy.ndimage.shift(texture, true, order=3, mode="grid-wrap")], np.float32)
    for name in ("swift", "skimage"):
        raw = (swift_frame0 if name == "swift" else skimage_frame0)(frames)[1]
        sign = 1.0 if np.linalg.norm(raw - true) < np.linalg.norm(raw + true) else -1.0
        if name == "swift":
            SWIFT_SIGN = sign
        else:
            SKIMAGE_SIGN = sign
        print(f"sign {name}: {sign:+.0f} (raw {raw.round(3).tolist()} for content shift {true.tolist()})")


def series(level: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if level == "lw":
        frames, true, _params = lw_scenario(seed)
        return frames, true
    noisy, _clean, true = contrast_scenario(seed, 60 if level == "theta60" else level)
    return noisy, true


def run(levels: typing.Sequence[str], seeds: typing.Sequence[int]) -> dict[str, typing.Any]:
    out: dict[str, typing.Any] = {}
    for level in levels:
        errors: dict[str, list[float]] = {"sdsd": [], "first": [], "swift": [], "skimage": [], "skimage_cc": [],
                                          "sdsd_auto": [], "first_auto": []}
        for seed in seeds:
            frames, true = series(level, seed)
            errors["sdsd"].append(rms(align_stack(frames).shifts_px, true))
            errors["first"].append(rms(align_stack(frames, reference="first").shifts_px, true))
            errors["swift"].append(rms(swift_frame0(frames), true))
            errors["skimage"].append(rms(skimage_frame0(frames), true))
            errors["skimage_cc"].append(rms(skimage_frame0(frames, None), true))
            errors["sdsd_auto"].append(rms(align_stack(frames, lowpass_auto=True).shifts_px, true))
            errors["first_auto"].append(rms(align_stack(frames, reference="first", lowpass_auto=True).shifts_px,
                                            true))
            print(f"{level} {seed}: " + " ".join(f"{k} {v[-1]:.3f}" for k, v in errors.items()), flush=True)
        out[level] = errors
    return out


def fmt(values: typing.Any) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{np.median(v):.3f} / {np.percentile(v, 90):.3f} / {v.max():.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--base-seed", type=int, default=12000)
    parser.add_argument("--levels", default=",".join(LEVELS))
    parser.add_argument("--output", type=pathlib.Path, default=None, help="JSON of every error")
    args = parser.parse_args()
    calibrate_signs()
    levels = [s for s in args.levels.split(",") if s]
    results = run(levels, range(args.base_seed, args.base_seed + args.seeds))
    for level, errors in results.items():
        print(f"\n== {level}: RMS px median / p90 / worst over {args.seeds} seeds")
        for name, values in errors.items():
            print(f"  {name:8s} {fmt(values)}  (> 1 px: {int(np.sum(np.asarray(values) > 1.0))})")
        for top, base in (("sdsd", "first"), ("sdsd", "swift"), ("sdsd", "skimage"), ("sdsd", "skimage_cc"),
                          ("sdsd_auto", "sdsd"), ("sdsd_auto", "first"), ("sdsd_auto", "first_auto"),
                          ("sdsd_auto", "swift"), ("first_auto", "first")):
            ratio = np.asarray(errors[top]) / np.asarray(errors[base])
            print(f"  {top} / {base:10s} {fmt(ratio)}  (<= 0.6 in {int(np.sum(ratio <= 0.6))}/{len(ratio)}; "
                  f"< 1 in {int(np.sum(ratio < 1))})")
    if args.output:
        args.output.write_text(json.dumps({"base_seed": args.base_seed, "seeds": args.seeds, "results": results},
                                          indent=1))


if __name__ == "__main__":
    main()
