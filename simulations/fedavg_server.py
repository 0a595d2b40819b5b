"""Server of the ``fedavg`` baseline: Flower's own FedAvg, unchanged.

With ``parameter-aggregation`` other than ``mean`` the server runs Flower's
robust strategy instead (``median``: FedMedian, ``trimmed-mean``: FedTrimmedAvg
with beta :data:`otm_flower.averaging.TRIM_BETA`, ``krum``: Krum assuming
:func:`otm_flower.averaging.krum_hostile_bound` hostile agents), unchanged too.
"""

from __future__ import annotations

import random
import time
from typing import Any, cast

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg, Krum
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from otm_flower import protocol as P
from otm_flower.averaging import TRIM_BETA, krum_hostile_bound
from otm_flower.config import RunConfig
from otm_flower.results import build_result
from simulations.counting_grid import CountingGrid
from simulations.run_support import (
    add_agent_metrics,
    expected_agents,
    finish_run,
    wait_for_agents,
)


class EvaluateRecorder:
    """FedAvg's ``evaluate_metrics_aggr_fn`` that also keeps every agent's metrics.

    Returns Flower's default weighted average, so FedAvg behaves as without it.
    """

    def __init__(self) -> None:
        self.agent_metrics: dict[int, dict[int, dict[str, float]]] = {}

    def __call__(self, records: list[RecordDict], weighting_key: str) -> MetricRecord:
        """Record each reply's metrics under its round and agent; then average."""
        for record in records:
            metrics = record[P.METRICS_RECORD]
            assert isinstance(metrics, MetricRecord)
            rnd = int(cast(int, metrics[P.KEY_ROUND]))
            agent = int(cast(int, metrics[P.KEY_AGENT]))
            values = {k: float(cast(float, v)) for k, v in metrics.items()}
            self.agent_metrics.setdefault(rnd, {})[agent] = values
        return aggregate_metricrecords(records, weighting_key)


def fedavg_strategy(
    config: RunConfig, num_agents: int, recorder: EvaluateRecorder
) -> FedAvg:
    """Flower's strategy for ``config.parameter_aggregation`` (FedAvg for ``mean``).

    Each waits for ``min-agents`` (at most ``num_agents``) nodes and samples
    ``fraction-train`` of them for training.
    """
    min_nodes = min(config.min_agents, num_agents)
    common: dict[str, Any] = {
        "fraction_train": config.fraction_train,
        "min_train_nodes": min_nodes,
        "min_evaluate_nodes": min_nodes,
        "min_available_nodes": min_nodes,
        "evaluate_metrics_aggr_fn": recorder,
    }
    how = config.parameter_aggregation
    if how == "median":
        return FedMedian(**common)
    if how == "trimmed-mean":
        return FedTrimmedAvg(**common, beta=TRIM_BETA)
    if how == "krum":
        sampled = max(min_nodes, round(config.fraction_train * num_agents))
        return Krum(**common, num_malicious_nodes=krum_hostile_bound(sampled))
    return FedAvg(**common)


def run_fedavg(grid: Grid, config: RunConfig) -> dict[str, Any]:
    """Run FedAvg (or the robust strategy :func:`fedavg_strategy` picks) with the
    agents' ClientApp (method ``fedavg``); return the result.

    The initial ArrayRecord is empty: every agent starts from its own initialisation
    and the first average makes the shared layers common. Bytes are the arrays
    sent down and up, counted by :class:`CountingGrid`. Flower's node sampling is
    seeded with ``config.seed`` for the run (the caller's ``random`` state is
    restored afterwards).
    """
    num_agents = expected_agents(config)
    wait_for_agents(grid, num_agents, config.round_timeout)
    counting = CountingGrid(grid)
    recorder = EvaluateRecorder()
    strategy = fedavg_strategy(config, num_agents, recorder)
    start = time.perf_counter()
    # FedAvg samples (and so orders) nodes with the global `random`; seeding it for
    # the run makes the average's summation order, and the run, reproducible.
    outer_state = random.getstate()
    random.seed(config.seed)
    try:
        strategy.start(
            grid=counting,
            initial_arrays=ArrayRecord(),
            num_rounds=config.num_server_rounds,
            timeout=config.round_timeout,
            train_config=ConfigRecord(),
            evaluate_config=ConfigRecord(),
        )
    finally:
        random.setstate(outer_state)
    result = build_result(
        config.to_dict(),
        recorder.agent_metrics,
        wall_s=time.perf_counter() - start,
        bytes_up=counting.bytes_up,
        bytes_down=counting.bytes_down,
        extra={"coupling_agreement": None},
    )
    add_agent_metrics(result, recorder.agent_metrics)
    finish_run(result, config, grid.run.run_id)
    return result
