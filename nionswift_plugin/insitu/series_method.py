"""Focal / energy series as a method of Swift's own **Acquisition panel** (fixed exposure), registered through the
registry component ``acquisition-method-component-factory`` like Swift's "1D Ramp" (``SeriesAcquisitionMethodComponentHandler``
in nionswift-instrumentation 23.6's ``AcquisitionPanel.py``).

The method wraps the panel's device data stream exactly as Swift's series does:
``SequenceDataStream(ActionDataStream(device stream, action), N)``; the action sets the control of slice k (C10 for a
focal series, ``EFTEM_EnergyOffset`` with the slit in at the chosen width for an energy series) before frame k, and
restores the controls at the end. Plans come from :mod:`processing.stack.series` (the same steps and checks as our
panel). Auto-exposure with dark references is *not* possible in this pipeline (see docs/stack.md): the camera's
exposure is fixed when the device stream starts, a sequence has exactly N frames (no re-take, no dark frame between
slices), and the action never sees the frame it precedes; the method says so in the panel and points to
Window > Focal / energy series for that.
"""
from __future__ import annotations

import gettext
import typing

from nion.instrumentation import Acquisition
from nion.swift.model import Schema
from nion.ui import Declarative
from nion.utils import Converter, Registry

from processing import base as pb
from processing.stack.series import SeriesPlan, energy_series_plan, focal_series_plan

_ = gettext.gettext

__all__ = ["InsituSeriesMethodHandler", "InsituSeriesMethod", "register", "unregister", "COMPONENT_ID"]

COMPONENT_ID = "insitu-series"
_registered: list[typing.Any] = []


def _schema() -> typing.Any:
    from nionswift_plugin.nion_instrumentation_ui import AcquisitionPanel
    entity_id = "acquisition_method_component_" + COMPONENT_ID.replace("-", "_")
    existing = Schema.get_entity_type(entity_id)
    if existing is not None:
        return existing
    return Schema.entity(entity_id, AcquisitionPanel.AcquisitionMethodSchema, None, {
        "kind": Schema.prop(Schema.INT, default=0),               # 0 focal, 1 energy
        "start": Schema.prop(Schema.FLOAT, default=-40.0),
        "step": Schema.prop(Schema.FLOAT, default=8.0),
        "count": Schema.prop(Schema.INT, default=11),
        "slit_width_eV": Schema.prop(Schema.FLOAT, default=10.0),
    })


def plan_from(kind: int, start: float, step: float, count: int, slit_width_eV: float) -> SeriesPlan:
    """The series plan of the panel's fields (kind 0 focal: nm; 1 energy: eV)."""
    if int(kind) == 0:
        return focal_series_plan(float(start), float(step), int(count))
    return energy_series_plan(float(start), float(step), int(count), slit_width_eV=float(slit_width_eV))


class _SeriesSteps(Acquisition.ActionValueControllerLike):
    """Before frame k: the plan's control set to slice k's value; at the start the plan's settings (slit), at the
    end every control restored."""

    def __init__(self, stem_controller: typing.Any, plan: SeriesPlan) -> None:
        self.__stem = stem_controller
        self.__plan = plan
        self.__saved: dict[str, float] = {}

    def __set(self, name: str, value: float) -> None:
        if not self.__stem.SetValAndConfirm(name, float(value), 1.0, 5000):
            raise pb.ParameterError(f"the instrument refused {name} = {value}; check the control and its range.")

    def start(self, **kwargs: typing.Any) -> None:
        plan = self.__plan
        for name in (plan.control,) + tuple(n for n, _v in plan.settings):
            ok, value = self.__stem.TryGetVal(name)
            if not ok:
                raise pb.ParameterError(f"the instrument has no control '{name}' needed by the {plan.name} series; "
                                        f"check the instrument (an energy series needs an energy filter).")
            self.__saved[name] = float(value)
        for name, value in plan.settings:
            self.__set(name, value)

    def perform(self, index: typing.Sequence[int], **kwargs: typing.Any) -> dict[str, typing.Any]:
        plan = self.__plan
        value = plan.values[int(index[0])]
        self.__set(plan.control, value * plan.control_scale)
        return {"insitu_series": {"series": plan.name, "control": plan.control, "value": value, "units": plan.units}}

    def finish(self, **kwargs: typing.Any) -> None:
        for name, value in self.__saved.items():
            self.__stem.SetValAndConfirm(name, value, 1.0, 5000)


