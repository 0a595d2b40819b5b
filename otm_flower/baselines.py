"""Non-federated baselines of the benchmark, scored exactly like federated runs.

Each baseline takes a :class:`~otm_flower.config.RunConfig` and returns the result
document of :func:`~otm_flower.results.build_result`, with per-agent metrics from
the same helpers the Flower client uses (:mod:`otm_flower.agent`):

``local``
    Every agent trains the same WAE on its own data alone (no mixing, no
    communication): the lower bound OTM must beat.
``raw``
    No learning: k-means (and, for classification, logistic regression) on each
    agent's preprocessed raw features.
``oracle``
    One WAE on the aligned, column-wise concatenated views of all samples: the
    upper bound of what seeing every view of every sample gives (neither federated
    nor unaligned; ``agents-per-modality`` and ``unaligned-rate`` are ignored).

The three functions do not read ``config.method``; the result's ``method`` (and
its ``config["method"]``) name the baseline that ran. :func:`run_baseline`
dispatches on ``config.method``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .agent import (
    agent_facts,
    build_trainer,
    evaluate_agent,
    evaluate_codes,
    load_agents,
    validation_view,
)
from .config import RunConfig
from .data import AgentData, load_dataset, make_agents
from .results import build_result

__all__ = [
    "BASELINES",
    "oracle_agent",
    "run_baseline",
    "run_local",
    "run_oracle",
    "run_raw",
]

Progress = Callable[[str], None]
AgentMetrics = dict[int, dict[int, dict[str, float]]]


def run_local(config: RunConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Train every agent's WAE on its own data only, and score it each round.

    Parameters
    ----------
    config : RunConfig
        Data, model and training settings; ``num-server-rounds`` rounds of
        ``local-epochs`` epochs each.
    progress : callable, optional
        Called once per round with a one-line summary.

    Returns
    -------
    dict
        The result document (:func:`~otm_flower.results.build_result`), method
        ``"local"``, no bytes sent.
    """
    start = time.perf_counter()
    agents, n_classes = load_agents(config)
    metrics = _train_rounds(config, list(agents), n_classes, progress)
    return _result(config, "local", metrics, time.perf_counter() - start)


