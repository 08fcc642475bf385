"""Offline runs (processing.execution.offline): the full result of each processor over a recorded stack, in this
process; ground truth from a synthetic movie whose disc positions are known; Ctrl-C/cancel keep what is done."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from processing.base import Calibration, Frame, InputError, ParameterError
from processing.execution.chunks import run_frames
from processing.execution.offline import resolve_processors, run_offline
from processing.io.stacks import stack_from_array
from processing.live.fft_analysis import radial_profile

NM = Calibration(0.0, 0.5, "nm")


def disc_movie(seed: int, n: int = 24, size: int = 96, radius_px: float = 7.0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(movie (n, size, size) float32, true centres (n, 2) (y, x) px, timestamps (n,) s): a bright disc on a
    random walk over noise (seeded)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    centre = np.array([size / 2, size / 2]) + rng.uniform(-10, 10, 2)
    movie = np.empty((n, size, size), np.float32)
    centres = np.empty((n, 2))
    for i in range(n):
        centre = np.clip(centre + rng.normal(0, 1.5, 2), radius_px + 4, size - radius_px - 4)
        centres[i] = centre
        disc = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) <= radius_px ** 2
        movie[i] = 10.0 + 100.0 * disc + rng.normal(0, 3.0, (size, size))
    times = 0.1 * np.arange(n) + 5.0
    return movie, centres, times


def test_copy_result_is_every_input_frame_with_its_calibration_and_times() -> None:
    movie, _, times = disc_movie(1, n=10)
    stack = stack_from_array(movie, calibrations=(NM, NM), timestamps_s=times)
    run = run_offline("insitu.copy", stack, progress=False, block_frames=3)
    seq = run["insitu.copy"].images["image"]
    assert run.complete and not run.interrupted
    np.testing.assert_array_equal(seq.data, movie)
    np.testing.assert_array_equal(seq.frame_numbers, np.arange(10))
    np.testing.assert_allclose(seq.times_s, times)
    assert seq.calibrations == (NM, NM)


@pytest.mark.parametrize("seed", range(6))
def test_tracking_marker_table_follows_the_true_disc_centre(seed: int) -> None:
    movie, centres, times = disc_movie(seed)
    run = run_offline("insitu.threshold_tracking", stack_from_array(movie, timestamps_s=times), progress=False,
                      block_frames=5)
    result = run["insitu.threshold_tracking"]
    table = result.markers["marker"]
    assert len(table.rows()) == len(movie) and table.visible.all()
    error_px = np.hypot(table.center_y_px - centres[:, 0], table.center_x_px - centres[:, 1])
    assert np.median(error_px) < 0.5 and error_px.max() < 1.5, error_px
    series = result.time_series["track"]
    assert series.values.shape == (3, len(movie))  # the whole time plot: one point per frame
    np.testing.assert_allclose(series.times_s, times)
    np.testing.assert_allclose(series.values[0], table.center_x_px)  # uncalibrated: x in px
    assert result.provenance["frame_range"] == [0, len(movie)]
    assert result.provenance["timestamps_s"] == [pytest.approx(times[0]), pytest.approx(times[-1])]


def test_whole_kymograph_has_one_column_per_frame_beyond_the_live_window() -> None:
    rng = np.random.default_rng(3)
    movie = rng.random((30, 64, 64), dtype=np.float32)
    run = run_offline("insitu.radial_kymograph", movie, parameters={"window_frames": 8}, progress=False,
                      block_frames=7)
    kymo = run["insitu.radial_kymograph"].kymographs["kymograph"]
    assert kymo.data.shape[1] == 30  # not the 8-frame window
    for i in (0, 13, 29):
        expected = np.log(np.maximum(radial_profile(movie[i]), np.finfo(np.float32).tiny))
        np.testing.assert_allclose(kymo.data[:, i], expected, rtol=1e-5)
    np.testing.assert_array_equal(kymo.frame_numbers, np.arange(30))
    assert run["insitu.radial_kymograph"].times_are_frames  # no timestamps in a bare array: said so
    assert any("no timestamps" in m for m in run.messages)


def test_several_processors_in_one_run_each_equal_its_own_sequential_run() -> None:
    movie, _, times = disc_movie(4, n=16, size=128)
    ids = ["insitu.live_difference", "insitu.max_fft", "insitu.fft_orientation", "insitu.noise_reduction"]
    run = run_offline(ids, stack_from_array(movie, timestamps_s=times), progress=False, block_frames=5)
    frames = [Frame(m, frame_number=i, timestamp_s=t) for i, (m, t) in enumerate(zip(movie, times))]
    for spec in resolve_processors(ids):
        alone = run_frames(spec.cls(**spec.parameters), frames)
        result = run[spec.processor_id]
        for name, seq in result.images.items():
            for i, outputs in enumerate(alone):
                out = next(o for o in outputs if o.name == name)
                np.testing.assert_array_equal(seq.data[i], out.data)


def test_frame_range_selects_start_stop() -> None:
    movie, _, times = disc_movie(5, n=12)
    run = run_offline("insitu.copy", stack_from_array(movie, timestamps_s=times), frames=slice(3, 9),
                      progress=False)
    seq = run["insitu.copy"].images["image"]
    np.testing.assert_array_equal(seq.frame_numbers, np.arange(3, 9))
    np.testing.assert_array_equal(seq.data, movie[3:9])
    assert run["insitu.copy"].provenance["frame_range"] == [3, 9]
    with pytest.raises(InputError, match="selects no frame"):
        run_offline("insitu.copy", movie, frames=(20, 30), progress=False)


def test_parameters_flat_targeted_and_per_processor() -> None:
    specs = resolve_processors(["insitu.live_difference", "insitu.radial_kymograph"],
                               {"fast": 3, "insitu.radial_kymograph:window_frames": 16})
    assert specs[0].parameters["fast"] == 3 and specs[1].parameters["window_frames"] == 16
    specs = resolve_processors(["insitu.live_difference"], {"insitu.live_difference": {"slow": 40}})
    assert specs[0].parameters["slow"] == 40
    with pytest.raises(ParameterError, match="no processor of this run has a parameter 'sigma'"):
        resolve_processors(["insitu.live_difference"], {"sigma": 2})
    with pytest.raises(ParameterError, match="outside its range"):
        resolve_processors(["insitu.radial_kymograph"], {"window_frames": 1})
    with pytest.raises(ParameterError, match="no processor 'insitu.nope'"):
        resolve_processors(["insitu.nope"])


def test_nan_frames_are_skipped_with_a_message_and_the_rest_computed() -> None:
    movie, _, times = disc_movie(6, n=10)
    movie[4, 10, 10] = np.nan
    run = run_offline(["insitu.copy", "insitu.live_difference"], stack_from_array(movie, timestamps_s=times),
                      progress=False, block_frames=3)
    for pid in ("insitu.copy", "insitu.live_difference"):
        result = run[pid]
        assert [f for f, _ in result.failed_frames] == [4]
        assert "NaN" in result.failed_frames[0][1] and "frame 4" in result.failed_frames[0][1]
        assert result.images["image"].frame_numbers.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9]
        assert result.provenance["frames_processed"] == 9 and result.provenance["frames_dropped"] == 1
    np.testing.assert_array_equal(run["insitu.copy"].images["image"].data[4], movie[5])


def test_frames_of_changing_shape_are_refused_with_the_shapes() -> None:
    frames = [np.zeros((32, 32), np.float32)] * 3 + [np.zeros((32, 40), np.float32)]
    with pytest.raises(InputError, match=r"frame 3 is \(32, 40\)"):
        run_offline("insitu.copy", frames, progress=False)


def test_cancel_keeps_the_frames_done_and_marks_the_result_incomplete() -> None:
    movie, _, times = disc_movie(7, n=20)
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 7:
            cancel.set()

    run = run_offline("insitu.copy", stack_from_array(movie, timestamps_s=times), progress=progress,
                      block_frames=4, cancel=cancel)
    seq = run["insitu.copy"].images["image"]
    assert run.interrupted and not run.complete and not run["insitu.copy"].complete
    assert 7 <= seq.data.shape[0] < 20
    np.testing.assert_array_equal(seq.data, movie[:seq.data.shape[0]])


def test_ctrl_c_keeps_the_frames_done_and_writes_them_marked_incomplete(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from processing.io.results import read_provenance

    movie, _, times = disc_movie(8, n=20)

    def progress(done: int, total: int) -> None:
        if done == 9:
            raise KeyboardInterrupt

    out = tmp_path / "partial.hspy"
    run = run_offline("insitu.copy", stack_from_array(movie, timestamps_s=times), progress=progress,
                      block_frames=4, output=out)
    assert run.interrupted and run.output_path == str(out)
    assert run["insitu.copy"].images["image"].data.shape[0] == 9
    provenance = read_provenance(out)
    assert provenance["insitu.copy image"]["complete"] is False
    assert provenance["insitu.copy image"]["frame_range"] == [0, 9]
    assert any("partial results written" in m for m in run.messages)


def test_large_image_sequences_are_kept_on_disk_not_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from processing.execution import collect
    monkeypatch.setattr(collect, "IN_MEMORY_LIMIT_BYTES", 1000)
    movie, _, _ = disc_movie(9, n=6, size=32)
    seq = run_offline("insitu.copy", movie, progress=False)["insitu.copy"].images["image"]
    assert isinstance(seq.data.base, np.memmap) or isinstance(seq.data, np.memmap)
    np.testing.assert_array_equal(seq.data, movie)
