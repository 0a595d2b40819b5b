"""Scores of benchmark result documents, and their grouping in display order."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from otm_flower.config import METHODS
from simulations.benchmark.grid import REGIMES, dataset_label

#: Row order of methods in tables and legends; others follow alphabetically.
METHOD_ORDER = METHODS

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


def group_results(results: Iterable[dict[str, Any]]) -> Groups:
    """``{(dataset label, regime): {method: [results]}}``, in display order."""
    groups: Groups = {}
    for r in results:
        key = (dataset_label(r.get("dataset")), result_regime(r))
        groups.setdefault(key, {}).setdefault(str(r.get("method")), []).append(r)
    return {
        key: {m: groups[key][m] for m in sorted(groups[key], key=method_sort_key)}
        for key in sorted(groups, key=lambda k: (k[0], regime_sort_key(k[1])))
    }
