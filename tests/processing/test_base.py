"""The processor interface: parameters, validation, ROI cropping, the frame memo, function processors."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from processing import (Context, Frame, InputError, Parameter, ParameterError, crop_fractional, make_frame,
                        processor_from_function, registry, validate_image)
from processing.base import FrameMemo


@pytest.mark.parametrize("data, match", [
    (np.ones(10), "got shape \\(10,\\)"),
    (np.ones((2, 3, 4)), "stack or spectrum image"),
    (np.ones((4, 4), complex), "complex"),
    (np.zeros((0, 4)), "empty"),
])
def test_validate_image_rejects_bad_input_with_a_clear_message(data: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        validate_image(data)


def test_validate_image_reports_how_many_pixels_are_nan() -> None:
    data = np.ones((4, 4))
    data[0, 0] = np.nan
    data[1, 1] = np.inf
    with pytest.raises(InputError, match="2 NaN/inf"):
        validate_image(data)


def test_integer_frames_convert_without_overflow() -> None:
    data = np.full((3, 3), 65535, np.uint16)
    assert validate_image(data).sum() == 9 * 65535.0


def test_crop_fractional_clips_and_rejects_empty() -> None:
    assert crop_fractional((100, 200), ((-0.1, 0.9), (0.5, 0.5))) == (slice(0, 40), slice(180, 200))
    with pytest.raises(InputError, match="covers no pixel"):
        crop_fractional((100, 200), ((1.5, 0.0), (0.2, 0.2)))


def test_parameters_are_validated_against_their_declared_range() -> None:
    p = Parameter("sigma_px", "Sigma", "real", 2.0, 0.0, 10.0, "px")
    assert p.validate(3) == 3.0
    with pytest.raises(ParameterError, match="outside its range"):
        p.validate(11)
    with pytest.raises(ParameterError, match="whole number"):
        Parameter("n", "N", "integral", 1, 0, 5).validate(2.5)


def test_frame_memo_computes_once_for_concurrent_callers() -> None:
    memo = FrameMemo()
    calls = []
    barrier = threading.Barrier(4)

    def expensive() -> int:
        calls.append(1)
        return 42

    results = []

    def worker() -> None:
        barrier.wait()
        results.append(memo.get("k", expensive))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [42] * 4 and len(calls) == 1


def test_a_function_becomes_a_registered_processor() -> None:
    def invert(data: np.ndarray, *, offset: float) -> np.ndarray:
        return offset - data

    cls = processor_from_function(invert, processor_id="test.invert", title="Invert",
                                  parameters=[Parameter("offset", "Offset", "real", 1.0)])
    registry.register(cls)
    assert registry.get("test.invert") is cls
    out = cls(offset=5.0).process(make_frame(np.ones((2, 2))), Context())[0].data
    np.testing.assert_array_equal(out, 4.0)


def test_unknown_parameter_names_are_refused() -> None:
    from processing.live.filters import NoiseReductionProcessor
    with pytest.raises(ParameterError, match="no parameter"):
        NoiseReductionProcessor(sigma=3)


def test_frame_shape_property() -> None:
    assert Frame(np.zeros((3, 4), np.float32)).shape == (3, 4)
