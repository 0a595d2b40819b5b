"""The OTM ServerApp (``flwr run .``): runs OTMStrategy and writes the result."""

from __future__ import annotations

import time
from logging import INFO
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.supercore import log

from otm_flower.config import RunConfig, parse_run_config
from otm_flower.data import load_dataset
from otm_flower.results import build_result, format_summary, write_result
from strategies.otm import OTMStrategy


def expected_agents(config: RunConfig) -> int:
    """Agents of the run: ``num-agents``, or one per view x ``agents-per-modality``.

    With ``num-agents`` 0 the server reads the data set's view count (possible in a
    simulation; in a deployment, where the data stays at the agents, set
    ``num-agents``).
    """
    if config.num_agents > 0:
        return config.num_agents
    return load_dataset(config.dataset).n_views * config.agents_per_modality


def make_strategy(config: RunConfig, num_agents: int) -> OTMStrategy:
    """The OTMStrategy a run config describes."""
    return OTMStrategy(
        min_available_nodes=num_agents,
        min_agents=min(config.min_agents, num_agents),
        mix_batch_size=config.mix_batch_size,
        latent_dim=config.latent_dim,
        alpha=config.fgw_alpha,
        variant=config.barycenter_variant,
        barycenter_iterations=config.barycenter_iterations,
        concentration=config.dirichlet_concentration,
        seed=config.seed,
    )


def run_otm(grid: Grid, config: RunConfig) -> dict[str, Any]:
    """Run a federated OTM job on ``grid`` and return its result document."""
    num_agents = expected_agents(config)
    strategy = make_strategy(config, num_agents)
    log(
        INFO,
        "OTM on %s: %d agents, %d rounds",
        config.dataset,
        num_agents,
        config.num_server_rounds,
    )
    start = time.perf_counter()
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(),
        num_rounds=config.num_server_rounds,
        timeout=config.round_timeout,
        train_config=ConfigRecord(),
        evaluate_config=ConfigRecord(),
    )
    result = build_result(
        config.to_dict(),
        strategy.agent_metrics,
        wall_s=time.perf_counter() - start,
        bytes_up=strategy.bytes_up,
        bytes_down=strategy.bytes_down,
        extra={
            "mix_seconds": [round(s, 4) for s in strategy.mix_seconds],
            "rejected": [list(r) for r in strategy.rejected],
        },
    )
    log(INFO, "\n%s", format_summary(result))
    if config.out:
        log(INFO, "result written to %s", write_result(result, config.out))
    return result


def build_server_app(config: RunConfig | None = None) -> ServerApp:
    """Create the OTM ServerApp.

    Parameters
    ----------
    config : RunConfig, optional
        Settings to use; by default the run config Flower passes in the context.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_otm(
            grid, config if config is not None else parse_run_config(context.run_config)
        )

    return app


app = build_server_app()
