"""Fully unaligned OTM scored two ways: held-out (this project) and transductive.

The OTM paper (Table 2) reports clustering purity with every sample used for
training and for scoring, k-means run per view on that view's codes. This script
trains each cell exactly as ``otm-flower bench`` does (same run config: the
regime ``unaligned``, the method tables of a hyperparameter file, then ``--set``
keys) through the project's in-process runtime, then scores every agent twice
at the final round:

- held-out: the run's own result (k-means on the agent's test codes), written
  as a bench result document to ``OUT/runs/<run>.json``, so
  ``otm-flower bench --summarize OUT`` prints it;
- transductive (for comparison only): k-means on the codes of all the agent's
  rows, training and test, scored against all their labels, written to
  ``OUT/transductive/<run>.json``; next to it, k-means on the same rows'
  preprocessed features (``raw``).

The paper's choice of the best epoch by a label-based score is not reproduced:
every figure is the final round's. Labels are read here, on the simulator's
side, only to score; nothing new leaves a party.

Run ``python -m research.paper_protocol --out DIR [--preset paper]`` and
``python -m research.paper_protocol --table DIR...`` for the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from otm_flower.config import RunConfig
from otm_flower.metrics import clustering_scores
from otm_flower.results import write_result
from simulations.benchmark.grid import BenchRun, load_results, result_path
from simulations.benchmark.hyperparameters import (
    DEFAULT_HYPERPARAMETERS,
    load_hyperparameters,
    run_config_for,
)
from simulations.benchmark.scores import format_pm, mean_score
from simulations.benchmark.tables import markdown_table
from simulations.overrides import parse_set

#: Data sets of the paper's Table 2 that the shared folder holds.
PAPER_DATASETS = ("orl", "movies", "prokaryotic")

#: The paper's Table 2 purity of MWAE+OTM, fully unaligned.
PAPER_PURITY = {"orl": 0.6550, "movies": 0.2925, "prokaryotic": 0.5438}

SCORES = ("purity", "acc", "nmi")


def _scores(codes: np.ndarray, labels: np.ndarray, k: int, seed: int) -> dict:
    out = clustering_scores(codes, labels, n_clusters=k, seed=seed)
    return {key: out[key] for key in SCORES}


def transductive_scores(contexts: Iterable[Any], config: RunConfig) -> list[dict]:
    """Per agent: k-means scores on the codes (``otm``) and on the features
    (``raw``) of all its rows, training and test, at the run's final state."""
    from clients.node import agent_for_node, restore_trainer

    agents = []
    for context in contexts:
        agent, k = agent_for_node(config, dict(context.node_config))
        if agent.y_train is None or agent.y_test is None:
            raise ValueError(f"agent {agent.agent_id} holds no labels to score")
        x = np.concatenate([agent.x_train, agent.x_test])
        y = np.concatenate([agent.y_train, agent.y_test])
        codes = restore_trainer(config, agent, k, context).encode(x)
        test = slice(len(agent.x_train), None)
        agents.append(
            {
                "agent": agent.agent_id,
                "modality": agent.modality_name,
                "otm": _scores(codes, y, k, config.seed),
                "raw": _scores(x, y, k, config.seed),
                # the same codes, test rows only: must match the run's own score
                "test_rows": _scores(codes[test], y[test], k, config.seed),
            }
        )
    return agents


def run_cell(run: BenchRun, config: RunConfig, out: Path) -> dict[str, Any]:
    """Train one cell in process; write its held-out result and transductive
    scores; return the transductive document."""
    from simulations.runner import simulate_inprocess

    result, grid = simulate_inprocess(config)
    result["regime"] = run.regime
    path = result_path(out, run)
    partial = path.with_name(f".{path.name}.partial")
    write_result(result, partial)
    os.replace(partial, path)
    doc = {
        "dataset": run.dataset,
        "seed": run.seed,
        "preset": config.preset,
        "agents": transductive_scores(grid.contexts.values(), config),
    }
    trans = out / "transductive" / f"{run.name}.json"
    trans.parent.mkdir(parents=True, exist_ok=True)
    trans.write_text(json.dumps(doc, indent=2))
    return doc


def run_all(args: argparse.Namespace) -> None:
    """Every (data set, seed) cell not yet in ``args.out``."""
    out = Path(args.out)
    hyper = load_hyperparameters(args.hyperparameters or None)
    extra = parse_set(args.set)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "command.json").write_text(
        json.dumps({"argv": ["python", "-m", "research.paper_protocol", *args.argv]})
    )
    for dataset in args.datasets.split(","):
        for seed in range(args.seeds):
            run = BenchRun(dataset, "otm", "unaligned", seed)
            if (out / "transductive" / f"{run.name}.json").is_file():
                continue
            config = run_config_for(run, args.rounds, hyper, extra)
            run_cell(run, config, out)
            print(f"paper_protocol: {run.name} done", flush=True)


def _agent_mean(docs: list[dict], source: str, key: str) -> list[float]:
    """Per seed: the mean over agents of one transductive score."""
    return [float(np.mean([a[source][key] for a in d["agents"]])) for d in docs]


def _row(dataset: str, label: str, folder: Path) -> list[str]:
    held = [r for r in load_results(folder) if r.get("dataset") == dataset]
    docs = [
        json.loads(p.read_text())
        for p in sorted((folder / "transductive").glob(f"{dataset}__*.json"))
    ]
    return [
        dataset,
        label,
        str(len(held)),
        *(format_pm((mean_score(r, k) for r in held), 3) for k in SCORES),
        *(format_pm(_agent_mean(docs, "otm", k), 3) for k in SCORES),
        format_pm(_agent_mean(docs, "raw", "purity"), 3),
        f"{PAPER_PURITY[dataset]:.4f}",
    ]


def paper_table(folders: Sequence[tuple[str, Path]]) -> str:
    """Markdown table: per data set and folder, held-out and transductive
    purity/ACC/NMI (mean ± std over seeds of the mean over agents), the
    transductive raw k-means purity and the paper's purity."""
    header = [
        "data set",
        "setting",
        "seeds",
        *(f"held-out {k}" for k in SCORES),
        *(f"transductive {k}" for k in SCORES),
        "transductive raw k-means purity",
        "paper purity",
    ]
    rows = [
        _row(dataset, label, folder)
        for dataset in PAPER_DATASETS
        for label, folder in folders
    ]
    return "\n".join(markdown_table(header, rows))


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", default="outputs/paper-protocol")
    parser.add_argument("--datasets", default=",".join(PAPER_DATASETS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--hyperparameters",
        default=str(DEFAULT_HYPERPARAMETERS),
        help="TOML file of per-method run-config tables ('' for none)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--table",
        nargs="+",
        metavar="LABEL=DIR",
        default=None,
        help="run nothing: print the table of these folders",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.table:
        pairs = [item.partition("=") for item in args.table]
        print(paper_table([(label, Path(folder)) for label, _, folder in pairs]))
        return 0
    run_all(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
