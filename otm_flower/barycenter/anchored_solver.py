"""Anchored solver: (F)GW plans pinned at shared anchors, plus a landmark cost.

Every plan ``T_k`` is split (:func:`split_plan`) into a fixed block, mass
``min(1/N, 1/n_k)`` on each (anchor point, anchor row) pair, and a free block
``R_k`` solved by conditional gradient (:func:`solve_free`) with the fixed
block held constant. :class:`AnchoredSolver` plugs this into the engine loop
(:func:`otm_flower.barycenter.engine.iterate`); the method is described in
:mod:`otm_flower.barycenter.anchored`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import ot

from .engine import BarycenterSolution
from .profiles import (
    StructureMetric,
    mean_unit,
    profile_view,
    soft_anchor_profiles,
    structure_matrix,
)
from .utils import barycentric_update, common_scale, free_structure_update
from .validation import CG_MAX_ITER, EMD_MAX_ITER

__all__ = [
    "AnchoredSettings",
    "AnchoredSolver",
    "PlanSplit",
    "anchor_support",
    "full_cost",
    "gw_cross",
    "solve_free",
    "split_plan",
]


def full_cost(
    m: np.ndarray | None,
    c: np.ndarray | None,
    ck: np.ndarray,
    p: np.ndarray,
    q: np.ndarray,
    t: np.ndarray,
    alpha: float,
) -> float:
    """(F)GW cost ``(1 - alpha) <M, T> + alpha GW(C, C_k, T)`` of a full plan."""
    lin = 0.0 if m is None or alpha >= 1.0 else (1.0 - alpha) * float(np.vdot(m, t))
    if c is None or alpha <= 0.0:
        return lin
    const_c, h1, h2 = ot.gromov.init_matrix(c, ck, p, q, "square_loss")
    return lin + alpha * float(ot.gromov.gwloss(const_c, h1, h2, t))


@dataclass
class PlanSplit:
    """Fixed/free split of one plan."""

    held: np.ndarray  # bool (A,): anchors this cloud holds
    pts: np.ndarray  # barycenter points of those anchors
    rows: np.ndarray  # the cloud's rows of those anchors
    mass: float  # mass fixed on each anchor pair
    free_i: np.ndarray  # barycenter points with residual mass
    free_j: np.ndarray  # rows with residual mass
    p_f: np.ndarray
    q_f: np.ndarray
    fixed: np.ndarray  # (N, n_k) fixed block


def split_plan(
    pts: np.ndarray, rows: np.ndarray, p: np.ndarray, q: np.ndarray
) -> PlanSplit:
    held = rows >= 0
    pts_k, rows_k = pts[held], rows[held]
    mass = float(min(p[0], q[0]))
    fixed = np.zeros((p.size, q.size))
    fixed[pts_k, rows_k] = mass
    p_res = p - fixed.sum(axis=1)
    q_res = q - fixed.sum(axis=0)
    tiny = 1e-9 * max(float(p[0]), float(q[0]))
    free_i = np.flatnonzero(p_res > tiny)
    free_j = np.flatnonzero(q_res > tiny)
    p_f, q_f = p_res[free_i], q_res[free_j]
    if q_f.size:  # equal totals up to rounding: make them exact
        q_f = q_f * (p_f.sum() / q_f.sum())
    return PlanSplit(held, pts_k, rows_k, mass, free_i, free_j, p_f, q_f, fixed)


def gw_cross(c: np.ndarray, ck: np.ndarray, cl: PlanSplit) -> np.ndarray:
    """``2 m sum_a (C[i, a] - C_k[j, a_k])^2`` on the free rows and columns."""
    x = c[np.ix_(cl.free_i, cl.pts)]
    y = ck[np.ix_(cl.free_j, cl.rows)]
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    np.maximum(sq, 0.0, out=sq)
    return 2.0 * cl.mass * sq


def solve_free(
    lin: np.ndarray,
    gw_on: bool,
    c: np.ndarray | None,
    ck: np.ndarray,
    cl: PlanSplit,
    alpha: float,
    g0: np.ndarray | None,
) -> np.ndarray:
    """Free block ``R`` minimising ``<lin, R> + alpha GW(R)`` on the free part."""
    if not gw_on:
        return np.asarray(ot.emd(cl.p_f, cl.q_f, lin, numItermax=EMD_MAX_ITER))
    assert c is not None
    cf = c[np.ix_(cl.free_i, cl.free_i)]
    ckf = ck[np.ix_(cl.free_j, cl.free_j)]
    const_c, h1, h2 = ot.gromov.init_matrix(cf, ckf, cl.p_f, cl.q_f, "square_loss")

    def f(g: np.ndarray) -> float:
        return float(ot.gromov.gwloss(const_c, h1, h2, g))

    def df(g: np.ndarray) -> np.ndarray:
        return np.asarray(ot.gromov.gwggrad(const_c, h1, h2, g))

    def line_search(
        cost: Any,
        g: np.ndarray,
        delta: np.ndarray,
        mi: np.ndarray,
        cost_g: float,
        df_g: np.ndarray,
        **kw: Any,
    ) -> Any:
        return ot.gromov.solve_gromov_linesearch(
            g, delta, cost_g, h1, h2, M=lin, reg=alpha, symmetric=True, **kw
        )

    if g0 is None:
        g0 = cl.p_f[:, None] * cl.q_f[None, :]
    r = ot.optim.cg(
        cl.p_f,
        cl.q_f,
        lin,
        alpha,
        f,
        df,
        g0,
        line_search,
        numItermax=CG_MAX_ITER,
        numItermaxEmd=EMD_MAX_ITER,
    )
    return np.asarray(r)


def anchor_support(
    clouds: list[np.ndarray],
    rows: list[np.ndarray],
    init: int,
    n_points: int | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Initial support, the point of each anchor, and each point's source.

    Anchors held by cloud ``init`` keep their row there as their point; the
    other points are rows of cloud ``init`` (all of them when ``n_points`` is
    ``None``; else a seeded subsample, or all rows plus resampled ones with a
    tiny jitter). Anchors that cloud ``init`` lacks take a seeded non-anchor
    point whose initial code is that anchor's code in the first cloud holding
    it.

    Returns
    -------
    support : np.ndarray
        ``(N, d)``.
    pts : np.ndarray
        ``(A,)`` barycenter point of each anchor.
    src_cloud, src_row : np.ndarray
        ``(N,)``: the cloud and row each point was initialised from.
    """
    z0 = clouds[init]
    n0 = z0.shape[0]
    n_anchor = rows[init].size
    own = rows[init] >= 0
    n_bary = n0 if n_points is None else int(n_points)
    assert n_bary >= n_anchor, "the caller keeps at most n_points anchors"
    pts = np.full(n_anchor, -1, np.int64)
    if n_points is None:
        src_row = np.arange(n0)
        pts[own] = rows[init][own]
    else:
        anchor_rows0 = rows[init][own]
        others = np.setdiff1d(np.arange(n0), anchor_rows0)
        n_rest = n_bary - anchor_rows0.size
        if n_rest <= others.size:
            rest = np.sort(rng.choice(others, size=n_rest, replace=False))
        else:
            rest = np.concatenate(
                [others, rng.integers(0, n0, size=n_rest - others.size)]
            )
        src_row = np.concatenate([anchor_rows0, rest]).astype(np.int64)
        pts[own] = np.arange(anchor_rows0.size)
    src_cloud = np.full(n_bary, init, np.int64)
    support = z0[src_row].copy()
    if n_bary > n0:  # repeated rows: tiny jitter keeps the points distinct
        spread = float(np.std(z0))
        jitter = 1e-6 * (spread if spread > 0 else 1.0)
        support[n0:] += jitter * rng.standard_normal(support[n0:].shape)
    missing = np.flatnonzero(~own)
    if missing.size:
        free_pts = np.setdiff1d(np.arange(n_bary), pts[own])
        chosen = rng.choice(free_pts, size=missing.size, replace=False)
        for a, pt in zip(missing, chosen, strict=True):
            k = next(k for k, r in enumerate(rows) if r[a] >= 0)
            support[pt] = clouds[k][rows[k][a]]
            src_cloud[pt], src_row[pt] = k, rows[k][a]
            pts[a] = pt
    return support, pts, src_cloud, src_row


