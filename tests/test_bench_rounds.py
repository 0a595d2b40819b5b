"""Tests for simulations.bench_rounds on a tiny synthetic data set (no timings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from otm_flower.data import MultiViewDataset, save_npz
from simulations.bench_rounds import (
    ClientClock,
    average_runs,
    fit_growth,
    main,
    round_ratios,
    rounds_markdown,
    scale_markdown,
)
from tests.synthetic import cluster_and_noise

N, K, VIEWS = 90, 3, 2  # 72 training rows per view
LATENT = 4
SMALL = [
    "--set",
    "hidden-dim=16",
    "--set",
    f"latent-dim={LATENT}",
    "--set",
    "batch-size=32",
    "--set",
    "local-epochs=1",
]


def _dataset() -> MultiViewDataset:
    """View 0: well-separated class clusters; view 1: noise unrelated to labels."""
    return cluster_and_noise(N, K)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run ``bench_rounds all`` once (2 rounds; scale with apm 1, 2)."""
    root = tmp_path_factory.mktemp("bench-rounds")
    data = save_npz(_dataset(), root / "synthetic.npz")
    out = root / "out"
    code = main(
        [
            "all",
            "--dataset",
            str(data),
            "--rounds",
            "2",
            "--apm",
            "1,2",
            "--scale-rounds",
            "1",
            "--mixer-n",
            "8",
            "--out",
            str(out),
            *SMALL,
        ]
    )
    assert code == 0
    return {
        "out": out,
        "rounds": json.loads((out / "rounds.json").read_text()),
        "scale": json.loads((out / "scale.json").read_text()),
    }


def test_rounds_table_reports_both_methods_with_times_and_bytes(
    bench: dict[str, Any],
) -> None:
    table = bench["rounds"]
    rows = {r["method"]: r for r in table["rows"]}
    assert set(rows) == {"otm", "fedavg"}
    for row in rows.values():
        assert row["agents"] == VIEWS and row["rounds"] == 2
        assert row["round_s"] > 0 and row["client_round_s"] > 0
        assert row["server_round_s"] >= 0
        assert row["round_s"] == pytest.approx(
            row["client_round_s"] + row["server_round_s"], rel=1e-6
        )
        # one train and one evaluate call per agent and round
        assert row["client_calls"] == 2 * VIEWS * 2
        assert len(row["round_walls"]) == 2 and len(row["client_by_round"]) == 2
        assert all(w > 0 for w in row["round_walls"])
        assert sum(row["round_walls"]) <= row["wall_s"] + 1e-3
        assert row["cpu_round_s"] > 0 and row["client_cpu_round_s"] > 0
        assert row["server_cpu_round_s"] >= 0
        assert len(row["cpu_round_walls"]) == 2
        assert row["bytes_up"] > 0 and row["bytes_down"] > 0
        assert row["bytes_up_round"] == row["bytes_up"] / 2
    otm, fed = rows["otm"], rows["fedavg"]
    # OTM: float32 codes up every round; mixed codes and barycenter down from
    # round 2 on (one round of targets in a 2-round run)
    codes = otm["codes_per_agent"]
    assert codes == 72
    assert otm["bytes_up"] == 2 * VIEWS * codes * LATENT * 4
    assert otm["bytes_down"] == 1 * VIEWS * 2 * codes * LATENT * 4
    assert len(otm["mix_seconds"]) == 2 and otm["mix_round_s"] > 0
    assert fed["mix_round_s"] is None
    # the strategy's phases: each measured, the mixing phase holds the mixing,
    # and all of them fit in the server's share of the round
    phases = {k: v for k, v in otm.items() if k.startswith("phase_")}
    for name in ("read", "screen", "mix", "train_messages", "evaluate_messages"):
        assert phases[f"phase_{name}_round_s"] >= 0
    assert phases["phase_mix_round_s"] >= otm["mix_round_s"]
    assert sum(phases.values()) <= otm["server_round_s"] + 1e-6
    assert not any(k.startswith("phase_") for k in fed)
    # FedAvg sends its shared layers both ways: more bytes than OTM's codes here
    assert fed["bytes_up"] > otm["bytes_up"]


def test_rounds_ratio_comes_from_the_rows(bench: dict[str, Any]) -> None:
    table = bench["rounds"]
    rows = {r["method"]: r for r in table["rows"]}
    otm, fed = rows["otm"], rows["fedavg"]
    assert table["ratio_round"] == pytest.approx(otm["round_s"] / fed["round_s"])
    assert table["ratio_steady"] == pytest.approx(
        otm["steady_round_s"] / fed["steady_round_s"]
    )
    assert table["ratio_round_cpu"] == pytest.approx(
        otm["cpu_round_s"] / fed["cpu_round_s"]
    )
    total = otm["bytes_up_round"] + otm["bytes_down_round"]
    assert table["ratio_bytes"] == pytest.approx(
        total / (fed["bytes_up_round"] + fed["bytes_down_round"])
    )
    text = rounds_markdown(table)
    assert f"round time {table['ratio_round']:.2f}x" in text
    assert "| otm | 2 | 2 |" in text and "| fedavg | 2 | 2 |" in text


