"""OTMStrategy with hand-built replies: mixing, privacy of what goes down, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid

from otm_flower import protocol as P
from otm_flower.code_mixer import CodeMixer
from strategies.otm import OTMStrategy

from .conftest import incoming

D = 4


class StaticGrid(Grid):
    """A grid whose connected nodes are fixed (only node listing is used here)."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self):  # type: ignore[override]
        return list(self.node_ids)

    def set_run(self, run):  # type: ignore[override]
        raise NotImplementedError

    @property
    def run(self):  # type: ignore[override]
        raise NotImplementedError

    def create_message(self, *args, **kwargs):  # type: ignore[override]
        raise NotImplementedError

    def get_nodes(self):  # type: ignore[override]
        raise NotImplementedError

    def push_messages(self, messages):  # type: ignore[override]
        raise NotImplementedError

    def pull_messages(self, message_ids):  # type: ignore[override]
        raise NotImplementedError

    def send_and_receive(self, messages, *, timeout=None):  # type: ignore[override]
        raise NotImplementedError


def train_reply(node_id: int, codes: np.ndarray | None, **extra_records) -> object:
    content = RecordDict(
        {
            P.METRICS_RECORD: MetricRecord(
                {P.KEY_NUM_EXAMPLES: 100, P.KEY_AGENT: node_id, "train-rec": 0.5}
            )
        }
    )
    if codes is not None:
        content[P.CODES_RECORD] = ArrayRecord({P.KEY_CODES: Array(codes)})
    for name, record in extra_records.items():
        content[name] = record
    return incoming(content, MessageType.TRAIN, src=node_id, dst=0)


def clouds(sizes: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, D)).astype(np.float32) for n in sizes]


def test_mixing_round_sends_each_agent_only_its_own_pulled_back_codes() -> None:
    strategy = OTMStrategy(
        mixer=CodeMixer(iterations=2), mix_batch_size=32, latent_dim=D
    )
    sizes = [20, 25, 30]
    uploads = clouds(sizes)
    replies = [train_reply(10 + k, codes) for k, codes in enumerate(uploads)]
    _, metrics = strategy.aggregate_train(1, replies)
    assert metrics is not None and metrics["train-rec"] == pytest.approx(0.5)
    assert strategy.state.rejected == []
    assert strategy.state.bytes_up == sum(c.nbytes for c in uploads)

    messages = list(
        strategy.configure_train(
            2, ArrayRecord(), ConfigRecord(), StaticGrid([10, 11, 12])
        )
    )
    assert sorted(m.metadata.dst_node_id for m in messages) == [10, 11, 12]
    for msg in messages:
        k = msg.metadata.dst_node_id - 10
        assert set(msg.content.keys()) == {P.CONFIG_RECORD, P.CODES_RECORD}
        record = msg.content.array_records[P.CODES_RECORD]
        assert set(record.keys()) == {P.KEY_MIXED, P.KEY_BARYCENTER}
        mixed = record[P.KEY_MIXED].numpy()
        assert mixed.shape == (sizes[k], D) and mixed.dtype == np.float32
        assert np.isfinite(mixed).all()
        # never another agent's raw codes
        for j, other in enumerate(uploads):
            if j != k:
                assert mixed.shape != other.shape or not np.allclose(mixed, other)
        config = msg.content.config_records[P.CONFIG_RECORD]
        assert config[P.KEY_ROUND] == 2 and config[P.KEY_VERSION] == P.PROTOCOL_VERSION
    assert strategy.state.bytes_down == sum(2 * n * D * 4 for n in sizes)
    # targets are delivered once: the following round sends none
    again = list(
        strategy.configure_train(
            3, ArrayRecord(), ConfigRecord(), StaticGrid([10, 11, 12])
        )
    )
    assert all(P.CODES_RECORD not in m.content for m in again)


