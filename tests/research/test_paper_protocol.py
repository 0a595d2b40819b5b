"""research.paper_protocol: held-out and transductive scores of one trained run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research.paper_protocol import PAPER_PURITY, main, paper_table
from simulations.benchmark.grid import load_results
from tests.synthetic import clustered_views_npz


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clustered_views_npz(
        tmp_path_factory.mktemp("paper") / "orl.npz",
        n=120,
        k=3,
        dims=(5, 4),
        spread=1.0,
        seed=3,
        name="orl",
    )


def test_held_out_and_transductive_scores_of_the_same_model(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "paper"
    argv = ["--out", str(out), "--datasets", str(data), "--seeds", "1"]
    assert main([*argv, "--rounds", "2", "--hyperparameters", ""]) == 0
    (held,) = load_results(out)
    assert held["method"] == "otm" and held["regime"] == "unaligned"
    (path,) = (out / "transductive").glob("*.json")
    doc = json.loads(path.read_text())
    assert len(doc["agents"]) == len(held["agents"]) == 2
    for agent, own in zip(doc["agents"], held["agents"], strict=True):
        # the test rows of the transductive codes give the run's own scores
        for key in ("acc", "nmi", "purity"):
            assert agent["test_rows"][key] == pytest.approx(own[key])
        assert agent["otm"]["purity"] >= agent["otm"]["acc"]
    # a second call finds the cell done and trains nothing
    mtime = path.stat().st_mtime_ns
    assert main([*argv, "--rounds", "2", "--hyperparameters", ""]) == 0
    assert path.stat().st_mtime_ns == mtime


def test_table_lists_the_paper_purity_and_empty_cells(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    table = paper_table([("validated", tmp_path)])
    rows = [line for line in table.splitlines() if line.startswith("| orl")]
    assert rows and rows[0].endswith(f"| {PAPER_PURITY['orl']:.4f} |")
    assert "| validated | 0 | - |" in rows[0]
