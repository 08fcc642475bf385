"""Multi-modal fusion of HAADF with EELS/EDS chemical maps (Schwartz et al., npj Comput. Mater. 8, 16 (2022)).

* :func:`fuse` (:mod:`.solver`): accelerated proximal gradient (FISTA + backtracking + restart, warm-started
  TV proximal step) on the published cost (:mod:`.model`), stopping on the relative change of the cost.
* :class:`FusionOptions` / :data:`PARAMETERS` (:mod:`.options`): every option declared once.
* :func:`atomic_number` (:mod:`.elements`): Z by element name.
* :class:`LiveFusion` (:mod:`.live`): fusion of a drift-corrected SI as it fills (warm start between updates).
"""
from __future__ import annotations

from processing.fusion.elements import atomic_number, element_symbol
from processing.fusion.options import PARAMETERS, FusionOptions
from processing.fusion.solver import FusionError, FusionResult, fuse

__all__ = ["fuse", "FusionResult", "FusionError", "FusionOptions", "PARAMETERS", "atomic_number", "element_symbol"]
