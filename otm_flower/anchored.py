"""Partly anchored (F)GW barycenter: shared record ids pin part of the couplings.

The public names of :mod:`otm_flower.barycenter.anchored` (method, options,
result), whose solver is :mod:`otm_flower.barycenter.anchored_solver`.
"""

from __future__ import annotations

from .barycenter.anchored import (
    AnchoredBarycenterResult,
    AnchoredOptions,
    Landmark,
    StructureMetric,
    StructureScale,
    anchored_fgw_barycenter,
    common_anchors,
    soft_anchor_profiles,
)

__all__ = [
    "AnchoredBarycenterResult",
    "AnchoredOptions",
    "Landmark",
    "StructureMetric",
    "StructureScale",
    "anchored_fgw_barycenter",
    "common_anchors",
    "soft_anchor_profiles",
]
