"""Markdown tables of benchmark results: per-method summaries and OTM's gains."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from simulations.benchmark.headline import headline_tables
from simulations.benchmark.markdown import markdown_table
from simulations.benchmark.scores import (
    finite,
    format_pm,
    group_results,
    is_classification,
    mean_present,
    mean_score,
    score_key,
    shared_from,
    weakest_score,
)

SUMMARY_COLUMNS = (
    "method",
    "seeds",
    "ACC",
    "NMI",
    "ARI",
    "purity",
    "accuracy",
    "weakest agent",
    "coupling agreement",
    "wall s",
    "MB/run",
)

GAINS_COLUMNS = (
    "dataset",
    "regime",
    "score",
    "otm",
    "otm - local",
    "local runs",
    "otm - fedavg",
    "weakest: otm - local",
    "local-to-oracle gap closed",
)


def _task(runs: dict[str, list[dict[str, Any]]]) -> str:
    tasks = {str(r.get("task")) for rs in runs.values() for r in rs}
    return "/".join(sorted(tasks))


def _summary_row(method: str, rs: list[dict[str, Any]]) -> list[str]:
    """One method's row of :func:`summary_table`."""
    wall = mean_present(finite(r.get("wall_s")) for r in rs)
    mb = mean_present(
        (int(r.get("bytes_up") or 0) + int(r.get("bytes_down") or 0)) / 1e6 for r in rs
    )
    return [
        method_label(method, rs),
        str(len(rs)),
        *(format_pm(mean_score(r, k) for r in rs) for k in CLUSTER_KEYS),
        format_pm(mean_score(r, "accuracy") for r in rs if is_classification(r)),
        format_pm(weakest_score(r) for r in rs),
        format_pm(finite(r.get("coupling_agreement")) for r in rs),
        "-" if wall is None else f"{wall:.1f}",
        "-" if mb is None else f"{mb:.2f}",
    ]


def method_label(method: str, runs: list[dict[str, Any]]) -> str:
    """A method's name, with the regime its runs come from when they were
    taken from the sibling regime (:data:`~simulations.benchmark.scores.SAME_RUNS`)."""
    source = shared_from(runs)
    return method if source is None else f"{method} ({source} runs)"


def local_runs(regime: str, runs: Mapping[str, list[dict[str, Any]]]) -> str:
    """Which ``local`` runs a gain compares with: the regime's own, those of its
    sibling regime (the same runs), or none."""
    if not runs.get("local"):
        return "-"
    source = shared_from(runs["local"])
    return f"{regime} (own)" if source is None else f"{source} (same runs)"


#: ``(title, rows)`` of one table section.
Section = tuple[str, list[list[str]]]

#: Clustering scores of a summary row, in column order.
CLUSTER_KEYS = ("acc", "nmi", "ari", "purity")


def summary_sections(results: list[dict[str, Any]]) -> list[Section]:
    """``(title, rows)`` per (dataset, regime), one row per method (columns
    :data:`SUMMARY_COLUMNS`); see :func:`summary_table`."""
    return [
        (
            f"{dataset} / {regime} ({_task(runs)})",
            [_summary_row(method, rs) for method, rs in runs.items()],
        )
        for (dataset, regime), runs in group_results(results).items()
    ]


def summary_table(results: list[dict[str, Any]]) -> str:
    """The headline (one table per regime over the data sets, with its targets:
    :func:`~simulations.benchmark.headline.headline_tables`), then the details
    (:func:`detail_tables`)."""
    if not results:
        return "_No results._\n"
    return "\n".join(
        [
            headline_tables(results),
            "## Per data set and regime (fractions, mean ± std over seeds)",
            "",
            detail_tables(results),
        ]
    )


def detail_tables(results: list[dict[str, Any]]) -> str:
    """Markdown tables, one section per (dataset, regime), one row per method.

    ACC/NMI/ARI/purity/accuracy are the per-run means over agents, then mean ± std
    over seeds (runs); ``weakest agent`` is the per-run minimum over agents of the
    headline metric (accuracy for classification, ACC otherwise); ``MB/run`` is
    ``(bytes_up + bytes_down) / 1e6``, averaged over runs. A method whose runs
    come from the sibling regime is named with it (``local (unaligned runs)``).
    """
    if not results:
        return "_No results._\n"
    lines: list[str] = []
    for title, rows in summary_sections(results):
        lines += [f"### {title}", ""]
        lines += [*markdown_table(SUMMARY_COLUMNS, rows), ""]
    return "\n".join(lines)


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _over_seeds(
    runs: Mapping[str, list[dict[str, Any]]],
    method: str,
    stat: Callable[[dict[str, Any]], float | None],
) -> float | None:
    """Mean over a method's runs of a per-run statistic (``None`` if absent)."""
    return mean_present(stat(r) for r in runs.get(method, []))


def _gains_row(
    dataset: str, regime: str, runs: Mapping[str, list[dict[str, Any]]]
) -> list[str]:
    """One (dataset, regime) row of :func:`gains`."""
    otm, local, oracle, fedavg = (
        _over_seeds(runs, m, mean_score) for m in ("otm", "local", "oracle", "fedavg")
    )
    gap = _diff(oracle, local)
    gain = _diff(otm, local)
    closed = "-" if gain is None or gap is None or gap <= 0 else f"{gain / gap:.1%}"
    keys = {score_key(r) for rs in runs.values() for r in rs}
    weakest = _diff(
        _over_seeds(runs, "otm", weakest_score),
        _over_seeds(runs, "local", weakest_score),
    )
    return [
        dataset,
        regime,
        "/".join(sorted(keys)),
        "-" if otm is None else f"{otm:.3f}",
        _signed(gain),
        local_runs(regime, runs),
        _signed(_diff(otm, fedavg)),
        _signed(weakest),
        closed,
    ]


def gains_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """One row per (dataset, regime) of :func:`gains` (columns
    :data:`GAINS_COLUMNS`)."""
    return [
        _gains_row(dataset, regime, runs)
        for (dataset, regime), runs in group_results(results).items()
    ]


def gains(results: list[dict[str, Any]]) -> str:
    """Markdown table of OTM's gains, one row per (dataset, regime).

    Scores (accuracy for classification, ACC otherwise) are averaged over agents,
    then over seeds. Columns: OTM minus ``local`` and minus ``fedavg``; the
    weakest-agent gain over ``local``; and the fraction of the local-to-oracle gap
    that OTM closes, ``(otm - local) / (oracle - local)``. A cell is ``-`` when a
    method is missing, or (gap) when ``oracle - local <= 0``.
    """
    if not results:
        return "_No results._\n"
    return "\n".join(markdown_table(GAINS_COLUMNS, gains_rows(results))) + "\n"
