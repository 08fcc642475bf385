"""Does the live *Denoised SI* option slow a drift-corrected SI? (issue 12)

    .venv/bin/python bench/bench_live_denoise.py [--size 32] [--repeats 2]

Headless Swift with the simulated STEM (as tests/plugin/test_decompose.py): the same SI (size x size, 4-line
sections, 2 ms exposure, no drift correction) with the live PCA (3 components) without and with the denoised SI,
alternating, ``repeats`` times each. Per run: wall time of the whole run, ms per live update (median / worst), the
median section interval and the updates skipped. Run on a shared machine, the absolute times are inflated: compare
the two options within the run.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from instrument_sim.configuration import SimulatorConfiguration
    from instrument_sim.drift import DriftModel
    from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES
    from nion.utils import Geometry
    from nionswift_plugin.insitu import decompose_computation, drift_si
    from nionswift_plugin.insitu.headless import HeadlessSwift
    config = SimulatorConfiguration(seed=6, drift=DriftModel(rate_nm_per_s=(0.0, 0.0), seed=6),
                                    device_factories=STEM_DEVICE_FACTORIES)
    rows = []
    with HeadlessSwift(config) as s:
        instrument = s.simulator.instrument
        for name, value in (("EELS_Dispersion", 1.5), ("ZLPoffset", -20.0)):
            instrument.SetVal(name, value)
        scan = s.hardware_source("insitu_scan")
        fp = scan.get_current_frame_parameters()
        fp.fov_nm = 4.0
        fp.pixel_size = Geometry.IntSize(128, 128)
        scan.set_current_frame_parameters(fp)
        decompose_computation.register()
        for repeat in range(args.repeats):
            for reconstruct in (False, True):
                settings = drift_si.DriftSISettings(
                    si_size_px=(args.size, args.size), section_lines=4, exposure_s=0.002, camera_binning=1,
                    scan_field=(0.25, 0.25, 0.5, 0.5), correct_drift=False, correct_shear=False,
                    correct_energy=False, bootstrap_measurements=0, live_analysis="Decomposition PCA",
                    live_analysis_parameters={"n_components": 3, "poisson": True, "reconstruct": reconstruct})
                t0 = time.perf_counter()
                result = drift_si.DriftCorrectedSI(settings).run()
                wall = time.perf_counter() - t0
                st = result.live_analysis_stats
                ms = np.asarray(st["ms_per_update"][:-1] or [np.nan])
                rows.append((reconstruct, wall, float(np.median(ms)), float(np.max(ms)),
                             float(st["ms_per_update"][-1]), st["section_interval_s_median"], st["updates_skipped"],
                             result.complete))
                print(rows[-1], flush=True)
    print(f"\n| denoised SI | run wall time (s) | ms per update during the run (median / worst) | final update (ms) | "
          f"section interval (s) | updates skipped |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'on' if r[0] else 'off'} | {r[1]:.1f} | {r[2]:.0f} / {r[3]:.0f} | {r[4]:.0f} | {r[5]:.2f} | {r[6]} |")


if __name__ == "__main__":
    main()
