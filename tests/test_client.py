"""The OTM ClientApp's handlers: what an agent sends, state across rounds, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MessageType, RecordDict

from clients.app import handle_evaluate, handle_train
from otm_flower import protocol as P
from otm_flower.config import parse_run_config

from .conftest import incoming

CONFIG = parse_run_config(
    {"latent-dim": 8, "hidden-dim": 32, "local-epochs": 1, "mix-batch-size": 64}
)


def context(partition: int = 3, num_partitions: int = 6) -> Context:
    return Context(
        run_id=1,
        node_id=5,
        node_config={"partition-id": partition, "num-partitions": num_partitions},
        state=RecordDict(),
        run_config={},
    )


def train_message(round_: int, mixed: np.ndarray | None = None, version: int = 1):
    content = RecordDict(
        {
            P.CONFIG_RECORD: ConfigRecord(
                {P.KEY_ROUND: round_, P.KEY_VERSION: version, P.KEY_MIX_BATCH: 64}
            )
        }
    )
    if mixed is not None:
        content[P.CODES_RECORD] = ArrayRecord(
            {P.KEY_MIXED: Array(mixed), P.KEY_BARYCENTER: Array(mixed)}
        )
    return incoming(content, MessageType.TRAIN, src=0, dst=5)


def assert_codes_and_metrics_only(reply, n_rows: int | None) -> None:
    content = reply.content
    assert not content.config_records, "agents must not send config records"
    if n_rows is None:
        assert not content.array_records
    else:
        assert set(content.array_records) == {P.CODES_RECORD}
        record = content.array_records[P.CODES_RECORD]
        assert set(record) == {P.KEY_CODES}
        codes = record[P.KEY_CODES].numpy()
        assert codes.shape == (n_rows, CONFIG.latent_dim) and codes.dtype == np.float32
    assert set(content.metric_records) == {P.METRICS_RECORD}
    for key, value in content.metric_records[P.METRICS_RECORD].items():
        assert isinstance(value, int | float), f"metric {key} is not a scalar"


def test_train_reply_carries_codes_and_scalar_metrics_only() -> None:
    ctx = context()
    reply = handle_train(train_message(1), ctx, CONFIG)
    assert_codes_and_metrics_only(reply, n_rows=64)
    metrics = reply.content.metric_records[P.METRICS_RECORD]
    assert metrics[P.KEY_AGENT] == 3 and "train-mix" not in metrics
    # the codes are codes, not the agent's features (the mor view has 6 columns)
    assert CONFIG.latent_dim != 6


@pytest.mark.parametrize("weight_mix", [1.0, 0.0])
def test_state_persists_and_mixed_codes_are_used_when_weighted(
    weight_mix: float,
) -> None:
    config = dataclasses.replace(CONFIG, weight_mix=weight_mix)
    ctx = context()
    first = handle_train(train_message(1), ctx, config)
    codes = first.content.array_records[P.CODES_RECORD][P.KEY_CODES].numpy()
    state = bytes(ctx.state.config_records["otm-agent"]["trainer"])
    second = handle_train(train_message(2, mixed=codes[::-1].copy()), ctx, config)
    metrics = second.content.metric_records[P.METRICS_RECORD]
    # with the terms off (weight-mix and weight-reg 0) no mix pass is paid for
    assert ("train-mix" in metrics) == (weight_mix > 0)
    assert bytes(ctx.state.config_records["otm-agent"]["trainer"]) != state


def test_mixed_codes_of_wrong_shape_are_refused() -> None:
    ctx = context()
    handle_train(train_message(1), ctx, CONFIG)
    with pytest.raises(P.ProtocolError, match="do not match"):
        handle_train(train_message(2, mixed=np.zeros((10, 8), np.float32)), ctx, CONFIG)


def test_protocol_version_mismatch_is_a_clear_error() -> None:
    with pytest.raises(P.ProtocolError, match="protocol version 99"):
        handle_train(train_message(1, version=99), context(), CONFIG)


def test_evaluate_reply_is_metrics_only() -> None:
    ctx = context(partition=0)
    handle_train(train_message(1), ctx, CONFIG)
    reply = handle_evaluate(
        incoming(
            RecordDict(
                {P.CONFIG_RECORD: ConfigRecord({P.KEY_ROUND: 1, P.KEY_VERSION: 1})}
            ),
            MessageType.EVALUATE,
            0,
            5,
        ),
        ctx,
        CONFIG,
    )
    assert_codes_and_metrics_only(reply, n_rows=None)
    metrics = reply.content.metric_records[P.METRICS_RECORD]
    for key in ("acc", "nmi", "ari"):
        assert -1.0 <= metrics[key] <= 1.0
    assert metrics["acc"] > 0.2  # well above chance (0.1) even after one epoch
    assert metrics["n-test"] == 400 and metrics["modality"] == 0


@pytest.mark.parametrize(
    ("node_config", "match"),
    [
        ({"partition-id": 6, "num-partitions": 6}, "out of range"),
        ({"partition-id": 0, "num-partitions": 4}, "num-supernodes = 6"),
        ({}, "partition-id"),
    ],
)
def test_bad_node_config_is_named(node_config, match) -> None:
    ctx = Context(
        run_id=1, node_id=5, node_config=node_config, state=RecordDict(), run_config={}
    )
    with pytest.raises(ValueError, match=match):
        handle_train(train_message(1), ctx, CONFIG)


def test_local_dp_clips_noises_and_accounts() -> None:
    config = parse_run_config({**CONFIG.to_dict(), "dp-clip": 1.0, "dp-noise": 2.0})
    ctx = context()
    first = handle_train(train_message(1), ctx, config)
    metrics = first.content.metric_records[P.METRICS_RECORD]
    codes = first.content.array_records[P.CODES_RECORD][P.KEY_CODES].numpy()
    # noise of std 2 on clipped codes: far larger spread than the unit ball
    assert np.std(codes) == pytest.approx(2.0, rel=0.15)
    eps_one = metrics["train-dp-epsilon"]
    assert 0 < eps_one < float("inf")
    second = handle_train(train_message(2, mixed=codes.copy()), ctx, config)
    eps_two = second.content.metric_records[P.METRICS_RECORD]["train-dp-epsilon"]
    assert eps_two >= eps_one  # more releases of some rows, never less spent
