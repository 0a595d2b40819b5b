"""What OTMStrategy keeps from one round to the next, and its checkpoint.

:class:`ServerState` is the strategy's whole run state: the pending mix targets,
the latest parameter average, what the agents reported, and the run's counters.
It is also the run's result object (next to the ``Result`` that Flower's
``Strategy.start`` returns). :meth:`ServerState.write_checkpoint` and
:meth:`ServerState.from_checkpoint` store and restore it with
:mod:`otm_flower.checkpoint` (checkpoint name ``"server"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from logging import WARNING
from pathlib import Path
from typing import Any

import numpy as np
from flwr.supercore import log

from otm_flower.anchors import met_ids
from otm_flower.checkpoint import CheckpointError, read_checkpoint, write_checkpoint

Targets = tuple[np.ndarray, np.ndarray]
CHECKPOINT_NAME = "server"


@dataclass
class ServerState:
    """OTMStrategy's state that outlives a round.

    Attributes
    ----------
    latent_dim : int or None
        Expected latent dimension (``None`` until the first valid upload).
    code_width : int or None
        Width of label-extended uploads, fixed by the first accepted round.
    shared : dict of str to ndarray, or None
        Latest example-weighted average of the shared parameters.
    round_offset : int
        Rounds completed before a resumed run started (Flower counts from 1).
    targets : dict of int to (ndarray, ndarray)
        Per agent id: ``(mixed, barycenter)`` from the latest mixing, sent next
        round to whichever node then holds the agent.
    node_agents : dict of int to int
        Node id -> the agent id it reports (a restarted SuperNode's new node id
        is bound to its agent again, see :mod:`strategies.rejoin`).
    agent_metrics : dict
        ``{round: {agent_id: evaluation metrics}}``.
    train_metrics : dict
        Agent id -> its latest training metrics (losses, dp-epsilon, ...).
    bytes_up, bytes_down : int
        Payload bytes received from and sent to agents.
    mix_seconds : list of float
        Wall time of each round's mixing.
    phase_seconds : dict of str to float
        Wall seconds spent in each phase of the server's work over the run
        (``read``: parsing the training replies, ``screen``: width, layout and
        outlier checks, ``average``: shared parameters, ``mix``: barycenter,
        mixing and pull-back, ``train_messages`` / ``evaluate_messages``:
        building the messages, ``evaluate_replies``: reading the scores).
    rejected : list of (int, int, str)
        ``(round, node_id, reason)`` of every reply left out.
    linked : dict of int to ndarray
        Per agent id: the sorted record ids of its uploads that another agent's
        accepted upload of the same round also carried (:meth:`note_links`).
    """

    latent_dim: int | None = None
    code_width: int | None = None
    shared: dict[str, np.ndarray] | None = None
    round_offset: int = 0
    targets: dict[int, Targets] = field(default_factory=dict)
    node_agents: dict[int, int] = field(default_factory=dict)
    agent_metrics: dict[int, dict[int, dict[str, float]]] = field(default_factory=dict)
    train_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    bytes_up: int = 0
    bytes_down: int = 0
    mix_seconds: list[float] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    rejected: list[tuple[int, int, str]] = field(default_factory=list)
    linked: dict[int, np.ndarray] = field(default_factory=dict)

    def reject(self, server_round: int, node_id: int, reason: str) -> None:
        """Record (and log) a reply left out of the round."""
        self.rejected.append((server_round, node_id, reason))
        log(WARNING, "round %d: node %d left out: %s", server_round, node_id, reason)

    def note_links(
        self, agents: Sequence[int], anchors: Sequence[np.ndarray | None]
    ) -> None:
        """Add the ids each agent's upload shares with another upload to
        :attr:`linked` (``anchors``: each upload's ``anchor-ids``, or ``None``)."""
        for agent, met in zip(agents, met_ids(anchors), strict=True):
            if len(met):
                known = self.linked.get(agent, np.empty(0, np.int64))
                self.linked[agent] = np.union1d(known, met).astype(np.int64)

    def bind_agents(self, node_agents: Mapping[int, int]) -> None:
        """Record which node holds which agent (an agent's earlier node is
        forgotten)."""
        for node_id, agent in node_agents.items():
            for old in [n for n, a in self.node_agents.items() if a == agent]:
                del self.node_agents[old]
            self.node_agents[node_id] = agent

    def write_checkpoint(
        self, folder: str | Path, server_round: int, share: str
    ) -> Path:
        """Write the state after ``server_round`` into ``folder``.

        ``share`` is the run's sharing mode, checked on resume.
        """
        arrays: dict[str, np.ndarray] = {}
        for agent, (mixed, barycenter) in self.targets.items():
            arrays[f"mixed-{agent}"] = mixed
            arrays[f"barycenter-{agent}"] = barycenter
        for key, value in (self.shared or {}).items():
            arrays[f"shared-{key}"] = value
        for agent, ids in self.linked.items():
            arrays[f"linked-{agent}"] = ids
        meta = {
            "round": server_round,
            "latent_dim": self.latent_dim,
            "code_width": self.code_width,
            "share": share,
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
        return write_checkpoint(folder, CHECKPOINT_NAME, meta, arrays)

    @classmethod
    def from_checkpoint(cls, folder: str | Path, share: str) -> ServerState:
        """The state :meth:`write_checkpoint` stored in ``folder``.

        Its ``round_offset`` is the checkpointed round; its targets (by agent)
        reach the nodes :meth:`bind_agents` maps to their agents.

        Raises
        ------
        CheckpointError
            When the checkpoint is missing or unreadable, or averages other
            parameters than ``share``.
        """
        meta, arrays, _ = read_checkpoint(folder, CHECKPOINT_NAME)
        stored = meta.get("share", "none")
        if stored != share:
            raise CheckpointError(
                f"checkpoint in {folder} averages {stored!r} parameters, this run "
                f"{share!r}: resume with the same method"
            )
        keys = meta.get("shared_keys")
        return cls(
            latent_dim=meta["latent_dim"],
            code_width=meta.get("code_width"),
            shared=None if keys is None else {k: arrays[f"shared-{k}"] for k in keys},
            round_offset=int(meta["round"]),
            targets=_agent_targets(arrays),
            agent_metrics=_agent_metrics(meta["agent_metrics"]),
            train_metrics={int(a): dict(m) for a, m in meta["train_metrics"].items()},
            bytes_up=int(meta["bytes_up"]),
            bytes_down=int(meta["bytes_down"]),
            mix_seconds=[float(s) for s in meta["mix_seconds"]],
            rejected=[(int(r), int(n), str(why)) for r, n, why in meta["rejected"]],
            linked={
                int(key.split("-", 1)[1]): ids.astype(np.int64)
                for key, ids in arrays.items()
                if key.startswith("linked-")
            },
        )


def _agent_targets(arrays: Mapping[str, np.ndarray]) -> dict[int, Targets]:
    """``mixed-A`` / ``barycenter-A`` arrays by agent id ``A``."""
    agents = [key.split("-", 1)[1] for key in arrays if key.startswith("mixed-")]
    return {int(a): (arrays[f"mixed-{a}"], arrays[f"barycenter-{a}"]) for a in agents}


def _agent_metrics(stored: Mapping[str, Any]) -> dict[int, dict[int, dict[str, float]]]:
    """``{round: {agent: metrics}}`` with the JSON's string keys back to ints."""
    return {
        int(r): {int(a): dict(m) for a, m in agents.items()}
        for r, agents in stored.items()
    }
