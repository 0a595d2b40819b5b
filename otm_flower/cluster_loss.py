"""The clustering term: a GW loss pulling an agent's own codes toward k equal blocks.

The OTM reference code adds, for clustering, a Gromov-Wasserstein loss between the
codes' distance matrix and an "ideal graph" of ``k`` equal clusters (distance 0
inside a cluster, 1 across). Here it is a term on one agent's own codes only (no
other agent's data is involved), computed with POT's differentiable
``ot.gromov.gromov_wasserstein2`` on the torch backend.
"""

from __future__ import annotations

import ot
import torch


def block_graph(n_clusters: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Distance matrix of ``n_clusters`` equal, equally spaced clusters.

    Zero on the diagonal, ``k / (k - 1)`` elsewhere, so that its mean under uniform
    weights is 1 (the scale of :func:`normalised_sq_distances`).
    """
    if n_clusters < 2:
        raise ValueError(f"the clustering term needs n_clusters >= 2, got {n_clusters}")
    k = n_clusters
    return (1.0 - torch.eye(k, dtype=dtype)) * (k / (k - 1))


def normalised_sq_distances(codes: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between rows, divided by their mean (scale-free)."""
    distances = torch.cdist(codes, codes) ** 2
    return distances / distances.mean().clamp_min(1e-12)


def cluster_gw_loss(
    codes: torch.Tensor, n_clusters: int, max_iter: int = 50
) -> torch.Tensor:
    """GW discrepancy between a batch of codes and the ``n_clusters``-block graph.

    Parameters
    ----------
    codes : torch.Tensor
        A minibatch of one agent's codes (b x d), b > n_clusters; differentiable.
    n_clusters : int
        Number of clusters k (the task's class count).
    max_iter : int
        Conditional-gradient iterations of POT's GW solver.

    Returns
    -------
    torch.Tensor
        Scalar, 0 when the codes form k equal, equally spaced point clusters; its
        gradient (envelope theorem, supplied by POT) tightens clusters and spreads
        them apart. Scale-free: multiplying the codes changes nothing.
    """
    if codes.ndim != 2 or len(codes) <= n_clusters:
        raise ValueError(
            f"codes must be (b > n_clusters={n_clusters}, d), got {tuple(codes.shape)}"
        )
    ideal = block_graph(n_clusters, codes.dtype)
    p = torch.full((len(codes),), 1.0 / len(codes), dtype=codes.dtype)
    q = torch.full((n_clusters,), 1.0 / n_clusters, dtype=codes.dtype)
    return ot.gromov.gromov_wasserstein2(
        normalised_sq_distances(codes), ideal, p, q, max_iter=max_iter
    )
