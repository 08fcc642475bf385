"""The one warm-up registry: load (or, on a new machine, compile once) every numba kernel of the processors, off
the live path.

Each module with kernels registers a warm-up function at import (``warmup.register(name, fn)``); :func:`warm_up`
imports every module listed in :data:`KERNEL_MODULES` (so their registrations exist even if nothing imported them
yet) and runs each registered function once. Kernels are compiled with ``cache=True``: the first run on a machine
takes ~10-20 s and writes the cache (``NUMBA_CACHE_DIR`` or next to the module); later runs load it in well under a
second. The plug-in calls :func:`warm_up` in a background thread when it loads; the first frames then never pay for
JIT compilation. Idempotent and thread safe; a kernel module added later only needs to register itself and be
listed here (``tests/plugin/test_live_engine.py`` checks that every numba dispatcher of ``processing`` is warm).

>>> seconds = warm_up()
>>> seconds >= 0.0
True
>>> "processing.live.filters.ewma" in registered()
True
"""
from __future__ import annotations

import atexit
import importlib
import threading
import time
import typing

__all__ = ["warm_up", "warm_up_in_background", "is_warm", "register", "registered", "KERNEL_MODULES"]

#: every module of ``processing`` that defines numba kernels (each registers its warm-up function on import)
KERNEL_MODULES: tuple[str, ...] = (
    "processing.live.filters",
    "processing.live.tiles",
    "processing.live.fft_analysis",
    "processing.live.tracking",
)

_lock = threading.Lock()
_start_lock = threading.Lock()
_registry: dict[str, typing.Callable[[], None]] = {}
_warmed: set[str] = set()
_started = False
_thread: threading.Thread | None = None
_done = threading.Event()


def register(name: str, fn: typing.Callable[[], None]) -> None:
    """Add ``fn`` (runs the kernels of one module once on tiny inputs of the live path's argument types) under
    ``name``. Registering after :func:`warm_up` ran makes the next :func:`warm_up` call run it."""
    with _start_lock:
        _registry[name] = fn
        if name not in _warmed:
            _done.clear()


def registered() -> list[str]:
    """Names of the registered warm-up functions (after importing :data:`KERNEL_MODULES`)."""
    _import_kernel_modules()
    with _start_lock:
        return sorted(_registry)


def is_warm() -> bool:
    """True once :func:`warm_up` has run every registered warm-up function in this process."""
    return _done.is_set()


def warm_up_in_background() -> None:
    """Start :func:`warm_up` in a daemon thread unless it is done or already running (the processors call this
    when they are created, so a missing explicit warm-up only delays the processor, never the camera)."""
    global _started, _thread
    with _start_lock:
        if _done.is_set() or _started:
            return
        _started = True
        _thread = threading.Thread(target=_background, name="insitu-warm-up", daemon=True)
    _thread.start()
    atexit.register(_join_at_exit)


def _background() -> None:
    global _started
    try:
        warm_up()
    finally:
        with _start_lock:
            _started = False


def _join_at_exit() -> None:
    # a daemon thread still inside numba/LLVM or OpenCV code when the interpreter tears down aborts the process
    # ("terminate called without an active exception"): let a running warm-up finish first
    if _thread is not None:
        _thread.join(timeout=120.0)


def _import_kernel_modules() -> None:
    for module in KERNEL_MODULES:
        importlib.import_module(module)


def warm_up() -> float:
    """Run every registered kernel warm-up once (writable and read-only frames). Returns the seconds spent (0.0
    when already warm)."""
    if _done.is_set():
        return 0.0
    with _lock:
        start = time.perf_counter()
        _import_kernel_modules()
        while True:
            with _start_lock:
                todo = [(name, fn) for name, fn in _registry.items() if name not in _warmed]
                if not todo:
                    _done.set()
                    break
            for name, fn in todo:
                fn()
                with _start_lock:
                    _warmed.add(name)
        return time.perf_counter() - start
