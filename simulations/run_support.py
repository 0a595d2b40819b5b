"""What every server of a run needs: the agent count, waiting for agents, the
agents' extra metrics in the result, finishing."""

from __future__ import annotations

import time
from logging import INFO
from typing import Any

from flwr.serverapp import Grid
from flwr.supercore import log

from otm_flower.config import ConfigError, RunConfig
from otm_flower.data import load_dataset
from otm_flower.results import format_summary, run_folder, write_result
from simulations.html_report import write_run_outputs

#: Seconds without a new node after which too few nodes is an error.
STALL_SECONDS = 60.0


def expected_agents(config: RunConfig) -> int:
    """Agents of the run: ``num-agents``, or one per view x ``agents-per-modality``.

    With ``num-agents`` 0 the server reads the data set's view count (possible in a
    simulation; in a deployment, where the data stays at the parties, set
    ``num-agents``).

    Raises
    ------
    ConfigError
        When ``num-agents`` is 0 and the server has no data set to count views in.
    """
    if config.num_agents > 0:
        return config.num_agents
    try:
        views = load_dataset(config.dataset).n_views
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"set the run-config key num-agents (the number of parties): with "
            f"num-agents 0 the server counts the views of dataset "
            f"{config.dataset!r}, which it cannot load ({err})"
        ) from err
    return views * config.agents_per_modality


def _fix_hint(num_agents: int) -> str:
    return (
        f"in a simulation run with --federation-config "
        f'"num-supernodes={num_agents}"; in a deployment start {num_agents} '
        "SuperNodes (one per party), or set num-agents"
    )


def wait_for_agents(
    grid: Grid, num_agents: int, timeout: float, stall: float = STALL_SECONDS
) -> None:
    """Block until ``num_agents`` nodes are connected.

    Raises ``TimeoutError`` after ``timeout`` s, or sooner when no new node
    connected for ``min(stall, timeout)`` s (a simulation's nodes never
    change; a deployment's arrive one by one), naming the fix.
    """
    start = last_change = time.monotonic()
    seen = -1
    limit = min(stall, timeout)
    while (connected := len(list(grid.get_node_ids()))) < num_agents:
        now = time.monotonic()
        if connected != seen:
            seen, last_change = connected, now
        if now - last_change > limit or now - start > timeout:
            raise TimeoutError(
                f"only {connected} of {num_agents} agents connected after "
                f"{now - start:.0f} s (none new for {now - last_change:.0f} s): "
                + _fix_hint(num_agents)
            )
        if int(now - start) % 10 == 0:
            log(
                INFO,
                "waiting for agents: %d of %d connected; %s",
                connected,
                num_agents,
                _fix_hint(num_agents),
            )
        time.sleep(1.0)


#: Per-agent evaluate metrics the result rows carry besides the label metrics.
EXTRA_AGENT_METRICS = ("silhouette",)


def add_agent_metrics(
    result: dict[str, Any], agent_metrics: dict[int, dict[int, dict[str, float]]]
) -> dict[str, Any]:
    """Add :data:`EXTRA_AGENT_METRICS` of each agent's latest evaluation to its
    result row, and their mean to ``result["mean"]``; returns ``result``."""
    latest: dict[int, dict[str, float]] = {}
    for rnd in sorted(agent_metrics):
        latest.update(agent_metrics[rnd])
    for key in EXTRA_AGENT_METRICS:
        values = []
        for row in result.get("agents", []):
            value = latest.get(int(row["id"]), {}).get(key)
            row[key] = None if value is None or value != value else float(value)
            if row[key] is not None:
                values.append(row[key])
        result.setdefault("mean", {})[key] = (
            sum(values) / len(values) if values else None
        )
    return result


def finish_run(result: dict[str, Any], config: RunConfig, run_id: int) -> None:
    """Log a run's summary and write its result (``out``) and output folder."""
    log(INFO, "\n%s", format_summary(result))
    if config.out:
        log(INFO, "result written to %s", write_result(result, config.out))
    if config.output_dir:
        run_dir = run_folder(config.output_dir, config.to_dict(), run_id)
        write_run_outputs(result, run_dir)
        log(INFO, "result, plot and report (report.html) in %s", run_dir)
