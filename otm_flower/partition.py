"""Splitting a multi-view dataset into unaligned federated agents.

:func:`make_agents` turns a dataset into one or more agents per modality (view),
each holding its own train/test rows, with an adjustable fraction of the rows
shuffled so that rows of different modalities no longer correspond.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from .multiview import DataError, MultiViewDataset
from .preprocessing import Preprocessor
from .view_transforms import check_method

__all__ = ["AgentData", "make_agents"]

Split = tuple[np.ndarray, np.ndarray, str | None]
"""Train ids, test ids, and why stratification failed (``None`` if it did not)."""


@dataclass(eq=False)
class AgentData:
    """The local data of one agent: one view of one part of the samples.

    Attributes
    ----------
    agent_id : int
        ``modality * agents_per_modality + part``.
    modality : int
        Index of the view this agent holds.
    modality_name : str
        Name of that view.
    x_train, x_test : ndarray
        Preprocessed float32 features, ``(n_train, dim)`` and ``(n_test, dim)``.
    y_train, y_test : ndarray or None
        int64 class indices of those rows (into ``classes``); ``None`` for a
        party without labels.
    train_ids, test_ids : ndarray
        Original sample index (or file row) of each row; node-local only
        (never to be sent to a server or another agent).
    preprocessor : Preprocessor, optional
        The feature transform fitted on the training rows (saved with the
        party's model).
    feature_names : list of str, optional
        The raw feature columns, in order.
    link_ids : ndarray, optional
        int64 opaque linked-record id of each training row (-1: none), from
        the party's record keys (:mod:`otm_flower.linkage`); node-local until
        uploaded as the protocol's ``anchor-ids``.
    classes : ndarray, optional
        The original label value of each class index.
    """

    agent_id: int
    modality: int
    modality_name: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    train_ids: np.ndarray
    test_ids: np.ndarray
    preprocessor: Preprocessor | None = None
    feature_names: list[str] | None = None
    link_ids: np.ndarray | None = None
    classes: np.ndarray | None = None

    @property
    def labelled(self) -> bool:
        """Whether the agent has class labels."""
        return self.y_train is not None and self.y_test is not None

    @property
    def n_train(self) -> int:
        """Number of training rows."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test rows."""
        return int(self.x_test.shape[0])

    @property
    def input_dim(self) -> int:
        """Feature dimension of this agent's view."""
        return int(self.x_train.shape[1])


def make_agents(
    dataset: MultiViewDataset,
    *,
    agents_per_modality: int = 1,
    unaligned_rate: float = 1.0,
    test_fraction: float = 0.2,
    seed: int = 0,
    preprocess: str = "auto",
) -> list[AgentData]:
    """Split a multi-view dataset into per-modality agents with unaligned rows.

    The samples are dealt into ``agents_per_modality`` disjoint parts,
    stratified by label.  Agent ``view * agents_per_modality + part`` holds view
    ``view`` of the samples of part ``part``.  Each part gets one stratified
    train/test split, shared by all modalities, so with ``unaligned_rate=0`` row
    ``i`` of two agents of one part is the same sample.  Then ``round(unaligned_rate
    * n)`` train row positions of each part (likewise test rows) are chosen, the
    same positions for all its modalities, and every agent permutes the rows at
    those positions independently (features, labels and ids together).  So two
    agents of one part agree on the other ``1 - unaligned_rate`` of their rows
    (plus chance coincidences); at rate 1 agreement is at chance.
    Finally each agent's view is preprocessed with :func:`preprocess_view`,
    fitted on its own train rows.  Everything is determined by ``seed``.

    Parameters
    ----------
    dataset : MultiViewDataset
    agents_per_modality : int, default 1
        Number of agents (disjoint sample parts) per view.
    unaligned_rate : float, default 1.0
        Fraction in ``[0, 1]`` of the rows whose cross-modality correspondence
        is broken.
    test_fraction : float, default 0.2
        Fraction in ``(0, 1)`` of each part held out for testing.
    seed : int, default 0
        Non-negative seed for parts, splits and shuffles.
    preprocess : {"auto", "standard", "tfidf", "none"}, default "auto"
        Method passed to :func:`preprocess_view`.

    Returns
    -------
    list of AgentData
        ``n_views * agents_per_modality`` agents, ordered by ``agent_id``.

    Raises
    ------
    ValueError
        On an out-of-range argument, or so many agents that one would get fewer
        than 2 training samples or no test sample.
    DataError
        On non-finite or otherwise invalid view values.
    """
    check_method(preprocess)
    rows = _rows(dataset, agents_per_modality, unaligned_rate, test_fraction, seed)
    return [_agent(dataset, r, preprocess) for r in rows]


@dataclass(frozen=True, eq=False)
class AgentRows:
    """Which samples of a data set one agent holds, in its row order.

    Attributes
    ----------
    agent_id, view : int
        The agent and the view it holds.
    train, test : ndarray
        Sample indices of its training and test rows.
    """

    agent_id: int
    view: int
    train: np.ndarray
    test: np.ndarray


def agent_rows(
    dataset: MultiViewDataset,
    *,
    agents_per_modality: int = 1,
    unaligned_rate: float = 1.0,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> list[AgentRows]:
    """The samples (and their order) of every agent :func:`make_agents` builds.

    The same parts, splits and unaligning shuffles as :func:`make_agents`,
    without features; ``otm-flower split`` writes these rows to one file per
    party so that file parties hold exactly the simulated agents' rows.
    """
    return _rows(dataset, agents_per_modality, unaligned_rate, test_fraction, seed)


def _rows(
    dataset: MultiViewDataset,
    agents_per_modality: int,
    unaligned_rate: float,
    test_fraction: float,
    seed: int,
) -> list[AgentRows]:
    """:func:`agent_rows` (called by the public functions, for warnings' sake)."""
    _check_arguments(agents_per_modality, unaligned_rate, test_fraction, seed)
    n_parts = int(agents_per_modality)
    _check_part_size(dataset, n_parts, test_fraction)
    splits = _part_splits(dataset, n_parts, float(test_fraction), seed)
    rate = float(unaligned_rate)
    out: list[AgentRows] = []
    for view in range(dataset.n_views):
        for p, split in enumerate(splits):
            agent_id = view * n_parts + p
            tr, te = _unaligned_rows(split, p, agent_id, rate, seed)
            out.append(AgentRows(agent_id, view, tr, te))
    return out


def _check_arguments(
    agents_per_modality: int, unaligned_rate: float, test_fraction: float, seed: int
) -> None:
    """Raise ``ValueError`` on an out-of-range argument of :func:`make_agents`."""
    if isinstance(agents_per_modality, bool) or not isinstance(
        agents_per_modality, (int, np.integer)
    ):
        raise ValueError(
            f"agents_per_modality must be an int, got {agents_per_modality!r}"
        )
    if agents_per_modality < 1:
        raise ValueError(f"agents_per_modality must be >= 1, got {agents_per_modality}")
    if not 0.0 <= float(unaligned_rate) <= 1.0:
        raise ValueError(f"unaligned_rate must be in [0, 1], got {unaligned_rate}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def _check_part_size(
    dataset: MultiViewDataset, n_parts: int, test_fraction: float
) -> None:
    """Raise ``ValueError`` if a part would get < 2 train or no test samples."""
    smallest = dataset.n_samples // n_parts
    n_test = int(np.ceil(float(test_fraction) * smallest))  # as train_test_split
    if smallest - n_test < 2 or n_test < 1:
        raise ValueError(
            f"agents_per_modality={n_parts} is too many for dataset {dataset.name!r} "
            f"({dataset.n_samples} samples, test_fraction={test_fraction}): an agent "
            f"would get {smallest - n_test} training samples (need >= 2)"
        )


def _part_splits(
    dataset: MultiViewDataset, n_parts: int, test_fraction: float, seed: int
) -> list[Split]:
    """Label-stratified parts, each split into train and test sample ids.

    Warns (for the caller of :func:`make_agents` or :func:`agent_rows`) when a
    part is too small to stratify its split.
    """
    labels = dataset.labels
    parts = _stratified_parts(labels, n_parts, np.random.default_rng([seed, 0]))
    splits = [
        _split_part(
            ids,
            labels,
            test_fraction,
            int(np.random.default_rng([seed, 1, p]).integers(2**31 - 1)),
        )
        for p, ids in enumerate(parts)
    ]
    failed = [p for p, (_, _, reason) in enumerate(splits) if reason is not None]
    if failed:
        reason = splits[failed[0]][2]
        warnings.warn(
            f"dataset {dataset.name!r}: stratified train/test split impossible in "
            f"part(s) {failed} ({reason}); used a non-stratified split there",
            stacklevel=4,
        )
    return splits


def _stratified_parts(
    labels: np.ndarray, n_parts: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Split sample ids into ``n_parts`` disjoint, label-stratified parts.

    The ids of each class are shuffled and dealt round-robin, the dealing
    continuing from class to class, so part sizes differ by at most one.
    """
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    )
    owner = np.arange(order.size) % n_parts
    return [np.sort(order[owner == p]) for p in range(n_parts)]


def _split_part(
    ids: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int
) -> Split:
    """Stratified train/test split of ``ids``; non-stratified if a class is tiny.

    The third item is the reason stratification failed, else ``None``.
    """
    try:
        train, test = train_test_split(
            ids, test_size=test_fraction, stratify=labels[ids], random_state=seed
        )
        reason = None
    except ValueError as err:
        train, test = train_test_split(ids, test_size=test_fraction, random_state=seed)
        reason = str(err)
    return np.asarray(train), np.asarray(test), reason


def _unalign(
    n: int, rate: float, chosen_rng: np.random.Generator, perm_rng: np.random.Generator
) -> np.ndarray:
    """Row order that randomly permutes ``round(rate * n)`` chosen positions.

    ``chosen_rng`` picks the positions (shared by the agents of one part, so the
    other rows stay aligned across modalities); ``perm_rng`` shuffles them (one
    stream per agent).
    """
    order = np.arange(n)
    m = int(round(rate * n))
    if m > 1:
        chosen = chosen_rng.choice(n, size=m, replace=False)
        order[chosen] = chosen[perm_rng.permutation(m)]
    return order


def _unaligned_rows(
    split: Split, p: int, agent_id: int, rate: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test sample ids of agent ``agent_id`` (part ``p``), unaligned.

    The positions to shuffle come from the part's streams (the same for every
    modality), the shuffles from the agent's own stream, train rows first.
    """
    train_ids, test_ids, _ = split
    rng = np.random.default_rng([seed, 2, agent_id])
    tr = train_ids[
        _unalign(train_ids.size, rate, np.random.default_rng([seed, 3, p, 0]), rng)
    ]
    te = test_ids[
        _unalign(test_ids.size, rate, np.random.default_rng([seed, 3, p, 1]), rng)
    ]
    return tr, te


def _agent(dataset: MultiViewDataset, rows: AgentRows, preprocess: str) -> AgentData:
    """Agent holding view ``rows.view`` of its samples, preprocessed."""
    view, tr, te = rows.view, rows.train, rows.test
    x = dataset.views[view]
    name = dataset.view_names[view]
    try:
        fitted = Preprocessor(preprocess).fit(x[tr])
        x_tr, x_te = fitted.transform(x[tr]), fitted.transform(x[te])
    except ValueError as err:
        raise DataError(
            f"dataset {dataset.name!r} view {view} ({name}): {err}"
        ) from err
    labels = dataset.labels
    return AgentData(
        agent_id=rows.agent_id,
        modality=view,
        modality_name=name,
        x_train=x_tr,
        y_train=labels[tr].copy(),
        x_test=x_te,
        y_test=labels[te].copy(),
        train_ids=tr,
        test_ids=te,
        preprocessor=fitted,
        feature_names=[f"{name}_{j}" for j in range(x.shape[1])],
        classes=np.arange(dataset.n_classes),
    )
