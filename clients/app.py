"""The OTM ClientApp: one agent, one modality, its WAE trained on its own data.

Under the Deployment Runtime every message runs in a fresh process, so what
only some messages need (the FedAvg handlers, writing the model in the last
round) is imported where it is used.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from otm_flower import protocol as P
from otm_flower.agent import agent_anchor_ids, agent_facts, score_agent
from otm_flower.config import RunConfig, latent_width, parse_run_config
from otm_flower.data import AgentData
from otm_flower.diagnostics import diagnostics_dir, save_upload_labels
from otm_flower.link_floor import below_link_floor
from otm_flower.training import (
    LocalTrainer,
    append_label_block,
    drop_label_block,
    load_shared_parameters,
    shared_parameters,
)

from .node import (
    agent_for_node,
    checkpoint_agent,
    keep_agent_state,
    release_counts,
    restore_agent_checkpoint,
    restore_trainer,
)
from .otm_messages import (
    evaluate_reply,
    read_linked_ids,
    read_mix_targets,
    read_shared_arrays,
    round_config,
    train_reply,
    upload_size,
)
from .upload import choose_rows, privatize_codes


def handle_train(msg: Message, context: Context, config: RunConfig) -> Message:
    """Train locally (with mix targets when sent) and upload a fresh batch of codes."""
    agent, n_classes = agent_for_node(config, dict(context.node_config))
    server_round = _server_round(msg)
    restore_agent_checkpoint(config, agent.agent_id, context, server_round)
    ids = agent_anchor_ids(agent, config)
    trainer, losses = _train_locally(msg, context, config, agent, n_classes, ids)
    rows = choose_rows(
        trainer,
        agent,
        config,
        size=upload_size(msg, agent.n_train),
        anchor_ids=ids,
        server_round=server_round,
        linked_ids=read_linked_ids(msg),
    )
    _save_upload_labels(config, context, agent, server_round, rows)
    releases = release_counts(context, agent.n_train)
    codes, epsilon = _outgoing_codes(
        trainer, agent, n_classes, config, rows, releases, server_round
    )
    if epsilon is not None:
        losses[P.DP_EPSILON] = epsilon
    _keep_round_state(
        context, config, agent.agent_id, server_round, trainer, releases, rows
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
        shared_arrays=_shared_upload(trainer, config),
    )


def _train_locally(
    msg: Message,
    context: Context,
    config: RunConfig,
    agent: AgentData,
    n_classes: int,
    anchor_ids: np.ndarray | None,
) -> tuple[LocalTrainer, dict[str, float]]:
    """Restore the agent's trainer, load what the server sent, train; the trainer
    and its losses (with ``link-floor`` where the link floor applies)."""
    targets = read_mix_targets(msg, context)
    if targets is not None and config.label_cost:
        targets = drop_label_block(targets, latent_width(config, n_classes), n_classes)
    floored = None
    if targets is not None and _link_floor_applies(config, anchor_ids):
        floored = _below_link_floor(msg, agent.n_train, n_classes, config)
        targets = None if floored else targets
    trainer = restore_trainer(config, agent, n_classes, context)
    load_global_parameters(msg, trainer, config)
    losses = trainer.train(config.local_epochs, targets)
    if floored is not None:
        losses[P.KEY_LINK_FLOOR] = float(floored)
    return trainer, losses


def _link_floor_applies(config: RunConfig, anchor_ids: np.ndarray | None) -> bool:
    """Whether a party judges its links (:mod:`otm_flower.link_floor`): it holds
    linked-record ids and the server reports which met (``link-feedback``)."""
    return (
        config.min_links_per_cluster > 0
        and config.link_feedback
        and anchor_ids is not None
    )


def _below_link_floor(
    msg: Message, n_train: int, n_clusters: int, config: RunConfig
) -> bool:
    """Whether the party's confirmed links, after the rounds before this one,
    put its estimated linked records below the floor."""
    confirmed = read_linked_ids(msg)
    return below_link_floor(
        0 if confirmed is None else len(confirmed),
        upload_size(msg, n_train) / n_train,
        _server_round(msg) - 1,
        n_clusters,
        config.min_links_per_cluster,
    )


def _outgoing_codes(
    trainer: LocalTrainer,
    agent: AgentData,
    n_classes: int,
    config: RunConfig,
    rows: np.ndarray,
    releases: np.ndarray,
    server_round: int,
) -> tuple[np.ndarray, float | None]:
    """The codes of ``rows`` as they leave the agent, and the DP epsilon spent
    (``None`` without local DP); ``releases`` is updated in place."""
    codes = trainer.encode(agent.x_train[rows])
    epsilon = None
    if config.dp_clip > 0:  # local DP: only clipped, noised codes leave the agent
        codes, epsilon = privatize_codes(
            codes,
            rows,
            releases,
            config,
            agent_id=agent.agent_id,
            server_round=server_round,
            n_linked=_linked_rows(agent, config),
        )
    if config.label_cost:  # the class of each uploaded code, in the clear
        if agent.y_train is None:
            raise ValueError("label-cost-weight > 0 needs labels (label-column)")
        codes = append_label_block(
            codes, agent.y_train[rows], n_classes, config.label_cost_weight
        )
    return codes, epsilon


def _linked_rows(agent: AgentData, config: RunConfig) -> int:
    """How many of the agent's training rows carry a linked-record id."""
    ids = agent_anchor_ids(agent, config)
    return 0 if ids is None else int(np.sum(ids >= 0))


