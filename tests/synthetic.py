"""Small synthetic multi-view data sets for fast end-to-end tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from otm_flower.data import MultiViewDataset, save_npz


def clustered_views_npz(
    path: Path,
    *,
    n: int,
    k: int,
    dims: Sequence[int],
    spread: float,
    seed: int,
    name: str,
) -> Path:
    """Save ``len(dims)`` views of ``k`` Gaussian clusters (centres ~ ``spread`` x
    N(0, 1), unit noise; sample ``i`` has class ``i % k``) to ``path``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    views = [
        spread * rng.normal(size=(k, dim))[labels] + rng.normal(size=(n, dim))
        for dim in dims
    ]
    names = [chr(ord("a") + v) for v in range(len(dims))]
    data = MultiViewDataset(name=name, views=views, labels=labels, view_names=names)
    return save_npz(data, path)


def cluster_and_noise(n: int, k: int) -> MultiViewDataset:
    """View 0: well-separated class clusters (5-d); view 1: label-free noise (4-d)."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % k
    centers = 8.0 * rng.normal(size=(k, 5))
    return MultiViewDataset(
        name="synthetic",
        views=[centers[labels] + rng.normal(size=(n, 5)), rng.normal(size=(n, 4))],
        labels=labels,
        view_names=["clusters", "noise"],
    )
