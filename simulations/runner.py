"""Run one configured simulation on Ray or in process; the runtime choice.

``ray`` is Flower's simulation engine (one Ray worker per agent, as ``flwr run``);
``inprocess`` drives the same ServerApp and ClientApp code through
:class:`simulations.inprocess.InProcessGrid`, agents one after another in this
process with one thread each (no Ray start-up; what benchmarks use).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otm_flower.config import BASELINE_METHODS, ConfigError, RunConfig

if TYPE_CHECKING:
    from simulations.inprocess import InProcessGrid

#: Runtimes :func:`simulate` takes.
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

    Raises
    ------
    ConfigError
        On an unknown runtime or an empty ``config.out``.
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
    _run_on_ray(config, num_cpus=num_cpus, verbose=verbose, mods=mods)
    if not out.exists():
        raise RuntimeError(
            f"the simulation ended without writing {out}; see the log above"
        )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _run_on_ray(
    config: RunConfig,
    *,
    num_cpus: int | None,
    verbose: bool,
    mods: list[Any] | None,
) -> None:
    """Run ``config`` on Flower's simulation engine, one CPU per agent."""
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
