"""The benchmark's summary file: ``summary.md`` (tables) and ``rounds.png``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simulations.benchmark.grid import dataset_label
from simulations.benchmark.plots import plot_rounds
from simulations.benchmark.scores import (
    method_sort_key,
    regime_sort_key,
    result_regime,
)
from simulations.benchmark.tables import gains, summary_table


def _seed_key(seed: Any) -> tuple[bool, float, str]:
    numeric = isinstance(seed, int | float) and not isinstance(seed, bool)
    return not numeric, float(seed) if numeric else 0.0, str(seed)


def _listed(values: Iterable[Any], key: Any = None) -> str:
    return ", ".join(str(v) for v in sorted(set(values), key=key)) or "-"


def _header(results: list[dict[str, Any]]) -> str:
    """The summary's line naming the datasets, regimes, methods and seeds."""
    return (
        f"Datasets: {_listed(dataset_label(r.get('dataset')) for r in results)}; "
        f"regimes: {_listed((result_regime(r) for r in results), regime_sort_key)}; "
        "methods: "
        f"{_listed((str(r.get('method')) for r in results), method_sort_key)}; "
        f"seeds: {_listed((r.get('seed') for r in results), _seed_key)}; "
        f"runs: {len(results)}."
    )


def write_summary(out_dir: str | Path, results: list[dict[str, Any]]) -> Path:
    """Write ``out_dir/summary.md`` (tables) and ``out_dir/rounds.png``.

    Returns
    -------
    Path
        The summary file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_rounds(results, out_dir / "rounds.png")
    text = "\n".join(
        [
            "# Benchmark summary",
            "",
            _header(results),
            "",
            "## Results (mean ± std over seeds)",
            "",
            summary_table(results),
            "## Gains of OTM",
            "",
            gains(results),
            "## Score per round",
            "",
            "![score per round](rounds.png)",
            "",
        ]
    )
    path = out_dir / "summary.md"
    path.write_text(text)
    return path
