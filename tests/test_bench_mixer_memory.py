"""Tests for the memory measurement of simulations.bench_mixer (tiny clouds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations.bench_mixer import main, memory_markdown


def test_memory_flag_measures_each_solver_in_a_fresh_process(tmp_path: Path) -> None:
    n, k = 64, 3
    out = tmp_path / "memory.json"
    code = main(
        [
            "--memory",
            "--memory-n",
            str(n),
            "--memory-k",
            str(k),
            "--memory-solvers",
            "exact,fast",
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
    rows = data["memory"]
    assert [r["solver"] for r in rows] == ["exact", "fast"]
    for row in rows:
        assert row["n"] == n and row["K"] == k and row["n_iter"] == 1
        assert row["plans_bytes"] == k * n * n * 8
        # the mixing step itself never forms the dense plans on the host
        # (the exact solver's plans are numpy arrays from the start)
        assert row["plans_on_host"] is False
        assert row["peak_rss"] >= row["rss_before"] > 0
        assert row["peak_rss_increase"] == row["peak_rss"] - row["rss_before"]
        assert row["rss_ratio"] == pytest.approx(
            row["peak_rss_increase"] / row["plans_bytes"]
        )
        assert row["traced_ratio"] == pytest.approx(
            row["traced_peak"] / row["plans_bytes"]
        )
    # the exact solver's plans are numpy arrays, all alive at the end: traced;
    # the fast solver's stay in torch tensors, outside numpy's allocator
    assert rows[0]["traced_peak"] >= rows[0]["plans_bytes"]
    assert rows[1]["traced_peak"] < rows[1]["plans_bytes"]
    table = memory_markdown(rows)
    assert f"| exact | {n} | {k} | 1 |" in table
    assert f"| fast | {n} | {k} | 1 |" in table


def test_time_run_of_one_variant_without_pot_or_dense_objective(tmp_path: Path) -> None:
    out = tmp_path / "time.json"
    argv = ["--sizes", "48", "--agents", "3", "--dim", "4", "--n-iter", "2"]
    argv += ["--pot-max-n", "0", "--exact-max-n", "0", "--variants", "fast_free"]
    code = main(argv + ["--dense-objective-max-n", "32", "--out", str(out)])
    assert code == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert "t_pot" not in row and "t_fast_features" not in row
    assert row["t_fast_free"] > 0 and row["dense_objective"] is False
    assert row["plans_bytes"] == 3 * 48 * 48 * 8
    assert row["peak_rss"] > 0
    # the solver's own costs are the dense recomputation's (same couplings)
    dense = tmp_path / "dense.json"
    assert main(argv + ["--out", str(dense)]) == 0
    (row_dense,) = json.loads(dense.read_text())["rows"]
    assert row_dense["dense_objective"] is True
    assert row["obj_fast_free"] == pytest.approx(row_dense["obj_fast_free"], rel=1e-9)
    with pytest.raises(SystemExit, match="--variants"):
        main(argv + ["--variants", "fast,pot"])
