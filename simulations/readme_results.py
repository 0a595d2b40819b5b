"""The README's results block, generated from benchmark folders.

``otm-flower bench --readme DIR...`` rewrites what lies between the marker
comments :data:`START` and :data:`END` of a README: one row per (data set,
regime), mean ± std over seeds of each method's mean-over-agents test score
(percent), OTM's purity, its gains over ``local`` and over ``fedavg`` and its
coupling agreement next to chance, stamped with the date, the machine and the
commands that made the runs. Rows of the block it replaces whose (data set,
regime) the folders do not hold are kept, with the notes that made them, so a
regime measured by a later command joins the rows of the earlier ones.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from otm_flower.results import agreement_chance
from simulations.benchmark.grid import load_results
from simulations.benchmark.readme_rows import Block, RowKey, kept, parse_block, rows_tag
from simulations.benchmark.scores import (
    finite,
    group_results,
    mean_present,
    mean_score,
    present,
    regime_sort_key,
    score_key,
    shared_from,
)
from simulations.benchmark.tables import markdown_table
from simulations.machine import machine_stamp

START = "<!-- results:start -->"
END = "<!-- results:end -->"

#: Methods the README table shows, in column order, where the results hold them.
README_METHODS = ("otm", "otm-head", "fedavg", "local", "raw", "oracle")

#: Where a benchmark folder records the command that made it.
COMMAND_FILE = "command.json"


#: The code a bench run imports: what the recorded commit describes.
_SOURCE_DIRS = ("otm_flower", "simulations", "strategies", "clients", "configs")


def source_commit(root: str | Path | None = None) -> str | None:
    """The git commit of the code that runs (``+dirty`` when its source folders
    have uncommitted changes), or ``None`` outside a git checkout."""
    repo = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(repo)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", *_SOURCE_DIRS],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if status else head


def record_command(out_dir: str | Path, argv: Sequence[str]) -> Path:
    """Write ``out_dir/command.json``: the bench command line, date, machine and
    the commit of the code (:func:`source_commit`)."""
    path = Path(out_dir) / COMMAND_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "argv": ["otm-flower", "bench", *argv],
        "machine": machine_stamp(),
        "commit": source_commit(),
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


def _recorded(folder: Path) -> str:
    """How a folder's runs were made: the recorded command, or a note that none was."""
    path = folder / COMMAND_FILE
    if not path.is_file():
        return f"`{folder.name}` (command not recorded)"
    doc = json.loads(path.read_text())
    command = " ".join(doc.get("argv", []))
    commit = f", commit {doc['commit']}" if doc.get("commit") else ""
    return f"`{command}` ({doc.get('machine', 'machine unknown')}{commit})"


def _agreement(runs: list[dict[str, Any]]) -> str:
    """OTM's coupling agreement (mean over seeds) and its chance level."""
    value = mean_present(finite(r.get("coupling_agreement")) for r in runs)
    if value is None:
        return "-"
    chance = agreement_chance(runs[0])
    return f"{value:.2f}" if chance is None else f"{value:.2f} ({chance[0]:.2f})"


