"""The benchmark: grids of runs, their summaries and plots.

Modules: :mod:`~simulations.benchmark.grid` (plan runs, resume a grid),
:mod:`~simulations.benchmark.scores` (scores and grouping of result documents),
:mod:`~simulations.benchmark.tables` (table rows, as markdown),
:mod:`~simulations.benchmark.plots` (rounds and embedding plots),
:mod:`~simulations.benchmark.report` (``summary.md``),
:mod:`~simulations.benchmark.hyperparameters` (per-method run configs) and
:mod:`~simulations.benchmark.execute` (running the cells). The names below are
those of the grid, scores, tables, plots and report modules; importing them
neither imports nor runs Flower.
"""

from simulations.benchmark.grid import (
    REGIMES,
    REQUIRED_KEYS,
    BenchRun,
    applies,
    dataset_label,
    load_results,
    pending,
    plan_grid,
    regime_task,
    result_path,
)
from simulations.benchmark.plots import plot_embedding, plot_rounds
from simulations.benchmark.report import write_summary
from simulations.benchmark.scores import (
    METHOD_ORDER,
    format_pm,
    group_results,
    mean_score,
    score_key,
    weakest_score,
)
from simulations.benchmark.tables import (
    GAINS_COLUMNS,
    SUMMARY_COLUMNS,
    gains,
    gains_rows,
    summary_sections,
    summary_table,
)

__all__ = [
    "GAINS_COLUMNS",
    "METHOD_ORDER",
    "REGIMES",
    "REQUIRED_KEYS",
    "SUMMARY_COLUMNS",
    "BenchRun",
    "applies",
    "dataset_label",
    "format_pm",
    "gains",
    "gains_rows",
    "group_results",
    "load_results",
    "mean_score",
    "pending",
    "plan_grid",
    "plot_embedding",
    "plot_rounds",
    "regime_task",
    "result_path",
    "score_key",
    "summary_sections",
    "summary_table",
    "weakest_score",
    "write_summary",
]
