"""The privacy table: test ACC against epsilon, from the privacy sweep's runs.

``python -m research.privacy_table DIR [DIR ...]`` prints one row per cell
(method, term guard, rows drawn per upload, noise multiplier) of the run files
that :mod:`research.privacy_sweep` (or ``otm-flower run``) wrote into the
folders: the epsilon reached, mean ± std over seeds of the final round's test
ACC, and the share of the non-private gain over ``local`` a private cell keeps
(against the non-private OTM cell with the same guard and upload size).
``--readme README.md`` also writes the table between :data:`MARKERS`.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from simulations.benchmark.markdown import markdown_table
from simulations.machine import machine_stamp
from simulations.readme_results import update_readme

MARKERS = ("<!-- privacy:start -->", "<!-- privacy:end -->")
HEADER = (
    "method",
    "term guard",
    "rows per upload",
    "dp-noise",
    "epsilon reached (max over agents)",
    "test ACC (mean ± std)",
    "seeds",
    "share of the non-private gain over local kept",
)


class Cell(NamedTuple):
    """What sets a row apart: the method and the settings the sweep varies."""

    method: str
    guard: bool
    upload: int
    noise: float


def load_runs(folders: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every run result (``*.json`` but ``summary.json``) in ``folders``.

    Raises
    ------
    ValueError
        When a file is not a run result, or the folders hold none.
    """
    runs = [
        _read_run(path)
        for folder in map(Path, folders)
        for path in sorted(folder.glob("*.json"))
        if path.name != "summary.json"
    ]
    if not runs:
        raise ValueError(f"no run results in {[str(f) for f in folders]}")
    return runs


def _read_run(path: Path) -> dict[str, Any]:
    """One run result; ``ValueError`` naming ``path`` when it is not one."""
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
        valid = isinstance(run["config"], dict) and "acc" in run["history"][-1]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise ValueError(f"{path} is not a run result ({error!r})") from error
    if not valid:
        raise ValueError(f"{path} is not a run result (no config or final ACC)")
    return run


def cell_of(run: dict[str, Any]) -> Cell:
    """The row ``run`` belongs to (``local`` rows ignore the guard and DP)."""
    config = run["config"]
    if run["method"] == "local":
        return Cell("local", False, 0, 0.0)
    noise = float(config["dp-noise"]) if float(config["dp-clip"]) > 0 else 0.0
    return Cell(
        run["method"], bool(config["term-guard"]), int(config["mix-batch-size"]), noise
    )


def _accuracies(runs: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([float(r["history"][-1]["acc"]) for r in runs])


def _epsilon(runs: Sequence[dict[str, Any]]) -> str:
    values = [(r.get("privacy") or {}).get("epsilon_max") for r in runs]
    values = [float(v) for v in values if v is not None]
    return f"{np.mean(values):.2f}" if values else "-"


def _share(cell: Cell, groups: dict[Cell, list[dict[str, Any]]]) -> str:
    """The share of the non-private gain over ``local`` that ``cell`` keeps, all
    three on the seeds they share (blank for a non-private cell)."""
    reference = groups.get(cell._replace(noise=0.0))
    local = groups.get(Cell("local", False, 0, 0.0))
    if cell.noise == 0 or reference is None or local is None:
        return ""
    seeds = set.intersection(
        *({r["seed"] for r in g} for g in (groups[cell], reference, local))
    )
    if not seeds:
        return "n/a (no seed in common with the non-private runs)"

    def mean(runs: list[dict[str, Any]]) -> float:
        return float(_accuracies([r for r in runs if r["seed"] in seeds]).mean())

    gain = mean(reference) - mean(local)
    if gain <= 0:
        return f"n/a (no non-private gain: {100 * gain:+.1f} points)"
    return f"{(mean(groups[cell]) - mean(local)) / gain:+.2f}"


def table_lines(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The Markdown table of ``runs``, one row per :class:`Cell`."""
    groups: dict[Cell, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[cell_of(run)].append(run)
    order = sorted(
        groups, key=lambda c: (c.method != "local", not c.guard, c.upload, c.noise)
    )
    rows = []
    for cell in order:
        acc = _accuracies(groups[cell])
        private = cell.noise > 0
        rows.append(
            (
                cell.method,
                "-" if cell.method == "local" else ("on" if cell.guard else "off"),
                "-" if cell.method == "local" else str(cell.upload),
                f"{cell.noise:.4f}" if private else "-",
                _epsilon(groups[cell]) if private else "none",
                f"{acc.mean():.3f} ± {acc.std():.3f}",
                str(len(acc)),
                _share(cell, groups),
            )
        )
    return markdown_table(HEADER, rows)


def readme_block(folders: Sequence[str | Path]) -> str:
    """The README's privacy block, markers included, from the runs in ``folders``."""
    runs = load_runs(folders)
    sample = next((r for r in runs if r["method"] != "local"), runs[0])
    seeds = sorted({int(r["seed"]) for r in runs})
    rounds = sorted({str(r["rounds"]) for r in runs})
    note = (
        f"Generated {machine_stamp()} by `python -m research.privacy_table "
        f"{' '.join(map(str, folders))} --readme README.md` from {len(runs)} runs "
        f"({sample['dataset']}, anchor-rate {sample['config']['anchor-rate']}, "
        f"rounds {', '.join(rounds)}, seeds {', '.join(map(str, seeds))}; test ACC, "
        "mean over agents, final round; the share of the gain is taken on the "
        "seeds a cell shares with its non-private run and local)."
    )
    note = textwrap.fill(note, width=88, break_long_words=False, break_on_hyphens=False)
    return "\n".join([MARKERS[0], note, "", *table_lines(runs), MARKERS[1]])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--readme", type=Path, help="write the table into this README")
    args = parser.parse_args(argv)
    block = readme_block(args.folders)
    print(block)
    if args.readme is not None:
        update_readme(args.readme, block, MARKERS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
