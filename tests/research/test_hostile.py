"""Hostile parties that pass the screening: each attack changes what the party
uploads (asserted on the reply messages of a real in-process run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, Message

from otm_flower import protocol as P
from otm_flower.agent import load_agents
from otm_flower.screening import screen_clouds
from research.corruption import CorruptAgentMod
from research.hostile import (
    FlipLabels,
    ForgedAnchorsMod,
    HeadAccuracyMod,
    LookalikeNoiseMod,
    forge_anchor_ids,
    lookalike_noise,
)
from research.hostile_study import Case, metric_names, references, run_key, table
from simulations.cli import simulate_inprocess
from tests.test_experiments import (  # noqa: F401 (data_path: a fixture)
    _config,
    data_path,
)


class Capture:
    """Client mod recording, per (partition, round), the codes record replied."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        self.shared: dict[int, dict[str, np.ndarray]] = {}

    def __call__(self, msg: Message, context: Context, call_next: Any) -> Message:
        reply = call_next(msg, context)
        if reply.has_error() or P.CODES_RECORD not in reply.content.array_records:
            return reply
        pid = int(context.node_config["partition-id"])
        rnd = int(msg.content.config_records[P.CONFIG_RECORD][P.KEY_ROUND])
        record = reply.content.array_records[P.CODES_RECORD]
        self.seen[(pid, rnd)] = {k: v.numpy().copy() for k, v in record.items()}
        shared = reply.content.array_records.get(P.SHARED_RECORD)
        if shared is not None:
            self.shared[pid] = {k: v.numpy().copy() for k, v in shared.items()}
        return reply


def test_lookalike_noise_and_forged_ids_change_the_upload_and_pass_screening(
    data_path: Path,
) -> None:
    keys = {"num-server-rounds": 1, "anchor-rate": 0.3, "term-guard": False}
    config = _config(data_path, **keys)
    sent, honest = Capture(), Capture()  # outside / inside the attacks
    mods = [sent, LookalikeNoiseMod(0, 5), ForgedAnchorsMod(1, "shuffled", 5), honest]
    result, _ = simulate_inprocess(config, mods=mods)
    assert result["rejected"] == []  # the screening passes both attackers
    rnd = 1
    up = {p: sent.seen[(p, rnd)] for p in range(3)}
    true = {p: honest.seen[(p, rnd)] for p in range(3)}
    # party 0: other codes, same shape, dtype and ids
    assert up[0]["codes"].shape == true[0]["codes"].shape
    assert up[0]["codes"].dtype == true[0]["codes"].dtype
    assert not np.allclose(up[0]["codes"], true[0]["codes"])
    np.testing.assert_array_equal(up[0][P.KEY_ANCHORS], true[0][P.KEY_ANCHORS])
    # party 1: the same codes, its linked ids moved to other rows
    np.testing.assert_array_equal(up[1]["codes"], true[1]["codes"])
    assert (true[1][P.KEY_ANCHORS] >= 0).sum() > 0
    assert not np.array_equal(up[1][P.KEY_ANCHORS], true[1][P.KEY_ANCHORS])
    assert sorted(up[1][P.KEY_ANCHORS]) == sorted(true[1][P.KEY_ANCHORS])
    # party 2 honest
    for key in true[2]:
        np.testing.assert_array_equal(up[2][key], true[2][key])
    assert screen_clouds([up[p]["codes"] for p in range(3)]) == [None] * 3


def test_lookalike_noise_matches_the_codes_statistics() -> None:
    rng = np.random.default_rng(0)
    codes = (rng.normal(size=(4000, 3)) * [1.0, 2.0, 0.5] + [5, -1, 0]).astype(
        np.float32
    )
    noise = lookalike_noise(codes, np.random.default_rng(1))
    assert noise.dtype == np.float32 and noise.shape == codes.shape
    np.testing.assert_allclose(noise.mean(0), codes.mean(0), atol=0.1)
    np.testing.assert_allclose(np.cov(noise.T), np.cov(codes.T), atol=0.15)
    with pytest.raises(ValueError, match="n >= 2"):
        lookalike_noise(codes[:1], rng)


def test_random_forged_ids_keep_the_true_ones_and_never_repeat() -> None:
    ids = np.array([7, -1, -1, 3, -1])
    forged = forge_anchor_ids(ids, "random", np.random.default_rng(0))
    assert forged[0] == 7 and forged[3] == 3
    assert (forged >= 0).all() and len(set(forged.tolist())) == 5
    with pytest.raises(ValueError, match="forgery must be one of"):
        ForgedAnchorsMod(0, "stolen")


