"""Fault injection in a simulated federation: a crashing agent, and reproducibility."""

from __future__ import annotations

from pathlib import Path

import pytest

from otm_flower.config import parse_run_config
from simulations.cli import simulate

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

SMALL = {
    "local-epochs": 1,
    "latent-dim": 8,
    "hidden-dim": 32,
    "mix-batch-size": 64,
    "barycenter-iterations": 2,
    "output-dir": "",
}


def crash_agent(partition: int, server_round: int):
    """A Flower mod that makes one agent raise in one training round."""

    def mod(msg, context, call_next):
        config = msg.content.config_records.get("config", {})
        if (
            msg.metadata.message_type == "train"
            and context.node_config.get("partition-id") == partition
            and config.get("server-round") == server_round
        ):
            raise RuntimeError(f"injected crash of agent {partition}")
        return call_next(msg, context)

    return mod


def test_crashing_agent_is_left_out_then_rejoins(tmp_path: Path) -> None:
    config = parse_run_config(
        {**SMALL, "num-server-rounds": 3, "out": str(tmp_path / "r.json")}
    )
    result = simulate(config, num_cpus=2, mods=[crash_agent(2, 2)])
    crashed = [r for r in result["rejected"] if "injected crash" in r[2]]
    assert [r[0] for r in crashed] == [2], result["rejected"]
    agents = {a["id"]: a for a in result["agents"]}
    assert sorted(agents) == list(range(6))
    assert agents[2]["round"] == 3 and agents[2]["acc"] > 0.1  # rejoined, state kept
    assert result["bytes_up"] == (3 * 6 - 1) * 64 * 8 * 4


def test_same_seed_gives_the_same_metrics(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        config = parse_run_config(
            {
                **SMALL,
                "num-server-rounds": 2,
                "seed": 7,
                "out": str(tmp_path / f"{name}.json"),
            }
        )
        runs.append(simulate(config, num_cpus=2))
    first, second = runs
    for a, b in zip(first["agents"], second["agents"], strict=True):
        for key in ("acc", "nmi", "ari"):
            assert a[key] == pytest.approx(b[key], abs=1e-9)
    assert first["coupling_agreement"] == pytest.approx(second["coupling_agreement"])
