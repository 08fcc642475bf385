"""Offline runs on a real ``distributed.LocalCluster`` (2 worker processes, started and closed here): results equal
the single-process run for every processor kind (frame, merge, sequential), from an array and from a file read
lazily on the workers; an unreachable scheduler and a worker dying mid-run give a message and keep what is done."""
from __future__ import annotations

import os
import pathlib
import sys
import typing

import numpy as np
import pytest

from processing.base import Context, Frame, ImageOutput, Outputs, Processor
from processing.execution.collect import ProcessorResult
from processing.execution.dask_run import DaskError
from processing.execution.offline import run_offline
from processing.io.stacks import stack_from_array

import dask_probe
from test_offline import disc_movie

READER = ("processing.execution.offline", "", "read_block")  # the offline runs' block reader

distributed = pytest.importorskip("distributed")

ALL = ["insitu.copy", "insitu.noise_reduction", "insitu.live_difference", "insitu.threshold_tracking",
       "insitu.max_fft", "insitu.radial_kymograph", "insitu.fft_orientation"]


class WorkerKiller(Processor):
    """Copies the frame; kills the worker process it runs in at frame ``kill_at`` (a worker dying mid-run)."""

    processor_id = "tests.worker_killer"
    title = "Worker killer"
    split = "frame"

    def process(self, frame: Frame, context: Context) -> Outputs:
        if frame.frame_number == 13 and os.environ.get("INSITU_TEST_DASK_WORKER") == "1":
            os._exit(1)
        return (ImageOutput("image", frame.data.copy(), frame.calibrations),)


@pytest.fixture(scope="module")
def client() -> typing.Iterator[typing.Any]:
    import cloudpickle
    import dask

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test processor travels by value
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with dask_probe.local_cluster(env={"INSITU_TEST_DASK_WORKER": "1"}) as c:
            yield c


def assert_same(a: ProcessorResult, b: ProcessorResult) -> None:
    assert a.images.keys() == b.images.keys() and a.kymographs.keys() == b.kymographs.keys()
    for name in a.images:
        np.testing.assert_array_equal(a.images[name].data, b.images[name].data)
        np.testing.assert_array_equal(a.images[name].frame_numbers, b.images[name].frame_numbers)
    for name in a.kymographs:
        np.testing.assert_array_equal(a.kymographs[name].data, b.kymographs[name].data)
    for name in a.time_series:
        np.testing.assert_array_equal(a.time_series[name].values, b.time_series[name].values)
        np.testing.assert_array_equal(a.time_series[name].times_s, b.time_series[name].times_s)
    for name in a.markers:
        assert a.markers[name].rows() == b.markers[name].rows()
    assert a.notices == b.notices and a.failed_frames == b.failed_frames


@pytest.mark.parametrize("seed", [0, 1])
def test_every_processor_on_the_cluster_equals_the_single_process_run(client: typing.Any, seed: int) -> None:
    movie, _, times = disc_movie(20 + seed, n=23, size=128)
    stack = stack_from_array(movie, timestamps_s=times)
    block = [4, 7][seed]  # uneven last block
    # tracking "largest" is mergeable, "nearest" sequential: one of each seed
    params = {"insitu.threshold_tracking": {"track": ["largest", "nearest"][seed]}}
    here = run_offline(ALL, stack, parameters=params, progress=False, block_frames=block)
    there = run_offline(ALL, stack, parameters=params, progress=False, block_frames=block, client=client)
    assert there.complete and here.complete
    for pid in ALL:
        assert_same(here[pid], there[pid])
    said = any("insitu.threshold_tracking is sequential" in m and "in order" in m for m in there.messages)
    assert said == (seed == 1)


def test_a_file_is_read_lazily_by_the_workers_block_by_block(client: typing.Any, tmp_path: pathlib.Path) -> None:
    movie, _, _ = disc_movie(30, n=17, size=128)
    path = tmp_path / "movie.npy"
    np.save(path, movie)
    ids = ["insitu.live_difference", "insitu.radial_kymograph", "insitu.max_fft"]
    here = run_offline(ids, path, progress=False, block_frames=5)
    there = run_offline(ids, path, progress=False, block_frames=5, client=client.scheduler.address)  # an address
    for pid in ids:
        assert_same(here[pid], there[pid])
        assert there[pid].provenance["source"] == str(path)


