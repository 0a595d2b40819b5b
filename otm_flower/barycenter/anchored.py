"""Partly anchored (F)GW barycenter: shared record ids pin part of the couplings.

The agents hold unaligned views of the same samples, and a small fraction of
each agent's rows carries an opaque shared record id (int64; ``-1`` for rows
without one). The server sees only these ids next to the uploaded codes,
never features or labels.

Method
------
An id held by at least ``min_clouds`` (default 2) clouds is an *anchor*. Each
anchor owns one barycenter point (the row of the ``init`` cloud that holds it,
so the initial support still is that cloud's codes). Every plan ``T_k``
(``N x n_k``) is split into

* a fixed block: mass ``m_k = min(1/N, 1/n_k)`` on each pair
  (anchor point, row of that anchor in cloud ``k``), and
* a free block ``R_k`` on the remaining marginal mass, solved by conditional
  gradient (exact network-simplex steps) on the (F)GW objective with the
  fixed block held constant, plus a *landmark* cost.

Exact GW cross term. The square-loss GW term is quadratic in the plan, so the
interaction of the fixed and free blocks is linear in ``R_k``::

    GW(F + R) = GW(F) + <G_k, R> + GW(R),
    G_k[i, j] = 2 m_k sum_a (C[i, a] - C_k[j, a_k])^2,

which compares each point's (squared) distances to the anchors with each
row's. It is always part of the objective (it *is* the objective).

Landmark cost (``landmark="profile"``, default). Measured on real views, raw
distance profiles carry little class information (far anchors dominate). The
anchors, however, give every row of every cloud coordinates in one *shared*
space: its soft anchor profile ``phi_k(j) = softmax_a(-(D_k[j, a] -
min_a D_k[j, a]) / tau_j)`` with ``tau_j`` the distance to its
``profile_neighbors``-th nearest anchor (scale free per row, so views with
different spreads are comparable). The barycenter points carry profiles too
(``phi(i)``, initialised from cloud ``init``, updated by the same normalised
barycentric projection as the support), and the free block pays
``anchor_weight * ||phi(i) - phi_k(j)||^2`` (divided by a common scale). This
is a Wasserstein barycenter in the shared anchor-profile space, fused with
the (F)GW terms. ``landmark="gw"`` uses no profile cost and instead scales
the exact cross term ``G_k`` by ``anchor_weight`` (1: exact objective).

Measured (PCA-10 codes of unaligned views, 256 rows per agent, 5% of the
samples anchored, defaults, 3 seeds): class agreement of the couplings
0.69 (Handwritten, 6 views), 0.77 (BDGP), 0.51 (CUB: only ~24 anchors per
batch; 0.59 with 10% and 0.71 with 20% anchored), against 0.45 / 0.71 /
0.31 with ``landmark="gw"`` and 0.11 / 0.18-0.22 / 0.09-0.18 label-free.
On unaligned code spaces the feature term and the raw distance profiles
carry little class information; the soft profiles carry most of it.

The free block of the first solve starts from the optimal plan of its linear
part (``anchor_init``), later solves from the previous plan. The support is
updated as in :func:`otm_flower.mixer.fgw_barycenter`
(``Z = sum_k w_k N T_k Z_k``), so an anchor's point becomes the weighted mean
of its codes and ``project``, ``mix``, ``pull_back`` work unchanged.

Ids held by one cloud only, and missing ids (``-1``), are free rows. Requiring
only two clouds (not all) keeps anchors usable when agents hold different
sample parts (``agents_per_modality > 1``: an id is then held only by the
agents of its part); an anchor then constrains and guides only the clouds
that hold it. With fewer than ``min_anchors`` anchors the function falls back
to :func:`otm_flower.mixer.fgw_barycenter` (``UserWarning``,
``anchored=False`` and ``fallback_reason`` in the result).

Costs
-----
``costs[k]`` is the (F)GW cost of the whole plan ``k`` (fixed and free
blocks) with the normalised matrices used, as in the mixer
(``(1 - alpha) <M, T> + alpha GW(C, C_k, T)``); ``objective`` and ``history``
are their weighted sums. The solver minimises ``costs + landmark_costs``
(recorded in ``anchored_history``). Feature costs ``M`` use the mixer's
common scale ``s = mean_k max(D_k)``. Structure matrices are divided by
their own mean per cloud (``structure_scale="cloud"``, default: views with
different spreads get comparable distance profiles) or by the common scale
(``"common"``); ``metric`` picks squared Euclidean (default), Euclidean or
centred cosine distances for them and for the profiles.

Options
-------
``anchor_weight`` (>= 0) weighs the landmark cost: default 30 for
``"profile"``, 1 (the exact objective) for ``"gw"``. 30 makes the profile
cost dominate the (normalised) (F)GW terms, which on unaligned views carry
little class information; measured on Handwritten, BDGP and CUB, 10 to 100
perform alike and 1 is clearly worse. ``landmark="gw"`` gives no landmark
guidance for ``variant="w"``. When more ids are shared than ``N``, the ``N``
held by the most clouds are anchors (ties: a seeded draw) and the other
shared rows are matched as rows without id. ``tol`` applies to the minimised
objective. ``normalize_costs=False`` uses raw matrices (``structure_scale``
ignored); else profile costs are divided by ``mean_k max`` of their
within-cloud values. ``anchor_init`` starts each first free solve from the
optimal plan of its linear part (feature, landmark and GW cross terms)
instead of the independent coupling.

Cost: ``(n_iter + 1) * K`` conditional-gradient solves on the free part (as
the exact solver), plus ``O(N n A)`` per solve for the landmark terms.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .anchor_ids import as_ids, common_anchors, keep_anchors
from .anchored_solver import AnchoredSettings, AnchoredSolver, anchor_support
from .engine import BarycenterResult, Trace, build_result, iterate
from .fgw import fgw_barycenter
from .profiles import StructureMetric, soft_anchor_profiles
from .validation import (
    ArrayLike,
    MixerError,
    Structure,
    Variant,
    as_clouds,
    check_barycenter_options,
    effective_alpha,
    normalized_weights,
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

StructureScale = Literal["cloud", "common"]
Landmark = Literal["profile", "gw"]

SCALES: tuple[str, ...] = ("cloud", "common")
METRICS: tuple[str, ...] = ("sqeuclidean", "euclidean", "cosine")
LANDMARKS: tuple[str, ...] = ("profile", "gw")
#: Default ``anchor_weight`` per landmark.
DEFAULT_WEIGHT = {"profile": 30.0, "gw": 1.0}


@dataclass
class AnchoredBarycenterResult(BarycenterResult):
    """Output of :func:`anchored_fgw_barycenter`.

    A :class:`otm_flower.mixer.BarycenterResult` (so ``project``, ``mix``,
    ``pull_back`` work unchanged) with the anchor bookkeeping added.

    Attributes
    ----------
    anchored : bool
        ``False`` when the function fell back to the label-free
        :func:`otm_flower.mixer.fgw_barycenter`.
    fallback_reason : str or None
        Why it fell back (``None`` when anchored).
    anchor_ids : np.ndarray
        The anchor ids used (sorted int64), shape ``(A,)``.
    anchor_points : np.ndarray
        Barycenter point of each anchor, shape ``(A,)``.
    anchor_rows : list of np.ndarray
        Per cloud, shape ``(A,)``: row of each anchor in that cloud, ``-1``
        where the cloud does not hold it.
    anchor_mass : np.ndarray
        Per cloud, the mass ``min(1/N, 1/n_k)`` fixed on each of its anchor
        pairs, shape ``(K,)``.
    landmark_costs : np.ndarray
        Per cloud, the landmark term the solver adds to ``costs[k]``.
    anchored_history : list of float
        Minimised objective ``sum_k w_k (costs[k] + landmark_costs[k])``
        before the first update and after each update.
    profiles : np.ndarray or None
        Soft anchor profiles of the barycenter points ``(N, A)``
        (``landmark="profile"``), else ``None``.
    landmark, structure_metric, structure_scale : str
        Options used (see :func:`anchored_fgw_barycenter`).
    anchor_weight : float
        Weight of the landmark cost.

    Notes
    -----
    With ``structure="free"`` the inherited ``structure_matrix`` is the
    barycenter structure in the normalised units the costs use.
    """

    anchored: bool = True
    fallback_reason: str | None = None
    anchor_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    anchor_points: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    anchor_rows: list[np.ndarray] = field(default_factory=list)
    anchor_mass: np.ndarray = field(default_factory=lambda: np.zeros(0))
    landmark_costs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    anchored_history: list[float] = field(default_factory=list)
    profiles: np.ndarray | None = None
    landmark: Landmark = "profile"
    structure_metric: StructureMetric = "sqeuclidean"
    structure_scale: StructureScale = "cloud"
    anchor_weight: float = 30.0


@dataclass
class AnchoredOptions:
    """The options of :func:`anchored_fgw_barycenter` (documented there)."""

    alpha: float = 0.5
    variant: Variant = "fgw"
    n_iter: int = 5
    seed: int | None = None
    anchor_weight: float | None = None
    landmark: Landmark = "profile"
    profile_neighbors: int = 3
    n_points: int | None = None
    tol: float = 1e-6
    weights: Sequence[float] | None = None
    init: int = 0
    normalize_costs: bool = True
    structure: Structure = "features"
    structure_scale: StructureScale = "cloud"
    metric: StructureMetric = "sqeuclidean"
    anchor_init: bool = True
    min_anchors: int = 2
    min_clouds: int = 2

    def weight(self) -> float:
        """``anchor_weight``, or the landmark's default when ``None``."""
        if self.anchor_weight is None:
            return DEFAULT_WEIGHT.get(str(self.landmark), 1.0)
        return self.anchor_weight

    def check(self, k_count: int) -> None:
        """Raise :class:`MixerError` naming the first invalid option."""
        check_barycenter_options(
            k_count,
            self.variant,
            self.alpha,
            self.n_iter,
            self.tol,
            self.n_points,
            self.init,
            self.structure,
        )
        weight = self.weight()
        if not (np.isfinite(weight) and weight >= 0):
            raise MixerError(f"anchor_weight must be finite and >= 0, got {weight}")
        self._check_choices()
        if int(self.min_clouds) != self.min_clouds or self.min_clouds < 2:
            raise MixerError(
                f"min_clouds must be an integer >= 2, got {self.min_clouds}"
            )
        if int(self.min_anchors) != self.min_anchors or self.min_anchors < 1:
            raise MixerError(
                f"min_anchors must be an integer >= 1, got {self.min_anchors}"
            )

    def _check_choices(self) -> None:
        if self.structure_scale not in SCALES:
            raise MixerError(
                f"structure_scale must be one of {SCALES}, got {self.structure_scale!r}"
            )
        if self.metric not in METRICS:
            raise MixerError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.landmark not in LANDMARKS:
            raise MixerError(
                f"landmark must be one of {LANDMARKS}, got {self.landmark!r}"
            )
        neighbors = self.profile_neighbors
        if int(neighbors) != neighbors or neighbors < 1:
            raise MixerError(
                f"profile_neighbors must be an integer >= 1, got {neighbors}"
            )

    def settings(self) -> AnchoredSettings:
        """What the solver needs: effective alpha and the landmark switches."""
        weight = self.weight()
        return AnchoredSettings(
            variant=self.variant,
            alpha=effective_alpha(self.variant, self.alpha),
            structure=self.structure,
            metric=self.metric,
            per_cloud=self.normalize_costs and self.structure_scale == "cloud",
            normalize_costs=self.normalize_costs,
            anchor_weight=weight,
            use_profile=self.landmark == "profile" and weight > 0.0,
            cross_weight=float(weight) if self.landmark == "gw" else 1.0,
            anchor_init=self.anchor_init,
            profile_neighbors=self.profile_neighbors,
        )


