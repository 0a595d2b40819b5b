"""One agent's side of a run, without Flower: its data, its trainer, its evaluation.

The Flower ClientApp (``clients/app.py``) and the non-federated baselines
(:mod:`otm_flower.baselines`) share these, so every method trains and scores an
agent the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.model_selection import train_test_split

from .anchors import simulated_anchor_ids
from .config import RunConfig, latent_width
from .data import AgentData, load_dataset, make_agents
from .metrics import clustering_scores
from .protocol import (
    KEY_AGENT,
    KEY_MODALITY,
    KEY_N_TEST,
    KEY_N_TRAIN,
    KEY_NUM_EXAMPLES,
)
from .term_guard import term_guard_for
from .training import LocalTrainer, LossWeights

#: Changes the agents of a run as built, before the validation split: called
#: with the agents (ordered by agent id) and the run's seed, returns the agents
#: to use. Must be hashable (loaded agents are cached per transform).
AgentsTransform = Callable[[tuple[AgentData, ...], int], tuple[AgentData, ...]]

_TRANSFORM: ContextVar[AgentsTransform | None] = ContextVar(
    "otm_agents_transform", default=None
)


@contextlib.contextmanager
def transformed_agents(transform: AgentsTransform | None) -> Iterator[None]:
    """Within the block, :func:`load_agents` applies ``transform`` to the agents.

    For experiments that change an agent's data (see ``research.corruption``);
    ``None`` loads the agents as they are.
    """
    token = _TRANSFORM.set(transform)
    try:
        yield
    finally:
        _TRANSFORM.reset(token)


@functools.lru_cache(maxsize=4)
def _cached_agents(
    dataset: str,
    agents_per_modality: int,
    unaligned_rate: float,
    test_fraction: float,
    seed: int,
    transform: AgentsTransform | None,
    validation_fraction: float,
    preprocess: str = "auto",
) -> tuple[tuple[AgentData, ...], int]:
    data = load_dataset(dataset)
    agents = tuple(
        make_agents(
            data,
            agents_per_modality=agents_per_modality,
            unaligned_rate=unaligned_rate,
            test_fraction=test_fraction,
            seed=seed,
            preprocess=preprocess,
        )
    )
    if transform is not None:
        agents = tuple(transform(agents, seed))
    if validation_fraction > 0:
        agents = tuple(validation_view(a, validation_fraction, seed) for a in agents)
    return agents, data.n_classes


def validation_view(agent: AgentData, fraction: float, seed: int) -> AgentData:
    """The agent for model selection: its training rows split into fit/validation.

    The validation rows take the place of the test rows, which are dropped, so a
    run with ``validation-fraction`` never sees test data. The split is stratified
    by the agent's own labels where every class has two rows or more, and the
    same for every agent (aligned agents keep aligned splits). Feature
    preprocessing stays as fitted on all training rows (no labels involved).
    """
    labels = agent.y_train
    stratify = None
    if labels is not None:
        counts = np.bincount(labels)
        stratify = labels if counts[counts > 0].min() >= 2 else None
    fit, val = train_test_split(
        np.arange(agent.n_train),
        test_size=fraction,
        stratify=stratify,
        random_state=int(np.random.default_rng([seed, 41]).integers(2**31 - 1)),
    )
    fit, val = np.sort(fit), np.sort(val)
    return dataclasses.replace(
        agent,
        x_train=agent.x_train[fit],
        y_train=None if labels is None else labels[fit],
        train_ids=agent.train_ids[fit],
        x_test=agent.x_train[val],
        y_test=None if labels is None else labels[val],
        test_ids=agent.train_ids[val],
        link_ids=None if agent.link_ids is None else agent.link_ids[fit],
    )


def load_agents(
    config: RunConfig, dataset: str | None = None
) -> tuple[tuple[AgentData, ...], int]:
    """Every agent's data for a run, and its cluster count (``n-clusters``, or
    the data set's class count when that is 0).

    Deterministic in the config and the active :func:`transformed_agents`
    transform (cached per process, so a node that answers many rounds loads its
    data once).

    Parameters
    ----------
    config : RunConfig
        Supplies ``agents-per-modality``, ``unaligned-rate``, ``test-fraction``,
        ``seed``, ``validation-fraction``, ``preprocess``, ``n-clusters`` and,
        unless ``dataset`` is given, ``dataset``.
    dataset : str, optional
        A data set name or path overriding ``config.dataset`` (a node's own data).
    """
    agents, n_classes = _cached_agents(
        dataset or config.dataset,
        config.agents_per_modality,
        config.unaligned_rate,
        config.test_fraction,
        config.seed,
        _TRANSFORM.get(),
        config.validation_fraction,
        config.preprocess,
    )
    return agents, config.n_clusters or n_classes


def build_trainer(config: RunConfig, agent: AgentData, n_classes: int) -> LocalTrainer:
    """The agent's freshly initialised WAE trainer for a run config.

    Seeded by ``(seed, agent id)``; the task head exists for classification only.
    """
    torch.set_num_threads(1)
    classify = config.task == "classification"
    return LocalTrainer(
        agent.x_train,
        agent.y_train if classify else None,
        latent_dim=latent_width(config, n_classes),
        hidden_dim=config.hidden_dim,
        num_classes=n_classes if classify else 0,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        weights=LossWeights(
            config.weight_rec,
            config.weight_mix,
            config.weight_reg,
            config.weight_mmd,
            config.weight_task,
            0.0 if classify else config.weight_cluster,
        ),
        num_clusters=n_classes,
        seed=config.seed * 1009 + agent.agent_id,
        guard=term_guard_for(config),
    )


@dataclasses.dataclass
class Scored:
    """An evaluation: the metrics, and the fitted models behind them.

    Attributes
    ----------
    metrics : dict
        ``silhouette`` always; ``acc``/``nmi``/``ari``/``purity`` with labels;
        ``accuracy`` for classification.
    centers : ndarray
        The k-means centroids fitted on the test codes (the cluster model).
    classifier : LogisticRegression or None
        The classifier fitted on the training codes (classification only).
    """

    metrics: dict[str, float]
    centers: np.ndarray
    classifier: LogisticRegression | None = None


def cluster_model(codes: np.ndarray, n_clusters: int, seed: int) -> KMeans:
    """The k-means of codes that the clustering scores use (10 inits, seeded)."""
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(
        np.asarray(codes, dtype=np.float64)
    )


def silhouette(codes: np.ndarray, clusters: np.ndarray) -> float:
    """Silhouette of the codes under their clusters (NaN with < 2 or all clusters)."""
    found = len(np.unique(clusters))
    if not 2 <= found <= len(codes) - 1:
        return float("nan")
    return float(silhouette_score(np.asarray(codes, dtype=np.float64), clusters))


def score_codes(
    train_codes: np.ndarray,
    test_codes: np.ndarray,
    agent: AgentData,
    n_classes: int,
    config: RunConfig,
) -> Scored:
    """Test metrics of an agent's representation, and the models fitted for them.

    k-means on the test rows gives the label-free ``silhouette`` and, where the
    agent has labels, clustering ACC/NMI/ARI/purity; for the classification
    task, a logistic regression fitted on the training rows gives test
    ``accuracy`` (``train_codes`` is unused for clustering).
    """
    kmeans = cluster_model(test_codes, n_clusters=n_classes, seed=config.seed)
    metrics = {"silhouette": silhouette(test_codes, kmeans.labels_)}
    classifier = None
    if agent.labelled:
        assert agent.y_test is not None and agent.y_train is not None
        metrics.update(
            clustering_scores(test_codes, agent.y_test, n_classes, seed=config.seed)
        )
        if config.task == "classification":
            classifier = LogisticRegression(max_iter=2000)
            classifier.fit(train_codes, agent.y_train)
            metrics["accuracy"] = float(classifier.score(test_codes, agent.y_test))
    return Scored(metrics, kmeans.cluster_centers_, classifier)


def evaluate_codes(
    train_codes: np.ndarray,
    test_codes: np.ndarray,
    agent: AgentData,
    n_classes: int,
    config: RunConfig,
) -> dict[str, float]:
    """Test metrics of an agent's representation (see :func:`score_codes`)."""
    return score_codes(train_codes, test_codes, agent, n_classes, config).metrics


def score_agent(
    trainer: LocalTrainer, agent: AgentData, n_classes: int, config: RunConfig
) -> Scored:
    """:func:`score_codes` of the agent's trained encoder."""
    classify = config.task == "classification"
    train_codes = trainer.encode() if classify else np.empty((0, 0), np.float32)
    test_codes = trainer.encode(agent.x_test)
    return score_codes(train_codes, test_codes, agent, n_classes, config)


def evaluate_agent(
    trainer: LocalTrainer, agent: AgentData, n_classes: int, config: RunConfig
) -> dict[str, float]:
    """Test metrics of the agent's trained encoder (see :func:`score_codes`)."""
    return score_agent(trainer, agent, n_classes, config).metrics


def agent_facts(agent: AgentData) -> dict[str, int]:
    """The agent's descriptive metrics (id, modality, sizes), as results report them."""
    return {
        KEY_AGENT: agent.agent_id,
        KEY_MODALITY: agent.modality,
        KEY_N_TRAIN: agent.n_train,
        KEY_N_TEST: agent.n_test,
        KEY_NUM_EXAMPLES: agent.n_test,
    }


def agent_anchor_ids(agent: AgentData, config: RunConfig) -> np.ndarray | None:
    """The agent's training rows' linked-record ids (``None``: no linkage).

    A party's ids come from its record keys and link secret
    (:mod:`otm_flower.party_source`); a simulated agent's from the run's
    ``anchor-rate`` (:func:`otm_flower.anchors.simulated_anchor_ids`): both are
    :func:`otm_flower.linkage.link_ids` of record keys.
    """
    if agent.link_ids is not None:
        return agent.link_ids
    if config.anchor_rate <= 0:
        return None
    return simulated_anchor_ids(agent.train_ids, config.anchor_rate, config.seed)
