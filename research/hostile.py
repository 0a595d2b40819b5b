"""Hostile parties that pass the server's screening: three attacks.

Each is an experiment switch outside the product, applied to one party (its
``partition-id``) of a simulation through ``simulate(config, mods=[...])``:

* :class:`LookalikeNoiseMod` (client mod): the party replaces the codes it
  uploads by Gaussian noise with its own codes' mean and covariance, so their
  spread and centre look like an honest party's and
  :func:`otm_flower.screening.screen_clouds` passes them. Its linked-record ids
  go up unchanged, so with anchors the noise sits on real anchors.
* :class:`ForgedAnchorsMod` (client mod): the party claims linked-record ids on
  rows that are not those records: ``shuffled`` moves the linked ids it holds
  onto randomly drawn rows of its upload; ``random`` tags every other row with a
  random id.
* :class:`FlipLabels` (data wrapper, through
  :class:`research.corruption.CorruptAgentMod`): the party trains on permuted
  labels (every class shifted to the next one), so the task head it shares with
  ``otm-head`` or ``fedavg`` points every class at a wrong one.

:class:`HeadAccuracyMod` (client mod, every party) adds what such an attack
poisons, for every party as it evaluates: the test accuracy of its own encoder
followed by the shared (averaged) task head, the model a party predicts with,
beside the reported probe ``accuracy``.

Every draw is seeded by (seed, partition, round), so runs are reproducible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

from clients.app import load_global_parameters
from clients.fedavg import _load_global as load_fedavg_global
from clients.node import agent_for_node, restore_trainer
from otm_flower import protocol as P
from otm_flower.config import parse_run_config
from otm_flower.data import AgentData
from otm_flower.training import LocalTrainer

from .corruption import replace_agent

__all__ = [
    "FORGERIES",
    "FlipLabels",
    "ForgedAnchorsMod",
    "HeadAccuracyMod",
    "LookalikeNoiseMod",
    "flip_labels",
    "forge_anchor_ids",
    "head_accuracy",
    "lookalike_noise",
]

#: Kinds of forged linked-record ids (:func:`forge_anchor_ids`).
FORGERIES = ("shuffled", "random")


def lookalike_noise(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian draws with the mean and covariance of ``codes`` (same shape, dtype).

    The codes' spread and centroid are matched in expectation, which is all the
    server's screening compares.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) < 2:
        raise ValueError(f"need an n x d code array with n >= 2, got {codes.shape}")
    mean = codes.mean(axis=0)
    cov = np.atleast_2d(np.cov(codes, rowvar=False))
    draws = rng.multivariate_normal(mean, cov, size=len(codes), method="eigh")
    return draws.astype(codes.dtype)


def forge_anchor_ids(
    ids: np.ndarray, kind: str, rng: np.random.Generator
) -> np.ndarray:
    """Linked-record ids claimed for rows that are not those records.

    Parameters
    ----------
    ids : np.ndarray
        The upload's true ids, one per row (-1: no linked record).
    kind : {"shuffled", "random"}
        ``shuffled``: the ids held are put on a random permutation of the rows
        (each now claims a wrong row, or none). ``random``: the rows without an
        id get random non-negative int64 ids (the true ones stay).

    Returns
    -------
    np.ndarray
        int64, same shape, no id repeated (the protocol refuses repeats).
    """
    if kind not in FORGERIES:
        raise ValueError(f"forgery must be one of {FORGERIES}, got {kind!r}")
    ids = np.asarray(ids, dtype=np.int64)
    if kind == "shuffled":
        return rng.permutation(ids)
    out = ids.copy()
    free = out < 0
    fresh = rng.integers(0, np.iinfo(np.int64).max, size=int(free.sum()))
    out[free] = np.setdiff1d(fresh, ids)[: int(free.sum())]  # no collision
    return out


def _hostile_round(msg: Message, context: Context, partition: int) -> int | None:
    """The server round of a train message to ``partition``, else ``None``."""
    if context.node_config.get("partition-id") != partition:
        return None
    config = msg.content.config_records.get(P.CONFIG_RECORD, ConfigRecord())
    return int(config.get(P.KEY_ROUND, 0))  # type: ignore[arg-type]


def _codes_record(reply: Message) -> ArrayRecord | None:
    """The reply's code upload (ArrayRecord ``otm``), when it has one."""
    if reply.has_error():
        return None
    return reply.content.array_records.get(P.CODES_RECORD)


def _rewrite_upload(
    msg: Message,
    context: Context,
    reply: Message,
    partition: int,
    key: str,
    rewrite: Callable[[np.ndarray, int], np.ndarray],
) -> None:
    """Replace array ``key`` of the hostile party's code upload in ``reply``
    (in place) by ``rewrite(array, server_round)``; other replies stay."""
    server_round = _hostile_round(msg, context, partition)
    record = None if server_round is None else _codes_record(reply)
    if server_round is not None and record is not None and key in record:
        record[key] = Array(rewrite(record[key].numpy(), server_round))


