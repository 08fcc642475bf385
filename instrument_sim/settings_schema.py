"""The one declaration of a user-facing simulator setting (name, label, units, range, group, default, kind), shared
by the simulator settings and the laser so one generic panel row renders either."""
from __future__ import annotations

import dataclasses
import typing


@dataclasses.dataclass(frozen=True)
class SettingField:
    """How a setting is shown and checked: label, units, range (None: unbounded), panel group, default, kind."""

    name: str
    label: str
    units: str
    minimum: float | None
    maximum: float | None
    group: str = ""
    default: float | bool = 0.0
    kind: typing.Literal["real", "boolean"] = "real"

    def in_range(self, value: float) -> bool:
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)
