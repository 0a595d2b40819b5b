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
therefore upload the same rows.  Once the server has seen a record's id in the
uploads of two agents it tells each of them (:func:`met_ids`, the protocol's
``linked-ids``), and from then on they upload that record first in every round.

What the ids reveal to the server: which uploaded rows of different agents are
the same record, and the same record's codes across the rounds it is uploaded
in. Nothing else about the record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .linkage import link_ids

if TYPE_CHECKING:
    from .config import RunConfig
    from .partition import AgentData

__all__ = [
    "NO_ANCHOR",
    "met_ids",
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
    ids: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    round_key: int = 0,
    known: np.ndarray | None = None,
) -> np.ndarray:
    """Rows for an upload of ``n`` codes: the anchored rows first, then others.

    Anchored rows (``ids >= 0``) always go up, so the server can match them in
    every round; the remaining slots are filled with a random draw of the other
    rows. When an agent holds more anchored rows than fit, it sends the ``n``
    whose ids rank first by a hash of (id, ``round_key``): agents holding the
    same records then send the same ones, and the choice rotates by round.

    ``known`` (ids the server reported as also uploaded by another agent,
    :func:`met_ids`): their rows go before every other row, ranked by the same
    hash, so records known to be shared meet at the server in every round.
    """
    if known is not None and len(known):
        first = np.flatnonzero((ids >= 0) & np.isin(ids, known))
        first = first[np.argsort(_upload_rank(ids[first], round_key), kind="stable")]
        first = first[:n]
        rest = np.setdiff1d(np.arange(len(ids)), first)
        n_rest = min(n, len(ids)) - len(first)
        if n_rest <= 0:
            return first
        picked = upload_rows(ids[rest], n_rest, rng, round_key=round_key)
        return np.concatenate([first, rest[picked]])
    anchored = np.flatnonzero(ids >= 0)
    others = np.flatnonzero(ids < 0)
    n = min(n, len(ids))
    if len(anchored) >= n:
        rank = _upload_rank(ids[anchored], round_key)
        return anchored[np.argsort(rank, kind="stable")[:n]]
    rest = rng.choice(others, n - len(anchored), replace=False)
    return np.concatenate([rng.permutation(anchored), rest])


def _upload_rank(ids: np.ndarray, round_key: int) -> list[int]:
    """Each id's rank key in ``round_key``'s upload draw (alike at every agent)."""
    return [_hash64(str(round_key), int(i), "upload") for i in ids]


def met_ids(uploaded: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """Per upload, the ids (``>= 0``) that at least one other upload also carries.

    Parameters
    ----------
    uploaded : sequence of np.ndarray or None
        Each upload's ``anchor-ids`` (``None``: an upload without ids).

    Returns
    -------
    list of np.ndarray
        int64, sorted, one per upload (empty for an upload without ids).
    """
    own = [
        np.unique(ids[ids >= 0]) if ids is not None else np.empty(0, np.int64)
        for ids in uploaded
    ]
    if not own:
        return []
    values, counts = np.unique(np.concatenate(own), return_counts=True)
    repeated = values[counts > 1]
    return [ids[np.isin(ids, repeated)].astype(np.int64) for ids in own]
