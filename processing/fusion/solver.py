"""Multi-modal fusion of a HAADF image with chemical maps: accelerated proximal gradient on the published cost.

:func:`fuse` minimises the cost of :mod:`processing.fusion.model` by FISTA (Beck & Teboulle 2009) with a
backtracking step, adaptive restart (O'Donoghue & Candes 2015: momentum is reset when the cost goes up) and a
warm-started FGP proximal step for the total variation. It stops when the relative change of the cost over one
iteration falls below ``tolerance`` (or at ``max_iterations``) and reports the three cost terms per iteration.
The published loop (fixed step 1, no momentum, 3 TV iterations restarted from zero) is what this replaces. With
the default regulariser "published" the TV term is the Huber-TV that loop effectively applies
(:func:`processing.fusion.model.published_tv_delta`), with "tv" the exact TV; both go through the warm-started
FGP proximal step (Huber: the dual step gets a -delta p term).

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> yy, xx = np.mgrid[0:32, 0:32]
>>> a = (np.sin(xx / 2.0) > 0).astype(float); c = 1.0 - a
>>> haadf = 4.0 * a + 1.0 * c
>>> r = fuse(haadf, {"Dy": rng.poisson(5 * a + 0.5), "O": rng.poisson(5 * c + 0.5)})
>>> r.maps.shape, r.elements, r.iterations <= 50
((2, 32, 32), ('Dy', 'O'), True)
"""
from __future__ import annotations

import dataclasses
import math
import time
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import Calibration, ProcessingError
from processing.fusion.elements import atomic_number, element_symbol
from processing.fusion.model import CostTerms, F32, FusionProblem, tv_isotropic, tv_prox
from processing.fusion.options import FusionOptions
from processing.fusion.prepare import PreparedInputs, prepare_inputs

__all__ = ["FusionError", "FusionResult", "fuse", "solve"]


class FusionError(ProcessingError):
    """Fusion could not produce fused maps (it never returns the unfused maps instead); the message says why."""


@dataclasses.dataclass(frozen=True)
class FusionResult:
    """Fused maps and everything needed to judge them.

    names : the map names as given; elements : their element symbols; atomic_numbers; weights : HAADF weights w_i.
    maps : (n, H, W) fused maps in the units of the input maps. maps_normalised : (n, H, W) in the solver's units.
    raw_maps : (n, H, W) the measured maps (input units, region applied).
    haadf : (H, W) measured HAADF (region applied); predicted_haadf : (H, W) the HAADF the fused maps predict (same
    units); haadf_residual : measured - predicted.
    cost : (k, 4) per iteration (iteration 0 = the start): HAADF term, Poisson term, TV term, weighted total.
    iterations, converged (stopped by the tolerance), stop_reason, elapsed_s, step_sizes (k-1,), restarts.
    region_px : (top, left, height, width) fused; calibrations : (y, x) of the fused region.
    notes : what the user should know (e.g. negative pixels shifted, weights fitted).
    state : warm start for the next call (the maps in solver units and the TV dual).
    """

    names: tuple[str, ...]
    elements: tuple[str, ...]
    atomic_numbers: tuple[int, ...]
    weights: NDArray[np.float32]
    maps: F32
    maps_normalised: F32
    raw_maps: F32
    haadf: F32
    predicted_haadf: F32
    haadf_residual: F32
    cost: NDArray[np.float64]
    iterations: int
    converged: bool
    stop_reason: str
    elapsed_s: float
    step_sizes: NDArray[np.float64]
    restarts: int
    region_px: tuple[int, int, int, int]
    calibrations: tuple[Calibration, Calibration]
    options: FusionOptions
    notes: tuple[str, ...]
    state: typing.Any = dataclasses.field(repr=False, default=None)

    def map(self, name: str) -> F32:
        """The fused map called ``name`` (as given, or its element symbol)."""
        for i, (n, e) in enumerate(zip(self.names, self.elements)):
            if name in (n, e):
                return typing.cast(F32, self.maps[i])
        raise KeyError(f"no fused map {name!r}; maps are {list(self.names)}")

    def haadf_rms_residual(self) -> float:
        """RMS of measured - predicted HAADF, as a fraction of the measured HAADF's range."""
        span = float(np.ptp(self.haadf)) or 1.0
        return float(np.sqrt(np.mean(self.haadf_residual.astype(np.float64) ** 2))) / span

    def summary(self) -> dict[str, typing.Any]:
        """JSON-able record (for metadata and the CLI)."""
        last = self.cost[-1]
        return {"elements": list(self.elements), "names": list(self.names), "weights": [float(w) for w in self.weights],
                "iterations": self.iterations, "converged": self.converged, "stop_reason": self.stop_reason,
                "elapsed_s": round(self.elapsed_s, 4), "restarts": self.restarts,
                "cost_final": {"haadf": float(last[0]), "poisson": float(last[1]), "tv": float(last[2]),
                               "total": float(last[3])},
                "cost_start_total": float(self.cost[0, 3]), "haadf_rms_residual_fraction": self.haadf_rms_residual(),
                "region_px": list(self.region_px), "options": self.options.as_dict(), "notes": list(self.notes)}


