"""The link-floor replay: confirmed links grow, and the estimate finds the links."""

from __future__ import annotations

from collections import Counter

import numpy as np

from otm_flower.agent import agent_anchor_ids, load_agents
from otm_flower.config import parse_run_config
from research.link_floor_estimates import replay, summary


def _config(per_cluster: float):
    return parse_run_config(
        {"anchor-rate": 0.05, "min-links-per-cluster": per_cluster, "seed": 0}
    )


def _shared_records(config) -> int:
    """Record ids held by at least two agents (what the server can confirm)."""
    agents, _ = load_agents(config)
    held = Counter()
    for agent in agents:
        ids = agent_anchor_ids(agent, config)
        held.update(np.unique(ids[ids >= 0]).tolist())
    return sum(count >= 2 for count in held.values())


def test_replay_confirms_links_and_estimates_their_number() -> None:
    config = _config(2.0)
    rows = replay(config, rounds=4)
    first = [r for r in rows if r["round"] == 1]
    assert all(r["confirmed"] == 0 and not r["alone"] for r in first)
    by_agent: dict[int, list[int]] = {}
    for row in rows:
        by_agent.setdefault(row["agent"], []).append(row["confirmed"])
    assert all(c == sorted(c) and c[-1] > 0 for c in by_agent.values())
    last = [r["estimate"] for r in rows if r["round"] == 4]
    shared = _shared_records(config)
    # each agent holds part of the shared records; none can exceed them by far
    assert 0.2 * shared < float(np.median(last)) < 1.5 * shared
    assert not any(r["alone"] for r in rows)  # Handwritten: far above the floor
    assert summary("handwritten", rows).startswith("handwritten (floor 20): r2: 0/6")


def test_a_floor_above_the_links_makes_every_party_train_alone() -> None:
    rows = replay(_config(100.0), rounds=3)
    assert all(r["alone"] for r in rows if r["round"] > 1)
