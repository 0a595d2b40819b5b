"""Helpers of OTMStrategy: seeded node sampling, message records, metric means, logs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import sample_nodes
from flwr.supercore import log

from otm_flower import protocol as P
from otm_flower.code_mixer import MixedRound

SCORE_KEYS = ("acc", "nmi", "ari", "accuracy")


@contextmanager
def timed_phase(totals: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall seconds of the ``with`` block to ``totals[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        totals[name] = totals.get(name, 0.0) + time.perf_counter() - start


def sample_seeded(grid: Grid, fraction: float, min_nodes: int, seed: Any) -> list[int]:
    """Wait for ``min_nodes`` nodes, then draw ``fraction`` of them (at least
    ``min_nodes``) with ``numpy.random.default_rng(seed)``; sorted node ids."""
    _, available = sample_nodes(grid, min_nodes, 0)
    nodes = sorted(available)
    size = min(len(nodes), max(round(len(nodes) * fraction), min_nodes))
    if size >= len(nodes):
        return nodes
    rng = np.random.default_rng(seed)
    return sorted(int(n) for n in rng.choice(nodes, size, replace=False))


def round_config(
    config: ConfigRecord, server_round: int, mix_batch_size: int, share: str
) -> ConfigRecord:
    """A copy of ``config`` with the round, protocol version, upload size and
    (for the hybrids) the sharing mode."""
    out = ConfigRecord(dict(config))
    out[P.KEY_ROUND] = server_round
    out[P.KEY_VERSION] = P.PROTOCOL_VERSION
    out[P.KEY_MIX_BATCH] = mix_batch_size
    if share != "none":
        out[P.KEY_SHARING] = share
    return out


def targets_record(mixed: np.ndarray, barycenter: np.ndarray) -> ArrayRecord:
    """An agent's mix targets as float32 arrays."""
    return ArrayRecord(
        {
            P.KEY_MIXED: Array(mixed.astype(np.float32)),
            P.KEY_BARYCENTER: Array(barycenter.astype(np.float32)),
        }
    )


def arrays_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """Named arrays as an ArrayRecord."""
    return ArrayRecord({key: Array(value) for key, value in arrays.items()})


def format_scores(metrics: Mapping[str, Any]) -> str:
    """``ACC 0.612  NMI 0.598 ...`` for the score keys present."""
    return "  ".join(
        f"{k.upper()} {float(metrics[k]):.3f}" for k in SCORE_KEYS if k in metrics
    )


def log_scores(
    server_round: int, per_agent: Mapping[int, Mapping[str, Any]], mean: MetricRecord
) -> None:
    """Log each agent's scores, then their mean over agents."""
    for agent_id in sorted(per_agent):
        log(INFO, "  agent %d: %s", agent_id, format_scores(per_agent[agent_id]))
    log(
        INFO,
        "round %d mean over %d agents: %s",
        server_round,
        len(per_agent),
        format_scores(dict(mean)),
    )


def mean_metrics(
    records: Iterable[Mapping[str, Any]], keys: Iterable[str] | None = None
) -> MetricRecord:
    """Unweighted mean over records of each scalar key (present in any record)."""
    wanted = set(keys) if keys is not None else None
    sums: dict[str, list[float]] = {}
    for record in records:
        for key, value in record.items():
            if not isinstance(value, int | float) or key == P.KEY_AGENT:
                continue
            if wanted is None or key in wanted:
                sums.setdefault(key, []).append(float(value))
    means: dict[str, int | float | list[int] | list[float]] = {
        k: float(np.mean(v)) for k, v in sums.items()
    }
    return MetricRecord(means)


def log_mix(server_round: int, outcome: MixedRound) -> None:
    """Log a round's mixing: failed barycenters, anchoring, withheld targets."""
    for i, (variant, error) in enumerate(outcome.failures):
        final = outcome.result is None and i == len(outcome.failures) - 1
        log(
            WARNING,
            "round %d: %s barycenter failed (%s)%s",
            server_round,
            variant,
            error,
            "; agents train without mix targets next round"
            if final
            else "; falling back to a Wasserstein barycenter",
        )
    if outcome.result is None:
        return
    if outcome.anchoring is not None:
        log(INFO, "round %d: %s", server_round, outcome.anchoring)
    for node_id in outcome.withheld:
        log(
            WARNING,
            "round %d: mixed codes for node %d not finite; withheld",
            server_round,
            node_id,
        )
    log(
        INFO,
        "round %d: mixed %d agents' codes in %.2f s (objective %.4f)",
        server_round,
        len(outcome.withheld) + len(outcome.targets),
        outcome.seconds,
        outcome.result.objective,
    )
