"""Fast free-support FGW barycenter (torch; CPU or CUDA), and its objective.

The public names of the fast solver, which lives in
:mod:`otm_flower.barycenter.fast` (algorithm), :mod:`otm_flower.barycenter.
lowrank` (low-rank geometry) and :mod:`otm_flower.barycenter.linear_steps`
(entropic and assignment linear steps, rounding); :func:`fgw_objective` is the
explicit objective shared by every method (:mod:`otm_flower.barycenter.utils`).
"""

from __future__ import annotations

from .barycenter.engine import BarycenterSolution
from .barycenter.fast import QUALITY_OPTIONS, fast_fgw_barycenter
from .barycenter.linear_steps import round_to_coupling
from .barycenter.utils import fgw_objective

#: Raw output of :func:`fast_fgw_barycenter` (normalised cost units).
FastBarycenter = BarycenterSolution

__all__ = [
    "QUALITY_OPTIONS",
    "FastBarycenter",
    "fast_fgw_barycenter",
    "fgw_objective",
    "round_to_coupling",
]
