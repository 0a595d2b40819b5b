"""Server of the ``fedavg`` baseline: Flower's own FedAvg, unchanged."""

from __future__ import annotations

import random
import time
from typing import Any, cast

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from otm_flower import protocol as P
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


def run_fedavg(grid: Grid, config: RunConfig) -> dict[str, Any]:
    """Run FedAvg with the agents' ClientApp (method ``fedavg``); return the result.

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
    min_nodes = min(config.min_agents, num_agents)
    strategy = FedAvg(
        fraction_train=config.fraction_train,
        min_train_nodes=min_nodes,
        min_evaluate_nodes=min_nodes,
        min_available_nodes=min_nodes,
        evaluate_metrics_aggr_fn=recorder,
    )
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
