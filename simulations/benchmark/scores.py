"""Scores of benchmark result documents, and their grouping in display order."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from otm_flower.config import METHODS, OTM_METHODS
from simulations.benchmark.grid import REGIMES, dataset_label

#: Row order of methods in tables and legends; others follow alphabetically.
METHOD_ORDER = METHODS

#: Regimes whose non-OTM runs are the same runs: ``anchor-rate`` only decides
#: which training rows carry a linked-record id, and only OTM uploads read those
#: ids; the data split, the presets and the training of ``local``, ``fedavg``,
#: ``raw`` and ``oracle`` do not depend on it (checked bit for bit on ORL).
SAME_RUNS: dict[str, str] = {"anchored": "unaligned", "unaligned": "anchored"}

#: Key a result copied from its sibling regime carries: the regime it ran in.
SHARED_FROM = "shared_from"

#: ``{(dataset label, regime): {method: [results]}}``.
Groups = dict[tuple[str, str], dict[str, list[dict[str, Any]]]]


def is_classification(result: Mapping[str, Any]) -> bool:
    """Whether a result document comes from a classification run."""
    return result.get("task") == "classification"


def score_key(result: Mapping[str, Any]) -> str:
    """The headline metric of a result: ``accuracy`` (classification) or ``acc``."""
    return "accuracy" if is_classification(result) else "acc"


def finite(value: Any) -> float | None:
    """``value`` as a float, or ``None`` if it is ``None`` or not finite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def mean_score(result: Mapping[str, Any], key: str | None = None) -> float | None:
    """Mean over agents of ``key`` (default: :func:`score_key`)."""
    return finite((result.get("mean") or {}).get(key or score_key(result)))


def weakest_score(result: Mapping[str, Any]) -> float | None:
    """Minimum over agents of the headline metric (``None`` if no agent has it)."""
    key = score_key(result)
    values = [
        v for a in result.get("agents", []) if (v := finite(a.get(key))) is not None
    ]
    return min(values) if values else None


def present(values: Iterable[float | None]) -> list[float]:
    """The values that are not ``None``."""
    return [v for v in values if v is not None]


def mean_present(values: Iterable[float | None]) -> float | None:
    """Mean of the present values (``None`` if there are none)."""
    vals = present(values)
    return float(np.mean(vals)) if vals else None


def format_pm(values: Iterable[float | None], digits: int = 3) -> str:
    """``mean ± std`` (sample std, ddof=1) of the present values.

    One value is shown alone, none as ``-``.
    """
    vals = present(values)
    if not vals:
        return "-"
    mean = float(np.mean(vals))
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(vals, ddof=1)):.{digits}f}"


def method_sort_key(method: str) -> tuple[int, str]:
    """Sort key of a method: its place in :data:`METHOD_ORDER`, then its name."""
    order = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return order, method


def regime_sort_key(regime: str) -> tuple[int, str]:
    """Sort key of a regime: its place in :data:`REGIMES`, then its name."""
    names = list(REGIMES)
    return (names.index(regime) if regime in names else len(names)), regime


def result_regime(result: Mapping[str, Any]) -> str:
    """A result's regime; without one, ``classification`` or ``unaligned`` by task."""
    regime = result.get("regime")
    if regime is None:
        return "classification" if is_classification(result) else "unaligned"
    return str(regime)


def shares_runs(method: str) -> bool:
    """Whether a method's runs are the same in the regimes of :data:`SAME_RUNS`."""
    return method not in OTM_METHODS


def _share_siblings(groups: Groups) -> None:
    """Give each (dataset, regime) of :data:`SAME_RUNS` the sibling regime's
    runs of every method it lacks that :func:`shares_runs` (copies marked with
    :data:`SHARED_FROM`); only into a regime that holds runs of its own."""
    for (dataset, regime), runs in list(groups.items()):
        sibling = groups.get((dataset, SAME_RUNS.get(regime, "")), {})
        for method, rs in sibling.items():
            if method in runs or not shares_runs(method):
                continue
            runs[method] = [
                {**r, "regime": regime, SHARED_FROM: result_regime(r)}
                for r in rs
                if SHARED_FROM not in r
            ]


def shared_from(runs: Iterable[Mapping[str, Any]]) -> str | None:
    """The regime runs were copied from (:func:`group_results`), or ``None``."""
    sources = {r.get(SHARED_FROM) for r in runs}
    return next(iter(sources)) if len(sources) == 1 else None


def group_results(results: Iterable[dict[str, Any]]) -> Groups:
    """``{(dataset label, regime): {method: [results]}}``, in display order.

    A regime of :data:`SAME_RUNS` without runs of a method that does not read
    linked records (``local``, ``fedavg``, ``raw``, ``oracle``) takes its
    sibling regime's runs of it, marked with :data:`SHARED_FROM`.
    """
    groups: Groups = {}
    for r in results:
        key = (dataset_label(r.get("dataset")), result_regime(r))
        groups.setdefault(key, {}).setdefault(str(r.get("method")), []).append(r)
    _share_siblings(groups)
    return {
        key: {m: groups[key][m] for m in sorted(groups[key], key=method_sort_key)}
        for key in sorted(groups, key=lambda k: (k[0], regime_sort_key(k[1])))
    }
