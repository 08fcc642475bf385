"""SDSD with the pair measurement on a real ``distributed.LocalCluster`` (2 worker processes, started and closed here,
processing.alignment.sdsd_dask): the shifts equal the in-memory ``align_stack`` on the same frames (all pairs,
banded, with the pre-shifted re-measuring of large shifts), from a file read lazily on the workers and from an array
sent block by block; no worker reads more than a block at a time or holds the whole stack; bad frames and an
unreachable scheduler are clear messages."""
from __future__ import annotations

import pathlib
import sys
import typing

import numpy as np
import pytest

from processing.alignment.sdsd import align_stack
from processing.base import InputError
from processing.execution.dask_run import DaskError

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import dask_probe  # noqa: E402
from test_sdsd import _rms, _series  # noqa: E402

READER = ("processing.alignment.sdsd_blocks", "FrameBlocks", "read")  # the lazy stack's block reader

distributed = pytest.importorskip("distributed")
from processing.alignment.sdsd_dask import align_stack_dask  # noqa: E402

N_FRAMES, SIZE = 40, 96


@pytest.fixture(scope="module")
def client() -> typing.Iterator[typing.Any]:
    with dask_probe.local_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def series() -> tuple[np.ndarray, np.ndarray]:
    # drift up to ~1 px/frame: beyond 2 % of 96 px, so the pre-shifted re-measuring passes run too
    return _series(31, n=N_FRAMES, size=SIZE, dose=20.0)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


@pytest.mark.parametrize("options", [{"reference": "all"}, {"reference": "banded", "band_k": 3},
                                     {"reference": "banded", "band_k": 10, "lowpass_sigma_px": 3.0},
                                     {"reference": "all", "drift_prior": "random-walk"},
                                     {"reference": "all", "lowpass_auto": True}])
def test_cluster_shifts_equal_the_in_memory_run(client: typing.Any, series: tuple[np.ndarray, np.ndarray],
                                               tmp_path: pathlib.Path, options: dict[str, typing.Any]) -> None:
    frames, true = series
    memory = align_stack(frames, pixel_size_nm=0.06, **options)
    assert float(np.abs(memory.shifts_px).max()) > 0.02 * SIZE          # the re-measuring passes run
    assert _rms(memory.shifts_px, true) < 1.0      # a real alignment (the drift reaches 35 px), not a trivial one
    path = tmp_path / "series.npy"
    np.save(path, frames)
    for source, block in ((path, 16), (frames, 16), (path, None)):     # file on the workers; array sent; default
        cluster = align_stack_dask(source, client, pixel_size_nm=0.06, block_frames=block, **options)
        assert _relative(cluster.shifts_px, memory.shifts_px) <= 1e-6
        if options.get("lowpass_auto"):      # the low-pass chosen from frames read here, as in memory
            assert cluster.notes[0] == memory.notes[0] and memory.notes[0].startswith("low-pass from data")
        np.testing.assert_allclose(cluster.uncertainty_px, memory.uncertainty_px, rtol=1e-6)
        np.testing.assert_allclose(cluster.shifts_nm, memory.shifts_nm, rtol=1e-6, atol=1e-12)
        assert cluster.rejected == memory.rejected and len(cluster.pairs) == len(memory.pairs)
        assert [(m.i, m.j) for m in cluster.pairs] == [(m.i, m.j) for m in memory.pairs]
        assert cluster.notes == memory.notes and cluster.drift_prior == memory.drift_prior


def test_no_worker_holds_the_whole_stack(client: typing.Any, series: tuple[np.ndarray, np.ndarray],
                                         tmp_path: pathlib.Path) -> None:
    """A 40-frame file in blocks of 16 (3 blocks) on 2 workers, one thread each, all pairs: each worker reads only
    blocks (never more than 16 frames at a call), holds at most one block of frames at once (a block is read,
    pre-filtered and dropped within one task), and together they read each block once per measuring pass."""
    frames, _ = series
    path = tmp_path / "series.npy"
    np.save(path, frames)
    client.run(dask_probe.install_read_probe, *READER)
    try:
        cluster = align_stack_dask(path, client, block_frames=16, reference="all")
    finally:
        stats = client.run(dask_probe.remove_read_probe, *READER)
    memory = align_stack(frames, reference="all")
    assert _relative(cluster.shifts_px, memory.shifts_px) <= 1e-6
    per_worker = list(stats.values())
    assert len(per_worker) == 2 and all(s for s in per_worker), stats
    assert max(s["max_block"] for s in per_worker) == 16
    assert max(s["max_alive"] for s in per_worker) <= 16 < N_FRAMES
    total = sum(s["read"] for s in per_worker)
    assert total % N_FRAMES == 0 and total >= N_FRAMES                   # whole passes: each block read once each


def test_bad_frames_and_an_unreachable_scheduler_are_clear_messages(client: typing.Any,
                                                                    series: tuple[np.ndarray, np.ndarray],
                                                                    tmp_path: pathlib.Path) -> None:
    frames = series[0].copy()
    frames[21, 5, 5] = np.nan
    path = tmp_path / "bad.npy"
    np.save(path, frames)
    with pytest.raises(InputError, match=r"frame\(s\) \[21\] contain NaN"):
        align_stack_dask(path, client, block_frames=16)
    with pytest.raises(InputError, match="at least 2"):
        align_stack_dask(series[0][:1], client)
    with pytest.raises(DaskError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        align_stack_dask(series[0], "tcp://127.0.0.1:9")


def test_the_command_line_measures_on_a_scheduler(client: typing.Any, series: tuple[np.ndarray, np.ndarray],
                                                  tmp_path: pathlib.Path) -> None:
    import json

    from processing.cli import main
    path = tmp_path / "series.npy"
    np.save(path, series[0])
    common = ["align", "--input", str(path), "--reference", "banded", "--band-k", "4"]
    assert main(common + ["--output", str(tmp_path / "here.hspy")]) == 0
    assert main(common + ["--output", str(tmp_path / "there.hspy"), "--scheduler", client.scheduler.address,
                          "--block-frames", "16"]) == 0
    here = json.loads((tmp_path / "here.hspy.shifts.json").read_text())
    there = json.loads((tmp_path / "there.hspy.shifts.json").read_text())
    assert _relative(np.asarray(there["shifts_px"]), np.asarray(here["shifts_px"])) <= 1e-6
    assert there["rejected_pairs"] == here["rejected_pairs"]
    assert main(common + ["--output", str(tmp_path / "x.hspy"), "--scheduler", "tcp://127.0.0.1:9"]) == 2
