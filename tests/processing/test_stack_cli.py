"""``nionswift-insitu align`` end to end on files: shifts against the truth, outputs readable, clear errors."""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

from processing.cli import main
from processing.io.stacks import open_stack

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_sdsd import _rms, _series  # noqa: E402


def test_align_npy_to_hspy(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames, true = _series(21, n=8, dose=20.0)
    source = tmp_path / "series.npy"
    np.save(source, frames)
    output = tmp_path / "aligned.hspy"
    assert main(["align", "--input", str(source), "--output", str(output), "--reference", "all",
                 "--crop", "crop"]) == 0
    shifts = json.loads((tmp_path / "aligned.hspy.shifts.json").read_text())
    assert _rms(shifts["shifts_px"], true) < 0.2
    assert shifts["n_pairs"] == 28 and len(shifts["uncertainty_px"]) == 8
    from rsciio.hspy import file_reader
    signals = file_reader(str(output))
    titles = [s["metadata"]["General"]["title"] for s in signals]
    assert titles == ["aligned sequence", "aligned sum", "shifts (dy, dx, sigma_y, sigma_x) px"]
    assert signals[0]["data"].shape[0] == 8
    assert "aligned 8 frames" in capsys.readouterr().out
    reread = open_stack(output, dataset="aligned sequence")
    assert reread.n_frames == 8


def test_align_bad_input_is_a_message(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = tmp_path / "one.npy"
    np.save(one, np.ones((1, 32, 32), np.float32))
    assert main(["align", "--input", str(one), "--output", str(tmp_path / "o.hspy")]) == 2
    assert "at least 2" in capsys.readouterr().err
    frames, _ = _series(22, n=3)
    ok = tmp_path / "ok.npy"
    np.save(ok, frames)
    assert main(["align", "--input", str(ok), "--output", str(tmp_path / "o.hspy"), "--region", "0,0,900,900"]) == 2
    assert "not inside" in capsys.readouterr().err
    assert main(["align", "--input", str(tmp_path / "missing.h5"), "--output", str(tmp_path / "o.hspy")]) == 2


def test_align_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["align", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--reference" in out and "--inverted-contrast" in out and "25 %" in out
