"""The Swift glue on static data: computations built from the registry, parameters, ROI, errors."""
from __future__ import annotations

import typing

import numpy as np
import scipy.ndimage
from nion.data import Calibration, DataAndMetadata
from nion.swift.model import DataItem, Graphics
from nion.utils import Geometry

from nionswift_plugin.insitu import computations, panels


def _add_image(document_controller: typing.Any, data: np.ndarray, title: str = "image") -> typing.Any:
    xdata = DataAndMetadata.new_data_and_metadata(
        data, dimensional_calibrations=[Calibration.Calibration(0, 0.5, "nm"), Calibration.Calibration(0, 0.5, "nm")])
    data_item = DataItem.new_data_item(xdata)
    data_item.title = title
    document_controller.document_model.append_data_item(data_item)
    return document_controller.document_model.get_display_item_for_data_item(data_item)


def _recompute(document_controller: typing.Any) -> None:
    for _ in range(3):
        document_controller.document_model.recompute_all()
        document_controller.periodic()


def test_noise_reduction_on_a_static_image_equals_scipy_and_keeps_calibration(document_controller: typing.Any) -> None:
    rng = np.random.default_rng(0)
    data = rng.poisson(50, (64, 80)).astype(np.float32)
    display_item = _add_image(document_controller, data)
    out = computations.attach(document_controller.document_model, "insitu.noise_reduction", display_item,
                              parameters={"median_size_px": 3, "sigma_px": 1.5})
    _recompute(document_controller)
    expected = scipy.ndimage.gaussian_filter(scipy.ndimage.median_filter(data, 3, mode="reflect"), 1.5,
                                             mode="reflect")
    assert out.xdata is not None, document_controller.document_model.get_data_item_computation(out).error_text
    np.testing.assert_allclose(out.xdata.data, expected, rtol=1e-5, atol=1e-4)
    assert out.xdata.dimensional_calibrations[0].units == "nm"
    assert out.xdata.metadata["insitu"]["processor_id"] == "insitu.noise_reduction"


def test_rectangle_roi_is_processed_and_moving_it_takes_effect(document_controller: typing.Any) -> None:
    data = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
    display_item = _add_image(document_controller, data)
    roi = Graphics.RectangleGraphic()
    roi.bounds = Geometry.FloatRect.from_tlhw(0.1, 0.2, 0.3, 0.4)
    display_item.add_graphic(roi)
    out = computations.attach(document_controller.document_model, "insitu.copy", display_item, roi=roi)
    _recompute(document_controller)
    np.testing.assert_array_equal(out.xdata.data, data[10:40, 20:60])
    assert abs(out.xdata.dimensional_calibrations[1].offset - 20 * 0.5) < 1e-9  # calibrated position kept
    roi.bounds = Geometry.FloatRect.from_tlhw(0.5, 0.5, 0.2, 0.2)
    _recompute(document_controller)
    np.testing.assert_array_equal(out.xdata.data, data[50:70, 50:70])


def test_parameters_appear_as_computation_variables_with_labels_and_ranges(document_controller: typing.Any) -> None:
    display_item = _add_image(document_controller, np.ones((16, 16), np.float32))
    out = computations.attach(document_controller.document_model, "insitu.live_difference", display_item)
    computation = document_controller.document_model.get_data_item_computation(out)
    variables = {v.name: v for v in computation.variables}
    assert {"src", "fast", "slow", "time_in_seconds", "align"} <= set(variables)
    assert variables["fast"].value_min == 0.001 and variables["fast"].display_label.startswith("Fast time constant")


def test_bad_inputs_give_clear_error_text_and_recover(document_controller: typing.Any) -> None:
    document_model = document_controller.document_model
    display_item = _add_image(document_controller, np.ones((32, 32), np.float32))
    out = computations.attach(document_model, "insitu.noise_reduction", display_item)
    computation = document_model.get_data_item_computation(out)
    source = display_item.data_item
    bad = np.ones((32, 32), np.float32)
    bad[3, 4] = np.nan
    source.set_data(bad)
    _recompute(document_controller)
    assert "NaN" in (computation.error_text or ""), computation.error_text
    source.set_data(np.ones((40,), np.float32))
    _recompute(document_controller)
    assert "2-D image" in (computation.error_text or ""), computation.error_text
    source.set_data(np.full((32, 32), 7, np.uint16))
    _recompute(document_controller)
    assert not computation.error_text
    np.testing.assert_allclose(out.xdata.data, 7.0, rtol=1e-6)


def test_out_of_bounds_roi_is_reported(document_controller: typing.Any) -> None:
    display_item = _add_image(document_controller, np.ones((32, 32), np.float32))
    roi = Graphics.RectangleGraphic()
    roi.bounds = Geometry.FloatRect.from_tlhw(1.2, 1.2, 0.2, 0.2)
    display_item.add_graphic(roi)
    out = computations.attach(document_controller.document_model, "insitu.copy", display_item, roi=roi)
    _recompute(document_controller)
    error = document_controller.document_model.get_data_item_computation(out).error_text or ""
    assert "region of interest" in error and "covers no pixel" in error, error


