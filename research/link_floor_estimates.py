"""What each party of a data set estimates of its linked records, round by round.

The uploads of an anchored run are replayed without training (which rows go up
depends only on the record ids, the round and the server's link feedback, not on
any code): every agent draws its rows as the client does
(:func:`otm_flower.anchors.upload_rows`), the server notes which ids met
(:func:`otm_flower.anchors.met_ids`), and each party's estimate
(:func:`otm_flower.link_floor.estimated_links`) is set against the floor
``min-links-per-cluster x k``. It shows in which rounds the link floor makes a
party train alone.

Run ``python -m research.link_floor_estimates --datasets orl,movies,cub``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from otm_flower.agent import agent_anchor_ids, load_agents
from otm_flower.anchors import met_ids, upload_ids, upload_rows
from otm_flower.config import RunConfig, parse_run_config
from otm_flower.link_floor import estimated_links

DATASETS = "orl,movies,prokaryotic,cub,wikipedia,bdgp,handwritten,scene-15"


def replay(config: RunConfig, rounds: int) -> list[dict[str, Any]]:
    """One row per round and agent: confirmed links, the estimate, the floor."""
    agents, k = load_agents(config)
    anchors = [agent_anchor_ids(a, config) for a in agents]
    draws = [upload_ids(a, config, ids) for a, ids in zip(agents, anchors, strict=True)]
    linked: dict[int, np.ndarray] = {}
    rows_out = []
    for server_round in range(1, rounds + 1):
        uploads = []
        for agent, ids, draw in zip(agents, anchors, draws, strict=True):
            assert draw is not None and ids is not None  # anchor-rate > 0
            known = linked.get(agent.agent_id)
            size = min(config.mix_batch_size, agent.n_train)
            row = _estimate_row(config, k, server_round, agent.n_train, size, known)
            rows_out.append({"agent": agent.agent_id, **row})
            rng = np.random.default_rng([config.seed, agent.agent_id, server_round, 43])
            rows = upload_rows(draw, size, rng, round_key=server_round, known=known)
            uploads.append(ids[rows])
        for agent, met in zip(agents, met_ids(uploads), strict=True):
            old = linked.get(agent.agent_id, np.empty(0, np.int64))
            linked[agent.agent_id] = np.union1d(old, met)
    return rows_out


def _estimate_row(
    config: RunConfig,
    k: int,
    server_round: int,
    n_train: int,
    size: int,
    known: np.ndarray | None,
) -> dict[str, Any]:
    """What a party judges at the start of ``server_round`` from ``known``."""
    confirmed = 0 if known is None else len(known)
    estimate = estimated_links(confirmed, size / n_train, server_round - 1)
    floor = config.min_links_per_cluster * k
    return {
        "round": server_round,
        "confirmed": confirmed,
        "estimate": estimate,
        "floor": floor,
        "alone": estimate < floor,
    }


def summary(dataset: str, rows: Sequence[dict[str, Any]]) -> str:
    """One line: the data set, k-floor, and per round the agents training alone."""
    by_round: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], []).append(row)
    parts = []
    for server_round, group in sorted(by_round.items()):
        if server_round == 1:
            continue  # no targets yet: nobody judges
        alone = sum(r["alone"] for r in group)
        low = min(r["estimate"] for r in group)
        parts.append(f"r{server_round}: {alone}/{len(group)} alone (min {low:.0f})")
    floor = rows[0]["floor"]
    return f"{dataset} (floor {floor:.0f}): " + "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    """Print each data set's per-round summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=DATASETS)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--anchor-rate", type=float, default=0.05)
    parser.add_argument("--validation-fraction", type=float, default=0.0)
    args = parser.parse_args(argv)
    for dataset in args.datasets.split(","):
        for seed in args.seeds:
            config = parse_run_config(
                {
                    "dataset": dataset,
                    "seed": seed,
                    "anchor-rate": args.anchor_rate,
                    "validation-fraction": args.validation_fraction,
                }
            )
            print(f"seed {seed} " + summary(dataset, replay(config, args.rounds)))


if __name__ == "__main__":
    main()
