"""``nionswift-insitu decompose`` (issue 12): files in (numpy, HyperSpy via RosettaSciIO), results out, bad input."""
from __future__ import annotations

import json
import pathlib
import typing

import numpy as np
import pytest
import threadpoolctl

from processing import cli


@pytest.fixture(autouse=True)
def _one_blas_thread() -> typing.Iterator[None]:
    with threadpoolctl.threadpool_limits(1):
        yield


def _si(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = np.arange(128)
    spectra = np.stack([np.exp(-0.5 * ((e - c) / 8) ** 2) for c in (30, 80)]) + 0.2
    return rng.poisson(30 * rng.random((16, 16, 2)) @ spectra).astype(np.float32)


def test_decompose_npy_to_npz_with_reconstruction(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "si.npy"
    np.save(source, _si())
    out = tmp_path / "out.npz"
    rc = cli.main(["decompose", "--input", str(source), "--output", str(out), "--method", "vca", "--components", "2",
                   "--reconstruct"])
    assert rc == 0, capsys.readouterr().err
    with np.load(out) as f:
        assert f["components"].shape == (2, 128) and f["maps"].shape == (2, 16, 16)
        assert f["reconstructed"].shape == (16, 16, 128)
        summary = json.loads(str(f["summary"]))
    assert summary["method"] == "vca" and summary["final"] is True
    assert "VCA: 2 components of 256 spectra" in capsys.readouterr().out


def test_decompose_hyperspy_file_keeps_the_energy_and_nm_calibrations(tmp_path: pathlib.Path) -> None:
    from rsciio.hspy import file_reader, file_writer
    data = _si(1)
    axes = [{"name": "y", "size": 16, "offset": 0.0, "scale": 0.25, "units": "nm", "navigate": True},
            {"name": "x", "size": 16, "offset": 0.0, "scale": 0.25, "units": "nm", "navigate": True},
            {"name": "Energy loss", "size": 128, "offset": 400.0, "scale": 0.5, "units": "eV", "navigate": False}]
    source = tmp_path / "si.hspy"
    file_writer(str(source), {"data": data, "axes": axes, "metadata": {"General": {"title": "SI"},
                                                                       "Signal": {"signal_type": "EELS"}},
                              "original_metadata": {}, "attributes": {"_lazy": False}, "tmp_parameters": {},
                              "package_info": {"name": "", "version": ""}, "learning_results": {}, "models": {}},
                show_progressbar=False)
    out = tmp_path / "maps.hspy"
    assert cli.main(["decompose", "--input", str(source), "--output", str(out), "--method", "pca",
                     "--components", "3"]) == 0
    (signal,) = file_reader(str(out))
    assert signal["data"].shape == (3, 16, 16)
    assert signal["axes"][1]["units"] == "nm" and signal["axes"][1]["scale"] == pytest.approx(0.25)
    meta = signal["original_metadata"]
    assert meta["energy_offset_eV"] == 400.0 and meta["energy_scale_eV"] == 0.5
    assert meta["insitu_decomposition"]["n_significant"] == 2


@pytest.mark.parametrize("args, message", [
    (["--components", "999"], "cannot extract 999 components"),
    (["--components", "2", "--output-name", "x.txt"], "use a .npz or .hspy"),
    (["--components", "2", "--missing"], "does not exist"),
])
def test_bad_input_is_one_message_and_exit_code_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                                  args: list[str], message: str) -> None:
    source = tmp_path / "si.npy"
    np.save(source, _si())
    out = tmp_path / "out.npz"
    if "--output-name" in args:
        out = tmp_path / args.pop(args.index("--output-name") + 1)
        args.remove("--output-name")
    if "--missing" in args:
        args.remove("--missing")
        source = tmp_path / "nothing.npy"
    rc = cli.main(["decompose", "--input", str(source), "--output", str(out), "--method", "pca", *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err, err
