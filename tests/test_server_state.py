"""ServerState: checkpoint round trip, resume checks, routing of resumed targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from otm_flower.checkpoint import CheckpointError
from strategies.state import ServerState


def a_state() -> ServerState:
    rng = np.random.default_rng(0)
    return ServerState(
        latent_dim=4,
        code_width=7,
        shared={"head.weight": rng.normal(size=(3, 4)), "head.bias": np.zeros(3)},
        targets={  # by agent id
            0: (rng.normal(size=(5, 4)), rng.normal(size=(5, 4))),
            1: (rng.normal(size=(6, 4)), rng.normal(size=(6, 4))),
        },
        node_agents={11: 0, 12: 1},
        agent_metrics={1: {0: {"acc": 0.5}, 1: {"acc": 0.25}}},
        train_metrics={0: {"train-rec": 0.1}, 1: {"train-rec": 0.2}},
        bytes_up=1234,
        bytes_down=5678,
        mix_seconds=[0.5, 0.25],
        rejected=[(1, 13, "scale outlier")],
    )


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    state = a_state()
    state.write_checkpoint(tmp_path, 2, share="head")
    resumed = ServerState.from_checkpoint(tmp_path, share="head")
    assert resumed.round_offset == 2
    for name in (
        "latent_dim",
        "code_width",
        "agent_metrics",
        "train_metrics",
        "bytes_up",
        "bytes_down",
        "mix_seconds",
        "rejected",
    ):
        assert getattr(resumed, name) == getattr(state, name), name
    assert resumed.shared is not None and state.shared is not None
    assert list(resumed.shared) == list(state.shared)
    for key, value in state.shared.items():
        np.testing.assert_array_equal(resumed.shared[key], value)
    # targets are kept by agent id; nodes are bound to agents afresh
    assert sorted(resumed.targets) == [0, 1] and resumed.node_agents == {}
    for agent in (0, 1):
        for got, want in zip(resumed.targets[agent], state.targets[agent], strict=True):
            np.testing.assert_array_equal(got, want)
    resumed.bind_agents({21: 1, 22: 0, 23: 5})
    assert resumed.node_agents == {21: 1, 22: 0, 23: 5}
    resumed.bind_agents({31: 1})  # agent 1 on a new node: its old one forgotten
    assert resumed.node_agents == {22: 0, 23: 5, 31: 1}


def test_resume_checks_the_sharing_mode_and_names_the_folder(tmp_path: Path) -> None:
    ServerState(latent_dim=4).write_checkpoint(tmp_path, 1, share="none")
    assert ServerState.from_checkpoint(tmp_path, share="none").shared is None
    with pytest.raises(CheckpointError, match="resume with the same method"):
        ServerState.from_checkpoint(tmp_path, share="all")
    with pytest.raises(CheckpointError, match="no checkpoint 'server'"):
        ServerState.from_checkpoint(tmp_path / "missing", share="none")


def test_reject_records_round_node_and_reason() -> None:
    state = ServerState()
    state.reject(3, 7, "no metrics record")
    assert state.rejected == [(3, 7, "no metrics record")]
