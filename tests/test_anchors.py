"""Anchor ids (partly linked records): derivation, uploads, messages, mixing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, Message

from otm_flower import protocol as P
from otm_flower.anchored import anchored_fgw_barycenter
from otm_flower.anchors import (
    simulated_anchor_ids,
    simulated_record_keys,
    simulation_secret,
    upload_ids,
    upload_rows,
)
from otm_flower.config import parse_run_config
from otm_flower.data import AgentData
from otm_flower.linkage import link_ids
from simulations.cli import simulate_inprocess
from simulations.split import party_keys
from tests.synthetic import clustered_views_npz


def test_simulated_ids_are_shared_opaque_and_at_the_rate() -> None:
    keys = np.arange(20_000)
    ids = simulated_anchor_ids(keys, 0.05, seed=3)
    linked = ids >= 0
    assert 0.045 < linked.mean() < 0.055
    assert len(np.unique(ids[linked])) == linked.sum()  # no collisions here
    assert ids.dtype == np.int64
    # Another agent holding some of the same records, in another order, agrees.
    perm = np.random.default_rng(0).permutation(keys)[:5000]
    np.testing.assert_array_equal(simulated_anchor_ids(perm, 0.05, seed=3), ids[perm])
    # Ids do not expose the keys, and depend on the run's secret.
    assert not np.intersect1d(ids[linked], keys).size
    other = simulated_anchor_ids(keys, 0.05, seed=4)
    assert not np.intersect1d(other[other >= 0], ids[linked]).size
    assert (simulated_anchor_ids(keys, 0.0, seed=3) == -1).all()
    with pytest.raises(ValueError, match="anchor rate"):
        simulated_anchor_ids(keys, 1.5, seed=3)


def test_simulated_linkage_is_the_real_parties_path() -> None:
    """The simulator's ids are link_ids of record keys under a seed-derived
    secret: what a party holding those keys and that secret uploads."""
    samples = np.arange(500)
    keys = simulated_record_keys(samples, 0.2, seed=1)
    assert set(keys[keys != ""]) == {f"r{s}" for s in samples[keys != ""]}
    np.testing.assert_array_equal(
        simulated_anchor_ids(samples, 0.2, seed=1),
        link_ids(keys, simulation_secret(1)),
    )
    # With the agent's id every row has a key: the linkable ones shared, the
    # others the agent's own, as otm-flower split writes them.
    own = simulated_record_keys(samples, 0.2, seed=1, party=2)
    linkable = keys != ""
    np.testing.assert_array_equal(own[linkable], keys[linkable])
    assert set(own[~linkable]) == {f"p2-{s}" for s in samples[~linkable]}
    np.testing.assert_array_equal(own, party_keys(samples, 2, 0.2, seed=1))
    ids = simulated_anchor_ids(samples, 0.2, seed=1, party=2)
    assert (ids >= 0).all()
    other = simulated_anchor_ids(samples, 0.2, seed=1, party=3)
    assert set(ids.tolist()) & set(other.tolist()) == set(ids[linkable].tolist())
    assert len(simulation_secret(1)) == 64 and simulation_secret(1).isalnum()


def test_simulated_agents_draw_their_uploads_by_their_keys_ids() -> None:
    """A simulated agent draws its upload rows by the ids of all its keys,
    the draw of a party holding those keys; without linkage, by nothing."""
    config = parse_run_config({"anchor-rate": 0.1, "seed": 4})
    samples = np.random.default_rng(0).permutation(300)
    agent = AgentData(
        agent_id=1, modality=1, modality_name="v", x_train=np.zeros((300, 2)),
        y_train=None, x_test=np.zeros((1, 2)), y_test=None,
        train_ids=samples, test_ids=np.zeros(1, np.int64),
    )  # fmt: skip
    sent = simulated_anchor_ids(samples, 0.1, seed=4)
    drawn = upload_ids(agent, config, sent)
    assert drawn is not None
    np.testing.assert_array_equal(
        drawn, simulated_anchor_ids(samples, 0.1, seed=4, party=1)
    )
    np.testing.assert_array_equal(drawn[sent >= 0], sent[sent >= 0])
    assert upload_ids(agent, parse_run_config({}), None) is None
    party_ids = np.arange(300, dtype=np.int64)
    party = AgentData(**{**agent.__dict__, "link_ids": party_ids})
    assert upload_ids(party, config, party_ids) is party_ids


def test_pinning_ignores_ids_only_one_upload_holds() -> None:
    """Ids that a single upload holds change nothing: the server pins only ids
    two uploads share, so a solitary id acts as no id (-1)."""
    rng = np.random.default_rng(3)
    codes = [rng.normal(size=(30, 3)), rng.normal(size=(25, 3))]
    shared = np.arange(6, dtype=np.int64) + 1000
    with_solitary = [np.arange(30, dtype=np.int64) + 10**6, np.arange(25) + 2 * 10**6]
    with_solitary[0][:6] = shared
    with_solitary[1][5:11] = shared
    without = [np.where(np.isin(a, shared), a, -1) for a in with_solitary]
    a = anchored_fgw_barycenter(codes, with_solitary, n_points=20, seed=0)
    b = anchored_fgw_barycenter(codes, without, n_points=20, seed=0)
    np.testing.assert_array_equal(a.anchor_ids, shared)
    np.testing.assert_array_equal(a.anchor_ids, b.anchor_ids)
    np.testing.assert_array_equal(a.barycenter, b.barycenter)
    for ta, tb in zip(a.plans, b.plans, strict=True):
        np.testing.assert_array_equal(ta, tb)


def test_upload_rows_always_include_the_anchored_rows() -> None:
    ids = np.full(100, -1, dtype=np.int64)
    ids[[3, 50, 97]] = [11, 12, 13]
    rng = np.random.default_rng(1)
    rows = upload_rows(ids, 10, rng)
    assert len(rows) == len(set(rows)) == 10
    assert {3, 50, 97} <= set(rows.tolist())
    assert set(upload_rows(ids, 2, rng).tolist()) <= {3, 50, 97}
    assert len(upload_rows(ids, 500, rng)) == 100


def test_agents_with_too_many_anchored_rows_send_the_same_records() -> None:
    """Two agents hold the same 40 records in different rows; each can send 16:
    they pick the same 16 ids, and another round picks another set."""
    rng = np.random.default_rng(2)
    shared = rng.integers(0, 2**56, size=40)
    agent_a = np.full(60, -1, np.int64)
    agent_b = np.full(50, -1, np.int64)
    agent_a[rng.choice(60, 40, replace=False)] = shared
    agent_b[rng.choice(50, 40, replace=False)] = shared
    pick_a = agent_a[upload_rows(agent_a, 16, np.random.default_rng(0), round_key=3)]
    pick_b = agent_b[upload_rows(agent_b, 16, np.random.default_rng(9), round_key=3)]
    assert len(set(pick_a.tolist())) == 16 and set(pick_a) == set(pick_b)
    later = agent_a[upload_rows(agent_a, 16, np.random.default_rng(0), round_key=4)]
    assert set(later) != set(pick_a)


def test_protocol_rejects_bad_anchor_ids() -> None:
    ok = P.validate_anchor_ids(np.array([5, -1, 7]), 3)
    assert ok.dtype == np.int64
    for bad, match in [
        (np.array([1.0, 2.0, 3.0]), "integers"),
        (np.array([1, 2]), "one per code row"),
        (np.array([1, -2, 3]), ">= -1"),
        (np.array([4, 4, -1]), "repeat"),
    ]:
        with pytest.raises(P.ProtocolError, match=match):
            P.validate_anchor_ids(bad, 3)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three views of 5 overlapping clusters: label-free matching is ambiguous."""
    return clustered_views_npz(
        tmp_path_factory.mktemp("data") / "five.npz",
        n=300,
        k=5,
        dims=(6, 8, 7),
        spread=1.5,
        seed=5,
        name="five",
    )


