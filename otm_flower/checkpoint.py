"""Per-round checkpoints on disk: a JSON document, optional arrays and a blob.

A checkpoint ``NAME`` in a folder is ``NAME.json`` (metadata; written last, so
its presence marks a complete checkpoint), ``NAME.npz`` (named arrays) and
``NAME.bin`` (opaque bytes, e.g. a serialised model). Every file is written to a
temporary name and moved into place, so an interrupted write never leaves a
half-written checkpoint behind the previous one. :func:`keep_as` keeps the
previous round's checkpoint under another name, for a reader that must continue
after a round other than the latest.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or unreadable (names the file)."""


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_checkpoint(
    folder: str | Path,
    name: str,
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
    blob: bytes | None = None,
) -> Path:
    """Write checkpoint ``name`` into ``folder`` (created if needed).

    Parameters
    ----------
    folder : str or Path
        Checkpoint folder.
    name : str
        Checkpoint name (file stem), e.g. ``"server"`` or ``"agent-3"``.
    meta : dict
        JSON-serialisable metadata.
    arrays : dict of str to ndarray, optional
        Named arrays (stored uncompressed, no pickling).
    blob : bytes, optional
        Opaque bytes.

    Returns
    -------
    Path
        The metadata file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if arrays is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        _replace(folder / f"{name}.npz", buffer.getvalue())
    if blob is not None:
        _replace(folder / f"{name}.bin", blob)
    document = {
        "meta": meta,
        "has_arrays": arrays is not None,
        "has_blob": blob is not None,
    }
    path = folder / f"{name}.json"
    _replace(path, json.dumps(document).encode())
    return path


def read_checkpoint(
    folder: str | Path, name: str
) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes | None]:
    """Read what :func:`write_checkpoint` wrote: ``(meta, arrays, blob)``.

    Raises
    ------
    CheckpointError
        When the checkpoint is missing or one of its files is unreadable.
    """
    folder = Path(folder)
    path = folder / f"{name}.json"
    try:
        document = json.loads(path.read_text())
        arrays: dict[str, np.ndarray] = {}
        if document["has_arrays"]:
            with np.load(folder / f"{name}.npz", allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        blob = (folder / f"{name}.bin").read_bytes() if document["has_blob"] else None
        return dict(document["meta"]), arrays, blob
    except FileNotFoundError as err:
        raise CheckpointError(f"no checkpoint {name!r} in {folder}: {err}") from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {name!r} in {folder} is unreadable: {err}"
        ) from err


def checkpoint_round(folder: str | Path, name: str) -> int | None:
    """The ``round`` in checkpoint ``name``'s metadata; ``None`` when there is no
    complete checkpoint ``name`` (or it records no round)."""
    try:
        meta, _, _ = read_checkpoint(folder, name)
    except CheckpointError:
        return None
    value = meta.get("round")
    return int(value) if isinstance(value, int) else None


def keep_as(folder: str | Path, name: str, kept: str) -> bool:
    """Move checkpoint ``name`` to ``kept`` (replacing it; ``kept`` may name a
    subfolder, e.g. ``"previous/agent-3"``); ``False`` when there is no
    checkpoint ``name``.

    ``kept``'s metadata file is removed first and moved in last, so an
    interrupted move never leaves ``kept`` looking complete with other files.
    """
    folder = Path(folder)
    if not (folder / f"{name}.json").is_file():
        return False
    (folder / f"{kept}.json").parent.mkdir(parents=True, exist_ok=True)
    (folder / f"{kept}.json").unlink(missing_ok=True)
    for suffix in (".npz", ".bin", ".json"):
        source = folder / f"{name}{suffix}"
        if source.is_file():
            os.replace(source, folder / f"{kept}{suffix}")
        elif suffix != ".json":
            (folder / f"{kept}{suffix}").unlink(missing_ok=True)
    return True