def _fallback(
    clouds: list[np.ndarray], anchors: np.ndarray, init: int, o: AnchoredOptions
) -> AnchoredBarycenterResult:
    """The label-free barycenter as an anchored result, with a warning."""
    reason = (
        f"{anchors.size} anchor id(s) shared by >= {o.min_clouds} clouds "
        f"(need >= {o.min_anchors}); used the label-free fgw_barycenter"
    )
    warnings.warn(reason, UserWarning, stacklevel=4)  # the caller's line
    base = fgw_barycenter(
        clouds,
        n_points=o.n_points,
        alpha=o.alpha,
        variant=o.variant,
        n_iter=o.n_iter,
        tol=o.tol,
        weights=o.weights,
        init=init,
        normalize_costs=o.normalize_costs,
        seed=o.seed,
        solver="exact",
        structure=o.structure,
    )
    return AnchoredBarycenterResult(
        **vars(base),
        anchored=False,
        fallback_reason=reason,
        anchor_ids=anchors,
        anchor_rows=[np.zeros(0, np.int64) for _ in clouds],
        anchor_mass=np.zeros(len(clouds)),
        landmark_costs=np.zeros(len(clouds)),
        anchored_history=list(base.history),
        landmark=o.landmark,
        structure_metric="sqeuclidean",
        structure_scale="common",
        anchor_weight=float(o.weight()),
    )


