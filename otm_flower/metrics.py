"""Evaluation metrics on an agent's latent codes: clustering and classification."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def clustering_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Clustering accuracy: best one-to-one cluster-to-class matching (Hungarian).

    Parameters
    ----------
    labels, clusters : np.ndarray
        True classes and predicted cluster ids, both 1-D of the same length.
    """
    labels = np.asarray(labels).ravel()
    clusters = np.asarray(clusters).ravel()
    if labels.shape != clusters.shape or labels.size == 0:
        raise ValueError(
            f"labels and clusters must be non-empty and equally long, "
            f"got {labels.shape} and {clusters.shape}"
        )
    _, y = np.unique(labels, return_inverse=True)
    _, c = np.unique(clusters, return_inverse=True)
    size = max(y.max(), c.max()) + 1
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (c, y), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / labels.size)


def clustering_scores(
    codes: np.ndarray, labels: np.ndarray, n_clusters: int, seed: int = 0
) -> dict[str, float]:
    """k-means on codes, scored against labels: ``{"acc", "nmi", "ari"}``."""
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
    return {
        "acc": clustering_accuracy(labels, clusters),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
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
