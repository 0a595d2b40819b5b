"""Parties re-identified when their SuperNode restarts while the server runs.

A restarted SuperNode connects with a new node id. OTMStrategy keeps every
party's state by the agent id the party reports, and learns which node now
holds which agent from the replies and, for a node it has not heard from, from
a ``query.identify`` message (answered with the agent id only, see
``docs/protocol.md``). :class:`RejoiningGrid` also gives a party that left in
the middle of a round the chance to come back within ``rejoin_timeout``
seconds: a message whose node became unavailable is sent again, unchanged, to
the node that identifies as the same agent.

Node ids are bound to agents first come, first kept: a node claiming an agent
that another connected node already holds is not bound (its replies are
rejected as duplicates), so a second claimant never receives another party's
targets.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from logging import INFO, WARNING
from typing import cast

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore import log
from flwr.supercore.run import Run

from otm_flower import protocol as P

#: Seconds between two looks for a rejoining party's node.
POLL_SECONDS = 0.5


def identify_nodes(
    grid: Grid, node_ids: Iterable[int], timeout: float
) -> dict[int, int]:
    """Ask ``node_ids`` which agent each holds (``query.identify``): node -> agent.

    Nodes that fail or answer without an integer agent id are left out (logged).
    """
    config = ConfigRecord({P.KEY_VERSION: P.PROTOCOL_VERSION})
    messages = [
        Message(
            RecordDict({P.CONFIG_RECORD: config}),
            dst_node_id=node_id,
            message_type=f"query.{P.QUERY_IDENTIFY}",
        )
        for node_id in node_ids
    ]
    if not messages:
        return {}
    agents = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node = reply.metadata.src_node_id
        records = {} if reply.has_error() else dict(reply.content.metric_records)
        record = records.get(P.METRICS_RECORD)
        agent = None if record is None else record.get(P.KEY_AGENT)
        if isinstance(agent, int) and not isinstance(agent, bool):
            agents[node] = agent
        else:
            log(WARNING, "node %d did not identify itself", node)
    return agents


def bind(
    node_agents: dict[int, int], claims: Mapping[int, int], connected: Iterable[int]
) -> list[tuple[int, int]]:
    """Bind each claiming node to its agent, unless a connected node holds it.

    ``claims``: node -> claimed agent; ``connected``: the nodes still there (a
    binding of a node that left is released). Returns the refused
    ``(node, agent)`` claims.
    """
    live = set(connected)
    holder = {a: n for n, a in node_agents.items() if n in live}
    refused = []
    for node, agent in sorted(claims.items()):
        if holder.get(agent, node) != node:
            refused.append((node, agent))
            continue
        for old in [n for n, a in node_agents.items() if a == agent and n != node]:
            del node_agents[old]
        node_agents[node] = agent
        holder[agent] = node
    return refused


class RejoiningGrid(Grid):
    """A grid that re-addresses a departed party's messages to its new node.

    Every call goes to ``grid``. In :meth:`send_and_receive`, each reply with
    Flower's ``NODE_UNAVAILABLE`` error from a node whose agent is known waits
    up to ``rejoin_timeout`` seconds for a new node of that agent, then the
    same message goes to it and its reply replaces the error.

    Parameters
    ----------
    grid : Grid
        The run's grid.
    node_agents : dict of int to int
        Node id -> agent id, shared with (and updated for) the strategy.
    rejoin_timeout : float
        Seconds to wait for a departed party (``0``: do not wait).
    """

    def __init__(
        self, grid: Grid, node_agents: dict[int, int], rejoin_timeout: float
    ) -> None:
        self.grid = grid
        self.node_agents = node_agents
        self.rejoin_timeout = rejoin_timeout

    # Delegation ---------------------------------------------------------------
    def set_run(self, run: Run) -> None:  # noqa: D102
        self.grid.set_run(run)

    @property
    def run(self):  # type: ignore[no-untyped-def]  # noqa: D102
        return self.grid.run

    def create_message(self, *args, **kwargs):  # type: ignore[no-untyped-def]  # noqa: D102
        return self.grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:  # noqa: D102
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # noqa: D102
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # noqa: D102
        return self.grid.pull_messages(message_ids)

    # Rejoining ----------------------------------------------------------------
    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Flower's send and receive; lost parties' messages sent again."""
        messages = list(messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        if self.rejoin_timeout <= 0:
            return replies
        # Sending gave each message its id; an error reply answers one.
        sent = {m.metadata.message_id: m for m in messages}
        return [self._again(r, sent, timeout) if _lost(r) else r for r in replies]

    def _again(
        self, reply: Message, sent: Mapping[str, Message], timeout: float | None
    ) -> Message:
        """The reply of the lost party's new node to its message (or ``reply``)."""
        original = sent.get(reply.metadata.reply_to_message_id)
        node = None if original is None else original.metadata.dst_node_id
        agent = None if node is None else self.node_agents.get(node)
        if original is None or agent is None:
            return reply
        new = self.await_agent(agent, timeout or 60.0)
        if new is None:
            return reply
        log(
            INFO, "agent %d left node %d; its message goes to node %d", agent, node, new
        )
        message = Message(
            original.content,
            dst_node_id=new,
            message_type=original.metadata.message_type,
        )
        again = list(self.grid.send_and_receive([message], timeout=timeout))
        return again[0] if again else reply

    def await_agent(self, agent: int, timeout: float) -> int | None:
        """The node that identifies as ``agent`` within ``rejoin_timeout`` s."""
        deadline = time.monotonic() + self.rejoin_timeout
        asked: set[int] = set()
        while True:
            connected = [int(n) for n in self.grid.get_node_ids()]
            fresh = [
                n for n in connected if n not in self.node_agents and n not in asked
            ]
            asked.update(fresh)
            bind(self.node_agents, identify_nodes(self.grid, fresh, timeout), connected)
            found = [n for n in connected if self.node_agents.get(n) == agent]
            if found or time.monotonic() > deadline:
                return found[0] if found else None
            time.sleep(POLL_SECONDS)

    def await_missing(self, timeout: float) -> None:
        """Wait (``rejoin_timeout``) for every known agent without a connected node."""
        if self.rejoin_timeout <= 0:
            return
        connected = {int(n) for n in self.grid.get_node_ids()}
        missing = set(self.node_agents.values()) - {
            a for n, a in self.node_agents.items() if n in connected
        }
        for agent in sorted(missing):
            if (node := self.await_agent(agent, timeout)) is not None:
                log(INFO, "agent %d is back as node %d", agent, node)
            else:
                log(WARNING, "agent %d did not come back; going on without it", agent)
                for node in [n for n, a in self.node_agents.items() if a == agent]:
                    del self.node_agents[node]  # not waited for again


def _lost(reply: Message) -> bool:
    """Whether ``reply`` is Flower's error for a node that went away."""
    return (
        reply.has_error() and cast(int, reply.error.code) == ErrorCode.NODE_UNAVAILABLE
    )
