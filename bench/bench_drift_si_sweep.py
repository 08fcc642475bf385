"""Scenario sweep of the drift-corrected SI (issue 13): random drift it was never tuned on, three methods per seed.

Each scenario is drawn from its seed (``numpy.random.default_rng(seed)``), not chosen by hand, over the whole range
of the issue: sample drift = linear (up to 0.5 nm/s, random direction) + sinusoid (amplitude up to 0.5 nm per
axis, period 10-60 s) + random walk (up to 0.02 nm/sqrt(s)) + jumps (Poisson, up to 0.1 /s, size up to 0.6 of the
0.395 nm lattice period); scan rotation 0-30 degrees; sections of 2-8 lines or an interval of 0.3-2 s; the
perovskite or the particle specimen. The same scenario (same simulator seed, started at the same instrument time,
hence the same drift) is acquired three ways: **uncorrected**, **this engine**, **Swift's DriftTracker**
(``DriftCorrectionDataStreamFunctor`` + ``section_height``, the SI panel's own correction).

Per scenario: residual RMS (SI pixels, against the simulator's ground truth, relative to the specimen at the run's
first reference scan), over all pixels and over the pixels of trusted sections; fraction of flagged pixels; pass =
(trusted RMS <= 0.25 px) and (engine RMS <= uncorrected RMS). Summary: median / 90th percentile / worst of each.

Run: ``.venv/bin/python bench/bench_drift_si_sweep.py --n 30 [--first-seed 100] [--size 32]``; results are written
after every scenario to ``bench/results/drift_si_sweep.json``. Timings on a loaded machine are inflated (the
simulated camera clock slows down with the load, so the drift per section grows): figures are ratios against the
uncorrected and Swift runs of the same seeds.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import pathlib
import sys
import time
import typing

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from nion.instrumentation import DriftTracker  # noqa: E402
from nion.utils import Geometry  # noqa: E402

from bench_drift_si import NANOPARTICLES, START_TIME_S, Session, stem_session, wait_for_start  # noqa: E402
from instrument_sim.drift import DriftModel  # noqa: E402
from instrument_sim.si_truth import ScanTruthRecorder, SIGeometry, effective_residual_px, rms_px, si_residual_px  # noqa: E402
from nionswift_plugin.insitu import drift_si  # noqa: E402

DEBUG = False
RESULTS = ROOT / "bench" / "results" / "drift_si_sweep.json"
LATTICE_NM = 0.395
FOV_NM = 16.0


def draw_scenario(seed: int) -> dict[str, typing.Any]:
    """One scenario from its seed (every parameter random over the issue's range)."""
    rng = np.random.default_rng(seed)
    speed = rng.uniform(0.0, 0.5)
    angle = rng.uniform(0, 2 * math.pi)
    scenario: dict[str, typing.Any] = {
        "seed": seed, "sample": "perovskite" if rng.random() < 0.5 else "nanoparticles",
        "rate_nm_per_s": [speed * math.sin(angle), speed * math.cos(angle)],
        "sine_amplitude_nm": [float(rng.uniform(0, 0.5)), float(rng.uniform(0, 0.5))],
        "sine_period_s": float(rng.uniform(10, 60)),
        "random_walk_nm_per_sqrt_s": float(rng.uniform(0, 0.02)),
        "jump_rate_per_s": float(rng.uniform(0, 0.1)),
        "jump_size_nm": float(rng.uniform(0, 0.6 * LATTICE_NM)),
        "rotation_deg": float(rng.uniform(0, 30)),
    }
    if rng.random() < 0.5:
        scenario["section_lines"] = int(rng.integers(2, 9))
        scenario["section_interval_s"] = None
    else:
        scenario["section_lines"] = 4
        scenario["section_interval_s"] = float(rng.uniform(0.3, 2.0))
    return scenario


def _drift(sc: typing.Mapping[str, typing.Any]) -> DriftModel:
    return DriftModel(rate_nm_per_s=tuple(sc["rate_nm_per_s"]), sine_amplitude_nm=tuple(sc["sine_amplitude_nm"]),
                      sine_period_s=sc["sine_period_s"], random_walk_nm_per_sqrt_s=sc["random_walk_nm_per_sqrt_s"],
                      jump_rate_per_s=sc["jump_rate_per_s"], jump_size_nm=sc["jump_size_nm"], seed=sc["seed"])


#: place the particle specimen's reference region on its first particle as seen in the rotated scan (as a user
#: would, on the survey image); else the region stays at (0.05, 0.05) of the scan, which a rotation moves off it
REFERENCE_ON_FEATURE = False


#: version of the reference placement (results of another placement cannot share Swift's tracker runs)
PLACEMENT = "particle edge visible at the start"


def _reference_region(sc: typing.Mapping[str, typing.Any]) -> tuple[float, float, float, float]:
    """(0.05, 0.05, 0.15, 0.15) of the scan, or on the particle specimen centred on a particle as the user sees it
    at the start (rotated scan, moved by the drift since the simulator's t = 0): the one farthest inside the
    scan, preferring those outside the SI field (a particle near the edge drifts out of the scan)."""
    if not (REFERENCE_ON_FEATURE and sc["sample"] == "nanoparticles"):
        return (0.05, 0.05, 0.15, 0.15)
    moved = np.asarray(_drift(sc).offset_nm(START_TIME_S + 0.5), dtype=np.float64).reshape(-1)
    t = -math.radians(sc["rotation_deg"])  # sample -> scan axes
    c, s = math.cos(t), math.sin(t)
    best: tuple[float, float, float] | None = None
    for (py0, px0), radius in zip(NANOPARTICLES["centers_nm"], NANOPARTICLES["radii_nm"]):
        py, px = py0 + float(moved[0]), px0 + float(moved[1])
        # the region holds the particle's edge (a particle larger than the region shows no contrast inside it):
        # its centre moves from the particle's centre towards the scan centre by (radius - 0.6 nm)
        dist = math.hypot(py, px)
        if radius > 0.6 and dist > 0:
            py, px = py - py / dist * (radius - 0.6), px - px / dist * (radius - 0.6)
        fy, fx = (s * px + c * py) / FOV_NM + 0.5, (c * px - s * py) / FOV_NM + 0.5
        inside = min(fy, fx, 1.0 - fy, 1.0 - fx)
        in_si = 0.2 < fy < 0.8 and 0.2 < fx < 0.8
        score = inside - (1.0 if in_si else 0.0)
        if best is None or score > best[0]:
            best = (score, fy, fx)
    assert best is not None
    _score, fy, fx = best
    return (min(max(fy - 0.075, 0.0), 0.85), min(max(fx - 0.075, 0.0), 0.85), 0.15, 0.15)


def _settings(sc: typing.Mapping[str, typing.Any], size: int, **kw: typing.Any) -> drift_si.DriftSISettings:
    return drift_si.DriftSISettings(si_size_px=(size, size), section_lines=sc["section_lines"],
                                    section_interval_s=sc["section_interval_s"], exposure_s=0.002, camera_binning=1,
                                    scan_field=(0.25, 0.25, 0.5, 0.5), reference_region=_reference_region(sc),
                                    reference_size_px=32, **kw)


def _session(sc: typing.Mapping[str, typing.Any]) -> typing.ContextManager[Session]:
    sample = sc["sample"]
    return stem_session(seed=sc["seed"], drift=_drift(sc), controls={"EELS_Dispersion": 1.5, "ZLPoffset": -20.0},
                        fov_nm=FOV_NM, sample=sample,
                        sample_options=NANOPARTICLES if sample == "nanoparticles" else None)


def _rotate(session: Session, rotation_rad: float) -> None:
    fp = session.scan.get_current_frame_parameters()
    fp.rotation_rad = rotation_rad
    session.scan.set_current_frame_parameters(fp)


def _geometry(session: Session, settings: drift_si.DriftSISettings, rotation_rad: float) -> SIGeometry:
    fp = session.scan.get_current_frame_parameters()
    top, left, h, w = settings.scan_field
    fy, fx = (top + h / 2 - 0.5) * FOV_NM, (left + w / 2 - 0.5) * FOV_NM
    c, s = math.cos(rotation_rad), math.sin(rotation_rad)
    center = (fp.center_nm.y + s * fx + c * fy, fp.center_nm.x + c * fx - s * fy)
    return SIGeometry(tuple(settings.si_size_px), (h * FOV_NM, w * FOV_NM), center,  # type: ignore[arg-type]
                      rotation_rad=rotation_rad)


def _relative(session: Session, geometry: SIGeometry, residual: np.ndarray, t_ref: float) -> np.ndarray:
    """Residual relative to the specimen as it was at ``t_ref`` (no method can know the drift before it started)."""
    start = np.asarray(session.instrument.scan_content_offset_nm(t_ref), dtype=np.float64)
    return residual - geometry.to_scan_axes(start)[None, None, :] / np.asarray(geometry.pixel_size_nm)[None, None]


def run_engine(sc: dict[str, typing.Any], size: int, *, corrected: bool) -> dict[str, typing.Any]:
    rotation = math.radians(sc["rotation_deg"])
    with _session(sc) as session:
        _rotate(session, rotation)
        settings = _settings(sc, size) if corrected else _settings(sc, size, correct_drift=False, correct_shear=False)
        wait_for_start(session)
        t0 = time.perf_counter()
        t_start = session.instrument.time_s()
        with ScanTruthRecorder(session.parts.scan_module.device.simulator) as recorder:
            result = drift_si.DriftCorrectedSI(settings).run()
        wall = time.perf_counter() - t0
        geometry = _geometry(session, settings, rotation)
        windows = [(r.row0, r.rows, r.t_start_s, r.t_end_s) for r in result.sections if r.pass_index == 0]
        residual, _t = si_residual_px(recorder.frames, geometry, section_lines=settings.section_lines,
                                      section_windows=windows)
        t_ref = result.measurements[0].time_s if result.measurements else t_start
        residual = _relative(session, geometry, residual, t_ref)
        main = result.main
        assert main is not None
        eff = effective_residual_px(residual, main.correction_px)
        if DEBUG:
            print("raw per row", np.round(np.sqrt(np.nanmean(np.sum(residual ** 2, -1), axis=1)), 2).tolist())
            print("eff per row", np.round(np.sqrt(np.nanmean(np.sum(eff ** 2, -1), axis=1)), 2).tolist())
            print("corr max", float(np.abs(main.correction_px).max()), [(r.row0, r.rows) for r in result.sections])
        if DEBUG:
            print("self_aliases", result.measurements[0].self_aliases, [m.n_candidates for m in result.measurements])
        trusted = result.trusted_pixels(0)
        current = result.current_sections(0)
        return {"state": result.state, "rms_px": rms_px(eff),
                "rms_trusted_px": rms_px(eff[trusted]) if trusted.any() else None,
                "flagged_pixel_fraction": float(1.0 - trusted.mean()),
                "n_sections": len(current), "n_flagged_sections": sum(1 for r in current if not r.trusted),
                "reacquired": sum(1 for r in result.sections if r.superseded),
                "measurements": len(result.measurements),
                "ambiguous": sum(1 for m in result.measurements if m.ambiguous),
                "flagged_measurements": sum(1 for m in result.measurements if m.flagged),
                "lost_measurements": sum(1 for m in result.measurements if m.lost),
                "inconsistent_measurements": sum(1 for m in result.measurements if m.inconsistent),
                "retro": {v: sum(1 for m in result.measurements if m.retro == v)
                          for v in ("consistent", "resolved", "re-placed", "ambiguous", "outlier")},
                "replaced_sections": sum(1 for r in current if r.replaced_px > 0.1),
                "jumps": sum(1 for m in result.measurements if m.jump_nm is not None),
                "median_rows": float(np.median([r.rows for r in current])) if current else None,
                "timing": result.timing, "wall_s": wall,
                "flags": sorted({f.split(":")[0][:60] for r in current for f in r.flags})}


def run_swift(sc: dict[str, typing.Any], size: int, section_lines: int) -> dict[str, typing.Any]:
    rotation = math.radians(sc["rotation_deg"])
    with _session(sc) as session:
        _rotate(session, rotation)
        settings = _settings(sc, size)
        scan, camera = session.scan, session.camera
        base = copy.deepcopy(scan.get_current_frame_parameters())
        top, left, h, w = settings.scan_field
        fp = copy.deepcopy(base)
        fp.subscan_fractional_center = Geometry.FloatPoint(y=top + h / 2, x=left + w / 2)
        fp.subscan_fractional_size = Geometry.FloatSize(h=h, w=w)
        fp.subscan_pixel_size = Geometry.IntSize(size, size)
        fp.subscan_rotation = 0.0
        channel_id = scan.get_channel_state(settings.reference_channel_index).channel_id
        rt, rl, rh, rw = settings.reference_region
        region = Geometry.FloatRect.from_tlhw(rt, rl, rh, rw)
        scan.drift_channel_id = channel_id
        scan.drift_region = region
        scan.drift_rotation = 0.0
        tracker = scan.drift_tracker
        tracker.reset()
        cam_params = copy.deepcopy(camera.get_current_frame_parameters())
        cam_params.processing = "sum_project"
        cam_params.exposure_ms = settings.exposure_s * 1000
        cam_params.binning = 1
        functor = DriftTracker.DriftCorrectionDataStreamFunctor(scan, base, tracker, 0, channel_id, region, 0.0,
                                                                use_prediction=True)
        wait_for_start(session)
        t0 = time.perf_counter()
        t_start = session.instrument.time_s()
        with ScanTruthRecorder(session.parts.scan_module.device.simulator) as recorder:
            scan.grab_synchronized(scan_frame_parameters=fp, camera=camera, camera_frame_parameters=cam_params,
                                   section_height=section_lines, scan_data_stream_functor=functor)
        geometry = _geometry(session, settings, rotation)
        residual, _t = si_residual_px(recorder.frames, geometry, section_lines=section_lines)
        residual = _relative(session, geometry, residual, t_start)
        return {"rms_px": rms_px(residual), "measurements": int(tracker.measurement_count),
                "wall_s": time.perf_counter() - t0}


def _stats(values: typing.Sequence[float | None]) -> dict[str, float | None]:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"median": None, "p90": None, "worst": None, "n": 0}
    return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "worst": float(v.max()),
            "n": int(v.size)}