class InsituSeriesMethod(Acquisition.AcquisitionMethodLike):
    """The plan's N slices around the device stream (fixed exposure)."""

    def __init__(self, plan: SeriesPlan) -> None:
        self.plan = plan

    def wrap_acquisition_device_data_stream(self, device_data_stream: Acquisition.DataStream,
                                            device_map: typing.Mapping[str, typing.Any]) -> Acquisition.DataStream:
        stem = device_map["stem"].stem_controller
        channel_names = device_data_stream.channel_names
        stream = Acquisition.SequenceDataStream(Acquisition.ActionDataStream(device_data_stream,
                                                                             _SeriesSteps(stem, self.plan)),
                                                len(self.plan.values))
        stream.channel_names = channel_names
        stream.title = f"{self.plan.name.capitalize()} series {self.plan.values[0]:g}-{self.plan.values[-1]:g} " \
                       f"{self.plan.units}"
        return stream


def _base() -> type:
    from nionswift_plugin.nion_instrumentation_ui import AcquisitionPanel
    return typing.cast(type, AcquisitionPanel.AcquisitionMethodComponentHandler)


def _make_handler_class() -> type:
    class InsituSeriesMethodHandler(_base()):  # type: ignore[misc]
        """Acquisition panel > method "In-situ focal / energy series": kind, start, step, count, slit width."""

        component_id = COMPONENT_ID

        def __init__(self, configuration: typing.Any, preferences: typing.Any) -> None:
            super().__init__(_("In-situ focal / energy series"), configuration)
            self.configuration = configuration
            self.float_converter = Converter.FloatToStringConverter(format="{0:g}")
            self.int_converter = Converter.IntegerToStringConverter()
            u = Declarative.DeclarativeUI()

            def field(label: str, name: str, converter: str) -> typing.Any:
                return u.create_row(u.create_label(text=label, width=140),
                                    u.create_line_edit(text=f"@binding(configuration.{name}, converter={converter})",
                                                       width=90), u.create_stretch(), spacing=8)
            self.ui_view = u.create_column(
                u.create_row(u.create_label(text=_("Series"), width=140),
                             u.create_combo_box(items=[_("Focal (C10), nm"), _("Energy (EFTEM offset), eV")],
                                                current_index="@binding(configuration.kind)"),
                             u.create_stretch(), spacing=8),
                field(_("Start (nm or eV)"), "start", "float_converter"),
                field(_("Step (nm or eV)"), "step", "float_converter"),
                field(_("Images"), "count", "int_converter"),
                field(_("Slit width (eV)"), "slit_width_eV", "float_converter"),
                u.create_label(text=_("Fixed exposure (the camera's). Auto-exposure with dark references: "
                                      "Window > Focal / energy series."), word_wrap=True),
                spacing=8)

        def build_acquisition_method(self) -> Acquisition.AcquisitionMethodLike:
            c = self.configuration
            return InsituSeriesMethod(plan_from(c.kind, c.start, c.step, c.count, c.slit_width_eV))

    return InsituSeriesMethodHandler


InsituSeriesMethodHandler: typing.Any = None


def register() -> None:
    """Register the method with Swift's Acquisition panel (a no-op without nionswift-instrumentation's UI)."""
    global InsituSeriesMethodHandler
    if _registered:
        return
    try:
        _schema()
        handler = _make_handler_class()
    except ImportError:   # the Acquisition panel's plug-in is not installed: nothing to register with
        return
    InsituSeriesMethodHandler = handler
    Registry.register_component(handler, {"acquisition-method-component-factory"})
    _registered.append(handler)


def unregister() -> None:
    while _registered:
        Registry.unregister_component(_registered.pop(), {"acquisition-method-component-factory"})
