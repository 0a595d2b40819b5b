"""Run one configured simulation in process or on Ray; the runtime choice.

``inprocess`` drives the ServerApp and ClientApp code through
:class:`simulations.inprocess.InProcessGrid`, agents one after another in this
process with one thread each (no Ray start-up; the default of :func:`simulate`,
``otm-flower run`` and the benchmarks); ``ray`` is Flower's simulation engine
(one Ray worker per agent, as ``flwr run``), on a local Ray instance or attached
to a running Ray cluster (:class:`RayOptions`).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otm_flower.config import BASELINE_METHODS, ConfigError, RunConfig

if TYPE_CHECKING:
    from simulations.inprocess import InProcessGrid

#: Runtimes :func:`simulate` takes.
RUNTIMES = ("inprocess", "ray")

#: Environment variable naming a running Ray cluster (read by ``ray.init`` too).
RAY_ADDRESS_ENV = "RAY_ADDRESS"


@dataclass(frozen=True)
class RayOptions:
    """Where and how the ``ray`` runtime runs the agents.

    Attributes
    ----------
    address : str, optional
        A running Ray cluster (``host:port`` or ``auto``); ``None``: ``$RAY_ADDRESS``
        if set, else a new local Ray instance.
    num_cpus : int, optional
        CPUs of a new local Ray instance (default: all); not with a cluster.
    cpus_per_agent, gpus_per_agent : float
        Resources each agent's Ray worker reserves (Flower's ``client_resources``;
        a fraction of a GPU shares it between agents).
    """

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_agent: float = 1.0
    gpus_per_agent: float = 0.0

    def cluster_address(self) -> str | None:
        """The cluster to attach to: ``address``, else ``$RAY_ADDRESS``, else None."""
        return self.address or os.environ.get(RAY_ADDRESS_ENV) or None

    def backend_config(self, *, verbose: bool = False) -> dict[str, Any]:
        """Flower's ``backend_config`` for these options.

        Raises
        ------
        ConfigError
            On non-positive CPUs per agent, negative GPUs, or ``num_cpus`` together
            with a cluster address (a cluster's size is its own).
        """
        if self.cpus_per_agent <= 0 or self.gpus_per_agent < 0:
            raise ConfigError(
                "cpus-per-agent must be > 0 and gpus-per-agent >= 0, got "
                f"{self.cpus_per_agent} and {self.gpus_per_agent}"
            )
        address = self.cluster_address()
        if address and self.num_cpus is not None:
            raise ConfigError(
                f"num-cpus sizes a local Ray instance; the cluster at {address} "
                "has its own size (drop num-cpus or the address)"
            )
        init: dict[str, Any] = (
            {"address": address}
            if address
            else {"num_cpus": self.num_cpus or os.cpu_count() or 1}
        )
        if not verbose:
            init.update(log_to_driver=False, logging_level=logging.WARNING)
        resources = {"num_cpus": self.cpus_per_agent, "num_gpus": self.gpus_per_agent}
        return {"client_resources": resources, "init_args": init}


def simulate(
    config: RunConfig,
    *,
    runtime: str | None = None,
    num_cpus: int | None = None,
    verbose: bool = False,
    mods: list[Any] | None = None,
    ray: RayOptions | None = None,
) -> dict[str, Any]:
    """Run ``config`` in simulation; return the result document.

    By default in process, as ``otm-flower run``; ``runtime="ray"`` (or any Ray
    option: ``num_cpus``, ``ray``) runs it on Flower's simulation engine.

    Parameters
    ----------
    config : RunConfig
        The run; ``config.out`` must name the JSON file to write.
    runtime : {"inprocess", "ray"}, optional
        ``inprocess``: the ServerApp and ClientApp code driven through
        :class:`simulations.inprocess.InProcessGrid`, agents one after another in
        this process with one thread each (no Ray start-up). ``ray``: Flower's
        simulation engine (one Ray worker per agent, as ``flwr run``). Default:
        ``ray`` when ``num_cpus`` or ``ray`` is given, else ``inprocess``.
    num_cpus : int, optional
        CPUs of a local Ray instance (default: all); overrides ``ray.num_cpus``.
    verbose : bool
        Flower's debug logging (and Ray's worker output).
    mods : list, optional
        Flower client mods wrapped around every agent's ClientApp.
    ray : RayOptions, optional
        Cluster address and per-agent resources of the ``ray`` runtime.

    Raises
    ------
    ConfigError
        On an unknown runtime, Ray options with ``runtime="inprocess"``, an empty
        ``config.out`` or inconsistent Ray options.
    """
    runtime = _runtime(runtime, ray_options=num_cpus is not None or ray is not None)
    if not config.out:
        raise ConfigError("simulate() needs config.out, the JSON result path")
    out = Path(config.out)
    if out.exists():
        out.unlink()
    if runtime == "inprocess":
        return simulate_inprocess(config, mods=mods)[0]
    ray = ray or RayOptions()
    if num_cpus is not None:
        ray = replace(ray, num_cpus=num_cpus)
    _run_on_ray(config, ray=ray, verbose=verbose, mods=mods)
    if not out.exists():
        raise RuntimeError(
            f"the simulation ended without writing {out}; see Flower's log"
        )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _runtime(runtime: str | None, *, ray_options: bool) -> str:
    """The runtime :func:`simulate` uses (see its ``runtime`` parameter)."""
    if runtime is None:
        return "ray" if ray_options else "inprocess"
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if runtime == "inprocess" and ray_options:
        raise ConfigError(
            "num_cpus and ray are options of runtime='ray'; the in-process "
            "runtime runs the agents in this process (drop them, or pass "
            "runtime='ray')"
        )
    return runtime


def _run_on_ray(
    config: RunConfig,
    *,
    ray: RayOptions,
    verbose: bool,
    mods: list[Any] | None,
) -> None:
    """Run ``config`` on Flower's simulation engine with ``ray``'s resources."""
    from flwr.simulation import run_simulation

    from clients.app import build_client_app
    from simulations.server_app import build_server_app, expected_agents

    backend_config = ray.backend_config(verbose=verbose)
    with warnings.catch_warnings():
        if not verbose:  # Ray's advice on a future default, at every start
            warnings.filterwarnings("ignore", "Tip: In future versions of Ray")
        run_simulation(
            server_app=build_server_app(config),
            client_app=build_client_app(config, mods=mods),
            num_supernodes=expected_agents(config),
            backend_config=backend_config,
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
