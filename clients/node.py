"""A node's agent: which one it is, and its state kept across rounds (and resumes)."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from flwr.app import ConfigRecord, Context

from otm_flower.agent import build_trainer, load_agents
from otm_flower.checkpoint import (
    CheckpointError,
    checkpoint_round,
    keep_as,
    read_checkpoint,
    write_checkpoint,
)
from otm_flower.config import RunConfig
from otm_flower.data import AgentData
from otm_flower.node_config import NodeConfig, parse_node_config
from otm_flower.party_source import load_party
from otm_flower.training import LocalTrainer

from .node_cache import cached
from .otm_messages import remember_upload

#: ConfigRecord in ``context.state`` with the agent's trainer state and DP release
#: counts (node-local, never sent).
STATE_KEY = "otm-agent"


def agent_for_node(
    config: RunConfig, node_config: dict[str, Any]
) -> tuple[AgentData, int]:
    """This node's agent and its cluster count.

    With ``data-path`` the node is a party reading only its own file
    (:func:`otm_flower.party_source.load_party`); otherwise it is the simulated
    agent ``partition-id`` of the run's data set (a ``dataset`` node-config
    entry overrides the run config's). The valid keys:
    :data:`otm_flower.node_config.NODE_CONFIG_KEYS`. With a node-local cache
    folder set (:mod:`clients.node_cache`), the prepared data is read from it
    after the first message.

    Raises
    ------
    NodeConfigError
        On an unknown or invalid node-config key.
    ValueError
        On a missing or out-of-range ``partition-id``, a party's bad file, or
        a party without labels in a run without ``n-clusters``.
    """
    node = parse_node_config(node_config)

    def build() -> tuple[AgentData, int]:
        if node.is_party:
            return load_party(config, node)
        return simulated_agent(config, node)

    return cached(config.to_dict(), node_config, build)


def simulated_agent(config: RunConfig, node: NodeConfig) -> tuple[AgentData, int]:
    """The agent ``partition-id`` of the run's (or the node's) data set."""
    if node.partition_id is None:
        raise ValueError(
            "node config has neither data-path (a party's own file) nor "
            "'partition-id' (a simulated agent): cannot tell which agent this is"
        )
    dataset = node.dataset or config.dataset
    agents, n_classes = load_agents(config, dataset)
    pid = node.partition_id
    if not 0 <= pid < len(agents):
        raise ValueError(
            f"partition-id {pid} out of range: {dataset} with agents-per-modality "
            f"{config.agents_per_modality} has {len(agents)} agents "
            f"(0..{len(agents) - 1})"
        )
    if node.num_partitions is not None and node.num_partitions != len(agents):
        raise ValueError(
            f"{node.num_partitions} nodes but {dataset} has {len(agents)} agents "
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


def release_counts(context: Context, n_train: int) -> np.ndarray:
    """How often each training row's code has been uploaded (for DP accounting)."""
    record = context.state.config_records.get(STATE_KEY)
    if record is None or "releases" not in record:
        return np.zeros(n_train, dtype=np.int64)
    return np.asarray(cast(list[int], record["releases"]), dtype=np.int64)


def keep_agent_state(
    context: Context, trainer_state: bytes, releases: list[int] | None = None
) -> None:
    """Keep the trainer state (and DP release counts) in ``context.state``."""
    record = ConfigRecord({"trainer": trainer_state})
    if releases is not None:
        record["releases"] = releases
    context.state.config_records[STATE_KEY] = record


def checkpoint_name(agent_id: int, previous: bool = False) -> str:
    """The agent's checkpoint name: ``agent-<id>``, or ``previous/agent-<id>``
    for the round before (in a subfolder of the checkpoint folder)."""
    return ("previous/" if previous else "") + f"agent-{agent_id}"


def checkpoint_agent(
    config: RunConfig,
    agent_id: int,
    server_round: int,
    trainer_state: bytes,
    releases: list[int],
    rows: list[int],
    run_id: int = 0,
) -> None:
    """Write the agent's state after a round to ``checkpoint-dir`` (node-local).

    The checkpoint of an earlier round is kept as ``previous/agent-<id>``: a
    server killed after checkpointing round r may already have had the agents
    train round r + 1, and its resumed run continues after round r. ``run_id``
    (Flower's) lets a restarted SuperNode continue the same run.
    """
    name = checkpoint_name(agent_id)
    stored = checkpoint_round(config.checkpoint_dir, name)
    if stored is not None and stored < server_round:
        keep_as(config.checkpoint_dir, name, checkpoint_name(agent_id, previous=True))
    write_checkpoint(
        config.checkpoint_dir,
        name,
        {"round": server_round, "releases": releases, "rows": rows, "run": run_id},
        blob=trainer_state,
    )


def restore_agent_checkpoint(
    config: RunConfig,
    agent_id: int,
    context: Context,
    server_round: int,
    *,
    evaluating: bool = False,
) -> bool:
    """Load the agent's state after round ``server_round - 1`` (``evaluating``:
    after ``server_round``) into ``context.state`` (trainer, DP release counts,
    last uploaded rows), from its latest checkpoint or the one kept before it.

    Done on the first message of a resumed run, and on the first message a
    restarted SuperNode gets in the run it left (a checkpoint of this run id).
    Returns ``False`` when there is nothing to restore (the state is already
    there, no ``checkpoint-dir``, or, outside a resume, no checkpoint of that
    round of this run).

    Raises
    ------
    CheckpointError
        When resuming and neither checkpoint of the agent holds the round, or
        one is unreadable.
    """
    if not config.checkpoint_dir or STATE_KEY in context.state.config_records:
        return False
    wanted = server_round if evaluating else server_round - 1
    names = [checkpoint_name(agent_id), checkpoint_name(agent_id, previous=True)]
    found = {n: checkpoint_round(config.checkpoint_dir, n) for n in names}
    name = next((n for n in names if found[n] == wanted), None)
    if name is None and config.resume:
        raise CheckpointError(
            f"agent {agent_id}: no checkpoint of round {wanted} in "
            f"{config.checkpoint_dir} to continue from (found rounds "
            f"{sorted(r for r in found.values() if r is not None)})"
        )
    if name is None or wanted < 1:
        return False
    meta, _, blob = read_checkpoint(config.checkpoint_dir, name)
    if not config.resume and meta.get("run") != context.run_id:
        return False  # another run's
    if blob is None:
        raise CheckpointError(f"agent {agent_id}'s checkpoint has no trainer state")
    keep_agent_state(context, blob, [int(r) for r in meta["releases"]])
    remember_upload(context, np.asarray(meta["rows"], dtype=np.int64))
    return True