def test_round_ratios_by_hand_and_without_a_method() -> None:
    def row(method: str, round_s: float, up: float, down: float) -> dict[str, Any]:
        return {
            "method": method,
            "round_s": round_s,
            "steady_round_s": round_s + 1.0,
            "client_round_s": round_s / 2,
            "server_round_s": round_s / 2,
            "bytes_up_round": up,
            "bytes_down_round": down,
        }

    ratios = round_ratios([row("otm", 3.0, 10, 30), row("fedavg", 2.0, 100, 300)])
    assert ratios["ratio_round"] == pytest.approx(1.5)
    assert ratios["ratio_steady"] == pytest.approx(4.0 / 3.0)
    assert ratios["ratio_bytes"] == pytest.approx(0.1)
    assert round_ratios([row("otm", 3.0, 1, 1)])["ratio_round"] is None


def test_average_runs_means_numbers_and_lists() -> None:
    runs = [
        {"method": "otm", "round_s": 1.0, "walls": [1.0, 3.0], "mix": None, "n": 4},
        {"method": "otm", "round_s": 3.0, "walls": [3.0, 5.0], "mix": None, "n": 4},
    ]
    row = average_runs(runs)
    assert row["round_s"] == 2.0 and row["walls"] == [2.0, 4.0]
    assert row["mix"] is None and row["n"] == 4 and row["runs"] == 2


def test_scale_runs_the_right_agent_counts_and_plots(bench: dict[str, Any]) -> None:
    scale = bench["scale"]
    rows = scale["rows"]
    assert [r["agents"] for r in rows] == [VIEWS, 2 * VIEWS]
    assert [r["agents_per_modality"] for r in rows] == [1, 2]
    assert all(r["local_epochs"] == 1 and r["rounds"] == 1 for r in rows)
    # more agents per modality: each holds fewer rows, so uploads fewer codes
    assert rows[1]["codes_per_agent"] < rows[0]["codes_per_agent"]
    assert all(r["mix_round_s"] > 0 for r in rows)
    assert [r["agents"] for r in scale["mixer_rows"]] == [VIEWS, 2 * VIEWS]
    assert all(r["n"] == 8 and r["mix_s"] > 0 for r in scale["mixer_rows"])
    assert all(r["mix_cpu_s"] > 0 for r in scale["mixer_rows"])
    assert all(len(r["mix_s_all"]) == 3 for r in scale["mixer_rows"])  # repeats
    # the own-frame mix is also timed with every agent mixing all agents
    assert all(r["mix_cpu_s_all_partners"] > 0 for r in scale["mixer_rows"])
    assert scale["growth_mixer_cpu_all_partners"]["linear_ratio"] == 2.0
    growths = ("growth_mix", "growth_server", "growth_server_cpu", "growth_round")
    for key in (*growths, "growth_mixer", "growth_mixer_cpu"):
        assert scale[key]["linear_ratio"] == 2.0
        assert scale[key]["exponent"] is not None
    png = bench["out"] / "scale.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 4 |" in scale_markdown(scale)


def test_fit_growth_tells_linear_from_quadratic() -> None:
    agents = [6, 12, 30, 60]
    linear = fit_growth(agents, [0.5 * a for a in agents])
    assert linear["exponent"] == pytest.approx(1.0)
    assert linear["ratio"] == pytest.approx(10.0) and linear["at_most_linear"]
    assert linear["per_agent"] == pytest.approx([0.5] * 4)
    quadratic = fit_growth(agents, [0.01 * a * a for a in agents])
    assert quadratic["exponent"] == pytest.approx(2.0)
    assert quadratic["ratio"] == pytest.approx(100.0)
    assert not quadratic["at_most_linear"]


def test_client_clock_round_walls_span_from_round_to_round() -> None:
    clock = ClientClock()
    clock.spans = {1: [10.0, 12.0], 2: [13.0, 14.5], 3: [16.0, 16.5]}
    clock.cpu_spans = {1: [1.0, 2.0], 2: [2.5, 3.0]}
    assert clock.round_walls() == pytest.approx([3.0, 3.0, 0.5])
    assert clock.round_walls(cpu=True) == pytest.approx([1.5, 0.5])


def test_bad_config_is_an_error_not_a_crash(tmp_path: Path) -> None:
    assert main(["rounds", "--dataset", "handwritten", "--set", "nope=1"]) == 2
