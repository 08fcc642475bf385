"""Processing > In-situ > Align stack (SDSD) in headless Swift: calibrated outputs against known shifts, parameters
re-run it, bad input becomes error text."""
from __future__ import annotations

import pathlib
import sys
import typing

import numpy as np
import pytest
from nion.data import Calibration, DataAndMetadata
from nion.swift.model import DataItem

from nionswift_plugin.insitu import stack_computations

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "processing"))
from test_sdsd import _rms, _series  # noqa: E402


def _add(document_controller: typing.Any, data: np.ndarray, title: str, sequence: bool = True) -> typing.Any:
    cals = [Calibration.Calibration(0, 0.25, "nm"), Calibration.Calibration(0, 0.25, "nm")]
    if data.ndim == 3:
        cals = [Calibration.Calibration()] + cals
    descriptor = DataAndMetadata.DataDescriptor(sequence and data.ndim == 3, 0, 2)
    item = DataItem.new_data_item(DataAndMetadata.new_data_and_metadata(data, dimensional_calibrations=cals,
                                                                        data_descriptor=descriptor))
    item.title = title
    document_controller.document_model.append_data_item(item)
    return item


def _recompute(document_controller: typing.Any) -> None:
    for _ in range(4):
        document_controller.document_model.recompute_all()
        document_controller.periodic()


def test_align_stack_outputs_calibrated_results(document_controller: typing.Any, swift_log: None) -> None:
    dm = document_controller.document_model
    frames, true = _series(31, n=8, dose=20.0)
    source = _add(document_controller, frames, "drifting series")
    target = stack_computations.align_item(dm, source)
    _recompute(document_controller)
    computation = dm.get_data_item_computation(target)
    assert target.xdata is not None, computation.error_text
    assert target.xdata.is_sequence and target.xdata.data_shape[0] == 8
    summary = target.xdata.metadata["insitu"]["sdsd"]
    assert _rms(summary["shifts_px"], true) < 0.2
    assert np.allclose(np.asarray(summary["shifts_nm"]), np.asarray(summary["shifts_px"]) * 0.25)
    cal = target.xdata.dimensional_calibrations
    assert cal[1].units == "nm" and cal[1].scale == pytest.approx(0.25)
    by_title = {d.title: d for d in dm.data_items}
    total = by_title[f"{stack_computations.TITLE}: aligned sum"].xdata
    assert total.data.shape == target.xdata.data_shape[1:]
    assert np.allclose(total.data, target.xdata.data.sum(axis=0), rtol=1e-4)
    shifts = by_title[f"{stack_computations.TITLE}: shifts (px) with uncertainty"].xdata
    assert shifts.data.shape == (4, 8) and shifts.intensity_calibration.units == "px"
    assert np.all(shifts.data[2:, 1:] > 0)    # uncertainties
    # shown as four labelled lines on the first run (it was one navigable line, dy only, until a re-run)
    plot_display = dm.get_display_item_for_data_item(by_title[f"{stack_computations.TITLE}: shifts (px) with uncertainty"])
    assert [layer.label for layer in plot_display.display_layers] == ["dy (px)", "dx (px)", "sigma y (px)",
                                                                      "sigma x (px)"]
    # a parameter change re-runs it
    computation.set_input_value("reference", "first")
    _recompute(document_controller)
    assert target.xdata.metadata["insitu"]["sdsd"]["reference"] == "first"
    notes = target.xdata.metadata["insitu"]["sdsd"]["notes"]
    assert len(notes) >= 1
    # the notes are what the user sees: the captions of the aligned sequence and sum (Info section)
    assert target.caption == stack_computations.CAPTION_PREFIX + "; ".join(notes)
    assert by_title[f"{stack_computations.TITLE}: aligned sum"].caption == target.caption
    # the low-pass chosen from the data is said there; a caption the user wrote is kept
    computation.set_input_value("reference", "all")
    computation.set_input_value("lowpass_auto", True)
    _recompute(document_controller)
    assert target.caption.startswith(stack_computations.CAPTION_PREFIX + "low-pass from data: ")
    target.caption = "my series"
    computation.set_input_value("lowpass_auto", False)
    _recompute(document_controller)
    assert target.caption == "my series"


@pytest.mark.parametrize("case", ["image", "one frame", "constant frames", "region outside"])
def test_bad_input_becomes_error_text(document_controller: typing.Any, case: str) -> None:
    dm = document_controller.document_model
    frames, _ = _series(32, n=4)
    values: dict[str, typing.Any] = {}
    if case == "image":
        source = _add(document_controller, frames[0], "image")
        with pytest.raises(ValueError, match="image sequence"):
            stack_computations.align_selection(type("DC", (), {"selected_display_item": dm.get_display_item_for_data_item(source), "document_model": dm})())
        target = stack_computations.align_item(dm, source)
        expected = "image sequence"
    elif case == "one frame":
        source = _add(document_controller, frames[:1], "one")
        target = stack_computations.align_item(dm, source)
        expected = "at least 2"
    elif case == "constant frames":
        source = _add(document_controller, np.zeros_like(frames), "zeros")
        target = stack_computations.align_item(dm, source)
        expected = "constant"
    else:
        source = _add(document_controller, frames, "ok")
        target = stack_computations.align_item(dm, source, region="0,0,900,900")
        expected = "not inside"
    _recompute(document_controller)
    error = dm.get_data_item_computation(target).error_text or ""
    assert expected in error, error
    assert source.xdata is not None   # the input is untouched


def test_drift_prior_random_walk_in_swift(document_controller: typing.Any, swift_log: None) -> None:
    """Issue 10: the Swift computation exposes SDSD's ``drift_prior`` option. A drifting low-dose series (linear
    drift + random walk, its true shifts known): switched from "off" to "random-walk" on the computation, the
    result is re-computed, lies closer to the true shifts than with the option off (three seeds), and the
    outputs' metadata carry the prior's fit (random walk and frame noise estimated, px) and its note."""
    from test_sdsd_prior import _image_series
    dm = document_controller.document_model
    errors_off, errors_on = [], []
    for seed in (510, 511, 512):
        frames, true = _image_series(seed)
        source = _add(document_controller, frames, f"drifting series {seed}")
        target = stack_computations.align_item(dm, source)
        _recompute(document_controller)
        computation = dm.get_data_item_computation(target)
        assert target.xdata is not None, computation.error_text
        off = target.xdata.metadata["insitu"]["sdsd"]
        assert computation.get_input_value("drift_prior") == "off" and off["drift_prior"] is None
        computation.set_input_value("drift_prior", "random-walk")
        _recompute(document_controller)
        assert not computation.error_text, computation.error_text
        assert computation.get_input_value("drift_prior") == "random-walk"
        on = target.xdata.metadata["insitu"]["sdsd"]
        fit = on["drift_prior"]
        assert fit is not None and 0.0 <= fit["walk_px"] < 0.2 and fit["frame_noise_px"] > 0.0, fit
        assert any(note.startswith("drift prior") for note in on["notes"]), on["notes"]
        sums = [d for d in dm.data_items if d.title == f"{stack_computations.TITLE}: aligned sum"]
        assert sums[-1].xdata.metadata["insitu"]["sdsd"]["drift_prior"] == fit     # every output records it
        errors_off.append(_rms(off["shifts_px"], true))
        errors_on.append(_rms(on["shifts_px"], true))
    assert max(b / a for a, b in zip(errors_off, errors_on)) < 0.9, (errors_off, errors_on)
    assert max(errors_on) < 0.2, errors_on