@dataclass(frozen=True)
class LookalikeNoiseMod:
    """Client mod: party ``partition`` uploads :func:`lookalike_noise` codes.

    Parameters
    ----------
    partition : int
        The hostile party (node ``partition-id``).
    seed : int
        Seed of the noise draws.
    """

    partition: int
    seed: int = 0

    def __call__(
        self, msg: Message, context: Context, call_next: ClientAppCallable
    ) -> Message:
        """Pass ``msg`` on; replace the codes of the hostile party's reply."""

        def noise(codes: np.ndarray, server_round: int) -> np.ndarray:
            rng = np.random.default_rng([self.seed, self.partition, server_round, 41])
            return lookalike_noise(codes, rng)

        reply = call_next(msg, context)
        _rewrite_upload(msg, context, reply, self.partition, P.KEY_CODES, noise)
        return reply


@dataclass(frozen=True)
class ForgedAnchorsMod:
    """Client mod: party ``partition`` uploads :func:`forge_anchor_ids` ids.

    Parameters
    ----------
    partition : int
        The hostile party (node ``partition-id``).
    kind : {"shuffled", "random"}
        The forgery.
    seed : int
        Seed of the draws.
    """

    partition: int
    kind: str = "shuffled"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FORGERIES:
            raise ValueError(f"forgery must be one of {FORGERIES}, got {self.kind!r}")

    def __call__(
        self, msg: Message, context: Context, call_next: ClientAppCallable
    ) -> Message:
        """Pass ``msg`` on; forge the ids of the hostile party's reply."""

        def forge(ids: np.ndarray, server_round: int) -> np.ndarray:
            rng = np.random.default_rng([self.seed, self.partition, server_round, 43])
            return forge_anchor_ids(ids, self.kind, rng)

        reply = call_next(msg, context)
        _rewrite_upload(msg, context, reply, self.partition, P.KEY_ANCHORS, forge)
        return reply


def flip_labels(agent: AgentData) -> AgentData:
    """The agent with each training label moved to the next class (cyclically).

    Test labels stay: the agent is scored on the truth.
    """
    if agent.y_train is None:
        raise ValueError(f"agent {agent.agent_id} has no labels to flip")
    classes = np.unique(agent.y_train)
    position = np.searchsorted(classes, agent.y_train)
    flipped = classes[(position + 1) % len(classes)].astype(agent.y_train.dtype)
    return dataclasses.replace(agent, y_train=flipped)


@dataclass(frozen=True)
class FlipLabels:
    """Data wrapper: agent ``agent`` trains on :func:`flip_labels` labels.

    Parameters
    ----------
    agent : int
        Index (agent id) of the hostile agent, ``>= 0``.
    """

    agent: int

    def __post_init__(self) -> None:
        if self.agent < 0:
            raise ValueError(f"hostile agent must be >= 0, got {self.agent}")

    def __call__(self, agents: Sequence[AgentData], seed: int) -> tuple[AgentData, ...]:
        """The agents, agent ``agent`` with flipped training labels.

        Raises
        ------
        ValueError
            When there is no agent ``agent``.
        """
        return replace_agent(agents, self.agent, flip_labels, "hostile agent")


def head_accuracy(trainer: LocalTrainer, agent: AgentData) -> float:
    """Test accuracy of ``trainer``'s encoder followed by its task head.

    Raises
    ------
    ValueError
        When the model has no task head or the agent no test labels.
    """
    head = trainer.model.head
    if head is None or agent.y_test is None:
        raise ValueError(f"agent {agent.agent_id}: no task head or no test labels")
    codes = torch.from_numpy(trainer.encode(agent.x_test))
    with torch.no_grad():
        predicted = head(codes).argmax(dim=1).numpy()
    return float(np.mean(predicted == np.asarray(agent.y_test)))


def _shared_model(msg: Message, context: Context) -> tuple[LocalTrainer, AgentData]:
    """The party's trainer as it evaluates ``msg``: its state after training,
    with the shared parameters the message carries loaded."""
    config = parse_run_config(dict(context.run_config))
    agent, n_classes = agent_for_node(config, dict(context.node_config))
    trainer = restore_trainer(config, agent, n_classes, context)
    if config.method == "fedavg":
        load_fedavg_global(msg, trainer)
    else:
        load_global_parameters(msg, trainer, config)
    return trainer, agent


@dataclass
class HeadAccuracyMod:
    """Client mod: records each party's :func:`head_accuracy` as it evaluates.

    For a classification run with a task head (``otm-head``, ``fedavg``, any
    ``weight-task`` > 0); replies pass unchanged. Place it inside (after) a data
    wrapper's mod, so the party's data is the one it trains on. In-process
    runtime only (the records stay in this object).

    Attributes
    ----------
    scores : dict of int to float
        Agent id -> its head accuracy at its latest evaluation.
    """

    scores: dict[int, float] = field(default_factory=dict)

    def __call__(
        self, msg: Message, context: Context, call_next: ClientAppCallable
    ) -> Message:
        """Pass ``msg`` on; score the shared head of an evaluating party."""
        reply = call_next(msg, context)
        if msg.metadata.message_type != MessageType.EVALUATE or reply.has_error():
            return reply
        trainer, agent = _shared_model(msg, context)
        if trainer.model.head is not None and agent.y_test is not None:
            self.scores[agent.agent_id] = head_accuracy(trainer, agent)
        return reply
