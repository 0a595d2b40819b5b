"""A node's agent: which one it is, and its trainer kept across rounds in state."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from flwr.app import ConfigRecord, Context

from otm_flower.agent import build_trainer, load_agents
from otm_flower.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from otm_flower.config import RunConfig
from otm_flower.data import AgentData
from otm_flower.training import LocalTrainer

STATE_KEY = "otm-agent"


def agent_for_node(
    config: RunConfig, node_config: dict[str, Any]
) -> tuple[AgentData, int]:
    """Pick this node's agent (``partition-id``) and the data set's class count.

    A ``dataset`` entry in the node config (a path or name of data held by that
    node) overrides the run config's.
    """
    if "partition-id" not in node_config:
        raise ValueError(
            "node config has no 'partition-id': cannot tell which agent this is"
        )
    dataset = str(node_config.get("dataset", config.dataset))
    agents, n_classes = load_agents(config, dataset)
    pid = int(node_config["partition-id"])
    if not 0 <= pid < len(agents):
        raise ValueError(
            f"partition-id {pid} out of range: {dataset} with agents-per-modality "
            f"{config.agents_per_modality} has {len(agents)} agents "
            f"(0..{len(agents) - 1})"
        )
    num_partitions = node_config.get("num-partitions")
    if num_partitions is not None and int(num_partitions) != len(agents):
        raise ValueError(
            f"{num_partitions} nodes but {dataset} has {len(agents)} agents "
            f"(views x agents-per-modality): run with num-supernodes = {len(agents)}"
        )
    return agents[pid], n_classes


def restore_trainer(
    config: RunConfig, agent: AgentData, n_classes: int, context: Context
) -> LocalTrainer:
    """The agent's trainer, restored from ``context.state`` after its first round."""
    trainer = build_trainer(config, agent, n_classes)
    saved = saved_trainer(context)
    if saved is not None:
        trainer.load_state_bytes(saved)
    return trainer


def saved_trainer(context: Context) -> bytes | None:
    """The agent's trainer state kept in ``context.state`` across rounds."""
    record = context.state.config_records.get(STATE_KEY)
    return None if record is None else cast(bytes, record["trainer"])


class SimulatedDropout(RuntimeError):
    """Raised by an agent that the ``dropout-rate`` experiment takes offline."""


def check_dropout(config: RunConfig, agent_id: int, server_round: int) -> None:
    """Fail this training round with probability ``dropout-rate`` (simulation only).

    Seeded by ``(seed, agent, round)``, so runs are reproducible; the failure goes
    through Flower's real error path, and the agent rejoins with its state intact.

    Raises
    ------
    SimulatedDropout
        When the draw says this agent is offline this round.
    """
    if config.dropout_rate <= 0:
        return
    draw = np.random.default_rng([config.seed, agent_id, server_round, 37]).random()
    if draw < config.dropout_rate:
        raise SimulatedDropout(
            f"agent {agent_id} dropped out of round {server_round} "
            f"(dropout-rate {config.dropout_rate})"
        )


def checkpoint_agent(
    config: RunConfig,
    agent_id: int,
    server_round: int,
    trainer_state: bytes,
    releases: list[int],
    rows: list[int],
) -> None:
    """Write the agent's state after a round to ``checkpoint-dir`` (node-local)."""
    write_checkpoint(
        config.checkpoint_dir,
        f"agent-{agent_id}",
        {"round": server_round, "releases": releases, "rows": rows},
        blob=trainer_state,
    )


def restore_agent_checkpoint(
    config: RunConfig, agent_id: int, context: Context, rows_key: str
) -> bool:
    """On the first message of a resumed run, load the agent's checkpointed state
    into ``context.state`` (trainer, DP release counts, last uploaded rows).

    Returns ``False`` when there is nothing to restore (not resuming, or the state
    is already there).

    Raises
    ------
    CheckpointError
        When resuming and the agent's checkpoint is missing or unreadable.
    """
    if not config.resume or STATE_KEY in context.state.config_records:
        return False
    meta, _, blob = read_checkpoint(config.checkpoint_dir, f"agent-{agent_id}")
    if blob is None:
        raise CheckpointError(f"agent {agent_id}'s checkpoint has no trainer state")
    context.state.config_records[STATE_KEY] = ConfigRecord(
        {"trainer": blob, "releases": [int(r) for r in meta["releases"]]}
    )
    context.state.config_records[rows_key] = ConfigRecord(
        {"rows": [int(r) for r in meta["rows"]]}
    )
    return True
