"""OTMStrategy: a Flower message-API strategy that mixes agents' latent codes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from logging import INFO, WARNING
from typing import TYPE_CHECKING

from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.supercore import log

from otm_flower import protocol as P
from otm_flower.averaging import AGGREGATIONS, aggregate_shared
from otm_flower.code_mixer import CodeMixer
from otm_flower.mixer import BarycenterResult

from .rejoin import RejoiningGrid, bind, identify_nodes
from .replies import (
    RejectedReply,
    Rejection,
    Upload,
    check_code_width,
    check_shared_layout,
    read_evaluate_reply,
    read_train_reply,
    scalar_metrics,
    screen_uploads,
)
from .state import ServerState
from .utils import (
    SCORE_KEYS,
    arrays_record,
    log_mix,
    log_scores,
    mean_metrics,
    round_config,
    sample_seeded,
    targets_record,
    timed_phase,
)

if TYPE_CHECKING:
    from otm_flower.config import RunConfig

MixCallback = Callable[[int, list[int], BarycenterResult], None]
SHARING = ("none", "all", "head")
#: Keywords of the mixer settings that name a CodeMixer field differently.


class OTMStrategy(Strategy):
    """Optimal-transport latent mixing (OTM) over agents that each hold one modality.

    Each round, every sampled agent trains locally and replies with the latent codes
    of a fresh batch of its own training rows. The ``mixer`` mixes those code clouds
    through a fused Gromov-Wasserstein barycenter, and each agent gets, in the next
    round, only its own pulled-back mixed codes (and pulled-back barycenter). No
    model parameters are exchanged, except by the hybrids ``otm-fedavg`` /
    ``otm-head`` (``share``). See ``docs/protocol.md`` for the message format.

    Parameters
    ----------
    mixer : CodeMixer, optional
        The mixer and its settings (default ``CodeMixer(seed=seed)``).
    fraction_train, fraction_evaluate : float (default: 1.0)
        Fractions of connected nodes sampled for training / evaluation per round.
    min_available_nodes : int (default: 2)
        Nodes to wait for before a round starts (and fewest sampled).
    min_agents : int (default: 2)
        Fewest valid code uploads needed to mix; below it mixing is skipped.
    outlier_factor : float (default: 10.0)
        Screening tolerance (:func:`otm_flower.screening.screen_clouds`); ``0``: off.
    mix_batch_size : int (default: 256)
        Codes each agent uploads per round (larger uploads are rejected).
    latent_dim : int, optional
        Expected latent dimension; ``None`` takes the first valid upload's
        (with ``label_cost``: every width agreeing with the first accepted one).
    seed : int (default: 0)
        Seeds the node sampling per round (and the default mixer).
    share : {"none", "all", "head"} (default: "none")
        Also average parameters every round (``otm-fedavg``: ``"all"``;
        ``otm-head``: ``"head"``): replies then carry ArrayRecord
        :data:`otm_flower.protocol.SHARED_RECORD`, averaged by ``num-examples``
        and sent with every later message; bad arrays reject the whole reply.
    aggregation : {"mean", "median", "trimmed-mean", "krum"} (default: "mean")
        How ``share`` combines the uploads
        (:func:`otm_flower.averaging.aggregate_shared`): the example-weighted mean,
        or Flower's FedMedian / FedTrimmedAvg / Krum rule.
    label_cost : bool (default: False)
        Uploads carry a label block after their ``latent_dim`` columns, as wide
        for every agent as the first accepted width.
    link_feedback : bool (default: True)
        Tell each agent which of the record ids it uploaded another agent's
        accepted upload also carried (ArrayRecord
        :data:`otm_flower.protocol.LINKS_RECORD`), so it uploads those records
        in every later round; ``False``: agents learn nothing of the others' ids.
    checkpoint_dir : str, optional
        Write :attr:`state` there after each round's evaluation
        (see :meth:`resume_from`).
    rejoin_timeout : float (default: 0.0)
        Seconds to wait for a party whose SuperNode left mid-run to connect
        again (as a new node, identified by its agent id); its pending message
        then goes to the new node (:mod:`strategies.rejoin`). ``0``: go on
        without it, as with a party that failed.
    on_mix : callable, optional
        Called as ``on_mix(server_round, node_ids, result)`` after each mixing.

    Attributes
    ----------
    state : ServerState
        Everything kept between rounds; after a run, its metrics and counters.
        Kept per agent (the ``agent-id`` a party reports), not per node: a
        party whose SuperNode restarts with a new node id is the same agent.
    """

    def __init__(
        self,
        *,
        mixer: CodeMixer | None = None,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_available_nodes: int = 2,
        min_agents: int = 2,
        outlier_factor: float = 10.0,
        mix_batch_size: int = 256,
        latent_dim: int | None = None,
        seed: int = 0,
        share: str = "none",
        aggregation: str = "mean",
        label_cost: bool = False,
        link_feedback: bool = True,
        checkpoint_dir: str | None = None,
        rejoin_timeout: float = 0.0,
        on_mix: MixCallback | None = None,
    ) -> None:
        if not 0.0 < fraction_train <= 1.0 or not 0.0 <= fraction_evaluate <= 1.0:
            raise ValueError(
                "fraction_train must be in (0, 1], fraction_evaluate in [0, 1]"
            )
        if share not in SHARING:
            raise ValueError(f"share must be one of {SHARING}, got {share!r}")
        if rejoin_timeout < 0:
            raise ValueError(f"rejoin_timeout must be >= 0, got {rejoin_timeout}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}"
            )
        self.mixer = mixer if mixer is not None else CodeMixer(seed=seed)
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self.min_available_nodes = min_available_nodes
        self.min_agents = min_agents
        self.outlier_factor = outlier_factor
        self.mix_batch_size = mix_batch_size
        self.seed = seed
        self.share = share
        self.aggregation = aggregation
        self.label_cost = label_cost
        self.link_feedback = link_feedback
        self.checkpoint_dir = checkpoint_dir
        self.rejoin_timeout = rejoin_timeout
        self.on_mix = on_mix
        self.state = ServerState(latent_dim=latent_dim)
        self.timeout = 60.0  # of a query to the nodes; the run's, once started
        self._outbox: list[Message] = []  # the round's messages, to name error senders
        self.connected: list[int] = []  # the nodes of the current phase

    @classmethod
    def from_run_config(cls, config: RunConfig, num_agents: int) -> OTMStrategy:
        """The strategy a run config describes, for ``num_agents`` agents.

        Rounds go on with whoever is connected, as long as ``min-agents`` (at
        most ``num_agents``) are; ``checkpoint-dir`` turns checkpoints on.
        """
        min_agents = min(config.min_agents, num_agents)
        return cls(
            mixer=CodeMixer.from_run_config(config),
            fraction_train=config.fraction_train,
            min_available_nodes=min_agents,
            min_agents=min_agents,
            outlier_factor=config.outlier_factor,
            mix_batch_size=config.mix_batch_size,
            latent_dim=config.latent_dim or None,
            seed=config.seed,
            share=config.shared_parameters,
            aggregation=config.parameter_aggregation,
            label_cost=config.label_cost,
            link_feedback=config.link_feedback,
            checkpoint_dir=config.checkpoint_dir or None,
            rejoin_timeout=config.rejoin_timeout,
        )

    def summary(self) -> None:
        """Log the strategy's settings."""
        log(
            INFO,
            "\t├──> Sampling: fraction train %.2f | evaluate %.2f | min nodes %d",
            self.fraction_train,
            self.fraction_evaluate,
            self.min_available_nodes,
        )
        log(
            INFO,
            "\t└──> Mixer: %s barycenter, alpha %.2f, %d iterations, "
            "Dirichlet(%.2f), %d codes per agent, min agents %d",
            self.mixer.variant,
            self.mixer.alpha,
            self.mixer.iterations,
            self.mixer.concentration,
            self.mix_batch_size,
            self.min_agents,
        )

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Flower's ``Strategy.start`` on a :class:`RejoiningGrid` around ``grid``."""
        self.timeout = timeout
        rejoining = RejoiningGrid(grid, self.state.node_agents, self.rejoin_timeout)
        return super().start(
            rejoining,
            initial_arrays,
            num_rounds,
            timeout,
            train_config,
            evaluate_config,
            evaluate_fn,
        )

    # ---------------------------------------------------------------- training
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send each sampled agent the round config and its own mixed codes."""
        server_round += self.state.round_offset
        with timed_phase(self.state.phase_seconds, "train_messages"):
            return self._train_messages(config, grid, server_round)

    def _train_messages(
        self, config: ConfigRecord, grid: Grid, server_round: int
    ) -> list[Message]:
        """The round's training messages, each with its node's mixed codes."""
        node_ids = self._sample(grid, self.fraction_train, server_round)
        targets, self.state.targets = self.state.targets, {}
        log(
            INFO,
            "configure_train: %d agents, %d with mixed codes, %d linked ids known",
            len(node_ids),
            sum(self._agent(n) in targets for n in node_ids),
            sum(len(ids) for ids in self.state.linked.values()),
        )
        messages = []
        for node_id in node_ids:
            content = RecordDict(
                {P.CONFIG_RECORD: self._round_config(config, server_round)}
            )
            if (agent := self._agent(node_id)) in targets:
                mixed, barycenter = targets[agent]
                content[P.CODES_RECORD] = targets_record(mixed, barycenter)
                self.state.bytes_down += 4 * (mixed.size + barycenter.size)
            self._attach_links(content, agent)
            self._attach_shared(content)
            messages.append(
                Message(
                    content=content, message_type=MessageType.TRAIN, dst_node_id=node_id
                )
            )
        self._outbox = messages
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Check the uploaded codes, mix them, and keep each agent's targets.

        With ``share``, also average the accepted replies' shared parameters
        (kept for the next round's messages; returned as the round's arrays).
        """
        server_round += self.state.round_offset
        phases = self.state.phase_seconds
        with timed_phase(phases, "read"):
            uploads = self._read(server_round, replies)
        with timed_phase(phases, "screen"):
            uploads = self._check(server_round, uploads)
        if self.link_feedback:
            self.state.note_links(
                [self._agent(u.node_id) for u in uploads], [u.anchors for u in uploads]
            )
        with timed_phase(phases, "average"):
            arrays = self._average(server_round, uploads)
        if len(uploads) >= max(self.min_agents, 1):
            with timed_phase(phases, "mix"):
                self._mix(server_round, uploads)
        else:
            log(
                WARNING,
                "round %d: %d valid uploads (< min-agents %d); mixing skipped",
                server_round,
                len(uploads),
                self.min_agents,
            )
        return arrays, mean_metrics([u.metrics for u in uploads])

    def _read(self, server_round: int, replies: Iterable[Message]) -> list[Upload]:
        """Readable uploads in agent order; counts their bytes, notes agent ids."""
        state, uploads = self.state, []
        replies = sorted(replies, key=self._sender)
        replied = {self._sender(m) for m in replies}
        for msg in replies:
            node_id = self._sender(msg)
            try:
                upload = read_train_reply(
                    msg,
                    latent_dim=state.latent_dim,
                    max_rows=self.mix_batch_size,
                    label_cost=self.label_cost,
                    share=self.share,
                )
            except RejectedReply as err:
                state.bytes_up += err.nbytes
                state.reject(server_round, node_id, err.reason)
                continue
            state.bytes_up += upload.nbytes
            agent_id = upload.metrics.get(P.KEY_AGENT)
            if isinstance(agent_id, int) and not self._claim(
                server_round, node_id, agent_id, replied
            ):
                continue
            if state.latent_dim is None and not self.label_cost:
                state.latent_dim = upload.codes.shape[1]
            uploads.append(upload)
            if isinstance(agent_id, int):
                state.train_metrics[agent_id] = scalar_metrics(upload.metrics)
        # A fixed agent order (not arrival order) keeps runs reproducible.
        agents = state.node_agents
        return sorted(
            uploads, key=lambda u: (agents.get(u.node_id, u.node_id), u.node_id)
        )

    def _check(self, server_round: int, uploads: list[Upload]) -> list[Upload]:
        """Uploads like the others (code width, shared layout) and not outliers."""
        if self.label_cost:
            width = self.state.code_width
            uploads, rejected, width = check_code_width(
                uploads, width, self.state.latent_dim
            )
            self._reject(server_round, rejected)
            if uploads:
                self.state.code_width = width
        if self.share != "none":
            uploads, rejected = check_shared_layout(
                uploads, self.state.shared, self.share
            )
            self._reject(server_round, rejected)
        uploads, rejected = screen_uploads(uploads, self.outlier_factor)
        self._reject(server_round, rejected)
        return uploads

    def _average(self, server_round: int, uploads: list[Upload]) -> ArrayRecord | None:
        """The uploads' shared parameters combined by ``aggregation`` (default:
        the example-weighted mean); keeps the previous average when no upload is
        left."""
        if self.share == "none":
            return None
        state = self.state
        if uploads:
            shared = [u.shared for u in uploads if u.shared is not None]
            weights = [u.weight for u in uploads]
            state.shared = aggregate_shared(shared, weights, self.aggregation)
            log(
                INFO,
                "round %d: %s of %s parameters of %d agents (%d arrays)",
                server_round,
                self.aggregation,
                self.share,
                len(uploads),
                len(state.shared),
            )
        elif state.shared is not None:
            log(
                WARNING,
                "round %d: no accepted parameters; the previous average stays",
                server_round,
            )
        return None if state.shared is None else arrays_record(state.shared)

    def _mix(self, server_round: int, uploads: list[Upload]) -> None:
        """Mix the uploads' codes; keep each agent's targets for the next round."""
        node_ids = [u.node_id for u in uploads]
        outcome = self.mixer.mix(
            server_round,
            node_ids,
            [u.codes for u in uploads],
            [u.anchors for u in uploads],
        )
        log_mix(server_round, outcome)
        if outcome.result is None:
            return
        self.state.mix_seconds.append(outcome.seconds)
        self.state.targets.update(
            {self._agent(node): t for node, t in outcome.targets.items()}
        )
        if self.on_mix is not None:
            self.on_mix(server_round, node_ids, outcome.result)

    # -------------------------------------------------------------- evaluation
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Ask agents to evaluate their own encoders on their own test data."""
        server_round += self.state.round_offset
        if self.fraction_evaluate == 0.0:
            return []
        with timed_phase(self.state.phase_seconds, "evaluate_messages"):
            return self._evaluate_messages(config, grid, server_round)

    def _evaluate_messages(
        self, config: ConfigRecord, grid: Grid, server_round: int
    ) -> list[Message]:
        """The round's evaluation messages."""
        messages = []
        for node_id in self._sample(grid, self.fraction_evaluate, server_round):
            content = RecordDict(
                {P.CONFIG_RECORD: self._round_config(config, server_round)}
            )
            self._attach_shared(content)  # scored with the global shared layers
            messages.append(
                Message(
                    content=content,
                    message_type=MessageType.EVALUATE,
                    dst_node_id=node_id,
                )
            )
        self._outbox = messages
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Keep each agent's metrics and return their mean over agents."""
        server_round += self.state.round_offset
        with timed_phase(self.state.phase_seconds, "evaluate_replies"):
            return self._scores(server_round, replies)

    def _scores(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Keep each agent's evaluation metrics; their mean over agents."""
        per_agent: dict[int, dict[str, float]] = {}
        replies = sorted(replies, key=self._sender)
        replied = {self._sender(m) for m in replies}
        for msg in replies:
            node_id = self._sender(msg)
            try:
                values = read_evaluate_reply(msg)
            except RejectedReply as err:
                self.state.reject(server_round, node_id, err.reason)
                continue
            agent = int(values.get(P.KEY_AGENT, node_id))
            claimed = P.KEY_AGENT in values
            if claimed and not self._claim(server_round, node_id, agent, replied):
                continue
            per_agent[agent] = values
        self.state.agent_metrics[server_round] = per_agent
        if self.checkpoint_dir:
            self.state.write_checkpoint(self.checkpoint_dir, server_round, self.share)
        if not per_agent:
            return None
        mean = mean_metrics(list(per_agent.values()), keys=SCORE_KEYS)
        log_scores(server_round, per_agent, mean)
        return mean

    # ------------------------------------------------------------------ resume
    def resume_from(self, folder: str) -> int:
        """Continue the run checkpointed in ``folder``; return its last round.

        Start this strategy with the remaining rounds; mix targets reach their
        agents' nodes as :meth:`bind_agents` (or the first query to an unknown
        node) learns which node holds which agent.

        Raises
        ------
        CheckpointError
            When the checkpoint is missing, unreadable or of another ``share``.
        """
        self.state = ServerState.from_checkpoint(folder, self.share)
        return self.state.round_offset

    def bind_agents(self, node_agents: Mapping[int, int]) -> None:
        """Record which node holds which agent."""
        self.state.bind_agents(node_agents)

    # ----------------------------------------------------------------- helpers
    def _sample(self, grid: Grid, fraction: float, server_round: int) -> list[int]:
        """Sorted node ids: ``fraction`` of the nodes, seeded by ``(seed, round)``.

        Waits first for departed parties to rejoin (``rejoin_timeout``); nodes
        not heard from yet are asked which agent they hold, once some are known.
        """
        if isinstance(grid, RejoiningGrid):
            grid.await_missing(self.timeout)
        seed = [self.seed, server_round, 29]
        node_ids = sample_seeded(grid, fraction, self.min_available_nodes, seed)
        self.connected = [int(n) for n in grid.get_node_ids()]
        agents = self.state.node_agents
        unknown = [n for n in node_ids if n not in agents]
        if unknown and agents:
            refused = bind(
                agents, identify_nodes(grid, unknown, self.timeout), self.connected
            )
            for node, agent in refused:
                log(
                    WARNING,
                    "node %d claims agent %d, held by another node",
                    node,
                    agent,
                )
        return node_ids

    def _sender(self, reply: Message) -> int:
        """The node ``reply`` speaks for: for an error the SuperLink wrote (a node
        that went away), the addressee of the message it answers."""
        node = reply.metadata.src_node_id
        if node != SUPERLINK_NODE_ID:
            return node
        answered = reply.metadata.reply_to_message_id
        sent = (m for m in self._outbox if m.metadata.message_id == answered)
        return next((m.metadata.dst_node_id for m in sent), node)

    def _agent(self, node_id: int) -> int:
        """The agent ``node_id`` holds (its node id while it has not said)."""
        return self.state.node_agents.get(node_id, node_id)

    def _claim(
        self, server_round: int, node_id: int, agent: int, replied: set[int]
    ) -> bool:
        """Bind ``node_id`` to the ``agent`` its reply reports; a claim on an
        agent that another connected (or replying) node holds is rejected
        (``False``)."""
        connected = set(self.connected) | replied
        if not bind(self.state.node_agents, {node_id: agent}, connected):
            return True
        holder = next(n for n, a in self.state.node_agents.items() if a == agent)
        self.state.reject(
            server_round, node_id, f"claims agent {agent}, held by node {holder}"
        )
        return False

    def _round_config(self, config: ConfigRecord, server_round: int) -> ConfigRecord:
        return round_config(config, server_round, self.mix_batch_size, self.share)

    def _attach_links(self, content: RecordDict, agent: int) -> None:
        """Add the ids of ``agent``'s records that others uploaded too, if any."""
        linked = self.state.linked.get(agent)
        if linked is None or len(linked) == 0:
            return
        content[P.LINKS_RECORD] = ArrayRecord({P.KEY_LINKED: Array(linked)})
        self.state.bytes_down += linked.nbytes

    def _attach_shared(self, content: RecordDict) -> None:
        """Add the latest parameter average to a message (and count its bytes)."""
        shared = self.state.shared
        if self.share == "none" or shared is None:
            return
        content[P.SHARED_RECORD] = arrays_record(shared)
        self.state.bytes_down += sum(v.nbytes for v in shared.values())

    def _reject(self, server_round: int, rejected: list[Rejection]) -> None:
        for node_id, reason in rejected:
            self.state.reject(server_round, node_id, reason)
