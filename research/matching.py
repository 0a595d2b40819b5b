"""Label-free matching of two agents' clusters by exhaustive relabelling search.

A diagnostic of label-free matching: can any label-free solver find a semantic
coupling between two unaligned views, or does the (Gromov-Wasserstein)
objective itself prefer a non-semantic one? At the level
of clusters the question can be settled exactly. Each cloud is clustered by
k-means into ``K`` clusters; cluster ``a`` of cloud 1 is matched to cluster
``perm[a]`` of cloud 2, and the relabelling's GW objective is

    sum_{a, b} (C1[a, b] - C2[perm[a], perm[b]])^2,

with ``C`` the centroids' distance (or Gaussian-kernel) matrices, each divided
by its mean. For ``K <= 10`` all ``K!`` relabellings are scored (10! = 3.6
million, a few seconds), so the best one is the global optimum, not a local
one. Given labels (the simulator's, never the server's), the *semantic*
relabelling (each cluster to the cluster with the most similar class mix) and
its rank among all relabellings say how far the objective is from preferring
it: rank 0 means the objective's optimum is the semantic match.

Nothing here uses Flower; labels are only used by the diagnostics
:func:`semantic_relabelling` and :func:`relabelling_agreement`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans

__all__ = [
    "MAX_EXHAUSTIVE_CLUSTERS",
    "RelabellingSearch",
    "plan_agreement",
    "relabelling_agreement",
    "relabelling_coupling",
    "search_relabellings",
    "semantic_relabelling",
]

MAX_EXHAUSTIVE_CLUSTERS = 10
"""Largest K whose K! relabellings :func:`search_relabellings` enumerates."""

CentroidStructure = Literal["sqeuclidean", "euclidean", "kernel"]
_STRUCTURES = ("sqeuclidean", "euclidean", "kernel")


@dataclass(frozen=True)
class RelabellingSearch:
    """Result of :func:`search_relabellings`.

    Attributes
    ----------
    clusters : tuple of np.ndarray
        k-means cluster (``0..K-1``) of every row of cloud 1 and of cloud 2.
    structures : tuple of np.ndarray
        The two ``K x K`` centroid structure matrices compared.
    best : np.ndarray
        The optimal relabelling: cluster ``a`` of cloud 1 -> ``best[a]``.
    objectives : np.ndarray
        Objective of every relabelling (``K!`` values, any order).
    """

    clusters: tuple[np.ndarray, np.ndarray]
    structures: tuple[np.ndarray, np.ndarray]
    best: np.ndarray
    objectives: np.ndarray

    @property
    def n_clusters(self) -> int:
        """Number of clusters K."""
        return int(self.best.size)

    def objective(self, perm: np.ndarray) -> float:
        """GW objective of one relabelling ``perm`` (cluster a -> perm[a])."""
        perm = _check_perm(perm, self.n_clusters)
        c1, c2 = self.structures
        return float(((c1 - c2[np.ix_(perm, perm)]) ** 2).sum())

    def rank(self, perm: np.ndarray) -> int:
        """How many relabellings have a strictly lower objective than ``perm``."""
        return int((self.objectives < self.objective(perm) - 1e-12).sum())


def _check_perm(perm: np.ndarray, k: int) -> np.ndarray:
    perm = np.asarray(perm)
    if perm.shape != (k,) or sorted(perm.tolist()) != list(range(k)):
        raise ValueError(f"expected a permutation of 0..{k - 1}, got {perm.tolist()}")
    return perm.astype(np.int64)


def _check_cloud(z: np.ndarray, name: str, k: int) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows x features), got shape {z.shape}")
    if z.shape[0] < k:
        raise ValueError(f"{name} has {z.shape[0]} rows, fewer than {k} clusters")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contains NaN or Inf")
    return z


def _centroid_structure(centroids: np.ndarray, kind: CentroidStructure) -> np.ndarray:
    d = cdist(centroids, centroids, "sqeuclidean")
    if kind == "euclidean":
        d = np.sqrt(d)
    elif kind == "kernel":
        off = d[~np.eye(len(d), dtype=bool)]
        d = np.exp(-d / max(float(np.median(off)), 1e-12))
    mean = float(d.mean())
    return d / mean if mean > 0 else d


def _score_relabellings(
    c1: np.ndarray, c2: np.ndarray, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every relabelling of ``K`` clusters and its objective against ``c1``/``c2``."""
    k = len(c1)
    perms = np.fromiter(
        itertools.chain.from_iterable(itertools.permutations(range(k))),
        dtype=np.int8,
        count=math.factorial(k) * k,
    ).reshape(-1, k)
    objectives = np.empty(len(perms))
    for start in range(0, len(perms), max(int(chunk), 1)):
        p = perms[start : start + chunk]
        moved = c2[p[:, :, None], p[:, None, :]]
        objectives[start : start + len(p)] = ((c1[None] - moved) ** 2).sum(axis=(1, 2))
    return perms, objectives


