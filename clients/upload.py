"""What the project's WAE agent uploads in a round: which rows, and their codes
under local differential privacy."""

from __future__ import annotations

import numpy as np

from otm_flower.anchors import upload_rows
from otm_flower.config import RunConfig
from otm_flower.data import AgentData
from otm_flower.privacy import clip_and_noise, gaussian_epsilon
from otm_flower.training import LocalTrainer


def choose_rows(
    trainer: LocalTrainer,
    agent: AgentData,
    config: RunConfig,
    *,
    size: int,
    anchor_ids: np.ndarray | None,
    server_round: int,
) -> np.ndarray:
    """The ``size`` training rows whose codes go up this round.

    Without anchors, a draw of the trainer's exchange stream; with anchors, the
    anchored rows first (so the server can pin them every round), then a draw
    seeded by ``(seed, agent, round)``.
    """
    if anchor_ids is None:
        return trainer.sample_rows(size)
    rng = np.random.default_rng([config.seed, agent.agent_id, server_round, 43])
    return upload_rows(anchor_ids, size, rng, round_key=server_round)


def privatize_codes(
    codes: np.ndarray,
    rows: np.ndarray,
    releases: np.ndarray,
    config: RunConfig,
    *,
    agent_id: int,
    server_round: int,
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
        Seed the noise, with ``seed``.

    Returns
    -------
    tuple of np.ndarray and float
        The noised codes, and the epsilon spent so far by the most released row.
    """
    noise_rng = np.random.default_rng([config.seed, agent_id, server_round, 7])
    noised = clip_and_noise(codes, config.dp_clip, config.dp_noise, noise_rng)
    np.add.at(releases, rows, 1)
    epsilon = gaussian_epsilon(config.dp_noise, int(releases.max()), config.dp_delta)
    return noised, epsilon
