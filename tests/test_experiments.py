"""Robustness-experiment knobs: dropout, a corrupted modality, partial sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clients.node import SimulatedDropout, check_dropout
from otm_flower.agent import load_agents
from otm_flower.config import ConfigError, RunConfig, parse_run_config
from simulations.cli import simulate_inprocess
from simulations.inprocess import InProcessGrid
from strategies.otm import OTMStrategy
from tests.synthetic import clustered_views_npz

N, K = 120, 3


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clustered_views_npz(
        tmp_path_factory.mktemp("data") / "three.npz",
        n=N,
        k=K,
        dims=(6, 5, 8),
        spread=6.0,
        seed=3,
        name="three",
    )


def _config(path: Path, **kw: Any) -> RunConfig:
    values = {
        "dataset": str(path), "num-server-rounds": 4, "local-epochs": 1,
        "hidden-dim": 16, "latent-dim": 4, "mix-batch-size": 40,
        "output-dir": "", "diagnostics-dir": "",
    }  # fmt: skip
    values.update(kw)
    return parse_run_config(values)


def test_dropout_fails_exactly_the_drawn_rounds_and_the_run_goes_on(
    data_path: Path,
) -> None:
    config = _config(data_path, **{"dropout-rate": 0.4})
    expected = set()
    for rnd in range(1, 5):
        for agent in range(3):
            try:
                check_dropout(config, agent, rnd)
            except SimulatedDropout:
                expected.add((rnd, agent))
    assert 0 < len(expected) < 12  # the seed gives some dropouts, not all
    result, grid = simulate_inprocess(config)
    agent_of = {
        node: int(ctx.node_config["partition-id"])
        for node, ctx in grid.contexts.items()
    }
    dropped = {
        (rnd, agent_of[node])
        for rnd, node, reason in result["rejected"]
        if "dropped out" in reason
    }
    assert dropped == expected
    # Every agent is still evaluated in the last round, having trained in others.
    assert [a["round"] for a in result["agents"]] == [4, 4, 4]
    assert len(result["mix_seconds"]) == 4 - sum(
        len({a for r, a in expected if r == rnd}) > 1 for rnd in range(1, 5)
    )


def test_corrupted_agent_gets_noise_and_the_others_do_not(data_path: Path) -> None:
    clean, _ = load_agents(_config(data_path))
    noisy, _ = load_agents(
        _config(data_path, **{"corrupt-agent": 1, "corrupt-noise": 3.0})
    )
    np.testing.assert_array_equal(clean[0].x_train, noisy[0].x_train)
    np.testing.assert_array_equal(clean[2].x_test, noisy[2].x_test)
    diff = noisy[1].x_train - clean[1].x_train
    assert diff.std() == pytest.approx(3.0, rel=0.1)
    np.testing.assert_array_equal(clean[1].y_train, noisy[1].y_train)
    with pytest.raises(ValueError, match="corrupt-agent 5 out of range"):
        load_agents(_config(data_path, **{"corrupt-agent": 5, "corrupt-noise": 1.0}))
    with pytest.raises(ConfigError, match="corrupt-agent"):
        parse_run_config({"corrupt-agent": -2})


def test_fraction_train_samples_seeded_subsets(data_path: Path) -> None:
    from clients.app import build_client_app

    config = _config(data_path)
    grid = InProcessGrid(build_client_app(config), 6, config.to_dict())
    strategy = OTMStrategy(fraction_train=0.5, min_available_nodes=2, seed=4)
    rounds = [strategy._sample(grid, 0.5, r) for r in (1, 2, 3)]
    assert all(len(r) == 3 and set(r) <= set(grid.get_node_ids()) for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # a fresh draw each round
    again = OTMStrategy(fraction_train=0.5, min_available_nodes=2, seed=4)
    assert again._sample(grid, 0.5, 2) == rounds[1]
    assert strategy._sample(grid, 1.0, 1) == sorted(grid.get_node_ids())


def test_validation_fraction_replaces_test_rows_with_held_out_train_rows(
    data_path: Path,
) -> None:
    plain, _ = load_agents(_config(data_path))
    held, _ = load_agents(_config(data_path, **{"validation-fraction": 0.25}))
    for a, b in zip(plain, held, strict=True):
        assert b.n_train + b.n_test == a.n_train  # test rows are not used at all
        assert not set(b.test_ids) & set(a.test_ids)
        assert set(b.train_ids) | set(b.test_ids) == set(a.train_ids)
        assert not set(b.train_ids) & set(b.test_ids)
    from otm_flower.baselines import run_oracle

    config = _config(data_path, **{"validation-fraction": 0.25, "unaligned-rate": 1.0})
    result = run_oracle(config)  # aligned views stay aligned after the split
    assert result["agents"][0]["n_test"] == held[0].n_test


def _run_on_fresh_nodes(config: RunConfig, node_seed: int) -> dict[str, Any]:
    from clients.app import build_client_app
    from simulations.server_app import run_method

    grid = InProcessGrid(build_client_app(config), 3, config.to_dict(), seed=node_seed)
    return run_method(grid, config)


def test_resumed_run_equals_uninterrupted_run(data_path: Path, tmp_path: Path) -> None:
    base = {"num-server-rounds": 4, "diagnostics-dir": "", "dp-clip": 2.0,
            "dp-noise": 0.5}  # fmt: skip
    full = _run_on_fresh_nodes(_config(data_path, **base), node_seed=1)

    folder = str(tmp_path / "ckpt")
    first = _config(
        data_path, **{**base, "num-server-rounds": 2, "checkpoint-dir": folder}
    )
    _run_on_fresh_nodes(first, node_seed=2)  # "interrupted" after round 2
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.json")) == [
        "agent-0.json", "agent-1.json", "agent-2.json", "server.json",
    ]  # fmt: skip
    resumed_config = _config(
        data_path, **{**base, "checkpoint-dir": folder, "resume": True}
    )
    resumed = _run_on_fresh_nodes(resumed_config, node_seed=3)  # new node ids

    assert [h["round"] for h in resumed["history"]] == [1, 2, 3, 4]
    for a, b in zip(full["history"], resumed["history"], strict=True):
        for key in ("acc", "nmi", "ari"):
            assert a[key] == pytest.approx(b[key], abs=1e-9)
    assert full["agents"] == resumed["agents"]
    assert full["bytes_up"] == resumed["bytes_up"]
    assert full["privacy"]["epsilon_max"] == resumed["privacy"]["epsilon_max"]


def test_resume_without_checkpoint_names_the_folder(
    data_path: Path, tmp_path: Path
) -> None:
    from otm_flower.checkpoint import CheckpointError

    config = _config(
        data_path, **{"checkpoint-dir": str(tmp_path / "none"), "resume": True}
    )
    with pytest.raises(CheckpointError, match="none"):
        _run_on_fresh_nodes(config, node_seed=0)
    with pytest.raises(ConfigError, match="resume needs checkpoint-dir"):
        parse_run_config({"resume": "true"})
    with pytest.raises(ConfigError, match="'yes' as bool"):
        parse_run_config({"resume": "yes"})
