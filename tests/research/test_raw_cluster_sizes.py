"""The raw-feature cluster-size report scores as the ``raw`` baseline does."""

from __future__ import annotations

import pytest

from otm_flower.agent import load_agents
from otm_flower.config import parse_run_config
from otm_flower.metrics import clustering_scores
from research.raw_cluster_sizes import agent_rows, markdown


def test_rows_match_the_raw_baselines_scores() -> None:
    rows = agent_rows("handwritten", seed=0)
    agents, k = load_agents(parse_run_config({"dataset": "handwritten"}))
    assert [r["agent"] for r in rows] == [a.agent_id for a in agents]
    for row, agent in zip(rows, agents, strict=True):
        scores = clustering_scores(agent.x_test, agent.y_test, k, seed=0)
        assert row["acc"] == pytest.approx(scores["acc"])
        assert row["nmi"] == pytest.approx(scores["nmi"])
        assert row["purity"] == pytest.approx(scores["purity"])
        assert 1 / k <= row["largest_cluster"] <= 1
        assert row["majority_class"] == pytest.approx(0.1)  # 200 rows per digit
    assert markdown(rows).count("\n") == len(rows) + 1
