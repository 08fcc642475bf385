"""Live analyses of a drift-corrected SI: computed on the SI as it fills, section by section, off the acquisition.

A *live analysis* (fusion, decomposition, ...) is an object with a ``title``, an ``update(SectionUpdate) ->
Outputs`` called after each finished section (and once more, with ``final=True``, at the end of the run, complete
or aborted) and a ``close()``. Factories are registered by name (:func:`register_live_analysis`) and offered in the
Drift-corrected SI panel ("Live analysis"); the factory's declared parameters (a ``parameters`` attribute holding
:class:`processing.base.Parameter` s, or the ``parameters=`` given at registration) become the panel's fields and
are passed to the factory as keyword arguments (validated by :func:`create_live_analysis`).

:class:`LiveAnalysisRunner` runs one analysis on its own worker thread: :meth:`~LiveAnalysisRunner.submit` never
blocks (a one-slot mailbox: a newer update replaces a waiting one, which is counted as skipped), the time of every
update (ms) is recorded against the section interval, and an exception inside the analysis becomes an error text
and a :class:`processing.base.Notice`, never an exception on the acquisition thread.

Example (no Swift)::

    runner = LiveAnalysisRunner(create_live_analysis("my analysis", {"n_components": 3}))
    runner.submit(update)            # from the acquisition thread, after each section
    runner.finish(timeout_s=30.0)    # after the final update: waits for it, closes the analysis
    runner.outputs, runner.stats()
"""
from __future__ import annotations

import dataclasses
import threading
import time
import typing

import numpy as np
from numpy.typing import NDArray

from processing import base

__all__ = ["SectionUpdate", "LiveAnalysis", "LIVE_ANALYSES", "register_live_analysis", "unregister_live_analysis",
           "live_analysis_parameters", "create_live_analysis", "LiveAnalysisRunner"]


@dataclasses.dataclass(frozen=True)
class SectionUpdate:
    """The SI after one finished section.

    si : (ny, nx, n_channels) float32 counts, NaN where not acquired yet (a view: do not modify).
    haadf : (ny, nx) float32 HAADF acquired in the same run, NaN where not acquired, or None.
    acquired : (ny, nx) bool, True where the pixel holds data.
    rows : the SI rows of the section just finished. Channel i is at ``energy_offset_eV + energy_scale_eV * i``.
    final : True for the last call of the run (complete or aborted).
    """

    si: NDArray[np.float32]
    haadf: NDArray[np.float32] | None
    acquired: NDArray[np.bool_]
    rows: slice
    energy_offset_eV: float
    energy_scale_eV: float
    pixel_size_nm: float
    section_index: int
    final: bool


class LiveAnalysis(typing.Protocol):
    title: str

    def update(self, update: SectionUpdate) -> base.Outputs:
        """Outputs for the SI so far; may take time (runs on the runner's worker thread)."""
        ...

    def close(self) -> None: ...


#: factories of live analyses by name, offered as options in the Drift-corrected SI panel
LIVE_ANALYSES: dict[str, typing.Callable[..., LiveAnalysis]] = {}
_PARAMETERS: dict[str, tuple[base.Parameter, ...]] = {}


def register_live_analysis(name: str, factory: typing.Callable[..., LiveAnalysis], *,
                           parameters: typing.Sequence[base.Parameter] | None = None) -> None:
    """Offer ``factory`` under ``name``; its parameters: ``parameters`` or the factory's ``parameters`` attribute.

    Registering a name again replaces the earlier factory.
    """
    if not name or not isinstance(name, str):
        raise base.ParameterError(f"a live analysis needs a non-empty name; got {name!r}.")
    declared = parameters if parameters is not None else getattr(factory, "parameters", ())
    params = tuple(declared or ())
    for p in params:
        if not isinstance(p, base.Parameter):
            raise base.ParameterError(f"live analysis {name!r}: parameter {p!r} is not a processing.base.Parameter; "
                                      f"declare parameters with processing.base.Parameter(...).")
    LIVE_ANALYSES[name] = factory
    _PARAMETERS[name] = params


def unregister_live_analysis(name: str) -> None:
    LIVE_ANALYSES.pop(name, None)
    _PARAMETERS.pop(name, None)


def live_analysis_parameters(name: str) -> tuple[base.Parameter, ...]:
    """The declared parameters of the analysis ``name`` (raises :class:`processing.base.ParameterError`)."""
    if name not in LIVE_ANALYSES:
        raise base.ParameterError(f"no live analysis named {name!r}; choose one of {sorted(LIVE_ANALYSES)}.")
    return _PARAMETERS.get(name, ())


