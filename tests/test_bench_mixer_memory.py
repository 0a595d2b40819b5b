"""Tests for the memory measurement of simulations.bench_mixer (tiny clouds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations.bench_mixer import main, measure_memory, memory_markdown


@pytest.mark.parametrize("solver", ["exact", "fast"])
def test_memory_run_in_a_fresh_process_reports_plans_and_peaks(solver: str) -> None:
    n, k = 64, 3
    row = measure_memory(
        solver,
        n=n,
        k=k,
        dim=4,
        data="gaussian",
        alpha=0.5,
        n_iter=1,
        seed=0,
        threads=1,
        device="cpu",
    )
    assert row["solver"] == solver and row["n"] == n and row["K"] == k
    assert row["plans_bytes"] == k * n * n * 8
    assert row["returned_plans_bytes"] == row["plans_bytes"]  # float64 plans
    assert row["peak_rss"] >= row["rss_before"] > 0
    assert row["peak_rss_increase"] == row["peak_rss"] - row["rss_before"]
    assert row["rss_ratio"] == pytest.approx(
        row["peak_rss_increase"] / row["plans_bytes"]
    )
    if solver == "exact":  # numpy plans, all alive at the end: traced
        assert row["traced_peak"] >= row["plans_bytes"]
    assert row["traced_ratio"] == pytest.approx(row["traced_peak"] / row["plans_bytes"])


def test_memory_flag_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    code = main(
        [
            "--memory",
            "--memory-n",
            "32",
            "--memory-k",
            "2",
            "--memory-solvers",
            "exact",
            "--memory-n-iter",
            "1",
            "--dim",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert [r["solver"] for r in data["memory"]] == ["exact"]
    assert data["memory"][0]["plans_bytes"] == 2 * 32 * 32 * 8
    table = memory_markdown(data["memory"])
    assert "| exact | 32 | 2 | 1 |" in table
