"""The simulated instrument (STEM controller) shared by every simulated device.

:class:`SimInstrument` is a ``nion.device_kit.InstrumentDevice.Instrument`` (hence a
``nion.instrumentation.stem_controller.STEMController``) with

* a small thread-safe :class:`ValueManager`: named float controls (``GetVal("BeamCurrent")``), 2-D controls
  (``GetVal2D("CSH")``, also addressable per component as ``"CSH.x"``/``"CSH.y"``), aliases and computed controls;
* an identity :class:`AxisManager` (all axes share one frame, as in Nion's own simulator);
* per-camera-type sensor shapes (:meth:`SimInstrument.set_camera_shape`);
* a simulation clock (:meth:`SimInstrument.time_s`, seconds since the instrument was created, replaceable by a
  :class:`ManualClock` in tests);
* the sample drift (:class:`~instrument_sim.drift.DriftModel`) and the energy drift
  (:class:`~instrument_sim.drift.EnergyDriftModel`) with their ground truth
  (:meth:`SimInstrument.true_sample_offset_nm`, :meth:`SimInstrument.true_energy_offset_eV`).

Geometry convention shared by all devices: the sample drift offset ``d(t)`` (nm, ``(y, x)``) is the displacement
of the sample relative to the stage. Sample content that was at image position ``p`` at ``t = 0`` is at ``p + d(t)``
at time ``t`` (for stage position 0 and no beam shift). The stage position ``s`` (``stage_position_m``) is the sample
coordinate under the field centre, so it moves the content by ``-s``. The probe/beam shift ``CSH`` moves the field of
view of a *scan* by ``+CSH`` (content by ``-CSH``); the in-situ TEM camera ignores it.
:meth:`SimInstrument.content_offset_nm` gives ``d(t) - s`` and :meth:`SimInstrument.scan_content_offset_nm` gives
``d(t) - s - CSH``.
"""
from __future__ import annotations

import math
import threading
import time
import typing

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nion.device_kit import InstrumentDevice
from nion.instrumentation import stem_controller
from nion.utils import Event
from nion.utils import Geometry

from instrument_sim.drift import DriftModel, EnergyDriftModel
from instrument_sim.errors import SimulatorParameterError

__all__ = ["SimInstrument", "ValueManager", "AxisManager", "SimAxisDescription", "ManualClock", "MonotonicClock",
           "INSTRUMENT_ID", "DEFAULT_CONTROLS", "DEFAULT_CONTROLS_2D"]

INSTRUMENT_ID = "insitu_stem_controller"

#: Default 1-D controls (name -> value, SI units unless the name says otherwise).
DEFAULT_CONTROLS: dict[str, float] = {
    "BeamCurrent": 200e-12,       # A
    "EHT": 200e3,                 # V
    "C10": 0.0,                   # m (defocus)
    "C30": 0.0,                   # m
    "ConvergenceAngle": 0.03,     # rad
    "ZLPtare": 0.0,               # eV
    "ZLPoffset": -20.0,           # eV, energy of EELS channel 0
    "EELS_Dispersion": 0.5,       # eV per channel
    "C_Blank": 0.0,               # 0 or 1
    "S_VOA": 0.0,
    "S_MOA": 0.0,
}

#: Default 2-D controls (name -> native axis and (y, x) value).
DEFAULT_CONTROLS_2D: dict[str, tuple[tuple[str, str], tuple[float, float]]] = {
    "stage_position_m": (("x", "y"), (0.0, 0.0)),
    "CSH": (("x", "y"), (0.0, 0.0)),           # probe / beam shift (m)
    "C12": (("x", "y"), (0.0, 0.0)),
    "C21": (("x", "y"), (0.0, 0.0)),
    "C23": (("x", "y"), (0.0, 0.0)),
    "CAperture": (("x", "y"), (0.0, 0.0)),
    "AxisConverter": (("x", "y"), (0.0, 0.0)),
}

#: Aliases (alias -> control). ``beam_shift_m`` is what Nion's scan code reads; ``eels_*`` are the calibration
#: controls device_kit's camera uses for an ``"eels"`` camera.
DEFAULT_ALIASES: dict[str, str] = {
    "beam_shift_m": "CSH",
    "EELS_MagneticShift_Offset": "ZLPoffset",
    "eels_x_offset": "ZLPoffset",
    "eels_x_scale": "EELS_Dispersion",
}


class MonotonicClock:
    """Seconds since construction, from ``time.perf_counter`` (never goes backwards)."""

    def __init__(self) -> None:
        self.__start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.__start