@pytest.mark.parametrize(
    ("bad_codes", "reason"),
    [
        (np.full((10, D), np.nan, dtype=np.float32), "NaN"),
        (np.ones((10, D + 1), dtype=np.float32), "latent dimension"),
        (np.ones((10, D), dtype=np.int64), "dtype"),
        (np.ones((0, D), dtype=np.float32), "empty"),
        (np.ones((33, D), dtype=np.float32), "exceed"),
        (np.ones(10, dtype=np.float32), "2-D"),
        (None, "no ArrayRecord"),
    ],
)
def test_malformed_reply_is_dropped_and_others_still_mix(bad_codes, reason) -> None:
    strategy = OTMStrategy(
        mixer=CodeMixer(iterations=1), mix_batch_size=32, latent_dim=D
    )
    good = clouds([12, 14])
    replies = [
        train_reply(1, good[0]),
        train_reply(2, bad_codes),
        train_reply(3, good[1]),
    ]
    strategy.aggregate_train(1, replies)
    assert len(strategy.state.rejected) == 1
    rnd, node, message = strategy.state.rejected[0]
    assert (rnd, node) == (1, 2) and reason in message
    assert set(strategy.state.targets) == {1, 3}


def test_error_reply_is_logged_and_skipped() -> None:
    strategy = OTMStrategy(
        mixer=CodeMixer(iterations=1), mix_batch_size=32, latent_dim=D
    )
    good = clouds([12, 14])
    failed = incoming(RecordDict(), MessageType.TRAIN, src=2, dst=0)
    failed = type(failed)(
        Error(code=0, reason="agent crashed"), metadata=failed.metadata
    )
    strategy.aggregate_train(
        1, [train_reply(1, good[0]), failed, train_reply(3, good[1])]
    )
    assert [r[1] for r in strategy.state.rejected] == [2]
    assert "agent crashed" in strategy.state.rejected[0][2]
    assert set(strategy.state.targets) == {1, 3}


def test_too_few_agents_skips_mixing() -> None:
    strategy = OTMStrategy(mix_batch_size=32, latent_dim=D, min_agents=2)
    strategy.aggregate_train(1, [train_reply(1, clouds([10])[0])])
    assert strategy.state.targets == {}
    assert strategy.state.mix_seconds == []


def test_evaluate_keeps_per_agent_metrics_and_means_over_agents() -> None:
    strategy = OTMStrategy()
    replies = [
        incoming(
            RecordDict(
                {
                    P.METRICS_RECORD: MetricRecord(
                        {
                            P.KEY_AGENT: a,
                            "acc": acc,
                            "nmi": 0.5,
                            "ari": 0.25,
                            "n-test": 40,
                            P.KEY_NUM_EXAMPLES: 40,
                        }
                    )
                }
            ),
            MessageType.EVALUATE,
            src=100 + a,
            dst=0,
        )
        for a, acc in [(0, 0.8), (1, 0.6)]
    ]
    mean = strategy.aggregate_evaluate(4, replies)
    assert mean is not None
    assert mean["acc"] == pytest.approx(0.7) and mean["nmi"] == pytest.approx(0.5)
    assert set(strategy.state.agent_metrics[4]) == {0, 1}
    assert strategy.state.agent_metrics[4][1]["acc"] == pytest.approx(0.6)


def test_solver_failure_falls_back_to_wasserstein_then_skips(monkeypatch) -> None:
    import otm_flower.code_mixer as mixer_module

    real = mixer_module.mix_and_pull_back
    calls: list[str] = []

    def failing_fgw(codes, **kwargs):
        calls.append(kwargs["variant"])
        if kwargs["variant"] == "fgw":
            raise FloatingPointError("injected solver failure")
        return real(codes, **kwargs)

    monkeypatch.setattr(mixer_module, "mix_and_pull_back", failing_fgw)
    strategy = OTMStrategy(
        mixer=CodeMixer(iterations=1), mix_batch_size=32, latent_dim=D
    )
    strategy.aggregate_train(
        1, [train_reply(n, c) for n, c in zip([1, 2], clouds([9, 11]), strict=True)]
    )
    assert calls == ["fgw", "w"] and set(strategy.state.targets) == {1, 2}

    def always_failing(codes, **kwargs):
        raise FloatingPointError("injected solver failure")

    monkeypatch.setattr(mixer_module, "mix_and_pull_back", always_failing)
    strategy = OTMStrategy(mix_batch_size=32, latent_dim=D)
    strategy.aggregate_train(
        1, [train_reply(n, c) for n, c in zip([1, 2], clouds([9, 11]), strict=True)]
    )
    assert strategy.state.targets == {} and strategy.state.mix_seconds == []


