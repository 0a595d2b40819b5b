"""The ServerApp (``flwr run .``): runs the configured method and writes the result.

OTM, its ablations and hybrids run in :mod:`simulations.otm_server`, ``fedavg`` in
:mod:`simulations.fedavg_server`, the non-federated baselines in this process;
what they share (agent count, waiting for agents, finishing a run) lives in
:mod:`simulations.run_support`.
"""

from __future__ import annotations

from logging import INFO
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.supercore import log

from otm_flower.config import (
    BASELINE_METHODS,
    OTM_METHODS,
    ConfigError,
    RunConfig,
    parse_run_config,
)
from simulations.fedavg_server import run_fedavg
from simulations.otm_server import run_otm
from simulations.polling_grid import fast_replies
from simulations.run_support import expected_agents, finish_run, wait_for_agents

__all__ = [
    "build_server_app",
    "expected_agents",
    "finish_run",
    "run_method",
    "run_otm",
    "wait_for_agents",
]


def run_method(grid: Grid, config: RunConfig) -> dict[str, Any]:
    """Run ``config.method`` on ``grid`` and return its result document.

    OTM, its ablations and the hybrids ``otm-fedavg`` / ``otm-head`` (OTM mixing
    plus per-round averaging of shared parameters) run :func:`run_otm`;
    ``fedavg`` runs Flower's FedAvg over the agents' shared layers; the
    non-federated baselines (``local``, ``raw``, ``oracle``) need no agents and
    run in this process on the simulation's data.

    Raises
    ------
    ConfigError
        On a method none of these covers.
    """
    if config.method == "fedavg":
        return run_fedavg(grid, config)
    if config.method in BASELINE_METHODS:
        from otm_flower.baselines import run_baseline

        log(
            INFO,
            "%s: a non-federated baseline, computed in the ServerApp",
            config.method,
        )
        result = run_baseline(config, progress=lambda line: log(INFO, "%s", line))
        finish_run(result, config, grid.run.run_id)
        return result
    if config.method in OTM_METHODS:
        return run_otm(grid, config)
    raise ConfigError(f"no server for method {config.method!r}")


def build_server_app(config: RunConfig | None = None) -> ServerApp:
    """Create the ServerApp.

    Under the Deployment Runtime the grid waits for replies with a short poll
    (:mod:`simulations.polling_grid`).

    Parameters
    ----------
    config : RunConfig, optional
        Settings to use; by default the run config Flower passes in the context.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_method(
            fast_replies(grid),
            config if config is not None else parse_run_config(context.run_config),
        )

    return app


app = build_server_app()
