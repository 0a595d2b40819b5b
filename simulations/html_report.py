"""Self-contained HTML reports of a run and of a benchmark folder.

A report is one ``report.html`` file: its tables, the per-round plot, the
embedding plots where they exist and the config, with every image embedded as a
base64 PNG (no external assets, no scripts), so it opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from otm_flower.results import METRIC_KEYS, plot_history, write_result
from simulations.benchmark.grid import load_results
from simulations.benchmark.plots import plot_rounds
from simulations.benchmark.tables import (
    GAINS_COLUMNS,
    SUMMARY_COLUMNS,
    gains_rows,
    summary_sections,
)
from simulations.machine import machine_stamp

REPORT_NAME = "report.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
td { white-space: nowrap; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } .stamp { color: #666; }
"""

_AGENT_COLUMNS = ("id", "modality", "n_train", "n_test", *METRIC_KEYS, "round")


def cell_text(value: Any) -> str:
    """A table cell's text: floats to 4 digits, ``None`` as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def html_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = ""
) -> str:
    """An HTML table (every cell escaped)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell_text(v))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def png_image(path: Path, alt: str) -> str:
    """An ``<img>`` holding the PNG at ``path`` as a base64 data URI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, sections: Iterable[str]) -> str:
    """A whole HTML document: title, machine stamp, then ``sections``."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="stamp">Written {html.escape(machine_stamp())}.</p>'
        + "".join(sections)
        + "</body></html>\n"
    )


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _heading(text: str, level: int = 2) -> str:
    return f"<h{level}>{html.escape(text)}</h{level}>"


def _config_table(config: dict[str, Any]) -> str:
    return html_table(("key", "value"), sorted(config.items()), "run config")


def _run_overview(result: dict[str, Any]) -> str:
    keys = (
        "dataset",
        "method",
        "task",
        "seed",
        "rounds",
        "wall_s",
        "bytes_up",
        "bytes_down",
        "coupling_agreement",
    )
    return html_table(("", "value"), [(k, result.get(k)) for k in keys], "run")


def _agent_columns(result: dict[str, Any]) -> tuple[str, ...]:
    """The per-agent columns: the standard ones, then any other metric the rows
    carry (``silhouette``, ...), alphabetically."""
    known = set(_AGENT_COLUMNS)
    extra = sorted({k for a in result.get("agents", []) for k in a} - known)
    return (*_AGENT_COLUMNS, *extra)


def _run_scores(result: dict[str, Any]) -> list[str]:
    columns = _agent_columns(result)
    agents = [[a.get(k) for k in columns] for a in result.get("agents", [])]
    mean = result.get("mean") or {}
    extra = columns[len(_AGENT_COLUMNS) :]
    agents.append(
        ["mean", "", "", "", *(mean.get(k) for k in (*METRIC_KEYS, "round", *extra))]
    )
    history = [
        [h.get("round"), *(h.get(k) for k in METRIC_KEYS)]
        for h in result.get("history", [])
    ]
    return [
        _heading("Test scores per agent (final round)"),
        html_table(columns, agents, "per agent and mean over agents"),
        _heading("Mean over agents per round"),
        html_table(("round", *METRIC_KEYS), history, "per round"),
    ]


def write_run_report(result: dict[str, Any], folder: str | Path) -> Path:
    """Write ``folder/report.html`` for one run's result document.

    The per-round plot is ``folder/history.png`` (drawn first where it is
    absent); every ``folder/embedding*.png`` is shown too.

    Returns
    -------
    Path
        The report file.
    """
    folder = Path(folder)
    history_png = folder / "history.png"
    if not history_png.is_file():
        plot_history(result, history_png)
    sections = [_run_overview(result), *_run_scores(result)]
    sections += [_heading("Per-round plot"), png_image(history_png, "per round")]
    for png in sorted(folder.glob("embedding*.png")):
        sections += [_heading(f"Embedding: {png.stem}"), png_image(png, png.stem)]
    if result.get("privacy"):
        sections += [_heading("Privacy"), html_table(("", "value"), _items(result))]
    sections += [_heading("Config"), _config_table(result.get("config") or {})]
    title = f"{result.get('method')} on {result.get('dataset')}"
    return _write(folder / REPORT_NAME, page(title, sections))


def _items(result: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted((result.get("privacy") or {}).items())


def write_run_outputs(result: dict[str, Any], run_dir: str | Path) -> dict[str, Path]:
    """Write a run's output folder: ``result.json``, ``history.png`` and
    ``report.html``; returns their paths by name."""
    run_dir = Path(run_dir)
    return {
        "result": write_result(result, run_dir / "result.json"),
        "history": plot_history(result, run_dir / "history.png"),
        "report": write_run_report(result, run_dir),
    }


def _bench_config(results: list[dict[str, Any]]) -> list[str]:
    """Config keys every run shares, then those that differ, per method and regime."""
    configs = {
        (str(r.get("method")), str(r.get("regime"))): r.get("config") or {}
        for r in sorted(results, key=lambda r: str(r.get("seed")))
    }
    keys = sorted({k for c in configs.values() for k in c} - {"seed"})
    values = {k: [c.get(k) for c in configs.values()] for k in keys}
    shared = [k for k in keys if len({json.dumps(v) for v in values[k]}) == 1]
    varying = [k for k in keys if k not in shared]
    rows = [
        [f"{method} / {regime}", *(c.get(k) for k in varying)]
        for (method, regime), c in configs.items()
    ]
    return [
        html_table(
            ("key", "value"),
            [(k, values[k][0]) for k in shared],
            "config shared by every run",
        ),
        html_table(("method / regime", *varying), sorted(rows), "config that differs"),
    ]


def _command_line(out_dir: Path) -> list[str]:
    path = out_dir / "command.json"
    if not path.is_file():
        return []
    argv = json.loads(path.read_text()).get("argv", [])
    return [f"<p>Command: <code>{html.escape(' '.join(argv))}</code></p>"]


def write_bench_report(out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` from the results under ``out_dir/runs/``.

    Holds the summary tables (one per data set and regime), OTM's gains, the
    per-round plot (``rounds.png``, drawn where absent), the embedding plots of
    ``out_dir/embeddings/`` and the run configs.

    Returns
    -------
    Path
        The report file.
    """
    out_dir = Path(out_dir)
    results = load_results(out_dir)
    rounds_png = out_dir / "rounds.png"
    if not rounds_png.is_file():
        plot_rounds(results, rounds_png)
    sections = _command_line(out_dir)
    sections.append(_heading("Results (mean ± std over seeds)"))
    for title, rows in summary_sections(results):
        sections += [_heading(title, 3), html_table(SUMMARY_COLUMNS, rows, title)]
    gains_table = html_table(GAINS_COLUMNS, gains_rows(results), "gains of OTM")
    sections += [_heading("Gains of OTM"), gains_table]
    sections += [_heading("Score per round"), png_image(rounds_png, "per round")]
    for png in sorted((out_dir / "embeddings").glob("*.png")):
        sections += [_heading(f"Embedding: {png.stem}", 3), png_image(png, png.stem)]
    sections += [_heading("Config"), *_bench_config(results)]
    title = f"Benchmark: {len(results)} runs in {out_dir.name}"
    return _write(out_dir / REPORT_NAME, page(title, sections))
