"""The reconstruction attack: it beats the trivial baseline on clean codes, not on
heavily noised ones, and it sees exactly the codes the party's upload path sends."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from clients.upload import choose_rows, privatize_codes
from otm_flower.agent import agent_anchor_ids, load_agents
from research.reconstruction_attack import (
    Uploads,
    attack,
    party_uploads,
    public_rows,
    run_config,
)

AGENT = 1  # fou
TINY = {"num-server-rounds": "2", "local-epochs": "1"}
NOISE_EPSILON_1 = 16.5625  # research.privacy_sweep.calibrate(1.0, ANCHORED, 1e-5)


@functools.cache
def _run(noise: float | None) -> tuple[Uploads, dict[str, float]]:
    """The party's uploads over a tiny run, and the attack's errors on them."""
    config = run_config(0, noise, **TINY)
    agent = load_agents(config)[0][AGENT]
    uploads = party_uploads(config, AGENT)
    public = public_rows(agent.n_train, 0)
    errors = attack(uploads, agent.x_train.astype(np.float64), public, window=2, seed=0)
    return uploads, errors


@pytest.fixture(params=[None, NOISE_EPSILON_1], ids=["clean", "eps1"])
def run(request: pytest.FixtureRequest) -> tuple[float | None, Uploads, dict]:
    return (request.param, *_run(request.param))


def r2(errors: dict[str, float], method: str) -> float:
    return 1.0 - errors[method] / errors["mean"]


def test_attack_against_the_mean_baseline(run: tuple) -> None:
    noise, _, errors = run
    assert 0.8 < errors["mean"] < 1.2  # standardised features
    if noise is None:
        assert r2(errors, "ridge") > 0.2 and r2(errors, "mlp") > 0.2
    else:
        assert r2(errors, "ridge") < 0.05 and r2(errors, "mlp") < 0.05


def test_attacker_sees_the_upload_path_codes() -> None:
    config = run_config(0, NOISE_EPSILON_1, **TINY)
    agent = load_agents(config)[0][AGENT]
    uploads, _ = _run(NOISE_EPSILON_1)
    assert uploads.epsilon is not None and 0 < uploads.epsilon < 1.0
    releases = np.zeros(agent.n_train, dtype=np.int64)
    for server_round in (1, 2):
        here = uploads.rounds == server_round
        rows = choose_rows(
            None,  # type: ignore[arg-type]  # a DP draw does not use the trainer
            agent,
            config,
            size=config.mix_batch_size,
            anchor_ids=agent_anchor_ids(agent, config),
            server_round=server_round,
        )
        np.testing.assert_array_equal(rows, uploads.rows[here])
        sent, _ = privatize_codes(
            uploads.clean[here],
            uploads.rows[here],
            releases,
            config,
            agent_id=AGENT,
            server_round=server_round,
        )
        np.testing.assert_allclose(uploads.codes[here], sent, rtol=1e-6)
        assert np.abs(uploads.codes[here] - uploads.clean[here]).mean() > 1.0


def test_clean_run_uploads_clean_codes(run: tuple) -> None:
    noise, uploads, _ = run
    if noise is None:
        assert uploads.epsilon is None
        np.testing.assert_array_equal(uploads.codes, uploads.clean)
