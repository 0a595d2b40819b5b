"""``otm-flower bench``: grid runs, resume, failures, hyperparameter files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from otm_flower.config import ConfigError, RunConfig
from otm_flower.data import MultiViewDataset, save_npz
from simulations.bench import load_hyperparameters, main, run_config_for
from simulations.benchmark import BenchRun, result_path

SMALL = [
    "--set", "local-epochs=1", "--set", "hidden-dim=16", "--set", "latent-dim=3",
    "--set", "mix-batch-size=30", "--set", "batch-size=32",
]  # fmt: skip


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(2)
    labels = np.arange(90) % 3
    views = [4.0 * rng.normal(size=(3, 6))[labels] + rng.normal(size=(90, 6))] * 2
    data = MultiViewDataset(
        name="tiny", views=views, labels=labels, view_names=["a", "b"]
    )
    return save_npz(data, tmp_path_factory.mktemp("data") / "tiny.npz")


def _bench(data: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "--datasets", str(data), "--methods", "otm,raw", "--seeds", "1",
            "--rounds", "1", "--out", str(out), "--hyperparameters", "", *SMALL,
            *extra,
        ]
    )  # fmt: skip


def test_grid_writes_results_and_summary_then_resumes(
    data_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _bench(data_path, tmp_path) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").glob("*.json"))
    assert runs == [
        "tiny__otm__classification__seed0.json",
        "tiny__otm__unaligned__seed0.json",
        "tiny__raw__classification__seed0.json",
        "tiny__raw__unaligned__seed0.json",
    ]
    result = json.loads((tmp_path / "runs" / runs[0]).read_text())
    assert result["regime"] == "classification" and result["mean"]["accuracy"] > 0
    summary = (tmp_path / "summary.md").read_text()
    assert "### tiny / unaligned (clustering)" in summary
    assert "| otm | 1 |" in summary and "| raw | 1 |" in summary
    capsys.readouterr()

    # A second call finds everything done; a corrupt result is re-run alone.
    assert _bench(data_path, tmp_path) == 0
    assert "0 to run" in capsys.readouterr().out
    corrupt = tmp_path / "runs" / "tiny__raw__unaligned__seed0.json"
    corrupt.write_text("{ truncated")
    with pytest.warns(UserWarning, match="tiny__raw__unaligned__seed0"):
        assert _bench(data_path, tmp_path) == 0
    assert "1 to run" in capsys.readouterr().out
    assert json.loads(corrupt.read_text())["method"] == "raw"


def test_resume_with_another_setting_is_refused(
    data_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run names do not hold ``--set`` values: a folder made at one link rate
    cannot be resumed at another (its runs would stand in for the new ones)."""
    base = ["--methods", "raw", "--regimes", "anchored"]
    assert _bench(data_path, tmp_path, *base, "--set", "anchor-rate=0.1") == 0
    capsys.readouterr()
    assert _bench(data_path, tmp_path, *base, "--set", "anchor-rate=0.1") == 0
    assert "0 to run" in capsys.readouterr().out
    assert _bench(data_path, tmp_path, *base, "--set", "anchor-rate=0.2") == 2
    err = capsys.readouterr().err
    assert "anchor-rate=0.1" in err and "anchor-rate=0.2" in err
    assert _bench(data_path, tmp_path, *base) == 2  # the regime's own 0.05
    assert _bench(data_path, tmp_path, *base, "--rounds", "2") == 2


