"""``otm-flower bench``: a benchmark grid of datasets x methods x regimes x seeds.

Each run writes one JSON result (``OUT/runs/<run>.json``, written atomically, so an
interrupted grid resumes where it stopped: finished runs are not re-run); the
summary (``OUT/summary.md``: tables of mean +- std over seeds; ``OUT/rounds.png``)
is rebuilt from every result at the end. Per-method hyperparameters come from a
TOML file of run-config tables (``configs/hyperparameters.toml`` by default).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from otm_flower.benchmark import (
    REGIMES,
    BenchRun,
    applies,
    gains,
    load_results,
    pending,
    plan_grid,
    plot_embedding,
    result_path,
    summary_table,
    write_summary,
)
from otm_flower.config import (
    BASELINE_METHODS,
    HYBRID_METHODS,
    METHOD_TASK,
    METHODS,
    TASKS,
    ConfigError,
    RunConfig,
    parse_run_config,
)
from otm_flower.results import write_result

#: ``--methods`` default: every method but the OTM hybrids (name them to run them).
DEFAULT_METHODS = tuple(m for m in METHODS if m not in HYBRID_METHODS)

DEFAULT_HYPERPARAMETERS = (
    Path(__file__).resolve().parent.parent / "configs" / "hyperparameters.toml"
)


def load_hyperparameters(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Per-method run-config overrides from a TOML file (``{}`` if ``path`` is None).

    The file holds one table per method (``[otm]``, ``[fedavg]``, ...) of run-config
    keys, optionally with task subtables (``[otm.clustering]``,
    ``[otm.classification]``) whose keys apply only to that task's regimes, and
    regime subtables (``[otm.anchored]``) whose keys apply only to that regime (on
    top of the task's). ``inherit = "otm"`` in a method table starts it from that
    method's table (subtables merged key by key). Every key and value is validated
    against :class:`RunConfig`.

    Raises
    ------
    ConfigError
        On a missing or unreadable file, an unknown method or an invalid key.
    """
    if path is None:
        return {}
    path = Path(path)
    try:
        tables = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"hyperparameter file {path}: {err}") from err
    unknown = sorted(set(tables) - set(METHODS))
    if unknown:
        raise ConfigError(
            f"hyperparameter file {path}: unknown method table(s) {unknown}; "
            f"methods: {', '.join(METHODS)}"
        )
    for method, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"hyperparameter file {path}: [{method}] is not a table")
    try:
        tables = {method: _inherited(tables, method) for method in tables}
    except ConfigError as err:
        raise ConfigError(f"hyperparameter file {path}: {err}") from err
    for method, table in tables.items():
        for regime, spec in REGIMES.items():
            task = spec.get("task", "clustering")
            try:
                parse_run_config(_cell_table(table, task, regime))
            except ConfigError as err:
                raise ConfigError(
                    f"hyperparameter file {path}, [{method}] "
                    f"(task {task}, regime {regime}): {err}"
                ) from err
    return tables


def _inherited(tables: Mapping[str, Any], method: str) -> dict[str, Any]:
    """``tables[method]`` on top of the table it names in ``inherit``, if any."""
    table = dict(tables[method])
    parent = table.pop(INHERIT, None)
    if parent is None:
        return table
    base = tables.get(parent)
    if not isinstance(base, dict) or INHERIT in base:
        raise ConfigError(
            f"[{method}] inherit = {parent!r}: must name a method table of the file "
            "that does not inherit itself"
        )
    merged = dict(base)
    for key, value in table.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


#: Key of a method table that names the method table it starts from.
INHERIT = "inherit"

#: Names of the subtables a method table may hold: tasks, then regimes.
SUBTABLES = tuple(dict.fromkeys((*TASKS, *REGIMES)))


def _cell_table(
    table: Mapping[str, Any], task: str, regime: str | None = None
) -> dict[str, Any]:
    """A method's keys for one grid cell: its plain keys, then those of its
    ``[method.task]`` table, then those of its ``[method.regime]`` table."""
    keys = {k: v for k, v in table.items() if k not in SUBTABLES}
    for name in dict.fromkeys((task, regime or task)):
        sub = table.get(name, {})
        if not isinstance(sub, dict):
            raise ConfigError(f"[{name}] inside a method table must be a table")
        keys.update(sub)
    return {**keys, "task": task}


