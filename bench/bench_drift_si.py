"""Proof figures of the drift-corrected EELS/EEGS spectrum imaging (issue 5) against the simulator's ground truth.

Scenarios (each on a fresh simulated STEM, started at the same instrument time so the drift is identical):

1. **spatial**: DyScO3-like perovskite, sample drift = linear + random walk + one jump; a 64x64 EELS SI in sections
   of 4 lines, acquired three ways with the same seed and settings: uncorrected, Swift's own ``DriftTracker``
   (the SI panel's "drift correct every N lines" machinery: ``DriftCorrectionDataStreamFunctor``), and this
   engine. Figure: per-pixel registration error of the assembled SI (hence of its Sc/Dy maps) against the
   drift-free positions, RMS in SI pixels (ground truth from the scan simulator); plus the correlation of the
   Sc and Dy maps with the true drift-free composition maps.
2. **energy**: energy drift (linear + random walk + jump) on a fine dispersion; the aligned ZLP across the SI.
3. **eegs**: Ag nanoparticles, laser wavelength scan; gain-peak intensity versus wavelength at a particle and far
   away; the recovered resonance versus the simulated one.
4. **abort**: immediate aborts at seeded random points; lines of the running section kept versus the lines the
   camera completed (its own frames), with line-by-line delivery and as before.
5. **delivery**: section and run time with line-by-line delivery versus device_kit's 1 s pieces (interleaved).
6. **pairs**: accuracy of scenario 1 (lattice) with line pieces versus device_kit's pieces (interleaved pairs).

Run: ``.venv/bin/python bench/bench_drift_si.py [--quick]``; writes ``bench/results/drift_si.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import pathlib
import re
import sys
import time
import typing

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nion.instrumentation import DriftTracker  # noqa: E402
from nion.utils import Geometry  # noqa: E402

from instrument_sim.configuration import SimulatorConfiguration  # noqa: E402
from instrument_sim.drift import DriftModel, EnergyDriftModel  # noqa: E402
from instrument_sim.si_truth import (ScanTruthRecorder, SIGeometry, effective_residual_px, rms_px,  # noqa: E402
                                     si_residual_px)
from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES, stem_parts  # noqa: E402
from nionswift_plugin.insitu import drift_si  # noqa: E402
from nionswift_plugin.insitu.headless import HeadlessSwift  # noqa: E402
from processing.spectroscopy.eegs import HC_EV_NM, find_resonance  # noqa: E402
from processing.spectroscopy.eels_maps import edge_map  # noqa: E402
from processing.spectroscopy.spectrum_alignment import EnergyAxis, zlp_position_eV  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "drift_si.json"
START_TIME_S = 4.0  # every run starts at this instrument time, so all see the same drift trajectory


@dataclasses.dataclass
class Session:
    swift: HeadlessSwift
    instrument: typing.Any
    parts: typing.Any
    scan: typing.Any
    camera: typing.Any


@contextlib.contextmanager
def stem_session(*, seed: int, drift: DriftModel, energy_drift: EnergyDriftModel | None = None,
                 controls: typing.Mapping[str, float] | None = None, fov_nm: float = 16.0,
                 sample: str = "perovskite", sample_options: typing.Mapping[str, typing.Any] | None = None,
                 ) -> typing.Iterator[Session]:
    config = SimulatorConfiguration(seed=seed, drift=drift, energy_drift=energy_drift or EnergyDriftModel(),
                                    device_factories=STEM_DEVICE_FACTORIES)
    with HeadlessSwift(config, with_window=False) as swift:
        instrument = swift.simulator.instrument
        parts = stem_parts(instrument)
        if sample != "perovskite" or sample_options:
            parts.specimen.load(sample, **(sample_options or {}))
        for name, value in (controls or {}).items():
            instrument.SetVal(name, value)
        scan = swift.hardware_source("insitu_scan")
        fp = scan.get_current_frame_parameters()
        fp.fov_nm = fov_nm
        fp.pixel_size = Geometry.IntSize(256, 256)
        scan.set_current_frame_parameters(fp)
        yield Session(swift, instrument, parts, scan, swift.hardware_source("insitu_eels_camera"))


def wait_for_start(session: Session) -> None:
    while session.instrument.time_s() < START_TIME_S:
        time.sleep(0.005)


def si_geometry(session: Session, settings: drift_si.DriftSISettings) -> SIGeometry:
    fp = session.scan.get_current_frame_parameters()
    top, left, h, w = settings.scan_field
    fov = float(fp.fov_nm)
    cy = fp.center_nm.y + (top + h / 2 - 0.5) * fov
    cx = fp.center_nm.x + (left + w / 2 - 0.5) * fov
    return SIGeometry(tuple(settings.si_size_px), (h * fov, w * fov), (cy, cx))  # type: ignore[arg-type]


def residual_from_start(session: Session, settings: drift_si.DriftSISettings, frames: typing.Any,
                        section_rows: typing.Sequence[int] | None = None, reference_time_s: float = START_TIME_S,
                        section_windows: typing.Sequence[tuple[int, int, float, float]] | None = None
                        ) -> np.ndarray:
    """Per-pixel residual (px) relative to the specimen as it was at the run's reference time (the first reference
    scan of this engine; the start of the run otherwise): no method can know the drift before it started.
    The figures also report the RMS about the mean (after the best global translation)."""
    geometry = si_geometry(session, settings)
    residual, _times = si_residual_px(frames, geometry, section_lines=settings.section_lines,
                                      section_rows=section_rows, section_windows=section_windows)
    start = session.instrument.scan_content_offset_nm(reference_time_s)
    return residual - (np.asarray(start) / np.asarray(geometry.pixel_size_nm))[None, None, :]


def run_engine(session: Session, settings: drift_si.DriftSISettings) -> tuple[drift_si.DriftSIResult, np.ndarray]:
    """Our engine (or uncorrected with correct_drift=False): result and effective per-pixel residual (px)."""
    wait_for_start(session)
    with ScanTruthRecorder(session.parts.scan_module.device.simulator) as recorder:
        result = drift_si.DriftCorrectedSI(settings).run()
    residual = residual_from_start(session, settings, recorder.frames, None,
                                   result.measurements[0].time_s if result.measurements else START_TIME_S,
                                   [(r.row0, r.rows, r.t_start_s, r.t_end_s) for r in result.sections
                                    if r.pass_index == 0])
    main = result.main
    assert main is not None
    return result, effective_residual_px(residual, main.correction_px)


def run_swift_tracker(session: Session, settings: drift_si.DriftSISettings) -> tuple[np.ndarray, np.ndarray, dict]:
    """Swift's own SI drift correction: DriftCorrectionDataStreamFunctor + section_height, one grab_synchronized.

    Returns the (H, W, E) SI, its per-pixel residual (px) and the tracker's measurement table.
    """
    scan, camera = session.scan, session.camera
    base = copy.deepcopy(scan.get_current_frame_parameters())
    top, left, h, w = settings.scan_field
    fp = copy.deepcopy(base)
    fp.subscan_fractional_center = Geometry.FloatPoint(y=top + h / 2, x=left + w / 2)
    fp.subscan_fractional_size = Geometry.FloatSize(h=h, w=w)
    fp.subscan_pixel_size = Geometry.IntSize(*settings.si_size_px)
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
    if settings.camera_binning is not None:
        cam_params.binning = settings.camera_binning
    functor = DriftTracker.DriftCorrectionDataStreamFunctor(scan, base, tracker, 0, channel_id, region, 0.0,
                                                            use_prediction=True)
    wait_for_start(session)
    with ScanTruthRecorder(session.parts.scan_module.device.simulator) as recorder:
        scans, spectra = scan.grab_synchronized(scan_frame_parameters=fp, camera=camera,
                                                camera_frame_parameters=cam_params,
                                                section_height=settings.section_lines,
                                                scan_data_stream_functor=functor)
    residual = residual_from_start(session, settings, recorder.frames)
    table = tracker.drift_data_frame
    return np.asarray(spectra[0].data), residual, {"measurements": int(tracker.measurement_count),
                                                  "delta_nm": table[:2].T.tolist()}


def map_correlations(session: Session, settings: drift_si.DriftSISettings, si: np.ndarray, axis: EnergyAxis
                     ) -> dict[str, float]:
    """Pearson correlation of the Sc L and Dy M maps with the true drift-free composition maps (the specimen as it
    was at the start of the run)."""
    geometry = si_geometry(session, settings)
    ny, nx = geometry.nominal_positions_nm()
    start = session.instrument.scan_content_offset_nm(START_TIME_S)
    truth = session.parts.specimen.sample.composition(ny - start[0], nx - start[1])
    out = {}
    for element, onset, pre, win in (("Sc", 402.0, 60.0, 30.0), ("Dy", 1295.0, 120.0, 80.0)):
        m = edge_map(si, axis, onset, pre_window_eV=pre, signal_window_eV=win)
        t = np.asarray(truth[element])
        out[element] = float(np.corrcoef(m.ravel(), t.ravel())[0, 1])
    return out


NANOPARTICLES = {"centers_nm": [(-6.3, -6.3), (-2.0, 3.0), (3.5, -1.5), (5.0, 5.5), (-5.5, 4.0), (1.0, -6.0)],
                 "radii_nm": [0.8, 1.5, 1.0, 2.0, 1.2, 0.9]}


def _flag_kinds(result: drift_si.DriftSIResult) -> dict[str, int]:
    """How many current sections carry each kind of flag (the flag's text up to its first number or colon)."""
    kinds: dict[str, int] = {}
    for record in result.flagged_sections(0):
        for kind in sorted({re.sub(r"\d+(\.\d+)?", "#", re.sub(r"^drift measurement \d+( \([^)]*\))?:? ?", "", f))
                            .split(":")[0].split("(")[0].strip()[:50] for f in record.flags}):
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def spatial_scenario(quick: bool, *, sample: str = "perovskite",
                     sample_options: typing.Mapping[str, typing.Any] | None = None) -> dict[str, typing.Any]:
    """The registration-error comparison; ``sample="nanoparticles"`` repeats it on a non-periodic specimen
    (particles on amorphous carbon, one particle in the reference region), where a fixed-reference tracker is not
    confused by lattice aliases."""
    perovskite = sample == "perovskite"
    size = (32, 32) if quick else (64, 64)
    drift = DriftModel(rate_nm_per_s=(0.06, -0.04), random_walk_nm_per_sqrt_s=0.01, jump_rate_per_s=0.08,
                       jump_size_nm=0.12, seed=11)
    controls = {"EELS_Dispersion": 1.5, "ZLPoffset": -20.0}
    base = drift_si.DriftSISettings(si_size_px=size, section_lines=4, exposure_s=0.002, camera_binning=1,
                                    scan_field=(0.25, 0.25, 0.5, 0.5), reference_region=(0.05, 0.05, 0.15, 0.15),
                                    reference_size_px=32)
    figures: dict[str, typing.Any] = {"si_size_px": list(size), "section_lines": 4, "drift_model": {
        "rate_nm_per_s": drift.rate_nm_per_s, "random_walk_nm_per_sqrt_s": drift.random_walk_nm_per_sqrt_s,
        "jump_rate_per_s": drift.jump_rate_per_s, "jump_size_nm": drift.jump_size_nm, "seed": drift.seed}}
    variants: dict[str, dict[str, typing.Any]] = {
        "uncorrected": dict(correct_drift=False, correct_shear=False), "ours": {},
        "ours_no_shear": dict(correct_shear=False), "ours_no_reacquire": dict(reacquire_on_jump=False),
        "ours_no_rate_check": dict(rate_check=False)}
    for name, options in variants.items():
        settings = dataclasses.replace(copy.deepcopy(base), **options)
        with stem_session(seed=3, drift=drift, controls=controls, sample=sample,
                          sample_options=sample_options) as session:
            t0 = time.perf_counter()
            result, residual = run_engine(session, settings)
            wall = time.perf_counter() - t0
            axis = result.energy_axis
            assert axis is not None
            si = result.si_xdata().data
            jumps = session.instrument.sample_drift
            trusted = result.trusted_pixels()
            entry = {"state": result.state, "rms_px": rms_px(residual),
                     "trusted_rms_px": rms_px(residual[trusted]) if trusted.any() else None,
                     "flagged_sections": len(result.flagged_sections(0)),
                     "flag_kinds": _flag_kinds(result),
                     "reacquired_sections": sum(1 for r in result.sections if r.superseded),
                     "rms_px_mean_removed": rms_px(residual, remove_mean=True),
                     "max_px": float(np.nanmax(np.hypot(residual[..., 0], residual[..., 1]))),
                     "wall_s": wall, "measurements": len(result.measurements),
                     "rejected": sum(1 for m in result.measurements if not m.accepted),
                     "map_correlation": map_correlations(session, settings, si, axis) if perovskite else None,
                     "si_pixel_nm": list(result.si_pixel_size_nm)}
            if name == "ours":
                t_meas = np.array([m.time_s for m in result.measurements])
                true = session.instrument.true_sample_offset_nm(t_meas) - session.instrument.true_sample_offset_nm(
                    result.measurements[0].time_s)
                est = np.array([m.drift_nm for m in result.measurements])
                acc = np.array([m.accepted for m in result.measurements])
                entry["drift_measurement_error_nm_rms"] = float(np.sqrt(np.mean(np.sum(
                    (est[acc] - true[acc]) ** 2, axis=1))))
                entry["true_drift_range_nm"] = [float(np.ptp(true[:, 0])), float(np.ptp(true[:, 1]))]
                del jumps
            figures[name] = entry
            print(name, json.dumps(entry))
    with stem_session(seed=3, drift=drift, controls=controls, sample=sample, sample_options=sample_options) as session:
        settings = copy.deepcopy(base)
        t0 = time.perf_counter()
        si, residual, table = run_swift_tracker(session, settings)
        axis = EnergyAxis(-20.0, 1.5)
        figures["swift_drift_tracker"] = {"rms_px": rms_px(residual),
                                          "rms_px_mean_removed": rms_px(residual, remove_mean=True),
                                          "max_px": float(np.nanmax(np.hypot(residual[..., 0], residual[..., 1]))),
                                          "wall_s": time.perf_counter() - t0, **table,
                                          "map_correlation": map_correlations(session, settings, si, axis)
                                          if perovskite else None}
        print("swift", json.dumps({k: v for k, v in figures["swift_drift_tracker"].items() if k != "delta_nm"}))
    return figures


def energy_scenario(quick: bool) -> dict[str, typing.Any]:
    """Energy drift: the aligned ZLP must sit at 0 eV within 0.05 eV in every pixel. Checked two ways: the ZLP
    re-measured on the aligned SI, and the true ZLP position after alignment (true energy offset at each pixel's
    visit time, from the simulator, plus the shift the engine applied)."""
    size = (16, 16) if quick else (32, 32)
    energy = EnergyDriftModel(rate_meV_per_s=100.0, random_walk_meV_per_sqrt_s=20.0, jump_rate_per_s=0.3,
                              jump_size_meV=200.0, seed=5)
    drift = DriftModel(rate_nm_per_s=(0.03, 0.02), seed=5)
    controls = {"EELS_Dispersion": 0.05, "ZLPoffset": -10.0, "EELS_ZLPWidth": 0.3}
    settings = drift_si.DriftSISettings(si_size_px=size, section_lines=4, exposure_s=0.001, camera_binning=1)
    with stem_session(seed=4, drift=drift, energy_drift=energy, controls=controls) as session:
        wait_for_start(session)
        with ScanTruthRecorder(session.parts.scan_module.device.simulator) as recorder:
            result = drift_si.DriftCorrectedSI(settings).run()
        windows = [(r.row0, r.rows, r.t_start_s, r.t_end_s) for r in result.sections if r.pass_index == 0]
        _residual, times = si_residual_px(recorder.frames, si_geometry(session, settings),
                                          section_lines=settings.section_lines, section_windows=windows)
        untimed = int(np.count_nonzero(~np.isfinite(times)))  # pixels the truth recorder could not time (reported)
        times = np.where(np.isfinite(times), times, np.nanmedian(times))
        main = result.main
        assert main is not None and result.energy_axis is not None
        aligned = np.asarray(main.aligned.data, dtype=np.float64)
        after = zlp_position_eV(aligned, result.energy_axis, search_eV=(-3, 3))
        true_offset = session.instrument.true_energy_offset_eV(times)
        true_after = true_offset + main.energy_shift_eV  # where the ZLP really is after the applied shift
        figures = {"si_size_px": list(size), "dispersion_eV": 0.05, "zlp_fwhm_eV": 0.3, "untimed_pixels": untimed,
                   "raw_zlp_range_eV": [float(np.nanmin(main.zlp_eV)), float(np.nanmax(main.zlp_eV))],
                   "true_energy_drift_range_eV": float(np.ptp(true_offset)),
                   "aligned_zlp_remeasured_max_abs_eV": float(np.nanmax(np.abs(after))),
                   "aligned_zlp_true_max_abs_eV": float(np.nanmax(np.abs(true_after - np.median(true_after)))),
                   "aligned_zlp_true_rms_eV": float(np.sqrt(np.nanmean((true_after - np.median(true_after)) ** 2))),
                   "aligned_zlp_true_median_eV": float(np.median(true_after)),
                   "recorded_shift_range_eV": [float(main.energy_shift_eV.min()), float(main.energy_shift_eV.max())]}
    print("energy", json.dumps(figures))
    return figures


def eegs_scenario(quick: bool) -> dict[str, typing.Any]:
    resonance_eV, q = 2.4, 12.0
    particle = (0.0, 0.0)
    radius = 15.0
    sample_options = {"centers_nm": [particle], "radii_nm": [radius], "resonance_center_eV": resonance_eV,
                      "resonance_q": q}
    step = 5.0 if not quick else 10.0
    controls = {"EELS_Dispersion": 0.02, "ZLPoffset": -6.0, "EELS_ZLPWidth": 0.25}
    out: dict[str, typing.Any] = {"resonance_nm": HC_EV_NM / resonance_eV, "wavelength_step_nm": step}
    # SI field 240 nm wide centred on the particle (16 px of 15 nm); "at the particle" = the pixel 2.5 nm outside
    # its rim, "far" = the pixel 97 nm from the rim (near-field decay length 15 nm)
    for label, point in (("at_particle", (0.5, 0.5 + (radius + 3.0) / 240.0)), ("far", (0.5, 0.98))):
        settings = drift_si.DriftSISettings(mode="EEGS", si_size_px=(16, 16), scan_field=(0.1, 0.1, 0.8, 0.8),
                                            reference_region=(0.42, 0.42, 0.16, 0.16), eegs_geometry="point",
                                            eegs_point=point, frames_per_wavelength=4, laser_off_frames=8,
                                            exposure_s=0.005, wavelength_range_nm=(470.0, 570.0, step),
                                            camera_binning=1, correct_shear=False)
        with stem_session(seed=6, drift=DriftModel(rate_nm_per_s=(0.05, 0.05), seed=6), controls=controls,
                          fov_nm=300.0, sample="nanoparticles", sample_options=sample_options) as session:
            session.parts.laser.apply_settings({"power_mW": 1.0, "beta_squared_per_mW": 0.05})
            wait_for_start(session)
            result = drift_si.DriftCorrectedSI(settings).run()
            lams, gain = result.eegs_gain(zlp_fwhm_eV=0.25)
            res = find_resonance(lams, gain)
            out[label] = {"state": result.state, "wavelengths_nm": lams.tolist(), "gain": gain.tolist(),
                          "peak_wavelength_nm": res.peak_wavelength_nm, "prominence": res.prominence,
                          "relative_prominence": res.relative_prominence,
                          "laser_power_mW": [p.laser_power_mW for p in result.passes]}
            print("eegs", label, res)
    return out


def _abort_run(session: Session, settings: drift_si.DriftSISettings, grab_number: int, frame_number: int,
               flyback: int = 2) -> dict[str, typing.Any]:
    """One run aborted immediately while the camera reads frame ``frame_number`` of synchronized grab
    ``grab_number`` (1 = timing probe). Truth: the frames the camera read in that grab (its own simulator)."""
    run = drift_si.DriftCorrectedSI(settings)
    sim = session.parts.eels_simulator
    original_frame, original_grab = sim.get_frame_data, session.scan.grab_synchronized
    state: dict[str, typing.Any] = {"grab": 0, "frames": [], "records": []}

    def grab(*args: typing.Any, **kw: typing.Any) -> typing.Any:
        state["grab"] += 1
        return original_grab(*args, **kw)

    def frame(*args: typing.Any, **kw: typing.Any) -> typing.Any:
        xdata = original_frame(*args, **kw)
        if state["grab"] == grab_number:
            state["frames"].append(np.asarray(xdata.data, dtype=np.float64).sum(axis=0))
            if len(state["frames"]) == frame_number:
                run.abort(immediately=True)
        return xdata

    listener = run.section_event.listen(lambda _r, _p, record: state["records"].append((state["grab"], record)))
    session.scan.grab_synchronized, sim.get_frame_data = grab, frame
    try:
        t0 = time.perf_counter()
        result = run.run()
        wall = time.perf_counter() - t0
    finally:
        del session.scan.grab_synchronized, sim.get_frame_data, listener
    w = settings.si_size_px[1]
    line = w + flyback
    completed = len(state["frames"]) // line
    mine = [r for g, r in state["records"] if g == grab_number]
    kept = mine[0].pixels_acquired // w if mine else 0
    exact_data = True
    if mine and kept:
        main = result.main
        assert main is not None
        lines = np.asarray(state["frames"][:kept * line]).reshape(kept, line, -1)[:, flyback:]
        rows = slice(mine[0].row0, mine[0].row0 + kept)
        exact_data = bool(np.allclose(main.raw.data[rows], lines, rtol=1e-5, atol=1e-3))
    return {"grab": grab_number, "frame": frame_number, "lines_completed": completed, "lines_kept": kept,
            "lines_lost": completed - kept, "data_exact": exact_data, "state": result.state, "wall_s": wall,
            "valid_empty_result": result.si_xdata().data_shape[0] >= 0, "message": result.message}


def abort_scenario(quick: bool, n: int = 10, seed: int = 4100) -> dict[str, typing.Any]:
    """Immediate aborts at seeded random points (grab, frame): lines of the running section kept versus completed,
    with line-by-line delivery + drain (this engine) and as before (device_kit's 1 s pieces, no drain)."""
    from instrument_sim.eels_camera import SimEELSCamera
    from nionswift_plugin.insitu.drift_si_acquire import AcquisitionLoop
    n = 4 if quick else n
    rng = np.random.default_rng(seed)
    settings = drift_si.DriftSISettings(si_size_px=(16, 16), section_lines=4, exposure_s=0.002, camera_binning=1,
                                        scan_field=(0.375, 0.375, 0.25, 0.25), alias_safe_sections=False,
                                        reference_region=(0.05, 0.05, 0.15, 0.15), reference_size_px=32)
    points = [(int(rng.integers(2, 6)), int(rng.integers(1, 4 * 18 + 1))) for _ in range(n)]
    out: dict[str, typing.Any] = {"points": points}
    drain = AcquisitionLoop._drain
    with stem_session(seed=3, drift=DriftModel(rate_nm_per_s=(0.05, -0.03), seed=3)) as session:
        for label, lines, drains in (("engine", 1, True), ("before", None, False)):
            SimEELSCamera.lines_per_delivery = lines
            if not drains:
                AcquisitionLoop._drain = lambda self, grab_done, channel: None  # type: ignore[method-assign]
            try:
                runs = [_abort_run(session, settings, g, f) for g, f in points]
            finally:
                SimEELSCamera.lines_per_delivery = 1
                AcquisitionLoop._drain = drain  # type: ignore[method-assign]
            lost = np.array([r["lines_lost"] for r in runs], dtype=np.float64)
            out[label] = {"runs": runs, "lines_lost_median": float(np.median(lost)),
                          "lines_lost_p90": float(np.percentile(lost, 90)), "lines_lost_worst": float(lost.max()),
                          "exact": sum(1 for r in runs if r["lines_lost"] == 0 and r["data_exact"]),
                          "lines_completed_total": int(sum(r["lines_completed"] for r in runs)),
                          "lines_kept_total": int(sum(r["lines_kept"] for r in runs))}
            print("abort", label, json.dumps({k: v for k, v in out[label].items() if k != "runs"}))
    return out


def delivery_scenario(quick: bool, repeats: int = 4) -> dict[str, typing.Any]:
    """Cost of the line-by-line delivery on a normal run: section time and run time, interleaved runs with
    device_kit's pieces (1 s) and with one piece per line, same session (so the same machine load)."""
    from instrument_sim.eels_camera import SimEELSCamera
    size = (16, 16) if quick else (32, 32)
    settings = drift_si.DriftSISettings(si_size_px=size, section_lines=4, exposure_s=0.002, camera_binning=1,
                                        scan_field=(0.375, 0.375, 0.25, 0.25), alias_safe_sections=False,
                                        reference_region=(0.05, 0.05, 0.15, 0.15), reference_size_px=32)
    sections: dict[str, list[float]] = {"pieces": [], "lines": []}
    walls: dict[str, list[float]] = {"pieces": [], "lines": []}
    with stem_session(seed=3, drift=DriftModel(rate_nm_per_s=(0.05, -0.03), seed=3)) as session:
        drift_si.DriftCorrectedSI(settings).run()  # warm-up (compilation, first-use costs), not counted
        for k in range(repeats):  # the order alternates, so that a trend in the machine's load favours neither
            for label, lines in ((("pieces", None), ("lines", 1)) if k % 2 == 0 else (("lines", 1), ("pieces", None))):
                SimEELSCamera.lines_per_delivery = lines
                try:
                    t0 = time.perf_counter()
                    result = drift_si.DriftCorrectedSI(settings).run()
                    walls[label].append(time.perf_counter() - t0)
                finally:
                    SimEELSCamera.lines_per_delivery = 1
                sections[label] += [r.t_end_s - r.t_start_s for r in result.sections if r.complete]
    out: dict[str, typing.Any] = {"si_size_px": list(size), "repeats": repeats}
    for label in sections:
        out[label] = {"section_s_median": float(np.median(sections[label])),
                      "section_s_p90": float(np.percentile(sections[label], 90)),
                      "run_s_median": float(np.median(walls[label])), "n_sections": len(sections[label])}
    out["section_time_ratio_lines_to_pieces"] = out["lines"]["section_s_median"] / out["pieces"]["section_s_median"]
    out["run_time_ratio_lines_to_pieces"] = out["lines"]["run_s_median"] / out["pieces"]["run_s_median"]
    print("delivery", json.dumps(out))
    return out


def pairs_scenario(quick: bool, pairs: int = 3, size: int = 32) -> dict[str, typing.Any]:
    """Accuracy of the issue-5 lattice scenario with one camera piece per line versus device_kit's pieces:
    interleaved runs on fresh sessions (same drift), alternating order; RMS, trusted RMS, flags, measured clock."""
    from instrument_sim.eels_camera import SimEELSCamera
    drift = DriftModel(rate_nm_per_s=(0.06, -0.04), random_walk_nm_per_sqrt_s=0.01, jump_rate_per_s=0.08,
                       jump_size_nm=0.12, seed=11)
    settings = drift_si.DriftSISettings(si_size_px=(size, size), section_lines=4, exposure_s=0.002, camera_binning=1,
                                        scan_field=(0.25, 0.25, 0.5, 0.5), reference_region=(0.05, 0.05, 0.15, 0.15),
                                        reference_size_px=32)
    runs = []
    for k in range(1 if quick else pairs):
        for mode in (("lines", "pieces") if k % 2 == 0 else ("pieces", "lines")):
            SimEELSCamera.lines_per_delivery = None if mode == "pieces" else 1
            try:
                with stem_session(seed=3, drift=drift, controls={"EELS_Dispersion": 1.5, "ZLPoffset": -20.0}) as s:
                    result, residual = run_engine(s, settings)
            finally:
                SimEELSCamera.lines_per_delivery = 1
            trusted = result.trusted_pixels()
            runs.append({"mode": mode, "rms_px": rms_px(residual),
                         "trusted_rms_px": rms_px(residual[trusted]) if trusted.any() else None,
                         "flagged_sections": len(result.flagged_sections(0)),
                         "ambiguous": sum(1 for m in result.measurements if m.ambiguous),
                         "pixel_period_ms": 1e3 * result.timing["pixel_period_s"],
                         "line_period_ms": 1e3 * result.timing["line_period_s"],
                         "section_s": float(np.median([r.t_end_s - r.t_start_s for r in result.sections]))})
            print("pairs", json.dumps(runs[-1]))
    return {"si_size_px": [size, size], "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller SIs (a smoke run)")
    parser.add_argument("--only", choices=("spatial", "spatial_nanoparticles", "energy", "eegs", "abort", "delivery",
                                                  "pairs"),
                        default=None)
    args = parser.parse_args()
    figures: dict[str, typing.Any] = {}
    if RESULTS.exists():
        try:
            figures = json.loads(RESULTS.read_text())
        except ValueError:
            figures = {}
    def nanoparticles(quick: bool) -> dict[str, typing.Any]:
        return spatial_scenario(quick, sample="nanoparticles", sample_options=NANOPARTICLES)

    for name, fn in (("spatial", spatial_scenario), ("spatial_nanoparticles", nanoparticles),
                     ("energy", energy_scenario), ("eegs", eegs_scenario), ("abort", abort_scenario),
                     ("delivery", delivery_scenario), ("pairs", pairs_scenario)):
        if args.only in (None, name):
            figures[name] = fn(args.quick)
            figures["quick"] = args.quick
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(figures, indent=1))  # after each scenario: a later failure keeps it
            print("written", RESULTS, name)


if __name__ == "__main__":
    main()