def search_relabellings(
    z1: np.ndarray,
    z2: np.ndarray,
    n_clusters: int,
    *,
    structure: CentroidStructure = "sqeuclidean",
    seed: int = 0,
    chunk: int = 200_000,
) -> RelabellingSearch:
    """Score every relabelling between two clouds' k-means clusters.

    Parameters
    ----------
    z1, z2 : np.ndarray
        The two clouds ``(n1, d1)`` and ``(n2, d2)`` (dimensions may differ).
    n_clusters : int
        K, at most :data:`MAX_EXHAUSTIVE_CLUSTERS`.
    structure : {"sqeuclidean", "euclidean", "kernel"}
        Centroid structure matrices: squared or plain distances, or a
        Gaussian kernel ``exp(-D / median(D))``; each divided by its mean.
    seed : int
        Seed of k-means.
    chunk : int
        Relabellings scored per vectorised step (memory ``~ chunk * K^2``).

    Returns
    -------
    RelabellingSearch
    """
    if not 2 <= n_clusters <= MAX_EXHAUSTIVE_CLUSTERS:
        raise ValueError(
            f"n_clusters must be in 2..{MAX_EXHAUSTIVE_CLUSTERS} for an exhaustive "
            f"search ({n_clusters}! relabellings otherwise), got {n_clusters}"
        )
    if structure not in _STRUCTURES:
        raise ValueError(f"structure must be one of {_STRUCTURES}, got {structure!r}")
    clouds = [_check_cloud(z, f"z{i + 1}", n_clusters) for i, z in enumerate((z1, z2))]
    fits = [KMeans(n_clusters, n_init=10, random_state=seed).fit(z) for z in clouds]
    c1, c2 = (_centroid_structure(f.cluster_centers_, structure) for f in fits)
    perms, objectives = _score_relabellings(c1, c2, chunk)
    best = perms[int(objectives.argmin())].astype(np.int64)
    return RelabellingSearch(
        clusters=(fits[0].labels_.astype(np.int64), fits[1].labels_.astype(np.int64)),
        structures=(c1, c2),
        best=best,
        objectives=objectives,
    )


def relabelling_coupling(search: RelabellingSearch, perm: np.ndarray) -> np.ndarray:
    """The row-level coupling a relabelling induces (``n1 x n2``, total mass 1).

    Mass ``1/K`` per matched cluster pair, spread uniformly over its rows
    (empty clusters carry none; the plan is renormalised).
    """
    perm = _check_perm(perm, search.n_clusters)
    l1, l2 = search.clusters
    k = search.n_clusters
    m1 = np.eye(k)[l1]
    m2 = np.eye(k)[l2]
    m1 /= np.maximum(m1.sum(axis=0), 1.0)
    m2 /= np.maximum(m2.sum(axis=0), 1.0)
    plan = m1 @ m2[:, perm].T
    return plan / plan.sum()


def plan_agreement(plan: np.ndarray, y1: np.ndarray, y2: np.ndarray) -> float:
    """Share of a two-cloud coupling's mass (``n1 x n2``) linking same-class rows."""
    y1, y2 = np.asarray(y1), np.asarray(y2)
    if plan.shape != (y1.size, y2.size):
        raise ValueError(f"labels {y1.shape}, {y2.shape} do not fit plan {plan.shape}")
    return float((plan * (y1[:, None] == y2[None, :])).sum() / plan.sum())


def relabelling_agreement(
    search: RelabellingSearch, perm: np.ndarray, y1: np.ndarray, y2: np.ndarray
) -> float:
    """Class agreement (same-class mass) of :func:`relabelling_coupling`."""
    return plan_agreement(relabelling_coupling(search, perm), y1, y2)


def semantic_relabelling(
    search: RelabellingSearch, y1: np.ndarray, y2: np.ndarray
) -> np.ndarray:
    """The relabelling with the most same-class mass (uses labels; diagnostic).

    Clusters are matched by the inner product of their class mixes (Hungarian).
    """
    k = search.n_clusters
    y1, y2 = np.asarray(y1), np.asarray(y2)
    classes = np.unique(np.concatenate([y1, y2]))

    def mixes(labels: np.ndarray, y: np.ndarray) -> np.ndarray:
        counts = np.stack([(y[labels == a, None] == classes).sum(0) for a in range(k)])
        return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)

    l1, l2 = search.clusters
    rows, cols = linear_sum_assignment(-(mixes(l1, y1) @ mixes(l2, y2).T))
    perm = np.empty(k, dtype=np.int64)
    perm[rows] = cols
    return perm