def create_live_analysis(name: str, values: typing.Mapping[str, typing.Any] | None = None) -> LiveAnalysis:
    """A new analysis ``name`` with ``values`` (missing ones take their defaults; unknown ones are refused)."""
    params = live_analysis_parameters(name)
    given = dict(values or {})
    known = {p.name for p in params}
    unknown = sorted(set(given) - known)
    if unknown:
        raise base.ParameterError(f"live analysis {name!r} has no parameter {unknown}; its parameters are "
                                  f"{sorted(known)}.")
    kwargs = {p.name: p.validate(given.get(p.name, p.default)) for p in params}
    return LIVE_ANALYSES[name](**kwargs)


class LiveAnalysisRunner:
    """Runs one :class:`LiveAnalysis` off the acquisition thread (newest update only).

    ``on_outputs(outputs, update)`` (optional) is called on the worker thread after every update.
    """

    def __init__(self, analysis: LiveAnalysis, *,
                 on_outputs: typing.Callable[[base.Outputs, SectionUpdate], None] | None = None,
                 clock: typing.Callable[[], float] = time.perf_counter) -> None:
        self.analysis = analysis
        self.title = str(getattr(analysis, "title", type(analysis).__name__))
        self._on_outputs = on_outputs
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: SectionUpdate | None = None
        self._busy = False
        self._stopping = False
        self._closed = False
        self.outputs: base.Outputs = ()
        self.error = ""
        self.submitted = 0
        self.skipped = 0
        self.ms_per_update: list[float] = []
        self._submit_times_s: list[float] = []
        self.final_done = False
        self._thread = threading.Thread(target=self._work, name=f"live-analysis {self.title}", daemon=True)
        self._thread.start()

    # -- acquisition side (never blocks) ----------------------------------------------------------------------
    def submit(self, update: SectionUpdate) -> None:
        """Hand over the newest update; a waiting older one is dropped and counted in ``skipped``."""
        with self._cond:
            if self._stopping:
                return
            if self._pending is not None:
                self.skipped += 1
            self._pending = update
            self.submitted += 1
            self._submit_times_s.append(self._clock())
            self._cond.notify_all()

    # -- end of run -------------------------------------------------------------------------------------------
    def finish(self, timeout_s: float | None = 60.0) -> bool:
        """Wait for the waiting/running update to end (at most ``timeout_s``), then stop and close the analysis.

        Returns False when it timed out (the analysis is then left to finish on its daemon thread; its result is
        not waited for, and ``error`` says so).
        """
        deadline = None if timeout_s is None else self._clock() + timeout_s
        with self._cond:
            while self._pending is not None or self._busy:
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            done = self._pending is None and not self._busy
            self._stopping = True
            self._cond.notify_all()
            if not done:
                self.error = self.error or f"the analysis did not finish within {timeout_s} s after the run ended."
        if done:
            self._thread.join(timeout=5.0)
            self._close_analysis()
        return done

    def _close_analysis(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.analysis.close()
        except Exception as e:  # never raise into the acquisition / Swift
            self.error = self.error or f"close() failed: {type(e).__name__}: {e}"

    # -- worker ------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._pending is None:
                    return
                update, self._pending = self._pending, None
                self._busy = True
            t0 = self._clock()
            try:
                outputs = tuple(self.analysis.update(update))
            except Exception as e:
                self.error = (f"{self.title}: {type(e).__name__}: {e} (section {update.section_index}); the SI is "
                              f"unaffected, the analysis output is not updated.")
                outputs = self.outputs + (base.Notice("error", self.error),)
            ms = 1000.0 * (self._clock() - t0)
            with self._cond:
                self.ms_per_update.append(ms)
                self.outputs = outputs
                if update.final:
                    self.final_done = True
            if self._on_outputs is not None:
                try:
                    self._on_outputs(outputs, update)
                except Exception as e:
                    self.error = self.error or f"showing the outputs failed: {type(e).__name__}: {e}"
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def stats(self) -> dict[str, typing.Any]:
        """JSON-able record: ms per update (each, median, max), the median section interval, updates skipped."""
        with self._cond:
            ms = list(self.ms_per_update)
            times = np.asarray(self._submit_times_s, np.float64)
        interval = float(np.median(np.diff(times))) if times.size > 1 else None
        return {"title": self.title, "updates_submitted": self.submitted, "updates_done": len(ms),
                "updates_skipped": self.skipped, "ms_per_update": [round(v, 3) for v in ms],
                "ms_per_update_median": float(np.median(ms)) if ms else None,
                "ms_per_update_max": float(np.max(ms)) if ms else None,
                "section_interval_s_median": interval, "final_update_done": self.final_done, "error": self.error}
