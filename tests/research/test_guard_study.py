"""The guard-criterion study: its bench commands and its results table."""

from __future__ import annotations

from pathlib import Path

import pytest

from otm_flower.config import parse_run_config
from otm_flower.results import write_result
from research.guard_study import ARMS, bench_command, main, study_table
from simulations.bench import build_parser
from tests.test_benchmark import cells, make_result


def _settings(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    return dict(p.split("=", 1) for p in pairs)


def test_commands_select_the_split_and_the_criterion(tmp_path: Path) -> None:
    val = bench_command("silhouette", "validation", tmp_path, ["cub", "orl"])
    assert val[:4] == ["otm-flower", "bench", "--datasets", "cub,orl"]
    assert _settings(val) == {
        "validation-fraction": "0.2",
        "term-guard-criterion": "silhouette",
    }
    assert val[-1] == str(tmp_path / "validation-silhouette")
    test = bench_command("off", "test", tmp_path, ["cub"])
    assert _settings(test) == {"term-guard": "false"}  # test rows: no split key
    assert bench_command("local", "test", tmp_path, ["cub"])[5] == "local"
    for arm in ARMS:  # every arm's overrides are valid run-config keys
        parse_run_config(_settings(bench_command(arm, "validation", tmp_path, ["x"])))
    parsed = build_parser().parse_args(val[2:])
    assert parsed.regimes == "anchored" and parsed.seeds == 3
    with pytest.raises(ValueError, match="unknown arm"):
        bench_command("margin", "test", tmp_path, ["cub"])
    with pytest.raises(ValueError, match="unknown split"):
        bench_command("local", "train", tmp_path, ["cub"])


def _write(root: Path, arm: str, method: str, scores: dict[int, list[float]]) -> None:
    for seed, agents in scores.items():
        result = make_result(method, seed, agents, regime="anchored", dataset="cub")
        write_result(result, root / f"validation-{arm}" / "runs" / f"{seed}.json")


def test_table_means_over_seeds_and_gain_over_local(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "local", "local", {0: [0.6, 0.4], 1: [0.7, 0.5]})
    _write(tmp_path, "silhouette", "otm", {0: [0.7, 0.5], 1: [0.8, 0.6]})
    # a folder shared by two arms: each arm reads its own method's runs only
    _write(tmp_path, "off", "local", {0: [0.1, 0.1]})
    _write(tmp_path, "off", "otm", {0: [0.5, 0.5], 1: [0.5, 0.5]})
    rows = [cells(r) for r in study_table(tmp_path, "validation").splitlines()[2:]]
    by_arm = {r[1]: r for r in rows}
    assert list(by_arm) == ["local", "off", "silhouette"]
    assert by_arm["local"][2:] == ["2", "55.0 ± 7.1", "45.0 ± 7.1", "45.0", "", ""]
    assert by_arm["silhouette"][3] == "65.0 ± 7.1"
    assert by_arm["silhouette"][6:] == ["+10.0", "10.0 ± 0.0"]
    assert by_arm["off"][2] == "2" and by_arm["off"][6:] == ["-5.0", "-5.0 ± 7.1"]
    assert study_table(tmp_path, "test") == study_table(tmp_path / "none", "test")
    main(["table", "--root", str(tmp_path), "--split", "validation"])
    assert "| cub | silhouette | 2 |" in capsys.readouterr().out
