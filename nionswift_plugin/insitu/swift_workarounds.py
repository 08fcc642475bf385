"""Workarounds for Swift behaviour that the suite's live outputs trigger (issue 14), each named, idempotent and
installed when Swift loads the plug-in (``panels.register_panels``) and by the headless harness.

* :func:`light_line_plot_rebin`: Swift draws a line plot longer than its plot from ``nion.data.Image.rebin_1d``,
  which builds the full ``(plot width, points)`` weight matrix on every repaint of a changed series: the
  threshold-tracking time plot (up to 10,000 points, a new point per frame) cost ~176 MiB and ~43 ms per repaint
  at 10,000 points in a 450 px plot, growing with the series; this was the transient that made the headless 512²
  soak's RSS grow and its processed fraction fall. Replaced, for 1-D real series, by
  :func:`processing.live.line_rebin.rebin_1d_area` (the same values within float rounding, O(points) memory:
  0.4 MiB, 0.2 ms); anything else still goes to Swift's own function. Public function of niondata 15.9
  (``Image.rebin_1d(src, len, retained)``, called as ``Image.rebin_1d`` by ``LineGraphCanvasItem``); its
  ``retained`` cache of the weight matrix is cleared, not filled.
* ``panels.guard_thumbnail_race``: the data-panel thumbnail race (documented there).
"""
from __future__ import annotations

import typing

from processing.live.line_rebin import rebin_1d_area

__all__ = ["light_line_plot_rebin", "light_rebin_calls", "install_all"]


def light_line_plot_rebin() -> bool:
    """Route ``nion.data.Image.rebin_1d`` through the memory-light rebinning for 1-D real series; True when
    installed (now or before), False when niondata has no such function (a release that changed it: nothing
    patched)."""
    from nion.data import Image
    original = getattr(Image, "rebin_1d", None)
    if original is None:
        return False
    if getattr(original, "_insitu_light", False):
        return True

    calls = [0]  # series rebinned here (approximate under threads); the soak reports it to show the route is taken

    def rebin_1d(src: typing.Any, len: int, retained: dict[str, typing.Any] | None = None) -> typing.Any:
        # the parameter keeps Swift's name ``len`` (shadowing the builtin) so keyword callers still work
        shape: tuple[int, ...] = tuple(getattr(src, "shape", ()))
        dtype = getattr(src, "dtype", None)
        if getattr(src, "ndim", 0) == 1 and dtype is not None and dtype.kind in "biuf" and 1 <= len < shape[0]:
            if retained is not None:
                retained.clear()  # never keep Swift's weight matrix of an earlier length
            calls[0] += 1
            return rebin_1d_area(src, len)
        return original(src, len, retained)

    rebin_1d._insitu_light = True  # type: ignore[attr-defined]
    rebin_1d.__wrapped__ = original  # type: ignore[attr-defined]
    rebin_1d.light_calls = calls  # type: ignore[attr-defined]
    Image.rebin_1d = rebin_1d
    return True


def light_rebin_calls() -> int | None:
    """How many series the light rebinning has drawn since it was installed; None when it is not installed."""
    from nion.data import Image
    calls = getattr(getattr(Image, "rebin_1d", None), "light_calls", None)
    return int(calls[0]) if calls is not None else None


def install_all() -> None:
    """Every workaround of this module and ``panels.guard_thumbnail_race`` (idempotent)."""
    from nionswift_plugin.insitu import panels
    light_line_plot_rebin()
    panels.guard_thumbnail_race()