def test_identical_codes_do_not_produce_nan() -> None:
    strategy = OTMStrategy(
        mixer=CodeMixer(iterations=2), mix_batch_size=32, latent_dim=D
    )
    same = np.ones((10, D), dtype=np.float32)
    strategy.aggregate_train(1, [train_reply(1, same), train_reply(2, same.copy())])
    assert set(strategy.state.targets) == {1, 2}
    for mixed, barycenter in strategy.state.targets.values():
        assert np.allclose(mixed, 1.0) and np.allclose(barycenter, 1.0)


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [
        (lambda c: c * 1000.0, "scale outlier"),
        (lambda c: np.ones_like(c), "scale outlier"),
        (lambda c: c + 500.0, "position outlier"),
    ],
)
def test_scaled_constant_or_shifted_agent_is_screened_out(hostile, reason) -> None:
    strategy = OTMStrategy(
        mixer=CodeMixer(iterations=1), mix_batch_size=32, latent_dim=D
    )
    uploads = clouds([20, 20, 20, 20], seed=3)
    uploads[2] = hostile(uploads[2]).astype(np.float32)
    strategy.aggregate_train(1, [train_reply(n, c) for n, c in enumerate(uploads)])
    assert [(r[1], reason in r[2]) for r in strategy.state.rejected] == [(2, True)]
    assert set(strategy.state.targets) == {0, 1, 3}
    for mixed, _ in strategy.state.targets.values():
        assert np.abs(mixed).max() < 10.0  # the others' targets stay on their scale


def test_fast_solver_is_selectable() -> None:
    strategy = OTMStrategy(
        mixer=CodeMixer(solver="fast", iterations=2), mix_batch_size=32, latent_dim=D
    )
    uploads = clouds([20, 24, 28])
    strategy.aggregate_train(1, [train_reply(n, c) for n, c in enumerate(uploads)])
    assert set(strategy.state.targets) == {0, 1, 2}
    for node, (mixed, _) in strategy.state.targets.items():
        assert mixed.shape == uploads[node].shape and np.isfinite(mixed).all()


def test_from_run_config() -> None:
    from otm_flower.config import RunConfig

    config = RunConfig(min_agents=4, seed=2, mix_batch_size=64, mix_frame="own")
    strategy = OTMStrategy.from_run_config(config, num_agents=3)
    assert strategy.min_available_nodes == strategy.min_agents == 3
    assert strategy.mixer == CodeMixer.from_run_config(config)
    assert strategy.seed == 2 and strategy.mix_batch_size == 64
    assert strategy.checkpoint_dir is None and strategy.state.latent_dim == 10
    assert OTMStrategy(seed=2).mixer == CodeMixer(seed=2)


@pytest.mark.parametrize("label_cost", [False, True])
def test_auto_code_width_is_learned_from_the_uploads(label_cost: bool) -> None:
    """``latent-dim = 0`` (auto): the server expects no width of its own; the
    first round's width holds for later rounds, another width is refused."""
    from otm_flower.config import parse_run_config

    keys = {"task": "classification", "label-cost-weight": 1.0} if label_cost else {}
    config = parse_run_config(keys)
    assert config.latent_dim == 0
    strategy = OTMStrategy.from_run_config(config, num_agents=3)
    assert strategy.state.latent_dim is None
    width = D + 3
    for server_round in (1, 2):
        codes = clouds([12, 14], seed=server_round)
        padded = [np.hstack([c, np.ones((len(c), 3), np.float32)]) for c in codes]
        narrow = clouds([10], seed=9)[0]
        replies = [train_reply(1, padded[0]), train_reply(2, padded[1])]
        strategy.aggregate_train(server_round, [*replies, train_reply(3, narrow)])
        assert set(strategy.state.targets) == {1, 2}, server_round
        assert [
            node for rnd, node, _ in strategy.state.rejected if rnd == server_round
        ] == [3]
    assert (
        strategy.state.code_width if label_cost else strategy.state.latent_dim
    ) == width
