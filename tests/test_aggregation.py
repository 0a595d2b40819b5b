"""``parameter-aggregation``: the server combines shared parameters as Flower's
FedAvg, FedMedian, FedTrimmedAvg or Krum would (a hand-checkable case)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import MetricRecord
from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg, Krum

from otm_flower.averaging import aggregate_shared, krum_hostile_bound
from otm_flower.config import ConfigError, parse_run_config
from simulations.fedavg_server import EvaluateRecorder, fedavg_strategy
from strategies.otm import OTMStrategy
from strategies.replies import Upload

# Five agents' two-coordinate parameter; agent 2 is far off in coordinate 1.
VALUES = [[1.0, 2.0], [2.0, 3.5], [3.0, 100.0], [4.0, 4.0], [6.0, 5.0]]
WEIGHTS = [1.0, 1.0, 1.0, 1.0, 4.0]


def uploads() -> list[dict[str, np.ndarray]]:
    return [{"head.w": np.array(v, dtype=np.float32)} for v in VALUES]


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        # sum_k w_k x_k / sum_k w_k = ([1+2+3+4+24] / 8, [2+3.5+100+4+20] / 8)
        ("mean", [34 / 8, 129.5 / 8]),
        ("median", [3.0, 4.0]),  # per coordinate, unweighted (FedMedian)
        # beta 0.2 of 5: cut the lowest and highest per coordinate (FedTrimmedAvg)
        ("trimmed-mean", [3.0, (3.5 + 4.0 + 5.0) / 3]),
        # f = 1, each agent's score: squared distances to its 2 nearest others;
        # agent 1 (3.25 + 4.25 = 7.5) beats agent 3 (4.25 + 5 = 9.25)
        ("krum", [2.0, 3.5]),
    ],
)
def test_each_aggregation_computes_what_flower_computes(
    how: str, expected: list[float]
) -> None:
    out = aggregate_shared(uploads(), WEIGHTS, how)
    assert list(out) == ["head.w"] and out["head.w"].dtype == np.float32
    np.testing.assert_allclose(out["head.w"], expected, rtol=1e-6)


def test_bad_aggregations_are_refused() -> None:
    with pytest.raises(ValueError, match="aggregation must be one of"):
        aggregate_shared(uploads(), WEIGHTS, "mode")
    with pytest.raises(ValueError, match="one non-negative weight per upload"):
        aggregate_shared(uploads(), [1.0], "median")
    with pytest.raises(ConfigError, match="parameter-aggregation must be one of"):
        parse_run_config({"parameter-aggregation": "mode"})
    with pytest.raises(ValueError, match="aggregation must be one of"):
        OTMStrategy(share="head", aggregation="mode")
    assert [krum_hostile_bound(n) for n in (2, 3, 5, 6, 7)] == [0, 0, 1, 1, 2]


def test_otm_head_averages_the_head_by_the_configured_aggregation() -> None:
    config = parse_run_config(
        {
            "method": "otm-head",
            "task": "classification",
            "parameter-aggregation": "median",
        }
    )
    strategy = OTMStrategy.from_run_config(config, num_agents=5)
    assert strategy.aggregation == "median"
    replies = [
        Upload(i, np.zeros((2, 2), np.float32), MetricRecord(), None, u, w, 0)
        for i, (u, w) in enumerate(zip(uploads(), WEIGHTS, strict=True))
    ]
    record = strategy._average(1, replies)
    assert record is not None
    np.testing.assert_allclose(record["head.w"].numpy(), [3.0, 4.0])


@pytest.mark.parametrize(
    ("how", "kind"),
    [
        ("mean", FedAvg),
        ("median", FedMedian),
        ("trimmed-mean", FedTrimmedAvg),
        ("krum", Krum),
    ],
)
def test_fedavg_server_runs_flowers_strategy_for_the_aggregation(
    how: str, kind: type
) -> None:
    config = parse_run_config({"method": "fedavg", "parameter-aggregation": how})
    strategy = fedavg_strategy(config, 6, EvaluateRecorder())
    assert type(strategy) is kind
    if how == "trimmed-mean":
        assert strategy.beta == 0.2
    if how == "krum":
        assert strategy.num_malicious_nodes == 1
