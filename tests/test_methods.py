"""Every federated method end to end (in-process grid), and what FedAvg exchanges."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, Message

from otm_flower.config import RunConfig, parse_run_config
from otm_flower.mixer import mix_and_pull_back, project, pull_back
from otm_flower.models import WAE
from simulations.cli import simulate, simulate_inprocess
from tests.synthetic import clustered_views_npz

N, K = 120, 3


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clustered_views_npz(
        tmp_path_factory.mktemp("data") / "three.npz",
        n=N,
        k=K,
        dims=(7, 5, 9),
        spread=6.0,
        seed=1,
        name="three-views",
    )


def _config(path: Path, **kw: Any) -> RunConfig:
    values = {
        "dataset": str(path),
        "num-server-rounds": 2,
        "local-epochs": 1,
        "hidden-dim": 16,
        "latent-dim": 4,
        "batch-size": 32,
        "mix-batch-size": 40,
        "output-dir": "",
        "diagnostics-dir": "",
    }
    values.update(kw)
    return parse_run_config(values)


def test_methods_fix_their_barycenter_variant() -> None:
    assert RunConfig(method="otm-w").variant == "w"
    assert RunConfig(method="otm-gw").variant == "gw"
    assert RunConfig(method="otm", barycenter_variant="gw").variant == "gw"
    assert RunConfig(method="otm-nomix").variant == "fgw"


@pytest.mark.parametrize("method", ["otm", "otm-w", "otm-gw", "otm-nomix", "fedavg"])
@pytest.mark.parametrize("task", ["clustering", "classification"])
def test_federated_method_round_trip(data_path: Path, method: str, task: str) -> None:
    config = _config(data_path, method=method, task=task)
    result, _ = simulate_inprocess(config)
    assert result["method"] == method
    assert [a["id"] for a in result["agents"]] == [0, 1, 2]
    assert [h["round"] for h in result["history"]] == [1, 2]
    for agent in result["agents"]:
        assert 0.0 <= agent["acc"] <= 1.0 and agent["round"] == 2
        assert (agent["accuracy"] is not None) == (task == "classification")
    n_train = result["agents"][0]["n_train"]
    if method == "fedavg":
        shared = sum(
            v.numel() * 4
            for v in WAE(7, 4, 16, K if task == "classification" else 0)
            .shared_state()
            .values()
        )
        assert result["bytes_up"] == 2 * 3 * shared  # rounds x agents x layers
    else:  # one upload of float32 codes per agent and round
        assert result["bytes_up"] == 2 * 3 * min(40, n_train) * 4 * 4
        assert len(result["mix_seconds"]) == 2


class Recorder:
    """A Flower client mod that keeps every (incoming, reply) message pair."""

    def __init__(self) -> None:
        self.pairs: list[tuple[Message, Message]] = []

    def __call__(self, msg: Message, context: Context, call_next: Any) -> Message:
        reply = call_next(msg, context)
        self.pairs.append((msg, reply))
        return reply


def test_fedavg_exchanges_only_shared_layers_and_averages_them(
    data_path: Path,
) -> None:
    config = _config(data_path, method="fedavg", **{"num-server-rounds": 3})
    recorder = Recorder()
    simulate_inprocess(config, mods=[recorder])
    trains = [(m, r) for m, r in recorder.pairs if m.metadata.message_type == "train"]
    shared_keys = set(WAE(7, 4, 16).shared_state())
    for _, reply in trains:
        (arrays,) = reply.content.array_records.values()
        assert set(arrays) == shared_keys  # no modality-specific layer, no data
        for array in arrays.values():
            assert (
                7 not in array.shape and 5 not in array.shape and 9 not in array.shape
            )
    for msg, reply in recorder.pairs:
        if msg.metadata.message_type == "evaluate":
            assert not reply.content.array_records  # metrics only
    by_round: dict[int, list[tuple[Message, Message]]] = {}
    for msg, reply in trains:
        server_round = int(msg.content["config"]["server-round"])  # type: ignore[index,arg-type]
        by_round.setdefault(server_round, []).append((msg, reply))
    # Round 2's global layers are the example-weighted mean of round 1's replies.
    replies = [r for _, r in by_round[1]]
    weights = np.array(
        [float(r.content["metrics"]["num-examples"]) for r in replies]  # type: ignore[index]
    )
    sent = by_round[2][0][0].content["arrays"]
    for key in shared_keys:
        stacked = np.stack(
            [r.content["arrays"][key].numpy() for r in replies]  # type: ignore[index]
        )
        expected = np.tensordot(weights / weights.sum(), stacked, axes=1)
        np.testing.assert_allclose(sent[key].numpy(), expected, rtol=1e-5, atol=1e-6)  # type: ignore[index]


def test_nomix_sends_each_agent_its_own_projection() -> None:
    rng = np.random.default_rng(0)
    codes = [rng.normal(size=(20, 3)) + k for k in range(3)]
    result, mixed, _ = mix_and_pull_back(codes, own_only=True, seed=0)
    own = project(result, codes)
    for k in range(3):
        np.testing.assert_allclose(mixed[k], pull_back(result, own[k])[k])
    _, dirichlet, _ = mix_and_pull_back(codes, rng=1, seed=0)
    assert not np.allclose(dirichlet[0], mixed[0])


def test_fedavg_runs_are_reproducible(data_path: Path) -> None:
    """Flower samples FedAvg's nodes with the global ``random``, which orders the
    average's sum: seeded per run, two runs of one config end with bit-identical
    models whatever the caller's random state, and that state is restored."""
    from clients.node import agent_for_node, restore_trainer

    config = _config(data_path, method="fedavg", **{"num-server-rounds": 3})
    models, restored = [], []
    for outer_seed in (1, 2):
        random.seed(outer_seed)
        _, grid = simulate_inprocess(config)
        restored.append(random.random() == random.Random(outer_seed).random())
        weights = {}
        for node_id, context in grid.contexts.items():
            agent, n_classes = agent_for_node(config, dict(context.node_config))
            trainer = restore_trainer(config, agent, n_classes, context)
            for name, tensor in trainer.model.state_dict().items():
                weights[(node_id, name)] = tensor.numpy().copy()
        models.append(weights)
    assert models[0].keys() == models[1].keys()
    for key, value in models[0].items():
        np.testing.assert_array_equal(value, models[1][key], err_msg=str(key))
    assert restored == [True, True]


