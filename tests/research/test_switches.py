"""Experiment switches outside the run config: the dropout mod, the corruption
wrapper, and the robustness script that uses them."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from otm_flower.agent import load_agents, transformed_agents
from otm_flower.config import ConfigError, parse_run_config
from research.corruption import CorruptAgent, CorruptAgentMod
from research.dropout import DropoutMod, SimulatedDropout, check_dropout
from research.robustness import fault_config, fault_scores, main, others_mean
from simulations.cli import simulate_inprocess
from tests.test_experiments import (  # noqa: F401 (data_path: a fixture)
    K,
    N,
    _config,
    data_path,
)


def test_dropout_fails_exactly_the_drawn_rounds_and_the_run_goes_on(
    data_path: Path,
) -> None:
    config = _config(data_path)
    expected = set()
    for rnd in range(1, 5):
        for agent in range(3):
            try:
                check_dropout(0.4, config.seed, agent, rnd)
            except SimulatedDropout:
                expected.add((rnd, agent))
    assert 0 < len(expected) < 12  # the seed gives some dropouts, not all
    result, grid = simulate_inprocess(config, mods=[DropoutMod(0.4, config.seed)])
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


def test_dropout_rate_is_checked() -> None:
    with pytest.raises(ValueError, match="dropout rate must be in"):
        DropoutMod(1.0)
    check_dropout(0.0, 0, 0, 1)  # rate 0: never offline


def test_corrupted_agent_gets_noise_and_the_others_do_not(data_path: Path) -> None:
    clean, _ = load_agents(_config(data_path))
    noisy = CorruptAgent(1, 3.0)(clean, seed=0)
    np.testing.assert_array_equal(clean[0].x_train, noisy[0].x_train)
    np.testing.assert_array_equal(clean[2].x_test, noisy[2].x_test)
    diff = noisy[1].x_train - clean[1].x_train
    assert diff.std() == pytest.approx(3.0, rel=0.1)
    np.testing.assert_array_equal(clean[1].y_train, noisy[1].y_train)
    with pytest.raises(ValueError, match="corrupt-agent 5 out of range"):
        CorruptAgent(5, 1.0)(clean, seed=0)
    with pytest.raises(ValueError, match="corrupt-agent"):
        CorruptAgent(-2, 1.0)
    with pytest.raises(ConfigError, match="corrupt-agent"):
        parse_run_config({"corrupt-agent": -2})  # no longer a run-config key


def test_wrapper_applies_to_loaded_agents_before_the_validation_split(
    data_path: Path,
) -> None:
    config = _config(data_path, **{"validation-fraction": 0.25})
    with transformed_agents(CorruptAgent(1, 3.0)):
        noisy, _ = load_agents(config)
        with pytest.raises(ValueError, match="corrupt-agent 5 out of range"):
            with transformed_agents(CorruptAgent(5, 1.0)):
                load_agents(config)
    held, _ = load_agents(config)  # the block ended: clean again
    whole, _ = load_agents(_config(data_path))
    expected = CorruptAgent(1, 3.0)(whole, seed=0)[1]
    row_of = {int(i): r for r, i in enumerate(whole[1].train_ids)}
    rows = [row_of[int(i)] for i in noisy[1].train_ids]
    np.testing.assert_array_equal(noisy[1].x_train, expected.x_train[rows])
    np.testing.assert_array_equal(held[0].x_train, noisy[0].x_train)
    assert not np.array_equal(held[1].x_train, noisy[1].x_train)


def test_corruption_mod_reaches_the_client_apps(data_path: Path) -> None:
    config = _config(data_path, **{"num-server-rounds": 2})
    clean, _ = simulate_inprocess(config)
    mod = CorruptAgentMod(CorruptAgent(1, 50.0))
    noisy, grid = simulate_inprocess(config, mods=[mod])
    by_id = {a["id"]: a for a in noisy["agents"]}
    assert by_id[1]["acc"] != {a["id"]: a for a in clean["agents"]}[1]["acc"]
    assert load_agents(config)[0][1].x_train.std() < 5  # the server side is clean


def test_fault_scores_and_others_mean() -> None:
    result = {
        "agents": [
            {"id": 0, "acc": 0.5, "nmi": 0.4},
            {"id": 1, "acc": 0.1, "nmi": 0.0},
            {"id": 2, "acc": 0.7, "nmi": 0.6},
        ],
        "coupling_agreement": None,
    }
    assert others_mean(result, 1) == pytest.approx((0.6, 0.5))
    scores = fault_scores(result, 1)
    assert scores[:3] == pytest.approx([1.3 / 3, 0.6, 0.5])
    assert np.isnan(scores[3])


@pytest.mark.slow
def test_faults_experiment_prints_a_table(data_path: Path, capsys) -> None:
    argv = ["--experiment", "faults", "--seeds", "0", "1", "--rounds", "2"]
    argv += ["--corrupt-agent", "1", "--dropout-rate", "0.3"]
    for key, value in {
        "dataset": str(data_path), "local-epochs": 1, "hidden-dim": 16,
        "latent-dim": 4, "mix-batch-size": 40, "output-dir": "",
    }.items():  # fmt: skip
        argv += ["--set", f"{key}={value}"]
    assert main(argv) == 0
    table = capsys.readouterr().out.split("| run |")[1].splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| clean",
        "| agent 1 corrupted",
        "| 30% dropout per round",
    ]
    assert main([*argv, "--corrupt-agent", "9"]) == 2


def test_fault_runs_can_take_the_benchmark_configuration() -> None:
    from simulations.bench import (
        DEFAULT_HYPERPARAMETERS,
        load_hyperparameters,
        run_config_for,
    )
    from simulations.benchmark.grid import BenchRun

    args = argparse.Namespace(rounds=5, hyperparameters=DEFAULT_HYPERPARAMETERS)
    config = fault_config(args, {"local-epochs": "2"}, 1, "r.json")
    cell = BenchRun("handwritten", "otm", "unaligned", 1)
    tables = load_hyperparameters(DEFAULT_HYPERPARAMETERS)
    expected = run_config_for(cell, 5, tables, {"local-epochs": "2"})
    assert config == parse_run_config({**expected.to_dict(), "out": "r.json"})
    args.hyperparameters = None
    plain = fault_config(args, {"local-epochs": "2"}, 1, "r.json")
    assert (plain.diagnostics_dir, plain.local_epochs, plain.seed) == ("auto", 2, 1)
    assert plain.num_server_rounds == 5
