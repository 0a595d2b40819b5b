"""Evaluation metrics on an agent's latent codes: clustering and classification."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix


def _checked_pair(labels: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, ...]:
    """``labels`` and ``clusters`` flattened, after checking they match."""
    labels = np.asarray(labels).ravel()
    clusters = np.asarray(clusters).ravel()
    if labels.shape != clusters.shape or labels.size == 0:
        raise ValueError(
            f"labels and clusters must be non-empty and equally long, "
            f"got {labels.shape} and {clusters.shape}"
        )
    return labels, clusters


def clustering_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Clustering accuracy: best one-to-one cluster-to-class matching (Hungarian).

    Parameters
    ----------
    labels, clusters : np.ndarray
        True classes and predicted cluster ids, both 1-D of the same length.
    """
    labels, clusters = _checked_pair(labels, clusters)
    _, y = np.unique(labels, return_inverse=True)
    _, c = np.unique(clusters, return_inverse=True)
    size = max(y.max(), c.max()) + 1
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (c, y), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / labels.size)


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Clustering purity: the share of samples whose cluster's majority class is
    their own class.

    Each cluster counts its most frequent class; several clusters may share one
    class, so purity is at least the clustering accuracy and reaches 1 with one
    cluster per sample.

    Parameters
    ----------
    labels, clusters : np.ndarray
        True classes and predicted cluster ids, both 1-D of the same length.
    """
    labels, clusters = _checked_pair(labels, clusters)
    counts = contingency_matrix(labels, clusters)  # classes x clusters
    return float(counts.max(axis=0).sum() / labels.size)


def clustering_scores(
    codes: np.ndarray, labels: np.ndarray, n_clusters: int, seed: int = 0
) -> dict[str, float]:
    """k-means on codes, scored against labels.

    Returns ``{"acc", "nmi", "ari", "purity"}`` (see :func:`clustering_accuracy`
    and :func:`purity`).
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) != len(labels):
        raise ValueError(
            f"codes must be (n, d) with n = {len(labels)}, got {codes.shape}"
        )
    if not np.isfinite(codes).all():
        raise ValueError("codes contain NaN or Inf; cannot cluster them")
    clusters = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(
        codes
    )
    return partition_scores(labels, clusters)


def partition_scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """``{"acc", "nmi", "ari", "purity"}`` of a found partition against labels."""
    return {
        "acc": clustering_accuracy(labels, clusters),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
        "purity": purity(labels, clusters),
    }


def classification_accuracy(
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    test_codes: np.ndarray,
    test_labels: np.ndarray,
) -> float:
    """Test accuracy of a logistic regression fitted on the training codes."""
    model = LogisticRegression(max_iter=2000)
    model.fit(train_codes, train_labels)
    return float(model.score(test_codes, test_labels))


def coupling_agreement(
    plans: list[np.ndarray], labels: list[np.ndarray]
) -> tuple[float, np.ndarray]:
    """Class agreement of the couplings that barycenter plans induce between agents.

    Plans ``T_j`` (``N x n_j``) and ``T_k`` couple agent j's and agent k's samples
    through the barycenter: ``P_jk = N T_j^T T_k`` (``n_j x n_k``, total mass 1).
    Agreement of the pair is the mass of ``P_jk`` linking samples of the same class
    (chance: ``sum_c p_c^2``, 0.1 for 10 balanced classes). Labels are the
    simulator's: the server never sees them.

    Parameters
    ----------
    plans : list of np.ndarray
        K plans with a common number of rows N.
    labels : list of np.ndarray
        Labels of each agent's coupled samples (``n_k`` each, same order).

    Returns
    -------
    mean : float
        Mean agreement over the K (K-1)/2 agent pairs (NaN when K < 2).
    pairs : np.ndarray
        K x K matrix of pairwise agreements (diagonal NaN).
    """
    n_points = _check_plans(plans, labels)
    classes = np.unique(np.concatenate([np.asarray(y) for y in labels]))
    # mass each barycenter point carries, per class, for each agent: N x C
    masses = [
        np.stack([plan[:, np.asarray(y) == c].sum(axis=1) for c in classes], axis=1)
        for plan, y in zip(plans, labels, strict=True)
    ]
    k = len(plans)
    pairs = np.full((k, k), np.nan)
    n = next(iter(n_points)) if n_points else 0
    for i in range(k):
        for j in range(i + 1, k):
            pairs[i, j] = pairs[j, i] = n * float((masses[i] * masses[j]).sum())
    mean = float(np.nanmean(pairs)) if k > 1 else float("nan")
    return mean, pairs


def _check_plans(plans: list[np.ndarray], labels: list[np.ndarray]) -> set[int]:
    """The plans' row counts (one value, or none), after checking the shapes."""
    if len(plans) != len(labels):
        raise ValueError(f"{len(plans)} plans but {len(labels)} label arrays")
    n_points = {plan.shape[0] for plan in plans}
    if len(n_points) > 1:
        raise ValueError(f"plans have different numbers of rows: {sorted(n_points)}")
    for k, (plan, y) in enumerate(zip(plans, labels, strict=True)):
        if plan.shape[1] != len(y):
            raise ValueError(
                f"plan {k} couples {plan.shape[1]} samples, got {len(y)} labels"
            )
    return n_points
