"""Per-method hyperparameters of a benchmark grid, and each cell's run config.

A TOML file holds one table of run-config keys per method (``[otm]``,
``[fedavg]``, ...), optionally with task subtables (``[otm.clustering]``) and
regime subtables (``[otm.anchored]``); ``inherit = "otm"`` starts a method's table
from another's.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from otm_flower.config import METHODS, TASKS, ConfigError, RunConfig, parse_run_config
from simulations.benchmark.grid import REGIMES, BenchRun, regime_task

#: Name of the hyperparameter file, in ``configs/`` of a source checkout and next
#: to this module in the wheel (pyproject's ``force-include``).
HYPERPARAMETERS_FILE = "hyperparameters.toml"


def default_hyperparameters_path() -> Path:
    """The project's hyperparameter file: the source checkout's
    ``configs/hyperparameters.toml`` where it exists, else the copy the wheel ships
    inside :mod:`simulations.benchmark` (a missing file is reported when loaded)."""
    here = Path(__file__).resolve().parent
    checkout = here.parents[1] / "configs" / HYPERPARAMETERS_FILE
    return checkout if checkout.is_file() else here / HYPERPARAMETERS_FILE


#: The project's hyperparameter file, the ``otm-flower bench`` default.
DEFAULT_HYPERPARAMETERS = default_hyperparameters_path()

#: Key of a method table that names the method table it starts from.
INHERIT = "inherit"

#: Names of the subtables a method table may hold: tasks, then regimes.
SUBTABLES = tuple(dict.fromkeys((*TASKS, *REGIMES)))


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
    tables = _read_method_tables(path)
    try:
        tables = {method: _inherited(tables, method) for method in tables}
    except ConfigError as err:
        raise ConfigError(f"hyperparameter file {path}: {err}") from err
    for method, table in tables.items():
        _validate_cells(path, method, table)
    return tables


def _read_method_tables(path: Path) -> dict[str, Any]:
    """The file's top-level tables, each checked to name a method."""
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
    return tables


def _validate_cells(path: Path, method: str, table: Mapping[str, Any]) -> None:
    """Check a method's keys as a run config in every regime."""
    for regime in REGIMES:
        task = regime_task(regime)
        try:
            parse_run_config(_cell_table(table, task, regime))
        except ConfigError as err:
            raise ConfigError(
                f"hyperparameter file {path}, [{method}] "
                f"(task {task}, regime {regime}): {err}"
            ) from err


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
    ``extra`` (the command line's ``--set``) on top.

    With ``preset = "paper"`` in ``extra`` the hyperparameter tables (the
    validated settings) are left out, so the cell runs the paper's reference
    values.
    """
    task = regime_task(run.regime)
    method_keys = _cell_table(hyperparameters.get(run.method, {}), task, run.regime)
    if str(extra.get("preset", "")).strip("\"'") == "paper":
        method_keys = {}
    overrides = run.overrides(rounds, {**method_keys, **extra})
    return parse_run_config(
        {**overrides, "output-dir": "", "out": "", "diagnostics-dir": "auto"}
    )
