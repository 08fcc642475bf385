"""Threshold tracking on the playing simulated camera in headless Swift: the marker graphic on the output display
sits on the simulated particle (ground truth of the in-situ scene) after the frames of each time step."""
from __future__ import annotations

import math
import time
import typing

import numpy as np
import pytest
from nion.swift.model import Graphics
from nion.utils import Geometry

from instrument_sim.instrument import ManualClock
from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu.headless import HeadlessSwift
from nionswift_plugin.insitu.live_engine import ENGINE
from processing.base import crop_fractional

CAMERA_ID = "insitu_camera"
SHAPE = (256, 256)
# seed 7: one particle of radius 37.1 px near (125, 74) at t = 1 s, at least 36 px from the frame edges; the default
# drift (0.05, 0.03 nm/s + random walk) moves it by about (17, 10) px in 20 s
SEED = 7
TIMES_S = (1.0, 21.0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(TIMES_S[0])


@pytest.fixture
def swift(clock: ManualClock) -> typing.Iterator[HeadlessSwift]:
    from instrument_sim import configuration
    from processing import warmup
    warmup.warm_up()
    config = configuration.SimulatorConfiguration(seed=SEED, frame_shape=SHAPE, n_particles=1, melt_period_s=None,
                                                  clock=clock)
    with HeadlessSwift(config) as session:
        yield session


def _frames_processed(swift: HeadlessSwift, runner: typing.Any, count: int, timeout_s: float = 10.0) -> None:
    """Pump Swift until the runner has processed ``count`` more frames (and their results are committed)."""
    start = runner.stats.frames_processed
    deadline = time.monotonic() + timeout_s
    while runner.stats.frames_processed < start + count:
        assert time.monotonic() < deadline, f"only {runner.stats.frames_processed - start} frames in {timeout_s} s"
        swift.pump(0.05)
    swift.pump(computations.DISPLAY_INTERVAL_S + 0.3)  # the display refresh of live outputs is capped


def _marker(swift: HeadlessSwift, data_item: typing.Any) -> Graphics.EllipseGraphic:
    display_item = swift.document_model.get_display_item_for_data_item(data_item)
    ellipses = [g for g in display_item.graphics if isinstance(g, Graphics.EllipseGraphic)]
    assert len(ellipses) == 1, display_item.graphics
    return ellipses[0]


def test_tracking_marker_sits_on_the_simulated_particle_after_each_frame(swift: HeadlessSwift,
                                                                         clock: ManualClock) -> None:
    simulator = swift.simulator.insitu_camera.simulator
    truths = [simulator.truth(t).particles[0] for t in TIMES_S]
    assert all(p.inside_frame for p in truths)
    # an ROI around the particle at both times (not centred on it: the crop origin matters)
    margin = truths[0].radius_px + 22.0
    top = min(p.centre_px[0] for p in truths) - margin
    left = min(p.centre_px[1] for p in truths) - margin + 5.0
    bottom = max(p.centre_px[0] for p in truths) + margin
    right = max(p.centre_px[1] for p in truths) + margin
    bounds = ((top / SHAPE[0], left / SHAPE[1]), ((bottom - top) / SHAPE[0], (right - left) / SHAPE[1]))
    ys, xs = crop_fractional(SHAPE, bounds)

    camera = swift.hardware_source(CAMERA_ID)
    live, display_item = swift.play(CAMERA_ID, exposure_ms=20)
    roi = Graphics.RectangleGraphic()
    roi.bounds = Geometry.FloatRect.from_tlhw(bounds[0][0], bounds[0][1], bounds[1][0], bounds[1][1])
    display_item.add_graphic(roi)
    output = computations.attach(swift.document_model, "insitu.threshold_tracking", display_item, roi=roi,
                                 parameters={"polarity": "dark", "smooth_sigma_px": 2.0})
    computation = swift.document_model.get_data_item_computation(output)
    deadline = time.monotonic() + 10.0
    while (runner := ENGINE.find_runner(computation)) is None or not runner.is_streaming:
        assert time.monotonic() < deadline, f"no streaming runner; computation error: {computation.error_text}"
        swift.pump(0.05)
    try:
        for t_s, particle in zip(TIMES_S, truths):
            clock.set(t_s)
            _frames_processed(swift, runner, 4)  # the frames after the clock change show the scene at t_s
            assert not computation.error_text
            xdata = output.xdata
            assert xdata is not None and xdata.data_shape == (ys.stop - ys.start, xs.stop - xs.start)
            h, w = xdata.data_shape
            marker = _marker(swift, output)
            # Swift's image coordinates: pixel [i, j] covers [i, i+1) x [j, j+1), its centre is (i + 0.5, j + 0.5)
            centre = (marker.bounds.center.y * h - 0.5 + ys.start, marker.bounds.center.x * w - 0.5 + xs.start)
            error_px = math.hypot(centre[0] - particle.centre_px[0], centre[1] - particle.centre_px[1])
            assert error_px <= 0.5, (t_s, centre, particle.centre_px)
            radius_y, radius_x = marker.bounds.height * h / 2, marker.bounds.width * w / 2
            assert radius_y == pytest.approx(radius_x, rel=1e-9)
            # the marker radius is sqrt(convex area / pi) of the last point of the track (nm^2 -> px^2)
            track = computation.get_output("track")
            assert track is not None and track.xdata is not None
            area_px = float(track.xdata.data[2, -1]) / simulator.scene.pixel_size_nm ** 2
            assert radius_y == pytest.approx(math.sqrt(area_px / math.pi), rel=1e-6)
            # and the convex area is the particle's (within 5 %)
            assert area_px == pytest.approx(math.pi * particle.radius_px ** 2, rel=0.05)
            # the time-series centre (nm) is the marker's
            np.testing.assert_allclose(np.asarray(track.xdata.data[1::-1, -1]) / simulator.scene.pixel_size_nm,
                                       centre, atol=1e-3)
    finally:
        camera.stop_playing(sync_timeout=5.0)
