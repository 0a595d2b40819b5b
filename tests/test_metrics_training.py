"""Metrics and the local trainer (pure PyTorch / scikit-learn, no Flower)."""

from __future__ import annotations

import numpy as np
import pytest

from otm_flower.metrics import (
    classification_accuracy,
    clustering_accuracy,
    clustering_scores,
    purity,
)
from otm_flower.models import mmd_imq
from otm_flower.training import LocalTrainer, LossWeights, MixTargets


def test_clustering_accuracy_is_invariant_to_cluster_names() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert clustering_accuracy(labels, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    assert clustering_accuracy(labels, np.array([0, 0, 0, 1, 1, 1])) == pytest.approx(
        4 / 6
    )
    with pytest.raises(ValueError, match="equally long"):
        clustering_accuracy(labels, labels[:3])


def test_purity_of_a_constructed_case() -> None:
    # Three clusters of 6, 6 and 5 samples; majority classes 5, 4 and 3 of them:
    # purity 12/17 (the textbook example of Manning et al., Introduction to IR).
    labels = np.array([0] * 5 + [1] + [0] + [1] * 4 + [2] + [0] * 2 + [2] * 3)
    clusters = np.repeat([7, 8, 9], [6, 6, 5])
    assert purity(labels, clusters) == pytest.approx(12 / 17)
    # Two clusters with the same majority class: purity 1, ACC (one-to-one) 4/6.
    labels = np.array([0, 0, 0, 0, 1, 1])
    clusters = np.array([0, 0, 1, 1, 2, 2])
    assert purity(labels, clusters) == 1.0
    assert clustering_accuracy(labels, clusters) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="equally long"):
        purity(labels, clusters[:2])


def blobs(n: int = 300, k: int = 3, d: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n // k)
    centers = rng.normal(scale=6.0, size=(k, d))
    x = centers[y] + rng.normal(size=(len(y), d))
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32), y


def test_scores_on_separable_blobs() -> None:
    x, y = blobs()
    scores = clustering_scores(x, y, n_clusters=3)
    assert scores["acc"] > 0.95 and scores["nmi"] > 0.9 and scores["ari"] > 0.9
    assert scores["acc"] <= scores["purity"] <= 1.0
    assert classification_accuracy(x[::2], y[::2], x[1::2], y[1::2]) > 0.95
    with pytest.raises(ValueError, match="NaN"):
        clustering_scores(np.full_like(x, np.nan), y, 3)


def test_mmd_separates_matching_and_shifted_distributions() -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)
    assert abs(float(mmd_imq(a, b))) < 0.02
    assert float(mmd_imq(a + 3.0, b)) > 0.1


def test_training_lowers_reconstruction_and_state_round_trips() -> None:
    x, _ = blobs()
    trainer = LocalTrainer(
        x, latent_dim=4, hidden_dim=32, learning_rate=1e-2, batch_size=32, seed=1
    )
    first = trainer.train(1)["rec"]
    later = trainer.train(30)["rec"]
    assert later < 0.5 * first
    saved = trainer.state_bytes()
    codes = trainer.encode()
    clone = LocalTrainer(
        x, latent_dim=4, hidden_dim=32, learning_rate=1e-2, batch_size=64, seed=99
    )
    clone.load_state_bytes(saved)
    np.testing.assert_allclose(clone.encode(), codes, rtol=1e-6)


def test_mix_term_pulls_the_decoder_toward_the_targets() -> None:
    x, _ = blobs()
    weights = LossWeights(rec=0.0, mix=1.0, reg=1.0, mmd=0.0)
    trainer = LocalTrainer(
        x,
        latent_dim=4,
        hidden_dim=32,
        learning_rate=1e-2,
        batch_size=32,
        weights=weights,
        seed=2,
    )
    rows = trainer.sample_rows(50)
    rng = np.random.default_rng(0)
    goal = rng.normal(size=(50, 4)).astype(np.float32)
    targets = MixTargets(rows, goal, goal)
    start = trainer.train(1, targets)
    trainer.train(30, targets)
    end = trainer.train(1, targets)
    assert end["mix"] < 0.5 * start["mix"] and end["reg"] < 0.5 * start["reg"]


def test_terms_off_skip_the_mix_pass_but_keep_the_exchange_stream() -> None:
    """With weight-mix and weight-reg 0 the mixed codes cost no decoder pass: the
    whole model (BatchNorm statistics included) ends as with no targets, and the
    exchange stream (which rows are uploaded next) as with the terms on."""
    x, _ = blobs()

    def trainer(mix: float) -> LocalTrainer:
        weights = LossWeights(mix=mix, reg=0.0, mmd=0.0)
        return LocalTrainer(
            x, latent_dim=4, hidden_dim=32, batch_size=32, weights=weights, seed=4
        )

    off, alone, on = trainer(0.0), trainer(0.0), trainer(1.0)
    rows = off.sample_rows(50)
    assert (alone.sample_rows(50) == rows).all() and (on.sample_rows(50) == rows).all()
    goal = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    targets = MixTargets(rows, goal, goal)
    assert "mix" not in off.train(2, targets) and "mix" in on.train(2, targets)
    alone.train(2)
    for name, value in off.model.state_dict().items():
        assert (value == alone.model.state_dict()[name]).all(), name
    assert (off.sample_rows(50) == on.sample_rows(50)).all()


