"""Run-config knobs of experiments: partial sampling, validation split, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from otm_flower.agent import load_agents
from otm_flower.config import ConfigError, RunConfig, parse_run_config
from simulations.inprocess import InProcessGrid
from strategies.otm import OTMStrategy
from tests.synthetic import clustered_views_npz

N, K = 120, 3


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clustered_views_npz(
        tmp_path_factory.mktemp("data") / "three.npz",
        n=N,
        k=K,
        dims=(6, 5, 8),
        spread=6.0,
        seed=3,
        name="three",
    )


def _config(path: Path, **kw: Any) -> RunConfig:
    values = {
        "dataset": str(path), "num-server-rounds": 4, "local-epochs": 1,
        "hidden-dim": 16, "latent-dim": 4, "mix-batch-size": 40,
        "output-dir": "", "diagnostics-dir": "",
    }  # fmt: skip
    values.update(kw)
    return parse_run_config(values)


def test_fraction_train_samples_seeded_subsets(data_path: Path) -> None:
    from clients.app import build_client_app

    config = _config(data_path)
    grid = InProcessGrid(build_client_app(config), 6, config.to_dict())
    strategy = OTMStrategy(fraction_train=0.5, min_available_nodes=2, seed=4)
    rounds = [strategy._sample(grid, 0.5, r) for r in (1, 2, 3)]
    assert all(len(r) == 3 and set(r) <= set(grid.get_node_ids()) for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # a fresh draw each round
    again = OTMStrategy(fraction_train=0.5, min_available_nodes=2, seed=4)
    assert again._sample(grid, 0.5, 2) == rounds[1]
    assert strategy._sample(grid, 1.0, 1) == sorted(grid.get_node_ids())


def test_validation_fraction_replaces_test_rows_with_held_out_train_rows(
    data_path: Path,
) -> None:
    plain, _ = load_agents(_config(data_path))
    held, _ = load_agents(_config(data_path, **{"validation-fraction": 0.25}))
    for a, b in zip(plain, held, strict=True):
        assert b.n_train + b.n_test == a.n_train  # test rows are not used at all
        assert not set(b.test_ids) & set(a.test_ids)
        assert set(b.train_ids) | set(b.test_ids) == set(a.train_ids)
        assert not set(b.train_ids) & set(b.test_ids)
    from otm_flower.baselines import run_oracle

    config = _config(data_path, **{"validation-fraction": 0.25, "unaligned-rate": 1.0})
    result = run_oracle(config)  # aligned views stay aligned after the split
    assert result["agents"][0]["n_test"] == held[0].n_test


def _run_on_fresh_nodes(config: RunConfig, node_seed: int) -> dict[str, Any]:
    from clients.app import build_client_app
    from simulations.server_app import run_method

    grid = InProcessGrid(build_client_app(config), 3, config.to_dict(), seed=node_seed)
    return run_method(grid, config)


def test_resumed_run_equals_uninterrupted_run(data_path: Path, tmp_path: Path) -> None:
    base = {"num-server-rounds": 4, "diagnostics-dir": "", "dp-clip": 2.0,
            "dp-noise": 0.5}  # fmt: skip
    full = _run_on_fresh_nodes(_config(data_path, **base), node_seed=1)

    folder = str(tmp_path / "ckpt")
    first = _config(
        data_path, **{**base, "num-server-rounds": 2, "checkpoint-dir": folder}
    )
    _run_on_fresh_nodes(first, node_seed=2)  # "interrupted" after round 2
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.json")) == [
        "agent-0.json", "agent-1.json", "agent-2.json", "server.json",
    ]  # fmt: skip
    resumed_config = _config(
        data_path, **{**base, "checkpoint-dir": folder, "resume": True}
    )
    resumed = _run_on_fresh_nodes(resumed_config, node_seed=3)  # new node ids

    assert [h["round"] for h in resumed["history"]] == [1, 2, 3, 4]
    for a, b in zip(full["history"], resumed["history"], strict=True):
        for key in ("acc", "nmi", "ari"):
            assert a[key] == pytest.approx(b[key], abs=1e-9)
    assert full["agents"] == resumed["agents"]
    assert full["bytes_up"] == resumed["bytes_up"]
    assert full["privacy"]["epsilon_max"] == resumed["privacy"]["epsilon_max"]


def test_resume_without_checkpoint_names_the_folder(
    data_path: Path, tmp_path: Path
) -> None:
    from otm_flower.checkpoint import CheckpointError

    config = _config(
        data_path, **{"checkpoint-dir": str(tmp_path / "none"), "resume": True}
    )
    with pytest.raises(CheckpointError, match="none"):
        _run_on_fresh_nodes(config, node_seed=0)
    with pytest.raises(ConfigError, match="resume needs checkpoint-dir"):
        parse_run_config({"resume": "true"})
    with pytest.raises(ConfigError, match="'yes' as bool"):
        parse_run_config({"resume": "yes"})