def run_config_for(
    run: BenchRun,
    rounds: int | None,
    hyperparameters: Mapping[str, Mapping[str, Any]],
    extra: Mapping[str, Any],
) -> RunConfig:
    """The run config of one grid cell: regime, method hyperparameters, then
    ``extra`` (the command line's ``--set``) on top."""
    task = REGIMES[run.regime].get("task", "clustering")
    method_keys = _cell_table(hyperparameters.get(run.method, {}), task, run.regime)
    overrides = run.overrides(rounds, {**method_keys, **extra})
    return parse_run_config(
        {**overrides, "output-dir": "", "out": "", "diagnostics-dir": "auto"}
    )


def execute(
    run: BenchRun,
    config: RunConfig,
    out_dir: Path,
    *,
    runtime: str = "inprocess",
    embeddings: bool = False,
) -> dict[str, Any]:
    """Run one grid cell, write its result atomically and return it.

    With ``embeddings`` (in-process runtime, federated methods), also plots the
    agents' test codes before and after training to ``OUT/embeddings/``.
    """
    from simulations.cli import simulate, simulate_inprocess

    if runtime == "inprocess":
        result, grid = simulate_inprocess(config)
        if embeddings and config.method not in BASELINE_METHODS:
            save_embeddings(grid.contexts.values(), config, out_dir, run.name)
    else:
        tmp = out_dir / "runs" / f".{run.name}.ray.json"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        result = simulate(parse_run_config({**config.to_dict(), "out": str(tmp)}))
        tmp.unlink(missing_ok=True)
    result["regime"] = run.regime
    path = result_path(out_dir, run)
    partial = path.with_name(f".{path.name}.partial")
    write_result(result, partial)
    os.replace(partial, path)
    return result


def save_embeddings(
    contexts: Any, config: RunConfig, out_dir: Path, name: str
) -> list[Path]:
    """Plot every agent's test codes before training and after the run.

    Simulation-only diagnostic: reads each node's trained state from its
    ``Context`` and the agent's own test data (which never left the node).
    """
    from clients.node import agent_for_node, restore_trainer
    from otm_flower.agent import build_trainer

    before: list[np.ndarray] = []
    after: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    agent_ids: list[int] = []
    for context in contexts:
        agent, n_classes = agent_for_node(config, dict(context.node_config))
        before.append(build_trainer(config, agent, n_classes).encode(agent.x_test))
        after.append(
            restore_trainer(config, agent, n_classes, context).encode(agent.x_test)
        )
        labels.append(agent.y_test)
        agent_ids.append(agent.agent_id)
    folder = out_dir / "embeddings"
    return [
        plot_embedding(codes, labels, agent_ids, folder / f"{name}-{when}.png", title)
        for codes, when, title in (
            (before, "before", f"{name}: test codes before training"),
            (after, "after", f"{name}: test codes after training"),
        )
    ]


def _exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Pool worker initializer: end the worker once the bench process is gone.

    A bench killed by a signal cannot shut its pool down; without this its
    workers would go on running (and writing results) on their own.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _cell(
    run: BenchRun,
    config: RunConfig,
    out_dir: Path,
    runtime: str,
    embeddings: bool,
) -> tuple[BenchRun, dict[str, Any] | None, str]:
    """Worker entry: never raises, so one failing cell cannot end the grid."""
    try:
        result = execute(run, config, out_dir, runtime=runtime, embeddings=embeddings)
        return run, result, ""
    except Exception as err:  # noqa: BLE001 - reported, grid goes on
        return run, None, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"


def _describe(result: dict[str, Any]) -> str:
    mean = result["mean"]
    score = (
        f"accuracy {mean['accuracy']:.3f}"
        if mean.get("accuracy") is not None
        else f"ACC {mean['acc']:.3f} NMI {mean['nmi']:.3f}"
    )
    return f"{score} ({result['wall_s']:.0f} s)"