def test_failing_run_is_reported_and_the_others_finish(
    data_path: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.npz"
    code = main(
        [
            "--datasets", f"{data_path},{missing}", "--methods", "raw",
            "--regimes", "unaligned", "--seeds", "1", "--out", str(tmp_path / "o"),
            "--hyperparameters", "",
        ]
    )  # fmt: skip
    assert code == 1
    assert (tmp_path / "o" / "runs" / "tiny__raw__unaligned__seed0.json").exists()
    failures = json.loads((tmp_path / "o" / "failures.json").read_text())
    assert list(failures) == ["missing__raw__unaligned__seed0"]
    assert "missing.npz" in failures["missing__raw__unaligned__seed0"]


@pytest.mark.skipif(shutil.which("pgrep") is None, reason="needs pgrep (procps)")
def test_killed_bench_leaves_no_workers(data_path: Path, tmp_path: Path) -> None:
    """A bench with --jobs 2 killed by SIGTERM: its pool workers end on their own."""
    bench = subprocess.Popen(
        [
            sys.executable, "-m", "simulations.cli", "bench",
            "--datasets", str(data_path), "--methods", "otm", "--seeds", "4",
            "--rounds", "200", "--jobs", "2",
            "--out", str(tmp_path), "--hyperparameters", "", *SMALL,
        ],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def children(pid: int) -> set[int]:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        return {int(p) for p in out.stdout.split()}

    try:
        deadline = time.monotonic() + 120
        while len(workers := children(bench.pid)) < 2:  # spawned workers (and more)
            assert bench.poll() is None, "bench ended before its workers started"
            assert time.monotonic() < deadline, "no pool workers after 120 s"
            time.sleep(0.5)
        time.sleep(2)  # let them start their runs
        bench.send_signal(signal.SIGTERM)
        bench.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive := {p for p in workers if Path(f"/proc/{p}").exists()}:
            assert time.monotonic() < deadline, f"workers {alive} outlived the bench"
            time.sleep(0.5)
    finally:
        if bench.poll() is None:
            bench.kill()
        for pid in children(bench.pid):
            os.kill(pid, signal.SIGKILL)


def test_hyperparameter_file_is_validated_and_applied(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[otm]\nweight-mix = 0.5\n[fedavg]\n"local-epochs" = 2\n')
    tables = load_hyperparameters(good)
    run = BenchRun("handwritten", "otm", "classification", 1)
    config = run_config_for(run, 4, tables, {"hidden-dim": 8})
    assert (config.weight_mix, config.task, config.seed) == (0.5, "classification", 1)
    assert (config.num_server_rounds, config.hidden_dim) == (4, 8)
    fedavg = run_config_for(
        BenchRun("handwritten", "fedavg", "unaligned", 0), None, tables, {}
    )
    assert fedavg.local_epochs == 2 and fedavg.weight_mix != 0.5
    paper = run_config_for(run, 4, tables, {"preset": "paper"})
    reference = run_config_for(run, 4, {}, {"preset": "paper"})
    assert paper.preset == "paper" and paper.weight_mix == reference.weight_mix != 0.5

    bad_method = tmp_path / "m.toml"
    bad_method.write_text("[otm-plus]\nseed = 1\n")
    with pytest.raises(ConfigError, match="otm-plus"):
        load_hyperparameters(bad_method)
    bad_key = tmp_path / "k.toml"
    bad_key.write_text("[otm]\nweight-mixx = 1.0\n")
    with pytest.raises(ConfigError, match="weight-mixx"):
        load_hyperparameters(bad_key)
    with pytest.raises(ConfigError, match="nope.toml"):
        load_hyperparameters(tmp_path / "nope.toml")


def test_task_subtables_apply_to_their_task_only(tmp_path: Path) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text(
        "[local]\nweight-mmd = 0.5\n[local.clustering]\nweight-cluster = 1.0\n"
    )
    tables = load_hyperparameters(path)
    clustering = run_config_for(
        BenchRun("tiny", "local", "unaligned", 0), 1, tables, {}
    )
    classification = run_config_for(
        BenchRun("tiny", "local", "classification", 0), 1, tables, {}
    )
    assert (clustering.weight_cluster, clustering.weight_mmd) == (1.0, 0.5)
    default = RunConfig().weight_cluster
    assert (classification.weight_cluster, classification.weight_mmd) == (default, 0.5)
    # a key that is invalid for its task is named with the task
    path.write_text("[otm.clustering]\nlabel-cost-weight = 1.0\n")
    with pytest.raises(ConfigError, match="task clustering.*label-cost-weight"):
        load_hyperparameters(path)
    path.write_text("[otm]\nclustering = 1.0\n")
    with pytest.raises(ConfigError, match="must be a table"):
        load_hyperparameters(path)


def test_regime_subtables_apply_to_their_regime_only(tmp_path: Path) -> None:
    path = tmp_path / "regimes.toml"
    path.write_text(
        "[otm]\nweight-reg = 0.0\n[otm.clustering]\nweight-cluster = 2.0\n"
        "[otm.anchored]\nweight-reg = 3.0\n"
    )
    tables = load_hyperparameters(path)
    cells = {
        regime: run_config_for(BenchRun("tiny", "otm", regime, 0), 1, tables, {})
        for regime in ("unaligned", "anchored", "classification")
    }
    assert (cells["anchored"].weight_reg, cells["anchored"].weight_cluster) == (
        3.0,
        2.0,
    )
    assert (cells["unaligned"].weight_reg, cells["unaligned"].weight_cluster) == (
        0.0,
        2.0,
    )
    assert cells["classification"].weight_reg == 0.0
    # the command line's --set still wins over every table
    forced = run_config_for(
        BenchRun("tiny", "otm", "anchored", 0), 1, tables, {"weight-reg": 1.0}
    )
    assert forced.weight_reg == 1.0
    # a regime table is validated against its regime's task
    path.write_text("[otm.anchored]\nlabel-cost-weight = 1.0\n")
    with pytest.raises(ConfigError, match="regime anchored.*label-cost-weight"):
        load_hyperparameters(path)


def test_inherit_starts_from_another_method_table(tmp_path: Path) -> None:
    path = tmp_path / "inherit.toml"
    path.write_text(
        "[otm]\nweight-reg = 0.5\n[otm.clustering]\nweight-cluster = 2.0\n"
        "weight-mix = 1.0\n[otm.anchored]\nweight-reg = 3.0\n"
        '[otm-nomix]\ninherit = "otm"\n[otm-nomix.clustering]\nweight-mix = 0.2\n'
    )
    tables = load_hyperparameters(path)
    nomix = run_config_for(BenchRun("tiny", "otm-nomix", "anchored", 0), 1, tables, {})
    otm = run_config_for(BenchRun("tiny", "otm", "anchored", 0), 1, tables, {})
    assert (nomix.weight_reg, nomix.weight_cluster, nomix.weight_mix) == (3.0, 2.0, 0.2)
    assert otm.weight_mix == 1.0  # the parent is not changed by its heir
    path.write_text('[otm-nomix]\ninherit = "otm"\n')
    with pytest.raises(ConfigError, match="inherit = 'otm'"):
        load_hyperparameters(path)
    path.write_text('[otm]\n[otm-w]\ninherit = "otm"\n[otm-gw]\ninherit = "otm-w"\n')
    with pytest.raises(ConfigError, match="does not inherit itself"):
        load_hyperparameters(path)


def test_repository_hyperparameters_are_valid() -> None:
    from simulations.bench import DEFAULT_HYPERPARAMETERS

    tables = load_hyperparameters(DEFAULT_HYPERPARAMETERS)
    assert set(tables) >= {"otm", "fedavg"}
    # the ablations differ from the benchmark's otm in their method only
    for regime in ("unaligned", "anchored"):
        otm = run_config_for(BenchRun("tiny", "otm", regime, 0), 1, tables, {})
        for method in ("otm-w", "otm-gw", "otm-nomix"):
            config = run_config_for(BenchRun("tiny", method, regime, 0), 1, tables, {})
            assert {**config.to_dict(), "method": "otm"} == otm.to_dict()


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert main(["--methods", "otm,magic", "--out", str(tmp_path)]) == 2
    assert main(["--regimes", "sideways", "--out", str(tmp_path)]) == 2
    assert main(["--set", "no-such-key=1", "--out", str(tmp_path)]) == 2
    # a task-specific key is checked against every cell's regime, before any run
    label = ["--set", "label-cost-weight=3", "--methods", "otm", "--seeds", "1"]
    assert main([*label, "--regimes", "unaligned", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "runs").exists()


def test_task_specific_set_is_valid_in_its_regime() -> None:
    run = BenchRun("handwritten", "otm", "classification", 0)
    config = run_config_for(run, 2, {}, {"label-cost-weight": 3.0})
    assert config.label_cost_weight == 3.0 and config.task == "classification"
    with pytest.raises(ConfigError, match="label-cost-weight"):
        run_config_for(
            BenchRun("handwritten", "otm", "unaligned", 0),
            2,
            {},
            {"label-cost-weight": 3.0},
        )


def test_result_path_is_inside_runs(tmp_path: Path) -> None:
    run = BenchRun("/data/Scene-15.mat", "otm", "unaligned", 2)
    assert result_path(tmp_path, run).parent == tmp_path / "runs"


def test_summarize_prints_tables_of_several_folders(
    data_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        base = ["--regimes", "unaligned", "--methods", "raw"]
        assert _bench(data_path, tmp_path / name, *base, "--seeds", "1") == 0
    capsys.readouterr()
    assert main(["--summarize", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "| raw | 2 |" in out  # the two folders' runs pooled


def test_readme_block_is_regenerated_from_bench_output(
    data_path: Path, tmp_path: Path
) -> None:
    """``--readme`` rewrites only the marked block of a README copy, from results."""
    import platform

    from simulations.benchmark.readme_rows import parse_block
    from simulations.readme_results import END, START

    readme = tmp_path / "README.md"
    shutil.copy(Path(__file__).parents[1] / "README.md", readme)
    before = readme.read_text()
    assert START in before and END in before
    out = tmp_path / "b"
    base = ["--regimes", "unaligned", "--methods", "otm,local"]
    assert _bench(data_path, out, *base) == 0
    assert (out / "report.html").is_file() and (out / "command.json").is_file()
    assert main(["--readme", str(out), "--readme-file", str(readme)]) == 0
    after = readme.read_text()
    head, block, tail = _split_block(after)
    assert (head, tail) == _split_block(before)[::2]  # nothing outside changed
    otm = json.loads((out / "runs" / "tiny__otm__unaligned__seed0.json").read_text())
    cells = parse_block(block).rows[("tiny", "unaligned")]
    assert cells["score"] == "acc"
    assert cells["otm"] == f"{100 * otm['mean']['acc']:.1f}"  # percent
    assert cells["otm purity"] == f"{100 * otm['mean']['purity']:.1f}"
    local = json.loads(
        (out / "runs" / "tiny__local__unaligned__seed0.json").read_text()
    )
    gain = 100 * (otm["mean"]["acc"] - local["mean"]["acc"])
    assert cells["otm − local"] == f"{gain:+.1f}"
    words = " ".join(block.split())  # the stamp is wrapped at 88 columns
    assert platform.platform() in words and "--methods otm,local" in words
    assert "from 2 runs (seeds 0)" in words

    # A second seed: the block follows (2 seeds, mean ± std), the rest stays.
    assert _bench(data_path, out, *base, "--seeds", "2") == 0
    assert main(["--readme", str(out), "--readme-file", str(readme)]) == 0
    head2, block2, tail2 = _split_block(readme.read_text())
    assert (head2, tail2) == (head, tail) and block2 != block
    assert "from 4 runs (seeds 0, 1)" in " ".join(block2.split())
    assert " ± " in block2

    readme.write_text("no markers here")
    assert main(["--readme", str(out), "--readme-file", str(readme)]) == 2


def _split_block(text: str) -> tuple[str, str, str]:
    """README text before, inside and after the generated results block."""
    from simulations.readme_results import END, START

    start, end = text.index(START), text.index(END) + len(END)
    return text[:start], text[start:end], text[end:]
