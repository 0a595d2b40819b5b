"""Benchmark grids: plan the runs, find where each result lives, resume a grid.

A benchmark is a grid of runs, one per (dataset, method, regime, seed). Each run
writes its result document (:func:`otm_flower.results.build_result`, plus a
top-level ``"regime"`` key) to ``<out_dir>/runs/<run name>.json``; a grid resumes by
running only :func:`pending` runs. Pure Python: it neither imports nor runs Flower.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otm_flower.config import METHOD_TASK

#: Regime name -> run-config overrides. Adding a regime is one entry here.
REGIMES: dict[str, dict[str, Any]] = {
    "unaligned": {"task": "clustering", "unaligned-rate": 1.0},
    "classification": {"task": "classification", "unaligned-rate": 1.0},
    "anchored": {"task": "clustering", "unaligned-rate": 1.0, "anchor-rate": 0.05},
}

#: Keys a result document must have to count as finished.
REQUIRED_KEYS = ("dataset", "method", "task", "seed", "agents", "mean")

_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def _safe(text: str) -> str:
    """Lowercase ``text`` and replace each run of characters outside [a-z0-9-_]."""
    return _UNSAFE.sub("-", text.lower()).strip("-") or "x"


def dataset_label(dataset: Any) -> str:
    """Short name of a data set: the file stem of a path, lowercase, path-safe."""
    return _safe(Path(str(dataset)).stem)


def regime_task(regime: str) -> str:
    """The task a regime runs (``clustering`` unless its overrides say otherwise)."""
    task: str = REGIMES[regime].get("task", "clustering")
    return task


@dataclass(frozen=True)
class BenchRun:
    """One cell of a benchmark grid.

    Parameters
    ----------
    dataset : str
        Data-set name or path (as the ``dataset`` run-config key takes it).
    method : str
        Method name (``"otm"``, ``"fedavg"``, ...).
    regime : str
        A key of :data:`REGIMES`.
    seed : int
        Run seed.
    """

    dataset: str
    method: str
    regime: str
    seed: int

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(
                f"unknown regime {self.regime!r}; known: {', '.join(REGIMES)}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")

    @property
    def name(self) -> str:
        """Path-safe file stem, e.g. ``handwritten__otm__unaligned__seed0``."""
        return "__".join(
            (
                dataset_label(self.dataset),
                _safe(self.method),
                _safe(self.regime),
                f"seed{self.seed}",
            )
        )

    def overrides(
        self, rounds: int | None = None, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run config (kebab case) of this run.

        Parameters
        ----------
        rounds : int, optional
            ``num-server-rounds``; left to the default when ``None``.
        extra : Mapping[str, Any], optional
            Further keys (e.g. per-method hyperparameters), applied last; snake-case
            keys are turned into kebab case.

        Returns
        -------
        dict
            ``dataset``, ``method``, ``seed``, the regime's overrides,
            ``num-server-rounds`` and ``extra``, later keys winning. The regime
            itself is not a run-config key: the runner stores it in the result.
        """
        config: dict[str, Any] = {
            "dataset": self.dataset,
            "method": self.method,
            "seed": self.seed,
            **REGIMES[self.regime],
        }
        if rounds is not None:
            config["num-server-rounds"] = rounds
        for key, value in (extra or {}).items():
            config[key.replace("_", "-")] = value
        return config


def _nonempty(name: str, values: Iterable[Any]) -> list[Any]:
    if isinstance(values, str):
        raise ValueError(
            f"{name} must be a sequence of values, not the string {values!r}"
        )
    out = list(dict.fromkeys(values))
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def plan_grid(
    datasets: Iterable[str],
    methods: Iterable[str],
    regimes: Iterable[str],
    seeds: Iterable[int],
) -> list[BenchRun]:
    """All runs of a grid, ordered by dataset, regime, seed, then method.

    Duplicated values are dropped (first occurrence kept).

    Raises
    ------
    ValueError
        If an input is empty or a bare string, a regime is unknown, or a seed is
        not an int.
    """
    ds = _nonempty("datasets", datasets)
    ms = _nonempty("methods", methods)
    rs = _nonempty("regimes", regimes)
    ss = _nonempty("seeds", seeds)
    unknown = [r for r in rs if r not in REGIMES]
    if unknown:
        raise ValueError(f"unknown regime(s) {unknown}; known: {', '.join(REGIMES)}")
    return [BenchRun(d, m, r, s) for d in ds for r in rs for s in ss for m in ms]


def applies(run: BenchRun) -> bool:
    """Whether the run's method can run in its regime (``otm-head`` needs a task
    head, so only the classification regime)."""
    task = regime_task(run.regime)
    return METHOD_TASK.get(run.method, task) == task


def result_path(out_dir: str | Path, run: BenchRun) -> Path:
    """Where a run's result document lives: ``out_dir/runs/<run.name>.json``."""
    return Path(out_dir) / "runs" / f"{run.name}.json"


def _read_result(path: Path) -> dict[str, Any] | None:
    """A result document, or ``None`` (with a warning) if unreadable or incomplete."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError
        warnings.warn(f"unreadable result {path}: {err}", stacklevel=3)
        return None
    if not isinstance(doc, dict) or any(k not in doc for k in REQUIRED_KEYS):
        warnings.warn(
            f"incomplete result {path}: expected a JSON object with keys "
            f"{', '.join(REQUIRED_KEYS)}",
            stacklevel=3,
        )
        return None
    return doc


def load_result(path: str | Path) -> dict[str, Any]:
    """One finished result document (``{}`` if unreadable or incomplete, warned)."""
    return _read_result(Path(path)) or {}


def pending(runs: Iterable[BenchRun], out_dir: str | Path) -> list[BenchRun]:
    """Runs still to do: result missing, or unreadable/corrupt (warned about)."""
    return [
        run
        for run in runs
        if not (path := result_path(out_dir, run)).is_file()
        or _read_result(path) is None
    ]


def load_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """All readable result documents under ``out_dir/runs`` (sorted by file name).

    Unreadable files are skipped with a warning. A result without a ``"regime"``
    key gets ``"classification"`` or ``"unaligned"`` from its task.
    """
    results = []
    for path in sorted((Path(out_dir) / "runs").glob("*.json")):
        doc = _read_result(path)
        if doc is None:
            continue
        if doc.get("regime") is None:
            task = doc.get("task")
            doc["regime"] = (
                "classification" if task == "classification" else "unaligned"
            )
        results.append(doc)
    return results
