"""An immediate abort keeps every line the camera completed in the section being scanned (issue 13, failure 6).

The simulated EELS camera delivers a synchronized acquisition line by line; an immediate abort cancels the camera,
lets Swift hand over the completed lines, then aborts the scan. Ground truth: the camera's own read-out buffer at the
last piece it completed (recorded here as the camera hands it to Swift), so the kept lines must be exactly the lines
the camera completed, with exactly its spectra, and nothing else marked acquired. (Not the simulator's frames one by
one: device_kit's camera thread may read a frame again when its exposure wait is interrupted.)

Old behaviour: the section being scanned kept nothing (Swift drops the piece still in its pipeline, and device_kit's
camera delivered a whole section in one piece), whatever the abort point.
"""
from __future__ import annotations

import typing

import numpy as np
import pytest
from nion.utils import Geometry

from instrument_sim.configuration import SimulatorConfiguration
from instrument_sim.drift import DriftModel
from instrument_sim.stem_devices import STEM_DEVICE_FACTORIES, stem_parts
from nionswift_plugin.insitu import drift_si
from nionswift_plugin.insitu.headless import HeadlessSwift

W = 16          # SI width (px)
FLYBACK = 2     # flyback frames at the start of every line (the simulated scan's)
LINE = W + FLYBACK
SECTION = 8     # lines per section


class Session(typing.NamedTuple):
    swift: HeadlessSwift
    parts: typing.Any
    scan: typing.Any


@pytest.fixture(scope="module")
def session() -> typing.Iterator[Session]:
    config = SimulatorConfiguration(seed=7, drift=DriftModel(rate_nm_per_s=(0.1, -0.05), seed=7),
                                    device_factories=STEM_DEVICE_FACTORIES)
    with HeadlessSwift(config, with_window=False) as swift:
        scan = swift.hardware_source("insitu_scan")
        fp = scan.get_current_frame_parameters()
        fp.fov_nm = 16.0
        fp.pixel_size = Geometry.IntSize(256, 256)
        scan.set_current_frame_parameters(fp)
        yield Session(swift, stem_parts(swift.simulator.instrument), scan)


def _settings(**kw: typing.Any) -> drift_si.DriftSISettings:
    base: dict[str, typing.Any] = dict(si_size_px=(16, W), section_lines=SECTION, exposure_s=0.002, camera_binning=1,
                                       scan_field=(0.375, 0.375, 0.25, 0.25), alias_safe_sections=False,
                                       reference_region=(0.05, 0.05, 0.15, 0.15), reference_size_px=32,
                                       abort_drain_s=3.0)  # longer than the default 0.5 s: a loaded machine
    base.update(kw)
    return drift_si.DriftSISettings(**base)


def _run_with_abort(session: Session, grab_number: int, frame_number: int
                    ) -> tuple[drift_si.DriftSIResult, int, np.ndarray]:
    """Run; abort immediately while the camera reads frame ``frame_number`` (1-based, flyback frames included) of
    synchronized grab ``grab_number`` (1: timing probe, 2: section 0, 3: section 1). Returns the result, the frames
    the camera read in that grab and its own read-out buffer at its last completed piece: (pixels, E) spectra in
    scan order, flyback included (summed over the sensor rows, as Swift's sum_project)."""
    run = drift_si.DriftCorrectedSI(_settings())
    sim = session.parts.eels_simulator
    camera = session.parts.eels_module.camera_device
    original_frame, original_grab = sim.get_frame_data, session.scan.grab_synchronized
    original_continue = camera.acquire_synchronized_continue
    state: dict[str, typing.Any] = {"grab": 0, "frames": 0, "completed": np.zeros((0, 1))}

    def grab(*args: typing.Any, **kw: typing.Any) -> typing.Any:
        state["grab"] += 1
        return original_grab(*args, **kw)

    def frame(*args: typing.Any, **kw: typing.Any) -> typing.Any:
        xdata = original_frame(*args, **kw)
        if state["grab"] == grab_number:
            state["frames"] += 1
            if state["frames"] == frame_number:
                run.abort(immediately=True)
        return xdata

    def read_out(**kw: typing.Any) -> typing.Any:  # the camera's own record of the pieces it completed
        partial = original_continue(**kw)
        if state["grab"] == grab_number and not partial.is_canceled and partial.valid_count:
            data = np.asarray(partial.xdata.data, dtype=np.float64)
            state["completed"] = data.reshape(-1, data.shape[-1])[:partial.valid_count].copy()
        return partial

    session.scan.grab_synchronized = grab
    sim.get_frame_data = frame
    camera.acquire_synchronized_continue = read_out
    try:
        result = run.run()
    finally:
        del session.scan.grab_synchronized
        del sim.get_frame_data
        del camera.acquire_synchronized_continue
    return result, int(state["frames"]), np.asarray(state["completed"])


