"""The clustering term (GW loss toward k equal clusters) on constructed codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from otm_flower.agent import build_trainer, load_agents
from otm_flower.cluster_loss import block_graph, cluster_gw_loss
from otm_flower.config import ConfigError, RunConfig
from otm_flower.data import save_npz
from otm_flower.training import LocalTrainer, LossWeights

from .synthetic import cluster_and_noise


def _simplex_clusters(k: int, per_cluster: int, noise: float) -> torch.Tensor:
    """``k`` clusters around the one-hot vertices of a simplex (equally spaced)."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(k).repeat_interleave(per_cluster, dim=0)
    return centres + noise * torch.randn(centres.shape, generator=gen)


def test_block_graph_has_unit_mean_and_zero_diagonal() -> None:
    graph = block_graph(4)
    assert torch.allclose(torch.diagonal(graph), torch.zeros(4))
    assert float(graph.mean()) == pytest.approx(1.0)


def test_loss_is_near_zero_on_ideal_clusters_and_large_on_a_gaussian_cloud() -> None:
    ideal = cluster_gw_loss(_simplex_clusters(5, 20, 1e-3), 5)
    cloud = cluster_gw_loss(
        torch.randn(100, 5, generator=torch.Generator().manual_seed(1)), 5
    )
    assert float(ideal) < 1e-3
    assert float(cloud) > 0.1


def test_loss_is_scale_free() -> None:
    codes = torch.randn(60, 4, generator=torch.Generator().manual_seed(2))
    assert float(cluster_gw_loss(3.0 * codes, 3)) == pytest.approx(
        float(cluster_gw_loss(codes, 3)), rel=1e-4
    )


def test_gradient_descent_on_the_loss_forms_k_clusters() -> None:
    codes = torch.randn(90, 6, generator=torch.Generator().manual_seed(3))
    codes.requires_grad_(True)
    optimiser = torch.optim.Adam([codes], lr=0.05)
    first = float(cluster_gw_loss(codes.detach(), 3))
    for _ in range(150):
        optimiser.zero_grad()
        loss = cluster_gw_loss(codes, 3)
        loss.backward()
        optimiser.step()
    assert float(loss) < 0.2 * first
    points = codes.detach().numpy()
    labels = KMeans(3, n_init=4, random_state=0).fit_predict(points)
    assert silhouette_score(points, labels) > 0.7
    assert np.bincount(labels).min() >= 25  # equal blocks: no cluster collapses


@pytest.mark.parametrize(
    ("shape", "k", "message"),
    [((10, 3), 1, "n_clusters >= 2"), ((4, 3), 4, "b > n_clusters"), ((8,), 2, "b >")],
)
def test_bad_input_is_named(shape: tuple[int, ...], k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cluster_gw_loss(torch.zeros(shape), k)


def test_trainer_reports_the_term_and_needs_k() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype(np.float32)
    trainer = LocalTrainer(
        x,
        latent_dim=4,
        hidden_dim=16,
        batch_size=32,
        weights=LossWeights(mmd=0.0, cluster=1.0),
        num_clusters=3,
    )
    losses = trainer.train(1)
    assert losses["cluster"] > 0
    with pytest.raises(ValueError, match="num_clusters >= 2"):
        LocalTrainer(x, weights=LossWeights(cluster=1.0))


def test_clustering_configs_train_with_the_term_classification_ignores_it(
    tmp_path: Path,
) -> None:
    path = save_npz(cluster_and_noise(60, 3), tmp_path / "d.npz")
    for task, expected in (("clustering", 3.0), ("classification", 0.0)):
        config = RunConfig(dataset=str(path), task=task, weight_cluster=3.0)
        agents, n_classes = load_agents(config)
        trainer = build_trainer(config, agents[0], n_classes)
        assert trainer.weights.cluster == expected
        assert trainer.num_clusters == n_classes == 3
    with pytest.raises(ConfigError, match="weight-cluster must be >= 0"):
        RunConfig(weight_cluster=-1.0)
