"""How k-means on a view's raw features scores: cluster sizes, majority share.

For each agent of a data set (one view, its held-out test rows, preprocessed as
every method sees them) this runs the ``raw`` baseline's k-means and reports its
ACC, NMI and purity next to the share of the largest found cluster and of the
most common class. A view whose k-means puts nearly every row in one cluster
scores about the majority share in ACC with an NMI near 0: a trivial clustering,
not a floor a learned method has to reach.

Run ``python -m research.raw_cluster_sizes --datasets prokaryotic,movies``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from otm_flower.agent import cluster_model, load_agents
from otm_flower.config import parse_run_config
from otm_flower.metrics import partition_scores


def agent_rows(dataset: str, seed: int) -> list[dict[str, Any]]:
    """One row per agent of ``dataset`` (split by ``seed``): scores and shares."""
    agents, k = load_agents(parse_run_config({"dataset": dataset, "seed": seed}))
    rows = []
    for agent in agents:
        if agent.y_test is None:
            raise ValueError(f"{dataset}: agent {agent.agent_id} has no labels")
        found = cluster_model(agent.x_test, k, seed).labels_
        sizes = np.bincount(found, minlength=k) / len(found)
        scores = partition_scores(agent.y_test, found)
        rows.append(
            {
                "dataset": dataset,
                "seed": seed,
                "agent": agent.agent_id,
                "dim": agent.x_test.shape[1],
                **{name: scores[name] for name in ("acc", "nmi", "purity")},
                "largest_cluster": float(sizes.max()),
                "majority_class": float(np.bincount(agent.y_test).max())
                / len(agent.y_test),
            }
        )
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table (fractions to 3 digits)."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="prokaryotic,movies,orl,bdgp")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [
        row
        for name in args.datasets.split(",")
        for seed in range(args.seeds)
        for row in agent_rows(name, seed)
    ]
    print(markdown(rows))


if __name__ == "__main__":
    main()
