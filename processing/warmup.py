"""Load (or, on a new machine, compile once) every numba kernel of the fast processors, off the live path.

The plug-in calls :func:`warm_up` in a background thread when it loads; the first frames then never pay for JIT
compilation. Kernels are compiled with ``cache=True``: the first run on a machine takes ~10-20 s and writes the
cache next to :mod:`processing.live._kernels`; later runs load it in well under a second. Idempotent and thread safe.

>>> seconds = warm_up()
>>> seconds >= 0.0
True
"""
from __future__ import annotations

import atexit
import threading
import time

import numpy as np

__all__ = ["warm_up", "warm_up_in_background", "is_warm"]

_lock = threading.Lock()
_start_lock = threading.Lock()
_started = False
_thread: threading.Thread | None = None
_done = threading.Event()


def is_warm() -> bool:
    """True once :func:`warm_up` has completed in this process."""
    return _done.is_set()


def warm_up_in_background() -> None:
    """Start :func:`warm_up` in a daemon thread unless it is done or already running (the processors call this
    when they are created, so a missing explicit warm-up only delays the processor, never the camera)."""
    global _started
    with _start_lock:
        if _done.is_set() or _started:
            return
        _started = True
    global _thread
    _thread = threading.Thread(target=warm_up, name="insitu-warm-up", daemon=True)
    _thread.start()
    atexit.register(_join_at_exit)


def _join_at_exit() -> None:
    # a daemon thread still inside numba/LLVM or OpenCV code when the interpreter tears down aborts the process
    # ("terminate called without an active exception"): let a running warm-up finish first
    if _thread is not None:
        _thread.join(timeout=120.0)


def warm_up() -> float:
    """Run every kernel once on tiny inputs with the argument types of the live path (writable and read-only
    frames). Returns the seconds spent (0.0 when already warm)."""
    if _done.is_set():
        return 0.0
    with _lock:
        if _done.is_set():
            return 0.0
        start = time.perf_counter()
        from processing.live import fft_analysis
        from processing.live import tiles
        from processing.live import tracking

        rng = np.random.default_rng(0)
        frame = rng.normal(size=(48, 40)).astype(np.float32)
        frame[10:20, 12:22] += 5.0
        readonly = frame.copy()
        readonly.flags.writeable = False
        for data in (frame, readonly):
            tiles.tile_pass(data, tile_px=16, step_px=8, peaks=tiles.PeakSpec())
            tiles.tile_pass(data, tile_px=16, step_px=8, peaks=None)
            fft_analysis.radial_profile(data)
            tracking.track_region(data).image()
        _done.set()
        return time.perf_counter() - start