def test_flipped_labels_change_the_shared_head_the_party_uploads(
    data_path: Path,
) -> None:
    config = _config(
        data_path,
        **{"num-server-rounds": 1, "method": "otm-head", "task": "classification"},
    )
    agents, _ = load_agents(config)
    flipped = FlipLabels(0)(agents, config.seed)
    assert (flipped[0].y_train != agents[0].y_train).all()
    np.testing.assert_array_equal(flipped[0].y_test, agents[0].y_test)
    np.testing.assert_array_equal(flipped[1].y_train, agents[1].y_train)
    with pytest.raises(ValueError, match="hostile agent 3 out of range"):
        FlipLabels(3)(agents, 0)
    clean, hostile = Capture(), Capture()
    simulate_inprocess(config, mods=[clean])
    simulate_inprocess(config, mods=[hostile, CorruptAgentMod(FlipLabels(0))])
    assert set(hostile.shared[0]) == set(clean.shared[0])
    assert any(
        not np.allclose(hostile.shared[0][k], clean.shared[0][k])
        for k in clean.shared[0]
    )
    for key in clean.shared[1]:  # the others' first-round heads are their own
        np.testing.assert_array_equal(hostile.shared[1][key], clean.shared[1][key])


def test_study_table_and_run_names() -> None:
    lines = table({"a": [[0.5, 0.2, 1.0], [0.7, 0.4, 3.0]]}, "classification")
    assert lines[2] == "| a | 0.600 ± 0.141 | 0.300 ± 0.141 | 2.0 |"
    case = Case("x", {"anchor-rate": 0.05}, "lookalike")
    name = run_key(case, {}, 1, 10)
    assert name == "anchor-rate=0.05_num-server-rounds=10_seed=1_attack=lookalike.json"
    assert run_key(Case("x", {"anchor-rate": 0.05}), {}, 1, 10) != name
    honest, hostile = Case("h", {"k": 1}), Case("a", {"k": 1}, "flipped")
    assert references([honest, hostile, Case("b", {"k": 2}, "flipped")]) == {"a": "h"}
    rows = {
        "h": [[0.5, 0.9, 0.0], [0.6, 0.9, 0.0]],
        "a": [[0.4, 0.1, 0.0], [0.6, 0.1, 0.0]],
    }
    lines = table(rows, "classification", {"a": "h"})
    assert lines[3] == "| a | 0.500 ± 0.141 | 0.100 ± 0.000 | 0.0 | -0.050 ± 0.071 |"
    names = metric_names("classification", head=True)
    assert names == ["accuracy", "head accuracy"]
    rows = {"h": [[0.5, 0.8, 0.9, 0.0]], "a": [[0.4, 0.2, 0.1, 0.0]]}
    lines = table(rows, "classification", {"a": "h"}, names)
    assert "others' head accuracy minus honest (paired)" in lines[0]
    assert lines[3] == (
        "| a | 0.400 ± 0.000 | 0.200 ± 0.000 | 0.100 ± 0.000 | 0.0 "
        "| -0.100 ± 0.000 | -0.600 ± 0.000 |"
    )


@pytest.mark.parametrize("method", ["otm-head", "fedavg"])
def test_shared_head_accuracy_is_scored_and_a_flipped_party_lowers_its_own(
    data_path: Path, method: str
) -> None:
    keys = {"num-server-rounds": 2, "method": method, "task": "classification"}
    config = _config(data_path, **keys, **{"local-epochs": 10, "learning-rate": 0.01})
    honest, flipped = HeadAccuracyMod(), HeadAccuracyMod()
    result, _ = simulate_inprocess(config, mods=[honest])
    simulate_inprocess(config, mods=[CorruptAgentMod(FlipLabels(0)), flipped])
    assert sorted(honest.scores) == sorted(a["id"] for a in result["agents"])
    assert all(0.0 <= v <= 1.0 for v in honest.scores.values())
    assert np.mean(list(honest.scores.values())) > 0.5, honest.scores  # chance 1/3
    # the head a party predicts with is the average, not the probe: flipping
    # party 0's labels shows in the shared head's accuracy
    assert flipped.scores != honest.scores
