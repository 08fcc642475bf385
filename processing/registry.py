"""The one declarative table of processors.

Built-in processors are listed in ``BUILTIN`` as ``"module:Class"`` strings; :func:`register` adds a custom
processor (class or :func:`processing.base.processor_from_function` result) at run time. The Swift glue builds its
menu items, inspector parameters and Facade calls from :func:`all_processors`, so a registered processor appears
everywhere at once.
"""
from __future__ import annotations

import importlib
import threading
import typing

from processing.base import ParameterError, Processor

BUILTIN: tuple[str, ...] = (
    "processing.live.filters:CopyProcessor",
    "processing.live.filters:NoiseReductionProcessor",
    "processing.live.filters:LiveDifferenceProcessor",
    "processing.live.tracking:ThresholdTrackingProcessor",
    "processing.live.fft_analysis:MaxFFTProcessor",
    "processing.live.fft_analysis:RadialKymographProcessor",
    "processing.live.orientation:OrientationMapProcessor",
    "processing.stack.corrections:CameraCorrectionsProcessor",
)

_lock = threading.Lock()
_registry: dict[str, type[Processor]] = {}
_listeners: list[typing.Callable[[type[Processor]], None]] = []


def _load_builtins() -> None:
    for spec in BUILTIN:
        module_name, class_name = spec.split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        _registry.setdefault(cls.processor_id, cls)


def register(cls: type[Processor]) -> type[Processor]:
    """Add a processor class to the table (usable as a class decorator). Returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, Processor)) or not cls.processor_id:
        raise ParameterError(f"{cls!r} is not a Processor subclass with a processor_id; "
                             f"derive from processing.base.Processor and set processor_id and title.")
    with _lock:
        if not _registry:
            _load_builtins()
        _registry[cls.processor_id] = cls
        listeners = list(_listeners)
    for listener in listeners:
        listener(cls)
    return cls


def all_processors() -> list[type[Processor]]:
    """Every registered processor class, built-ins first, in registration order."""
    with _lock:
        if not _registry:
            _load_builtins()
        return list(_registry.values())


def get(processor_id: str) -> type[Processor]:
    """The processor class registered as ``processor_id``; raises ``KeyError`` with the known ids."""
    for cls in all_processors():
        if cls.processor_id == processor_id:
            return cls
    raise KeyError(f"no processor '{processor_id}'; known: {[c.processor_id for c in all_processors()]}")


def add_listener(fn: typing.Callable[[type[Processor]], None]) -> None:
    """Call ``fn(cls)`` for each processor registered from now on (the glue uses it for late registrations)."""
    with _lock:
        _listeners.append(fn)


def remove_listener(fn: typing.Callable[[type[Processor]], None]) -> None:
    with _lock:
        if fn in _listeners:
            _listeners.remove(fn)
