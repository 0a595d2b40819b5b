"""``otm-flower bench``: a benchmark grid of datasets x methods x regimes x seeds.

Each run writes one JSON result (``OUT/runs/<run>.json``, written atomically, so an
interrupted grid resumes where it stopped: finished runs are not re-run); the
summary (``OUT/summary.md``: tables of mean +- std over seeds; ``OUT/rounds.png``;
``OUT/report.html``, one self-contained page) is rebuilt from every result at the
end; ``OUT/command.json`` records the command line, date and machine.
``--readme DIR...`` regenerates the README's results block from bench folders.
Per-method hyperparameters come from a TOML file of run-config tables
(``configs/hyperparameters.toml`` by default).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from otm_flower.config import HYBRID_METHODS, METHOD_TASK, METHODS, ConfigError
from simulations.benchmark.execute import execute, run_grid, save_embeddings
from simulations.benchmark.grid import (
    REGIMES,
    BenchRun,
    applies,
    load_results,
    plan_grid,
)
from simulations.benchmark.hyperparameters import (
    DEFAULT_HYPERPARAMETERS,
    load_hyperparameters,
    run_config_for,
)
from simulations.benchmark.report import write_summary
from simulations.benchmark.tables import gains, summary_table
from simulations.html_report import write_bench_report
from simulations.overrides import parse_set
from simulations.readme_results import (
    read_block,
    readme_block,
    record_command,
    update_readme,
)

__all__ = [
    "DEFAULT_HYPERPARAMETERS",
    "DEFAULT_METHODS",
    "build_parser",
    "execute",
    "load_hyperparameters",
    "main",
    "plan_runs",
    "run_config_for",
    "run_grid",
    "save_embeddings",
]

#: ``--methods`` default: every method but the OTM hybrids (name them to run them).
DEFAULT_METHODS = tuple(m for m in METHODS if m not in HYBRID_METHODS)


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    """Options that run nothing and report on bench folders instead."""
    parser.add_argument(
        "--summarize",
        nargs="+",
        metavar="DIR",
        default=None,
        help="run nothing: print the tables of the results in these bench folders",
    )
    parser.add_argument(
        "--readme",
        nargs="*",
        metavar="DIR",
        default=None,
        help="run nothing: regenerate the README's results block (between "
        "<!-- results:start --> and <!-- results:end -->) from these bench "
        "folders (default: --out); its rows of (data set, regime) pairs the "
        "folders do not hold are kept",
    )
    parser.add_argument(
        "--readme-file", default="README.md", help="the README --readme rewrites"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``otm-flower bench`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="otm-flower bench", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--datasets", default="handwritten", help="comma separated")
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma separated, of {', '.join(METHODS)} (default: all but "
        f"{', '.join(HYBRID_METHODS)})",
    )
    parser.add_argument(
        "--regimes",
        default="unaligned,classification",
        help=f"comma separated, of {', '.join(REGIMES)}",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run")
    parser.add_argument("--out", default="bench-results", help="output folder")
    parser.add_argument(
        "--hyperparameters",
        default=str(DEFAULT_HYPERPARAMETERS),
        help="TOML file of per-method run-config tables ('' for none)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run-config override for every run",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--runtime", default="inprocess", choices=["inprocess", "ray"])
    parser.add_argument(
        "--embeddings",
        action="store_true",
        help="plot test codes before/after training (seed 0, in-process)",
    )
    _add_report_options(parser)
    return parser


def plan_runs(
    args: argparse.Namespace,
    hyperparameters: Mapping[str, Mapping[str, Any]],
    extra: Mapping[str, Any],
) -> list[BenchRun]:
    """The grid the command line names, less cells whose method does not apply.

    Every cell's whole config is validated before anything runs; skipped cells are
    named on stderr.

    Raises
    ------
    ConfigError
        On an unknown method, a grid with no applicable cell or an invalid cell.
    """
    runs = plan_grid(
        _split(args.datasets),
        _split(args.methods),
        _split(args.regimes),
        list(range(args.seeds)),
    )
    unknown = sorted({r.method for r in runs} - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; valid: {METHODS}")
    skipped = sorted({(r.method, r.regime) for r in runs if not applies(r)})
    for method, regime in skipped:
        print(
            f"bench: skipping {method} in regime {regime} "
            f"(it needs task={METHOD_TASK[method]})",
            file=sys.stderr,
        )
    runs = [r for r in runs if applies(r)]
    if not runs:
        raise ConfigError("no method of --methods applies to --regimes")
    for run in runs:
        try:
            run_config_for(run, args.rounds, hyperparameters, extra)
        except ConfigError as err:
            raise ConfigError(
                f"{run.dataset}/{run.method}/{run.regime}: {err}"
            ) from err
    return runs


def _summarize(folders: list[str]) -> int:
    """``--summarize``: print the tables of the results in ``folders``."""
    results = [r for folder in folders for r in load_results(folder)]
    print(summary_table(results))
    print(gains(results))
    return 0


def _readme(folders: list[str], readme: str) -> int:
    """``--readme``: rewrite the README's results block from ``folders``, keeping
    its rows of (data set, regime) pairs the folders do not hold."""
    path = update_readme(readme, readme_block(folders, read_block(readme)))
    print(f"bench: results block of {path} regenerated from {', '.join(folders)}")
    return 0


def _run(args: argparse.Namespace) -> list[tuple[BenchRun, str]]:
    """Plan and run the grid; return the failed cells with their reasons."""
    if args.seeds < 1 or args.jobs < 1:
        raise ConfigError("--seeds and --jobs must be >= 1")
    extra = parse_set(args.set)
    hyper = load_hyperparameters(args.hyperparameters or None)
    runs = plan_runs(args, hyper, extra)
    if args.embeddings and args.runtime != "inprocess":
        raise ConfigError("--embeddings needs --runtime inprocess")
    record_command(args.out, args.argv)
    _, failed = run_grid(
        runs,
        args.out,
        rounds=args.rounds,
        hyperparameters=hyper,
        extra=extra,
        jobs=args.jobs,
        runtime=args.runtime,
        embeddings=args.embeddings,
    )
    return failed


def _finish(out: str, failed: list[tuple[BenchRun, str]]) -> int:
    """Write and print the summary, report failures (``OUT/failures.json``)."""
    summary = write_summary(out, load_results(out))
    report = write_bench_report(out)
    print(summary.read_text())
    print(
        f"bench: summary in {summary}, report in {report}; "
        f"per-run results in {Path(out) / 'runs'}"
    )
    for run, error in failed:
        print(f"bench: {run.name} failed: {error}", file=sys.stderr)
    if failed:
        (Path(out) / "failures.json").write_text(
            json.dumps({run.name: error for run, error in failed}, indent=2)
        )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``otm-flower bench``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.summarize:
        return _summarize(args.summarize)
    try:
        if args.readme is not None:
            return _readme(args.readme or [args.out], args.readme_file)
        failed = _run(args)
    except (ConfigError, ValueError, OSError) as err:
        print(f"otm-flower bench: error: {err}", file=sys.stderr)
        return 2
    return _finish(args.out, failed)