class ManualClock:
    """A clock for tests: returns ``t_s`` until it is changed with :meth:`set` or :meth:`advance`."""

    def __init__(self, t_s: float = 0.0) -> None:
        self.__lock = threading.Lock()
        self.__t_s = 0.0
        self.set(t_s)

    def __call__(self) -> float:
        with self.__lock:
            return self.__t_s

    def set(self, t_s: float) -> None:
        """Set the time (s, >= 0)."""
        if not (math.isfinite(t_s) and t_s >= 0.0):
            raise SimulatorParameterError(f"clock time must be finite and >= 0 s; got {t_s!r}.")
        with self.__lock:
            self.__t_s = float(t_s)

    def advance(self, dt_s: float) -> None:
        """Move the time forward by ``dt_s`` (s, >= 0)."""
        if not (math.isfinite(dt_s) and dt_s >= 0.0):
            raise SimulatorParameterError(f"clock step must be finite and >= 0 s; got {dt_s!r}.")
        with self.__lock:
            self.__t_s += float(dt_s)


Getter = typing.Callable[[], float]
Setter = typing.Callable[[float], None]


class ValueManager:
    """Named controls of the simulated instrument (thread-safe).

    * 1-D controls: ``get_value("BeamCurrent")``.
    * 2-D controls: stored per native component; ``get_value("CSH.x")``, ``get_value_2d("CSH")`` (a ``FloatPoint``
      ``(y, x)``). Any supported axis name maps to the same components (identity axis transform).
    * Aliases: another name for a control (``beam_shift_m`` -> ``CSH``).
    * Computed controls: a getter (and optional setter), e.g. camera calibrations.

    ``property_changed_event`` fires with the (base) control name after each change.
    """

    def __init__(self) -> None:
        self.property_changed_event = Event.Event()
        self.__lock = threading.RLock()
        self.__values: dict[str, float] = dict()
        self.__axes_2d: dict[str, tuple[str, str]] = dict()
        self.__aliases: dict[str, str] = dict()
        self.__computed: dict[str, tuple[Getter, Setter | None]] = dict()

    # --- declaration

    def add_control(self, name: str, value: float = 0.0) -> None:
        """Add a 1-D control. Raises :class:`SimulatorParameterError` if the name exists."""
        with self.__lock:
            self.__check_new(name)
            self.__values[name] = float(value)

    def add_control_2d(self, name: str, value_yx: tuple[float, float] = (0.0, 0.0), *,
                       native_axis: tuple[str, str] = ("x", "y")) -> None:
        """Add a 2-D control with components named by ``native_axis`` (default ``x``, ``y``)."""
        with self.__lock:
            self.__check_new(name)
            self.__axes_2d[name] = native_axis
            self.__values[f"{name}.{native_axis[0]}"] = float(value_yx[1])
            self.__values[f"{name}.{native_axis[1]}"] = float(value_yx[0])

    def add_alias(self, alias: str, name: str) -> None:
        """Make ``alias`` another name of control ``name`` (1-D or 2-D)."""
        with self.__lock:
            self.__check_new(alias)
            self.__aliases[alias] = name

    def add_computed_control(self, name: str, getter: Getter, setter: Setter | None = None) -> None:
        """Add a control whose value comes from ``getter()`` (and is set through ``setter``, if given)."""
        with self.__lock:
            self.__check_new(name)
            self.__computed[name] = (getter, setter)

    def remove_control(self, name: str) -> None:
        """Remove a control, 2-D control, alias or computed control."""
        with self.__lock:
            if name in self.__axes_2d:
                axis = self.__axes_2d.pop(name)
                self.__values.pop(f"{name}.{axis[0]}")
                self.__values.pop(f"{name}.{axis[1]}")
            elif name in self.__values:
                self.__values.pop(name)
            elif name in self.__aliases:
                self.__aliases.pop(name)
            elif name in self.__computed:
                self.__computed.pop(name)
            else:
                raise SimulatorParameterError(f"no control named {name!r} to remove.")

    def has_control(self, name: str) -> bool:
        return self.get_value(name) is not None or self.__resolve_2d(name) is not None

    @property
    def control_names(self) -> list[str]:
        """All 1-D names (2-D components as ``name.x``), 2-D names, aliases and computed names."""
        with self.__lock:
            return sorted(set(self.__values) | set(self.__axes_2d) | set(self.__aliases) | set(self.__computed))

    def __check_new(self, name: str) -> None:
        known = (self.__values, self.__axes_2d, self.__aliases, self.__computed)
        if not name or any(name in names for names in known):
            raise SimulatorParameterError(f"a control named {name!r} already exists (or the name is empty); "
                                          "choose another name or remove the existing control first.")

    # --- resolution

    def __resolve(self, name: str) -> str | None:
        """Return the storage key of a 1-D value (resolving aliases and 2-D component names), else None."""
        name = self.__aliases.get(name, name)
        if name in self.__values:
            return name
        if "." in name:
            base, component = name.split(".", 1)
            base = self.__aliases.get(base, base)
            axis = self.__axes_2d.get(base)
            if axis is None:
                return None
            if component in axis:
                return f"{base}.{component}"
            for axis_description in AxisManager().supported_axis_descriptions:
                if component in axis_description.axis_type:
                    return f"{base}.{axis[axis_description.axis_type.index(component)]}"
        return None

    def __resolve_2d(self, name: str) -> str | None:
        name = self.__aliases.get(name, name)
        return name if name in self.__axes_2d else None

    @staticmethod
    def __base_name(key: str) -> str:
        return key.split(".", 1)[0]

    # --- ValueManagerLike

    def get_value(self, name: str) -> float | None:
        with self.__lock:
            computed = self.__computed.get(self.__aliases.get(name, name))
            if computed is None:
                key = self.__resolve(name)
                return self.__values[key] if key is not None else None
        return float(computed[0]())

    def set_value(self, name: str, value: float) -> bool:
        with self.__lock:
            computed = self.__computed.get(self.__aliases.get(name, name))
            key = self.__resolve(name) if computed is None else None
            if computed is None and key is not None:
                changed = self.__values[key] != float(value)
                self.__values[key] = float(value)
        if computed is not None:
            if computed[1] is None:
                return False
            computed[1](float(value))
            self.property_changed_event.fire(self.__aliases.get(name, name))
            return True
        if key is None:
            return False
        if changed:
            self.property_changed_event.fire(self.__base_name(key))
        return True

    def inform_value(self, name: str, value: float) -> bool:
        return self.set_value(name, value)

    def get_value_2d(self, s: str, default_value: Geometry.FloatPoint | None = None, *,
                     axis: stem_controller.AxisType | None = None) -> Geometry.FloatPoint:
        with self.__lock:
            base = self.__resolve_2d(s)
            if base is not None:
                native = self.__axes_2d[base]
                return Geometry.FloatPoint(y=self.__values[f"{base}.{native[1]}"],
                                           x=self.__values[f"{base}.{native[0]}"])
        if default_value is None:
            raise SimulatorParameterError(f"no 2-D control named {s!r}; known: {', '.join(sorted(self.__axes_2d))}.")
        return default_value

    def set_value_2d(self, s: str, value: Geometry.FloatPoint, *, axis: stem_controller.AxisType | None = None) -> bool:
        with self.__lock:
            base = self.__resolve_2d(s)
            if base is None:
                return False
            native = self.__axes_2d[base]
            old = (self.__values[f"{base}.{native[1]}"], self.__values[f"{base}.{native[0]}"])
            self.__values[f"{base}.{native[0]}"] = float(value.x)
            self.__values[f"{base}.{native[1]}"] = float(value.y)
        if old != (float(value.y), float(value.x)):
            self.property_changed_event.fire(base)
        return True

    def inform_control_2d(self, s: str, value: Geometry.FloatPoint, *, axis: stem_controller.AxisType) -> bool:
        return self.set_value_2d(s, value, axis=axis)

    def get_reference_setting_index(self, settings_control: str) -> int:
        if self.get_value(settings_control) is None:
            raise SimulatorParameterError(f"cannot get the reference setting of {settings_control!r}: no such control.")
        return 0


