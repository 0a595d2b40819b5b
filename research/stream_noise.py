"""How much `local`'s score moves when only its random stream is perturbed.

An agent that draws the rows it uploads, or the mixed rows that join each
minibatch, from the same torch generator as its local training changes every
later minibatch order, even when the mix carries nothing (OTM agents use a
separate exchange stream for this reason). This script measures the spread that
such a perturbation alone causes, the noise floor of an OTM-versus-local
comparison on a data set: each agent trains alone exactly as the ``local``
method does (same config, seeds, rounds and epochs), but after every round draws
``k`` extra numbers from its trainer's generator. ``k = 0`` is the ``local``
method itself; any ``k > 0`` is an equally valid local run with a different
stream. Scores are mean-over-agents test ACC (clustering) or accuracy
(classification) at the final round, per seed.

Run ``python -m research.stream_noise --help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from otm_flower.agent import build_trainer, evaluate_agent, load_agents
from otm_flower.config import RunConfig
from otm_flower.results import write_result


def perturbed_local_score(config: RunConfig, extra_draws: int) -> float:
    """Mean-over-agents final score of ``local`` with ``extra_draws`` per round."""
    agents, n_classes = load_agents(config)
    key = "accuracy" if config.task == "classification" else "acc"
    scores = []
    for agent in agents:
        trainer = build_trainer(config, agent, n_classes)
        for _ in range(config.num_server_rounds):
            trainer.train(config.local_epochs)
            if extra_draws:
                torch.randint(2, (extra_draws,), generator=trainer.generator)
        scores.append(evaluate_agent(trainer, agent, n_classes, config)[key])
    return float(np.mean(scores))


def stream_noise(
    base: RunConfig, seeds: Sequence[int], draws: Sequence[int]
) -> dict[str, Any]:
    """Scores per number of extra draws and seed, with mean and std over seeds."""
    rows = []
    for k in draws:
        scores = [perturbed_local_score(replace(base, seed=s), k) for s in seeds]
        rows.append(
            {
                "extra_draws": k,
                "scores": scores,
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
            }
        )
        print(f"extra draws {k}: mean {rows[-1]['mean']:.4f}", flush=True)
    return {
        "dataset": base.dataset,
        "task": base.task,
        "seeds": list(seeds),
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    """One row per perturbation: mean ± std over seeds."""
    lines = [
        f"{result['dataset']} ({result['task']}), `local`, "
        f"{len(result['seeds'])} seeds",
        "",
        "| extra draws per round | mean over seeds |",
        "|---|---|",
    ]
    for row in result["rows"]:
        label = f"{row['extra_draws']}" + (
            " (`local`)" if row["extra_draws"] == 0 else ""
        )
        lines.append(f"| {label} | {row['mean']:.3f} ± {row['std']:.3f} |")
    means = [row["mean"] for row in result["rows"]]
    lines += ["", f"range of the means: {min(means):.3f} to {max(means):.3f}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m research.stream_noise", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", default="cub")
    parser.add_argument("--task", choices=("clustering", "classification"))
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    parser.add_argument("--draws", default="0,1,7,100", help="comma list, >= 0")
    parser.add_argument("--rounds", type=int, help="num-server-rounds (default 20)")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    args = parser.parse_args(argv)
    try:
        draws = [int(v) for v in args.draws.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--draws must be a comma list of integers, got {args.draws!r}")
    if not draws or min(draws) < 0 or args.seeds < 1:
        parser.error("--draws needs integers >= 0 and --seeds must be >= 1")
    options: dict[str, Any] = {"dataset": args.dataset, "method": "local"}
    if args.task:
        options["task"] = args.task
    if args.rounds:
        options["num_server_rounds"] = args.rounds
    result = stream_noise(RunConfig(**options), range(args.seeds), draws)
    print(markdown(result))
    if args.out is not None:
        write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
