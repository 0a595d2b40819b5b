"""Math shared by the barycenter solvers: cost scales, support updates, objective.

All functions work on numpy arrays; the fast solver's torch counterparts live
in :mod:`otm_flower.barycenter.lowrank`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

__all__ = [
    "barycentric_update",
    "cloud_maxima",
    "common_scale",
    "fgw_objective",
    "free_structure_update",
    "init_support",
    "sqdist",
    "valid_scale",
]


def valid_scale(scale: float) -> float:
    """``scale`` when finite and positive, else 1 (degenerate clouds)."""
    return scale if np.isfinite(scale) and scale > 0.0 else 1.0


def common_scale(maxima: Iterable[float]) -> float:
    """The common cost divisor ``s = mean_k max(C_k)`` from the K maxima."""
    return valid_scale(float(np.mean(list(maxima))))


def cloud_maxima(clouds: Sequence[np.ndarray], device: str) -> list[float]:
    """``max_ij |z_i - z_j|^2`` of every cloud, in torch.

    Computed on ``device`` in float64 row blocks, without forming the
    ``n x n`` structure matrices on the host.
    """
    maxima = []
    for z in clouds:
        zt = torch.as_tensor(z, dtype=torch.float64, device=device)
        sq = (zt * zt).sum(1)
        block = max(1, 2**22 // zt.shape[0])
        best = 0.0
        for start in range(0, zt.shape[0], block):
            rows = zt[start : start + block]
            d = sq[start : start + block, None] + sq[None, :] - 2.0 * rows @ zt.T
            best = max(best, float(d.max()))
        maxima.append(max(best, 0.0))
    return maxima


def init_support(
    z0: np.ndarray, n_points: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Initial support from cloud ``z0``.

    All of ``z0`` when ``n_points`` is ``None`` or its size; fewer: a seeded
    subsample without replacement; more: every row once plus resampled rows
    with a tiny jitter.
    """
    n0 = z0.shape[0]
    if n_points is None or n_points == n0:
        return z0.copy()
    if n_points < n0:
        idx = np.sort(rng.choice(n0, size=n_points, replace=False))
        return z0[idx]
    extra = z0[rng.integers(0, n0, size=n_points - n0)]
    spread = float(np.std(z0))
    jitter = 1e-6 * (spread if spread > 0 else 1.0)
    extra = extra + jitter * rng.standard_normal(extra.shape)
    return np.concatenate([z0, extra], axis=0)


def barycentric_update(
    weights: np.ndarray, plans: Sequence[np.ndarray], values: Sequence[np.ndarray]
) -> np.ndarray:
    """Weighted normalised barycentric projection ``N sum_k w_k T_k X_k``.

    With ``values`` the clouds this is the support update of every solver.
    """
    n_bary = plans[0].shape[0]
    return n_bary * sum(
        wk * (t @ x) for wk, t, x in zip(weights, plans, values, strict=True)
    )


def free_structure_update(
    weights: np.ndarray, plans: Sequence[np.ndarray], cks: Sequence[np.ndarray]
) -> np.ndarray:
    """Minimising barycenter structure ``N^2 sum_k w_k T_k C_k T_k^T``."""
    n_bary = plans[0].shape[0]
    return n_bary**2 * sum(
        wk * (t @ ck @ t.T) for wk, t, ck in zip(weights, plans, cks, strict=True)
    )


def sqdist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows, clipped at 0."""
    out = (x**2).sum(1)[:, None] + (y**2).sum(1)[None, :] - 2.0 * x @ y.T
    return np.maximum(out, 0.0)


def fgw_objective(
    x: np.ndarray,
    plans: Sequence[np.ndarray],
    clouds: Sequence[np.ndarray],
    *,
    alpha: float,
    c: np.ndarray | None = None,
    weights: Sequence[float] | None = None,
    scale: float = 1.0,
) -> tuple[float, np.ndarray]:
    """FGW barycenter objective of given plans, computed explicitly.

    Parameters
    ----------
    x : np.ndarray
        Barycenter features ``(N, d)``.
    plans : sequence of np.ndarray
        ``K`` nonnegative plans ``(N, n_k)``.
    clouds : sequence of np.ndarray
        ``K`` clouds ``(n_k, d)`` in the same coordinates as ``x``.
    alpha : float
        Structure weight in ``[0, 1]``.
    c : np.ndarray, optional
        Barycenter structure ``(N, N)`` in the same units as squared
        distances of ``x``. Default ``D(x, x)`` (squared Euclidean), as the
        mixer uses; POT's barycenter returns its own ``C``.
    weights : sequence of float, optional
        Agent weights; default uniform ``1/K``.
    scale : float
        Divisor applied to every cost matrix (``M``, ``C`` and ``C_k``).

    Returns
    -------
    objective : float
        ``sum_k w_k cost_k``.
    costs : np.ndarray
        ``cost_k = (1 - alpha) <M_k, T_k> + alpha sum_ijkl (C_ik -
        C^k_jl)^2 T_ij T_kl`` with ``M_k = D(x, Z_k)`` and ``C_k =
        D(Z_k, Z_k)``, the quantity POT's ``fused_gromov_wasserstein2``
        reports for a coupling (here with the plan's own marginals, so it is
        exact for any nonnegative plan). Dense ``O(N n_k (N + n_k))`` per
        agent.
    """
    x = np.asarray(x, dtype=np.float64)
    k_count = len(plans)
    if len(clouds) != k_count:
        raise ValueError(f"got {k_count} plans but {len(clouds)} clouds")
    w = np.full(k_count, 1.0 / k_count) if weights is None else np.asarray(weights)
    cb = sqdist(x, x) if c is None else np.asarray(c, dtype=np.float64)
    cb = cb / scale
    costs = np.empty(k_count)
    for k, (t, z) in enumerate(zip(plans, clouds, strict=True)):
        t = np.asarray(t, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        m = sqdist(x, z) / scale
        ck = sqdist(z, z) / scale
        pt, qt = t.sum(1), t.sum(0)
        gw = pt @ (cb**2) @ pt + qt @ (ck**2) @ qt - 2.0 * np.vdot(cb @ t @ ck, t)
        costs[k] = (1.0 - alpha) * np.vdot(m, t) + alpha * gw
    return float(w @ costs), costs
