"""The node-local cache of prepared data, and the agents' kept checkpoints."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from clients.node import (
    agent_for_node,
    checkpoint_agent,
    restore_agent_checkpoint,
    saved_trainer,
)
from clients.node_cache import CACHE_ENV, cache_key, cached, prune, read_entry
from otm_flower.checkpoint import CheckpointError
from otm_flower.config import parse_run_config
from tests.deployment_support import small_views


def counting_build(calls: list[int], value: object):
    def build() -> object:
        calls.append(1)
        return value

    return build


def test_entry_is_built_once_then_read(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    calls: list[int] = []
    node = {"data-path": str(data)}
    for _ in range(3):
        got = cached({"seed": 0}, node, counting_build(calls, [1, 2]), tmp_path / "c")
        assert got == [1, 2]
    assert len(calls) == 1


def test_changed_file_or_setting_gives_a_new_key(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    node = {"data-path": str(data)}
    key = cache_key({"seed": 0}, node)
    assert cache_key({"seed": 1}, node) != key
    assert cache_key({"seed": 0}, {**node, "label-column": "b"}) != key
    data.write_text("a,b\n1,2\n3,4\n")  # another size
    assert cache_key({"seed": 0}, node) != key
    resized = cache_key({"seed": 0}, node)
    stamp = data.stat()
    os.utime(data, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    assert cache_key({"seed": 0}, node) != resized  # same size, touched


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_entry_is_rebuilt_not_trusted(tmp_path: Path, damage: str) -> None:
    folder, calls = tmp_path / "c", []
    cached({}, {}, counting_build(calls, {"x": 1}), folder)
    (entry,) = folder.glob("agent-*.pkl")
    raw = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        entry.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    else:
        entry.write_bytes(b"not a cache entry")
    assert read_entry(entry, cache_key({}, {})) is None
    assert cached({}, {}, counting_build(calls, {"x": 2}), folder) == {"x": 2}
    assert len(calls) == 2
    assert cached({}, {}, counting_build(calls, {"x": 3}), folder) == {"x": 2}


def test_old_entries_are_pruned_and_entries_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    for seed in range(5):
        cached({"seed": seed}, {}, counting_build([], seed), folder)
        time.sleep(0.01)  # distinct modification times
    entries = list(folder.glob("agent-*.pkl"))
    assert all(p.stat().st_mode & 0o077 == 0 for p in [folder, *entries])
    removed = prune(folder, keep=2)
    assert len(removed) == 3 and len(list(folder.glob("agent-*.pkl"))) == 2
    calls: list[int] = []
    assert cached({"seed": 4}, {}, counting_build(calls, -1), folder) == 4  # kept
    assert cached({"seed": 0}, {}, counting_build(calls, -1), folder) == -1  # pruned
    assert len(calls) == 1


def test_agent_for_node_reads_the_cache(tmp_path: Path, monkeypatch) -> None:
    data = small_views(tmp_path / "d.npz", views=(3, 1), n=60, seed=0)
    config = parse_run_config({"dataset": str(data), "n-clusters": 10})
    node = {"partition-id": 1, "num-partitions": 2}
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    first, k = agent_for_node(config, node)
    (entry,) = (tmp_path / "cache").glob("agent-*.pkl")
    again, k2 = agent_for_node(config, node)
    assert k == k2 and again.agent_id == first.agent_id == 1
    np.testing.assert_array_equal(again.x_train, first.x_train)
    assert entry.stat().st_size > first.x_train.nbytes


def context() -> Context:
    return Context(
        run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={}
    )


def test_resume_picks_the_round_before_the_servers(tmp_path: Path) -> None:
    config = SimpleNamespace(checkpoint_dir=str(tmp_path), resume=True)
    for rnd in (1, 2, 3):  # round 3 trained after the server's last checkpoint
        checkpoint_agent(config, 0, rnd, f"state-{rnd}".encode(), [rnd], [rnd])
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["agent-0.json"]
    ctx = context()
    assert restore_agent_checkpoint(config, 0, ctx, server_round=3)
    assert saved_trainer(ctx) == b"state-2"
    ctx = context()
    assert restore_agent_checkpoint(config, 0, ctx, server_round=4)
    assert saved_trainer(ctx) == b"state-3"
    with pytest.raises(CheckpointError, match="no checkpoint of round 0"):
        restore_agent_checkpoint(config, 0, context(), server_round=1)
