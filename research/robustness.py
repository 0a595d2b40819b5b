"""Robustness experiments: a hostile agent, a corrupted modality, random dropouts.

``python -m research.robustness --scale 1000 --seeds 0`` (``--experiment
hostile``, the default) runs OTM on Handwritten three ways (all agents honest;
agent 0 uploads codes scaled by ``--scale`` with outlier screening on; the same
with screening off) and prints the other agents' mean test ACC/NMI for each. The
hostile agent is a Flower mod around agent 0's ClientApp that rescales the codes
in its replies.

``python -m research.robustness --experiment faults --seeds 3`` runs OTM clean,
with agent ``--corrupt-agent`` corrupted by Gaussian noise of std
``--corrupt-noise`` (the data wrapper :class:`research.corruption.CorruptAgent`,
applied in each ClientApp by :class:`research.corruption.CorruptAgentMod`) and
with every agent failing each training round with probability
``--dropout-rate`` (the client mod :class:`research.dropout.DropoutMod`), and
prints mean ± std over seeds of ACC (all agents), ACC and NMI (the agents other
than the corrupted one) and the couplings' class agreement.

Both take further run-config keys with ``--set KEY=VALUE`` (on top of the
run-config defaults). With ``--hyperparameters configs/hyperparameters.toml``
the fault runs take the benchmark's configuration instead, as the runs of
docs/robustness.md did.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from otm_flower.agent import load_agents
from otm_flower.config import ConfigError, RunConfig, parse_run_config
from research.corruption import CorruptAgent, CorruptAgentMod
from research.dropout import DropoutMod
from simulations.cli import simulate
from simulations.overrides import parse_set

EXPERIMENTS = ("hostile", "faults")


def scale_codes_mod(partition: int, scale: float) -> Any:
    """A Flower mod: agent ``partition`` multiplies the codes it uploads."""

    def mod(msg: Any, context: Any, call_next: Any) -> Any:
        reply = call_next(msg, context)
        if context.node_config.get("partition-id") != partition:
            return reply
        if reply.has_error() or "otm" not in reply.content.array_records:
            return reply
        from flwr.app import Array

        record = reply.content.array_records["otm"]
        record["codes"] = Array(record["codes"].numpy() * scale)
        return reply

    return mod


def others_mean(result: dict[str, Any], hostile: int) -> tuple[float, float]:
    """Mean test ACC and NMI over every agent but ``hostile``."""
    rows = [a for a in result["agents"] if a["id"] != hostile]
    return (
        sum(a["acc"] for a in rows) / len(rows),
        sum(a["nmi"] for a in rows) / len(rows),
    )


def hostile(args: argparse.Namespace, extra: dict[str, str], folder: Path) -> list[str]:
    """The hostile-agent comparison, one Markdown table row per case and seed."""
    cases = [
        ("all honest", 10.0, None),
        ("agent 0 hostile, screening on", 10.0, 0),
        ("agent 0 hostile, screening off", 0.0, 0),
    ]
    lines = [
        "| case | seed | others' ACC | others' NMI | rejected uploads |",
        "|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for seed in args.seeds:
        for name, factor, bad in cases:
            config = parse_run_config(
                {
                    **extra,
                    "seed": seed,
                    "num-server-rounds": args.rounds,
                    "outlier-factor": factor,
                    "out": str(folder / f"{len(name)}-{seed}-{factor}.json"),
                }
            )
            mods = [] if bad is None else [scale_codes_mod(bad, args.scale)]
            result = simulate(config, runtime=args.runtime, mods=mods)
            acc, nmi = others_mean(result, 0)
            lines.append(
                f"| {name} | {seed} | {acc:.3f} | {nmi:.3f} | "
                f"{len(result['rejected'])} |"
            )
            print(lines[-1], flush=True)
    return lines


def fault_cases(args: argparse.Namespace, seed: int) -> list[tuple[str, list[Any]]]:
    """The fault runs of one seed: (name, client mods)."""
    corrupted = CorruptAgentMod(CorruptAgent(args.corrupt_agent, args.corrupt_noise))
    return [
        ("clean", []),
        (f"agent {args.corrupt_agent} corrupted", [corrupted]),
        (
            f"{args.dropout_rate:.0%} dropout per round",
            [DropoutMod(args.dropout_rate, seed)],
        ),
    ]


def fault_config(
    args: argparse.Namespace, extra: dict[str, str], seed: int, out: str
) -> RunConfig:
    """The run config of one fault run (label diagnostics on).

    The run-config defaults with ``extra`` on top or, with ``--hyperparameters``,
    the benchmark's config of the cell (data set, ``otm``, ``unaligned``, seed):
    what ``otm-flower bench --methods otm --regimes unaligned --set ...`` runs.
    """
    keys = {"diagnostics-dir": "auto", **extra, "seed": seed}
    keys.update({"num-server-rounds": args.rounds, "out": out})
    if args.hyperparameters is None:
        return parse_run_config(keys)
    from simulations.bench import load_hyperparameters, run_config_for
    from simulations.benchmark.grid import BenchRun

    cell = BenchRun(str(extra.get("dataset", "handwritten")), "otm", "unaligned", seed)
    tables = load_hyperparameters(args.hyperparameters)
    config = run_config_for(cell, args.rounds, tables, extra)
    return parse_run_config({**config.to_dict(), "out": out})


def check_corrupt_agent(args: argparse.Namespace, extra: dict[str, str]) -> None:
    """Fail before any run when ``--corrupt-agent`` names no agent of the data.

    Raises
    ------
    ValueError
        With the number of agents there are.
    """
    config = fault_config(args, extra, args.seeds[0], "")
    agents, _ = load_agents(config)
    CorruptAgent(args.corrupt_agent, args.corrupt_noise)(agents, config.seed)


def fault_scores(result: dict[str, Any], corrupted: int) -> list[float]:
    """ACC of all agents, ACC and NMI of the others, coupling agreement."""
    acc = [a["acc"] for a in result["agents"]]
    others_acc, others_nmi = others_mean(result, corrupted)
    agreement = result.get("coupling_agreement")
    return [
        float(np.mean(acc)),
        others_acc,
        others_nmi,
        float("nan") if agreement is None else float(agreement),
    ]


def faults(args: argparse.Namespace, extra: dict[str, str], folder: Path) -> list[str]:
    """Clean, corrupted and dropout runs; a Markdown table of mean ± std over seeds."""
    scores: dict[str, list[list[float]]] = {}
    check_corrupt_agent(args, extra)
    for seed in args.seeds:
        for case, (name, mods) in enumerate(fault_cases(args, seed)):
            out = str(folder / f"fault{case}-{seed}.json")
            config = fault_config(args, extra, seed, out)
            result = simulate(config, runtime=args.runtime, mods=mods)
            scores.setdefault(name, []).append(fault_scores(result, args.corrupt_agent))
            print(f"seed {seed}, {name}: {scores[name][-1]}", flush=True)
    lines = [
        "| run | ACC, all agents | ACC, the other agents | NMI, the others "
        "| coupling agreement |",
        "|---|---|---|---|---|",
    ]
    for name, rows in scores.items():
        values = np.array(rows)
        spread = (
            values.std(axis=0, ddof=1) if len(rows) > 1 else np.zeros(values.shape[1])
        )
        cells = [
            f"{m:.3f} ± {s:.3f}" for m, s in zip(values.mean(0), spread, strict=True)
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    parser = argparse.ArgumentParser(
        prog="python -m research.robustness", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--experiment", choices=EXPERIMENTS, default="hostile")
    parser.add_argument("--scale", type=float, default=1000.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--corrupt-agent", type=int, default=2)
    parser.add_argument("--corrupt-noise", type=float, default=3.0)
    parser.add_argument("--dropout-rate", type=float, default=0.2)
    parser.add_argument(
        "--hyperparameters",
        type=Path,
        help="faults: configure runs as the benchmark does from this file "
        "(configs/hyperparameters.toml)",
    )
    parser.add_argument("--runtime", choices=("ray", "inprocess"), default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.runtime is None:  # faults runs as the benchmark does, in process
        args.runtime = "ray" if args.experiment == "hostile" else "inprocess"
    try:
        return args, parse_set(args.set)
    except ConfigError as err:
        parser.error(str(err))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen experiment and print a Markdown table."""
    args, extra = _parse(argv)
    folder = Path(tempfile.mkdtemp(prefix="otm-robustness-"))
    run = hostile if args.experiment == "hostile" else faults
    try:
        lines = run(args, extra, folder)
    except ValueError as err:  # a ConfigError or an experiment's bad argument
        print(f"robustness: error: {err}", file=sys.stderr)
        return 2
    if args.experiment == "faults":
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
