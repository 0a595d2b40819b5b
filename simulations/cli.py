"""``otm-flower``: run one simulation (``run``), a benchmark grid (``bench``) or the
mixer benchmark (``bench-mixer``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otm_flower.config import (
    BASELINE_METHODS,
    METHODS,
    ConfigError,
    RunConfig,
    parse_run_config,
    valid_keys,
)
from otm_flower.data import DataError

if TYPE_CHECKING:
    from simulations.inprocess import InProcessGrid


def _parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


RUNTIMES = ("ray", "inprocess")


def simulate(
    config: RunConfig,
    *,
    runtime: str = "ray",
    num_cpus: int | None = None,
    verbose: bool = False,
    mods: list[Any] | None = None,
) -> dict[str, Any]:
    """Run ``config`` in simulation; return the result document.

    Parameters
    ----------
    config : RunConfig
        The run; ``config.out`` must name the JSON file to write.
    runtime : {"ray", "inprocess"}
        ``ray``: Flower's simulation engine (one Ray worker per agent, as ``flwr
        run``). ``inprocess``: the same ServerApp and ClientApp code driven through
        :class:`simulations.inprocess.InProcessGrid`, agents one after another in
        this process with one thread each (no Ray start-up; what benchmarks use).
    num_cpus : int, optional
        CPUs Ray may use (default: all); each agent takes one.
    verbose : bool
        Flower's debug logging.
    mods : list, optional
        Flower client mods wrapped around every agent's ClientApp.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if not config.out:
        raise ConfigError("simulate() needs config.out, the JSON result path")
    out = Path(config.out)
    if out.exists():
        out.unlink()
    if runtime == "inprocess":
        return simulate_inprocess(config, mods=mods)[0]
    from flwr.simulation import run_simulation

    from clients.app import build_client_app
    from simulations.server_app import build_server_app, expected_agents

    run_simulation(
        server_app=build_server_app(config),
        client_app=build_client_app(config, mods=mods),
        num_supernodes=expected_agents(config),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": num_cpus or os.cpu_count() or 1},
        },
        verbose_logging=verbose,
    )
    if not out.exists():
        raise RuntimeError(
            f"the simulation ended without writing {out}; see the log above"
        )
    return json.loads(out.read_text())


def simulate_inprocess(
    config: RunConfig, *, mods: list[Any] | None = None
) -> tuple[dict[str, Any], InProcessGrid]:
    """Run ``config`` on an :class:`InProcessGrid`; return the result and the grid.

    The grid keeps every node's ``Context`` (its trained state) for diagnostics.
    """
    from threadpoolctl import threadpool_limits

    from clients.app import build_client_app
    from simulations.inprocess import InProcessGrid
    from simulations.server_app import expected_agents, run_method

    run_id = int.from_bytes(os.urandom(6), "big")
    with threadpool_limits(1):
        num_agents = 1 if config.method in BASELINE_METHODS else expected_agents(config)
        grid = InProcessGrid(
            build_client_app(config, mods=mods),
            num_agents,
            config.to_dict(),
            run_id=run_id,
            seed=config.seed,
        )
        return run_method(grid, config), grid


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``otm-flower`` console command."""
    parser = argparse.ArgumentParser(prog="otm-flower", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="run one federated simulation and write a JSON result"
    )
    run.add_argument(
        "--dataset",
        default=None,
        help="handwritten, a shared name "
        "(bdgp, cub, scene-15, prokaryotic, movies, orl, wikipedia) or a .mat/.npz path",
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
    sub.add_parser(
        "bench",
        add_help=False,
        help="run a benchmark grid (datasets x methods x regimes x seeds)",
    )
    sub.add_parser(
        "bench-rounds",
        add_help=False,
        help="OTM vs FedAvg round time and bytes; scaling with agents (see --help)",
    )
    sub.add_parser(
        "bench-mixer",
        add_help=False,
        help="time the FGW barycenter against POT (see --help)",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench-mixer"]:
        from simulations.bench_mixer import main as bench_mixer

        return bench_mixer(argv[1:])
    if argv[:1] == ["bench-rounds"]:
        from simulations.bench_rounds import main as bench_rounds

        return bench_rounds(argv[1:])
    if argv[:1] == ["bench"]:
        from simulations.bench import main as bench

        return bench(argv[1:])
    args = parser.parse_args(argv)

    try:
        values: dict[str, Any] = _parse_set(args.set)
        for key, value in (
            ("dataset", args.dataset),
            ("method", args.method),
            ("task", args.task),
            ("num-server-rounds", args.rounds),
            ("seed", args.seed),
            ("out", args.out),
        ):
            if value is not None:
                values[key] = value
        config = parse_run_config(values)
        if not config.out:
            stem = f"{Path(config.dataset).stem.lower()}-{config.method}-{config.task}"
            config = parse_run_config(
                {
                    **config.to_dict(),
                    "out": f"outputs/{stem}-seed{config.seed}.json",
                }
            )
        result = simulate(
            config,
            runtime=args.runtime,
            num_cpus=args.num_cpus,
            verbose=args.verbose,
        )
    except (ConfigError, DataError) as err:
        print(f"otm-flower: error: {err}", file=sys.stderr)
        return 2
    mean = result["mean"]
    print(
        f"mean test ACC {mean['acc']:.4f}  NMI {mean['nmi']:.4f}  ARI {mean['ari']:.4f}"
        + (
            f"  accuracy {mean['accuracy']:.4f}"
            if mean.get("accuracy") is not None
            else ""
        )
        + f"  ({result['wall_s']:.1f} s); result: {config.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