def run_grid(
    runs: Sequence[BenchRun],
    out_dir: str | Path,
    *,
    rounds: int | None = None,
    hyperparameters: Mapping[str, Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
    jobs: int = 1,
    runtime: str = "inprocess",
    embeddings: bool = False,
    log: Any = print,
) -> tuple[list[BenchRun], list[tuple[BenchRun, str]]]:
    """Run the grid's unfinished cells; return (finished now, failed with reason).

    Configs are validated for every cell before the first run starts.
    """
    out = Path(out_dir)
    todo = pending(runs, out)
    configs = {
        run: run_config_for(run, rounds, hyperparameters or {}, extra or {})
        for run in todo
    }
    log(
        f"bench: {len(runs)} runs in the grid, {len(runs) - len(todo)} already "
        f"done, {len(todo)} to run ({jobs} at a time) -> {out}"
    )
    done: list[BenchRun] = []
    failed: list[tuple[BenchRun, str]] = []
    start = time.perf_counter()

    def report(run: BenchRun, result: dict[str, Any] | None, error: str) -> None:
        finished = len(done) + len(failed) + 1
        elapsed = time.perf_counter() - start
        eta = elapsed / finished * (len(todo) - finished)
        if result is None:
            failed.append((run, error))
            log(f"[{finished}/{len(todo)}] {run.name}: FAILED {error.splitlines()[0]}")
        else:
            done.append(run)
            log(
                f"[{finished}/{len(todo)}] {run.name}: {_describe(result)}; "
                f"about {eta / 60:.0f} min left"
            )

    if jobs <= 1:
        for run in todo:
            report(
                *_cell(run, configs[run], out, runtime, embeddings and run.seed == 0)
            )
    else:
        with ProcessPoolExecutor(
            jobs,
            mp_context=get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = [
                pool.submit(
                    _cell, run, configs[run], out, runtime, embeddings and run.seed == 0
                )
                for run in todo
            ]
            for future in as_completed(futures):
                report(*future.result())
    return done, failed


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``otm-flower bench``."""
    parser = argparse.ArgumentParser(
        prog="otm-flower bench", description=__doc__.split("\n\n")[0]
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
    parser.add_argument(
        "--summarize",
        nargs="+",
        metavar="DIR",
        default=None,
        help="run nothing: print the tables of the results in these bench folders",
    )
    args = parser.parse_args(argv)
    from simulations.cli import _parse_set

    if args.summarize:
        results = [r for folder in args.summarize for r in load_results(folder)]
        print(summary_table(results))
        print(gains(results))
        return 0

    try:
        if args.seeds < 1 or args.jobs < 1:
            raise ConfigError("--seeds and --jobs must be >= 1")
        extra = _parse_set(args.set)
        hyper = load_hyperparameters(args.hyperparameters or None)
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
        for run in runs:  # every cell's whole config, before anything runs
            try:
                run_config_for(run, args.rounds, hyper, extra)
            except ConfigError as err:
                raise ConfigError(
                    f"{run.dataset}/{run.method}/{run.regime}: {err}"
                ) from err
        if args.embeddings and args.runtime != "inprocess":
            raise ConfigError("--embeddings needs --runtime inprocess")
        done, failed = run_grid(
            runs,
            args.out,
            rounds=args.rounds,
            hyperparameters=hyper,
            extra=extra,
            jobs=args.jobs,
            runtime=args.runtime,
            embeddings=args.embeddings,
        )
    except (ConfigError, ValueError) as err:
        print(f"otm-flower bench: error: {err}", file=sys.stderr)
        return 2
    summary = write_summary(args.out, load_results(args.out))
    print(summary.read_text())
    print(f"bench: summary in {summary}; per-run results in {Path(args.out) / 'runs'}")
    for run, error in failed:
        print(f"bench: {run.name} failed: {error}", file=sys.stderr)
    if failed:
        (Path(args.out) / "failures.json").write_text(
            json.dumps({run.name: error for run, error in failed}, indent=2)
        )
    return 1 if failed else 0
