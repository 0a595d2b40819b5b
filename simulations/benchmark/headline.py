"""One table per regime over the data sets, with the targets it meets.

Each row is one data set: ``otm``'s scores (ACC, NMI and purity for clustering,
accuracy for classification), each baseline's headline score, ``otm``'s gains over
``local``, over ``fedavg`` and over the better of the two, the weakest party of
``otm`` and of ``local``, and the share of the local-to-oracle gap ``otm`` closes.
Figures are percent: mean ± sample std over seeds of the mean over agents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulations.benchmark.grid import REGIMES, regime_task
from simulations.benchmark.markdown import markdown_table
from simulations.benchmark.scores import (
    Groups,
    group_results,
    mean_present,
    mean_score,
    present,
    regime_sort_key,
    shared_from,
    weakest_score,
)
from simulations.benchmark.targets import SetScores, target_lines

#: Baselines of a headline table, in column order (those the results hold).
BASELINES = ("local", "fedavg", "raw", "oracle")

#: ``otm``'s scores in a clustering headline table.
CLUSTER_SCORES = (("acc", "ACC"), ("nmi", "NMI"), ("purity", "purity"))

Runs = Mapping[str, list[dict[str, Any]]]


def _pm(values: list[float]) -> str:
    """``mean ± std`` in percent (one decimal; one value alone; none ``-``)."""
    if not values:
        return "-"
    mean = 100 * sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    var = sum((100 * v - mean) ** 2 for v in values) / (len(values) - 1)
    return f"{mean:.1f} ± {var**0.5:.1f}"


def _scores(runs: Runs, method: str, key: str | None = None) -> list[float]:
    return present(mean_score(r, key) for r in runs.get(method, []))


def _mean(runs: Runs, method: str) -> float | None:
    return mean_present(_scores(runs, method))


def set_scores(runs: Runs) -> SetScores:
    """A data set's mean headline score of each method (``None``: not run)."""
    return SetScores(**{m: _mean(runs, m) for m in ("otm", *BASELINES)})


def _gain(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{100 * (a - b):+.1f}"


def _weakest(runs: Runs) -> str:
    values = [
        mean_present(weakest_score(r) for r in runs.get(m, []))
        for m in ("otm", "local")
    ]
    return " / ".join("-" if v is None else f"{100 * v:.1f}" for v in values)


def _header(task: str, baselines: list[str]) -> list[str]:
    unit = "accuracy" if task == "classification" else "ACC"
    own = [f"otm {name}" for _, name in CLUSTER_SCORES]
    return [
        "data set",
        "seeds: otm / local",
        *(own if task != "classification" else ["otm accuracy"]),
        *(f"{m} {unit}" for m in baselines),
        "otm − local",
        "otm − fedavg",
        "otm − best of both",
        "weakest party: otm / local",
        "gap to oracle closed",
    ]


def _row(dataset: str, runs: Runs, task: str, baselines: list[str]) -> list[str]:
    keys = [k for k, _ in CLUSTER_SCORES] if task != "classification" else [None]
    s = set_scores(runs)
    closed = s.gap_closed
    return [
        dataset,
        f"{len(runs.get('otm', []))} / {len(runs.get('local', []))}",
        *(_pm(_scores(runs, "otm", k)) for k in keys),
        *(_pm(_scores(runs, m)) for m in baselines),
        _gain(s.otm, s.local),
        _gain(s.otm, s.fedavg),
        _gain(s.otm, s.best_baseline),
        _weakest(runs),
        "-" if closed is None else f"{closed:.0%}",
    ]


def by_regime(groups: Groups) -> dict[str, dict[str, dict[str, list[dict]]]]:
    """``{regime: {dataset: {method: [results]}}}`` of grouped results."""
    out: dict[str, dict[str, dict[str, list[dict]]]] = {}
    for (dataset, regime), runs in groups.items():
        out.setdefault(regime, {})[dataset] = runs
    return out


def _shared_note(regime: str, sets: Mapping[str, Runs]) -> str | None:
    """The note naming the baselines taken from the sibling regime's runs."""
    shared = sorted(
        {
            f"`{m}`"
            for runs in sets.values()
            for m, rs in runs.items()
            if shared_from(rs) is not None
        }
    )
    sources = {
        source
        for runs in sets.values()
        for rs in runs.values()
        if (source := shared_from(rs)) is not None
    }
    if not shared:
        return None
    return (
        f"{', '.join(shared)}: the runs of regime {', '.join(sorted(sources))} "
        f"(identical by construction: linked records reach only OTM uploads)."
    )


def regime_section(regime: str, sets: Mapping[str, Runs]) -> list[str]:
    """The lines of one regime's headline: heading, table, notes, targets."""
    task = regime_task(regime) if regime in REGIMES else "clustering"
    baselines = [m for m in BASELINES if any(m in runs for runs in sets.values())]
    lines = [f"### Regime `{regime}` ({task}): percent, mean ± std over seeds", ""]
    lines += markdown_table(
        _header(task, baselines),
        [_row(d, runs, task, baselines) for d, runs in sets.items()],
    )
    note = _shared_note(regime, sets)
    targets = target_lines(regime, {d: set_scores(r) for d, r in sets.items()})
    lines += ["", *([f"Baselines: {note}", ""] if note else [])]
    lines += [f"- {t}" for t in targets] + ([""] if targets else [])
    return lines


def headline_tables(results: list[dict[str, Any]]) -> str:
    """One headline table per regime (markdown), each with its target lines."""
    regimes = by_regime(group_results(results))
    lines: list[str] = []
    for regime in sorted(regimes, key=regime_sort_key):
        lines += regime_section(regime, regimes[regime])
    return "\n".join(lines)
