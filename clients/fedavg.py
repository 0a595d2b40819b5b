"""The agents' side of the ``fedavg`` baseline: Flower's FedAvg over shared layers.

Each agent keeps its modality-specific layers (first encoder layer, last decoder
layer) local and exchanges the rest of its WAE (latent-side layers and task head,
the same shapes for every agent; see :meth:`otm_flower.models.WAE.shared_state`)
with Flower's unchanged ``flwr.serverapp.strategy.FedAvg``.
"""

from __future__ import annotations

from typing import cast

import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)

from otm_flower import protocol as P
from otm_flower.agent import agent_facts, score_agent
from otm_flower.config import RunConfig
from otm_flower.training import LocalTrainer
from otm_flower.wire_arrays import read_array

from .model_out import save_model
from .node import agent_for_node, keep_agent_state, restore_trainer
from .otm_messages import MetricValues


def _load_global(msg: Message, trainer: LocalTrainer) -> None:
    """Load the server's averaged shared layers (none in round 1: own init).

    Each array is decoded only once its bytes match its header
    (:func:`otm_flower.wire_arrays.read_array`), so a claimed but absent size
    allocates nothing.
    """
    arrays = msg.content.array_records.get(P.ARRAYS_RECORD)
    if arrays is not None and len(arrays) > 0:
        state = {
            key: torch.from_numpy(read_array(array, f"global parameter {key!r}"))
            for key, array in arrays.items()
        }
        trainer.model.load_shared_state(state)


def handle_fedavg_train(msg: Message, context: Context, config: RunConfig) -> Message:
    """Load the global shared layers, train locally, reply with the shared layers."""
    agent, n_classes = agent_for_node(config, dict(context.node_config))
    trainer = restore_trainer(config, agent, n_classes, context)
    _load_global(msg, trainer)
    losses = trainer.train(config.local_epochs)
    keep_agent_state(context, trainer.state_bytes())
    metrics: MetricValues = {f"{P.TRAIN_PREFIX}{k}": v for k, v in losses.items()}
    return Message(
        RecordDict(
            {
                P.ARRAYS_RECORD: ArrayRecord(trainer.model.shared_state()),
                P.METRICS_RECORD: MetricRecord(
                    {**metrics, P.KEY_NUM_EXAMPLES: agent.n_train}
                ),
            }
        ),
        reply_to=msg,
    )


def handle_fedavg_evaluate(
    msg: Message, context: Context, config: RunConfig
) -> Message:
    """Score the agent's encoder with the global shared layers; metrics only
    (and, in the last round, write the agent's model)."""
    agent, n_classes = agent_for_node(config, dict(context.node_config))
    trainer = restore_trainer(config, agent, n_classes, context)
    _load_global(msg, trainer)
    config_record = msg.content.config_records.get(P.CONFIG_RECORD, ConfigRecord())
    server_round = int(cast(int, config_record.get(P.KEY_ROUND, 0)))
    scored = score_agent(trainer, agent, n_classes, config)
    if server_round >= config.num_server_rounds:
        save_model(context, config, trainer, agent, scored)
    metrics: MetricValues = {
        **scored.metrics,
        **agent_facts(agent),
        P.KEY_ROUND: server_round,
    }
    return Message(RecordDict({P.METRICS_RECORD: MetricRecord(metrics)}), reply_to=msg)
