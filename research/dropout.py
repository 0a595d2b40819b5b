"""Random dropouts: a Flower client mod that fails a drawn share of train rounds.

Pass :class:`DropoutMod` to ``simulate(config, mods=[...])`` or
``build_client_app(config, mods=[...])``. Each (agent, round) is drawn from
``(seed, agent, round)``, so a run is reproducible; a drawn training round raises
:class:`SimulatedDropout` before the agent's ClientApp runs, so the failure goes
through Flower's real error path, and the agent rejoins the next round with its
state intact. Evaluation rounds are never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

from otm_flower import protocol as P

__all__ = ["DropoutMod", "SimulatedDropout", "check_dropout", "drops_out"]


class SimulatedDropout(RuntimeError):
    """Raised by an agent that the dropout experiment takes offline."""


def drops_out(rate: float, seed: int, agent_id: int, server_round: int) -> bool:
    """Whether the agent is offline in ``server_round`` (probability ``rate``)."""
    if rate <= 0:
        return False
    draw = np.random.default_rng([seed, agent_id, server_round, 37]).random()
    return bool(draw < rate)


def check_dropout(rate: float, seed: int, agent_id: int, server_round: int) -> None:
    """Fail this training round when :func:`drops_out` says so.

    Raises
    ------
    SimulatedDropout
        When the draw says this agent is offline this round.
    """
    if drops_out(rate, seed, agent_id, server_round):
        raise SimulatedDropout(
            f"agent {agent_id} dropped out of round {server_round} "
            f"(dropout-rate {rate})"
        )


@dataclass(frozen=True)
class DropoutMod:
    """Client mod: each agent fails each training round with probability ``rate``.

    The agent is the node's ``partition-id`` (agents are numbered as the nodes
    of a simulation); the round is the ``server-round`` the message carries.

    Parameters
    ----------
    rate : float
        Probability in ``[0, 1)`` that an agent is offline in a training round.
    seed : int
        Seed of the draws (the run's ``seed`` reproduces the runs of the former
        ``dropout-rate`` run-config key).
    """

    rate: float
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {self.rate}")

    def __call__(
        self, msg: Message, context: Context, call_next: ClientAppCallable
    ) -> Message:
        """Raise :class:`SimulatedDropout` on a drawn train message, else pass on."""
        pid = context.node_config.get("partition-id")
        if msg.metadata.message_type == MessageType.TRAIN and pid is not None:
            config = msg.content.config_records.get(P.CONFIG_RECORD, ConfigRecord())
            server_round = int(config.get(P.KEY_ROUND, 0))  # type: ignore[arg-type]
            check_dropout(self.rate, self.seed, int(pid), server_round)
        return call_next(msg, context)
