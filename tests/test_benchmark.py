"""Benchmark grid planning, resuming, summary tables and plots (no Flower runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otm_flower.results import build_result, write_result
from simulations.benchmark import (
    REGIMES,
    BenchRun,
    gains,
    load_results,
    pending,
    plan_grid,
    plot_embedding,
    plot_rounds,
    result_path,
    summary_table,
    weakest_score,
    write_summary,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_result(
    method: str,
    seed: int,
    scores: list[float],
    *,
    task: str = "clustering",
    regime: str | None = None,
    dataset: str = "handwritten",
    rounds: int = 3,
    agreement: float | None = None,
    wall_s: float = 2.0,
    nbytes: int = 500_000,
) -> dict[str, Any]:
    """A result whose agents score ``scores`` (ACC, and accuracy = ACC + 0.1).

    NMI, ARI and purity are ACC - 0.1, ACC - 0.2 and ACC + 0.05; the history
    rises linearly to the final scores over ``rounds`` rounds.
    """
    config = {
        "dataset": dataset,
        "method": method,
        "task": task,
        "seed": seed,
        "num-server-rounds": rounds,
    }
    metrics = {
        rnd: {
            i: {
                "modality": i,
                "n-train": 80,
                "n-test": 20,
                "acc": s * rnd / rounds,
                "nmi": s * rnd / rounds - 0.1,
                "ari": s * rnd / rounds - 0.2,
                "purity": s * rnd / rounds + 0.05,
                "accuracy": s * rnd / rounds + 0.1,
            }
            for i, s in enumerate(scores)
        }
        for rnd in range(1, rounds + 1)
    }
    extra: dict[str, Any] = {"coupling_agreement": agreement}
    if regime is not None:
        extra["regime"] = regime
    return build_result(
        config,
        metrics,
        wall_s=wall_s,
        bytes_up=nbytes,
        bytes_down=nbytes,
        extra=extra,
    )


def section(table: str, heading: str) -> list[str]:
    """The table rows of the section whose heading contains ``heading``."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if heading in line)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("###"):
            break
        if line.startswith("| ") and not line.startswith("| method"):
            rows.append(line)
    return rows


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip("|").split("|")]


def row_of(rows: list[str], method: str) -> list[str]:
    return next(cells(r) for r in rows if cells(r)[0] == method)


# ----------------------------------------------------------------------- summary


def test_summary_mean_std_over_seeds_and_weakest_agent() -> None:
    # Per-run agent means of ACC: 0.5, 0.6, 0.7 -> 0.600 ± 0.100 (ddof=1).
    # Weakest agents: 0.4, 0.5, 0.6 -> 0.500 ± 0.100.
    results = [
        make_result("otm", 0, [0.4, 0.6], agreement=0.8, wall_s=1.0),
        make_result("otm", 1, [0.5, 0.7], agreement=0.9, wall_s=2.0),
        make_result("otm", 2, [0.9, 0.6, 0.6], agreement=None, wall_s=3.0),
    ]
    rows = section(summary_table(results), "handwritten / unaligned (clustering)")
    (row,) = rows
    method, seeds, acc, nmi, ari, pur, accuracy, weakest, agree, wall, mb = cells(row)
    assert (method, seeds) == ("otm", "3")
    assert acc == "0.600 ± 0.100"
    assert nmi == "0.500 ± 0.100"
    assert ari == "0.400 ± 0.100"
    assert pur == "0.650 ± 0.100"
    assert accuracy == "-"  # clustering
    assert weakest == "0.500 ± 0.100"
    assert agree == "0.850 ± 0.071"  # the run without agreement is left out
    assert wall == "2.0"
    assert mb == "1.00"  # 2 * 500 kB per run


def test_weakest_agent_is_min_over_agents_and_uses_accuracy_for_classification() -> (
    None
):
    clus = make_result("otm", 0, [0.3, 0.9, 0.5])
    assert weakest_score(clus) == pytest.approx(0.3)
    cls = make_result("otm", 0, [0.3, 0.9, 0.5], task="classification")
    assert weakest_score(cls) == pytest.approx(0.4)  # accuracy = ACC + 0.1

    rows = section(summary_table([cls]), "handwritten / classification")
    method, seeds, acc, _, _, _, accuracy, weakest, agree, _, _ = row_of(rows, "otm")
    assert seeds == "1"
    assert acc == "0.567"  # one seed: no ± std
    assert accuracy == "0.667"
    assert weakest == "0.400"
    assert agree == "-"


def test_methods_in_fixed_order_then_alphabetical() -> None:
    methods = ["zeta", "oracle", "local", "alpha", "fedavg", "otm-gw", "otm", "raw"]
    results = [make_result(m, 0, [0.5, 0.5]) for m in methods]
    rows = section(summary_table(results), "### handwritten")
    assert [cells(r)[0] for r in rows] == [
        "otm",
        "otm-gw",
        "fedavg",
        "local",
        "raw",
        "oracle",
        "alpha",
        "zeta",
    ]


