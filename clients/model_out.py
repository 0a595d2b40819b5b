"""Where a node writes its party's trained model at the end of a run, and how."""

from __future__ import annotations

from logging import INFO
from pathlib import Path

from flwr.app import Context
from flwr.supercore import log

from otm_flower.agent import Scored
from otm_flower.config import RunConfig
from otm_flower.data import AgentData
from otm_flower.node_config import parse_node_config
from otm_flower.party_model import save_party_model
from otm_flower.results import run_folder
from otm_flower.training import LocalTrainer


def model_dir(context: Context, config: RunConfig, agent_id: int) -> Path | None:
    """The node's ``model-dir``, else ``<output-dir>/<run>/models/agent-<id>``
    (``None`` when neither is set)."""
    node = parse_node_config(dict(context.node_config))
    if node.model_dir:
        return Path(node.model_dir).expanduser()
    if not config.output_dir:
        return None
    run = run_folder(config.output_dir, config.to_dict(), context.run_id)
    return run / "models" / f"agent-{agent_id}"


def save_model(
    context: Context,
    config: RunConfig,
    trainer: LocalTrainer,
    agent: AgentData,
    scored: Scored,
) -> Path | None:
    """Write the agent's model artifact (:mod:`otm_flower.party_model`).

    Returns the folder, or ``None`` when the node has nowhere to write it or
    the agent has no fitted preprocessing.
    """
    folder = model_dir(context, config, agent.agent_id)
    if folder is None or agent.preprocessor is None:
        return None
    wae = trainer.model
    save_party_model(
        folder,
        model=wae,
        preprocessor=agent.preprocessor,
        feature_names=agent.feature_names or [],
        task=config.task,
        centers=scored.centers,
        classifier=scored.classifier,
        classes=agent.classes,
        wae_config={
            "input_dim": wae.input_dim,
            "latent_dim": wae.latent_dim,
            "hidden_dim": config.hidden_dim,
            "num_classes": 0 if wae.head is None else wae.head.out_features,
        },
        metrics=scored.metrics,
    )
    log(INFO, "agent %d: model written to %s", agent.agent_id, folder)
    return folder
