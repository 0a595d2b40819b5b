"""The gain-against-link-rate plot of bench folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from otm_flower.results import write_result
from simulations.benchmark.grid import load_results
from simulations.benchmark.plots import (
    link_rate_gains,
    link_rate_table,
    main,
    plot_link_rate,
)
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


def test_folders_run_at_several_rates_make_one_curve(tmp_path: Path) -> None:
    """Bench folders run with ``--set anchor-rate=R`` hold runs of the same names
    (one folder per rate); their runs pool into one curve per data set."""
    folders = []
    for rate, score in ((0.01, 0.55), (0.2, 0.8)):
        folder = tmp_path / f"rate-{rate}"
        for seed in (0, 1):
            otm = at_rate(
                make_result("otm", seed, [score] * 2, regime="anchored"), rate
            )
            write_result(
                otm, folder / "runs" / f"handwritten__otm__anchored__seed{seed}.json"
            )
        folders.append(str(folder))
    local = tmp_path / "local"
    for seed in (0, 1):
        write_result(
            make_result("local", seed, [0.5, 0.5], regime="unaligned"),
            local / "runs" / f"handwritten__local__unaligned__seed{seed}.json",
        )
    results = [r for f in [*folders, str(local)] for r in load_results(f)]
    by_rate = link_rate_gains(results)["handwritten"]
    assert sorted(by_rate) == [0.01, 0.2]
    assert by_rate[0.01] == pytest.approx([0.05, 0.05])
    assert by_rate[0.2] == pytest.approx([0.3, 0.3])
    out = tmp_path / "curve.png"
    assert main(["link-rate", *folders, str(local), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_table_gives_local_and_each_rate_gain_in_points() -> None:
    lines = link_rate_table(grid()).splitlines()
    assert lines[0] == (
        "| data set | local ACC | otm − local at 1% | otm − local at 5% |"
    )
    # local 50 and 60 (seeds 0, 1); gains at 5%: +10 and 0; at 1%: 0 (seed 0 only)
    assert lines[2] == "| handwritten | 55.0 ± 7.1 | +0.0 (1) | +5.0 ± 7.1 (2) |"