class SimAxisDescription(stem_controller.AxisDescription):
    def __init__(self, axis_id: str, axis_type: tuple[str, str], display_name: str) -> None:
        self.__axis_id = axis_id
        self.__axis_type = axis_type
        self.__display_name = display_name

    @property
    def axis_id(self) -> str:
        return self.__axis_id

    @property
    def axis_type(self) -> tuple[str, str]:
        return self.__axis_type

    @property
    def display_name(self) -> str:
        return self.__display_name


_AXES = (
    SimAxisDescription("tv", ("x", "y"), "TV (x, y)"),
    SimAxisDescription("scan", ("u", "v"), "Scan (u, v)"),
    SimAxisDescription("correctoraxis", ("a", "b"), "CorrectorAxis (a, b)"),
    SimAxisDescription("mc", ("mx", "my"), "MC (mx, my)"),
    SimAxisDescription("postsample", ("px", "py"), "PostSample (px, py)"),
    SimAxisDescription("stageaxis", ("sx", "sy"), "StageAxis (sx, sy)"),
)


class AxisManager:
    """All axes are the same frame: transforms are the identity."""

    @property
    def supported_axis_descriptions(self) -> typing.Sequence[stem_controller.AxisDescription]:
        return list(_AXES)

    def axis_transform_point(self, point: Geometry.FloatPoint, from_axis: stem_controller.AxisDescription,
                             to_axis: stem_controller.AxisDescription) -> Geometry.FloatPoint:
        return point