def test_processing_menu_has_in_situ_submenu_listing_every_processor(document_controller: typing.Any) -> None:
    from processing import registry
    panels.install_menu(document_controller)
    submenu = document_controller._insitu_menu
    titles = [action.title for action in submenu.items if action.title]
    assert titles == [cls.title for cls in registry.all_processors()]


def test_menu_action_attaches_to_selected_display_with_its_rectangle(document_controller: typing.Any) -> None:
    data = np.random.default_rng(1).random((50, 60)).astype(np.float32)
    display_item = _add_image(document_controller, data)
    roi = Graphics.RectangleGraphic()
    roi.bounds = Geometry.FloatRect.from_tlhw(0.0, 0.0, 0.5, 0.5)
    display_item.add_graphic(roi)
    display_panel = document_controller.selected_display_panel
    display_panel.set_display_panel_display_item(display_item)
    out = panels.attach_to_selection(document_controller, "insitu.copy")
    _recompute(document_controller)
    np.testing.assert_array_equal(out.xdata.data, data[:25, :30])


def test_facade_scripting_attaches_a_processor_with_parameters(document_controller: typing.Any) -> None:
    from nion.swift import Facade
    from nionswift_plugin.insitu import scripting
    api = Facade.get_api("~1.0", "~1.0")
    data = np.random.default_rng(2).random((40, 40)).astype(np.float32)
    data_item = api.library.create_data_item_from_data(data, "scripted")
    assert "insitu.live_difference" in scripting.processor_ids()
    result = scripting.attach_processor(api, "insitu.noise_reduction", data_item, median_size_px=0, sigma_px=1.0)
    _recompute(document_controller)
    np.testing.assert_allclose(result.data, scipy.ndimage.gaussian_filter(data, 1.0, mode="reflect"), atol=1e-5)
    # the plain Facade call works too, because each processor is a registered computation type
    computation = api.library.create_computation("insitu.copy", inputs={"src": api.library.create_data_item_from_data(data)},
                                                 outputs={"target": None})
    _recompute(document_controller)
    assert not computation._computation.error_text
    np.testing.assert_array_equal(computation.get_result("target").data, data)


def test_dropping_a_data_item_on_a_processor_in_the_panel_attaches_it(document_controller: typing.Any) -> None:
    from nion.swift import MimeTypes
    data = np.random.default_rng(3).random((30, 30)).astype(np.float32)
    display_item = _add_image(document_controller, data, "dropped")
    mime_data = document_controller.ui.create_mime_data()
    MimeTypes.mime_data_put_display_item(mime_data, display_item)
    target = panels.ProcessorDropTarget(document_controller, "insitu.copy", "Copy (ROI)")
    assert target.wants_drag_event(mime_data, 0, 0) and target.drag_enter(mime_data) == "copy"
    assert target.drop(mime_data, 0, 0) == "copy"
    _recompute(document_controller)
    outputs = [d for d in document_controller.document_model.data_items if d.title == "dropped (Copy (ROI))"]
    assert len(outputs) == 1
    np.testing.assert_array_equal(outputs[0].xdata.data, data)
    other = document_controller.ui.create_mime_data()
    other.set_data_as_string("text/plain", "not a data item")
    assert target.drag_enter(other) == "ignore"


def test_the_panel_lists_every_processor_as_a_drop_target(document_controller: typing.Any) -> None:
    from processing import registry
    panel = panels.InSituProcessorsPanel(document_controller, panels.PANEL_ID, {})
    try:
        titles = [t.processor_id for t in panel._InSituProcessorsPanel__targets]
        assert titles == [cls.processor_id for cls in registry.all_processors()]
    finally:
        panel.close()


def test_inspector_editors_follow_the_declared_ranges_and_choices(document_controller: typing.Any) -> None:
    from nionswift_plugin.insitu import inspector
    display_item = _add_image(document_controller, np.ones((16, 16), np.float32))
    model = document_controller.document_model
    noise = model.get_data_item_computation(computations.attach(model, "insitu.noise_reduction", display_item))
    tracking = model.get_data_item_computation(computations.attach(model, "insitu.threshold_tracking", display_item))
    factory = inspector.ProcessorVariableHandlerFactory()

    class Model:
        value: typing.Any = None

    sigma = next(v for v in noise.variables if v.name == "sigma_px")
    handler = factory.make_variable_handler(document_controller, noise, sigma, Model())
    assert isinstance(handler, inspector.RangeSliderHandler)
    assert handler.slider_converter.convert_back(inspector.SLIDER_STEPS) == 50.0  # the declared max, not 100
    polarity = next(v for v in tracking.variables if v.name == "polarity")
    model_value = Model()
    model_value.value = "bright"
    choice = factory.make_variable_handler(document_controller, tracking, polarity, model_value)
    assert isinstance(choice, inspector.ChoiceHandler) and choice.choices == ["bright", "dark"]
    choice.choice_index = 1
    assert model_value.value == "dark"
    source = next(v for v in noise.variables if v.name == "src")
    assert factory.make_variable_handler(document_controller, noise, source, Model()) is None  # Swift's own