def _result(
    solver: AnchoredSolver,
    trace: Trace,
    anchors: np.ndarray,
    pts: np.ndarray,
    rows: list[np.ndarray],
    o: AnchoredOptions,
) -> AnchoredBarycenterResult:
    """The anchored result of a finished solve."""
    return build_result(
        solver.solution(trace.history, trace.n_iter),
        weights=solver.weights,
        scale=solver.scale,
        variant=o.variant,
        alpha=solver.alpha,
        solver="exact",
        structure=o.structure,
        result_type=AnchoredBarycenterResult,
        anchored=True,
        fallback_reason=None,
        anchor_ids=anchors,
        anchor_points=pts,
        anchor_rows=rows,
        anchor_mass=np.array([cl.mass for cl in solver.splits]),
        landmark_costs=solver.extra,
        anchored_history=trace.minimised,
        profiles=solver.phi_bar,
        landmark=o.landmark,
        structure_metric=o.metric,
        structure_scale=o.structure_scale if o.normalize_costs else "common",
        anchor_weight=float(o.weight()),
    )


def anchored_barycenter(
    codes: Sequence[ArrayLike], anchor_ids: Sequence[Any], o: AnchoredOptions
) -> AnchoredBarycenterResult:
    """:func:`anchored_fgw_barycenter` with its options in one object."""
    clouds = as_clouds(codes)
    ids = as_ids(anchor_ids, [z.shape[0] for z in clouds])
    o.check(len(clouds))
    init = o.init % len(clouds)
    w = normalized_weights(o.weights, len(clouds))
    anchors, rows = common_anchors(ids, int(o.min_clouds))
    size = None if o.n_points is None else int(o.n_points)
    capacity = clouds[init].shape[0] if size is None else size
    if anchors.size > capacity:  # the support holds at most one point per anchor
        anchors, rows = keep_anchors(anchors, rows, capacity, o.seed)
    if anchors.size < o.min_anchors:
        return _fallback(clouds, anchors, init, o)
    rng = np.random.default_rng(o.seed)
    support, pts, src_cloud, src_row = anchor_support(clouds, rows, init, size, rng)
    solver = AnchoredSolver(
        clouds, support, w, pts, rows, (src_cloud, src_row), o.settings()
    )
    trace = iterate(solver, int(o.n_iter), o.tol)
    return _result(solver, trace, anchors, pts, rows, o)