class SimInstrument(InstrumentDevice.Instrument):
    """The simulated instrument (registered as ``{"instrument_controller", "stem_controller"}``).

    Parameters
    ----------
    instrument_id : str
        Registry id (default ``"insitu_stem_controller"``).
    drift : DriftModel
        Sample drift (default: none).
    energy_drift : EnergyDriftModel
        Energy drift (default: none).
    clock : callable returning seconds, optional
        Simulation clock; default a :class:`MonotonicClock` started now.
    counts_per_electron : float
        Detector gain shared by the simulated cameras (default 1: counting detectors).
    camera_shapes : mapping camera_type -> (height, width) in px
        Sensor shapes (defaults: ``"insitu"`` 1024x1024, ``"ronchigram"`` 1024x1024, ``"eels"`` 256x1024).
    """

    def __init__(self, *, instrument_id: str = INSTRUMENT_ID, drift: DriftModel | None = None,
                 energy_drift: EnergyDriftModel | None = None, clock: typing.Callable[[], float] | None = None,
                 counts_per_electron: float = 1.0,
                 camera_shapes: typing.Mapping[str, tuple[int, int]] | None = None) -> None:
        value_manager = ValueManager()
        for name, value in DEFAULT_CONTROLS.items():
            value_manager.add_control(name, value)
        for name, (axis, value_yx) in DEFAULT_CONTROLS_2D.items():
            value_manager.add_control_2d(name, value_yx, native_axis=axis)
        for alias, name in DEFAULT_ALIASES.items():
            value_manager.add_alias(alias, name)
        value_manager.add_computed_control("SuperFEG_HTkV", lambda: (value_manager.get_value("EHT") or 0.0) * 1e-3)
        super().__init__(instrument_id, value_manager, AxisManager())
        self.__sim_value_manager = value_manager
        self.__value_listener = value_manager.property_changed_event.listen(self.__value_changed)
        self.__lock = threading.Lock()
        self.__drift = drift if drift is not None else DriftModel()
        self.__energy_drift = energy_drift if energy_drift is not None else EnergyDriftModel()
        self.__clock: typing.Callable[[], float] = clock if clock is not None else MonotonicClock()
        if not (math.isfinite(counts_per_electron) and counts_per_electron > 0):
            raise SimulatorParameterError(f"counts_per_electron must be > 0; got {counts_per_electron!r}.")
        self.__counts_per_electron = float(counts_per_electron)
        self.__camera_shapes: dict[str, tuple[int, int]] = {"insitu": (1024, 1024), "ronchigram": (1024, 1024),
                                                            "eels": (256, 1024)}
        for camera_type, shape in (camera_shapes or {}).items():
            self.set_camera_shape(camera_type, shape)

    def close(self) -> None:
        self.__value_listener.close()
        super().close()

    def __value_changed(self, name: str) -> None:
        self.property_changed_event.fire(name)

    # --- controls

    @property
    def sim_value_manager(self) -> ValueManager:
        """The value manager, to add controls: ``instrument.sim_value_manager.add_control("LaserPower", 0.0)``."""
        return self.__sim_value_manager

    def add_control(self, name: str, value: float = 0.0) -> None:
        """Add a 1-D control (shortcut for ``sim_value_manager.add_control``)."""
        self.__sim_value_manager.add_control(name, value)

    def add_control_2d(self, name: str, value_yx: tuple[float, float] = (0.0, 0.0)) -> None:
        """Add a 2-D control with components ``.x``/``.y``."""
        self.__sim_value_manager.add_control_2d(name, value_yx)

    def get_value(self, name: str) -> float | None:
        return self.__sim_value_manager.get_value(name)

    def set_value(self, name: str, value: float) -> bool:
        return self.__sim_value_manager.set_value(name, value)

    @property
    def counts_per_electron(self) -> int:
        # declared int by the base class; a float gain works everywhere it is used.
        return typing.cast(int, self.__counts_per_electron)

    @property
    def beam_current_A(self) -> float:
        return self.GetVal("BeamCurrent")

    @property
    def is_blanked(self) -> bool:
        return self.GetVal("C_Blank") != 0.0

    @property
    def stage_position_nm(self) -> NDArray[np.float64]:
        """Stage position ``(y, x)`` in nm."""
        p = self.GetVal2D("stage_position_m")
        return np.array([p.y * 1e9, p.x * 1e9])

    @property
    def beam_shift_nm(self) -> NDArray[np.float64]:
        """Probe shift ``CSH`` ``(y, x)`` in nm."""
        p = self.GetVal2D("CSH")
        return np.array([p.y * 1e9, p.x * 1e9])

    # --- camera shapes

    def set_camera_shape(self, camera_type: str, shape: tuple[int, int]) -> None:
        """Set the sensor shape ``(height, width)`` px of cameras of ``camera_type``. Takes effect for cameras
        created afterwards (device_kit reads it once)."""
        try:
            h, w = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise SimulatorParameterError(f"camera shape must be (height, width); got {shape!r}.") from None
        if h < 1 or w < 1 or h > 16384 or w > 16384:
            raise SimulatorParameterError(f"camera shape must be between 1 and 16384 px per side; got {shape!r}.")
        with self.__lock:
            self.__camera_shapes[camera_type] = (h, w)

    def camera_sensor_dimensions(self, camera_type: str) -> tuple[int, int]:
        with self.__lock:
            shape = self.__camera_shapes.get(camera_type)
        if shape is None:
            raise SimulatorParameterError(f"no sensor shape for camera type {camera_type!r}; "
                                          "call instrument.set_camera_shape(camera_type, (h, w)) first.")
        return shape

    def camera_readout_area(self, camera_type: str) -> tuple[int, int, int, int]:
        h, w = self.camera_sensor_dimensions(camera_type)
        return 0, 0, h, w

    # --- clock and drift

    @property
    def clock(self) -> typing.Callable[[], float]:
        return self.__clock

    @clock.setter
    def clock(self, clock: typing.Callable[[], float]) -> None:
        """Replace the simulation clock (e.g. by a :class:`ManualClock` in tests)."""
        self.__clock = clock

    def time_s(self) -> float:
        """Simulation time (s since start, >= 0)."""
        return max(0.0, float(self.__clock()))

    @property
    def sample_drift(self) -> DriftModel:
        return self.__drift

    @sample_drift.setter
    def sample_drift(self, drift: DriftModel) -> None:
        if not isinstance(drift, DriftModel):
            raise SimulatorParameterError(f"sample_drift must be a DriftModel; got {type(drift).__name__}.")
        self.__drift = drift
        self.property_changed_event.fire("sample_drift")

    @property
    def energy_drift(self) -> EnergyDriftModel:
        return self.__energy_drift

    @energy_drift.setter
    def energy_drift(self, drift: EnergyDriftModel) -> None:
        if not isinstance(drift, EnergyDriftModel):
            raise SimulatorParameterError(f"energy_drift must be an EnergyDriftModel; got {type(drift).__name__}.")
        self.__energy_drift = drift
        self.property_changed_event.fire("energy_drift")

    def true_sample_offset_nm(self, t_s: ArrayLike | None = None) -> NDArray[np.float64]:
        """Ground-truth sample drift ``(..., 2)`` ``(y, x)`` nm at ``t_s`` (default: now)."""
        return self.__drift.offset_nm(self.time_s() if t_s is None else t_s)

    def true_energy_offset_eV(self, t_s: ArrayLike | None = None) -> NDArray[np.float64]:
        """Ground-truth energy drift (eV) at ``t_s`` (default: now)."""
        return self.__energy_drift.offset_eV(self.time_s() if t_s is None else t_s)

    def content_offset_nm(self, t_s: ArrayLike | None = None) -> NDArray[np.float64]:
        """Displacement of the sample content in a TEM image: drift minus stage position, ``(..., 2)`` nm."""
        return self.true_sample_offset_nm(t_s) - self.stage_position_nm

    def scan_content_offset_nm(self, t_s: ArrayLike | None = None) -> NDArray[np.float64]:
        """Displacement of the sample content in a scan: drift minus stage minus probe shift ``CSH``, nm."""
        return self.content_offset_nm(t_s) - self.beam_shift_nm

    def get_autostem_properties(self) -> typing.Mapping[str, typing.Any]:
        return {"high_tension": self.voltage, "defocus": self.defocus_m, "beam_current": self.beam_current_A}
