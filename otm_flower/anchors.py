"""Opaque shared record ids ("anchors") for partly linked agents.

Two institutions that can link a few records (a shared patient or customer key)
derive, from that key and a salt they agree on, the same opaque 56-bit id; the
server sees only these ids next to the uploaded codes, never the key, features or
labels. Which records are linkable is itself decided by the key (a record is an
anchor when a second hash of it falls below ``anchor-rate``), so every agent
holding a record agrees on it without any coordination. In the simulator the key
is the sample's index in the data set and the salt derives from the run's seed.

What the ids reveal to the server: which uploaded rows of different agents are the
same record, and, since anchored rows are uploaded every round, the same record's
codes across rounds. Nothing else about the record.
"""

from __future__ import annotations

import hashlib

import numpy as np

NO_ANCHOR = -1


def _hash64(salt: str, key: int, purpose: str) -> int:
    digest = hashlib.blake2b(f"{salt}|{purpose}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def anchor_ids(record_keys: np.ndarray, rate: float, salt: str) -> np.ndarray:
    """Opaque anchor id of each record, or :data:`NO_ANCHOR` (-1).

    Parameters
    ----------
    record_keys : np.ndarray
        The shared key of each of the agent's rows (int).
    rate : float
        Fraction of records that are linkable, in ``[0, 1]``.
    salt : str
        Secret the agents share (not the server).

    Returns
    -------
    np.ndarray
        int64, one per row: a non-negative id below ``2**56`` for anchored rows,
        -1 otherwise.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"anchor rate must be in [0, 1], got {rate}")
    out = np.full(len(record_keys), NO_ANCHOR, dtype=np.int64)
    if rate == 0.0:
        return out
    for i, key in enumerate(np.asarray(record_keys, dtype=np.int64)):
        if _hash64(salt, int(key), "pick") / 2.0**64 < rate:
            out[i] = _hash64(salt, int(key), "id") >> 8
    return out


def upload_rows(
    ids: np.ndarray, n: int, rng: np.random.Generator, *, round_key: int = 0
) -> np.ndarray:
    """Rows for an upload of ``n`` codes: the anchored rows first, then others.

    Anchored rows (``ids >= 0``) always go up, so the server can match them in
    every round; the remaining slots are filled with a random draw of the other
    rows. When an agent holds more anchored rows than fit, it sends the ``n``
    whose ids rank first by a hash of (id, ``round_key``): agents holding the
    same records then send the same ones, and the choice rotates by round.
    """
    anchored = np.flatnonzero(ids >= 0)
    others = np.flatnonzero(ids < 0)
    n = min(n, len(ids))
    if len(anchored) >= n:
        rank = [_hash64(str(round_key), int(i), "upload") for i in ids[anchored]]
        return anchored[np.argsort(rank, kind="stable")[:n]]
    rest = rng.choice(others, n - len(anchored), replace=False)
    return np.concatenate([rng.permutation(anchored), rest])
