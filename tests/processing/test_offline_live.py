"""The same frames through the live path (processing.execution.scheduler, every frame delivered) and through the
offline run give identical outputs, frame by frame, for every built-in processor."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from processing import registry
from processing.base import Calibration
from processing.execution.collect import Collector, reduce_outputs
from processing.execution.offline import run_offline
from processing.execution.scheduler import Engine, Runner
from processing.execution.sources import ArraySource, play
from processing.io.stacks import stack_from_array

from test_dask_run import assert_same
from test_offline import disc_movie

NM = Calibration(0.0, 0.5, "nm")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_live_path_and_offline_run_give_identical_outputs_frame_by_frame(seed: int) -> None:
    movie, _, times = disc_movie(50 + seed, n=20, size=128)
    ids = [c.processor_id for c in registry.all_processors() if c.processor_id.startswith("insitu.")]
    parameters = {"insitu.radial_kymograph": {"window_frames": 6}, "insitu.live_difference": {"fast": 2, "slow": 7}}
    offline = run_offline(ids, stack_from_array(movie, calibrations=(NM, NM), timestamps_s=times), progress=False,
                          parameters=parameters, block_frames=6)

    engine = Engine(workers=2)
    collectors = {pid: Collector(pid, {}, "live", n_frames=len(movie)) for pid in ids}
    lock = threading.Lock()

    def on_result(runner: Runner) -> None:
        outputs, error, stats = runner.latest()
        assert error is None, error
        with lock:
            collectors[runner.processor_id].add(
                reduce_outputs(outputs, runner.stats.last_frame_number, runner.stats.last_timestamp_s))

    try:
        stream = engine.stream("movie")
        for pid in ids:
            engine.runner_for(pid, pid, parameters.get(pid, {}), on_result=on_result).attach_stream(stream)
        pushed = play(ArraySource(movie, calibrations=(NM, NM), timestamps_s=list(times)), stream, wait=True)
        assert pushed == len(movie)
        for runner in engine.runners:
            assert runner.stats.frames_processed == len(movie) and runner.stats.frames_dropped == 0
    finally:
        engine.close()
    for pid in ids:
        live = collectors[pid].result(complete=True)
        assert collectors[pid].frames_added == len(movie)
        assert_same(offline[pid], live)
