"""Build the simulated instrument and its devices, and register them with Nion Swift's Registry.

>>> handle = register_simulator(SimulatorConfiguration(seed=1, frame_shape=(256, 256)))  # doctest: +SKIP
>>> handle.instrument.true_sample_offset_nm(3.0)                                          # doctest: +SKIP
>>> unregister_simulator(handle)                                                          # doctest: +SKIP

Registration is what Swift expects (as Nion's usim plug-in does): the instrument as
``{"instrument_controller", "stem_controller"}``, each camera module as ``{"camera_module"}`` (and, when the STEM
devices exist, the scan module as ``{"scan_module"}``). ``nion_instrumentation_ui`` turns registered modules into
hardware sources, also for modules registered before it runs.

Adding a device (scan, EELS camera, laser...): write a factory ``make_x(instrument, config) -> DeviceRegistration``
in its own module and add it to :data:`DEVICE_FACTORIES` below. Nothing else needs to change.
"""
from __future__ import annotations

import dataclasses
import typing

from nion.utils import Registry

from instrument_sim.drift import DriftModel, EnergyDriftModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.insitu_camera import InSituCameraParts, make_insitu_camera
from instrument_sim.insitu_scene import InSituScene
from instrument_sim.instrument import INSTRUMENT_ID, SimInstrument
from instrument_sim.stem_devices import eels_camera_factory, laser_factory, stem_scan_factory

__all__ = ["SimulatorConfiguration", "DeviceRegistration", "DeviceFactory", "SimulatorHandle", "DEVICE_FACTORIES",
           "register_simulator", "unregister_simulator", "build_simulator", "insitu_camera_factory"]

