"""Benchmark the in-situ scene and camera: render time per frame and frames per second through device_kit.

Run: ``.venv/bin/python bench/bench_insitu_camera.py`` (about 30 s). Prints a table; no assertions.
Wall times depend on what else runs on the machine; the CPU column (process time) much less.
"""
from __future__ import annotations

import statistics
import time
import typing

import numpy as np

from instrument_sim.configuration import SimulatorConfiguration, build_simulator, unregister_simulator
from instrument_sim.drift import DriftModel
from instrument_sim.insitu_scene import InSituScene
from instrument_sim.noise import shot_noise


def _time_ms(fn: typing.Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """(median wall ms, max wall ms, median CPU ms of the process). CPU time does not count waiting for a core,
    so it is the figure to trust when other processes share the machine."""
    fn()  # warm-up (numba compile, caches)
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return statistics.median(wall), max(wall), statistics.median(cpu)


def bench_render() -> None:
    drift = DriftModel(rate_nm_per_s=(0.3, -0.2), random_walk_nm_per_sqrt_s=0.05, seed=1)
    for side in (1024, 2048):
        start = time.perf_counter()
        scene = InSituScene(shape_px=(side, side), drift=drift, seed=1)
        print(f"{f'scene construction {side}^2':48s} {(time.perf_counter() - start) * 1e3:10.1f}")
        rng = np.random.default_rng(0)
        t = [0.0]

        def render(binning: int = 1, exposure_s: float = 0.05) -> object:
            t[0] += 0.05  # new drift offset every frame
            return scene.render(t[0], exposure_s=exposure_s, rng=rng, binning=binning)

        for label, fn in ((f"render {side}^2, 50 ms (60 e/px, normal noise)", lambda: render()),
                          (f"render {side}^2, 5 ms (6 e/px, exact Poisson)", lambda: render(exposure_s=0.005)),
                          (f"render {side}^2 binning 2", lambda: render(binning=2)),
                          (f"clean image {side}^2 (no noise)", lambda: scene.clean_image(t[0] + 0.05)),
                          (f"shot noise only {side}^2 (lam=60)",
                           lambda: shot_noise(np.full((side, side), 60, np.float32), rng))):
            median, worst, cpu = _time_ms(fn, 20)
            print(f"{label:48s} {median:10.1f} {worst:8.1f} {cpu:8.1f}")


def bench_camera_fps() -> None:
    for side, exposure_ms in ((1024, 50.0), (1024, 20.0), (1024, 5.0), (2048, 50.0)):
        handle = build_simulator(SimulatorConfiguration(frame_shape=(side, side), exposure_ms=exposure_ms))
        try:
            device = handle.insitu_camera.device
            settings = handle.insitu_camera.settings
            device.set_frame_parameters(settings.get_current_frame_parameters())
            device.start_live()
            device.acquire_image()
            n = 0
            start = time.perf_counter()
            while time.perf_counter() - start < 3.0:
                device.acquire_image()
                n += 1
            fps = n / (time.perf_counter() - start)
            device.stop_live()
            print(f"camera {side}^2 exposure {exposure_ms:4.0f} ms: {fps:5.1f} frames/s "
                  f"(ideal {1000 / exposure_ms:5.1f})")
        finally:
            unregister_simulator(handle)


def bench_drift() -> None:
    model = DriftModel(rate_nm_per_s=(0.1, 0.1), sine_amplitude_nm=(1, 1), random_walk_nm_per_sqrt_s=0.3,
                       jump_rate_per_s=0.1, jump_size_nm=1.0, seed=0)
    t = 30.0 + np.arange(1_000_000) * 1e-6
    median, worst, cpu = _time_ms(lambda: model.offset_nm(t), 10)
    print(f"{'DriftModel.offset_nm, 1e6 times':48s} {median:10.1f} {worst:8.1f} {cpu:8.1f}")


if __name__ == "__main__":
    print(f"{'case':48s} {'median ms':>10s} {'max ms':>8s} {'CPU ms':>8s}")
    bench_drift()
    bench_render()
    bench_camera_fps()
