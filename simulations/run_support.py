"""What every server of a run needs: the agent count, waiting for agents, finishing."""

from __future__ import annotations

import time
from logging import INFO
from typing import Any

from flwr.serverapp import Grid
from flwr.supercore import log

from otm_flower.config import RunConfig
from otm_flower.data import load_dataset
from otm_flower.results import format_summary, plot_history, run_folder, write_result


def expected_agents(config: RunConfig) -> int:
    """Agents of the run: ``num-agents``, or one per view x ``agents-per-modality``.

    With ``num-agents`` 0 the server reads the data set's view count (possible in a
    simulation; in a deployment, where the data stays at the agents, set
    ``num-agents``).
    """
    if config.num_agents > 0:
        return config.num_agents
    return load_dataset(config.dataset).n_views * config.agents_per_modality


def wait_for_agents(grid: Grid, num_agents: int, timeout: float) -> None:
    """Block until ``num_agents`` nodes are connected (raises after ``timeout`` s)."""
    start = time.monotonic()
    hint = (
        f"start one SuperNode per agent (simulation: flwr run . --federation-config "
        f'"num-supernodes={num_agents}"), or set num-agents'
    )
    while (connected := len(list(grid.get_node_ids()))) < num_agents:
        waited = time.monotonic() - start
        if waited > timeout:
            raise TimeoutError(
                f"only {connected} of {num_agents} agents connected after "
                f"{timeout:.0f} s: {hint}"
            )
        if int(waited) % 10 == 0:
            log(
                INFO,
                "waiting for agents: %d of %d connected; %s",
                connected,
                num_agents,
                hint,
            )
        time.sleep(1.0)


def finish_run(result: dict[str, Any], config: RunConfig, run_id: int) -> None:
    """Log a run's summary and write its result (``out``) and output folder."""
    log(INFO, "\n%s", format_summary(result))
    if config.out:
        log(INFO, "result written to %s", write_result(result, config.out))
    if config.output_dir:
        run_dir = run_folder(config.output_dir, config.to_dict(), run_id)
        write_result(result, run_dir / "result.json")
        plot_history(result, run_dir / "history.png")
        log(INFO, "results and plots in %s", run_dir)