def anchored_fgw_barycenter(
    codes: Sequence[ArrayLike],
    anchor_ids: Sequence[Any],
    *,
    alpha: float = 0.5,
    variant: Variant = "fgw",
    n_iter: int = 5,
    seed: int | None = None,
    anchor_weight: float | None = None,
    landmark: Landmark = "profile",
    profile_neighbors: int = 3,
    n_points: int | None = None,
    tol: float = 1e-6,
    weights: Sequence[float] | None = None,
    init: int = 0,
    normalize_costs: bool = True,
    structure: Structure = "features",
    structure_scale: StructureScale = "cloud",
    metric: StructureMetric = "sqeuclidean",
    anchor_init: bool = True,
    min_anchors: int = 2,
    min_clouds: int = 2,
) -> AnchoredBarycenterResult:
    """(F)GW barycenter of K code clouds whose plans are pinned at shared ids.

    Parameters
    ----------
    codes : sequence of array-like
        K >= 1 clouds ``(n_k, d)``, as for :func:`otm_flower.mixer.fgw_barycenter`.
    anchor_ids : sequence of array-like of int
        K 1-D integer arrays of length ``n_k``: a shared record id per row
        (``>= 0``, unique within a cloud), ``-1`` for rows without one.
    alpha, variant, n_iter, seed, n_points, tol, weights, init, structure
        As in :func:`otm_flower.mixer.fgw_barycenter`.
    anchor_weight, landmark : float or None, {"profile", "gw"}
        Weight (>= 0; default 30 for ``"profile"``, 1 for ``"gw"``) of the
        soft anchor-profile cost, or of the exact GW cross term.
    profile_neighbors : int
        Bandwidth of the soft profiles: distance to this nearest anchor.
    normalize_costs, structure_scale, metric
        Cost normalisation and distances (module docstring, Costs).
    anchor_init : bool
        First free solves start from the optimal plan of their linear part.
    min_anchors, min_clouds : int
        An id is an anchor when ``min_clouds`` (>= 2) clouds hold it; with
        fewer than ``min_anchors`` anchors the label-free barycenter is used
        (``UserWarning``, ``anchored=False``).

    Returns
    -------
    AnchoredBarycenterResult
        Couplings ``(N, n_k)``, anchor pairs fixed at ``min(1/N, 1/n_k)``.

    Raises
    ------
    MixerError
        On invalid codes, ids or parameters.
    """
    options = AnchoredOptions(
        alpha=alpha,
        variant=variant,
        n_iter=n_iter,
        seed=seed,
        anchor_weight=anchor_weight,
        landmark=landmark,
        profile_neighbors=profile_neighbors,
        n_points=n_points,
        tol=tol,
        weights=weights,
        init=init,
        normalize_costs=normalize_costs,
        structure=structure,
        structure_scale=structure_scale,
        metric=metric,
        anchor_init=anchor_init,
        min_anchors=min_anchors,
        min_clouds=min_clouds,
    )
    return anchored_barycenter(codes, anchor_ids, options)
