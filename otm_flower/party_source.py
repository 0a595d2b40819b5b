"""A party's agent from its own data file (node config ``data-path``).

:func:`load_party` reads the party's training file (and its ``test-path``, or
splits held-out rows off the training file), fits the preprocessing on the
training rows, turns record keys into linked-record ids, and returns the same
:class:`~otm_flower.partition.AgentData` a simulated agent is, so training,
uploads, evaluation and the saved model are one code for both.
"""

from __future__ import annotations

import functools
import zlib
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from .config import RunConfig
from .linkage import LinkageError, link_ids, read_link_secret
from .node_config import NodeConfig
from .partition import AgentData
from .party_data import PartyDataError, PartyTable, check_test_matches, read_party_file
from .preprocessing import Preprocessor

__all__ = ["load_party", "party_class_count", "party_id"]


def party_id(node: NodeConfig) -> int:
    """The party's agent id: ``party-id``, else ``partition-id``, else a number
    derived from the absolute ``data-path`` (stable across rounds and runs)."""
    if node.party_id is not None:
        return node.party_id
    if node.partition_id is not None:
        return node.partition_id
    path = str(Path(node.data_path).expanduser().resolve())
    return zlib.crc32(path.encode()) % 1_000_000


def party_class_count(config: RunConfig, labelled: bool, n_classes: int) -> int:
    """Clusters the party finds: ``n-clusters``, else its own class count.

    Raises
    ------
    ValueError
        When the party has no labels and ``n-clusters`` is 0, or the
        classification task meets a party without labels.
    """
    if not labelled and config.task == "classification":
        raise ValueError(
            "task classification needs labels: set label-column in the node config"
        )
    if config.n_clusters > 0:
        return config.n_clusters
    if not labelled:
        raise ValueError(
            "this party has no labels (no label-column), so the number of "
            "clusters cannot come from them: set the run-config key n-clusters"
        )
    return n_classes


def _read(path: str, node: NodeConfig) -> PartyTable:
    return read_party_file(
        path,
        label_column=node.label_column or None,
        key_column=node.key_column or None,
        view=node.view,
    )


def _held_out(
    table: PartyTable, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test rows of one file: stratified by label where possible."""
    labels = table.labels
    stratify = None
    if labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        stratify = labels if counts.min() >= 2 else None
    rng_seed = int(np.random.default_rng([seed, 1, 0]).integers(2**31 - 1))
    train, test = train_test_split(
        np.arange(table.n_rows),
        test_size=fraction,
        stratify=stratify,
        random_state=rng_seed,
    )
    return np.asarray(train), np.asarray(test)


def _class_indices(
    train: np.ndarray | None, test: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Labels as indices into the sorted classes of both sets, and the classes."""
    if train is None or test is None:
        return None, None, None
    classes = np.unique(np.concatenate([train, test]))
    return (
        np.searchsorted(classes, train).astype(np.int64),
        np.searchsorted(classes, test).astype(np.int64),
        classes,
    )


def _rows(table: PartyTable, rows: np.ndarray) -> PartyTable:
    return PartyTable(
        features=table.features[rows],
        feature_names=table.feature_names,
        labels=None if table.labels is None else table.labels[rows],
        keys=None if table.keys is None else table.keys[rows],
        source=table.source,
    )


def _train_test(config: RunConfig, node: NodeConfig) -> tuple[PartyTable, PartyTable]:
    """The party's training and test tables (``test-path`` or a split)."""
    table = _read(node.data_path, node)
    if node.test_path:
        test = _read(node.test_path, node)
        check_test_matches(table, test)
        return table, test
    if table.n_rows < 3:
        raise PartyDataError(
            f"{table.source}: {table.n_rows} rows; a party needs at least 3 to "
            "hold some out for testing (or give test-path)"
        )
    train_rows, test_rows = _held_out(table, config.test_fraction, config.seed)
    return _rows(table, train_rows), _rows(table, test_rows)


def _link_ids(
    train: PartyTable, node: NodeConfig, config: RunConfig
) -> np.ndarray | None:
    """Linked-record ids of the training rows, with key-column and a secret.

    Raises
    ------
    LinkageError
        When the run says the parties are linked (``linked-records = "yes"``)
        and the party names a key column but no secret file, or the secret
        file is missing, unreadable, empty or too short (naming the file).
    """
    if train.keys is None:
        return None
    if not node.link_secret_file:
        if config.linked_records == "yes":
            raise LinkageError(
                f"{train.source}: key-column {node.key_column!r} in a run of "
                "linked parties (linked-records = yes) but no link-secret-file: "
                "set the node-config key link-secret-file to the federation's "
                "secret file"
            )
        return None
    return link_ids(train.keys, read_link_secret(node.link_secret_file))


@functools.lru_cache(maxsize=8)
def load_party(config: RunConfig, node: NodeConfig) -> tuple[AgentData, int]:
    """The party's agent and its cluster count (cached per config and node config).

    Raises
    ------
    PartyDataError, LinkageError, ValueError
        On a bad file, secret, or a label/cluster-count problem (each names
        the file, column or key).
    """
    train, test = _train_test(config, node)
    y_train, y_test, classes = _class_indices(train.labels, test.labels)
    if (train.labels is None) != (test.labels is None):
        raise PartyDataError(f"{test.source}: labels in only one of train/test")
    n_classes = party_class_count(
        config, y_train is not None, 0 if classes is None else len(classes)
    )
    fitted = Preprocessor(config.preprocess).fit(train.features)
    agent_id = party_id(node)
    agent = AgentData(
        agent_id=agent_id,
        modality=node.view if node.view is not None else agent_id,
        modality_name=Path(node.data_path).parent.name or Path(node.data_path).stem,
        x_train=fitted.transform(train.features),
        y_train=y_train,
        x_test=fitted.transform(test.features),
        y_test=y_test,
        train_ids=np.arange(train.n_rows),
        test_ids=np.arange(test.n_rows),
        preprocessor=fitted,
        feature_names=list(train.feature_names),
        link_ids=_link_ids(train, node, config),
        classes=classes,
    )
    return agent, n_classes
