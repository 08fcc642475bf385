"""Energy-series auto-exposure sweep on the simulator (no Swift): for random seeds (specimen, drift, beam current,
start exposure), an EFTEM series 0-600 eV; reports per series the exposures used, dark references, retakes, slices
outside the thresholds, saturated slices and the time spent (simulated exposure time and wall time).

    .venv/bin/python bench/bench_series.py [--seeds 10]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from instrument_sim.configuration import (SimulatorConfiguration, build_simulator, insitu_camera_factory,  # noqa: E402
                                          unregister_simulator)
from instrument_sim.detector import CameraArtefacts  # noqa: E402
from instrument_sim.drift import DriftModel  # noqa: E402
from instrument_sim.insitu_camera import SimulatorSeriesDevice  # noqa: E402
from instrument_sim.instrument import ManualClock  # noqa: E402
from processing.stack.exposure import AutoExposurePolicy  # noqa: E402
from processing.stack.series import energy_series_plan, run_series  # noqa: E402


def one(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    handle = build_simulator(SimulatorConfiguration(
        seed=seed, frame_shape=(96, 96), n_particles=1, melt_period_s=None, clock=ManualClock(1.0),
        drift=DriftModel(rate_nm_per_s=tuple(rng.uniform(-0.05, 0.05, 2)), seed=seed),
        device_factories=[insitu_camera_factory]))
    try:
        sim = handle.insitu_camera.simulator
        sim.artefacts = CameraArtefacts(seed=seed)
        handle.instrument.set_value("BeamCurrent", float(rng.uniform(5e-9, 40e-9)))
        device = SimulatorSeriesDevice(sim)
        policy = AutoExposurePolicy(full_scale_counts=16383, min_exposure_s=0.0002, max_exposure_s=30.0)
        plan = energy_series_plan(0.0, 25.0, 25, slit_width_eV=10.0)
        t0 = time.perf_counter()
        result = run_series(device, plan, exposure_s=float(2.0 ** rng.integers(-8, 0)), policy=policy,
                            max_retakes=3, ignore_mask=sim.artefacts.maps((96, 96)).hot)
        wall = time.perf_counter() - t0
        hot = sim.artefacts.maps((96, 96)).hot
        return {"exposures": len(result.exposures_used_s), "darks": result.n_darks,
                "retakes": sum(len(s.tried_exposures_s) for s in result.slices),
                "max_retakes_per_slice": max(len(s.tried_exposures_s) for s in result.slices),
                "outside": sum(s.status != "ok" for s in result.slices),
                "saturated": sum(int((result.raw[k][~hot] >= 16383).any()) for k in range(len(result.slices))),
                "exposure_time_s": sum(s.exposure_s for s in result.slices), "wall_s": wall,
                "range": max(result.exposures_used_s) / min(result.exposures_used_s)}
    finally:
        unregister_simulator(handle)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    rows = [one(100 + s) for s in range(args.seeds)]
    for key in rows[0]:
        v = np.asarray([r[key] for r in rows], float)
        print(f"{key:22s} median {np.median(v):8.3g}  p90 {np.percentile(v, 90):8.3g}  worst {v.max():8.3g}")


if __name__ == "__main__":
    main()