def run_raw(config: RunConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Score each agent's preprocessed raw features (no learning, one round).

    Parameters
    ----------
    config : RunConfig
        Data settings, ``task`` and ``seed`` (k-means initialisation).
    progress : callable, optional
        Called once with a one-line summary.

    Returns
    -------
    dict
        The result document, method ``"raw"``, with round 1 only.
    """
    start = time.perf_counter()
    agents, n_classes = load_agents(config)
    per_agent = {
        agent.agent_id: _scores(
            evaluate_codes(agent.x_train, agent.x_test, agent, n_classes, config),
            agent,
        )
        for agent in agents
    }
    if progress is not None:
        progress(f"raw features: {_summary(per_agent)}")
    return _result(config, "raw", {1: per_agent}, time.perf_counter() - start)


def run_oracle(config: RunConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Train one WAE on all views of all samples, aligned and concatenated.

    The views are split with one agent per modality and no unaligned rows, so
    row ``i`` of every view is the same sample; their preprocessed features are
    concatenated column-wise into one "agent" (id 0, modality -1) trained like an
    agent of :func:`run_local`.

    Parameters
    ----------
    config : RunConfig
        Data, model and training settings (``agents-per-modality`` and
        ``unaligned-rate`` are ignored).
    progress : callable, optional
        Called once per round with a one-line summary.

    Returns
    -------
    dict
        The result document, method ``"oracle"``, one agent, no bytes sent.
    """
    start = time.perf_counter()
    dataset = load_dataset(config.dataset)
    views = make_agents(
        dataset,
        agents_per_modality=1,
        unaligned_rate=0.0,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    if config.validation_fraction > 0:  # same split for every view: still aligned
        views = [
            validation_view(v, config.validation_fraction, config.seed) for v in views
        ]
    agent = oracle_agent(views)
    metrics = _train_rounds(config, [agent], dataset.n_classes, progress)
    return _result(config, "oracle", metrics, time.perf_counter() - start)


def oracle_agent(views: Sequence[AgentData]) -> AgentData:
    """Concatenate aligned per-view agents into one all-views agent.

    Parameters
    ----------
    views : sequence of AgentData
        One agent per view, all holding the same samples in the same row order.

    Returns
    -------
    AgentData
        Agent 0, modality -1 (``"all views"``), features of every view side by
        side, labels and sample ids of the first view.

    Raises
    ------
    ValueError
        If there is no view, or two views' train or test rows are different
        samples (or in a different order).
    """
    _check_aligned(views)
    first = views[0]
    return AgentData(
        agent_id=0,
        modality=-1,
        modality_name="all views",
        x_train=np.concatenate([v.x_train for v in views], axis=1),
        y_train=None if first.y_train is None else first.y_train.copy(),
        x_test=np.concatenate([v.x_test for v in views], axis=1),
        y_test=None if first.y_test is None else first.y_test.copy(),
        train_ids=first.train_ids.copy(),
        test_ids=first.test_ids.copy(),
    )


def _check_aligned(views: Sequence[AgentData]) -> None:
    """Raise ``ValueError`` unless there is a view and all hold the same rows."""
    if not views:
        raise ValueError("oracle needs at least one view, got none")
    first = views[0]
    for view in views[1:]:
        for part in ("train", "test"):
            ids, ref = getattr(view, f"{part}_ids"), getattr(first, f"{part}_ids")
            if ids.shape != ref.shape or not np.array_equal(ids, ref):
                raise ValueError(
                    f"oracle needs aligned views: the {part} rows of agent "
                    f"{view.agent_id} ({view.modality_name}) are not the samples of "
                    f"agent {first.agent_id} ({first.modality_name}) in the same order"
                )


BASELINES: dict[str, Callable[[RunConfig, Progress | None], dict[str, Any]]] = {
    "local": run_local,
    "raw": run_raw,
    "oracle": run_oracle,
}
"""Baseline name (the run config's ``method``) -> function running it."""


def run_baseline(config: RunConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the baseline named by ``config.method``.

    Raises
    ------
    ValueError
        If ``config.method`` is not a baseline (see :data:`BASELINES`).
    """
    runner = BASELINES.get(config.method)
    if runner is None:
        raise ValueError(
            f"method {config.method!r} is not a baseline; baselines: "
            f"{', '.join(BASELINES)}"
        )
    return runner(config, progress)


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _train_rounds(
    config: RunConfig,
    agents: list[AgentData],
    n_classes: int,
    progress: Progress | None,
) -> AgentMetrics:
    """Train each agent alone, round by round, scoring every agent each round."""
    trainers = {a.agent_id: build_trainer(config, a, n_classes) for a in agents}
    rounds = config.num_server_rounds
    history: AgentMetrics = {}
    for rnd in range(1, rounds + 1):
        per_agent: dict[int, dict[str, float]] = {}
        for agent in agents:
            trainer = trainers[agent.agent_id]
            trainer.train(config.local_epochs)
            per_agent[agent.agent_id] = _scores(
                evaluate_agent(trainer, agent, n_classes, config), agent
            )
        history[rnd] = per_agent
        if progress is not None:
            progress(f"round {rnd}/{rounds}: {_summary(per_agent)}")
    return history


def _scores(metrics: dict[str, float], agent: AgentData) -> dict[str, float]:
    """An agent's evaluation reply, as the federated strategy records it."""
    return {k: float(v) for k, v in {**metrics, **agent_facts(agent)}.items()}


def _summary(per_agent: dict[int, dict[str, float]]) -> str:
    parts = []
    for key in ("acc", "nmi", "ari", "accuracy"):
        values = [m[key] for m in per_agent.values() if key in m]
        if values:
            label = key.upper() if key != "accuracy" else key
            parts.append(f"{label} {sum(values) / len(values):.3f}")
    return "mean " + " ".join(parts)


#: Label-free per-agent metrics a baseline's result rows carry besides the label
#: metrics (the federated runs' rows carry the same).
EXTRA_AGENT_METRICS = ("silhouette",)


def _result(
    config: RunConfig, method: str, metrics: AgentMetrics, wall_s: float
) -> dict[str, Any]:
    result = build_result(
        {**config.to_dict(), "method": method},
        metrics,
        wall_s=wall_s,
        bytes_up=0,
        bytes_down=0,
    )
    return _with_extra_metrics(result, metrics)


def _with_extra_metrics(
    result: dict[str, Any], metrics: AgentMetrics
) -> dict[str, Any]:
    """Each agent row with its latest :data:`EXTRA_AGENT_METRICS`, and their means."""
    latest: dict[int, dict[str, float]] = {}
    for rnd in sorted(metrics):
        latest.update(metrics[rnd])
    for key in EXTRA_AGENT_METRICS:
        values = []
        for row in result["agents"]:
            value = latest.get(int(row["id"]), {}).get(key)
            row[key] = None if value is None or value != value else float(value)
            if row[key] is not None:
                values.append(row[key])
        result["mean"][key] = sum(values) / len(values) if values else None
    return result
