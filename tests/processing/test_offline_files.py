"""Offline runs from and to files: results written as HyperSpy .hspy / .h5 read back (RosettaSciIO, h5py, and
``hs.load`` in the bench environment when it exists) with the right axes, units and provenance; bad input files
and output paths give a message (problem, value, remedy) and lose nothing already computed."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

from processing.base import Calibration, ProcessingError
from processing.execution.offline import run_offline
from processing.io.results import ResultsError, read_provenance, write_results
from processing.io.stacks import stack_from_array

from test_offline import disc_movie

NM = Calibration(0.0, 0.25, "nm")
BENCH_PYTHON = pathlib.Path(__file__).resolve().parents[2] / ".venv-bench" / "bin" / "python"
IDS = ["insitu.copy", "insitu.radial_kymograph", "insitu.threshold_tracking", "insitu.fft_orientation"]


def _signals(path: pathlib.Path) -> dict[str, dict]:  # type: ignore[type-arg]
    from rsciio.hspy import file_reader
    return {s["metadata"]["General"]["title"]: s for s in file_reader(str(path), lazy=False)}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, object, np.ndarray, np.ndarray]:
    movie, _, times = disc_movie(11, n=12, size=128)
    path = tmp_path_factory.mktemp("results") / "run.hspy"
    run = run_offline(IDS, stack_from_array(movie, calibrations=(NM, NM), timestamps_s=times), progress=False,
                      output=path, block_frames=5)
    return path, run, movie, times


def test_written_file_has_every_output_with_axes_and_units(written) -> None:  # type: ignore[no-untyped-def]
    path, run, movie, times = written
    signals = _signals(path)
    image = signals["insitu.copy image"]
    assert [a["name"] for a in image["axes"]] == ["time", "y", "x"]
    assert [a["units"] for a in image["axes"]] == ["s", "nm", "nm"]
    assert image["axes"][1]["scale"] == pytest.approx(0.25)
    assert image["axes"][0]["scale"] == pytest.approx(0.1) and image["axes"][0]["offset"] == pytest.approx(5.0)
    np.testing.assert_array_equal(image["data"], movie)
    kymo = signals["insitu.radial_kymograph kymograph"]
    assert [a["name"] for a in kymo["axes"]] == ["spatial frequency", "time"]
    assert kymo["axes"][0]["units"] == "1/nm" and kymo["axes"][1]["units"] == "s"
    assert kymo["data"].shape[1] == len(movie)
    track_x = signals["insitu.threshold_tracking track centre x"]
    assert [a["name"] for a in track_x["axes"]] == ["time"] and track_x["axes"][0]["units"] == "s"
    assert "nm" in track_x["metadata"]["Signal"]["quantity"]
    np.testing.assert_allclose(track_x["data"], run["insitu.threshold_tracking"].time_series["track"].values[0])
    marker = signals["insitu.threshold_tracking marker"]
    assert marker["data"].shape == (len(movie), 4)
    rgb = signals["insitu.fft_orientation image"]
    assert rgb["data"].dtype == np.uint8 and rgb["data"].shape[1] == 3


def test_provenance_reads_back_from_the_file(written) -> None:  # type: ignore[no-untyped-def]
    path, run, movie, times = written
    provenance = read_provenance(path)
    record = provenance["insitu.radial_kymograph kymograph"]
    assert record == run["insitu.radial_kymograph"].provenance
    assert record["processor_id"] == "insitu.radial_kymograph"
    assert record["parameters"]["window_frames"] == 256
    assert record["source"] == "array" and record["frame_range"] == [0, len(movie)]
    assert record["timestamps_s"] == [pytest.approx(times[0]), pytest.approx(times[-1])]
    assert record["suite_version"] and record["complete"] is True
    meta = _signals(path)["insitu.copy image"]["original_metadata"]["insitu"]
    assert json.loads(meta["provenance_json"])["processor_id"] == "insitu.copy"
    np.testing.assert_array_equal(meta["frame_numbers"], np.arange(len(movie)))


def test_h5_output_is_the_same_layout_in_plain_hdf5(tmp_path: pathlib.Path) -> None:
    import h5py
    movie, _, times = disc_movie(12, n=6)
    out = tmp_path / "run.h5"
    run_offline("insitu.copy", stack_from_array(movie, calibrations=(NM, NM), timestamps_s=times),
                progress=False, output=out)
    with h5py.File(out, "r") as f:
        group = f["Experiments/insitu.copy image"]
        np.testing.assert_array_equal(group["data"][()], movie)
        assert group["axis-1"].attrs["units"] == "nm"
    assert read_provenance(out)["insitu.copy image"]["processor_id"] == "insitu.copy"


def test_results_reopen_as_a_stack_with_calibration_and_timestamps(written) -> None:  # type: ignore[no-untyped-def]
    from processing.io.stacks import open_stack
    path, run, movie, times = written
    stack = open_stack(path, dataset="insitu.copy image")
    try:
        assert stack.calibrations[1] == NM
        np.testing.assert_allclose(stack.timestamps_s, times)
        np.testing.assert_array_equal(stack.frame(3), movie[3])
    finally:
        stack.close()


@pytest.mark.skipif(not BENCH_PYTHON.exists(), reason="the bench environment (HyperSpy) is not built")
def test_hyperspy_loads_the_results_with_axes_and_units(written) -> None:  # type: ignore[no-untyped-def]
    path, _, movie, _ = written
    script = (
        "import sys, json, hyperspy.api as hs\n"
        "signals = hs.load(sys.argv[1])\n"
        "out = {s.metadata.General.title: [[a.name, str(a.units), a.size] for a in s.axes_manager._axes] "  # array order
        "for s in signals}\n"
        "print(json.dumps(out))\n")
    done = subprocess.run([str(BENCH_PYTHON), "-c", script, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    axes = json.loads(done.stdout.strip().splitlines()[-1])
    assert axes["insitu.copy image"] == [["time", "s", len(movie)], ["y", "nm", 128], ["x", "nm", 128]]
    assert [a[:2] for a in axes["insitu.radial_kymograph kymograph"]] == [["spatial frequency", "1/nm"], ["time", "s"]]
    assert axes["insitu.threshold_tracking track convex area"][0][:2] == ["time", "s"]
    h5 = path.with_suffix(".h5")  # the same layout in a .h5 file: hs.load(..., file_format="hspy")
    write_results(list(written[1].results.values()), h5)
    script_h5 = script.replace("hs.load(sys.argv[1])", "hs.load(sys.argv[1], file_format='hspy')")
    done = subprocess.run([str(BENCH_PYTHON), "-c", script_h5, str(h5)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == axes


# ------------------------------------------------------------------------------------------------ bad input

def _expect_message(path: pathlib.Path, *words: str) -> str:
    with pytest.raises(ProcessingError) as info:
        run_offline("insitu.copy", path, progress=False)
    text = str(info.value)
    for word in words:
        assert word in text, text
    return text


def test_unreadable_truncated_unsupported_and_non_stack_files(tmp_path: pathlib.Path) -> None:
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not HDF5" * 100)
    _expect_message(garbage, "garbage.h5", "cannot be read")
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, np.zeros((10, 32, 32), np.float32))
    data = truncated.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    _expect_message(truncated, "truncated.npy")
    unsupported = tmp_path / "movie.xyz"
    unsupported.write_bytes(b"0" * 10)
    _expect_message(unsupported, "not supported", ".xyz")
    spectra = tmp_path / "spectra.npy"
    np.save(spectra, np.zeros((4, 5, 6, 7), np.float32))
    _expect_message(spectra, "not an image sequence", "(4, 5, 6, 7)")
    _expect_message(tmp_path / "missing.h5", "does not exist")


def test_an_output_path_that_cannot_be_written_is_refused_before_computing(tmp_path: pathlib.Path) -> None:
    movie, _, _ = disc_movie(13, n=4)
    calls: list[int] = []
    with pytest.raises(ResultsError, match="does not exist"):
        run_offline("insitu.copy", movie, progress=lambda d, t: calls.append(d),
                    output=tmp_path / "no" / "such" / "folder" / "run.hspy")
    with pytest.raises(ResultsError, match="not supported"):
        run_offline("insitu.copy", movie, progress=lambda d, t: calls.append(d), output=tmp_path / "run.txt")
    assert calls == []  # nothing was computed for nothing
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        with pytest.raises(ResultsError, match="cannot be written"):
            run_offline("insitu.copy", movie, progress=False, output=locked / "run.hspy")


def test_a_write_failure_at_the_end_keeps_the_results_in_a_fallback_file(tmp_path: pathlib.Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from processing.io import results
    movie, _, _ = disc_movie(14, n=5)
    target = tmp_path / "run.hspy"
    real = results._write_hdf5

    def failing(signals, p):  # type: ignore[no-untyped-def]
        if p == target:
            raise OSError(28, "No space left on device")
        return real(signals, p)

    monkeypatch.setattr(results, "_write_hdf5", failing)
    run = run_offline("insitu.copy", movie, progress=False, output=target)
    assert not target.exists() and run.output_path and run.output_path != str(target)
    assert any("No space left" in m and "instead" in m for m in run.messages)
    assert read_provenance(run.output_path)["insitu.copy image"]["complete"] is True
    os.unlink(run.output_path)


def test_nothing_to_write_says_why(tmp_path: pathlib.Path) -> None:
    movie = np.full((3, 16, 16), np.nan, np.float32)
    run = run_offline("insitu.copy", movie, progress=False)
    assert len(run["insitu.copy"].failed_frames) == 3
    with pytest.raises(ResultsError, match="no output has any frame"):
        write_results(list(run.results.values()), tmp_path / "empty.hspy")
    run = run_offline("insitu.copy", movie, progress=False, output=tmp_path / "empty.hspy")
    assert run.output_path is None and any("no output has any frame" in m for m in run.messages)


def test_nan_frames_in_a_file_and_frames_of_changing_shape_in_a_folder(tmp_path: pathlib.Path) -> None:
    from PIL import Image
    movie, _, _ = disc_movie(15, n=6)
    movie[2] = np.nan
    path = tmp_path / "with_nan.npy"
    np.save(path, movie)
    run = run_offline("insitu.copy", path, progress=False, output=tmp_path / "out.hspy")
    assert [f for f, _ in run["insitu.copy"].failed_frames] == [2]
    assert read_provenance(tmp_path / "out.hspy")["insitu.copy image"]["frames_dropped"] == 1
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, shape in enumerate([(32, 32), (32, 32), (40, 32)]):
        Image.fromarray(np.zeros(shape, np.uint8)).save(folder / f"frame_{i:04d}.png")
    with pytest.raises(ProcessingError) as info:
        run_offline("insitu.copy", folder, progress=False)
    assert "frame_0002.png" in str(info.value) or "(40, 32)" in str(info.value), str(info.value)


@pytest.mark.parametrize("fmt", ["npy", "tif", "h5", "hspy"])
def test_file_formats_give_the_same_results_as_the_array(fmt: str, tmp_path: pathlib.Path) -> None:
    import h5py
    import tifffile
    movie, _, _ = disc_movie(16, n=9, size=64)
    path = tmp_path / f"movie.{fmt}"
    if fmt == "npy":
        np.save(path, movie)
    elif fmt == "tif":
        tifffile.imwrite(path, movie)
    elif fmt == "h5":
        with h5py.File(path, "w") as f:
            f["entry/frames"] = movie
    else:  # a results file of a copy run is itself a HyperSpy stack
        write_results(list(run_offline("insitu.copy", movie, progress=False).results.values()), path)
    from_file = run_offline(["insitu.live_difference", "insitu.radial_kymograph"], path, progress=False,
                            block_frames=4)
    from_array = run_offline(["insitu.live_difference", "insitu.radial_kymograph"], movie, progress=False)
    np.testing.assert_array_equal(from_file["insitu.live_difference"].images["image"].data,
                                  from_array["insitu.live_difference"].images["image"].data)
    np.testing.assert_array_equal(from_file["insitu.radial_kymograph"].kymographs["kymograph"].data,
                                  from_array["insitu.radial_kymograph"].kymographs["kymograph"].data)
    assert from_file["insitu.live_difference"].provenance["source"] == str(path)