@dataclasses.dataclass
class _WarmState:
    u: F32
    dual: tuple[F32, F32] | None
    step: float
    offset: F32  # (n,) input units = offset + span * u
    span: F32


def solve(problem: FusionProblem, u0: F32, options: FusionOptions, *, dual: tuple[F32, F32] | None = None,
          step: float = 1.0, progress: typing.Callable[[int, int, CostTerms], None] | None = None,
          should_stop: typing.Callable[[], bool] | None = None
          ) -> tuple[F32, list[CostTerms], list[float], int, bool, str, tuple[F32, F32] | None, float]:
    """FISTA with backtracking and adaptive restart on ``problem`` from ``u0`` (n, H, W).

    Returns (u, cost terms per iteration incl. the start, step sizes, restarts, converged, stop reason, TV dual,
    last step).
    """
    lam_tv = problem.lambda_tv
    n_tv = options.tv_iterations
    delta = problem.tv_delta  # > 0: Huber-TV (the published loop's effective regulariser), through the same prox

    def smooth_part(x: F32, with_gradient: bool = True) -> tuple[float, float, float, F32 | None]:
        """(HAADF, Poisson, smooth part of F, its gradient)."""
        h, p, g = problem.smooth(x, with_gradient=with_gradient)
        return h, p, problem.lambda_haadf * h + problem.lambda_chem * p, g

    def prox(v: F32, t: float, d: tuple[F32, F32] | None) -> tuple[F32, tuple[F32, F32]]:
        return tv_prox(v, t * lam_tv, d, n_tv, delta)

    def reg_value(x: F32) -> float:
        return problem.regulariser(x)[0]

    u = np.maximum(u0.astype(np.float32, copy=True), 0.0)
    h0, p0, _, _ = smooth_part(u, with_gradient=False)
    current = problem.combine(h0, p0, reg_value(u))
    history = [current]
    steps: list[float] = []
    u_prev = u
    theta = 1.0
    restarts = 0
    rejected = 0
    converged = False
    reason = f"reached max_iterations = {options.max_iterations}"
    t = float(step)
    for k in range(1, options.max_iterations + 1):
        if should_stop is not None and should_stop():
            reason = f"stopped by the caller after {k - 1} iteration(s)"
            break
        theta_next = (1.0 + math.sqrt(1.0 + 4.0 * theta * theta)) / 2.0
        beta = np.float32((theta - 1.0) / theta_next)
        accepted = False
        for attempt in range(2):  # second attempt: momentum restarted (plain proximal gradient step from u)
            y = u + beta * (u - u_prev) if beta > 0 else u
            np.maximum(y, 0.0, out=y) if y is not u else None
            _, _, f_y, grad = smooth_part(y)
            assert grad is not None
            for _ in range(30):  # backtracking on the smooth part
                z, new_dual = prox(y - np.float32(t) * grad, t, dual)
                hz, pz, f_z, _ = smooth_part(z, with_gradient=False)
                d = z - y
                bound = f_y + float(np.vdot(grad, d)) + float(np.vdot(d, d)) / (2.0 * t)
                if f_z <= bound + 1e-7 * abs(f_y) or not np.isfinite(f_z):
                    if np.isfinite(f_z):
                        break
                t *= 0.5
            candidate = problem.combine(hz, pz, reg_value(z))
            if candidate.total <= current.total or attempt == 1:
                accepted = candidate.total <= current.total
                break
            restarts += 1
            theta, beta = 1.0, np.float32(0.0)
        if not np.isfinite(candidate.total):
            raise FusionError(f"the cost became {candidate.total} at iteration {k}; the inputs or parameters make the "
                              f"problem ill-posed (try a larger background or smaller lambdas).")
        dual = new_dual
        steps.append(t)
        if accepted:
            u_prev, u = u, z
            previous, current = current, candidate
            theta = theta_next if beta > 0 or attempt == 0 else 1.0
        else:  # no descent even without momentum: keep u, shrink the step
            previous = current
            t *= 0.5
        history.append(current)
        if progress is not None:
            progress(k, options.max_iterations, current)
        change = abs(previous.total - current.total) / max(abs(current.total), 1e-30)
        if accepted:
            t = min(t * 1.25, 1e6)
        rejected = 0 if accepted else rejected + 1
        if rejected >= 8:
            reason = f"no descent in 8 successive steps after {k} iterations (step {t:.2g}): at a minimum"
            converged = True
            break
        if accepted and k >= 2 and options.tolerance > 0 and change < options.tolerance:
            converged = True
            reason = f"relative cost change {change:.2e} < tolerance {options.tolerance:g} after {k} iterations"
            break
    return u, history, steps, restarts, converged, reason, dual, t


