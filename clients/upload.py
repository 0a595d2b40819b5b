"""What the project's WAE agent uploads in a round: which rows, and their codes
under local differential privacy.

Rows with a record id are drawn by the ids (:func:`otm_flower.anchors.upload_ids`:
a simulated agent's ids are those of the keys ``otm-flower split`` gives its
rows, so a simulation and the split's parties upload the same rows). Without
local DP an upload is ``size`` rows (rows with an id first). With local DP
(``dp-clip > 0``) the rows are drawn by Poisson sampling at rate
``size / n_train``, as :mod:`otm_flower.privacy` accounts: a linked row by a coin
every agent holding that record agrees on (a hash of its id and the round), the
others by the agent's own coin; when more than ``size`` are drawn, the linked rows
are kept and a uniform subset of the others fills the rest. Without local DP,
records the server reported as met (``linked-ids``) go up first in every round.
"""

from __future__ import annotations

import hashlib

import numpy as np

from otm_flower.agent import agent_anchor_ids, load_agents
from otm_flower.anchors import upload_ids, upload_rows
from otm_flower.config import RunConfig
from otm_flower.data import AgentData
from otm_flower.training import LocalTrainer


def choose_rows(
    trainer: LocalTrainer,
    agent: AgentData,
    config: RunConfig,
    *,
    size: int,
    anchor_ids: np.ndarray | None,
    server_round: int,
    linked_ids: np.ndarray | None = None,
) -> np.ndarray:
    """The ``size`` training rows whose codes go up this round.

    Without record ids, a draw of the trainer's exchange stream; with ids
    (:func:`otm_flower.anchors.upload_ids`), :func:`otm_flower.anchors.upload_rows`:
    the rows of ``linked_ids`` (records the server saw another agent upload)
    first, then rows with an id, ranked by a hash of (id, round) that agents
    holding the same record compute alike, then a draw seeded by ``(seed,
    agent, round)``. With local DP, a Poisson draw (:func:`poisson_rows`), which
    ignores ``linked_ids``: the accountant assumes every row's coin.
    """
    ids = upload_ids(agent, config, anchor_ids)
    if config.dp_clip > 0:
        rng = np.random.default_rng([config.seed, agent.agent_id, server_round, 47])
        ids = np.full(agent.n_train, -1) if ids is None else ids
        return poisson_rows(ids, size, rng, server_round=server_round)
    if ids is None:
        return trainer.sample_rows(size)
    rng = np.random.default_rng([config.seed, agent.agent_id, server_round, 43])
    return upload_rows(ids, size, rng, round_key=server_round, known=linked_ids)


def _shared_coin(record_id: int, server_round: int) -> float:
    """A uniform draw in [0, 1) that every agent holding ``record_id`` computes
    alike in ``server_round`` (independent of any features)."""
    digest = hashlib.blake2b(
        f"poisson|{server_round}|{record_id}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def poisson_rows(
    ids: np.ndarray, size: int, rng: np.random.Generator, *, server_round: int
) -> np.ndarray:
    """Rows of a Poisson-sampled upload of at most ``size`` codes.

    Each row is drawn with probability ``q = min(1, size / len(ids))``: linked rows
    (``ids >= 0``) by :func:`_shared_coin`, the others by ``rng``. Above ``size``,
    the linked rows drawn are kept (the first ``size`` of them by coin) and the
    others are a uniform subset of those drawn. The rows come back shuffled.
    """
    if size < 1 or len(ids) == 0:
        raise ValueError(f"need size >= 1 and rows to draw, got {size}, {len(ids)}")
    q = min(1.0, size / len(ids))
    linked = np.flatnonzero(ids >= 0)
    coins = np.array([_shared_coin(int(ids[i]), server_round) for i in linked])
    drawn = coins < q
    linked = linked[drawn][np.argsort(coins[drawn], kind="stable")][:size]
    others = np.flatnonzero(ids < 0)
    others = others[rng.random(len(others)) < q]
    others = rng.permutation(others)[: max(0, size - len(linked))]
    return rng.permutation(np.concatenate([linked, others])).astype(np.int64)


def privatize_codes(
    codes: np.ndarray,
    rows: np.ndarray,
    releases: np.ndarray,
    config: RunConfig,
    *,
    agent_id: int,
    server_round: int,
    n_linked: int | None = None,
) -> tuple[np.ndarray, float]:
    """Clip and noise the codes (local DP) and account the releases.

    Parameters
    ----------
    codes : np.ndarray
        The rows' codes, ``len(rows) x d``.
    rows : np.ndarray
        The uploaded training rows.
    releases : np.ndarray
        Per training row, how often its code was uploaded; updated in place.
    config : RunConfig
        ``dp-clip`` (> 0), ``dp-noise``, ``dp-delta`` and ``seed``.
    agent_id, server_round : int
        Seed the noise, with ``seed``; ``server_round`` is also the number of
        rounds composed (an upper bound on the agent's uploads).
    n_linked : int, optional
        How many training rows carry a record id; by default counted from the
        run's agents.

    Returns
    -------
    tuple of np.ndarray and float
        The noised codes, and the epsilon spent so far by the most exposed row
        (:func:`otm_flower.privacy.upload_epsilon`, at ``dp-delta``).
    """
    from otm_flower.privacy import clip_and_noise, upload_epsilon

    noise_rng = np.random.default_rng([config.seed, agent_id, server_round, 7])
    noised = clip_and_noise(codes, config.dp_clip, config.dp_noise, noise_rng)
    np.add.at(releases, rows, 1)
    if n_linked is None:
        n_linked = _linked_count(config, agent_id, len(releases))
    epsilon = upload_epsilon(
        config.dp_noise,
        server_round,
        size=config.mix_batch_size,
        n_train=len(releases),
        n_linked=n_linked,
        delta=config.dp_delta,
    )
    return noised, epsilon


def _linked_count(config: RunConfig, agent_id: int, n_train: int) -> int:
    """How many of the agent's training rows carry a record id (0 without
    linkage), from the run's agents (loaded once per process)."""
    if config.anchor_rate <= 0:
        return 0
    agents, _ = load_agents(config)
    ids = agent_anchor_ids(agents[agent_id], config)
    if ids is None or len(ids) != n_train:
        raise ValueError(
            f"agent {agent_id}: {n_train} release counts but "
            f"{'no' if ids is None else len(ids)} record ids"
        )
    return int(np.sum(ids >= 0))