@dataclass(frozen=True)
class AnchoredSettings:
    """Options of the anchored solver (see :func:`anchored_fgw_barycenter`).

    ``cross_weight`` scales the GW cross term with the anchor block in the
    landmark cost (``landmark="gw"``); ``use_profile`` adds the profile cost.
    """

    variant: str
    alpha: float
    structure: str
    metric: StructureMetric
    per_cloud: bool
    normalize_costs: bool
    anchor_weight: float
    use_profile: bool
    cross_weight: float
    anchor_init: bool
    profile_neighbors: int


def _structures(
    clouds: list[np.ndarray], opts: AnchoredSettings
) -> tuple[float, float, list[np.ndarray]]:
    """Feature scale, common structure scale, and normalised structure matrices."""
    scale = 1.0
    if opts.normalize_costs:
        scale = common_scale(ot.dist(z, z).max() for z in clouds)
    cks = [structure_matrix(z, opts.metric) for z in clouds]
    s_struct = 1.0
    if opts.normalize_costs and not opts.per_cloud:
        s_struct = common_scale(ck.max() for ck in cks)
    for ck in cks:
        ck /= mean_unit(ck) if opts.per_cloud else s_struct
    return scale, s_struct, cks


class AnchoredSolver:
    """The anchored (F)GW barycenter problem, one pinned plan per cloud.

    Parameters
    ----------
    clouds : list of np.ndarray
        ``K`` validated clouds ``(n_k, d)``.
    support : np.ndarray
        Initial support ``(N, d)`` (:func:`anchor_support`).
    weights : np.ndarray
        Normalised agent weights ``(K,)``.
    pts, rows : np.ndarray, list of np.ndarray
        Barycenter point of each anchor ``(A,)``, and per cloud its row of
        each anchor (``-1``: not held).
    sources : tuple of np.ndarray
        Cloud and row each support point was initialised from (its profile).
    opts : AnchoredSettings
        Options.
    """

    floor = 1e-300

    def __init__(
        self,
        clouds: list[np.ndarray],
        support: np.ndarray,
        weights: np.ndarray,
        pts: np.ndarray,
        rows: list[np.ndarray],
        sources: tuple[np.ndarray, np.ndarray],
        opts: AnchoredSettings,
    ) -> None:
        self.clouds, self.support, self.weights, self.opts = (
            clouds,
            support,
            weights,
            opts,
        )
        self.alpha = opts.alpha
        self.need_c = opts.variant != "w"
        self.need_m = opts.variant != "gw"
        self.gw_on = self.need_c and opts.alpha > 0.0
        self.free = opts.structure == "free" and self.need_c
        self.scale, self.s_struct, self.cks = _structures(clouds, opts)
        self.p = ot.unif(support.shape[0])
        self.qs = [ot.unif(z.shape[0]) for z in clouds]
        self.splits = [
            split_plan(pts, rows[k], self.p, self.qs[k]) for k in range(len(clouds))
        ]
        self.phis: list[np.ndarray] = []
        self.phi_bar: np.ndarray | None = None
        self.held_w = np.ones(pts.size)
        self.s_prof = 1.0
        if opts.use_profile:
            self._init_profiles(pts.size, sources)
        self.c_free: np.ndarray | None = None
        self.plans: list[np.ndarray] | None = None
        self.costs = np.empty(len(clouds))
        self.extra = np.zeros(len(clouds))

    def _init_profiles(
        self, n_anchors: int, sources: tuple[np.ndarray, np.ndarray]
    ) -> None:
        """Soft anchor profiles of the clouds and support, and their cost scale."""
        opts = self.opts
        for z, cl in zip(self.clouds, self.splits, strict=True):
            phi = np.zeros((z.shape[0], n_anchors))
            if cl.rows.size:
                phi[:, cl.held] = soft_anchor_profiles(
                    z, cl.rows, neighbors=opts.profile_neighbors, metric=opts.metric
                )
            self.phis.append(phi)
        if opts.normalize_costs:
            self.s_prof = common_scale(
                ot.dist(ph[:, cl.held], ph[:, cl.held]).max()
                for ph, cl in zip(self.phis, self.splits, strict=True)
                if cl.rows.size
            )
        src_cloud, src_row = sources
        self.phi_bar = np.stack(
            [self.phis[k][r] for k, r in zip(src_cloud, src_row, strict=True)]
        )
        self.held_w = sum(
            wk * cl.held for wk, cl in zip(self.weights, self.splits, strict=True)
        )

    def _structure(self) -> np.ndarray | None:
        """Barycenter structure of this solve (normalised), or ``None`` for "w"."""
        if not self.need_c:
            return None
        if self.c_free is not None:
            return self.c_free
        c = structure_matrix(self.support, self.opts.metric)
        c /= mean_unit(c) if self.opts.per_cloud else self.s_struct
        return c

    def _linear_terms(
        self, k: int, m: np.ndarray | None, c: np.ndarray | None, ii: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Linear cost of free block ``k``, and its landmark part."""
        cl, alpha = self.splits[k], self.alpha
        lin = np.zeros((cl.free_i.size, cl.free_j.size))
        if m is not None and alpha < 1.0:
            lin += (1.0 - alpha) * m[ii]
        land = np.zeros_like(lin)
        if self.gw_on and cl.pts.size:
            assert c is not None
            cross = gw_cross(c, self.cks[k], cl)
            lin += alpha * cross
            land += alpha * (self.opts.cross_weight - 1.0) * cross
        if self.opts.use_profile and cl.pts.size:
            assert self.phi_bar is not None
            pb = profile_view(self.phi_bar[cl.free_i], cl.held)
            land += (
                float(self.opts.anchor_weight)
                * ot.dist(pb, self.phis[k][np.ix_(cl.free_j, cl.held)])
                / self.s_prof
            )
        return lin, land

    def _solve_cloud(
        self, k: int, c: np.ndarray | None
    ) -> tuple[np.ndarray, float, float]:
        """Plan ``k`` (fixed plus free block), its (F)GW cost and landmark cost."""
        cl, zk, z = self.splits[k], self.clouds[k], self.support
        m = ot.dist(z, zk) / self.scale if self.need_m else None
        t = cl.fixed.copy()
        extra = 0.0
        if cl.free_i.size and cl.free_j.size:
            ii = np.ix_(cl.free_i, cl.free_j)
            lin, land = self._linear_terms(k, m, c, ii)
            lin += land
            g0 = None
            if self.plans is not None:
                g0 = self.plans[k][ii] - cl.fixed[ii]
            elif self.opts.anchor_init and self.gw_on:
                g0 = ot.emd(cl.p_f, cl.q_f, lin, numItermax=EMD_MAX_ITER)
            r = solve_free(lin, self.gw_on, c, self.cks[k], cl, self.alpha, g0)
            t[ii] += r
            extra = float(np.vdot(land, r))
        cost = full_cost(m, c, self.cks[k], self.p, self.qs[k], t, self.alpha)
        return t, cost, extra

    def solve(self, it: int) -> tuple[float, float]:
        """Solve every plan; returns the (F)GW and the minimised objective."""
        c = self._structure()
        plans: list[np.ndarray] = []
        costs = np.empty(len(self.clouds))
        extra = np.zeros(len(self.clouds))
        for k in range(len(self.clouds)):
            t, costs[k], extra[k] = self._solve_cloud(k, c)
            plans.append(t)
        self.plans, self.costs, self.extra = plans, costs, extra
        return float(self.weights @ costs), float(self.weights @ (costs + extra))

    def update(self) -> None:
        """Barycentric update of the support, free structure and profiles."""
        assert self.plans is not None
        w, plans = self.weights, self.plans
        self.support = barycentric_update(w, plans, self.clouds)
        if self.free:
            self.c_free = free_structure_update(w, plans, self.cks)
        if self.phi_bar is not None:
            num = barycentric_update(w, plans, self.phis)
            self.phi_bar = num / np.where(self.held_w > 0, self.held_w, 1.0)

    def solution(self, history: list[float], n_iter: int) -> BarycenterSolution:
        """Final support, plans and costs (``C`` in normalised units)."""
        assert self.plans is not None
        return BarycenterSolution(
            barycenter=np.asarray(self.support, dtype=np.float64),
            plans=self.plans,
            costs=self.costs,
            history=history,
            n_iter=n_iter,
            structure=self.c_free,
        )
