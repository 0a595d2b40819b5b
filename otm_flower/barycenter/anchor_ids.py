"""Shared record ids: validation, and the anchors they define across clouds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .validation import MixerError

__all__ = ["as_ids", "common_anchors", "keep_anchors"]


def _one_ids(k: int, ids: Any, n: int) -> np.ndarray:
    """Id array ``k`` as int64 ``(n,)``: integers ``>= -1``, unique when ``>= 0``."""
    if hasattr(ids, "detach") and hasattr(ids, "cpu"):
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise MixerError(
            f"anchor_ids[{k}] must be integers (int64 ids, -1 for none), "
            f"got dtype {arr.dtype}"
        )
    if arr.ndim != 1:
        raise MixerError(f"anchor_ids[{k}] must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size != n:
        raise MixerError(
            f"anchor_ids[{k}] has {arr.size} ids but codes[{k}] has {n} rows"
        )
    if arr.size and np.issubdtype(arr.dtype, np.unsignedinteger):
        if int(arr.max()) > np.iinfo(np.int64).max:
            raise MixerError(f"anchor_ids[{k}] has ids beyond the int64 range")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < -1:
        raise MixerError(
            f"anchor_ids[{k}] contains {int(arr.min())}: ids must be >= 0, "
            "or -1 for a row without id"
        )
    uniq, counts = np.unique(arr[arr >= 0], return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise MixerError(
            f"anchor_ids[{k}] repeats {dup.size} id(s) within one cloud "
            f"(e.g. {int(dup[0])}); ids must be unique per cloud"
        )
    return arr


def as_ids(anchor_ids: Sequence[Any], sizes: list[int]) -> list[np.ndarray]:
    """Validate K id arrays: 1-D integer, length ``n_k``, ``>= -1``, unique.

    Raises
    ------
    MixerError
        Naming the first invalid array.
    """
    if isinstance(anchor_ids, np.ndarray) or hasattr(anchor_ids, "detach"):
        raise MixerError(
            "anchor_ids must be a sequence of K arrays (one per cloud), got a "
            "single array; wrap it in a list"
        )
    try:
        raw = list(anchor_ids)
    except TypeError as exc:
        raise MixerError(f"anchor_ids must be a sequence of arrays: {exc}") from exc
    if len(raw) != len(sizes):
        raise MixerError(
            f"got {len(raw)} id arrays for {len(sizes)} code clouds (need one each)"
        )
    return [_one_ids(k, a, n) for k, (a, n) in enumerate(zip(raw, sizes, strict=True))]


def common_anchors(
    anchor_ids: Sequence[np.ndarray], min_clouds: int = 2
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Ids held by at least ``min_clouds`` clouds, and their rows per cloud.

    Parameters
    ----------
    anchor_ids : sequence of np.ndarray
        1-D integer id arrays, one per cloud (``-1``: no id; ids unique per
        cloud).
    min_clouds : int
        Minimum number of clouds holding an id for it to be an anchor.

    Returns
    -------
    ids : np.ndarray
        Sorted anchor ids, int64, shape ``(A,)``.
    rows : list of np.ndarray
        Per cloud, int64 shape ``(A,)``: the row holding each anchor, or ``-1``.
    """
    arrays = [np.asarray(a, dtype=np.int64).ravel() for a in anchor_ids]
    if not arrays:
        return np.zeros(0, np.int64), []
    present = np.concatenate([np.unique(a[a >= 0]) for a in arrays])
    allids, counts = np.unique(present, return_counts=True)
    ids = allids[counts >= min_clouds]
    rows = []
    for a in arrays:
        out = np.full(ids.size, -1, np.int64)
        if a.size and ids.size:
            order = np.argsort(a, kind="stable")
            pos = np.minimum(np.searchsorted(a[order], ids), a.size - 1)
            hit = a[order][pos] == ids
            out[hit] = order[pos][hit]
        rows.append(out)
    return ids, rows


def keep_anchors(
    ids: np.ndarray, rows: list[np.ndarray], capacity: int, seed: int | None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The ``capacity`` anchors held by the most clouds (ties: a seeded draw).

    The other shared ids are then matched as rows without id.
    """
    holders = np.sum([r >= 0 for r in rows], axis=0)
    tiebreak = np.random.default_rng(seed).random(ids.size)
    keep = np.sort(np.lexsort((tiebreak, -holders))[:capacity])
    return ids[keep], [r[keep] for r in rows]