def fuse(haadf: typing.Any, maps: typing.Mapping[str, typing.Any], options: FusionOptions | None = None, *,
         elements: typing.Sequence[str] | None = None, calibrations: tuple[Calibration, Calibration] | None = None,
         warm_start: typing.Any = None, mask: typing.Any = None,
         progress: typing.Callable[[int, int, CostTerms], None] | None = None,
         should_stop: typing.Callable[[], bool] | None = None, **option_values: typing.Any) -> FusionResult:
    """Fuse ``haadf`` (H, W) with chemical ``maps`` {name: (H, W)} (at least two).

    ``elements``: element of each map when the names are not element names (default: looked up from the names).
    ``options`` or keyword option values (see :data:`processing.fusion.options.PARAMETERS`). ``calibrations``: (y, x)
    of the images (kept, shifted to the region). ``warm_start``: ``result.state`` of an earlier fusion of the same
    maps (the same maps, or the first rows of maps that have grown by rows since): its maps start the solver. ``mask`` (H, W) bool: pixels to use (others are
    ignored, e.g. not yet acquired). ``progress(k, max_k, terms)``, ``should_stop() -> bool``: for UIs.

    Raises :class:`processing.base.ProcessingError` (with problem, value and remedy) on bad input, and
    :class:`FusionError` when the solver cannot lower the cost (never returns the unfused maps silently).
    """
    if options is None:
        options = FusionOptions.from_values(option_values)
    elif option_values:
        options = dataclasses.replace(options, **option_values)
    start = time.perf_counter()
    prepared: PreparedInputs = prepare_inputs(haadf, maps, options, elements=elements, mask=mask)
    problem = prepared.problem
    u0 = prepared.u0
    dual = None
    step = 1.0
    if isinstance(warm_start, _WarmState) and warm_start.u.shape[0] == u0.shape[0] \
            and warm_start.u.shape[2] == u0.shape[2] and warm_start.u.shape[1] <= u0.shape[1]:
        rows = warm_start.u.shape[1]  # an SI that grew by rows: warm start on the rows fused before
        u0 = u0.copy()
        # the normalisation may have changed (new rows, new extremes): carry the maps over in input units
        ratio = (warm_start.span / prepared.map_span)[:, None, None]
        shift = ((warm_start.offset - prepared.map_offset) / prepared.map_span)[:, None, None]
        u0[:, :rows] = np.maximum(warm_start.u * ratio + shift, 0.0)
        if warm_start.dual is not None:
            dual = (np.zeros_like(u0), np.zeros_like(u0))
            dual[0][:, :rows] = warm_start.dual[0]
            dual[1][:, :rows] = warm_start.dual[1]
        step = warm_start.step
    u, history, steps, restarts, converged, reason, dual, t = solve(
        problem, u0, options, dual=dual, step=step, progress=progress, should_stop=should_stop)
    start_total = history[0].total
    if len(history) < 2 or not history[-1].total < start_total:
        raise FusionError(f"fusion did not lower the cost (start {start_total:.6g}, end {history[-1].total:.6g}, "
                          f"{len(history) - 1} iteration(s)); the maps are returned unfused by no one: check that the "
                          f"maps and the HAADF show the same field, or change lambda_chem / lambda_tv.")
    maps_out = prepared.to_input_units(u)
    predicted = prepared.haadf_to_input_units(problem.predicted(u))
    cost = np.asarray([[c.haadf, c.poisson, c.tv, c.total] for c in history], dtype=np.float64)
    top, left, _, _ = prepared.region_px
    if calibrations is not None:
        cy, cx = calibrations
        cals = (Calibration(cy.offset + cy.scale * top, cy.scale, cy.units),
                Calibration(cx.offset + cx.scale * left, cx.scale, cx.units))
    else:
        cals = (Calibration(), Calibration())
    return FusionResult(
        names=prepared.names, elements=prepared.elements,
        atomic_numbers=tuple(atomic_number(e) for e in prepared.elements), weights=problem.weights.copy(),
        maps=maps_out, maps_normalised=u, raw_maps=prepared.raw_maps, haadf=prepared.haadf,
        predicted_haadf=predicted, haadf_residual=(prepared.haadf - predicted).astype(np.float32), cost=cost,
        iterations=len(history) - 1, converged=converged, stop_reason=reason,
        elapsed_s=time.perf_counter() - start, step_sizes=np.asarray(steps, dtype=np.float64), restarts=restarts,
        region_px=prepared.region_px, calibrations=cals, options=options, notes=prepared.notes,
        state=_WarmState(u, dual, t, prepared.map_offset, prepared.map_span))


def element_list(names: typing.Iterable[str]) -> tuple[str, ...]:
    """Element symbols of map names (raises ParameterError on an unknown name)."""
    return tuple(element_symbol(n) for n in names)