def test_otm_with_its_terms_off_trains_exactly_as_local(data_path: Path) -> None:
    """Upload rows and mix minibatches come from a separate exchange stream, so an
    OTM agent whose cross-agent terms weigh 0 follows `local` step for step (an
    OTM-versus-local gap then measures the terms, not a reshuffled stream)."""
    from clients.node import agent_for_node, restore_trainer
    from otm_flower.agent import build_trainer, load_agents

    rounds = {"num-server-rounds": 3}
    local_config = _config(data_path, method="local", **rounds)
    agents, n_classes = load_agents(local_config)
    alone = {}
    for agent in agents:
        trainer = build_trainer(local_config, agent, n_classes)
        for _ in range(3):
            trainer.train(local_config.local_epochs)
        alone[agent.agent_id] = trainer.encode()
    gaps = {}
    for mix in (0.0, 1.0):
        config = _config(
            data_path,
            **rounds,
            **{"weight-mix": mix, "weight-reg": 0.0, "mix-frame": "own"},
        )
        _, grid = simulate_inprocess(config)
        for context in grid.contexts.values():
            agent, n = agent_for_node(config, dict(context.node_config))
            codes = restore_trainer(config, agent, n, context).encode()
            gaps[(mix, agent.agent_id)] = float(
                np.abs(codes - alone[agent.agent_id]).max()
            )
    assert all(gaps[(0.0, a)] == 0.0 for a in alone)
    assert all(gaps[(1.0, a)] > 0.0 for a in alone)  # the mix term does act


@pytest.mark.xdist_group("ray")  # one Ray instance at a time (see conftest)
def test_inprocess_runtime_matches_flowers_simulation_engine(
    data_path: Path, tmp_path: Path
) -> None:
    """The in-process grid drives the same apps as Ray: identical metrics."""
    config = _config(data_path, out=str(tmp_path / "ray.json"))
    on_ray = simulate(config, runtime="ray", num_cpus=2)
    in_process = simulate(
        parse_run_config({**config.to_dict(), "out": str(tmp_path / "ip.json")}),
        runtime="inprocess",
    )
    for a, b in zip(on_ray["agents"], in_process["agents"], strict=True):
        for key in ("acc", "nmi", "ari"):
            assert a[key] == pytest.approx(b[key], abs=1e-6)
    assert on_ray["bytes_up"] == in_process["bytes_up"]
