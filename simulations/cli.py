"""``otm-flower``: run one simulation (``run``), a benchmark grid (``bench``) or the
mixer benchmark (``bench-mixer``)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from otm_flower.config import (
    METHODS,
    ConfigError,
    RunConfig,
    parse_run_config,
    valid_keys,
)
from otm_flower.data import DataError
from simulations.overrides import parse_set
from simulations.runner import RUNTIMES, simulate, simulate_inprocess

__all__ = ["RUNTIMES", "build_parser", "main", "simulate", "simulate_inprocess"]

#: Subcommands that parse their own arguments: name -> (module with ``main``, help).
FORWARDED = {
    "bench": (
        "simulations.bench",
        "run a benchmark grid (datasets x methods x regimes x seeds)",
    ),
    "bench-rounds": (
        "simulations.bench_rounds",
        "OTM vs FedAvg round time and bytes; scaling with agents (see --help)",
    ),
    "bench-mixer": (
        "simulations.bench_mixer",
        "time the FGW barycenter against POT (see --help)",
    ),
}

#: ``otm-flower run`` options that set one run-config key each.
RUN_KEYS = (
    ("dataset", "dataset"),
    ("method", "method"),
    ("task", "task"),
    ("rounds", "num-server-rounds"),
    ("seed", "seed"),
    ("out", "out"),
)


def _add_run_parser(sub: Any) -> None:
    """The ``run`` subcommand's options."""
    run = sub.add_parser(
        "run", help="run one federated simulation and write a JSON result"
    )
    run.add_argument(
        "--dataset",
        default=None,
        help="handwritten, a shared name (bdgp, cub, scene-15, prokaryotic, "
        "movies, orl, wikipedia) or a .mat/.npz path",
    )
    run.add_argument(
        "--method", default=None, choices=list(METHODS), help="default: otm"
    )
    run.add_argument("--task", default=None, choices=["clustering", "classification"])
    run.add_argument("--rounds", type=int, default=None, help="federated rounds")
    run.add_argument("--seed", type=int, default=None)
    run.add_argument(
        "--out",
        default=None,
        help="JSON result file "
        "(default outputs/<dataset>-<method>-<task>-seed<seed>.json)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"any run-config key; valid: {', '.join(valid_keys())}",
    )
    run.add_argument(
        "--num-cpus", type=int, default=None, help="CPUs for the simulation"
    )
    run.add_argument(
        "--runtime",
        default="ray",
        choices=list(RUNTIMES),
        help="ray: Flower's simulation engine (default); inprocess: same apps, "
        "agents run one after another in this process (fast start)",
    )
    run.add_argument("--verbose", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The ``otm-flower`` argument parser (forwarded subcommands listed only)."""
    parser = argparse.ArgumentParser(prog="otm-flower", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(sub)
    for name, (_, help_text) in FORWARDED.items():
        sub.add_parser(name, add_help=False, help=help_text)
    return parser


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run config of ``otm-flower run``: ``--set``, then the named options.

    Without ``--out`` the result goes to
    ``outputs/<dataset>-<method>-<task>-seed<seed>.json``.
    """
    values: dict[str, Any] = parse_set(args.set)
    for option, key in RUN_KEYS:
        value = getattr(args, option)
        if value is not None:
            values[key] = value
    config = parse_run_config(values)
    if config.out:
        return config
    stem = f"{Path(config.dataset).stem.lower()}-{config.method}-{config.task}"
    return parse_run_config(
        {**config.to_dict(), "out": f"outputs/{stem}-seed{config.seed}.json"}
    )


def _headline(result: dict[str, Any], out: str) -> str:
    """The line ``otm-flower run`` prints: mean test scores, time, result path."""
    mean = result["mean"]
    accuracy = mean.get("accuracy")
    return (
        f"mean test ACC {mean['acc']:.4f}  NMI {mean['nmi']:.4f}  ARI {mean['ari']:.4f}"
        + (f"  accuracy {accuracy:.4f}" if accuracy is not None else "")
        + f"  ({result['wall_s']:.1f} s); result: {out}"
    )


def run_command(args: argparse.Namespace) -> int:
    """``otm-flower run``: one simulation; exit status 2 on bad config or data."""
    try:
        config = run_config_from_args(args)
        result = simulate(
            config,
            runtime=args.runtime,
            num_cpus=args.num_cpus,
            verbose=args.verbose,
        )
    except (ConfigError, DataError) as err:
        print(f"otm-flower: error: {err}", file=sys.stderr)
        return 2
    print(_headline(result, config.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``otm-flower`` console command."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in FORWARDED:
        module = importlib.import_module(FORWARDED[argv[0]][0])
        status: int = module.main(argv[1:])
        return status
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