def summarise(rows: list[dict[str, typing.Any]]) -> dict[str, typing.Any]:
    ok = [r for r in rows if "engine" in r and "uncorrected" in r]
    # pass: the trusted pixels meet 0.25 px (none trusted: every section flagged) and the whole SI is not worse
    # than uncorrected; silent failure: trusted pixels off by more than 0.25 px RMS
    passed = [r for r in ok if ((r["engine"]["rms_trusted_px"] is None or r["engine"]["rms_trusted_px"] <= 0.25)
                                and r["engine"]["rms_px"] <= r["uncorrected"]["rms_px"])]
    silent = [r["scenario"]["seed"] for r in ok if r["engine"]["rms_trusted_px"] is not None
              and r["engine"]["rms_trusted_px"] > 0.25]
    return {"n": len(ok), "passed": len(passed), "failed_seeds": [r["scenario"]["seed"] for r in ok
                                                                   if r not in passed],
            "engine_rms_px": _stats([r["engine"]["rms_px"] for r in ok]),
            "engine_rms_trusted_px": _stats([r["engine"]["rms_trusted_px"] for r in ok]),
            "engine_flagged_pixel_fraction": _stats([r["engine"]["flagged_pixel_fraction"] for r in ok]),
            "uncorrected_rms_px": _stats([r["uncorrected"]["rms_px"] for r in ok]),
            "swift_drift_tracker_rms_px": _stats([r.get("swift", {}).get("rms_px") for r in ok]),
            "engine_worse_than_uncorrected": sum(1 for r in ok if r["engine"]["rms_px"] > r["uncorrected"]["rms_px"]),
            "worse_than_uncorrected_seeds": [r["scenario"]["seed"] for r in ok
                                             if r["engine"]["rms_px"] > r["uncorrected"]["rms_px"]],
            "silent_failure_seeds": silent, "silent_failures": len(silent),
            "all_flagged_seeds": [r["scenario"]["seed"] for r in ok if r["engine"]["rms_trusted_px"] is None],
            "engine_within_0.25px": sum(1 for r in ok if r["engine"]["rms_px"] <= 0.25)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="number of scenarios")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32, help="SI size (px, square)")
    parser.add_argument("--no-swift", action="store_true", help="skip Swift's DriftTracker")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--reference-on-feature", action="store_true",
                        help="particle specimen: reference region on the first particle in the rotated scan")
    parser.add_argument("--reuse-references", type=pathlib.Path, default=None,
                        help="take the uncorrected and Swift DriftTracker runs of the seeds found in this earlier "
                             "results file (they do not depend on the engine) and run only the engine")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="explicit seeds (instead of the range)")
    parser.add_argument("--references-only", action="store_true",
                        help="run only the uncorrected and Swift DriftTracker runs (they do not depend on the engine; "
                             "Swift's section height is then the scenario's section_lines); reuse them later with "
                             "--reuse-references")
    args = parser.parse_args()
    reused: dict[int, dict[str, typing.Any]] = {}
    same_placement = False
    if args.reuse_references is not None:
        previous = json.loads(args.reuse_references.read_text())
        same_placement = previous.get("reference_placement") == PLACEMENT
        for old in previous["scenarios"]:
            if "uncorrected" in old:
                reused[int(old["scenario"]["seed"])] = old
    global REFERENCE_ON_FEATURE
    REFERENCE_ON_FEATURE = bool(args.reference_on_feature)
    rows: list[dict[str, typing.Any]] = []
    for seed in (args.seeds if args.seeds else range(args.first_seed, args.first_seed + args.n)):
        sc = draw_scenario(seed)
        row: dict[str, typing.Any] = {"scenario": sc}
        try:
            if seed in reused:
                row["uncorrected"] = reused[seed]["uncorrected"]
                if "swift" in reused[seed] and (same_placement or not (REFERENCE_ON_FEATURE
                                                                       and sc["sample"] == "nanoparticles")):
                    row["swift"] = reused[seed]["swift"]  # same reference region as before: same run
                row["references_from"] = str(args.reuse_references)
            else:
                row["uncorrected"] = run_engine(sc, args.size, corrected=False)
            if not args.references_only:
                row["engine"] = run_engine(sc, args.size, corrected=True)
            if not args.no_swift and "swift" not in row:
                lines = int(round(row.get("engine", {}).get("median_rows") or sc["section_lines"]))
                row["swift"] = run_swift(sc, args.size, max(lines, 1))
        except Exception as e:  # a failing scenario is reported, not hidden
            row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
        print(json.dumps({"seed": seed, "sample": sc["sample"],
                          "engine": {k: row.get("engine", {}).get(k) for k in ("rms_px", "rms_trusted_px",
                                                                                "flagged_pixel_fraction")},
                          "uncorrected": row.get("uncorrected", {}).get("rms_px"),
                          "swift": row.get("swift", {}).get("rms_px"), "error": row.get("error")}), flush=True)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"start_time_s": START_TIME_S, "size_px": args.size,
                                           "reference_on_feature": REFERENCE_ON_FEATURE,
                                           "reference_placement": PLACEMENT,
                                           "summary": summarise(rows), "scenarios": rows}, indent=1))
    print(json.dumps(summarise(rows), indent=1))


if __name__ == "__main__":
    main()
