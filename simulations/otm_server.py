"""Server of OTM, its ablations and hybrids: runs OTMStrategy, builds the result."""

from __future__ import annotations

import shutil
import time
from logging import INFO
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result
from flwr.supercore import log

from otm_flower import protocol as P
from otm_flower.config import RunConfig
from otm_flower.diagnostics import diagnostics_dir, load_upload_labels
from otm_flower.metrics import coupling_agreement
from otm_flower.mixer import BarycenterResult
from otm_flower.results import build_result
from otm_flower.run_data import data_label
from simulations.run_support import (
    add_agent_metrics,
    expected_agents,
    finish_run,
    wait_for_agents,
)
from strategies.otm import OTMStrategy
from strategies.rejoin import identify_nodes
from strategies.state import ServerState


class AgreementTracker:
    """Records the couplings' class agreement after each mixing (simulation only).

    Reads the labels that agents kept locally for their uploaded rows (see
    :mod:`otm_flower.diagnostics`); reports nothing where those files are absent.
    """

    def __init__(self, folder: Path, strategy: OTMStrategy) -> None:
        self.folder = folder
        self.strategy = strategy
        self.history: list[dict[str, Any]] = []

    def __call__(
        self, server_round: int, node_ids: list[int], result: BarycenterResult
    ) -> None:
        """Score the round's plans against the uploaded rows' labels."""
        agents = [self.strategy.state.node_agents.get(n) for n in node_ids]
        labels = [
            None if a is None else load_upload_labels(self.folder, a, server_round)
            for a in agents
        ]
        if any(y is None for y in labels):
            return
        mean, pairs = coupling_agreement(
            result.plans, [y for y in labels if y is not None]
        )
        per_agent = {
            str(a): round(float(np.nanmean(pairs[i])), 4) for i, a in enumerate(agents)
        }
        self.history.append(
            {"round": server_round, "mean": round(mean, 4), "per_agent": per_agent}
        )
        log(
            INFO,
            "round %d: coupling class agreement %.3f (mean over agent pairs)",
            server_round,
            mean,
        )


def run_otm(grid: Grid, config: RunConfig) -> dict[str, Any]:
    """Run a federated OTM job on ``grid`` and return its result document."""
    num_agents = expected_agents(config)
    strategy = OTMStrategy.from_run_config(config, num_agents)
    log(
        INFO,
        "OTM on %s: %d agents, %d rounds",
        data_label(config),
        num_agents,
        config.num_server_rounds,
    )
    wait_for_agents(grid, num_agents, config.round_timeout)
    folder = diagnostics_dir(config.diagnostics_dir, grid.run.run_id)
    tracker = AgreementTracker(folder, strategy) if folder is not None else None
    strategy.on_mix = tracker
    done = resume(strategy, grid, config) if config.resume else 0
    start = time.perf_counter()
    run_rounds(strategy, grid, config.num_server_rounds - done, config.round_timeout)
    result = otm_result(
        config,
        strategy.state,
        wall_s=time.perf_counter() - start,
        agreement=tracker.history if tracker else None,
    )
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    finish_run(result, config, grid.run.run_id)
    return result


def resume(strategy: OTMStrategy, grid: Grid, config: RunConfig) -> int:
    """Load the run's checkpoint into ``strategy``; return the rounds it holds."""
    done = strategy.resume_from(config.checkpoint_dir)
    nodes = grid.get_node_ids()
    strategy.bind_agents(identify_nodes(grid, nodes, config.round_timeout))
    log(INFO, "resuming after round %d from %s", done, config.checkpoint_dir)
    return done


def run_rounds(
    strategy: OTMStrategy, grid: Grid, num_rounds: int, timeout: float
) -> Result:
    """Run ``num_rounds`` rounds of ``strategy`` on ``grid``.

    Returns
    -------
    Result
        What Flower's ``Strategy.start`` returned (empty for no rounds); the
        run's own record is ``strategy.state``.
    """
    if num_rounds <= 0:
        return Result()
    return strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(),
        num_rounds=num_rounds,
        timeout=timeout,
        train_config=ConfigRecord(),
        evaluate_config=ConfigRecord(),
    )


def otm_result(
    config: RunConfig,
    state: ServerState,
    *,
    wall_s: float,
    agreement: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """The result document of an OTM run from the strategy's state.

    ``agreement`` is the coupling agreement per mixing round (``None``: not
    tracked).
    """
    result = build_result(
        config.to_dict(),
        state.agent_metrics,
        wall_s=wall_s,
        bytes_up=state.bytes_up,
        bytes_down=state.bytes_down,
        extra={
            "coupling_agreement": agreement[-1]["mean"] if agreement else None,
            "coupling_agreement_history": agreement or [],
            "privacy": privacy_report(config, state.train_metrics),
            "mix_seconds": [round(s, 4) for s in state.mix_seconds],
            "phase_seconds": {k: round(v, 4) for k, v in state.phase_seconds.items()},
            "rejected": [list(r) for r in state.rejected],
        },
    )
    return add_agent_metrics(result, state.agent_metrics)


def privacy_report(
    config: RunConfig, train_metrics: dict[int, dict[str, float]]
) -> dict[str, Any] | None:
    """(epsilon, delta) of local DP per agent, as the agents last reported it."""
    if config.dp_clip <= 0:
        return None
    per_agent = {
        str(agent): metrics[P.KEY_DP_EPSILON]
        for agent, metrics in sorted(train_metrics.items())
        if P.KEY_DP_EPSILON in metrics
    }
    return {
        "clip": config.dp_clip,
        "noise_multiplier": config.dp_noise,
        "delta": config.dp_delta,
        "epsilon_max": max(per_agent.values(), default=None),
        "epsilon_per_agent": per_agent,
    }
