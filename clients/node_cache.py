"""A node-local cache of the agent's prepared data, kept between messages.

Under the Deployment Runtime every message runs in a fresh process, which would
read and preprocess the party's files again each time. With the environment
variable :data:`CACHE_ENV` naming a folder (the warm executor
:mod:`clients.warm_exec` sets it), the prepared ``(AgentData, n_classes)`` is
stored there once and loaded by later messages.

An entry's key is a SHA-256 over the run config, the node config and, for every
file the node config or the run config's ``dataset`` names, its absolute path,
modification time and size: a changed file or setting gives a new key, so a
stale entry is never read. Each entry starts with a header (its key and the
SHA-256 of its payload) checked before anything is unpickled: an entry that is
unreadable, truncated or altered is rebuilt and rewritten, never trusted. The
folder and its entries are owner-only (modes 0700, 0600); the
:data:`MAX_ENTRIES` most recently written entries are kept. Nothing in it
leaves the node.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

#: Environment variable naming the cache folder (unset: no cache).
CACHE_ENV = "OTM_FLOWER_NODE_CACHE"
#: Node-config keys whose values name files the prepared data depends on.
FILE_KEYS = ("data-path", "test-path", "link-secret-file", "dataset")
#: Entries kept in a cache folder; the least recently written beyond it are removed.
MAX_ENTRIES = 32
_MAGIC = b"otm-node-cache-1\n"

T = TypeVar("T")


def cache_folder() -> Path | None:
    """The cache folder from :data:`CACHE_ENV`, or ``None`` when unset."""
    folder = os.environ.get(CACHE_ENV, "").strip()
    return Path(folder).expanduser() if folder else None


def _file_stamp(value: Any) -> list[Any] | None:
    """``[path, mtime_ns, size]`` of an existing file named by ``value``."""
    if not isinstance(value, str) or not value:
        return None
    path = Path(value).expanduser()
    try:
        stat = path.resolve().stat()
    except OSError:
        return None
    return [str(path.resolve()), stat.st_mtime_ns, stat.st_size]


def cache_key(run_config: Mapping[str, Any], node_config: Mapping[str, Any]) -> str:
    """The entry key: SHA-256 over both configs and the stamps of their files."""
    files = {key: _file_stamp(node_config.get(key)) for key in FILE_KEYS}
    files["run-dataset"] = _file_stamp(run_config.get("dataset"))
    document = {
        "run": dict(run_config),
        "node": dict(node_config),
        "files": files,
    }
    text = json.dumps(document, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_entry(path: Path, key: str) -> Any | None:
    """The object stored at ``path`` under ``key``; ``None`` when the entry is
    missing, of another key, or fails its checksum."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head, _, payload = data[len(_MAGIC) :].partition(b"\n")
    if not data.startswith(_MAGIC):
        return None
    try:
        header = json.loads(head)
    except ValueError:
        return None
    if header.get("key") != key:
        return None
    if header.get("sha256") != hashlib.sha256(payload).hexdigest():
        return None
    try:
        return pickle.loads(payload)
    except Exception:  # noqa: BLE001 - a checksummed but unloadable entry: rebuild
        return None


def write_entry(path: Path, key: str, value: Any) -> None:
    """Store ``value`` at ``path`` under ``key`` (atomically: temp file, rename)."""
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    header = json.dumps({"key": key, "sha256": hashlib.sha256(payload).hexdigest()})
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(_MAGIC + header.encode() + b"\n" + payload)
    os.replace(tmp, path)


def prune(folder: Path, keep: int = MAX_ENTRIES) -> list[Path]:
    """Remove all but the ``keep`` most recently written entries; the removed."""
    entries = sorted(
        folder.glob("agent-*.pkl"), key=lambda p: p.stat().st_mtime_ns, reverse=True
    )
    for old in entries[keep:]:
        old.unlink(missing_ok=True)
    return entries[keep:]


def cached(
    run_config: Mapping[str, Any],
    node_config: Mapping[str, Any],
    build: Callable[[], T],
    folder: Path | None = None,
) -> T:
    """``build()``, stored in and then read from the cache ``folder``
    (default :func:`cache_folder`; no folder: just ``build()``)."""
    folder = folder if folder is not None else cache_folder()
    if folder is None:
        return build()
    key = cache_key(run_config, node_config)
    path = folder / f"agent-{key[:32]}.pkl"
    value = read_entry(path, key)
    if value is None:
        value = build()
        write_entry(path, key, value)
        prune(folder)
    return value
