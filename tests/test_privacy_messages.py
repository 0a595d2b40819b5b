"""What an agent under local DP sends: only clipped, noised codes of a Poisson
draw of its rows (and opaque record ids), and the epsilon its accountant spent."""

from __future__ import annotations

import numpy as np
import pytest

from clients.app import handle_train
from otm_flower import protocol as P
from otm_flower.agent import agent_anchor_ids, load_agents
from otm_flower.config import parse_run_config
from otm_flower.privacy import upload_epsilon

from .test_client import CONFIG, context, train_message


def _reply_parts(reply) -> tuple[np.ndarray, dict, np.ndarray | None]:
    content = reply.content
    assert not content.config_records, "agents must not send config records"
    assert set(content.array_records) == {P.CODES_RECORD}
    record = content.array_records[P.CODES_RECORD]
    assert set(record) <= {P.KEY_CODES, P.KEY_ANCHORS}
    ids = record[P.KEY_ANCHORS].numpy() if P.KEY_ANCHORS in record else None
    metrics = dict(content.metric_records[P.METRICS_RECORD])
    return record[P.KEY_CODES].numpy(), metrics, ids


def test_clip_only_codes_are_inside_the_ball() -> None:
    config = parse_run_config({**CONFIG.to_dict(), "dp-clip": 0.5, "dp-noise": 0.0})
    codes, metrics, _ = _reply_parts(handle_train(train_message(1), context(), config))
    assert codes.shape[1] == CONFIG.latent_dim and len(codes) <= 64
    assert np.linalg.norm(codes, axis=1).max() <= 0.5 + 1e-5
    assert metrics["train-dp-epsilon"] == float("inf")  # no noise: no guarantee


@pytest.mark.parametrize("anchor_rate", [0.0, 0.1])
def test_reply_carries_noised_poisson_codes_and_the_accountants_epsilon(
    anchor_rate,
) -> None:
    settings = {"dp-clip": 1.0, "dp-noise": 2.0, "anchor-rate": anchor_rate}
    config = parse_run_config({**CONFIG.to_dict(), **settings})
    agents, _ = load_agents(config)
    agent = agents[3]
    ids = agent_anchor_ids(agent, config)
    n_linked = 0 if ids is None else int(np.sum(ids >= 0))
    ctx = context()
    sizes = []
    for server_round in (1, 2, 3):
        codes, metrics, sent_ids = _reply_parts(
            handle_train(train_message(server_round), ctx, config)
        )
        assert codes.shape[1] == CONFIG.latent_dim and len(codes) <= 64
        # clipped to norm 1, then noise of std 2: the spread is the noise's
        assert np.std(codes) == pytest.approx(2.0, rel=0.2)
        assert (sent_ids is None) == (anchor_rate == 0.0)
        if sent_ids is not None:
            assert len(sent_ids) == len(codes)
            assert set(sent_ids[sent_ids >= 0]) <= set(ids[ids >= 0])
        sizes.append(len(codes))
        expected = upload_epsilon(
            2.0,
            server_round,
            size=64,
            n_train=agent.n_train,
            n_linked=n_linked,
            delta=config.dp_delta,
        )
        assert metrics["train-dp-epsilon"] == pytest.approx(expected)
    assert len(set(sizes)) > 1 or sizes[0] < 64  # Poisson: the size is random
