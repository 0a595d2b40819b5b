"""Tests for otm_flower.baselines: local, raw and oracle, on small synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import otm_flower.baselines as baselines
import otm_flower.config as config_module
from otm_flower.agent import build_trainer, evaluate_agent, load_agents
from otm_flower.baselines import (
    BASELINES,
    oracle_agent,
    run_baseline,
    run_local,
    run_oracle,
    run_raw,
)
from otm_flower.config import RunConfig
from otm_flower.data import MultiViewDataset, load_dataset, make_agents, save_npz
from tests.synthetic import cluster_and_noise

N, K = 90, 3  # samples, classes: 72 train and 18 test rows per view
N_TRAIN = N - int(np.ceil(0.2 * N))


def _dataset() -> MultiViewDataset:
    """View 0: well-separated class clusters; view 1: noise unrelated to labels."""
    return cluster_and_noise(N, K)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_npz(_dataset(), tmp_path_factory.mktemp("data") / "synthetic.npz")


def _config(path: Path, **kw: object) -> RunConfig:
    settings: dict[str, object] = {
        "dataset": str(path),
        "num_server_rounds": 2,
        "local_epochs": 1,
        "hidden_dim": 32,
        "latent_dim": 4,
        "batch_size": 32,
    }
    settings.update(kw)
    return RunConfig(**settings)  # type: ignore[arg-type]


def _check_metrics(result: dict[str, object], n_agents: int, rounds: int) -> None:
    agents = result["agents"]
    assert isinstance(agents, list) and len(agents) == n_agents
    for a in agents:
        assert a["round"] == rounds
        for key in ("acc", "nmi", "ari"):
            assert a[key] is not None and -1.0 <= a[key] <= 1.0
        assert 0.0 <= a["acc"] <= 1.0 and 0.0 <= a["nmi"] <= 1.0
    history = result["history"]
    assert isinstance(history, list)
    assert [h["round"] for h in history] == list(range(1, rounds + 1))
    assert result["bytes_up"] == 0 and result["bytes_down"] == 0
    assert isinstance(result["wall_s"], float) and result["wall_s"] >= 0


def test_local_trains_each_agent_alone_and_reports_every_round(
    data_path: Path,
) -> None:
    config = _config(data_path)
    messages: list[str] = []
    result = run_local(config, messages.append)
    _check_metrics(result, n_agents=2, rounds=2)
    assert result["method"] == "local" and result["config"]["method"] == "local"
    assert result["rounds"] == 2 and result["task"] == "clustering"
    assert [a["id"] for a in result["agents"]] == [0, 1]
    assert [a["modality"] for a in result["agents"]] == [0, 1]
    assert all(a["n_train"] == N_TRAIN for a in result["agents"])
    assert result["mean"]["accuracy"] is None
    assert len(messages) == 2
    assert messages[0].startswith("round 1/2: mean ACC")


def test_local_is_deterministic_and_scored_like_the_client(data_path: Path) -> None:
    config = _config(data_path, num_server_rounds=1)
    first, second = run_local(config), run_local(config)
    assert first["agents"] == second["agents"]
    # The same agent trained and scored by hand with the client's helpers.
    agents, n_classes = load_agents(config)
    trainer = build_trainer(config, agents[0], n_classes)
    trainer.train(config.local_epochs)
    expected = evaluate_agent(trainer, agents[0], n_classes, config)
    got = first["agents"][0]
    assert {k: got[k] for k in expected} == pytest.approx(expected)


def test_raw_scores_features_per_agent(data_path: Path) -> None:
    result = run_raw(_config(data_path, num_server_rounds=5))
    _check_metrics(result, n_agents=2, rounds=1)
    informative, noise = result["agents"]
    assert informative["acc"] > 0.95 and informative["nmi"] > 0.9
    assert noise["acc"] < 0.8 and noise["nmi"] < 0.4
    assert result["method"] == "raw"
    assert result["mean"]["acc"] == pytest.approx(
        (informative["acc"] + noise["acc"]) / 2
    )


def test_classification_reports_accuracy(data_path: Path) -> None:
    config = _config(data_path, task="classification", num_server_rounds=1)
    for run in (run_raw, run_local):
        result = run(config)
        assert result["task"] == "classification"
        accuracies = [a["accuracy"] for a in result["agents"]]
        assert all(a is not None and 0.0 <= a <= 1.0 for a in accuracies)
        assert result["mean"]["accuracy"] == pytest.approx(np.mean(accuracies))
    raw = run_raw(config)
    assert raw["agents"][0]["accuracy"] > 0.95  # separable view: near perfect


def test_oracle_trains_one_agent_on_all_views(data_path: Path) -> None:
    # agents-per-modality and unaligned-rate are ignored by the oracle.
    config = _config(data_path, agents_per_modality=2, unaligned_rate=1.0)
    result = run_oracle(config)
    _check_metrics(result, n_agents=1, rounds=2)
    (agent,) = result["agents"]
    assert agent["id"] == 0 and agent["modality"] == -1
    assert agent["n_train"] == N_TRAIN and agent["n_test"] == N - N_TRAIN
    assert result["method"] == "oracle"


def test_oracle_agent_concatenates_aligned_views(data_path: Path) -> None:
    views = make_agents(load_dataset(str(data_path)), unaligned_rate=0.0)
    agent = oracle_agent(views)
    assert agent.x_train.shape == (N_TRAIN, 5 + 4)
    np.testing.assert_array_equal(agent.x_train[:, :5], views[0].x_train)
    np.testing.assert_array_equal(agent.x_test[:, 5:], views[1].x_test)
    np.testing.assert_array_equal(agent.y_train, views[1].y_train)
    assert (agent.agent_id, agent.modality) == (0, -1)


def test_oracle_rejects_misaligned_views(
    data_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = load_dataset(str(data_path))
    misaligned = make_agents(dataset, unaligned_rate=1.0)
    with pytest.raises(ValueError, match="aligned views: the train rows of agent 1"):
        oracle_agent(misaligned)
    with pytest.raises(ValueError, match="at least one view"):
        oracle_agent([])
    monkeypatch.setattr(baselines, "make_agents", lambda *a, **kw: misaligned)
    with pytest.raises(ValueError, match="oracle needs aligned views"):
        run_oracle(_config(data_path))


def test_run_baseline_dispatches_on_method(
    data_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert set(BASELINES) == {"local", "raw", "oracle"}
    with pytest.raises(ValueError, match="not a baseline; baselines: local, raw"):
        run_baseline(_config(data_path))  # the default method, "otm"
    monkeypatch.setattr(config_module, "METHODS", (*config_module.METHODS, "raw"))
    result = run_baseline(_config(data_path, method="raw"))
    assert result["method"] == "raw" and len(result["history"]) == 1
