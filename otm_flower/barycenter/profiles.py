"""Distances of the anchored solver: structure matrices and soft anchor profiles."""

from __future__ import annotations

from typing import Literal

import numpy as np
import ot

StructureMetric = Literal["sqeuclidean", "euclidean", "cosine"]

__all__ = [
    "StructureMetric",
    "distances",
    "mean_unit",
    "profile_view",
    "soft_anchor_profiles",
    "structure_matrix",
]


def distances(
    x: np.ndarray, y: np.ndarray, metric: StructureMetric, center: np.ndarray
) -> np.ndarray:
    """Distances between rows; ``center`` (the cloud mean) is used by cosine."""
    if metric == "cosine":
        xc, yc = x - center, y - center
        xn = np.linalg.norm(xc, axis=1, keepdims=True)
        yn = np.linalg.norm(yc, axis=1, keepdims=True)
        xc = xc / np.where(xn > 0, xn, 1.0)
        yc = yc / np.where(yn > 0, yn, 1.0)
        return np.asarray(np.clip(1.0 - xc @ yc.T, 0.0, 2.0))
    d = ot.dist(x, y)
    np.maximum(d, 0.0, out=d)
    if metric == "euclidean":
        np.sqrt(d, out=d)
    return d


def structure_matrix(z: np.ndarray, metric: StructureMetric) -> np.ndarray:
    """Structure matrix ``D(z, z)`` of one cloud in ``metric``, zero diagonal."""
    c = distances(z, z, metric, z.mean(axis=0))
    np.fill_diagonal(c, 0.0)
    return c


def mean_unit(c: np.ndarray) -> float:
    """Mean of ``c`` as its divisor (1 when zero or not finite)."""
    s = float(c.mean())
    return s if np.isfinite(s) and s > 0 else 1.0


def soft_anchor_profiles(
    codes: np.ndarray,
    anchor_rows: np.ndarray,
    *,
    neighbors: int = 3,
    metric: StructureMetric = "sqeuclidean",
) -> np.ndarray:
    """Soft anchor profile of every row of one cloud.

    Parameters
    ----------
    codes : np.ndarray
        One cloud ``(n, d)``.
    anchor_rows : np.ndarray
        Rows of the anchors in this cloud, shape ``(A,)``, ``A >= 1``.
    neighbors : int
        The bandwidth of row ``j`` is its distance to its ``neighbors``-th
        nearest anchor (positive distances only; capped at ``A``).
    metric : {"sqeuclidean", "euclidean", "cosine"}
        Distance used (cosine: ``1 - cos`` of the codes centred on the cloud
        mean).

    Returns
    -------
    np.ndarray
        ``(n, A)``, rows on the simplex: ``softmax_a(-(D[j, a] - min_a D[j, a])
        / tau_j)``. Scale free: multiplying the codes by a constant leaves it
        unchanged.
    """
    codes = np.asarray(codes, dtype=np.float64)
    d = distances(codes, codes[anchor_rows], metric, codes.mean(axis=0))
    dmin = d.min(axis=1, keepdims=True)
    pos = np.sort(np.where(d > 0.0, d, np.inf), axis=1)
    n_pos = np.isfinite(pos).sum(axis=1)
    kth = np.clip(np.minimum(int(neighbors), n_pos), 1, d.shape[1]) - 1
    tau = pos[np.arange(d.shape[0]), kth][:, None]
    tau = np.where(np.isfinite(tau) & (tau > 0), tau, 1.0)
    e = np.exp(-(d - dmin) / tau)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def profile_view(phi_bar: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Barycenter profiles restricted to one cloud's anchors, renormalised."""
    sub = phi_bar[:, held]
    tot = sub.sum(axis=1, keepdims=True)
    uniform = np.full_like(sub, 1.0 / max(sub.shape[1], 1))
    return np.where(tot > 0, sub / np.where(tot > 0, tot, 1.0), uniform)
