"""OTMStrategy: a Flower message-API strategy that mixes agents' latent codes."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.serverapp.strategy.strategy_utils import sample_nodes
from flwr.supercore import log

from otm_flower import protocol as P
from otm_flower.anchored import anchored_fgw_barycenter
from otm_flower.averaging import (
    KEY_SHARING,
    SHARED_RECORD,
    validate_shared,
    weighted_average,
)
from otm_flower.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from otm_flower.mixer import (
    BarycenterResult,
    mix_and_pull_back,
    mix_targets,
    resolve_device,
)
from otm_flower.screening import screen_clouds

MixCallback = Callable[[int, list[int], BarycenterResult], None]
SHARING = ("none", "all", "head")


class _Upload:
    """One agent's accepted train reply, while a round is aggregated."""

    __slots__ = ("node_id", "codes", "metrics", "anchors", "shared", "weight")

    def __init__(
        self,
        node_id: int,
        codes: np.ndarray,
        metrics: MetricRecord,
        anchors: np.ndarray | None,
        shared: dict[str, np.ndarray] | None,
        weight: float,
    ) -> None:
        self.node_id = node_id
        self.codes = codes
        self.metrics = metrics
        self.anchors = anchors
        self.shared = shared
        self.weight = weight


class OTMStrategy(Strategy):
    """Optimal-transport latent mixing (OTM) over agents that each hold one modality.

    Each round, every sampled agent trains locally and replies with the latent codes
    of a fresh batch of its own training rows. The strategy computes a stochastic
    fused Gromov-Wasserstein barycenter of those code clouds, mixes the agents'
    projections with Dirichlet weights, and sends each agent, in the next round,
    only its own pulled-back mixed codes (and pulled-back barycenter). No model
    parameters are exchanged, except by the hybrids ``otm-fedavg`` / ``otm-head``
    (``share``). See ``docs/protocol.md`` for the message format.

    Parameters
    ----------
    fraction_train : float (default: 1.0)
        Fraction of connected nodes sampled for training each round.
    fraction_evaluate : float (default: 1.0)
        Fraction of connected nodes sampled for evaluation each round.
    min_available_nodes : int (default: 2)
        Nodes to wait for before a round starts.
    min_agents : int (default: 2)
        Fewest valid code uploads needed to mix; below it the round's mixing is
        skipped (agents then train without a mix term next round).
    outlier_factor : float (default: 10.0)
        Uploads whose spread or centroid is off the agents' median by more than
        this factor are left out of the round (see
        :func:`otm_flower.screening.screen_clouds`); ``0`` disables screening.
    mix_batch_size : int (default: 256)
        Codes each agent uploads per round (upper bound; larger uploads are rejected).
    latent_dim : int, optional
        Expected latent dimension; ``None`` takes the first valid upload's.
    alpha : float (default: 0.5)
        Weight of the structure (Gromov) term in the FGW cost.
    variant : {"fgw", "w", "gw"} (default: "fgw")
        Fused, Wasserstein-only or Gromov-Wasserstein-only barycenter.
    barycenter_iterations : int (default: 5)
        Barycenter updates per round.
    solver : {"exact", "fast"} (default: "fast")
        The fast solver of :mod:`otm_flower.fast_fgw` (entropic conditional
        gradient, warm starts, exact assignment polish; see
        ``docs/performance.md``), or the exact conditional-gradient FGW (POT).
    device : str (default: "cpu")
        Torch device of the fast solver: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"auto"`` (CUDA when available); see
        :func:`otm_flower.mixer.resolve_device`.
    concentration : float (default: 0.5)
        Dirichlet concentration of the mixing weights.
    own_only : bool (default: False)
        Ablation ``otm-nomix``: send each agent its own projection instead of a
        mix, keeping the rest of the protocol.
    align_frames : bool (default: False)
        Mix in each agent's own latent frame (run config ``mix-frame = "own"``):
        other agents' projections are first mapped onto the agent's own by a
        similarity Procrustes fit (:func:`otm_flower.mixer.align_projection`).
    seed : int (default: 0)
        Seeds the barycenter initialisation and the mixing weights per round.
    on_mix : callable, optional
        Called as ``on_mix(server_round, node_ids, result)`` after each mixing, e.g.
        to record diagnostics in a simulation.
    anchor_weight : float (default: 30.0)
        When agents upload shared anchor ids (``anchor-rate``), the barycenter is
        :func:`otm_flower.anchored.anchored_fgw_barycenter` with this weight of
        its anchor-profile cost (the exact solver, whatever ``solver`` says).
    checkpoint_dir : str, optional
        When set, the strategy's state (metrics so far, every agent's pending
        mix targets and the latest parameter average) is written there after each
        round's evaluation; see :meth:`resume_from`.
    share : {"none", "all", "head"} (default: "none")
        Also federated-average parameters every round (``otm-fedavg``: ``"all"``,
        what ``WAE.shared_state`` returns; ``otm-head``: ``"head"``, the task head
        only). Every accepted train reply must then carry ArrayRecord
        :data:`otm_flower.averaging.SHARED_RECORD` with finite float arrays of the
        same keys and shapes; the strategy averages those of the replies it mixes,
        weighted by ``num-examples``, and sends the average with every later
        ``train`` and ``evaluate`` message. Replies with NaN/Inf or mismatched
        arrays are rejected whole (their codes are not mixed either).
    label_cost : bool (default: False)
        Uploads carry a label block after their ``latent_dim`` latent columns
        (run config ``label-cost-weight`` > 0): codes must then be wider than
        ``latent_dim`` and every agent's as wide as the first accepted width;
        they are mixed unchanged.
    """

    def __init__(
        self,
        *,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_available_nodes: int = 2,
        min_agents: int = 2,
        outlier_factor: float = 10.0,
        mix_batch_size: int = 256,
        latent_dim: int | None = None,
        alpha: float = 0.5,
        variant: str = "fgw",
        barycenter_iterations: int = 5,
        solver: str = "fast",
        device: str = "cpu",
        concentration: float = 0.5,
        own_only: bool = False,
        align_frames: bool = False,
        seed: int = 0,
        on_mix: MixCallback | None = None,
        checkpoint_dir: str | None = None,
        anchor_weight: float = 30.0,
        share: str = "none",
        label_cost: bool = False,
    ) -> None:
        if not 0.0 < fraction_train <= 1.0 or not 0.0 <= fraction_evaluate <= 1.0:
            raise ValueError(
                "fraction_train must be in (0, 1], fraction_evaluate in [0, 1]"
            )
        if share not in SHARING:
            raise ValueError(f"share must be one of {SHARING}, got {share!r}")
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self.min_available_nodes = min_available_nodes
        self.min_agents = min_agents
        self.outlier_factor = outlier_factor
        self.mix_batch_size = mix_batch_size
        self.latent_dim = latent_dim
        self.alpha = alpha
        self.variant = variant
        self.barycenter_iterations = barycenter_iterations
        self.solver = solver
        self.device = resolve_device(device, solver)
        self.concentration = concentration
        self.own_only = own_only
        self.align_frames = align_frames
        self.seed = seed
        self.on_mix = on_mix
        self.checkpoint_dir = checkpoint_dir
        self.anchor_weight = anchor_weight
        self.share = share
        self.label_cost = label_cost
        # Width of label-extended uploads, fixed by the first accepted round.
        self.code_width: int | None = None
        # Latest example-weighted average of the shared parameters (share != none).
        self.shared: dict[str, np.ndarray] | None = None
        # Rounds completed before a resumed run started (Flower counts from 1).
        self.round_offset = 0
        # Targets of a resumed run, by agent id, until nodes are identified.
        self._resumed_targets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # Per-node targets from the latest mixing, delivered in the next round.
        self._targets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.bytes_up = 0
        self.bytes_down = 0
        self.mix_seconds: list[float] = []
        self.rejected: list[tuple[int, int, str]] = []
        self.agent_metrics: dict[int, dict[int, dict[str, float]]] = {}
        # node id -> the agent id it reports (for logs and simulator diagnostics)
        self.node_agents: dict[int, int] = {}
        # agent id -> its latest training metrics (losses, dp-epsilon, ...)
        self.train_metrics: dict[int, dict[str, float]] = {}

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
            self.variant,
            self.alpha,
            self.barycenter_iterations,
            self.concentration,
            self.mix_batch_size,
            self.min_agents,
        )

    # ---------------------------------------------------------------- training
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send each sampled agent the round config and its own mixed codes."""
        server_round += self.round_offset
        node_ids = self._sample(grid, self.fraction_train, server_round)
        log(
            INFO,
            "configure_train: %d agents, %d with mixed codes",
            len(node_ids),
            sum(n in self._targets for n in node_ids),
        )
        messages = []
        for node_id in node_ids:
            content = RecordDict(
                {P.CONFIG_RECORD: self._round_config(config, server_round)}
            )
            if node_id in self._targets:
                mixed, barycenter = self._targets[node_id]
                payload = ArrayRecord(
                    {
                        P.KEY_MIXED: Array(mixed.astype(np.float32)),
                        P.KEY_BARYCENTER: Array(barycenter.astype(np.float32)),
                    }
                )
                self.bytes_down += 4 * (mixed.size + barycenter.size)
                content[P.CODES_RECORD] = payload
            self._attach_shared(content)
            messages.append(
                Message(
                    content=content, message_type=MessageType.TRAIN, dst_node_id=node_id
                )
            )
        self._targets = {}
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Validate uploaded codes, mix them, and keep each agent's targets.

        With ``share``, also average the accepted replies' shared parameters
        (kept for the next round's messages; returned as the round's arrays).
        """
        server_round += self.round_offset
        uploads: list[_Upload] = []
        for msg in replies:
            node_id = msg.metadata.src_node_id
            try:
                upload = self._read_train_reply(msg)
            except (P.ProtocolError, KeyError, TypeError) as err:
                self._reject(server_round, node_id, str(err))
                continue
            if self.latent_dim is None:
                self.latent_dim = upload.codes.shape[1]
            uploads.append(upload)
            record = upload.metrics
            if isinstance(agent_id := record.get(P.KEY_AGENT), int):
                self.node_agents[node_id] = agent_id
                self.train_metrics[agent_id] = {
                    k: float(v) for k, v in record.items() if isinstance(v, int | float)
                }
        # A fixed agent order (not arrival order) keeps runs reproducible.
        uploads.sort(
            key=lambda u: (self.node_agents.get(u.node_id, u.node_id), u.node_id)
        )
        uploads = self._check_consistency(server_round, uploads)
        reasons = screen_clouds([u.codes for u in uploads], self.outlier_factor)
        for upload, reason in zip(uploads, reasons, strict=True):
            if reason is not None:
                self._reject(server_round, upload.node_id, reason)
        uploads = [u for u, r in zip(uploads, reasons, strict=True) if r is None]
        node_ids = [u.node_id for u in uploads]
        codes = [u.codes for u in uploads]
        metrics = [u.metrics for u in uploads]
        anchors = [u.anchors for u in uploads]
        arrays = self._average(server_round, uploads)
        if len(codes) >= max(self.min_agents, 1):
            self._mix(server_round, node_ids, codes, anchors)
        else:
            log(
                WARNING,
                "round %d: %d valid uploads (< min-agents %d); mixing skipped",
                server_round,
                len(codes),
                self.min_agents,
            )
        return arrays, _mean_metrics(metrics)

    def _check_consistency(
        self, server_round: int, uploads: list[_Upload]
    ) -> list[_Upload]:
        """Reject uploads unlike the others: code width (label block) and shared
        arrays' keys and shapes (against the current average, else the most
        common keys and shapes of the round)."""
        if self.label_cost and uploads:
            width = self.code_width
            if width is None:  # the most common width (ties: the narrowest)
                values, counts = np.unique(
                    [u.codes.shape[1] for u in uploads], return_counts=True
                )
                width = int(values[np.argmax(counts)])
            kept = []
            for upload in uploads:
                if upload.codes.shape[1] == width:
                    kept.append(upload)
                else:
                    self._reject(
                        server_round,
                        upload.node_id,
                        f"codes have {upload.codes.shape[1]} columns, the other "
                        f"agents' {width} (latent-dim {self.latent_dim} + one label "
                        "column per class)",
                    )
            uploads = kept
            if uploads:
                self.code_width = width
        if self.share == "none" or not uploads:
            return uploads
        reference = self.shared
        if reference is None:  # the most common keys and shapes (ties: first)
            signatures = [_signature(u.shared or {}) for u in uploads]
            best = max(signatures, key=signatures.count)
            reference = uploads[signatures.index(best)].shared
        kept = []
        for upload in uploads:
            assert upload.shared is not None
            try:
                validate_shared(upload.shared, scope=self.share, reference=reference)
            except P.ProtocolError as err:
                self._reject(server_round, upload.node_id, str(err))
                continue
            kept.append(upload)
        return kept

    def _average(self, server_round: int, uploads: list[_Upload]) -> ArrayRecord | None:
        """Example-weighted average of the accepted uploads' shared parameters;
        keeps the previous average when no upload is left."""
        if self.share == "none":
            return None
        if uploads:
            shared = [u.shared for u in uploads if u.shared is not None]
            self.shared = weighted_average(shared, [u.weight for u in uploads])
            log(
                INFO,
                "round %d: averaged %s parameters of %d agents (%d arrays)",
                server_round,
                self.share,
                len(uploads),
                len(self.shared),
            )
        elif self.shared is not None:
            log(
                WARNING,
                "round %d: no accepted parameters; the previous average stays",
                server_round,
            )
        if self.shared is None:
            return None
        return ArrayRecord({k: Array(v) for k, v in self.shared.items()})

    def _attach_shared(self, content: RecordDict) -> None:
        """Add the latest parameter average to a message (and count its bytes)."""
        if self.share == "none" or self.shared is None:
            return
        content[SHARED_RECORD] = ArrayRecord(
            {key: Array(value) for key, value in self.shared.items()}
        )
        self.bytes_down += sum(v.nbytes for v in self.shared.values())

    def _read_train_reply(self, msg: Message) -> _Upload:
        if msg.has_error():
            raise P.ProtocolError(f"agent failed: {msg.error.reason}")
        content = msg.content
        if P.CODES_RECORD not in content.array_records:
            raise P.ProtocolError(f"reply has no ArrayRecord {P.CODES_RECORD!r}")
        if P.METRICS_RECORD not in content.metric_records:
            raise P.ProtocolError(f"reply has no MetricRecord {P.METRICS_RECORD!r}")
        array_record = content.array_records[P.CODES_RECORD]
        if P.KEY_CODES not in array_record:
            raise P.ProtocolError(
                f"record {P.CODES_RECORD!r} has no array {P.KEY_CODES!r}"
            )
        raw = array_record[P.KEY_CODES].numpy()
        width = None if self.label_cost else self.latent_dim
        codes = P.validate_codes(raw, width, self.mix_batch_size)
        if self.label_cost and self.latent_dim is not None:
            if codes.shape[1] <= self.latent_dim:
                raise P.ProtocolError(
                    f"codes have {codes.shape[1]} columns; with label-cost-weight > "
                    f"0 they need latent-dim {self.latent_dim} + one per class"
                )
        self.bytes_up += raw.nbytes
        ids = None
        if P.KEY_ANCHORS in array_record:
            raw_ids = array_record[P.KEY_ANCHORS].numpy()
            ids = P.validate_anchor_ids(raw_ids, len(codes))
            self.bytes_up += raw_ids.nbytes
        metrics = content.metric_records[P.METRICS_RECORD]
        shared = None
        weight = 1.0
        if self.share != "none":
            if SHARED_RECORD not in content.array_records:
                raise P.ProtocolError(
                    f"reply has no ArrayRecord {SHARED_RECORD!r} "
                    f"(this run averages {self.share!r} parameters)"
                )
            record = content.array_records[SHARED_RECORD]
            raw_shared = {key: array.numpy() for key, array in record.items()}
            self.bytes_up += sum(v.nbytes for v in raw_shared.values())
            shared = validate_shared(raw_shared, scope=self.share)
            count = metrics.get(P.KEY_NUM_EXAMPLES)
            if (
                not isinstance(count, int | float)
                or isinstance(count, bool)
                or not count > 0
            ):
                raise P.ProtocolError(
                    f"metric {P.KEY_NUM_EXAMPLES!r} must be a positive number to "
                    f"weight the average, got {count!r}"
                )
            weight = float(count)
        return _Upload(msg.metadata.src_node_id, codes, metrics, ids, shared, weight)

    def _mix(
        self,
        server_round: int,
        node_ids: list[int],
        codes: list[np.ndarray],
        anchors: list[np.ndarray | None] | None = None,
    ) -> None:
        start = time.perf_counter()
        linked = anchors is not None and any(a is not None for a in anchors)
        # Fallback order: the configured barycenter, then a plain Wasserstein one.
        variants = [self.variant] + (["w"] if self.variant != "w" else [])
        outcome = None
        for variant in variants:
            try:
                if linked and variant == self.variant:
                    assert anchors is not None
                    outcome = self._anchored_mix(server_round, codes, anchors, variant)
                else:
                    outcome = mix_and_pull_back(
                        codes,
                        rng=np.random.default_rng([self.seed, server_round]),
                        concentration=self.concentration,
                        own_only=self.own_only,
                        align=self.align_frames,
                        alpha=self.alpha,
                        variant=variant,  # type: ignore[arg-type]
                        n_iter=self.barycenter_iterations,
                        solver=self.solver,  # type: ignore[arg-type]
                        device=self.device,
                        seed=self.seed * 100_003 + server_round,
                    )
                break
            except Exception as err:  # noqa: BLE001 - a solver failure must not end the run
                log(
                    WARNING,
                    "round %d: %s barycenter failed (%s: %s)%s",
                    server_round,
                    variant,
                    type(err).__name__,
                    err,
                    "; falling back to a Wasserstein barycenter"
                    if variant != variants[-1]
                    else "; agents train without mix targets next round",
                )
        if outcome is None:
            return
        result, mixed, barycenter = outcome
        elapsed = time.perf_counter() - start
        self.mix_seconds.append(elapsed)
        for node_id, mixed_k, bary_k in zip(node_ids, mixed, barycenter, strict=True):
            if np.isfinite(mixed_k).all() and np.isfinite(bary_k).all():
                self._targets[node_id] = (mixed_k, bary_k)
            else:
                log(
                    WARNING,
                    "round %d: mixed codes for node %d not finite; withheld",
                    server_round,
                    node_id,
                )
        log(
            INFO,
            "round %d: mixed %d agents' codes in %.2f s (objective %.4f)",
            server_round,
            len(codes),
            elapsed,
            result.objective,
        )
        if self.on_mix is not None:
            self.on_mix(server_round, node_ids, result)

    # -------------------------------------------------------------- evaluation
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Ask agents to evaluate their own encoders on their own test data."""
        server_round += self.round_offset
        if self.fraction_evaluate == 0.0:
            return []
        messages = []
        for node_id in self._sample(grid, self.fraction_evaluate, server_round):
            record = RecordDict(
                {P.CONFIG_RECORD: self._round_config(config, server_round)}
            )
            self._attach_shared(record)  # scored with the global shared layers
            messages.append(
                Message(
                    content=record,
                    message_type=MessageType.EVALUATE,
                    dst_node_id=node_id,
                )
            )
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Keep each agent's metrics and return their mean over agents."""
        server_round += self.round_offset
        per_agent: dict[int, dict[str, float]] = {}
        for msg in replies:
            node_id = msg.metadata.src_node_id
            if msg.has_error() or P.METRICS_RECORD not in msg.content.metric_records:
                reason = msg.error.reason if msg.has_error() else "no metrics record"
                self._reject(server_round, node_id, f"evaluation: {reason}")
                continue
            record = msg.content.metric_records[P.METRICS_RECORD]
            values = {
                k: float(v) for k, v in record.items() if isinstance(v, int | float)
            }
            per_agent[int(values.get(P.KEY_AGENT, node_id))] = values
        self.agent_metrics[server_round] = per_agent
        if self.checkpoint_dir:
            self.write_checkpoint(server_round)
        if not per_agent:
            return None
        for agent_id in sorted(per_agent):
            log(INFO, "  agent %d: %s", agent_id, _format_scores(per_agent[agent_id]))
        mean = _mean_metrics(
            list(per_agent.values()),
            keys=("acc", "nmi", "ari", "accuracy"),
        )
        log(
            INFO,
            "round %d mean over %d agents: %s",
            server_round,
            len(per_agent),
            _format_scores(dict(mean)),
        )
        return mean

    def _anchored_mix(
        self,
        server_round: int,
        codes: list[np.ndarray],
        anchors: list[np.ndarray | None],
        variant: str,
    ) -> tuple[BarycenterResult, list[np.ndarray], list[np.ndarray]]:
        """Barycenter pinned on the shared anchor ids, then the usual mixing."""
        ids = [
            np.full(len(z), -1, dtype=np.int64) if a is None else a
            for z, a in zip(codes, anchors, strict=True)
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # fallback logged below
            result = anchored_fgw_barycenter(
                codes,
                ids,
                alpha=self.alpha,
                variant=variant,  # type: ignore[arg-type]
                n_iter=self.barycenter_iterations,
                seed=self.seed * 100_003 + server_round,
                anchor_weight=self.anchor_weight,
            )
        log(
            INFO,
            "round %d: %s",
            server_round,
            f"anchored on {len(result.anchor_ids)} shared ids"
            if result.anchored
            else f"too few shared ids ({result.fallback_reason}); unanchored",
        )
        mixed, barycenter = mix_targets(
            result,
            codes,
            concentration=self.concentration,
            rng=np.random.default_rng([self.seed, server_round]),
            own_only=self.own_only,
            align=self.align_frames,
        )
        return result, mixed, barycenter

    # ------------------------------------------------------------- checkpoints
    def write_checkpoint(self, server_round: int) -> None:
        """Write the state after ``server_round`` to ``checkpoint_dir``."""
        assert self.checkpoint_dir is not None
        arrays: dict[str, np.ndarray] = {}
        for node_id, (mixed, barycenter) in self._targets.items():
            agent = self.node_agents.get(node_id)
            if agent is None:  # cannot be re-addressed after a restart
                continue
            arrays[f"mixed-{agent}"] = mixed
            arrays[f"barycenter-{agent}"] = barycenter
        for key, value in (self.shared or {}).items():
            arrays[f"shared-{key}"] = value
        meta = {
            "round": server_round,
            "latent_dim": self.latent_dim,
            "code_width": self.code_width,
            "share": self.share,
            "shared_keys": None if self.shared is None else list(self.shared),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "mix_seconds": self.mix_seconds,
            "rejected": [list(r) for r in self.rejected],
            "agent_metrics": {
                str(r): {str(a): m for a, m in agents.items()}
                for r, agents in self.agent_metrics.items()
            },
            "train_metrics": {str(a): m for a, m in self.train_metrics.items()},
        }
        write_checkpoint(self.checkpoint_dir, "server", meta, arrays)

    def resume_from(self, folder: str) -> int:
        """Load the state a previous run checkpointed in ``folder``.

        The next round is numbered after the checkpointed one (start this strategy
        with the remaining rounds); mix targets reach their agents once
        :meth:`bind_agents` has learnt which node holds which agent.

        Returns
        -------
        int
            The last completed round.

        Raises
        ------
        CheckpointError
            When the checkpoint is missing or unreadable.
        """
        meta, arrays, _ = read_checkpoint(folder, "server")
        share = meta.get("share", "none")
        if share != self.share:
            raise CheckpointError(
                f"checkpoint in {folder} averages {share!r} parameters, this run "
                f"{self.share!r}: resume with the same method"
            )
        self.round_offset = int(meta["round"])
        self.latent_dim = meta["latent_dim"]
        self.code_width = meta.get("code_width")
        keys = meta.get("shared_keys")
        self.shared = (
            None if keys is None else {key: arrays[f"shared-{key}"] for key in keys}
        )
        self.bytes_up = int(meta["bytes_up"])
        self.bytes_down = int(meta["bytes_down"])
        self.mix_seconds = [float(s) for s in meta["mix_seconds"]]
        self.rejected = [(int(r), int(n), str(why)) for r, n, why in meta["rejected"]]
        self.agent_metrics = {
            int(r): {int(a): dict(m) for a, m in agents.items()}
            for r, agents in meta["agent_metrics"].items()
        }
        self.train_metrics = {int(a): dict(m) for a, m in meta["train_metrics"].items()}
        self._resumed_targets = {
            int(key.split("-", 1)[1]): (
                arrays[key],
                arrays[f"barycenter-{key.split('-', 1)[1]}"],
            )
            for key in arrays
            if key.startswith("mixed-")
        }
        return self.round_offset

    def bind_agents(self, node_agents: Mapping[int, int]) -> None:
        """Record which node holds which agent; route resumed targets to them."""
        self.node_agents.update(node_agents)
        for node_id, agent in node_agents.items():
            if agent in self._resumed_targets:
                self._targets[node_id] = self._resumed_targets.pop(agent)

    # ----------------------------------------------------------------- helpers
    def _sample(self, grid: Grid, fraction: float, server_round: int) -> list[int]:
        """Wait for ``min_available_nodes``, then draw ``fraction`` of the nodes
        (at least ``min_available_nodes``), seeded by ``(seed, round)``."""
        _, available = sample_nodes(grid, self.min_available_nodes, 0)
        nodes = sorted(available)
        size = min(
            len(nodes), max(round(len(nodes) * fraction), self.min_available_nodes)
        )
        if size >= len(nodes):
            return nodes
        rng = np.random.default_rng([self.seed, server_round, 29])
        return sorted(int(n) for n in rng.choice(nodes, size, replace=False))

    def _round_config(self, config: ConfigRecord, server_round: int) -> ConfigRecord:
        out = ConfigRecord(dict(config))
        out[P.KEY_ROUND] = server_round
        out[P.KEY_VERSION] = P.PROTOCOL_VERSION
        out[P.KEY_MIX_BATCH] = self.mix_batch_size
        if self.share != "none":
            out[KEY_SHARING] = self.share
        return out

    def _reject(self, server_round: int, node_id: int, reason: str) -> None:
        self.rejected.append((server_round, node_id, reason))
        log(WARNING, "round %d: node %d left out: %s", server_round, node_id, reason)


def _signature(arrays: Mapping[str, np.ndarray]) -> tuple[tuple[str, tuple], ...]:
    """Keys and shapes of a set of arrays (to find the agents' common layout)."""
    return tuple(sorted((key, np.shape(value)) for key, value in arrays.items()))


def _format_scores(metrics: Mapping[str, Any]) -> str:
    """``ACC 0.612  NMI 0.598 ...`` for the score keys present."""
    keys = ("acc", "nmi", "ari", "accuracy")
    return "  ".join(
        f"{k.upper()} {float(metrics[k]):.3f}" for k in keys if k in metrics
    )


def _mean_metrics(
    records: Iterable[Mapping[str, Any]], keys: Iterable[str] | None = None
) -> MetricRecord:
    """Unweighted mean over records of each scalar key (present in any record)."""
    wanted = set(keys) if keys is not None else None
    sums: dict[str, list[float]] = {}
    for record in records:
        for key, value in record.items():
            if not isinstance(value, int | float) or key == P.KEY_AGENT:
                continue
            if wanted is None or key in wanted:
                sums.setdefault(key, []).append(float(value))
    means: dict[str, int | float | list[int] | list[float]] = {
        k: float(np.mean(v)) for k, v in sums.items()
    }
    return MetricRecord(means)
