"""Bad-input matrix through headless Swift and the real computation path (issue 14), one parametrised test.

For every registered processor (``registry.all_processors()``: processors added later are covered) the source
data item is set to each bad input of :mod:`tests.processing.test_bad_input` (1-D, 3-D, 4-D, complex, int16 near
its limits, uint8, float64, all-NaN, some inf, 1x1, 3x3, 3/4 px wide, 1x5000, values near float32's maximum,
empty) and the computation's rectangle ROI is made zero-area, partly and fully outside; after each case valid data
is given again. Each bad case must end with a clear message in the computation's error text or a correct output
(finite, never a plain image Swift reads as RGB); valid data must clear the error and write a fresh result;
Swift's log (stderr: Swift prints commit exceptions there, and logging) must hold no traceback.
"""
from __future__ import annotations

import logging
import typing

import numpy as np
import pytest
from nion.data import Calibration, DataAndMetadata
from nion.swift.model import DataItem, Graphics
from nion.utils import Geometry

from nionswift_plugin.insitu import computations
from processing import registry
from tests.processing.test_bad_input import BAD_ROIS, KNOWN_NON_FINITE, MUST_REFUSE, bad_inputs, valid_frame

WHOLE_FRAME = Geometry.FloatRect.from_tlhw(0.0, 0.0, 1.0, 1.0)


def _recompute(document_controller: typing.Any) -> None:
    for _ in range(3):
        document_controller.document_model.recompute_all()
        document_controller.periodic()


def _outputs(document_model: typing.Any, computation: typing.Any) -> list[typing.Any]:
    items = []
    for result in computation.results:
        items += [i for i in result.output_items if isinstance(i, DataItem.DataItem)]
    return items


def _check_swift_outputs(items: list[typing.Any], declared_rgb: bool, what: str) -> list[str]:
    problems = []
    for item in items:
        xdata = item.xdata
        if xdata is None:
            problems.append(f"{what}: output '{item.title}' has no data")
            continue
        data = np.asarray(xdata.data)
        if xdata.is_data_rgb_type:
            if not declared_rgb:
                problems.append(f"{what}: '{item.title}' {data.dtype} {data.shape} is shown as RGB")
            continue
        if not np.isfinite(data).all():
            problems.append(f"{what}: '{item.title}' has non-finite values")
        if len(xdata.dimensional_calibrations) != len(xdata.data_shape):
            problems.append(f"{what}: '{item.title}' calibrations do not match its shape")
    return problems


@pytest.mark.parametrize("processor_id", [cls.processor_id for cls in registry.all_processors()])
def test_bad_input_matrix_in_swift(processor_id: str, document_controller: typing.Any,
                                   capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    document_model = document_controller.document_model
    cls = registry.get(processor_id)
    declared_rgb = any(kind == "rgb" for _, kind in cls.OUTPUTS)
    good = valid_frame(7)
    xdata = DataAndMetadata.new_data_and_metadata(
        good, dimensional_calibrations=[Calibration.Calibration(0, 0.5, "nm"), Calibration.Calibration(0, 0.5, "nm")])
    source = DataItem.new_data_item(xdata)
    document_model.append_data_item(source)
    display_item = document_model.get_display_item_for_data_item(source)
    roi = Graphics.RectangleGraphic()
    roi.bounds = WHOLE_FRAME
    display_item.add_graphic(roi)
    out = computations.attach(document_model, processor_id, display_item, roi=roi)
    computation = document_model.get_data_item_computation(out)
    _recompute(document_controller)
    assert not computation.error_text, computation.error_text
    assert _check_swift_outputs(_outputs(document_model, computation), declared_rgb, "start") == []

    problems: list[str] = []
    cases: list[tuple[str, typing.Any, typing.Any]] = [(n, d, None) for n, d in bad_inputs().items()]
    cases += [(n, None, r) for n, r in BAD_ROIS.items()]
    for name, data, bounds in cases:
        if data is not None:
            source.set_data(data)
        else:
            (top, left), (height, width) = bounds
            roi.bounds = Geometry.FloatRect.from_tlhw(top, left, height, width)
        _recompute(document_controller)
        error = computation.error_text or ""
        if name in MUST_REFUSE and not error:
            problems.append(f"{name}: accepted without a message")
        if error:
            if len(error) < 30 or "Traceback" in error or error == "Unable to evaluate script.":
                problems.append(f"{name}: unhelpful error text {error!r}")
            if computation.error_stack_trace and "ProcessingError" not in computation.error_stack_trace:
                problems.append(f"{name}: an unexpected exception escaped into Swift: "
                                f"{computation.error_stack_trace.strip().splitlines()[-1]}")
        elif (processor_id, name) not in KNOWN_NON_FINITE:
            problems += _check_swift_outputs(_outputs(document_model, computation), declared_rgb, name)
        # recovery: valid data (and the whole-frame ROI) again
        source.set_data(good + np.float32(len(problems)))
        roi.bounds = WHOLE_FRAME
        _recompute(document_controller)
        if computation.error_text:
            problems.append(f"no recovery after {name}: {computation.error_text}")
        problems += _check_swift_outputs(_outputs(document_model, computation), declared_rgb, f"after {name}")
    err = capsys.readouterr().err
    tracebacks = [record for record in caplog.records if record.exc_info or "Traceback" in record.getMessage()]
    assert "Traceback" not in err, err[-3000:]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    assert problems == []


@pytest.mark.parametrize("width", [3, 4])
def test_glue_never_turns_a_plain_uint8_image_into_rgb(width: int) -> None:
    """Issue 14, 3(a), the glue's half: a processor's uint8 (H, 3|4) ImageOutput stays a 2-D image in Swift
    (before: read as RGB(A), then AssertionError 'dimensional_calibrations (2) must match dimensional_shape (1)')."""
    from processing import base as pb
    labels = np.tile(np.array([0, 1, 2, 1][:width], np.uint8), (40, 1))
    xdata = computations.output_to_xdata(pb.ImageOutput("image", labels), {})
    assert xdata is not None and not xdata.is_data_rgb_type
    assert xdata.data_shape == (40, width) and len(xdata.dimensional_calibrations) == 2
    np.testing.assert_array_equal(xdata.data, labels)
