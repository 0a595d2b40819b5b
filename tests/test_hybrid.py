"""OTM hybrids ``otm-fedavg`` / ``otm-head`` and the opt-in label-aware cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    RecordDict,
)

from clients.app import build_client_app, load_global_parameters
from clients.node import agent_for_node, restore_trainer
from otm_flower import protocol as P
from otm_flower.agent import load_agents
from otm_flower.averaging import SHARED_RECORD, validate_shared, weighted_average
from otm_flower.code_mixer import CodeMixer
from otm_flower.config import ConfigError, RunConfig, parse_run_config
from otm_flower.data import save_npz
from otm_flower.models import WAE
from otm_flower.training import MixTargets, append_label_block, drop_label_block
from simulations.benchmark import BenchRun, applies
from simulations.cli import simulate_inprocess
from simulations.inprocess import InProcessGrid
from simulations.server_app import run_method
from strategies.otm import OTMStrategy
from tests.synthetic import cluster_and_noise, clustered_views_npz

from .test_strategy import StaticGrid, train_reply

N, K, D = 120, 3, 4
DIMS = (7, 5, 9)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clustered_views_npz(
        tmp_path_factory.mktemp("data") / "three.npz",
        n=N,
        k=K,
        dims=DIMS,
        spread=6.0,
        seed=1,
        name="three-views",
    )


def _config(path: Path, **kw: Any) -> RunConfig:
    values = {
        "dataset": str(path),
        "task": "classification",
        "num-server-rounds": 2,
        "local-epochs": 1,
        "hidden-dim": 16,
        "latent-dim": D,
        "batch-size": 32,
        "mix-batch-size": 40,
        "output-dir": "",
        "diagnostics-dir": "",
    }
    values.update(kw)
    return parse_run_config(values)


class Recorder:
    """A client mod that keeps every (incoming, reply) pair; ``corrupt`` may
    rewrite a reply (as a broken or hostile agent would send it)."""

    def __init__(self, corrupt: Any = None) -> None:
        self.pairs: list[tuple[Message, Message, int]] = []
        self.corrupt = corrupt

    def __call__(self, msg: Message, context: Context, call_next: Any) -> Message:
        reply = call_next(msg, context)
        pid = int(cast(int, context.node_config["partition-id"]))
        if self.corrupt is not None:
            reply = self.corrupt(msg, reply, pid)
        self.pairs.append((msg, reply, pid))
        return reply

    def of_type(self, kind: str) -> list[tuple[Message, Message, int]]:
        return [p for p in self.pairs if p[0].metadata.message_type == kind]


def _round(msg: Message) -> int:
    return int(cast(int, msg.content.config_records[P.CONFIG_RECORD][P.KEY_ROUND]))


def _shared(msg: Message) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in msg.content.array_records[SHARED_RECORD].items()}


def _weighted_mean(replies: list[Message]) -> dict[str, np.ndarray]:
    weights = np.array(
        [
            float(
                cast(
                    float,
                    r.content.metric_records[P.METRICS_RECORD][P.KEY_NUM_EXAMPLES],
                )
            )
            for r in replies
        ]
    )
    arrays = [_shared(r) for r in replies]
    return {
        key: np.tensordot(
            weights / weights.sum(), np.stack([a[key] for a in arrays]), 1
        )
        for key in arrays[0]
    }


def _expected_keys(method: str) -> set[str]:
    model = WAE(DIMS[0], D, 16, K)
    return set(model.head_state() if method == "otm-head" else model.shared_state())


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("method", ["otm-fedavg", "otm-head"])
def test_hybrid_round_trip_averages_exactly_what_agents_sent(
    data_path: Path, method: str
) -> None:
    config = _config(data_path, method=method)
    recorder = Recorder()
    result, grid = simulate_inprocess(config, mods=[recorder])

    assert result["method"] == method and result["rejected"] == []
    assert [h["round"] for h in result["history"]] == [1, 2]
    for agent in result["agents"]:
        assert agent["round"] == 2 and 0.0 <= agent["accuracy"] <= 1.0
    agents, _ = load_agents(config)
    n_train = {a.agent_id: a.n_train for a in agents}
    keys = _expected_keys(method)

    trains = recorder.of_type(MessageType.TRAIN)
    assert len(trains) == 6
    for msg, reply, pid in trains:
        # only codes, metrics and the shared arrays leave an agent
        assert set(reply.content.keys()) == {
            P.CODES_RECORD,
            P.METRICS_RECORD,
            SHARED_RECORD,
        }
        codes = reply.content.array_records[P.CODES_RECORD]
        assert set(codes.keys()) == {P.KEY_CODES}
        assert codes[P.KEY_CODES].numpy().shape == (40, D)
        shared = _shared(reply)
        assert set(shared) == keys
        for value in shared.values():  # no feature-sized or row-sized arrays
            assert not set(value.shape) & {*DIMS, n_train[pid], N}
        metrics = reply.content.metric_records[P.METRICS_RECORD]
        assert metrics[P.KEY_NUM_EXAMPLES] == n_train[pid]
        assert all(
            k.startswith("train-") or k in (P.KEY_NUM_EXAMPLES, P.KEY_AGENT)
            for k in metrics
        )
        # the server sends the average from round 2 on (own init in round 1)
        assert (SHARED_RECORD in msg.content) == (_round(msg) == 2)

    # Round 2's train messages carry the example-weighted mean of round 1's
    # replies, the same for every agent.
    round1 = [r for m, r, _ in trains if _round(m) == 1]
    sent = [_shared(m) for m, _, _ in trains if _round(m) == 2]
    expected = _weighted_mean(round1)
    assert len(sent) == 3
    for arrays in sent:
        assert set(arrays) == keys
        for key in keys:
            np.testing.assert_allclose(arrays[key], expected[key], rtol=1e-5, atol=1e-6)
    if method == "otm-head":  # the latent-side layers stay each agent's own
        latent = [_shared(r) for r in round1]
        assert all("encoder.3.weight" not in a for a in latent)

    # Evaluation after round 2 scores every agent with the mean of round 2's
    # replies: loaded, all agents' shared parameters are identical to it.
    evaluations = [(m, r) for m, r, _ in recorder.of_type(MessageType.EVALUATE)]
    assert all(not r.content.array_records for _, r in evaluations)  # metrics only
    last = {m.metadata.dst_node_id: m for m, _ in evaluations if _round(m) == 2}
    expected = _weighted_mean([r for m, r, _ in trains if _round(m) == 2])
    for node_id, context in grid.contexts.items():
        agent, n_classes = agent_for_node(config, dict(context.node_config))
        trainer = restore_trainer(config, agent, n_classes, context)
        assert load_global_parameters(last[node_id], trainer, config)
        state = (
            trainer.model.head_state()
            if method == "otm-head"
            else trainer.model.shared_state()
        )
        assert set(state) == keys
        for key in keys:
            np.testing.assert_allclose(
                state[key].numpy(), expected[key], rtol=1e-5, atol=1e-6
            )

    # bytes: codes and shared arrays up; targets and averages down
    size = sum(4 * v.size for v in expected.values())  # float32 on the wire
    assert result["bytes_up"] == 2 * 3 * (40 * D * 4 + size)
    # round 2: 3 x (mixed + barycenter + average); evaluations 1, 2: 3 x average
    assert result["bytes_down"] == 3 * (2 * 40 * D * 4 + size) + 2 * 3 * size


def test_nan_arrays_are_rejected_and_the_others_average_survives(
    data_path: Path,
) -> None:
    def poison(msg: Message, reply: Message, pid: int) -> Message:
        if (
            msg.metadata.message_type == MessageType.TRAIN
            and pid == 1
            and _round(msg) == 1
        ):
            record = reply.content.array_records[SHARED_RECORD]
            key = next(iter(record))
            bad = record[key].numpy().copy()
            bad.flat[0] = np.nan
            record[key] = Array(bad)
        return reply

    config = _config(data_path, method="otm-fedavg")
    recorder = Recorder(corrupt=poison)
    result, grid = simulate_inprocess(config, mods=[recorder])
    node_of = {
        int(cast(int, c.node_config["partition-id"])): n
        for n, c in grid.contexts.items()
    }
    assert len(result["rejected"]) == 1
    rnd, node, reason = result["rejected"][0]
    assert (rnd, node) == (1, node_of[1]) and "NaN/Inf" in reason
    trains = recorder.of_type(MessageType.TRAIN)
    good = [r for m, r, pid in trains if _round(m) == 1 and pid != 1]
    expected = _weighted_mean(good)
    for msg, _, pid in trains:
        if _round(msg) != 2:
            continue
        arrays = _shared(msg)
        for key, value in expected.items():
            np.testing.assert_allclose(arrays[key], value, rtol=1e-5, atol=1e-6)
        # the rejected reply's codes were not mixed either
        assert (P.CODES_RECORD in msg.content) == (pid != 1)
    assert all(np.isfinite(a).all() for a in expected.values())


def test_strategy_keeps_previous_average_and_rejects_mismatched_arrays() -> None:
    strategy = OTMStrategy(
        mixer=CodeMixer(iterations=1),
        mix_batch_size=32,
        latent_dim=D,
        share="head",
    )
    rng = np.random.default_rng(0)

    def reply(node: int, arrays: dict[str, np.ndarray]) -> Message:
        record = ArrayRecord({k: Array(v) for k, v in arrays.items()})
        codes = rng.normal(size=(12, D)).astype(np.float32)
        return cast(Message, train_reply(node, codes, **{SHARED_RECORD: record}))

    head = {
        "head.weight": np.ones((K, D), np.float32),
        "head.bias": np.zeros(K, np.float32),
    }
    arrays, _ = strategy.aggregate_train(
        1,
        [
            reply(1, head),
            reply(2, {k: 3 * v + 1 for k, v in head.items()}),
            reply(3, {**head, "encoder.3.weight": np.ones((D, 16), np.float32)}),
            reply(  # first in agent order, but unlike the majority
                0,
                {
                    "head.weight": np.ones((K, D + 1), np.float32),
                    "head.bias": head["head.bias"],
                },
            ),
        ],
    )
    reasons = {node: why for _, node, why in strategy.state.rejected}
    assert set(reasons) == {0, 3}
    assert "task head only" in reasons[3] and "shape" in reasons[0]
    assert arrays is not None and strategy.state.shared is not None
    np.testing.assert_allclose(
        strategy.state.shared["head.weight"], 2.5
    )  # equal weights
    np.testing.assert_allclose(strategy.state.shared["head.bias"], 0.5)
    # a round without acceptable parameters keeps the previous average
    previous = dict(strategy.state.shared)
    strategy.aggregate_train(
        2, [reply(1, {k: np.full_like(v, np.inf) for k, v in head.items()})]
    )
    assert strategy.state.shared == previous
    messages = list(
        strategy.configure_train(3, ArrayRecord(), ConfigRecord(), StaticGrid([1, 2]))
    )
    for msg in messages:
        np.testing.assert_allclose(_shared(msg)["head.weight"], 2.5)
    # a reply without the shared record is malformed for a sharing run
    strategy.aggregate_train(
        3, [cast(Message, train_reply(5, np.ones((4, D), np.float32)))]
    )
    assert "no ArrayRecord 'shared'" in strategy.state.rejected[-1][2]


def test_averaging_helpers() -> None:
    a = {"x": np.array([1.0, 2.0], np.float32)}
    b = {"x": np.array([3.0, 6.0], np.float32)}
    mean = weighted_average([a, b], [1, 3])
    np.testing.assert_allclose(mean["x"], [2.5, 5.0])
    assert mean["x"].dtype == np.float32
    with pytest.raises(ValueError, match="weight"):
        weighted_average([a, b], [0, 0])
    with pytest.raises(P.ProtocolError, match="NaN/Inf"):
        validate_shared({"x": np.array([np.nan])}, scope="all")
    with pytest.raises(P.ProtocolError, match="floating"):
        validate_shared({"x": np.array([1])}, scope="all")
    with pytest.raises(P.ProtocolError, match="missing"):
        validate_shared(a, scope="all", reference={"x": a["x"], "y": a["x"]})


def test_hybrid_resume_equals_uninterrupted_run(
    data_path: Path, tmp_path: Path
) -> None:
    def run(config: RunConfig, node_seed: int) -> dict[str, Any]:
        grid = InProcessGrid(
            build_client_app(config), 3, config.to_dict(), seed=node_seed
        )
        return run_method(grid, config)

    base = {"method": "otm-fedavg", "num-server-rounds": 3}
    full = run(_config(data_path, **base), node_seed=1)
    folder = str(tmp_path / "ckpt")
    run(
        _config(
            data_path, **{**base, "num-server-rounds": 2, "checkpoint-dir": folder}
        ),
        2,
    )
    resumed = run(
        _config(data_path, **{**base, "checkpoint-dir": folder, "resume": True}), 3
    )
    assert full["agents"] == resumed["agents"]
    assert full["bytes_up"] == resumed["bytes_up"]
    assert full["bytes_down"] == resumed["bytes_down"]


# ------------------------------------------------------------------ config, bench
def test_config_of_the_new_options() -> None:
    assert RunConfig(method="otm-fedavg").shared_parameters == "all"
    assert (
        RunConfig(method="otm-head", task="classification").shared_parameters == "head"
    )
    assert RunConfig().shared_parameters == "none"
    assert RunConfig(method="otm-fedavg").variant == "fgw"
    with pytest.raises(ConfigError, match="otm-head"):
        parse_run_config({"method": "otm-head", "task": "clustering"})
    with pytest.raises(ConfigError, match="label-cost-weight"):
        parse_run_config({"label-cost-weight": 1.0})  # clustering
    with pytest.raises(ConfigError, match="label-cost-weight"):
        parse_run_config({"label-cost-weight": -1.0, "task": "classification"})
    config = parse_run_config({"label-cost-weight": "2", "task": "classification"})
    assert config.label_cost and config.label_cost_weight == 2.0
    assert not RunConfig(
        task="classification", method="fedavg", label_cost_weight=2
    ).label_cost


def test_bench_accepts_the_hybrids_and_skips_head_without_labels() -> None:
    assert applies(BenchRun("d", "otm-head", "classification", 0))
    assert not applies(BenchRun("d", "otm-head", "unaligned", 0))
    assert applies(BenchRun("d", "otm-fedavg", "unaligned", 0))
    from simulations.bench import DEFAULT_METHODS, run_config_for

    assert "otm-fedavg" not in DEFAULT_METHODS and "otm" in DEFAULT_METHODS
    config = run_config_for(BenchRun("d", "otm-head", "classification", 0), 2, {}, {})
    assert config.method == "otm-head" and config.shared_parameters == "head"


# ------------------------------------------------------------------ label cost
def test_label_block_helpers() -> None:
    codes = np.zeros((3, 2), np.float32)
    out = append_label_block(codes, np.array([2, 0, 1]), 3, 5.0)
    np.testing.assert_array_equal(out[:, 2:], 5.0 * np.eye(3)[[2, 0, 1]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        append_label_block(codes, np.array([3, 0, 1]), 3, 1.0)
    targets = MixTargets(np.arange(3), np.ones((3, 5)), np.ones((3, 5)))
    cut = drop_label_block(targets, 2, 3)
    assert cut.mixed.shape == (3, 2) and cut.barycenter is not None
    assert cut.barycenter.shape == (3, 2)
    with pytest.raises(P.ProtocolError, match="5 columns"):
        drop_label_block(MixTargets(np.arange(3), np.ones((3, 2))), 2, 3)


def test_label_cost_uploads_one_hot_block_and_cuts_targets(data_path: Path) -> None:
    weight = 2.5
    config = _config(data_path, **{"label-cost-weight": weight})
    recorder = Recorder()
    result, grid = simulate_inprocess(config, mods=[recorder])
    assert result["rejected"] == []
    agents, _ = load_agents(config)
    trains = recorder.of_type(MessageType.TRAIN)
    for msg, reply, _ in trains:
        codes = reply.content.array_records[P.CODES_RECORD][P.KEY_CODES].numpy()
        assert codes.shape == (40, D + K)
        block = codes[:, D:]
        assert set(np.unique(block)) == {0.0, weight}
        assert (block == weight).sum(axis=1).tolist() == [1] * 40
        if _round(msg) == 2:  # the server mixed the extended codes unchanged
            mixed = msg.content.array_records[P.CODES_RECORD][P.KEY_MIXED].numpy()
            assert mixed.shape == (40, D + K)
    # the block is weight * onehot of the uploaded rows' labels (last upload)
    for context in grid.contexts.values():
        pid = int(cast(int, context.node_config["partition-id"]))
        rows = np.asarray(context.state.config_records["otm-upload"]["rows"])
        last = [r for m, r, p in trains if p == pid and _round(m) == 2][0]
        codes = last.content.array_records[P.CODES_RECORD][P.KEY_CODES].numpy()
        np.testing.assert_array_equal(
            codes[:, D:],
            weight * np.eye(K, dtype=np.float32)[agents[pid].y_train[rows]],
        )


def test_strategy_rejects_codes_of_another_width_under_label_cost() -> None:
    strategy = OTMStrategy(
        mixer=CodeMixer(iterations=1),
        mix_batch_size=32,
        latent_dim=D,
        label_cost=True,
    )
    rng = np.random.default_rng(1)
    wide = [rng.normal(size=(12, D + K)).astype(np.float32) for _ in range(2)]
    replies = [
        train_reply(1, wide[0]),
        train_reply(2, rng.normal(size=(12, D + 1)).astype(np.float32)),
        train_reply(3, wide[1]),
        train_reply(4, rng.normal(size=(12, D)).astype(np.float32)),
    ]
    strategy.aggregate_train(1, replies)
    reasons = {node: why for _, node, why in strategy.state.rejected}
    assert set(reasons) == {2, 4}
    assert f"the other agents' {D + K}" in reasons[2] and "latent-dim" in reasons[4]
    assert strategy.state.code_width == D + K
    messages = strategy.configure_train(
        2, ArrayRecord(), ConfigRecord(), StaticGrid([1, 3])
    )
    for msg in messages:
        assert msg.content.array_records[P.CODES_RECORD][P.KEY_MIXED].numpy().shape == (
            12,
            D + K,
        )


def test_client_rejects_targets_without_the_label_block(data_path: Path) -> None:
    config = _config(data_path, **{"label-cost-weight": 1.0})
    app = build_client_app(config)
    context = Context(
        run_id=1,
        node_id=5,
        node_config={"partition-id": 0, "num-partitions": 3},
        state=RecordDict(),
        run_config=config.to_dict(),
    )
    context.state.config_records["otm-upload"] = ConfigRecord({"rows": list(range(10))})
    from .conftest import incoming

    content = RecordDict(
        {
            P.CONFIG_RECORD: ConfigRecord(
                {P.KEY_ROUND: 2, P.KEY_VERSION: P.PROTOCOL_VERSION}
            ),
            P.CODES_RECORD: ArrayRecord(
                {
                    P.KEY_MIXED: Array(np.zeros((10, D), np.float32)),
                    P.KEY_BARYCENTER: Array(np.zeros((10, D), np.float32)),
                }
            ),
        }
    )
    with pytest.raises(P.ProtocolError, match="latent-dim \\+ classes"):
        app(incoming(content, MessageType.TRAIN, src=0, dst=5), context)


def test_large_label_cost_weight_makes_couplings_agree_on_classes(
    tmp_path: Path,
) -> None:
    """Agent 1's view is label-free noise: without labels the couplings pair
    samples at chance (1/3); a large label block dominates the FGW cost (both
    the feature and the structure term), so same-class pairs win. (Not all: the
    uploaded batches' class counts differ, and the barycenter's uniform marginals
    force the surplus across classes; measured 0.94 here.)"""
    path = save_npz(cluster_and_noise(150, K), tmp_path / "noise.npz")
    agreement = {}
    for weight in (0.0, 20.0):
        config = _config(
            path,
            **{
                "label-cost-weight": weight,
                "diagnostics-dir": str(tmp_path / f"diag-{weight}"),
                "mix-batch-size": 60,
            },
        )
        result, _ = simulate_inprocess(config)
        history = [h["mean"] for h in result["coupling_agreement_history"]]
        assert len(history) == 2
        agreement[weight] = float(np.mean(history))
    assert agreement[0.0] < 0.55
    assert agreement[20.0] > 0.85
    assert agreement[20.0] > agreement[0.0] + 0.3


def test_bench_main_skips_otm_head_in_clustering_regimes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulations.bench import main

    out = str(tmp_path / "bench")
    assert main(["--methods", "otm-head", "--regimes", "unaligned", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "skipping otm-head in regime unaligned" in err
    assert "no method of --methods applies" in err


def test_otm_fedavg_also_runs_for_clustering(data_path: Path) -> None:
    config = _config(data_path, method="otm-fedavg", task="clustering")
    config = parse_run_config({**config.to_dict(), "num-server-rounds": 1})
    result, _ = simulate_inprocess(config)
    shared = sum(4 * v.numel() for v in WAE(DIMS[0], D, 16).shared_state().values())
    assert result["rejected"] == [] and result["mean"]["accuracy"] is None
    assert result["bytes_up"] == 3 * (40 * D * 4 + shared)
