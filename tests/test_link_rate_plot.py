"""The gain-against-link-rate plot of bench folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from otm_flower.results import write_result
from simulations.benchmark.plots import link_rate_gains, main, plot_link_rate
from tests.test_benchmark import PNG_MAGIC, make_result


def at_rate(result: dict, rate: float) -> dict:
    return {**result, "config": {**result["config"], "anchor-rate": rate}}


def grid() -> list[dict]:
    return [
        make_result("local", 0, [0.5, 0.5], regime="unaligned"),
        make_result("local", 1, [0.6, 0.6], regime="unaligned"),
        at_rate(make_result("otm", 0, [0.6, 0.6], regime="anchored"), 0.05),
        at_rate(make_result("otm", 1, [0.6, 0.6], regime="anchored"), 0.05),
        at_rate(make_result("otm", 0, [0.5, 0.5], regime="anchored"), 0.01),
        at_rate(make_result("otm", 2, [0.9, 0.9], regime="anchored"), 0.01),
    ]


def test_gains_pair_each_otm_run_with_local_of_its_seed() -> None:
    gains = link_rate_gains(grid())
    assert set(gains) == {"handwritten"}
    by_rate = gains["handwritten"]
    assert sorted(by_rate) == [0.01, 0.05]
    assert by_rate[0.05] == pytest.approx([0.1, 0.0])
    assert by_rate[0.01] == pytest.approx([0.0])  # seed 2 has no local run


def test_plot_written_from_bench_folders(tmp_path: Path) -> None:
    for i, result in enumerate(grid()):
        write_result(result, tmp_path / "bench" / "runs" / f"r{i}.json")
    out = tmp_path / "img" / "gain.png"
    assert main(["link-rate", str(tmp_path / "bench"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="no otm run with a local run"):
        plot_link_rate(grid()[2:], tmp_path / "x.png")
