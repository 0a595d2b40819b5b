"""Simulated record linkage, and which rows an agent with record keys uploads.

Parties that share a record key for some records turn the keys into opaque
linked-record ids with :func:`otm_flower.linkage.link_ids` (HMAC-SHA256 under a
federation secret the server does not hold) and upload them next to the codes
as the protocol's ``anchor-ids``.  The simulator's ``anchor-rate`` goes through
the same path with the keys ``otm-flower split`` writes
(:func:`simulated_record_keys`): a linkable record carries the key ``r<sample>``
at every agent, every other row of agent ``p`` the key ``p<p>-<sample>``, unique
to that agent; :func:`simulation_secret` derives the federation secret from the
run's seed.  A sample is linkable when a hash of (seed, sample index) falls
below the rate, so every agent holding it agrees without coordination.

A party cannot tell which of its keys other parties share, so every row with a
key is uploaded by the same rule (:func:`upload_rows`): the ``n`` whose ids rank
first by a hash of (id, round), a draw that agents holding the same record make
alike.  A simulated agent and a party holding the same rows, keys and secret
therefore upload the same rows.

What the ids reveal to the server: which uploaded rows of different agents are
the same record, and the same record's codes across the rounds it is uploaded
in. Nothing else about the record.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from .linkage import link_ids

if TYPE_CHECKING:
    from .config import RunConfig
    from .partition import AgentData

__all__ = [
    "NO_ANCHOR",
    "simulated_anchor_ids",
    "simulated_record_keys",
    "simulation_secret",
    "upload_ids",
    "upload_rows",
]

NO_ANCHOR = -1


def _hash64(salt: str, key: int, purpose: str) -> int:
    digest = hashlib.blake2b(f"{salt}|{purpose}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def simulation_secret(seed: int) -> bytes:
    """The simulated federation's link secret: 64 hex characters derived from the
    seed (the form of the secret file ``otm-flower split`` writes)."""
    text = f"otm-flower simulated link secret {seed}"
    return hashlib.sha256(text.encode()).hexdigest().encode("ascii")


def simulated_record_keys(
    sample_ids: np.ndarray, rate: float, seed: int, party: int | None = None
) -> np.ndarray:
    """Record keys of a simulated agent's rows (those ``otm-flower split`` writes).

    Parameters
    ----------
    sample_ids : np.ndarray
        Each row's sample index in the data set.
    rate : float
        Fraction of the samples that are linkable, in ``[0, 1]``.
    seed : int
        The run's seed (the same samples are linkable at every agent).
    party : int, optional
        The agent's id: its rows that are not linkable get the key
        ``p<party>-<sample>``, unique to it; ``None``: no key (``""``).

    Returns
    -------
    np.ndarray
        str, one per row: ``r<sample>`` for a linkable sample (the same at every
        agent), else the party's own key or ``""``.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"anchor rate must be in [0, 1], got {rate}")
    salt = f"otm-run-{seed}"
    own = "" if party is None else f"p{int(party)}-"
    return np.array(
        [
            f"r{s}"
            if rate > 0 and _hash64(salt, s, "pick") / 2.0**64 < rate
            else (f"{own}{s}" if own else "")
            for s in np.asarray(sample_ids, dtype=np.int64).tolist()
        ],
        dtype=object,
    ).astype(str)


def simulated_anchor_ids(
    sample_ids: np.ndarray, rate: float, seed: int, party: int | None = None
) -> np.ndarray:
    """Opaque linked-record ids of a simulated agent's rows.

    :func:`otm_flower.linkage.link_ids` of :func:`simulated_record_keys` under
    :func:`simulation_secret`: the path of a real party's record keys.  With
    ``party``, every row has an id (the unlinkable ones unique to the agent);
    without, those rows have ``-1``.
    """
    keys = simulated_record_keys(sample_ids, rate, seed, party)
    return link_ids(keys, simulation_secret(seed))


def upload_ids(
    agent: AgentData, config: RunConfig, anchor_ids: np.ndarray | None
) -> np.ndarray | None:
    """The ids an agent's upload rows are drawn by (``None``: no record keys).

    A party's own ids (``anchor_ids``); for a simulated agent with
    ``anchor-rate`` > 0, the ids of the keys ``otm-flower split`` would give its
    rows (:func:`simulated_anchor_ids` with the agent's id), so that the
    simulation and the split's parties draw the same rows.
    """
    if anchor_ids is None or agent.link_ids is not None or config.anchor_rate <= 0:
        return anchor_ids
    return simulated_anchor_ids(
        agent.train_ids, config.anchor_rate, config.seed, agent.agent_id
    )


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