class Recorder:
    def __init__(self) -> None:
        self.replies: list[Message] = []

    def __call__(self, msg: Message, context: Context, call_next: Any) -> Message:
        reply = call_next(msg, context)
        if msg.metadata.message_type == "train":
            self.replies.append(reply)
        return reply


def _config(path: Path, **kw: Any) -> Any:
    values = {
        "dataset": str(path), "num-server-rounds": 2, "local-epochs": 1,
        "hidden-dim": 16, "latent-dim": 4, "mix-batch-size": 100,
        "output-dir": "", "diagnostics-dir": "auto",
    }  # fmt: skip
    values.update(kw)
    return parse_run_config(values)


def test_anchored_run_uploads_ids_and_pins_the_couplings(data_path: Path) -> None:
    recorder = Recorder()
    anchored, _ = simulate_inprocess(
        _config(data_path, **{"anchor-rate": 0.1}), mods=[recorder]
    )
    for reply in recorder.replies:
        record = reply.content.array_records[P.CODES_RECORD]
        assert set(record) == {P.KEY_CODES, P.KEY_ANCHORS}
        ids = record[P.KEY_ANCHORS].numpy()
        assert ids.dtype == np.int64 and ids.shape == (100,)
        assert 0 < (ids >= 0).sum() < 100
    plain_recorder = Recorder()
    plain, _ = simulate_inprocess(_config(data_path), mods=[plain_recorder])
    assert all(
        set(r.content.array_records[P.CODES_RECORD]) == {P.KEY_CODES}
        for r in plain_recorder.replies
    )
    assert anchored["coupling_agreement"] > plain["coupling_agreement"] + 0.2
    assert anchored["coupling_agreement"] > 2 * 0.2  # twice chance (5 classes)
