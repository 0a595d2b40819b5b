"""``otm-flower``: bad input rejected before a simulation starts, the default
runtime, a fast ``--help``, forwarded subcommands, the Ray options."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulations.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--dataset", "no-such-set"], "unknown dataset"),
        (["run", "--set", "epochs=3"], "unknown run-config key 'epochs'"),
        (["run", "--set", "fgw-alpha=2"], "fgw-alpha must be in [0, 1]"),
        (["run", "--set", "latent-dim"], "KEY=VALUE"),
    ],
)
def test_bad_arguments_exit_2_with_a_named_problem(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_and_corrupt_files_are_named(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "absent.mat"
    assert main(["run", "--dataset", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.mat"
    corrupt.write_bytes(b"not a mat file at all")
    assert main(["run", "--dataset", str(corrupt)]) == 2
    assert "corrupt.mat" in capsys.readouterr().err


def test_run_defaults_to_the_inprocess_runtime() -> None:
    from simulations import cli, runner

    args = cli.build_parser().parse_args(["run"])
    assert args.runtime == "inprocess"
    assert set(cli.RUNTIMES) == set(runner.RUNTIMES)
    assert cli.simulate is runner.simulate  # re-exported, imported on use


def test_help_loads_neither_torch_nor_flower_and_takes_under_2_s() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import simulations.cli as c; "
        "c.build_parser().format_help(); dt = time.perf_counter() - t; "
        "heavy = [m for m in ('torch', 'flwr', 'sklearn', 'ray', 'ot', 'scipy') "
        "if m in sys.modules]; print(heavy, dt)"
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "simulations.cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    assert "--runtime" in proc.stdout and "--ray-address" in proc.stdout
    assert wall < 2.0, f"otm-flower run --help took {wall:.2f} s"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "[]", f"--help imported {out[0]}"


def test_split_and_predict_are_forwarded(monkeypatch, capsys) -> None:
    from simulations import cli

    assert cli.FORWARDED["split"][0] == "simulations.split"
    assert cli.FORWARDED["predict"][0] == "simulations.predict"
    monkeypatch.setitem(cli.FORWARDED, "split", ("simulations.no_such_tool", "x"))
    assert cli.main(["split", "--help"]) == 2
    err = capsys.readouterr().err
    assert "'split' is not available" in err and "simulations.no_such_tool" in err


def test_forwarded_subcommand_gets_its_arguments(monkeypatch) -> None:
    from simulations import cli

    monkeypatch.setitem(cli.FORWARDED, "overrides", ("simulations.overrides", "x"))
    seen = []
    monkeypatch.setattr(
        "simulations.overrides.main", lambda argv: seen.append(argv) or 5, raising=False
    )
    assert cli.main(["overrides", "--a", "b"]) == 5
    assert seen == [["--a", "b"]]


def test_the_python_api_defaults_to_the_inprocess_runtime(
    monkeypatch, tmp_path: Path
) -> None:
    """simulate() runs in process unless told runtime="ray" (or given a Ray
    option); Ray options with the in-process runtime are refused."""
    from otm_flower.config import ConfigError, parse_run_config
    from simulations import runner

    calls: list[str] = []

    def fake_ray(config, **kw) -> None:
        calls.append("ray")
        Path(config.out).write_text("{}")

    monkeypatch.setattr(runner, "_run_on_ray", fake_ray)
    config = parse_run_config(
        {"num-server-rounds": 1, "local-epochs": 0, "hidden-dim": 8,
         "latent-dim": 2, "mix-batch-size": 16, "output-dir": "",
         "out": str(tmp_path / "r.json")}
    )  # fmt: skip
    result = runner.simulate(config)
    assert calls == [] and len(result["agents"]) == 6  # in process
    assert runner.simulate(config, runtime="ray") == {} and calls == ["ray"]
    assert runner.simulate(config, num_cpus=2) == {} and calls == ["ray", "ray"]
    with pytest.raises(ConfigError, match="options of runtime='ray'"):
        runner.simulate(config, runtime="inprocess", num_cpus=2)
    with pytest.raises(ConfigError, match="runtime must be one of"):
        runner.simulate(config, runtime="dask")


def test_ray_options_give_flowers_backend_config(monkeypatch) -> None:
    from otm_flower.config import ConfigError
    from simulations.runner import RayOptions

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    local = RayOptions(num_cpus=3, cpus_per_agent=0.5, gpus_per_agent=0.25)
    config = local.backend_config()
    assert config["client_resources"] == {"num_cpus": 0.5, "num_gpus": 0.25}
    assert config["init_args"]["num_cpus"] == 3
    assert "address" not in config["init_args"]
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:7777")
    attached = RayOptions().backend_config(verbose=True)["init_args"]
    assert attached == {"address": "127.0.0.1:7777"}
    with pytest.raises(ConfigError, match="num-cpus sizes a local Ray instance"):
        RayOptions(num_cpus=2).backend_config()
    with pytest.raises(ConfigError, match="cpus-per-agent must be > 0"):
        RayOptions(cpus_per_agent=0).backend_config()


def test_round_lines_come_from_flowers_round_records(tmp_path: Path, capsys) -> None:
    from logging import INFO

    from flwr.app import MetricRecord
    from flwr.supercore import log

    from simulations.progress import AGGREGATED, ROUND_START, round_progress

    log_file = tmp_path / "run.log"
    with round_progress(2, log_file) as reporter:
        log(INFO, ROUND_START, 1, 2)
        log(INFO, "round %d: coupling class agreement %.3f (mean)", 1, 0.25)
        log(INFO, AGGREGATED, MetricRecord({"train-loss": 1.0}))
        log(INFO, AGGREGATED, MetricRecord({"acc": 0.5, "nmi": 0.25}))
        log(INFO, "Final results: a long dump")
    out = capsys.readouterr().out
    assert reporter.lines == [reporter.lines[0]]
    assert reporter.lines[0].startswith("round  1/2  ACC 0.500  NMI 0.250")
    assert "agreement 0.250" in reporter.lines[0]
    assert "round  1/2  ACC 0.500" in out and "Final results" not in out
    assert "Final results: a long dump" in log_file.read_text()


@pytest.mark.slow
def test_run_prints_one_line_per_round_and_logs_flower_to_a_file(
    tmp_path: Path, capsys
) -> None:
    from tests.synthetic import clustered_views_npz

    data = clustered_views_npz(
        tmp_path / "small.npz", n=120, k=3, dims=(6, 5), spread=4.0, seed=0, name="s"
    )
    out = tmp_path / "r.json"
    argv = ["run", "--dataset", str(data), "--rounds", "2", "--out", str(out)]
    small = ["local-epochs=1", "hidden-dim=16", "latent-dim=4", "mix-batch-size=32"]
    small += [f"output-dir={tmp_path / 'runs'}", "barycenter-iterations=2"]
    assert main(argv + [f"--set={item}" for item in small]) == 0
    lines = capsys.readouterr().out.splitlines()
    rounds = [line for line in lines if line.startswith("round ")]
    assert [line.split()[1] for line in rounds] == ["1/2", "2/2"]
    assert all(" ACC " in line and line.endswith(" s") for line in rounds)
    assert not any("MetricRecord" in line or "(empty!)" in line for line in lines)
    assert lines[-1].startswith("mean test ACC")
    flower_log = out.with_suffix(".log").read_text()
    assert "[ROUND 2/2]" in flower_log and "Aggregated MetricRecord" in flower_log
