"""Tests for research.stream_noise on a tiny synthetic data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otm_flower.baselines import run_local
from otm_flower.config import RunConfig
from research.stream_noise import main, perturbed_local_score
from tests.synthetic import clustered_views_npz


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clustered_views_npz(
        tmp_path_factory.mktemp("noise") / "small.npz",
        n=120,
        k=3,
        dims=(5, 4),
        spread=1.0,
        seed=3,
        name="small",
    )


def test_no_extra_draws_is_the_local_method(data: Path) -> None:
    config = RunConfig(dataset=str(data), method="local", num_server_rounds=2)
    local = run_local(config)
    assert perturbed_local_score(config, 0) == pytest.approx(local["mean"]["acc"])


def test_extra_draws_change_the_stream(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "noise.json"
    argv = ["--dataset", str(data), "--seeds", "2", "--rounds", "2"]
    assert main([*argv, "--draws", "0,5", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["extra_draws"] for r in rows] == [0, 5]
    assert all(0.0 <= s <= 1.0 for r in rows for s in r["scores"])
    with pytest.raises(SystemExit):
        main([*argv, "--draws", "-1"])
    with pytest.raises(SystemExit):
        main([*argv, "--draws", "x"])