def test_sections_per_dataset_and_regime() -> None:
    results = [
        make_result("otm", 0, [0.5, 0.5], dataset="/data/Scene-15.mat"),
        make_result(
            "otm", 0, [0.5, 0.5], regime="classification", task="classification"
        ),
        make_result("otm", 0, [0.5, 0.5]),
    ]
    table = summary_table(results)
    headings = [line for line in table.splitlines() if line.startswith("###")]
    assert headings == [
        "### Regime `unaligned` (clustering): percent, mean ± std over seeds",
        "### Regime `classification` (classification): percent, mean ± std over seeds",
        "### handwritten / unaligned (clustering)",
        "### handwritten / classification (classification)",
        "### scene-15 / unaligned (clustering)",
    ]
    assert summary_table([]).strip() == "_No results._"


def test_gains_fraction_of_gap_and_missing_oracle() -> None:
    results = [
        make_result("otm", 0, [0.6, 0.8]),  # mean 0.7, weakest 0.6
        make_result("otm", 1, [0.6, 0.8]),
        make_result("local", 0, [0.4, 0.6]),  # mean 0.5, weakest 0.4
        make_result("fedavg", 0, [0.55, 0.65]),  # mean 0.6
        make_result("oracle", 0, [0.9, 0.9]),  # gap 0.4 -> closed 0.2 / 0.4
        make_result("otm", 0, [0.6, 0.8], dataset="coil"),
        make_result("local", 0, [0.4, 0.6], dataset="coil"),
    ]
    lines = gains(results).splitlines()
    header = cells(lines[0])
    rows = {
        cells(line)[0]: dict(zip(header, cells(line), strict=True))
        for line in lines[2:]
    }
    hw = rows["handwritten"]
    assert hw["score"] == "acc"
    assert hw["otm"] == "0.700"
    assert hw["otm - local"] == "+0.200"
    assert hw["otm - fedavg"] == "+0.100"
    assert hw["weakest: otm - local"] == "+0.200"
    assert hw["local-to-oracle gap closed"] == "50.0%"
    coil = rows["coil"]
    assert coil["otm - local"] == "+0.200"
    assert coil["otm - fedavg"] == "-"
    assert coil["local-to-oracle gap closed"] == "-"


def test_gains_no_positive_gap_and_classification_score() -> None:
    kw: dict[str, Any] = {"task": "classification", "regime": "classification"}
    results = [
        make_result("otm", 0, [0.6, 0.6], **kw),
        make_result("local", 0, [0.5, 0.5], **kw),
        make_result("oracle", 0, [0.5, 0.5], **kw),  # oracle == local: gap 0
    ]
    header, _, row = gains(results).splitlines()
    cols = dict(zip(cells(header), cells(row), strict=True))
    assert cols["score"] == "accuracy"
    assert cols["otm"] == "0.700"
    assert cols["local-to-oracle gap closed"] == "-"


# ----------------------------------------------------------------------- grid


def test_plan_grid_size_order_and_validation() -> None:
    runs = plan_grid(
        ["handwritten", "coil"], ["otm", "local", "raw"], list(REGIMES), [0, 1]
    )
    assert len(runs) == 2 * 3 * len(REGIMES) * 2
    assert len({r.name for r in runs}) == len(runs)
    assert runs[0] == BenchRun("handwritten", "otm", "unaligned", 0)
    assert len(plan_grid(["a", "a"], ["otm"], ["unaligned"], [0])) == 1
    with pytest.raises(ValueError, match="unknown regime.*'anchord'"):
        plan_grid(["a"], ["otm"], ["anchord"], [0])
    with pytest.raises(ValueError, match="methods must not be empty"):
        plan_grid(["a"], [], ["unaligned"], [0])
    with pytest.raises(ValueError, match="seeds must not be empty"):
        plan_grid(["a"], ["otm"], ["unaligned"], [])
    with pytest.raises(ValueError, match="not the string"):
        plan_grid("handwritten", ["otm"], ["unaligned"], [0])
    with pytest.raises(ValueError, match="seed must be an int"):
        plan_grid(["a"], ["otm"], ["unaligned"], ["0"])  # type: ignore[list-item]


def test_run_name_is_path_safe() -> None:
    run = BenchRun("/x/Scene-15.mat", "otm-gw", "classification", 3)
    assert run.name == "scene-15__otm-gw__classification__seed3"
    assert BenchRun("handwritten", "otm", "unaligned", 0).name == (
        "handwritten__otm__unaligned__seed0"
    )
    odd = BenchRun("../My Data (v2).npz", "OTM w", "unaligned", 1).name
    assert set(odd) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_")
    assert result_path("out", run) == Path(
        "out/runs/scene-15__otm-gw__classification__seed3.json"
    )


