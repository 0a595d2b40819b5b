"""A SuperNode's node config: the keys a party may set, their meaning and defaults.

``flower-supernode --node-config "data-path=... label-column=..."`` (or a
simulation's node config) is read with :func:`parse_node_config`, which refuses
unknown keys with the list of valid ones.  :data:`NODE_CONFIG_KEYS` is the one
table of those keys.

A node with ``data-path`` is a *party*: it reads only its own file.  A node
without it is a *simulated agent*: it loads the run's multi-view data set and
takes the agent ``partition-id`` of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NODE_CONFIG_KEYS",
    "NodeConfig",
    "NodeConfigError",
    "NodeKey",
    "parse_node_config",
]


@dataclass(frozen=True)
class NodeKey:
    """One node-config key: its name, what it means, and its default."""

    name: str
    meaning: str
    default: str


NODE_CONFIG_KEYS: tuple[NodeKey, ...] = (
    NodeKey(
        "data-path",
        "the party's training file (.csv, .tsv, .txt, .parquet, .npy, .npz, "
        ".mat); the node then reads only this file",
        "none: a simulated agent of the run's data set",
    ),
    NodeKey(
        "test-path",
        "held-out rows scored every round (same feature columns)",
        "none: a stratified split of the training file (seeded random when "
        "unlabelled), test-fraction of its rows",
    ),
    NodeKey("label-column", "column (or array) of class labels", "none: no labels"),
    NodeKey(
        "key-column",
        "column (or array) of record keys shared with other parties",
        "none: no record linkage",
    ),
    NodeKey("view", "index of the party's view in a multi-view .mat file", "none"),
    NodeKey(
        "model-dir",
        "folder the party's trained model is written to at the end of the run",
        "simulation: <output-dir>/<run>/models/agent-<id>; otherwise none",
    ),
    NodeKey(
        "link-secret-file",
        "file holding the federation secret that turns record keys into "
        "linked-record ids (never sent)",
        "none (needed with key-column for linkage)",
    ),
    NodeKey(
        "party-id",
        "the party's number in the results (unique in the federation)",
        "partition-id when set, else a number derived from data-path",
    ),
    NodeKey(
        "dataset",
        "simulated agent: data set name or path overriding the run config's",
        "the run config's dataset",
    ),
    NodeKey(
        "partition-id",
        "simulated agent: which agent of the data set (Flower's simulation sets it)",
        "none",
    ),
    NodeKey(
        "num-partitions",
        "simulation: number of nodes (Flower's simulation sets it)",
        "none",
    ),
)
"""Every key a node config may contain."""

_VALID = tuple(k.name for k in NODE_CONFIG_KEYS)


class NodeConfigError(ValueError):
    """A node-config key is unknown or its value is invalid."""


@dataclass(frozen=True)
class NodeConfig:
    """A parsed node config (see :data:`NODE_CONFIG_KEYS`; ``""``/``None``: unset)."""

    data_path: str = ""
    test_path: str = ""
    label_column: str = ""
    key_column: str = ""
    view: int | None = None
    model_dir: str = ""
    link_secret_file: str = ""
    party_id: int | None = None
    dataset: str = ""
    partition_id: int | None = None
    num_partitions: int | None = None

    @property
    def is_party(self) -> bool:
        """Whether the node reads its own file (``data-path``)."""
        return bool(self.data_path)


_INT_KEYS = ("view", "party-id", "partition-id", "num-partitions")


def _as_int(key: str, value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError) as err:
        raise NodeConfigError(
            f"node config {key}={value!r}: must be an integer"
        ) from err
    if number < 0 or isinstance(value, float) and not float(value).is_integer():
        raise NodeConfigError(
            f"node config {key}={value!r}: must be a non-negative integer"
        )
    return number


def parse_node_config(raw: Mapping[str, Any]) -> NodeConfig:
    """Check a node config and return it typed.

    Raises
    ------
    NodeConfigError
        On an unknown key (listing the valid ones), a non-integer ``view``,
        ``party-id``, ``partition-id`` or ``num-partitions``, a party key
        (``test-path``, ``label-column``, ...) without ``data-path``, or
        ``link-secret-file`` without ``key-column``.
    """
    unknown = sorted(str(k) for k in raw if k not in _VALID)
    if unknown:
        raise NodeConfigError(
            f"unknown node-config key(s) {', '.join(unknown)}; valid keys: "
            + ", ".join(_VALID)
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        field = key.replace("-", "_")
        values[field] = _as_int(key, value) if key in _INT_KEYS else str(value).strip()
    config = NodeConfig(**values)
    _check_combination(config)
    return config


def _check_combination(config: NodeConfig) -> None:
    """Refuse party keys without ``data-path`` and a secret without keys."""
    party_only = {
        "test-path": config.test_path,
        "label-column": config.label_column,
        "key-column": config.key_column,
        "link-secret-file": config.link_secret_file,
    }
    set_keys = [k for k, v in party_only.items() if v]
    if set_keys and not config.data_path:
        raise NodeConfigError(
            f"node config sets {', '.join(set_keys)} without data-path "
            "(the party's own file)"
        )
    if config.link_secret_file and not config.key_column:
        raise NodeConfigError(
            "node config sets link-secret-file without key-column: name the "
            "column of record keys to link"
        )
