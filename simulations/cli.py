"""``otm-flower``: run one simulation (``run``), a benchmark grid (``bench``), the
mixer benchmark (``bench-mixer``), split a table into parties (``split``) or predict
with trained agents (``predict``).

Imports are lazy: ``--help`` loads neither torch, Flower nor scikit-learn.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otm_flower.config import (
    METHODS,
    ConfigError,
    RunConfig,
    parse_run_config,
    valid_keys,
)
from simulations.overrides import parse_set

if TYPE_CHECKING:
    from simulations.runner import simulate, simulate_inprocess

__all__ = ["RUNTIMES", "build_parser", "main", "simulate", "simulate_inprocess"]

#: Runtimes ``otm-flower run --runtime`` takes (``simulations.runner.RUNTIMES``).
RUNTIMES = ("inprocess", "ray")

#: Names this module re-exports from :mod:`simulations.runner`, imported on use.
_RUNNER_NAMES = ("simulate", "simulate_inprocess")


def __getattr__(name: str) -> Any:
    """``simulate`` and ``simulate_inprocess`` from :mod:`simulations.runner`."""
    if name in _RUNNER_NAMES:
        return getattr(importlib.import_module("simulations.runner"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "split": (
        "simulations.split",
        "split a table into one file per party (see --help)",
    ),
    "predict": (
        "simulations.predict",
        "predict with trained agents (see --help)",
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
        "--runtime",
        default="inprocess",
        choices=list(RUNTIMES),
        help="inprocess (default): the ServerApp and ClientApp code in this "
        "process, agents one after another; ray: Flower's simulation engine, one "
        "Ray worker per agent",
    )
    _add_ray_options(run)
    run.add_argument(
        "--verbose",
        action="store_true",
        help="Flower's own log on the terminal (default: in <out>.log)",
    )


def _add_ray_options(run: Any) -> None:
    """Options of ``--runtime ray``: local CPUs, cluster address, per-agent share."""
    ray = run.add_argument_group("--runtime ray")
    ray.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        help="CPUs of the local Ray instance (default: all; not with --ray-address)",
    )
    ray.add_argument(
        "--ray-address",
        default=None,
        help="attach to a running Ray cluster (e.g. 127.0.0.1:6379 or auto; "
        "default: $RAY_ADDRESS, else a local Ray instance)",
    )
    ray.add_argument(
        "--cpus-per-agent",
        type=float,
        default=1.0,
        help="CPUs each agent's worker reserves (Flower's client-resources)",
    )
    ray.add_argument(
        "--gpus-per-agent",
        type=float,
        default=0.0,
        help="GPUs (or a fraction) each agent's worker reserves",
    )


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


def log_file_for(config: RunConfig) -> Path:
    """Where ``otm-flower run`` writes Flower's log: next to the result file."""
    return Path(config.out).with_suffix(".log")


def _simulate(args: argparse.Namespace, config: RunConfig) -> dict[str, Any]:
    """Run ``config`` as the options say (round lines unless ``--verbose``)."""
    from simulations.runner import RayOptions, simulate

    ray = (
        RayOptions(
            address=args.ray_address,
            num_cpus=args.num_cpus,
            cpus_per_agent=args.cpus_per_agent,
            gpus_per_agent=args.gpus_per_agent,
        )
        if args.runtime == "ray"
        else None
    )
    if args.verbose:
        return simulate(config, runtime=args.runtime, ray=ray, verbose=True)
    from simulations.progress import round_progress

    log_file = log_file_for(config)
    print(f"Flower's log: {log_file} (--verbose: on the terminal)", flush=True)
    with round_progress(config.num_server_rounds, log_file):
        return simulate(config, runtime=args.runtime, ray=ray)


def run_command(args: argparse.Namespace) -> int:
    """``otm-flower run``: one simulation; exit status 2 on bad config or data."""
    from otm_flower.data import DataError

    try:
        config = run_config_from_args(args)
        result = _simulate(args, config)
    except (ConfigError, DataError) as err:
        print(f"otm-flower: error: {err}", file=sys.stderr)
        return 2
    print(_headline(result, config.out))
    return 0


def forward(name: str, argv: list[str]) -> int:
    """Run the subcommand ``name`` (a key of :data:`FORWARDED`) with ``argv``.

    A subcommand whose module is not installed exits 2 with a message naming it.
    """
    module_name = FORWARDED[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        print(
            f"otm-flower: error: '{name}' is not available in this installation "
            f"(module {module_name} not found)",
            file=sys.stderr,
        )
        return 2
    status: int = module.main(argv)
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``otm-flower`` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in FORWARDED:
        return forward(argv[0], argv[1:])
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
