"""Simulated record linkage, and which rows an agent with linked records uploads.

Parties that share a record key for some records turn the keys into opaque
linked-record ids with :func:`otm_flower.linkage.link_ids` (HMAC-SHA256 under a
federation secret the server does not hold) and upload them next to the codes
as the protocol's ``anchor-ids``.  The simulator's ``anchor-rate`` goes through
the same path: :func:`simulated_record_keys` gives the linkable fraction of a
data set's samples a record key (the sample index as text), and
:func:`simulation_secret` derives the federation secret from the run's seed.
A sample is linkable when a hash of (seed, sample index) falls below the rate,
so every agent holding it agrees without coordination.

What the ids reveal to the server: which uploaded rows of different agents are
the same record, and, since linked rows are uploaded every round, the same
record's codes across rounds. Nothing else about the record.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .linkage import link_ids

__all__ = [
    "NO_ANCHOR",
    "simulated_anchor_ids",
    "simulated_record_keys",
    "simulation_secret",
    "upload_rows",
]

NO_ANCHOR = -1


def _hash64(salt: str, key: int, purpose: str) -> int:
    digest = hashlib.blake2b(f"{salt}|{purpose}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def simulation_secret(seed: int) -> bytes:
    """The simulated federation's link secret: 32 bytes derived from the seed."""
    return hashlib.sha256(f"otm-flower simulated link secret {seed}".encode()).digest()


def simulated_record_keys(sample_ids: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Record keys of a simulated agent's rows: ``""`` for rows without one.

    Parameters
    ----------
    sample_ids : np.ndarray
        Each row's sample index in the data set.
    rate : float
        Fraction of the samples that are linkable, in ``[0, 1]``.
    seed : int
        The run's seed (the same samples are linkable at every agent).

    Returns
    -------
    np.ndarray
        str, one per row: the sample index as text, or ``""``.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"anchor rate must be in [0, 1], got {rate}")
    salt = f"otm-run-{seed}"
    return np.array(
        [
            str(int(s))
            if rate > 0 and _hash64(salt, int(s), "pick") / 2.0**64 < rate
            else ""
            for s in np.asarray(sample_ids, dtype=np.int64)
        ],
        dtype=object,
    ).astype(str)


def simulated_anchor_ids(sample_ids: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Opaque linked-record ids of a simulated agent's rows (-1: not linkable).

    :func:`otm_flower.linkage.link_ids` of :func:`simulated_record_keys` under
    :func:`simulation_secret`: the path of a real party's record keys.
    """
    keys = simulated_record_keys(sample_ids, rate, seed)
    return link_ids(keys, simulation_secret(seed))


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