def _percent(runs: list[dict[str, Any]], key: str | None = None) -> str:
    """Mean ± std over seeds of a score, in percent with one decimal."""
    values = [100 * v for v in present(mean_score(r, key) for r in runs)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def _gain(runs: dict[str, list[dict[str, Any]]], other: str) -> str:
    otm, base = (
        mean_present(mean_score(r) for r in runs.get(m, [])) for m in ("otm", other)
    )
    return "-" if otm is None or base is None else f"{100 * (otm - base):+.1f}"


def _row(
    dataset: str, regime: str, runs: dict[str, list[dict[str, Any]]], methods: list[str]
) -> list[str]:
    otm = runs.get("otm", [])
    keys = sorted({score_key(r) for rs in runs.values() for r in rs})
    return [
        dataset,
        regime,
        "/".join(keys),
        *(_percent(runs.get(m, [])) for m in methods),
        _percent(otm, "purity"),
        _gain(runs, "local"),
        _gain(runs, "fedavg"),
        _agreement(otm),
    ]


def _header(methods: Sequence[str]) -> list[str]:
    return [
        "data set",
        "regime",
        "score",
        *methods,
        "otm purity",
        "otm − local",
        "otm − fedavg",
        "coupling agreement (chance)",
    ]


def results_table(results: list[dict[str, Any]], previous: Block | None = None) -> str:
    """The README's results table (markdown) of ``results``: one row per data set
    and regime, scores in percent, with the rows of ``previous`` (an earlier
    block's kept part) beside them, in data-set then regime order."""
    groups = group_results(results)
    old = previous or Block()
    methods = [
        m
        for m in README_METHODS
        if any(m in g for g in groups.values()) or m in old.header
    ]
    header = _header(methods)
    rows: dict[RowKey, list[str]] = {
        key: [cells.get(column, "-") for column in header]
        for key, cells in old.rows.items()
    }
    rows.update({(d, g): _row(d, g, runs, methods) for (d, g), runs in groups.items()})
    order = sorted(rows, key=lambda k: (k[0], regime_sort_key(k[1])))
    return "\n".join(markdown_table(header, [rows[k] for k in order]))


def _shared_note(results: list[dict[str, Any]]) -> str:
    """A sentence naming the rows whose baselines are the sibling regime's runs."""
    pairs = sorted(
        {
            (regime, source)
            for (_, regime), runs in group_results(results).items()
            for rs in runs.values()
            if (source := shared_from(rs)) is not None
        }
    )
    return "".join(
        f" The baselines of the `{regime}` rows are the `{source}` runs (the same "
        "runs: linked records reach only OTM uploads)."
        for regime, source in pairs
    )


def _stamp(folders: Sequence[str | Path], results: list[dict[str, Any]]) -> str:
    """The note of a generation: date, machine, folders, runs and commands."""
    paths = [Path(f) for f in folders]
    seeds = sorted({str(r.get("seed")) for r in results})
    rounds = sorted({str(r.get("rounds")) for r in results})
    return textwrap.fill(
        f"Generated {machine_stamp()} by `otm-flower bench --readme "
        f"{' '.join(str(f) for f in folders)}` from {len(results)} runs "
        f"(seeds {', '.join(seeds)}) made by "
        f"{'; '.join(_recorded(f) for f in paths)}. Scores: percent, mean ± std "
        "over seeds of the mean over agents of the held-out test score at the "
        f"final round (rounds: {', '.join(rounds)}; ACC for clustering, accuracy "
        f"for classification).{_shared_note(results)}",
        width=88,
        break_long_words=False,
        break_on_hyphens=False,
    )


def readme_block(folders: Sequence[str | Path], previous: str | None = None) -> str:
    """The whole generated block, markers included, from benchmark ``folders``.

    Parameters
    ----------
    folders : sequence of str or Path
        Bench output folders.
    previous : str, optional
        The block being replaced: its rows of (data set, regime) pairs the
        folders do not hold are kept, with the notes that made them.

    Raises
    ------
    ValueError
        When the folders hold no result.
    """
    paths = [Path(f) for f in folders]
    results = [r for f in paths for r in load_results(f)]
    if not results:
        raise ValueError(f"no results under {[str(f / 'runs') for f in paths]}")
    new_keys = set(group_results(results))
    old = kept(parse_block(previous), new_keys) if previous else Block()
    notes = [rows_tag(new_keys), _stamp(folders, results)]
    if old.rows:
        notes[-1] += (
            "\nThe rows of other data sets and regimes are kept from the "
            "generations below."
        )
    for keys, text in old.notes:
        notes += ["", rows_tag(keys or ()), text]
    return "\n".join(
        [
            START,
            "<!-- generated by `otm-flower bench --readme DIR...`: edits here are "
            "overwritten -->",
            *notes,
            "",
            results_table(results, old),
            END,
        ]
    )


def read_block(readme: str | Path, markers: tuple[str, str] = (START, END)) -> str:
    """The README's current block between the ``markers`` (the results block's).

    Raises
    ------
    ValueError
        When the README lacks either marker, or has them out of order.
    """
    text = Path(readme).read_text(encoding="utf-8")
    start, end = _block_span(readme, text, markers)
    return text[start:end]


def update_readme(
    readme: str | Path, block: str, markers: tuple[str, str] = (START, END)
) -> Path:
    """Replace the README's block between the ``markers`` (the results block's).

    Raises
    ------
    ValueError
        When the README lacks either marker, or has them out of order.
    """
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = _block_span(path, text, markers)
    path.write_text(text[:start] + block + text[end:], encoding="utf-8")
    return path


def _block_span(
    path: str | Path, text: str, markers: tuple[str, str]
) -> tuple[int, int]:
    """Where the block between ``markers`` starts and ends (end marker included)."""
    first, last = markers
    start, end = text.find(first), text.find(last)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no {first} ... {last} block to regenerate")
    return start, end + len(last)
