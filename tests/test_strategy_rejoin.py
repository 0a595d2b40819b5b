"""A party whose SuperNode restarts (a new node id) stays the same agent."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common.constant import ErrorCode

from otm_flower import protocol as P
from otm_flower.code_mixer import CodeMixer
from strategies.otm import OTMStrategy
from strategies.rejoin import RejoiningGrid, bind

from .conftest import incoming
from .test_strategy import D, StaticGrid, clouds

IDENTIFY = f"query.{P.QUERY_IDENTIFY}"


class FederationGrid(StaticGrid):
    """Connected nodes, each holding an agent; answers identify queries, and
    any other message with an error when its node is gone."""

    def __init__(self, agents: dict[int, int]) -> None:
        super().__init__(sorted(agents))
        self.agents = agents
        self.sent: list[Message] = []
        self.gone: set[int] = set()

    def send_and_receive(  # type: ignore[override]
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        replies = []
        for msg in messages:
            self.sent.append(msg)
            msg.metadata.__dict__["_message_id"] = f"m{len(self.sent)}"  # as Flower
            node = msg.metadata.dst_node_id
            if node in self.gone:  # Flower's error reply comes from the SuperLink
                lost = incoming(RecordDict(), msg.metadata.message_type, src=1)
                lost.metadata.__dict__["_reply_to_message_id"] = msg.metadata.message_id
                error = Error(code=ErrorCode.NODE_UNAVAILABLE, reason="node left")
                replies.append(Message(error, metadata=lost.metadata))  # type: ignore[call-overload]
                continue
            metrics = MetricRecord({P.KEY_AGENT: self.agents[node]})
            content = RecordDict({P.METRICS_RECORD: metrics})
            replies.append(incoming(content, msg.metadata.message_type, src=node))
        return replies


def train_reply(node_id: int, agent: int, codes: np.ndarray) -> Message:
    content = RecordDict(
        {
            P.METRICS_RECORD: MetricRecord(
                {P.KEY_NUM_EXAMPLES: 100, P.KEY_AGENT: agent}
            ),
            P.CODES_RECORD: ArrayRecord({P.KEY_CODES: Array(codes)}),
        }
    )
    return incoming(content, MessageType.TRAIN, src=node_id, dst=0)


def mixed_round(strategy: OTMStrategy, nodes: dict[int, int]) -> None:
    """Round 1: the nodes (node -> agent) upload codes, which are mixed."""
    uploads = clouds([20, 25, 30])
    replies = [
        train_reply(node, agent, uploads[agent]) for node, agent in nodes.items()
    ]
    strategy.aggregate_train(1, replies)
    assert strategy.state.rejected == []


def strategy() -> OTMStrategy:
    return OTMStrategy(mixer=CodeMixer(iterations=2), mix_batch_size=32, latent_dim=D)


def targets_by_node(messages: Iterable[Message]) -> dict[int, np.ndarray]:
    return {
        m.metadata.dst_node_id: m.content.array_records[P.CODES_RECORD][
            P.KEY_MIXED
        ].numpy()
        for m in messages
        if P.CODES_RECORD in m.content
    }


def test_a_new_node_of_the_same_agent_gets_the_agents_targets() -> None:
    before, after = strategy(), strategy()
    mixed_round(before, {10: 0, 11: 1, 12: 2})
    mixed_round(after, {10: 0, 11: 1, 12: 2})
    # uninterrupted: the same nodes in round 2
    same = before.configure_train(
        2, ArrayRecord(), ConfigRecord(), StaticGrid([10, 11, 12])
    )
    # agent 2's SuperNode restarted: node 12 is gone, node 99 holds agent 2
    grid = FederationGrid({10: 0, 11: 1, 99: 2})
    moved = list(after.configure_train(2, ArrayRecord(), ConfigRecord(), grid))
    assert [m.metadata.message_type for m in grid.sent] == [IDENTIFY]
    assert grid.sent[0].metadata.dst_node_id == 99  # only the unknown node asked
    assert after.state.node_agents == {10: 0, 11: 1, 99: 2}
    expected, got = targets_by_node(same), targets_by_node(moved)
    assert sorted(got) == [10, 11, 99]
    np.testing.assert_array_equal(got[99], expected[12])
    np.testing.assert_array_equal(got[10], expected[10])
    # round 2's upload from node 99 is agent 2's: kept in agent order
    uploads = clouds([20, 25, 30], seed=1)
    replies = [train_reply(n, a, uploads[a]) for n, a in ((99, 2), (10, 0), (11, 1))]
    after.aggregate_train(2, replies)
    assert after.state.rejected == [] and sorted(after.state.targets) == [0, 1, 2]


def test_a_second_node_claiming_a_held_agent_is_rejected() -> None:
    s = strategy()
    uploads = clouds([20, 25, 30])
    replies = [
        train_reply(10, 0, uploads[0]),
        train_reply(11, 1, uploads[1]),
        train_reply(13, 1, uploads[2]),  # an impostor of agent 1
    ]
    s.aggregate_train(1, replies)
    assert s.state.rejected == [(1, 13, "claims agent 1, held by node 11")]
    assert s.state.node_agents == {10: 0, 11: 1}
    assert sorted(s.state.targets) == [0, 1]
    # it gets nothing when it asks in the next round either
    grid = FederationGrid({10: 0, 11: 1, 13: 1})
    sent = targets_by_node(s.configure_train(2, ArrayRecord(), ConfigRecord(), grid))
    assert sorted(sent) == [10, 11]


def test_bind_releases_a_departed_nodes_agent() -> None:
    agents = {10: 0, 11: 1}
    assert bind(agents, {20: 1}, connected=[10, 11, 20]) == [(20, 1)]
    assert bind(agents, {20: 1}, connected=[10, 20]) == []
    assert agents == {10: 0, 20: 1}


@pytest.mark.parametrize("rejoin", [0.0, 5.0])
def test_a_lost_message_goes_to_the_agents_new_node(rejoin: float) -> None:
    inner = FederationGrid({10: 0, 11: 1})
    node_agents = {10: 0, 11: 1}
    grid = RejoiningGrid(inner, node_agents, rejoin_timeout=rejoin)
    inner.gone = {10}
    inner.agents[20] = 0  # agent 0 is back, as node 20
    inner.node_ids = [11, 20]
    content = RecordDict({P.CONFIG_RECORD: ConfigRecord({P.KEY_ROUND: 3})})
    messages = [
        Message(content, dst_node_id=n, message_type=MessageType.TRAIN)
        for n in (10, 11)
    ]
    replies = list(grid.send_and_receive(messages, timeout=5))
    sources = sorted(r.metadata.src_node_id for r in replies)
    if rejoin == 0:  # the loss stands
        assert sources == [1, 11] and any(r.has_error() for r in replies)
        return
    assert sources == [11, 20] and not any(r.has_error() for r in replies)
    assert node_agents == {11: 1, 20: 0}
    again = [m for m in inner.sent if m.metadata.dst_node_id == 20]
    assert [m.metadata.message_type for m in again] == [IDENTIFY, MessageType.TRAIN]
    assert again[1].content is content  # the same message, re-addressed


def test_rejoin_waits_only_as_long_as_allowed() -> None:
    inner = FederationGrid({11: 1})
    node_agents = {10: 0, 11: 1}  # agent 0's node left and nobody comes back
    grid = RejoiningGrid(inner, node_agents, rejoin_timeout=0.2)
    grid.await_missing(timeout=5)
    assert node_agents == {11: 1}  # given up: not waited for again
    with pytest.raises(ValueError, match="rejoin_timeout"):
        OTMStrategy(rejoin_timeout=-1)


def test_a_superlink_error_is_recorded_against_the_node_that_left() -> None:
    grid = FederationGrid({10: 0, 11: 1})
    grid.gone = {10}
    plain = strategy()
    messages = list(plain.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    assert sorted(m.metadata.dst_node_id for m in messages) == [10, 11]
    replies = list(grid.send_and_receive(messages, timeout=5))
    assert sorted(r.metadata.src_node_id for r in replies) == [1, 11]  # as Flower
    plain.aggregate_train(1, [r for r in replies if r.has_error()])
    assert [(node, reason) for _, node, reason in plain.state.rejected] == [
        (10, "agent failed: node left")
    ]