def _save_upload_labels(
    config: RunConfig,
    context: Context,
    agent: AgentData,
    server_round: int,
    rows: np.ndarray,
) -> None:
    """Write the uploaded rows' labels for the simulator's diagnostics, when on
    (a local file; never in a message)."""
    folder = diagnostics_dir(config.diagnostics_dir, context.run_id)
    if folder is not None and agent.y_train is not None:
        save_upload_labels(folder, agent.agent_id, server_round, agent.y_train[rows])


def _keep_round_state(
    context: Context,
    config: RunConfig,
    agent_id: int,
    server_round: int,
    trainer: LocalTrainer,
    releases: np.ndarray,
    rows: np.ndarray,
) -> None:
    """Keep the trainer and release counts in ``context.state`` and, with
    ``checkpoint-dir``, in the agent's checkpoint."""
    state = trainer.state_bytes()
    keep_agent_state(context, state, releases.tolist())
    if config.checkpoint_dir:
        checkpoint_agent(
            config,
            agent_id,
            server_round,
            state,
            releases.tolist(),
            [int(r) for r in rows],
            run_id=context.run_id,
        )


def _shared_upload(
    trainer: LocalTrainer, config: RunConfig
) -> dict[str, np.ndarray] | None:
    """The trained shared parameters a hybrid uploads; ``None`` for other methods."""
    if config.shared_parameters == "none":
        return None
    return shared_parameters(trainer.model, config.shared_parameters)


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


def handle_evaluate(msg: Message, context: Context, config: RunConfig) -> Message:
    """Cluster (and classify) the agent's own test codes; reply with metrics only.

    In the run's last round the agent also writes its model (see
    :func:`clients.model_out.save_model`).
    """
    server_round = _server_round(msg)
    agent, n_classes = agent_for_node(config, dict(context.node_config))
    restore_agent_checkpoint(
        config, agent.agent_id, context, server_round, evaluating=True
    )
    trainer = restore_trainer(config, agent, n_classes, context)
    load_global_parameters(msg, trainer, config)  # scored with the global layers
    scored = score_agent(trainer, agent, n_classes, config)
    if server_round >= config.num_server_rounds:
        from .model_out import save_model  # the last round only

        save_model(context, config, trainer, agent, scored)
    metrics: dict[str, int | float] = {**scored.metrics, **agent_facts(agent)}
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
        if run.method == "fedavg":
            from .fedavg import handle_fedavg_train

            return handle_fedavg_train(msg, context, run)
        return handle_train(msg, context, run)

    @app.query(P.QUERY_IDENTIFY)
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
            from .fedavg import handle_fedavg_evaluate

            return handle_fedavg_evaluate(msg, context, run)
        return handle_evaluate(msg, context, run)

    return app
