"""Link feedback: the server tells each agent which of its ids others uploaded too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from clients.otm_messages import read_linked_ids
from otm_flower import protocol as P
from otm_flower.anchors import met_ids, upload_rows
from otm_flower.code_mixer import CodeMixer
from strategies.otm import OTMStrategy
from strategies.state import ServerState
from tests.test_anchors import _config
from tests.test_strategy import D, StaticGrid, clouds, train_reply

from .conftest import incoming


def test_met_ids_are_those_another_upload_carries() -> None:
    met = met_ids([np.array([5, 7, -1, 9]), None, np.array([9, 5, 11]), np.array([-1])])
    assert [m.tolist() for m in met] == [[5, 9], [], [5, 9], []]
    assert met_ids([]) == []


def test_known_records_go_first_in_every_round() -> None:
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.arange(1000, 1200))
    known = ids[[3, 40, 77, 150]]
    for round_key in range(1, 6):
        rows = upload_rows(ids, 20, rng, round_key=round_key, known=known)
        assert len(rows) == len(set(rows.tolist())) == 20
        assert set(ids[rows[:4]]) == set(known)
    # more known records than fit: the same hash ranking picks among them
    many = ids[:50]
    first = upload_rows(ids, 10, rng, round_key=2, known=many)
    again = upload_rows(ids[::-1], 10, rng, round_key=2, known=many)
    assert set(ids[first]) <= set(many) and set(ids[first]) == set(ids[::-1][again])
    # ids the agent does not hold are ignored
    rows = upload_rows(ids, 20, rng, round_key=1, known=np.array([5, 6]))
    assert len(rows) == 20


def _upload(node: int, codes: np.ndarray, ids: np.ndarray) -> Message:
    record = ArrayRecord({P.KEY_CODES: Array(codes), P.KEY_ANCHORS: Array(ids)})
    reply = train_reply(node, None)
    reply.content[P.CODES_RECORD] = record
    return reply


def _linked_sent(strategy: OTMStrategy, nodes: list[int]) -> dict[int, list[int]]:
    messages = strategy.configure_train(
        2, ArrayRecord(), ConfigRecord(), StaticGrid(nodes)
    )
    return {
        m.metadata.dst_node_id: sorted(read_linked_ids(m).tolist())
        for m in messages
        if P.LINKS_RECORD in m.content
    }


def test_each_agent_is_told_only_its_own_ids_that_others_uploaded(tmp_path) -> None:
    codes = clouds([6, 6, 6])
    ids = [
        np.array([1, 2, 3, -1, -1, 40], np.int64),
        np.array([2, 3, 50, -1, -1, -1], np.int64),
        np.array([3, 60, -1, -1, -1, -1], np.int64),
    ]
    strategy = OTMStrategy(
        mixer=CodeMixer(iterations=1), mix_batch_size=8, latent_dim=D
    )
    strategy.aggregate_train(1, [_upload(10 + k, codes[k], ids[k]) for k in range(3)])
    assert _linked_sent(strategy, [10, 11, 12]) == {10: [2, 3], 11: [2, 3], 12: [3]}
    # a later round adds to what an agent was told; nothing is forgotten
    later = [np.array([1, 2, -1, -1, -1, -1]), np.array([1, -1, -1, -1, -1, -1])]
    strategy.aggregate_train(2, [_upload(10 + k, codes[k], later[k]) for k in range(2)])
    assert _linked_sent(strategy, [10, 11, 12]) == {
        10: [1, 2, 3],
        11: [1, 2, 3],
        12: [3],
    }
    # the checkpoint keeps it
    strategy.state.write_checkpoint(tmp_path, 2, "none")
    restored = ServerState.from_checkpoint(tmp_path, "none")
    assert {a: v.tolist() for a, v in restored.linked.items()} == {
        10: [1, 2, 3], 11: [1, 2, 3], 12: [3]
    }  # fmt: skip


def test_no_feedback_when_switched_off() -> None:
    codes = clouds([4, 4])
    shared = np.array([7, 8, -1, -1], np.int64)
    strategy = OTMStrategy(
        mixer=CodeMixer(iterations=1),
        mix_batch_size=8,
        latent_dim=D,
        link_feedback=False,
    )
    strategy.aggregate_train(1, [_upload(10 + k, codes[k], shared) for k in range(2)])
    assert _linked_sent(strategy, [10, 11]) == {}


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        (np.array([1.5, 2.0]), "integer"),
        (np.array([[1, 2]]), "1-D"),
        (np.array([3, -1]), ">= 0"),
    ],
)
def test_client_refuses_bad_linked_ids(ids: np.ndarray, match: str) -> None:
    content = RecordDict({P.LINKS_RECORD: ArrayRecord({P.KEY_LINKED: Array(ids)})})
    with pytest.raises(P.ProtocolError, match=match):
        read_linked_ids(incoming(content, "train"))


class Exchange:
    """Per agent and round: the linked ids it was sent, and the ids it uploaded."""

    def __init__(self) -> None:
        self.sent: dict[tuple[int, int], set[int]] = {}
        self.uploaded: dict[tuple[int, int], set[int]] = {}

    def __call__(self, msg: Message, context: Context, call_next: Any) -> Message:
        reply = call_next(msg, context)
        if msg.metadata.message_type == "train":
            agent = int(reply.content[P.METRICS_RECORD][P.KEY_AGENT])
            key = (agent, int(msg.content[P.CONFIG_RECORD][P.KEY_ROUND]))
            linked = read_linked_ids(msg)
            self.sent[key] = set() if linked is None else set(linked.tolist())
            ids = reply.content.array_records[P.CODES_RECORD][P.KEY_ANCHORS].numpy()
            self.uploaded[key] = set(ids[ids >= 0].tolist())
        return reply


def test_a_run_uploads_the_records_it_was_told_of(data_path: Path) -> None:
    from simulations.cli import simulate_inprocess

    exchange = Exchange()
    rates = {"anchor-rate": 0.1, "num-server-rounds": 4, "mix-batch-size": 40}
    config = _config(data_path, **rates)
    simulate_inprocess(config, mods=[exchange])
    told = 0
    for (agent, rnd), sent in exchange.sent.items():
        earlier = set().union(*(exchange.uploaded[(agent, r)] for r in range(1, rnd)))
        assert sent <= earlier  # only ids the agent itself uploaded before
        assert sent <= exchange.uploaded[(agent, rnd)]  # and it uploads them all
        told += len(sent)
    assert told > 0
    assert all(not sent for (_, rnd), sent in exchange.sent.items() if rnd == 1)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.synthetic import clustered_views_npz

    return clustered_views_npz(
        tmp_path_factory.mktemp("data") / "five.npz",
        n=300, k=5, dims=(6, 8, 7), spread=1.5, seed=5, name="five",
    )  # fmt: skip