INSTRUMENT_COMPONENT_TYPES = frozenset({"instrument_controller", "stem_controller"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimulatorConfiguration:
    """Everything needed to build the simulator. All fields are keyword-only and have defaults.

    Parameters
    ----------
    seed : int
        Master seed (scene layout, textures, noise).
    frame_shape : (H, W), px
        In-situ camera sensor shape (default 1024 x 1024).
    pixel_size_nm : float, nm
        In-situ camera pixel size (default 0.06 nm).
    drift : DriftModel
        Sample drift (default 0.05 / 0.03 nm/s linear + 0.02 nm/sqrt(s) random walk).
    energy_drift : EnergyDriftModel
        Energy drift (default none).
    n_particles : int or None
        Particles in the scene (default 10 per 1024^2 px).
    melt_period_s, molten_duration_s : s
        Melt cycle (default 20 s with 4 s molten; ``melt_period_s=None``: never melt).
    exposure_ms : float, ms
        Default exposure of the in-situ camera (50 ms).
    clock : callable returning s, optional
        Simulation clock (default: monotonic from start); a :class:`~instrument_sim.instrument.ManualClock` in tests.
    instrument_id : str
        Registry id of the instrument (``"insitu_stem_controller"``).
    scene_options : mapping
        Extra keyword arguments for :class:`~instrument_sim.insitu_scene.InSituScene` (contrasts, spacings...).
    device_factories : sequence of DeviceFactory, optional
        Replaces :data:`DEVICE_FACTORIES` (e.g. only the camera in a test).
    """

    seed: int = 0
    frame_shape: tuple[int, int] = (1024, 1024)
    pixel_size_nm: float = 0.06
    drift: DriftModel = dataclasses.field(
        default_factory=lambda: DriftModel(rate_nm_per_s=(0.05, 0.03), random_walk_nm_per_sqrt_s=0.02, seed=0))
    energy_drift: EnergyDriftModel = dataclasses.field(default_factory=EnergyDriftModel)
    n_particles: int | None = None
    melt_period_s: float | None = 20.0
    molten_duration_s: float = 4.0
    exposure_ms: float = 50.0
    clock: typing.Callable[[], float] | None = None
    instrument_id: str = INSTRUMENT_ID
    scene_options: typing.Mapping[str, typing.Any] = dataclasses.field(default_factory=dict)
    device_factories: typing.Sequence[DeviceFactory] | None = None

    def make_scene(self) -> InSituScene:
        """The in-situ scene described by this configuration (the drift is the instrument's, not the scene's)."""
        return InSituScene(shape_px=self.frame_shape, pixel_size_nm=self.pixel_size_nm, n_particles=self.n_particles,
                           melt_period_s=self.melt_period_s, molten_duration_s=self.molten_duration_s,
                           drift=self.drift, seed=self.seed, **dict(self.scene_options))


@dataclasses.dataclass
class DeviceRegistration:
    """One device built by a factory.

    Attributes
    ----------
    name : str
        Key in :attr:`SimulatorHandle.devices` (e.g. ``"insitu_camera"``).
    component : object
        What is registered in the Registry (a ``CameraModule``, ``ScanModule``...), or None for an unregistered
        helper device (e.g. a laser the other devices read).
    component_types : set of str
        Registry types, e.g. ``{"camera_module"}`` or ``{"scan_module"}``.
    close : callable
        Called after unregistering (must tolerate the device already being closed by Swift).
    parts : object
        Anything the tests/plug-in need (e.g. :class:`~instrument_sim.insitu_camera.InSituCameraParts`).
    """

    name: str
    component: typing.Any
    component_types: set[str]
    close: typing.Callable[[], None]
    parts: typing.Any = None


DeviceFactory = typing.Callable[[SimInstrument, SimulatorConfiguration], DeviceRegistration]


def insitu_camera_factory(instrument: SimInstrument, config: SimulatorConfiguration) -> DeviceRegistration:
    """The in-situ TEM camera (hardware source ``"insitu_camera"``)."""
    parts = make_insitu_camera(instrument, config.make_scene(), seed=config.seed, exposure_ms=config.exposure_ms)
    return DeviceRegistration(name="insitu_camera", component=parts.module, component_types={"camera_module"},
                              close=parts.close, parts=parts)


#: The devices built by :func:`register_simulator`, in order. Add new device factories here.
DEVICE_FACTORIES: list[DeviceFactory] = [
    insitu_camera_factory,
    # STEM devices: EEGS laser, scan with HAADF/MAADF (hardware source "insitu_scan"), EELS camera
    # ("insitu_eels_camera"); see instrument_sim.stem_devices.
    laser_factory,
    stem_scan_factory,
    eels_camera_factory,
]


@dataclasses.dataclass
class SimulatorHandle:
    """What :func:`register_simulator` returns; pass it to :func:`unregister_simulator`."""

    config: SimulatorConfiguration
    instrument: SimInstrument
    devices: dict[str, DeviceRegistration]
    registered: bool = False

    @property
    def insitu_camera(self) -> InSituCameraParts:
        """The in-situ camera parts (simulator with ground truth, device, settings, module)."""
        parts = self.devices["insitu_camera"].parts
        assert isinstance(parts, InSituCameraParts)
        return parts


def build_simulator(config: SimulatorConfiguration | None = None) -> SimulatorHandle:
    """Build the instrument and the devices without registering anything in the Registry except what device_kit
    registers by itself (``"<camera_id>_device"``). :func:`unregister_simulator` closes them."""
    config = config if config is not None else SimulatorConfiguration()
    if not isinstance(config, SimulatorConfiguration):
        raise SimulatorParameterError(f"config must be a SimulatorConfiguration; got {type(config).__name__}.")
    instrument = SimInstrument(instrument_id=config.instrument_id, drift=config.drift,
                               energy_drift=config.energy_drift, clock=config.clock)
    handle = SimulatorHandle(config=config, instrument=instrument, devices={})
    factories = DEVICE_FACTORIES if config.device_factories is None else config.device_factories
    try:
        for factory in factories:
            registration = factory(instrument, config)
            if registration.name in handle.devices:
                raise SimulatorParameterError(f"two devices are named {registration.name!r}; names must be unique.")
            handle.devices[registration.name] = registration
    except Exception:
        unregister_simulator(handle)
        raise
    return handle


def register_simulator(config: SimulatorConfiguration | None = None) -> SimulatorHandle:
    """Build the simulator and register the instrument and all device modules in ``nion.utils.Registry``.

    Raises :class:`SimulatorParameterError` if an instrument with the same id is already registered.
    """
    config = config if config is not None else SimulatorConfiguration()
    for component in Registry.get_components_by_type("stem_controller"):
        if getattr(component, "instrument_id", None) == config.instrument_id:
            raise SimulatorParameterError(
                f"an instrument {config.instrument_id!r} is already registered; call unregister_simulator(handle) "
                "first or use another instrument_id.")
    handle = build_simulator(config)
    Registry.register_component(handle.instrument, set(INSTRUMENT_COMPONENT_TYPES))
    handle.registered = True
    for registration in handle.devices.values():
        if registration.component is not None:
            Registry.register_component(registration.component, set(registration.component_types))
    return handle


def unregister_simulator(handle: SimulatorHandle) -> None:
    """Unregister (if registered) and close every device, then the instrument. Safe to call twice."""
    for registration in reversed(list(handle.devices.values())):
        if handle.registered and registration.component is not None:
            Registry.unregister_component(registration.component, set(registration.component_types))
        registration.close()
    handle.devices.clear()
    if handle.registered:
        Registry.unregister_component(handle.instrument, set(INSTRUMENT_COMPONENT_TYPES))
        handle.registered = False
        handle.instrument.close()
    elif handle.instrument is not None:
        handle.instrument.close()
    handle.instrument = typing.cast(SimInstrument, None)
