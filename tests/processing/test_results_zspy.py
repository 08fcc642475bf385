"""Offline results written as HyperSpy Zarr (.zspy) through RosettaSciIO's zspy plugin: read back with
``rsciio.zspy.file_reader`` (and ``hs.load`` in the bench environment when it has zarr) with the same signals,
axes, units, scales and provenance as the .hspy file of the same run; incomplete runs marked; the CLI writes it."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from processing import cli
from processing.base import Calibration
from processing.execution.offline import run_offline
from processing.io.results import ResultsError, check_output_path, read_provenance, write_results
from processing.io.stacks import stack_from_array

from test_offline import disc_movie

pytest.importorskip("zarr")

NM = Calibration(0.0, 0.25, "nm")
BENCH_PYTHON = pathlib.Path(__file__).resolve().parents[2] / ".venv-bench" / "bin" / "python"
IDS = ["insitu.copy", "insitu.radial_kymograph", "insitu.threshold_tracking", "insitu.fft_orientation"]


def _zspy(path: pathlib.Path) -> dict[str, dict]:  # type: ignore[type-arg]
    from rsciio.zspy import file_reader
    return {s["metadata"]["General"]["title"]: s for s in file_reader(str(path), lazy=False)}


def _hspy(path: pathlib.Path) -> dict[str, dict]:  # type: ignore[type-arg]
    from rsciio.hspy import file_reader
    return {s["metadata"]["General"]["title"]: s for s in file_reader(str(path), lazy=False)}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    movie, _, times = disc_movie(21, n=10, size=128)
    folder = tmp_path_factory.mktemp("zspy")
    path = folder / "run.zspy"
    run = run_offline(IDS, stack_from_array(movie, calibrations=(NM, NM), timestamps_s=times), progress=False,
                      output=path, block_frames=4)
    hspy = write_results(list(run.results.values()), folder / "run.hspy")
    return path, hspy, run, movie, times


def test_image_sequence_kymograph_and_time_series_read_back_with_axes(written) -> None:  # type: ignore[no-untyped-def]
    path, _, run, movie, times = written
    assert run.output_path == str(path) and path.is_dir() and not run.messages
    signals = _zspy(path)
    image = signals["insitu.copy image"]  # image sequence: time (s) x y x x (nm)
    assert [a["name"] for a in image["axes"]] == ["time", "y", "x"]
    assert [a["units"] for a in image["axes"]] == ["s", "nm", "nm"]
    assert [a["navigate"] for a in image["axes"]] == [True, False, False]
    assert image["axes"][0]["offset"] == pytest.approx(times[0]) and image["axes"][0]["scale"] == pytest.approx(0.1)
    assert image["axes"][1]["scale"] == pytest.approx(0.25) and image["axes"][2]["scale"] == pytest.approx(0.25)
    np.testing.assert_array_equal(image["data"], movie)
    kymo = signals["insitu.radial_kymograph kymograph"]  # whole kymograph: spatial frequency (1/nm) x time (s)
    truth = run["insitu.radial_kymograph"].kymographs["kymograph"]
    assert [a["name"] for a in kymo["axes"]] == ["spatial frequency", "time"]
    assert [a["units"] for a in kymo["axes"]] == ["1/nm", "s"]
    assert kymo["axes"][0]["scale"] == pytest.approx(truth.y_calibration.scale)
    assert kymo["axes"][0]["scale"] == pytest.approx(1.0 / (128 * 0.25))  # one FFT bin of a 128 x 0.25 nm frame
    assert kymo["axes"][1]["scale"] == pytest.approx(0.1) and kymo["axes"][1]["offset"] == pytest.approx(times[0])
    np.testing.assert_array_equal(kymo["data"], truth.data)
    assert kymo["data"].shape[1] == len(movie)
    series = run["insitu.threshold_tracking"].time_series["track"]  # time series: one signal per quantity
    for row, label in enumerate(series.labels):
        s = signals[f"insitu.threshold_tracking track {label}"]
        assert [a["name"] for a in s["axes"]] == ["time"] and s["axes"][0]["units"] == "s"
        assert s["axes"][0]["scale"] == pytest.approx(0.1)
        assert series.units[row] in s["metadata"]["Signal"]["quantity"]
        np.testing.assert_allclose(s["data"], series.values[row])
    rgb = signals["insitu.fft_orientation image"]
    assert rgb["data"].dtype == np.uint8 and rgb["data"].shape[1] == 3
    assert signals["insitu.threshold_tracking marker"]["data"].shape == (len(movie), 4)


def test_zspy_holds_the_same_signals_as_hspy(written) -> None:  # type: ignore[no-untyped-def]
    path, hspy, _, _, _ = written
    zs, hs = _zspy(path), _hspy(hspy)
    assert sorted(zs) == sorted(hs) and len(zs) >= 8
    for title, z in zs.items():
        h = hs[title]
        assert z["axes"] == h["axes"], title
        np.testing.assert_array_equal(z["data"], h["data"])
        assert z["data"].dtype == h["data"].dtype
        assert z["metadata"]["Signal"] == h["metadata"]["Signal"], title


def test_provenance_reads_back_from_the_zspy(written) -> None:  # type: ignore[no-untyped-def]
    path, hspy, run, movie, times = written
    provenance = read_provenance(path)
    assert provenance == read_provenance(hspy)
    record = provenance["insitu.radial_kymograph kymograph"]
    assert record == run["insitu.radial_kymograph"].provenance
    assert record["processor_id"] == "insitu.radial_kymograph" and record["parameters"]["window_frames"] == 256
    assert record["source"] == "array" and record["frame_range"] == [0, len(movie)]
    assert record["timestamps_s"] == [pytest.approx(times[0]), pytest.approx(times[-1])]
    assert record["complete"] is True
    meta = _zspy(path)["insitu.copy image"]["original_metadata"]["insitu"]
    assert json.loads(meta["provenance_json"])["processor_id"] == "insitu.copy"
    assert meta["provenance"]["processor_id"] == "insitu.copy"
    np.testing.assert_array_equal(meta["frame_numbers"], np.arange(len(movie)))
    np.testing.assert_allclose(meta["timestamps_s"], times)


def test_an_interrupted_run_writes_a_zspy_marked_incomplete(tmp_path: pathlib.Path) -> None:
    movie, _, times = disc_movie(22, n=20)

    def progress(done: int, total: int) -> None:
        if done == 9:
            raise KeyboardInterrupt

    out = tmp_path / "partial.zspy"
    run = run_offline(["insitu.copy", "insitu.radial_kymograph"], stack_from_array(movie, timestamps_s=times),
                      progress=progress, block_frames=4, output=out)
    assert run.interrupted and run.output_path == str(out)
    for title, record in read_provenance(out).items():
        assert record["complete"] is False and record["frame_range"] == [0, 9], title
    signals = _zspy(out)
    np.testing.assert_array_equal(signals["insitu.copy image"]["data"], movie[:9])
    assert signals["insitu.radial_kymograph kymograph"]["data"].shape[1] == 9
    assert any("partial results written" in m and str(out) in m for m in run.messages)


def test_uneven_timestamps_and_frame_numbers_as_time(tmp_path: pathlib.Path) -> None:
    movie, _, _ = disc_movie(23, n=6)
    uneven_s = np.array([0.0, 0.1, 0.25, 0.3, 0.7, 0.75])
    out = tmp_path / "uneven.zspy"
    run_offline("insitu.radial_kymograph", stack_from_array(movie, timestamps_s=uneven_s), progress=False,
                output=out)
    t_axis = _zspy(out)["insitu.radial_kymograph kymograph"]["axes"][1]
    assert t_axis["name"] == "time" and t_axis["units"] == "s"
    np.testing.assert_allclose(t_axis["axis"], uneven_s)  # a non-uniform axis, not a made-up scale
    out = tmp_path / "frames.zspy"
    run = run_offline("insitu.copy", movie, progress=False, output=out)
    t_axis = _zspy(out)["insitu.copy image"]["axes"][0]
    assert (t_axis["name"], t_axis["units"], t_axis["scale"]) == ("frame", "frame", 1.0)
    assert any("no timestamps" in m for m in run.messages)


def test_an_existing_zspy_is_replaced_and_other_targets_are_refused(tmp_path: pathlib.Path) -> None:
    movie, _, times = disc_movie(24, n=5)
    out = tmp_path / "again.zspy"
    run_offline(["insitu.copy", "insitu.radial_kymograph"], movie, progress=False, output=out)
    run_offline("insitu.copy", movie[:3], progress=False, output=out)  # the new store replaces the old whole
    assert sorted(_zspy(out)) == ["insitu.copy image"]
    assert _zspy(out)["insitu.copy image"]["data"].shape[0] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["again.zspy"]  # no scratch left behind
    folder = tmp_path / "mine.zspy"  # a folder that is not a Zarr store is never removed
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    calls: list[int] = []
    with pytest.raises(ResultsError, match="is a folder"):
        run_offline("insitu.copy", movie, progress=lambda d, t: calls.append(d), output=folder)
    plain = tmp_path / "file.zspy"
    plain.write_bytes(b"not a store")
    with pytest.raises(ResultsError, match="a .zspy result is a folder"):
        run_offline("insitu.copy", movie, progress=lambda d, t: calls.append(d), output=plain)
    assert calls == [] and (folder / "notes.txt").read_text() == "keep me" and plain.read_bytes() == b"not a store"


def test_without_zarr_the_message_says_what_to_do(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr -> ImportError
    with pytest.raises(ResultsError) as info:
        check_output_path(tmp_path / "run.zspy")
    assert "zarr" in str(info.value) and ".hspy" in str(info.value) and "rosettasciio[zspy]" in str(info.value)
    assert check_output_path(tmp_path / "run.hspy") == tmp_path / "run.hspy"


def test_the_run_command_writes_zspy(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    movie, _, _ = disc_movie(25, n=8)
    path = tmp_path / "movie.npy"
    np.save(path, movie)
    out = tmp_path / "out.zspy"
    code = cli.main(["run", "insitu.copy", "insitu.radial_kymograph", "--input", str(path), "--output", str(out),
                     "--frames", "1:7", "--no-progress"])
    assert code == 0
    assert f"results: {out}" in capsys.readouterr().out
    provenance = read_provenance(out)
    assert provenance["insitu.copy image"]["frame_range"] == [1, 7] and provenance["insitu.copy image"]["complete"]
    assert provenance["insitu.copy image"]["source"] == str(path)
    signals = _zspy(out)
    np.testing.assert_array_equal(signals["insitu.copy image"]["data"], movie[1:7])
    assert [a["name"] for a in signals["insitu.radial_kymograph kymograph"]["axes"]] == ["spatial frequency", "frame"]


def test_the_installed_console_script_writes_zspy(tmp_path: pathlib.Path) -> None:
    import os
    script = pathlib.Path(sys.prefix) / "bin" / "nionswift-insitu"
    if not script.exists():
        pytest.skip("the console script is installed by pip install -e . (scripts/setup.sh)")
    movie, _, _ = disc_movie(26, n=6)
    np.save(tmp_path / "movie.npy", movie)
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(pathlib.Path(__file__).resolve().parents[2] / ".venv" / "numba-cache"))
    done = subprocess.run([str(script), "run", "insitu.live_difference", "-i", "movie.npy", "-o", "out.zspy",
                           "--param", "slow=5", "--no-progress"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert read_provenance(tmp_path / "out.zspy")["insitu.live_difference image"]["parameters"]["slow"] == 5
    assert _zspy(tmp_path / "out.zspy")["insitu.live_difference image"]["data"].shape == movie.shape


def test_a_zspy_write_failure_keeps_the_results_in_a_fallback_store(tmp_path: pathlib.Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from processing.io import results
    movie, _, _ = disc_movie(27, n=5)
    target = tmp_path / "run.zspy"
    real = results._write_zspy

    def failing(signals, p):  # type: ignore[no-untyped-def]
        if p == target:
            raise OSError(28, "No space left on device")
        return real(signals, p)

    monkeypatch.setattr(results, "_write_zspy", failing)
    run = run_offline("insitu.copy", movie, progress=False, output=target)
    try:
        assert not target.exists() and run.output_path and run.output_path.endswith(".zspy")
        assert any("No space left" in m and "instead" in m for m in run.messages)
        assert read_provenance(run.output_path)["insitu.copy image"]["complete"] is True
        np.testing.assert_array_equal(_zspy(pathlib.Path(run.output_path))["insitu.copy image"]["data"], movie)
    finally:
        if run.output_path:
            shutil.rmtree(run.output_path, ignore_errors=True)


def _bench_has_zarr() -> bool:
    if not BENCH_PYTHON.exists():
        return False
    done = subprocess.run([str(BENCH_PYTHON), "-c", "import zarr, hyperspy"], capture_output=True, timeout=300)
    return done.returncode == 0


@pytest.mark.skipif(not _bench_has_zarr(), reason="the bench environment (HyperSpy) is not built or lacks zarr "
                                                 "(rebuild it with scripts/setup_bench.sh: setup.cfg asks for "
                                                 "rosettasciio[zspy])")
def test_hyperspy_loads_the_zspy_with_axes_and_units(written) -> None:  # type: ignore[no-untyped-def]
    path, hspy, _, movie, _ = written
    script = (
        "import sys, json, hyperspy.api as hs\n"
        "signals = hs.load(sys.argv[1])\n"
        "out = {s.metadata.General.title: [[a.name, str(a.units), a.size, float(getattr(a, 'scale', 0.0))] "
        "for a in s.axes_manager._axes] for s in signals}\n"  # array order
        "print(json.dumps(out))\n")
    done = subprocess.run([str(BENCH_PYTHON), "-c", script, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    axes = json.loads(done.stdout.strip().splitlines()[-1])
    image = axes["insitu.copy image"]
    assert [a[:3] for a in image] == [["time", "s", len(movie)], ["y", "nm", 128], ["x", "nm", 128]]
    assert image[0][3] == pytest.approx(0.1) and image[1][3] == pytest.approx(0.25)
    assert [a[:2] for a in axes["insitu.radial_kymograph kymograph"]] == [["spatial frequency", "1/nm"], ["time", "s"]]
    assert axes["insitu.threshold_tracking track convex area"][0][:2] == ["time", "s"]
    done = subprocess.run([str(BENCH_PYTHON), "-c", script, str(hspy)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == axes  # the same signals as the .hspy file
