"""Live processors against the simulated in-situ scene's ground truth."""
from __future__ import annotations

import numpy as np

from instrument_sim.insitu_scene import InSituScene
from processing import Context, make_frame
from processing.live.filters import LiveDifferenceProcessor, NoiseReductionProcessor


def _disk(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    return (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius ** 2


def test_live_difference_is_high_exactly_where_the_simulated_particle_melted() -> None:
    scene = InSituScene(shape_px=(320, 320), n_particles=4, melt_period_s=3.0, molten_duration_s=1.0, seed=3)
    rng = np.random.default_rng(0)
    t_change, changed = 1.5, []
    while not changed and t_change < 30:  # the first transition of a particle that lies wholly in the frame
        t_change = scene.next_transition_s(t_change)
        before, after = scene.truth(t_change - 1e-3), scene.truth(t_change + 1e-3)
        changed = [a for b, a in zip(before.particles, after.particles) if a.molten != b.molten and a.inside_frame]
    assert changed, "no particle inside the frame melts or recrystallises in 30 s"
    processor = LiveDifferenceProcessor(fast=2, slow=20)
    dt_s = 0.05
    times = np.arange(t_change - 1.5, t_change + 0.2, dt_s)
    for t in times:
        frame = scene.render(float(t), exposure_s=dt_s, rng=rng, dose_e_per_px=300.0)  # a 20 fps camera at 6000 e/px/s
        out = processor.process(make_frame(frame, timestamp_s=float(t)), Context())[0].data
    smooth = NoiseReductionProcessor(median_size_px=0, sigma_px=2.0).process(make_frame(out), Context())[0].data
    inside = np.zeros(out.shape, bool)
    for particle in changed:
        inside |= _disk(out.shape, particle.centre_px, 0.8 * particle.radius_px)
    near_any = np.zeros(out.shape, bool)
    for particle in after.particles:
        near_any |= _disk(out.shape, particle.centre_px, particle.radius_px + 4)
    ratio = smooth[inside].mean() / smooth[~near_any].mean()
    assert ratio > 3.0, f"difference inside the melted particle / elsewhere = {ratio:.2f}"