def test_an_unreachable_scheduler_is_a_clear_message_before_anything_runs() -> None:
    movie, _, _ = disc_movie(31, n=4)
    calls: list[int] = []
    with pytest.raises(DaskError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'") as info:
        run_offline("insitu.copy", movie, client="tcp://127.0.0.1:9", progress=lambda d, t: calls.append(d))
    assert "dask scheduler" in str(info.value) and calls == []


def test_a_worker_dying_mid_run_keeps_the_other_blocks_and_marks_the_run_incomplete(client: typing.Any) -> None:
    """allowed-failures is 0 here, so a task queued on the dying worker may fail with it: the assertions hold for
    any such casualty (every frame is either computed, equal to the input, or listed as failed with the cause)."""
    movie, _, _ = disc_movie(32, n=24)
    run = run_offline([WorkerKiller, "insitu.live_difference"], movie, progress=False, block_frames=6,
                      client=client)
    killed = run["tests.worker_killer"]
    assert not run.complete and not killed.complete
    failed = [f for f, _ in killed.failed_frames]
    assert set(range(12, 18)) <= set(failed)  # the block holding frame 13
    assert all("worker died" in text for _, text in killed.failed_frames)
    done = killed.images["image"].frame_numbers.tolist()
    assert sorted(done + failed) == list(range(24))  # nothing silently lost
    np.testing.assert_array_equal(killed.images["image"].data, movie[done])
    assert any("frames 12-17 failed" in m for m in run.messages)
    here = run_offline("insitu.live_difference", movie, progress=False, block_frames=6)["insitu.live_difference"]
    other = run["insitu.live_difference"]
    n = other.images["image"].data.shape[0]
    np.testing.assert_array_equal(other.images["image"].data, here.images["image"].data[:n])  # a correct prefix
    assert other.complete == (n == 24)
    client.wait_for_workers(2, timeout=120)  # the nanny restarts the killed worker


def test_cancel_on_the_cluster_keeps_the_frames_done(client: typing.Any) -> None:
    import threading
    movie, _, _ = disc_movie(33, n=40)
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 8:
            cancel.set()

    run = run_offline(["insitu.copy", "insitu.live_difference"], movie, progress=progress, block_frames=4,
                      client=client, cancel=cancel)
    assert run.interrupted  # (in the rare order where the last block completes first, everything is complete)
    for pid in ("insitu.copy", "insitu.live_difference"):  # each: a correct prefix, complete only if whole
        result = run[pid]
        n = result.images["image"].data.shape[0]
        assert n >= 8 and result.complete == (n == 40)
    copy = run["insitu.copy"].images["image"].data
    np.testing.assert_array_equal(copy, movie[:copy.shape[0]])
    assert run.complete == all(run[pid].complete for pid in run)


def test_no_worker_holds_the_whole_stack(client: typing.Any, tmp_path: pathlib.Path) -> None:
    """A 40-frame file in blocks of 5 on 2 workers (one thread each): each worker reads only blocks (never more than
    5 frames at a call) and holds at most two blocks at once (the one its task reads and, at times, the previous
    task's, still being released; none of these processors' outputs or states refers to its input frames, so this
    does not depend on when the client gathers results); together they read every frame (frame processors once,
    the mergeable ones in their two passes)."""
    n, block = 40, 5
    movie, _, _ = disc_movie(34, n=n, size=96)
    path = tmp_path / "movie.npy"
    np.save(path, movie)
    ids = ["insitu.max_fft", "insitu.radial_kymograph", "insitu.live_difference"]
    client.run(dask_probe.install_read_probe, *READER)
    try:
        there = run_offline(ids, path, progress=False, block_frames=block, client=client)
    finally:
        stats = client.run(dask_probe.remove_read_probe, *READER)
    assert there.complete
    here = run_offline(ids, path, progress=False, block_frames=block)
    for pid in ids:
        assert_same(here[pid], there[pid])
    per_worker = list(stats.values())
    assert len(per_worker) == 2 and all(s for s in per_worker), stats
    assert max(s["max_block"] for s in per_worker) == block
    assert block <= max(s["max_alive"] for s in per_worker) <= 2 * block < n
    # frame kind: one read of every block; kymograph and live difference (merge): pass 1 over all but the last
    # block, pass 3 over all
    assert sum(s["read"] for s in per_worker) == n + 2 * ((n - block) + n)
