"""Exact solver: POT's conditional gradient with network-simplex linear steps."""

from __future__ import annotations

from typing import Any

import numpy as np
import ot

from .engine import BarycenterSolution
from .utils import barycentric_update, common_scale, free_structure_update
from .validation import EMD_MAX_ITER

__all__ = ["ExactSolver", "solve_plan"]


def solve_plan(
    variant: str,
    m: np.ndarray | None,
    c: np.ndarray | None,
    ck: np.ndarray,
    p: np.ndarray,
    q: np.ndarray,
    alpha: float,
    g0: np.ndarray | None,
) -> tuple[np.ndarray, float]:
    """One plan and its cost (normalised matrices already applied).

    ``"w"``: ``ot.emd`` on ``m``; ``"gw"``: ``ot.gromov.gromov_wasserstein``
    on ``(c, ck)``; ``"fgw"``: ``ot.gromov.fused_gromov_wasserstein``. The
    GW solvers start from ``g0`` (``None``: the independent coupling).
    """
    if variant == "w":
        assert m is not None
        t = ot.emd(p, q, m, numItermax=EMD_MAX_ITER)
        return t, float(np.vdot(m, t))
    assert c is not None
    if variant == "gw":
        t, log = ot.gromov.gromov_wasserstein(
            c,
            ck,
            p,
            q,
            "square_loss",
            symmetric=True,
            G0=g0,
            log=True,
            numItermaxEmd=EMD_MAX_ITER,
        )
        return t, float(log["gw_dist"])
    assert m is not None
    t, log = ot.gromov.fused_gromov_wasserstein(
        m,
        c,
        ck,
        p,
        q,
        loss_fun="square_loss",
        symmetric=True,
        alpha=alpha,
        G0=g0,
        log=True,
        numItermaxEmd=EMD_MAX_ITER,
    )
    return t, float(log["fgw_dist"])


class ExactSolver:
    """The (F)GW barycenter problem solved exactly, one POT solve per cloud.

    Parameters
    ----------
    clouds : list of np.ndarray
        ``K`` validated clouds ``(n_k, d)``.
    support : np.ndarray
        Initial support ``(N, d)``.
    weights : np.ndarray
        Normalised agent weights ``(K,)``.
    variant : {"fgw", "w", "gw"}
        Problem solved per cloud (see :func:`solve_plan`).
    alpha : float
        Structure weight of ``"fgw"``.
    structure : {"features", "free"}
        ``C = D(Z, Z)`` from the support, or the free structure update.
    normalize_costs : bool
        Divide every cost matrix by ``mean_k max(C_k)``.

    Notes
    -----
    GW plans are warm-started from the previous solve's plans, which are
    released one by one (``K`` plans alive, not ``2K``).
    """

    floor = 1e-300

    def __init__(
        self,
        clouds: list[np.ndarray],
        support: np.ndarray,
        weights: np.ndarray,
        *,
        variant: str,
        alpha: float,
        structure: str,
        normalize_costs: bool,
    ) -> None:
        self.clouds, self.support, self.weights = clouds, support, weights
        self.variant, self.alpha = variant, alpha
        self.cks = [ot.dist(z, z) for z in clouds]
        self.scale = 1.0
        if normalize_costs:
            self.scale = common_scale(ck.max() for ck in self.cks)
            for ck in self.cks:
                ck /= self.scale
        self.qs = [ot.unif(z.shape[0]) for z in clouds]
        self.p = ot.unif(support.shape[0])
        self.need_c = variant != "w"
        self.need_m = variant != "gw"
        self.free = structure == "free" and self.need_c
        self.c_free: np.ndarray | None = None
        self.plans: list[Any] | None = None
        self.costs = np.empty(len(clouds))

    def _structure(self) -> np.ndarray | None:
        """Barycenter structure of this solve: free ``C``, ``D(Z, Z)`` or none."""
        if not self.need_c or self.c_free is not None:
            return self.c_free
        c = ot.dist(self.support, self.support)
        if self.scale != 1.0:
            c /= self.scale
        return c

    def solve(self, it: int) -> tuple[float, float]:
        """Solve every plan against the current support; see :class:`SupportSolver`."""
        z, prev, scale = self.support, self.plans, self.scale
        c = self._structure()
        plans, costs = [], np.empty(len(self.clouds))
        for k, zk in enumerate(self.clouds):
            m = ot.dist(z, zk) if self.need_m else None
            if m is not None and scale != 1.0:
                m /= scale
            g0 = None if prev is None else prev[k]
            if prev is not None:  # drop our reference: K plans alive, not 2K
                prev[k] = None
            plan, costs[k] = solve_plan(
                self.variant, m, c, self.cks[k], self.p, self.qs[k], self.alpha, g0
            )
            del g0
            plans.append(plan)
        self.plans, self.costs = plans, costs
        obj = float(self.weights @ costs)
        return obj, obj

    def update(self) -> None:
        """Barycentric support update (and the free structure update)."""
        assert self.plans is not None
        self.support = barycentric_update(self.weights, self.plans, self.clouds)
        if self.free:
            self.c_free = free_structure_update(self.weights, self.plans, self.cks)

    def solution(self, history: list[float], n_iter: int) -> BarycenterSolution:
        """Final support, plans and costs (``C`` in squared-distance units)."""
        assert self.plans is not None
        return BarycenterSolution(
            barycenter=np.asarray(self.support, dtype=np.float64),
            plans=self.plans,
            costs=self.costs,
            history=history,
            n_iter=n_iter,
            structure=None if self.c_free is None else self.c_free * self.scale,
        )
