"""The OTM ClientApp: one agent, one modality, its WAE trained on its own data."""

from __future__ import annotations

from typing import cast

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from otm_flower import protocol as P
from otm_flower.agent import agent_anchor_ids, agent_facts, evaluate_agent
from otm_flower.anchors import upload_rows
from otm_flower.config import RunConfig, parse_run_config
from otm_flower.diagnostics import diagnostics_dir, save_upload_labels
from otm_flower.privacy import clip_and_noise, gaussian_epsilon
from otm_flower.training import (
    LocalTrainer,
    append_label_block,
    drop_label_block,
    load_shared_parameters,
    shared_parameters,
)

from .fedavg import handle_fedavg_evaluate, handle_fedavg_train
from .node import (
    STATE_KEY,
    agent_for_node,
    check_dropout,
    checkpoint_agent,
    restore_agent_checkpoint,
    restore_trainer,
)
from .otm_messages import (
    ROWS_STATE,
    evaluate_reply,
    read_mix_targets,
    read_shared_arrays,
    round_config,
    train_reply,
    upload_size,
)


def handle_train(msg: Message, context: Context, config: RunConfig) -> Message:
    """Train locally (with mix targets when sent) and upload a fresh batch of codes."""
    agent, n_classes = agent_for_node(config, dict(context.node_config))
    server_round = _server_round(msg)
    restore_agent_checkpoint(config, agent.agent_id, context, ROWS_STATE)
    targets = read_mix_targets(msg, context)
    if targets is not None and config.label_cost:
        targets = drop_label_block(targets, config.latent_dim, n_classes)
    trainer = restore_trainer(config, agent, n_classes, context)
    load_global_parameters(msg, trainer, config)
    losses = trainer.train(config.local_epochs, targets)
    ids = agent_anchor_ids(agent, config)
    if ids is None:
        rows = trainer.sample_rows(upload_size(msg, agent.n_train))
    else:  # anchored rows always go up, so the server can pin them every round
        rng = np.random.default_rng([config.seed, agent.agent_id, server_round, 43])
        rows = upload_rows(
            ids, upload_size(msg, agent.n_train), rng, round_key=server_round
        )
    folder = diagnostics_dir(config.diagnostics_dir, context.run_id)
    if folder is not None:  # local file for the simulator; never in a message
        save_upload_labels(folder, agent.agent_id, server_round, agent.y_train[rows])
    codes = trainer.encode(agent.x_train[rows])
    releases = _release_counts(context, agent.n_train)
    if config.dp_clip > 0:  # local DP: only clipped, noised codes leave the agent
        noise_rng = np.random.default_rng(
            [config.seed, agent.agent_id, server_round, 7]
        )
        codes = clip_and_noise(codes, config.dp_clip, config.dp_noise, noise_rng)
        np.add.at(releases, rows, 1)
        losses["dp-epsilon"] = gaussian_epsilon(
            config.dp_noise, int(releases.max()), config.dp_delta
        )
    if config.label_cost:  # the class of each uploaded code, in the clear
        codes = append_label_block(
            codes, agent.y_train[rows], n_classes, config.label_cost_weight
        )
    state = trainer.state_bytes()
    context.state.config_records[STATE_KEY] = ConfigRecord(
        {"trainer": state, "releases": releases.tolist()}
    )
    if config.checkpoint_dir:
        checkpoint_agent(
            config,
            agent.agent_id,
            server_round,
            state,
            releases.tolist(),
            [int(r) for r in rows],
        )
    return train_reply(
        msg,
        context,
        rows=rows,
        codes=codes,
        agent_id=agent.agent_id,
        n_train=agent.n_train,
        metrics=losses,
        anchor_ids=None if ids is None else ids[rows],
        shared_arrays=None
        if config.shared_parameters == "none"
        else shared_parameters(trainer.model, config.shared_parameters),
    )


def load_global_parameters(
    msg: Message, trainer: LocalTrainer, config: RunConfig
) -> bool:
    """Load the server's averaged shared parameters (``otm-fedavg``/``otm-head``).

    Returns ``False`` when there is nothing to load: a method that shares no
    parameters, or no average yet (round 1: each agent's own initialisation).

    Raises
    ------
    ProtocolError
        When the method shares no parameters but the server sent some.
    ValueError
        When the averaged parameters do not fit the agent's model.
    """
    arrays = read_shared_arrays(msg)
    if arrays is None:
        return False
    if config.shared_parameters == "none":
        raise P.ProtocolError(
            f"server sent shared parameters, but method {config.method!r} shares none"
        )
    load_shared_parameters(trainer.model, config.shared_parameters, arrays)
    return True


def _release_counts(context: Context, n_train: int) -> np.ndarray:
    """How often each training row's code has been uploaded (for DP accounting)."""
    record = context.state.config_records.get(STATE_KEY)
    if record is None or "releases" not in record:
        return np.zeros(n_train, dtype=np.int64)
    return np.asarray(cast(list[int], record["releases"]), dtype=np.int64)


def handle_evaluate(msg: Message, context: Context, config: RunConfig) -> Message:
    """Cluster (and classify) the agent's own test codes; reply with metrics only."""
    round_config(msg)
    agent, n_classes = agent_for_node(config, dict(context.node_config))
    trainer = restore_trainer(config, agent, n_classes, context)
    load_global_parameters(msg, trainer, config)  # scored with the global layers
    metrics: dict[str, int | float] = {
        **evaluate_agent(trainer, agent, n_classes, config),
        **agent_facts(agent),
    }
    return evaluate_reply(msg, metrics)


def _server_round(msg: Message) -> int:
    """The round of a message (OTM and FedAvg both send ``server-round``), after
    checking the protocol version."""
    return int(cast(int, round_config(msg).get(P.KEY_ROUND, 0)))


def build_client_app(
    config: RunConfig | None = None, mods: list[Mod] | None = None
) -> ClientApp:
    """Create the agents' ClientApp (OTM; or FedAvg when ``method`` is fedavg).

    Every OTM method (``otm``, its ablations, and the hybrids ``otm-fedavg`` and
    ``otm-head`` that also load and upload shared parameters) goes through
    :func:`handle_train` / :func:`handle_evaluate`.

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
        run = resolve(context)
        if run.dropout_rate > 0:
            agent, _ = agent_for_node(run, dict(context.node_config))
            check_dropout(run, agent.agent_id, _server_round(msg))
        if run.method == "fedavg":
            return handle_fedavg_train(msg, context, run)
        return handle_train(msg, context, run)

    @app.query("identify")
    def identify(msg: Message, context: Context) -> Message:
        """Tell the server which agent this node holds (to resume a run)."""
        agent, _ = agent_for_node(resolve(context), dict(context.node_config))
        return Message(
            RecordDict({P.METRICS_RECORD: MetricRecord({P.KEY_AGENT: agent.agent_id})}),
            reply_to=msg,
        )

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        run = resolve(context)
        if run.method == "fedavg":
            return handle_fedavg_evaluate(msg, context, run)
        return handle_evaluate(msg, context, run)

    return app
