"""Inspector editors for processor parameters that respect the declared ranges and choices.

Swift's built-in real slider always spans 0..100 whatever the declared range, and its choice editor only offers
None/Mapped. This factory (registered as ``variable-handler-component-factory``, which Swift asks first) gives our
processors' real parameters a slider over their own [min, max] (a text field alone for very wide ranges) and
choice parameters a combo box with their choices. Other computations and variable types fall through to Swift.
"""
from __future__ import annotations

import typing

from nion.swift.model import Symbolic
from nion.ui import Declarative
from nion.utils import Converter
from nion.utils import Registry

from processing import base as pb
from processing import registry

#: widest range (max - min) for which a real parameter gets a slider; wider ranges get a text field only
MAX_SLIDER_SPAN = 1000.0
SLIDER_STEPS = 1000


def _parameter(computation: Symbolic.Computation, variable: Symbolic.ComputationVariable) -> pb.Parameter | None:
    try:
        cls = registry.get(str(computation.processing_id or ""))
    except KeyError:
        return None
    return next((p for p in cls.PARAMETERS if p.name == variable.name), None)


class RangeSliderHandler(Declarative.Handler):
    """Slider over the parameter's own range plus a text field."""

    def __init__(self, variable: Symbolic.ComputationVariable, variable_model: typing.Any, parameter: pb.Parameter):
        super().__init__()
        self.variable = variable
        self.variable_model = variable_model
        assert parameter.min is not None and parameter.max is not None
        self.slider_converter = Converter.FloatToScaledIntegerConverter(SLIDER_STEPS, parameter.min, parameter.max)
        self.float_str_converter = Converter.FloatToStringConverter()
        u = Declarative.DeclarativeUI()
        label = u.create_label(text="@binding(variable.display_label)")
        slider = u.create_slider(value="@binding(variable_model.value, converter=slider_converter)", minimum=0,
                                 maximum=SLIDER_STEPS, widget_id="slider_value")
        line_edit = u.create_line_edit(text="@binding(variable_model.value, converter=float_str_converter)",
                                       width=60, widget_id="value")
        self.ui_view = u.create_column(label, u.create_row(slider, line_edit, spacing=8), spacing=4)


class RealFieldHandler(Declarative.Handler):
    """Text field for a real parameter whose range is too wide for a slider (Swift's would span 0..100)."""

    def __init__(self, variable: Symbolic.ComputationVariable, variable_model: typing.Any) -> None:
        super().__init__()
        self.variable = variable
        self.variable_model = variable_model
        self.float_str_converter = Converter.FloatToStringConverter()
        u = Declarative.DeclarativeUI()
        label = u.create_label(text="@binding(variable.display_label)")
        line_edit = u.create_line_edit(text="@binding(variable_model.value, converter=float_str_converter)",
                                       width=80, widget_id="value")
        self.ui_view = u.create_column(label, line_edit, spacing=4)


class ChoiceHandler(Declarative.Handler):
    """Combo box with the parameter's choices."""

    def __init__(self, variable: Symbolic.ComputationVariable, variable_model: typing.Any, parameter: pb.Parameter):
        super().__init__()
        self.variable = variable
        self.variable_model = variable_model
        self.choices = list(parameter.choices)
        u = Declarative.DeclarativeUI()
        label = u.create_label(text="@binding(variable.display_label)")
        combo_box = u.create_combo_box(items=self.choices, current_index="@binding(choice_index)")
        self.ui_view = u.create_column(label, combo_box, spacing=4)

    @property
    def choice_index(self) -> int:
        value = self.variable_model.value
        return self.choices.index(value) if value in self.choices else 0

    @choice_index.setter
    def choice_index(self, index: int) -> None:
        if 0 <= index < len(self.choices):
            self.variable_model.value = self.choices[index]


class ProcessorVariableHandlerFactory:
    """Swift asks this first for every computation variable; it answers only for our processors' parameters."""

    def make_variable_handler(self, document_controller: typing.Any, computation: Symbolic.Computation,
                              computation_variable: Symbolic.ComputationVariable,
                              variable_model: typing.Any) -> Declarative.HandlerLike | None:
        parameter = _parameter(computation, computation_variable)
        if parameter is None:
            return None
        if parameter.type == "choice" and parameter.choices:
            return ChoiceHandler(computation_variable, variable_model, parameter)
        if parameter.type == "real":
            if parameter.min is not None and parameter.max is not None and parameter.max - parameter.min <= MAX_SLIDER_SPAN:
                return RangeSliderHandler(computation_variable, variable_model, parameter)
            return RealFieldHandler(computation_variable, variable_model)
        return None  # Swift's own editors: integer slider (honours the range), checkbox, text field


_FACTORY = ProcessorVariableHandlerFactory()


def register() -> None:
    Registry.register_component(_FACTORY, {"variable-handler-component-factory"})


def unregister() -> None:
    Registry.unregister_component(_FACTORY, {"variable-handler-component-factory"})
