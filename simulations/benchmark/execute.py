"""Run a benchmark grid's cells (one after another or in a process pool).

Each cell's result is written atomically to ``OUT/runs/<run>.json``, so an
interrupted grid resumes where it stopped.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from otm_flower.config import (
    BASELINE_METHODS,
    ConfigError,
    RunConfig,
    parse_run_config,
)
from otm_flower.results import write_result
from simulations.benchmark.grid import (
    REGIMES,
    BenchRun,
    load_result,
    pending,
    result_path,
)
from simulations.benchmark.hyperparameters import run_config_for
from simulations.benchmark.plots import plot_embedding

#: What a cell returns: the run, its result (``None`` if it failed) and the error.
CellOutcome = tuple[BenchRun, dict[str, Any] | None, str]


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
    from simulations.runner import simulate, simulate_inprocess

    if runtime == "inprocess":
        result, grid = simulate_inprocess(config)
        if embeddings and config.method not in BASELINE_METHODS:
            save_embeddings(grid.contexts.values(), config, out_dir, run.name)
    else:
        tmp = out_dir / "runs" / f".{run.name}.ray.json"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        result = simulate(
            parse_run_config({**config.to_dict(), "out": str(tmp)}), runtime="ray"
        )
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
        assert agent.y_test is not None  # simulated agents always hold labels
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
) -> CellOutcome:
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
    if mean.get("purity") is not None:
        score += f" purity {mean['purity']:.3f}"
    return f"{score} ({result['wall_s']:.0f} s)"


class _Progress:
    """Collects the cells' outcomes and logs one line per finished cell."""

    def __init__(self, total: int, log: Callable[[str], Any]) -> None:
        self.total = total
        self.log = log
        self.done: list[BenchRun] = []
        self.failed: list[tuple[BenchRun, str]] = []
        self.start = time.perf_counter()

    def report(self, run: BenchRun, result: dict[str, Any] | None, error: str) -> None:
        """Record one cell's outcome and log it (with the time left)."""
        finished = len(self.done) + len(self.failed) + 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / finished * (self.total - finished)
        if result is None:
            self.failed.append((run, error))
            self.log(
                f"[{finished}/{self.total}] {run.name}: FAILED {error.splitlines()[0]}"
            )
        else:
            self.done.append(run)
            self.log(
                f"[{finished}/{self.total}] {run.name}: {_describe(result)}; "
                f"about {eta / 60:.0f} min left"
            )


def _outcomes(
    cells: Sequence[tuple[BenchRun, RunConfig, Path, str, bool]], jobs: int
) -> Iterator[CellOutcome]:
    """Each cell's outcome: in order with one job, as they finish with more."""
    if jobs <= 1:
        for cell in cells:
            yield _cell(*cell)
        return
    with ProcessPoolExecutor(
        jobs,
        mp_context=get_context("spawn"),
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        futures = [pool.submit(_cell, *cell) for cell in cells]
        for future in as_completed(futures):
            yield future.result()


def _set_keys(run: BenchRun, rounds: int | None, extra: Mapping[str, Any]) -> set[str]:
    """The run-config keys a cell's regime and command line set (kebab case)."""
    keys = {*REGIMES[run.regime], *(k.replace("_", "-") for k in extra)}
    return keys | ({"num-server-rounds"} if rounds is not None else set())


def check_resumable(
    runs: Sequence[BenchRun],
    out_dir: str | Path,
    rounds: int | None,
    hyperparameters: Mapping[str, Mapping[str, Any]],
    extra: Mapping[str, Any],
) -> None:
    """Refuse to resume into a folder whose finished runs were made with other
    values of the keys this grid sets (regime, ``--set``, ``--rounds``): a run's
    file name does not hold them, so such a run would silently stand in for one
    of this grid.

    Raises
    ------
    ConfigError
        Naming the first run, key and the two values that differ.
    """
    todo = set(pending(runs, out_dir))
    for run in runs:
        if run in todo:
            continue
        stored = load_result(result_path(out_dir, run)).get("config") or {}
        planned = run_config_for(run, rounds, hyperparameters, extra).to_dict()
        for key in sorted(_set_keys(run, rounds, extra)):
            if key in stored and stored[key] != planned.get(key):
                raise ConfigError(
                    f"{out_dir} already holds {run.name} made with {key}="
                    f"{stored[key]!r}, and this grid asks {key}={planned.get(key)!r}; "
                    "use another --out for another setting"
                )


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

    Configs are validated for every cell before the first run starts. With
    ``embeddings``, seed-0 cells also plot their agents' codes.

    Raises
    ------
    ConfigError
        When ``out_dir`` holds finished runs made with other settings
        (:func:`check_resumable`).
    """
    out = Path(out_dir)
    check_resumable(runs, out, rounds, hyperparameters or {}, extra or {})
    todo = pending(runs, out)
    configs = {
        run: run_config_for(run, rounds, hyperparameters or {}, extra or {})
        for run in todo
    }
    log(
        f"bench: {len(runs)} runs in the grid, {len(runs) - len(todo)} already "
        f"done, {len(todo)} to run ({jobs} at a time) -> {out}"
    )
    progress = _Progress(len(todo), log)
    cells = [
        (run, configs[run], out, runtime, embeddings and run.seed == 0) for run in todo
    ]
    for outcome in _outcomes(cells, jobs):
        progress.report(*outcome)
    return progress.done, progress.failed
