"""Options of multi-modal fusion, declared once (:data:`PARAMETERS`): the Swift inspector, the CLI and the live
analysis are all built from these declarations.

Defaults are the published tutorial's (Schwartz et al., npj Comput. Mater. 8, 16 (2022)): gamma 1.6,
lambda_chem 0.08, lambda_TV 0.15, 30 iterations, 3 TV iterations, background 0.24, lambda_HAADF = 1 / n_maps.
"""
from __future__ import annotations

import dataclasses
import typing

from processing.base import Parameter, ParameterError

__all__ = ["PARAMETERS", "SI_PRESET", "MAP_MODES", "REGULARISERS", "WEIGHTINGS", "FusionOptions", "parse_region"]

#: HAADF weights w_i: "Z" = Z_i / mean(Z) (the published tutorial), "Z^gamma" = Z_i^gamma / mean(Z^gamma),
#: "fitted" = non-negative least squares of the HAADF on the (lightly smoothed) measured maps**gamma
WEIGHTINGS: tuple[str, ...] = ("Z", "Z^gamma", "fitted")

#: "normalised": every map and the HAADF are shifted to min 0 and scaled to max 1 (the published code);
#: "counts": the maps are raw counts (>= 0) and the Poisson term is on counts (its weight grows with the dose)
MAP_MODES: tuple[str, ...] = ("normalised", "counts")

#: "published": lambda_TV * sum Huber_delta(|grad u|) with delta = 8 lambda_TV / (tv_iterations - 1), the
#: regularisation the published loop (step 1, fgp_tv with tv_iterations: tv_iterations - 1 un-accelerated dual
#: updates from a zero dual) effectively applies
#: (:func:`processing.fusion.model.published_tv_delta`); "tv": the exact isotropic TV the published cost states
REGULARISERS: tuple[str, ...] = ("published", "tv")

PARAMETERS: tuple[Parameter, ...] = (
    Parameter("gamma", "Gamma (HAADF ~ Z^gamma)", "real", 1.6, 1.4, 2.0,
              description="exponent of the incoherent HAADF model: HAADF = sum_i w_i x_i^gamma"),
    Parameter("lambda_chem", "Lambda chem (Poisson)", "real", 0.08, 1e-4, 100.0,
              description="weight of the Poisson likelihood of the measured chemical maps"),
    Parameter("lambda_tv", "Lambda TV", "real", 0.15, 0.0, 10.0,
              description="weight of the total variation of each fused map (0: no TV)"),
    Parameter("lambda_haadf", "Lambda HAADF (0 = 1/n)", "real", 0.0, 0.0, 100.0,
              description="weight of the HAADF term; 0 means 1 / number of maps (published)"),
    Parameter("max_iterations", "Max iterations", "integral", 50, 1, 5000,
              description="upper bound of the outer iterations"),
    Parameter("tolerance", "Tolerance (rel. cost change)", "real", 1e-5, 0.0, 0.5,
              description="stop when the cost changes by less than this fraction over one iteration (0: never)"),
    Parameter("tv_iterations", "TV iterations", "integral", 3, 1, 100,
              description="published regulariser: the published TV iterations K (delta = 8 lambda_TV / (K - 1)); "
                          "exact TV: inner iterations of the TV proximal step (warm-started)"),
    Parameter("regulariser", "Regulariser", "choice", "published", choices=REGULARISERS,
              description="published: the Huber-TV the published loop effectively applies (delta = 8 lambda_TV / "
                          "(TV iterations - 1)); tv: exact isotropic TV at lambda_TV"),
    Parameter("background", "Background", "real", 0.24, 1e-6, 1e6,
              description="background of the Poisson term (normalised units, or counts in counts mode)"),
    Parameter("map_mode", "Maps are", "choice", "normalised", choices=MAP_MODES,
              description="normalised (published) or raw counts"),
    Parameter("weighting", "HAADF weights", "choice", "Z", choices=WEIGHTINGS,
              description="Z / mean Z (published), Z^gamma / mean, or fitted to the HAADF"),
)
_BY_NAME = {p.name: p for p in PARAMETERS}

#: the preset for EELS edge maps of one SI (live fusion, fusion of a drift-corrected SI result): maps are counts
#: (edge maps clipped at 0), weights fitted to the HAADF (the edges of different elements have unrelated
#: cross-sections), a strong HAADF term and more TV (checked against the simulator's truth: docs/fusion.md)
SI_PRESET: dict[str, typing.Any] = {"map_mode": "counts", "weighting": "fitted", "lambda_haadf": 10.0,
                                    "lambda_tv": 1.0, "max_iterations": 30, "regulariser": "tv",
                                    "tolerance": 1e-4}


def parse_region(text: str | typing.Sequence[int] | None) -> tuple[int, int, int, int] | None:
    """``"top,left,height,width"`` (pixels) or a 4-sequence -> tuple; ``None``/``""`` -> ``None`` (whole image)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    parts: list[typing.Any] = text.replace(";", ",").split(",") if isinstance(text, str) else list(text)
    try:
        values = tuple(int(str(v).strip()) for v in parts)
    except ValueError:
        raise ParameterError(f"region must be four whole numbers 'top,left,height,width' (pixels); got {text!r}.") \
            from None
    if len(values) != 4 or values[0] < 0 or values[1] < 0 or values[2] < 1 or values[3] < 1:
        raise ParameterError(f"region must be 'top,left,height,width' with top, left >= 0 and height, width >= 1 "
                             f"(pixels); got {text!r}.")
    return (values[0], values[1], values[2], values[3])


@dataclasses.dataclass(frozen=True)
class FusionOptions:
    """Validated fusion options (see :data:`PARAMETERS` for ranges). ``region_px``: (top, left, height, width)
    of the part of the images to fuse, or None for all of it.

    >>> FusionOptions(gamma=1.8).lambda_tv
    0.15
    """

    gamma: float = 1.6
    lambda_chem: float = 0.08
    lambda_tv: float = 0.15
    lambda_haadf: float = 0.0
    max_iterations: int = 50
    tolerance: float = 1e-5
    tv_iterations: int = 3
    regulariser: str = "published"
    background: float = 0.24
    map_mode: str = "normalised"
    weighting: str = "Z"
    region_px: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        for p in PARAMETERS:
            object.__setattr__(self, p.name, p.validate(getattr(self, p.name)))
        object.__setattr__(self, "region_px", parse_region(self.region_px))

    @classmethod
    def from_values(cls, values: typing.Mapping[str, typing.Any]) -> FusionOptions:
        """From a mapping of parameter values (unknown names are refused, missing ones take their defaults)."""
        known = set(_BY_NAME) | {"region_px"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError(f"unknown fusion option(s) {unknown}; known options are {sorted(known)}.")
        return cls(**dict(values))

    def haadf_weight(self, n_maps: int) -> float:
        """lambda_HAADF actually used: the option, or 1 / n_maps when it is 0 (published default)."""
        return self.lambda_haadf if self.lambda_haadf > 0 else 1.0 / n_maps

    def as_dict(self) -> dict[str, typing.Any]:
        """JSON-able values (for metadata)."""
        out = {p.name: getattr(self, p.name) for p in PARAMETERS}
        out["region_px"] = list(self.region_px) if self.region_px is not None else None
        return out
