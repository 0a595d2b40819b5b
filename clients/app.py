"""The OTM ClientApp: one agent, one modality, its WAE trained on its own data."""

from __future__ import annotations

import functools
from typing import Any, cast

import numpy as np
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from otm_flower import protocol as P
from otm_flower.config import RunConfig, parse_run_config
from otm_flower.data import AgentData, load_dataset, make_agents
from otm_flower.diagnostics import diagnostics_dir, save_upload_labels
from otm_flower.metrics import classification_accuracy, clustering_scores
from otm_flower.training import LocalTrainer, LossWeights, MixTargets

STATE_KEY = "otm-agent"
MetricValues = dict[str, int | float | list[int] | list[float]]


@functools.lru_cache(maxsize=4)
def _agents(
    dataset: str,
    agents_per_modality: int,
    unaligned_rate: float,
    test_fraction: float,
    seed: int,
) -> tuple[tuple[AgentData, ...], int]:
    """Every agent's data for a run (cached per process; deterministic)."""
    data = load_dataset(dataset)
    agents = make_agents(
        data,
        agents_per_modality=agents_per_modality,
        unaligned_rate=unaligned_rate,
        test_fraction=test_fraction,
        seed=seed,
    )
    return tuple(agents), data.n_classes


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
    agents, n_classes = _agents(
        dataset,
        config.agents_per_modality,
        config.unaligned_rate,
        config.test_fraction,
        config.seed,
    )
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


def _trainer(
    config: RunConfig, agent: AgentData, n_classes: int, context: Context
) -> LocalTrainer:
    torch.set_num_threads(1)
    classify = config.task == "classification"
    trainer = LocalTrainer(
        agent.x_train,
        agent.y_train if classify else None,
        latent_dim=config.latent_dim,
        hidden_dim=config.hidden_dim,
        num_classes=n_classes if classify else 0,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        weights=LossWeights(
            config.weight_rec,
            config.weight_mix,
            config.weight_reg,
            config.weight_mmd,
            config.weight_task,
        ),
        seed=config.seed * 1009 + agent.agent_id,
    )
    saved = _saved_state(context)
    if saved is not None:
        trainer.load_state_bytes(saved[0])
    return trainer


def _saved_state(context: Context) -> tuple[bytes, np.ndarray] | None:
    """The agent's trainer bytes and last uploaded rows, kept in ``context.state``."""
    record = context.state.config_records.get(STATE_KEY)
    if record is None:
        return None
    trainer = cast(bytes, record["trainer"])
    rows = np.asarray(cast(list[int], record["rows"]), dtype=np.int64)
    return trainer, rows


def _check_version(msg: Message) -> None:
    config = msg.content.config_records.get(P.CONFIG_RECORD, ConfigRecord())
    version = config.get(P.KEY_VERSION, P.PROTOCOL_VERSION)
    if version != P.PROTOCOL_VERSION:
        raise P.ProtocolError(
            f"server speaks OTM protocol version {version!r}, "
            f"this client {P.PROTOCOL_VERSION}"
        )


def handle_train(msg: Message, context: Context, config: RunConfig) -> Message:
    """Train locally (with mix targets when sent) and upload a fresh batch of codes."""
    _check_version(msg)
    agent, n_classes = agent_for_node(config, dict(context.node_config))
    trainer = _trainer(config, agent, n_classes, context)
    saved = _saved_state(context)
    targets = None
    if P.CODES_RECORD in msg.content.array_records and saved is not None:
        record = msg.content.array_records[P.CODES_RECORD]
        rows = saved[1]
        mixed = record[P.KEY_MIXED].numpy()
        barycenter = (
            record[P.KEY_BARYCENTER].numpy() if P.KEY_BARYCENTER in record else None
        )
        if mixed.shape == (len(rows), config.latent_dim) and np.isfinite(mixed).all():
            targets = MixTargets(rows, mixed, barycenter)
        else:
            raise P.ProtocolError(
                f"mixed codes of shape {mixed.shape} do not match the last upload "
                f"({len(rows)} x {config.latent_dim}) or are not finite"
            )
    losses = trainer.train(config.local_epochs, targets)
    round_config = msg.content.config_records[P.CONFIG_RECORD]
    mix_batch = int(cast(int, round_config.get(P.KEY_MIX_BATCH, config.mix_batch_size)))
    rows = trainer.sample_rows(mix_batch)
    codes = trainer.encode(agent.x_train[rows])
    folder = diagnostics_dir(config.diagnostics_dir, context.run_id)
    if folder is not None:  # local file for the simulator; never in a message
        server_round = int(cast(int, round_config.get(P.KEY_ROUND, 0)))
        save_upload_labels(folder, agent.agent_id, server_round, agent.y_train[rows])
    context.state.config_records[STATE_KEY] = ConfigRecord(
        {"trainer": trainer.state_bytes(), "rows": [int(r) for r in rows]}
    )
    metrics: MetricValues = {f"train-{k}": v for k, v in losses.items()}
    metrics.update({P.KEY_NUM_EXAMPLES: agent.n_train, P.KEY_AGENT: agent.agent_id})
    content = RecordDict(
        {
            P.CODES_RECORD: ArrayRecord({P.KEY_CODES: Array(codes.astype(np.float32))}),
            P.METRICS_RECORD: MetricRecord(metrics),
        }
    )
    return Message(content=content, reply_to=msg)


def handle_evaluate(msg: Message, context: Context, config: RunConfig) -> Message:
    """Cluster (and classify) the agent's own test codes; reply with metrics only."""
    _check_version(msg)
    agent, n_classes = agent_for_node(config, dict(context.node_config))
    trainer = _trainer(config, agent, n_classes, context)
    test_codes = trainer.encode(agent.x_test)
    metrics: MetricValues = dict(
        clustering_scores(test_codes, agent.y_test, n_classes, seed=config.seed)
    )
    if config.task == "classification":
        metrics["accuracy"] = classification_accuracy(
            trainer.encode(), agent.y_train, test_codes, agent.y_test
        )
    metrics.update(
        {
            P.KEY_AGENT: agent.agent_id,
            "modality": agent.modality,
            "n-train": agent.n_train,
            "n-test": agent.n_test,
            P.KEY_NUM_EXAMPLES: agent.n_test,
        }
    )
    return Message(
        content=RecordDict({P.METRICS_RECORD: MetricRecord(metrics)}), reply_to=msg
    )


def build_client_app(
    config: RunConfig | None = None, mods: list[Mod] | None = None
) -> ClientApp:
    """Create the OTM ClientApp.

    Parameters
    ----------
    config : RunConfig, optional
        Settings to use; by default each call reads the run config Flower passes in
        the context (``flwr run . --run-config ...``).
    mods : list of Flower mods, optional
        Passed to :class:`flwr.clientapp.ClientApp` (e.g. to log or check messages).
    """
    app = ClientApp(mods=mods)

    def resolve(context: Context) -> RunConfig:
        return config if config is not None else parse_run_config(context.run_config)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return handle_train(msg, context, resolve(context))

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return handle_evaluate(msg, context, resolve(context))

    return app
