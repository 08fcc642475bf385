"""``nionswift-insitu run``: through ``processing.cli.main`` and as ``python -m processing.cli`` (a real process,
Ctrl-C included); messages instead of tracebacks for bad arguments."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from processing import cli
from processing.execution.cli import parse_frames, parse_params
from processing.io.results import read_provenance

from test_offline import disc_movie

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture()
def movie_file(tmp_path: pathlib.Path) -> tuple[pathlib.Path, np.ndarray]:
    movie, _, _ = disc_movie(40, n=15)
    path = tmp_path / "movie.npy"
    np.save(path, movie)
    return path, movie


def test_run_writes_the_results_with_params_and_frames(movie_file, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path, movie = movie_file
    out = tmp_path / "out.hspy"
    code = cli.main(["run", "insitu.live_difference", "insitu.radial_kymograph", "--input", str(path),
                     "--output", str(out), "--param", "fast=3", "--param", "insitu.radial_kymograph:statistic=max",
                     "--frames", "2:12", "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "insitu.live_difference: 10 frames processed (frames 2-11)" in text and str(out) in text
    provenance = read_provenance(out)
    assert provenance["insitu.live_difference image"]["parameters"]["fast"] == 3
    assert provenance["insitu.radial_kymograph kymograph"]["parameters"]["statistic"] == "max"
    assert provenance["insitu.radial_kymograph kymograph"]["frame_range"] == [2, 12]
    assert provenance["insitu.live_difference image"]["source"] == str(path)


@pytest.mark.parametrize("argv, words", [
    (["run", "insitu.copy", "--output", "x.hspy"], ["missing --input"]),
    (["run", "insitu.nope", "--input", "MOVIE", "--output", "OUT"], ["no processor 'insitu.nope'"]),
    (["run", "insitu.copy", "--input", "MOVIE", "--output", "OUT", "--param", "sigma"], ["NAME=VALUE"]),
    (["run", "insitu.copy", "--input", "MOVIE", "--output", "OUT", "--frames", "5"], ["START:STOP"]),
    (["run", "insitu.copy", "--input", "MOVIE", "--output", "OUT", "--param", "fast=2"], ["parameter 'fast'"]),
    (["run", "insitu.copy", "--input", "missing.npy", "--output", "OUT"], ["does not exist"]),
    (["run", "insitu.copy", "--input", "MOVIE", "--output", "/no/such/dir/out.hspy"], ["does not exist"]),
    (["run", "insitu.copy", "--input", "MOVIE", "--output", "OUT", "--scheduler", "tcp://127.0.0.1:9"],
     ["cannot reach the Dask scheduler"]),
])
def test_bad_arguments_are_one_message_and_exit_code_2(argv, words, movie_file, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path, _ = movie_file
    argv = [str(path) if a == "MOVIE" else str(tmp_path / "out.hspy") if a == "OUT" else a for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


def test_parsers() -> None:
    assert parse_params(["a=2", "b=0.5", "c=true", "d=max", "p.q:e=x=y"]) == {
        "a": 2, "b": 0.5, "c": True, "d": "max", "p.q:e": "x=y"}
    assert parse_frames("3:9") == slice(3, 9) and parse_frames(":9") == slice(None, 9)
    assert parse_frames("4:") == slice(4, None) and parse_frames(None) is None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))
    return env


def test_python_dash_m_runs_and_lists(movie_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, movie = movie_file
    out = tmp_path / "out.h5"
    done = subprocess.run([sys.executable, "-m", "processing.cli", "run", "insitu.copy", "-i", str(path), "-o",
                           str(out)], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "15/15" in done.stderr  # the tqdm bar on the terminal
    assert read_provenance(out)["insitu.copy image"]["complete"] is True
    listed = subprocess.run([sys.executable, "-m", "processing.cli", "run", "--list"], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert listed.returncode == 0 and "insitu.live_difference  (Live Difference; split: merge)" in listed.stdout


def test_the_installed_console_script(movie_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = pathlib.Path(sys.prefix) / "bin" / "nionswift-insitu"
    if not script.exists():
        pytest.skip("the console script is installed by pip install -e . (scripts/setup.sh)")
    path, _ = movie_file
    out = tmp_path / "out.hspy"
    done = subprocess.run([str(script), "run", "insitu.live_difference", "-i", str(path), "-o", str(out),
                           "--param", "slow=5", "--no-progress"], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert read_provenance(out)["insitu.live_difference image"]["parameters"]["slow"] == 5


# The command line as a user runs it, who presses Ctrl-C while frame 40 is processed: the process sends itself SIGINT
# from inside the processor at that frame (the real signal, delivered to the main thread as KeyboardInterrupt), so
# the interrupt lands mid-run whatever the machine's speed (watching the progress bar from outside raced the run).
# Python's own Ctrl-C handler is installed explicitly, as in a user's terminal: a test run started in the background
# by a non-interactive shell inherits SIGINT ignored, and Python then installs no handler (seen in CI-like runs).
CTRL_C_AT_FRAME = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from processing import cli, registry
cls = registry.get("insitu.noise_reduction")
process = cls.process
def process_and_press_ctrl_c(self, frame, context):
    if frame.frame_number == 40:
        os.kill(os.getpid(), signal.SIGINT)
    return process(self, frame, context)
cls.process = process_and_press_ctrl_c
sys.exit(cli.main(sys.argv[1:]))
"""


def test_ctrl_c_writes_the_partial_results_marked_incomplete(tmp_path: pathlib.Path) -> None:
    movie = np.random.default_rng(41).random((3000, 128, 128), dtype=np.float32)
    path = tmp_path / "long.npy"
    np.save(path, movie)
    out = tmp_path / "partial.hspy"
    proc = subprocess.run([sys.executable, "-c", CTRL_C_AT_FRAME, "run", "insitu.noise_reduction", "-i", str(path),
                           "-o", str(out), "--block-frames", "8"], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=600)
    stderr = proc.stderr
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "partial results written" in stderr
    record = read_provenance(out)["insitu.noise_reduction image"]
    assert record["complete"] is False and 0 < record["frame_range"][1] < 3000
