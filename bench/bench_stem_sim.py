"""Benchmark: a 64x64 spectrum image of 1024 channels through Swift's synchronized acquisition on the simulator.

Run: ``.venv/bin/python bench/bench_stem_sim.py [--exposure-ms 1.0] [--size 64]``. Prints wall time of
``grab_synchronized`` (the target is < 10 s for 64x64x1024 on the development machine), the per-pixel cost and the
time spent in the spectrum simulation itself (EELS ``get_frame_data``), to separate Swift's overhead.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from nion.instrumentation import stem_controller  # noqa: E402
from nion.utils import Geometry  # noqa: E402

from instrument_sim.configuration import SimulatorConfiguration  # noqa: E402
from instrument_sim.drift import DriftModel, EnergyDriftModel  # noqa: E402
from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES, stem_parts  # noqa: E402
from nionswift_plugin.insitu.headless import HeadlessSwift  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exposure-ms", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--sample", default="perovskite")
    args = parser.parse_args()
    config = SimulatorConfiguration(seed=1, device_factories=STEM_DEVICE_FACTORIES,
                                    drift=DriftModel(rate_nm_per_s=(0.02, 0.01), random_walk_nm_per_sqrt_s=0.01),
                                    energy_drift=EnergyDriftModel(rate_meV_per_s=5.0))
    with HeadlessSwift(config, with_window=False) as swift:
        instrument = swift.simulator.instrument
        parts = stem_parts(instrument)
        parts.specimen.load(args.sample)
        instrument.SetVal("ZLPoffset", 370.0)
        instrument.SetVal("EELS_Dispersion", 1.0)
        scan = swift.hardware_source("insitu_scan")
        eels = swift.hardware_source("insitu_eels_camera")
        sfp = scan.get_current_frame_parameters()
        sfp.size = Geometry.IntSize(args.size, args.size)
        sfp.fov_nm = 4.0
        cfp = eels.get_current_frame_parameters()
        cfp.exposure_ms = args.exposure_ms
        cfp.binning = 1
        cfp.processing = "sum_project"
        # spectrum simulation alone (the simulator's share of the time)
        sim = parts.eels_simulator
        context = stem_controller.ScanContext(Geometry.IntSize(), Geometry.FloatPoint(), 0.0, 0.0)
        area = Geometry.IntRect.from_tlbr(0, 0, *instrument.camera_sensor_dimensions("eels"))
        n = 500
        t0 = time.perf_counter()
        for _ in range(n):
            sim.get_frame_data(area, Geometry.IntSize(1, 1), args.exposure_ms / 1000, context, None)
        per_frame_ms = (time.perf_counter() - t0) / n * 1000
        t0 = time.perf_counter()
        scans, sis = scan.grab_synchronized(scan_frame_parameters=sfp, camera=eels, camera_frame_parameters=cfp)
        wall = time.perf_counter() - t0
        si = sis[0]
        frames = args.size * (args.size + 2)
        print(f"SI {si.data.shape} ({si.data.dtype}), HAADF {scans[0].data.shape}, exposure {args.exposure_ms} ms")
        print(f"grab_synchronized wall time: {wall:.2f} s ({wall / frames * 1000:.2f} ms per camera frame incl. "
              f"flyback; floor from exposure alone {frames * args.exposure_ms / 1000:.2f} s)")
        print(f"EELS frame simulation alone: {per_frame_ms:.3f} ms per {area.height}x{area.width} frame")


if __name__ == "__main__":
    main()
