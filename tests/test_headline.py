"""Headline tables per regime, baselines shared between sibling regimes, targets."""

from __future__ import annotations

from simulations.benchmark import gains_rows, group_results, summary_table
from simulations.benchmark.headline import headline_tables
from simulations.benchmark.scores import SHARED_FROM
from simulations.benchmark.tables import GAINS_COLUMNS
from simulations.benchmark.targets import SetScores, target_lines
from tests.test_benchmark import cells, make_result, section


def anchored_grid() -> list[dict]:
    """OTM in both clustering regimes; the baselines only in ``unaligned``."""
    return [
        make_result("otm", 0, [0.60, 0.70], regime="anchored"),  # 0.65
        make_result("otm", 1, [0.70, 0.80], regime="anchored"),  # 0.75
        make_result("otm", 0, [0.50, 0.50], regime="unaligned"),
        make_result("local", 0, [0.50, 0.50], regime="unaligned"),
        make_result("local", 1, [0.50, 0.50], regime="unaligned"),
        make_result("fedavg", 0, [0.55, 0.55], regime="unaligned"),
        make_result("raw", 0, [0.40, 0.40], regime="unaligned"),
        make_result("oracle", 0, [0.90, 0.90], regime="unaligned"),
    ]


def test_baselines_are_shared_with_the_sibling_regime_but_otm_is_not() -> None:
    groups = group_results(anchored_grid())
    anchored = groups[("handwritten", "anchored")]
    assert sorted(anchored) == ["fedavg", "local", "oracle", "otm", "raw"]
    assert all(r[SHARED_FROM] == "unaligned" for r in anchored["local"])
    assert all(r["regime"] == "anchored" for r in anchored["local"])
    assert all(SHARED_FROM not in r for r in anchored["otm"])
    unaligned = groups[("handwritten", "unaligned")]
    assert all(SHARED_FROM not in r for r in unaligned["local"])
    # Classification runs are never shared with a clustering regime.
    cls = make_result("otm", 0, [0.5], task="classification", regime="classification")
    groups = group_results([*anchored_grid(), cls])
    assert sorted(groups[("handwritten", "classification")]) == ["otm"]


def test_gains_and_details_name_the_local_runs_they_use() -> None:
    rows = {
        tuple(r[:2]): dict(zip(GAINS_COLUMNS, r, strict=True))
        for r in gains_rows(anchored_grid())
    }
    assert rows[("handwritten", "anchored")]["local runs"] == "unaligned (same runs)"
    assert rows[("handwritten", "unaligned")]["local runs"] == "unaligned (own)"
    assert rows[("handwritten", "anchored")]["otm - local"] == "+0.200"
    detail = section(summary_table(anchored_grid()), "### handwritten / anchored")
    assert [cells(r)[0] for r in detail][:3] == [
        "otm",
        "fedavg (unaligned runs)",
        "local (unaligned runs)",
    ]


def test_headline_row_in_percent_with_gains_weakest_and_gap() -> None:
    text = headline_tables(anchored_grid())
    lines = text.splitlines()
    start = lines.index(
        "### Regime `anchored` (clustering): percent, mean ± std over seeds"
    )
    header = cells(lines[start + 2])
    row = dict(zip(header, cells(lines[start + 4]), strict=True))
    assert row["data set"] == "handwritten"
    assert row["seeds: otm / local"] == "2 / 2"
    assert row["otm ACC"] == "70.0 ± 7.1"
    assert row["otm purity"] == "75.0 ± 7.1"  # ACC + 0.05 in make_result
    assert row["local ACC"] == "50.0 ± 0.0"
    assert row["raw ACC"] == "40.0"
    assert row["otm − local"] == "+20.0"
    assert row["otm − fedavg"] == "+15.0"
    assert row["otm − best of both"] == "+15.0"
    assert row["weakest party: otm / local"] == "65.0 / 50.0"
    assert row["gap to oracle closed"] == "50%"  # 0.20 / 0.40
    assert (
        "Baselines: `fedavg`, `local`, `oracle`, `raw`: the runs of regime unaligned"
        in text
    )


def test_targets_hold_and_fail_with_the_figures() -> None:
    good = SetScores(otm=0.80, local=0.70, fedavg=0.72, raw=0.60, oracle=0.90)
    worse = SetScores(otm=0.69, local=0.70, fedavg=0.60, raw=0.75, oracle=0.80)
    sets = {f"s{i}": good for i in range(5)} | {"bad": worse}
    lines = target_lines("anchored", sets)
    assert lines[0].startswith(
        "never worse (otm ≥ local − 0.5 points): **fails** (met on 5 of 6 sets)"
    )
    assert "bad (-1.0)" in lines[0]
    assert "**holds** (5 of 6" in lines[1]  # +8 over the best on five sets
    # gap closed: 0.5 on five sets, -0.1 on one -> mean 0.40
    assert "**holds** (40.0% over the 6 sets" in lines[2]
    # summed: (5 * 0.10 - 0.01) / (5 * 0.20 + 0.10)
    assert f"summed gains over summed gaps {0.49 / 1.1:.1%}" in lines[2]
    assert "local ≥ raw: **fails**" in lines[3] and "bad (-5.0)" in lines[3]
    four = {f"s{i}": good for i in range(4)}
    assert "**fails** (4 of 4" in target_lines("anchored", four)[1]
    cls = target_lines("classification", {"a": SetScores(otm=0.5, local=0.49)})
    assert cls[0].startswith("never worse") and "**holds**" in cls[0]
    assert "not measured" not in cls[0]
    assert "**fails** (0 of 1" in cls[1]  # no fedavg: not counted as a win
    missing = target_lines("unaligned", {"a": SetScores(local=0.5)})
    assert "not measured on a" in missing[0] and "**fails**" in missing[0]


def test_readme_rows_per_set_and_regime_with_shared_baselines(tmp_path) -> None:
    from otm_flower.results import write_result
    from simulations.readme_results import readme_block

    for i, result in enumerate(anchored_grid()):
        write_result(result, tmp_path / "runs" / f"r{i}.json")
    block = readme_block([tmp_path])
    rows = {
        tuple(cells(line)[:2]): cells(line)
        for line in block.splitlines()
        if line.startswith("| handwritten")
    }
    anchored = rows[("handwritten", "anchored")]
    # otm, fedavg, local, raw, oracle, purity, gains, agreement
    assert anchored[3:8] == ["70.0 ± 7.1", "55.0", "50.0 ± 0.0", "40.0", "90.0"]
    assert anchored[8:11] == ["75.0 ± 7.1", "+20.0", "+15.0"]
    assert rows[("handwritten", "unaligned")][9] == "+0.0"
    words = " ".join(block.split())
    assert "baselines of the `anchored` rows are the `unaligned` runs" in words