def test_overrides_regime_rounds_and_extra_last() -> None:
    run = BenchRun("handwritten", "otm", "classification", 2)
    assert run.overrides(None, {}) == {
        "dataset": "handwritten",
        "method": "otm",
        "seed": 2,
        "task": "classification",
        "unaligned-rate": 1.0,
    }
    config = run.overrides(
        5, {"unaligned_rate": 0.5, "num-server-rounds": 7, "fgw-alpha": 0.3}
    )
    assert config["unaligned-rate"] == 0.5
    assert config["num-server-rounds"] == 7
    assert config["fgw-alpha"] == 0.3
    assert "unaligned_rate" not in config
    assert run.overrides(5, {})["num-server-rounds"] == 5


def test_pending_skips_finished_and_warns_on_corrupt(tmp_path: Path) -> None:
    runs = plan_grid(["handwritten"], ["otm", "local", "raw"], ["unaligned"], [0])
    done, corrupt, partial = runs
    write_result(
        make_result("otm", 0, [0.5, 0.5], regime="unaligned"),
        result_path(tmp_path, done),
    )
    result_path(tmp_path, corrupt).write_text('{"dataset": "handwritten", "meth')
    result_path(tmp_path, partial).write_text('{"dataset": "handwritten"}')
    assert pending(runs[:1], tmp_path) == []
    with pytest.warns(UserWarning) as record:
        todo = pending(runs, tmp_path)
    assert todo == [corrupt, partial]
    messages = " ".join(str(w.message) for w in record)
    assert corrupt.name in messages and partial.name in messages
    assert pending(runs, tmp_path / "fresh") == runs

    with pytest.warns(UserWarning) as record:
        loaded = load_results(tmp_path)
    assert len(record) == 2
    assert [r["method"] for r in loaded] == ["otm"]


def test_load_results_regime_fallback(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_result(make_result("otm", 0, [0.5], task="classification"), runs / "a.json")
    write_result(make_result("otm", 0, [0.5]), runs / "b.json")
    write_result(make_result("otm", 1, [0.5], regime="classification"), runs / "c.json")
    assert [r["regime"] for r in load_results(tmp_path)] == [
        "classification",
        "unaligned",
        "classification",
    ]
    assert load_results(tmp_path / "missing") == []


# ----------------------------------------------------------------------- plots


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_rounds_and_write_summary(tmp_path: Path) -> None:
    results = [
        make_result("otm", 0, [0.6, 0.8]),
        make_result("otm", 1, [0.5, 0.7]),
        make_result("raw", 0, [0.4, 0.4], rounds=1),  # a horizontal line
        make_result("otm", 0, [0.6, 0.8], task="classification"),
    ]
    assert_png(plot_rounds([], tmp_path / "sub" / "empty.png"))

    summary = write_summary(tmp_path / "bench", results)
    assert summary == tmp_path / "bench" / "summary.md"
    assert_png(tmp_path / "bench" / "rounds.png")
    text = summary.read_text()
    assert "Datasets: handwritten; regimes: unaligned, classification" in text
    assert "methods: otm, raw; seeds: 0, 1; runs: 4." in text
    assert "### handwritten / classification (classification)" in text
    assert "local-to-oracle gap closed" in text


def test_plot_embedding(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    codes = [rng.normal(size=(30, 4)), rng.normal(size=(20, 4))]
    labels = [rng.integers(0, 3, 30), rng.integers(0, 3, 20)]
    assert_png(plot_embedding(codes, labels, [0, 1], tmp_path / "emb.png", title="t"))
    one_dim = [rng.normal(size=(5, 1)), rng.normal(size=(5, 1))]
    assert_png(
        plot_embedding(one_dim, [np.zeros(5), np.ones(5)], [3, 7], tmp_path / "e1.png")
    )


@pytest.mark.parametrize(
    ("codes", "labels", "ids", "match"),
    [
        ([np.zeros((3, 2)), np.zeros((3, 3))], [np.zeros(3)] * 2, [0, 1], "latent dim"),
        ([np.zeros((3, 2))], [np.zeros(4)], [0], "labels\\[0\\] has 4"),
        ([np.zeros((3, 2))] * 2, [np.zeros(3)], [0, 1], "differ in length"),
        ([np.zeros((3, 2))], [np.zeros(3)], [0, 1], "differ in length"),
        ([np.zeros(3)], [np.zeros(3)], [0], "2-D"),
        ([], [], [], "must not be empty"),
        ([np.full((3, 2), np.nan)], [np.zeros(3)], [0], "non-finite"),
        ([np.zeros((1, 2))], [np.zeros(1)], [0], "at least two points"),
    ],
)
def test_plot_embedding_validation(
    tmp_path: Path, codes: Any, labels: Any, ids: Any, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        plot_embedding(codes, labels, ids, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_result_json_round_trip_keeps_regime(tmp_path: Path) -> None:
    run = BenchRun("handwritten", "otm", "classification", 0)
    doc = make_result("otm", 0, [0.5, 0.7], task="classification", regime=run.regime)
    write_result(doc, result_path(tmp_path, run))
    (loaded,) = load_results(tmp_path)
    assert loaded["regime"] == "classification"
    assert json.loads(result_path(tmp_path, run).read_text())["mean"][
        "acc"
    ] == pytest.approx(0.6)