def test_classification_head_uses_labels() -> None:
    x, y = blobs()
    trainer = LocalTrainer(
        x,
        y,
        latent_dim=4,
        hidden_dim=32,
        learning_rate=1e-2,
        num_classes=3,
        batch_size=32,
        seed=3,
    )
    first = trainer.train(1)["task"]
    assert trainer.train(20)["task"] < 0.5 * first
    import torch

    with torch.no_grad():
        trainer.model.eval()
        logits = trainer.model.head(trainer.model.encode(torch.as_tensor(x)))
    assert (logits.argmax(1).numpy() == y).mean() > 0.9
    with pytest.raises(ValueError, match="y_train"):
        LocalTrainer(x, None, num_classes=3)


def test_coupling_agreement_known_cases() -> None:
    from otm_flower.metrics import coupling_agreement
    from otm_flower.mixer import fgw_barycenter

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    centers = np.array([[0, 0], [6, 0], [0, 9], [15, 15]], dtype=float)
    cloud = centers[y] + 0.3 * rng.normal(size=(40, 2))
    theta = 0.7
    rotation = np.array(
        [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    )
    perm = rng.permutation(40)
    # two agents with rotated copies of one clustered cloud, rows in another order
    result = fgw_barycenter([cloud, (cloud @ rotation.T)[perm]], variant="gw", seed=0)
    mean, pairs = coupling_agreement(result.plans, [y, y[perm]])
    assert mean > 0.9 and pairs.shape == (2, 2)
    # same couplings scored against shuffled labels: near chance (0.25)
    shuffled, _ = coupling_agreement(result.plans, [y, rng.permutation(y)])
    assert abs(shuffled - 0.25) < 0.15
    with pytest.raises(ValueError, match="labels"):
        coupling_agreement(result.plans, [y, y[:5]])


def test_run_folder_and_history_plot(tmp_path) -> None:
    from otm_flower.results import (
        build_result,
        format_summary,
        history_figure,
        plot_history,
        run_folder,
    )

    config = {
        "dataset": "handwritten",
        "method": "otm",
        "task": "clustering",
        "seed": 3,
        "num-server-rounds": 3,
    }
    folder = run_folder(tmp_path, config, run_id=42)
    assert folder == tmp_path.resolve() / "handwritten-otm-clustering-seed3-run42"
    metrics = {
        r: {
            0: {"acc": 0.5 + r / 10, "nmi": 0.4, "ari": 0.3, "purity": 0.6 + r / 10},
            1: {"acc": 0.5, "nmi": 0.4, "ari": 0.3, "purity": 0.5},
        }
        for r in (1, 2, 3)
    }
    agreement = [{"round": r, "mean": 0.1 + 0.2 * r} for r in (2, 3)]
    result = build_result(
        config,
        metrics,
        wall_s=1.0,
        bytes_up=0,
        bytes_down=0,
        extra={"coupling_agreement_history": agreement},
    )
    assert [h["acc"] for h in result["history"]] == pytest.approx([0.55, 0.6, 0.65])
    assert [a["purity"] for a in result["agents"]] == pytest.approx([0.9, 0.5])
    assert result["mean"]["purity"] == pytest.approx(0.7)
    assert "PURITY" in format_summary(result)
    ax = history_figure(result).axes[0]
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks == [1, 2, 3]  # whole rounds only
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    # Handwritten has 10 balanced classes: chance is 1/k = 0.1, named as chance.
    assert "agreement at chance (1/k = 0.100, k = 10)" in labels
    chance = next(line for line in ax.get_lines() if line.get_linestyle() == ":")
    assert chance.get_ydata()[0] == pytest.approx(0.1)
    png = plot_history(result, folder / "history.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_training_reexports_one_definition_of_each_name() -> None:
    from otm_flower import label_block, model_sharing, protocol, training

    assert training.MixTargets is protocol.MixTargets
    for module in (label_block, model_sharing):
        for name in module.__all__:
            assert getattr(training, name) is getattr(module, name), name


def test_agreement_chance_recorded_or_from_the_data_set() -> None:
    from otm_flower.results import agreement_chance, chance_label

    chance, k = agreement_chance({"dataset": "handwritten"})
    assert (chance, k) == (pytest.approx(0.1), 10)  # 10 balanced classes
    history = [{"round": 1, "mean": 0.2, "chance": 0.25}]
    recorded = {"dataset": "x", "coupling_agreement_history": history}
    assert agreement_chance(recorded) == (0.25, 4)
    assert agreement_chance({"dataset": "/no/such/file.npz"}) is None
    assert chance_label(0.3, 4).endswith("(sum of squared class shares = 0.300)")