# abort points in section 1 (frame numbers, 1-based): inside line 0 (no line complete), inside a line, on the last
# pixel of a line, on a flyback frame, and two seeded random points
_POINTS = [5, 2 * LINE + 9, 5 * LINE, 6 * LINE + 1] + [int(v) for v in
                                                       np.random.default_rng(13).integers(1, SECTION * LINE, 2)]


@pytest.mark.parametrize("frame_number", _POINTS)
def test_immediate_abort_keeps_exactly_the_completed_lines_of_the_section(session: Session,
                                                                         frame_number: int) -> None:
    result, n_frames, read_out = _run_with_abort(session, 3, frame_number)
    assert result.state == "aborted" and not result.complete
    assert len(read_out) % LINE == 0  # the camera completes whole lines (one piece per line)
    completed = len(read_out) // LINE  # lines the camera completed (its own read-out; a frame may follow the call)
    assert frame_number // LINE <= completed <= n_frames // LINE
    main = result.main
    assert main is not None
    first = [r for r in result.sections if r.row0 == 0]
    assert len(first) == 1 and first[0].complete and first[0].pixels_acquired == SECTION * W
    kept_rows = SECTION + completed
    # exactly the rows scanned are marked acquired, in the spectra, the raw SI and the HAADF
    expected = np.zeros((16, W), bool)
    expected[:kept_rows] = True
    assert np.array_equal(main.aligned.valid_pixels, expected), (completed, main.aligned.valid_pixels.sum(axis=1))
    assert np.array_equal(main.raw.valid_pixels, expected)
    # the HAADF of a line arrives once the scan has moved on: the last kept line may lack it (NaN, counted)
    haadf_rows = main.haadf.valid_pixels.sum(axis=1)
    assert not (main.haadf.valid_pixels & ~expected).any() and np.all(haadf_rows[:kept_rows - 1] == W)
    haadf = result.haadf_xdata()
    assert np.array_equal(np.isfinite(haadf.data), main.haadf.valid_pixels[:kept_rows])
    assert haadf.metadata["drift_si"]["valid_pixels_per_row"] == haadf_rows[:kept_rows].tolist()
    if completed:
        lines = read_out.reshape(completed, LINE, -1)[:, FLYBACK:]  # Swift drops the flyback
        np.testing.assert_array_equal(main.raw.data[SECTION:kept_rows], lines)
        assert np.all(main.raw.data[kept_rows:] == 0)
        second = result.sections[-1]
        assert second.row0 == SECTION and not second.complete and second.pixels_acquired == completed * W
        assert not second.trusted and any(f.startswith("incomplete") for f in second.flags)
        assert np.all(main.source_section[SECTION:kept_rows] == second.index)
        assert not result.trusted_pixels()[SECTION:].any()
        assert f"stopped after {completed} of its {SECTION} lines" in result.message
    else:  # nothing of section 1 was completed: no record for it, nothing of it kept
        assert [r.row0 for r in result.sections] == [0]
    # the delivered SI: every acquired row, marked incomplete, the per-row counts say which pixels are real
    xdata = result.si_xdata()
    meta = xdata.metadata["drift_si"]
    assert xdata.data_shape[0] == kept_rows and meta["complete"] is False and meta["state"] == "aborted"
    assert meta["valid_pixels_per_row"] == [W] * kept_rows + [0] * (16 - kept_rows)
    assert f"{kept_rows * W} pixels acquired are kept" in result.message


def test_immediate_abort_in_the_timing_probe_gives_a_valid_empty_result(session: Session) -> None:
    result, _frames, _read_out = _run_with_abort(session, 1, 3)
    assert result.state == "aborted" and result.sections == []
    xdata = result.si_xdata()
    assert xdata.data_shape[0] == 0 and xdata.metadata["drift_si"]["acquired_pixels"] == 0
    assert "no SI pixel was acquired" in result.message


def test_a_normal_run_is_delivered_line_by_line_and_complete(session: Session) -> None:
    """The line-by-line delivery changes nothing in a complete run: every pixel once, one piece per line."""
    run = drift_si.DriftCorrectedSI(_settings())
    result = run.run()
    assert result.complete and result.main is not None and result.main.aligned.complete
    assert [r.rows for r in result.sections if not r.superseded] == [SECTION, SECTION]
    channel = run._data_channel
    assert channel is not None and [n for _t, n in channel.deliveries] == [W * k for k in range(1, SECTION + 1)]
