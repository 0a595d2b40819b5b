"""Validated run settings per method and regime, as data (the ``preset`` key).

``preset = "validated"`` (the default) gives every key a preset governs the value
chosen on validation splits (each party's own training rows; test rows unused)
for the situation the run config describes: the task (clustering or
classification) and whether parties hold linked records (``linked-records``:
``yes`` for parties linked by record keys, or ``auto`` with ``anchor-rate`` > 0).
``preset = "paper"`` keeps the OTM paper's reference values (the
:class:`~otm_flower.config.RunConfig` field defaults). The selection runs and
their figures are in ``configs/hyperparameters.toml``, which the benchmark reads
and which must hold the same tables (a test checks that they agree).

The tables mirror that file: one per method, with optional ``clustering`` /
``classification`` subtables (applied for that task) and ``unaligned`` /
``anchored`` subtables (applied for that regime, on top of the task's). The
classification regime without linked records takes no regime subtable, as the
benchmark's ``classification`` regime does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["GOVERNED_KEYS", "VALIDATED", "preset_keys", "regime_name"]

_OTM: dict[str, Any] = {
    "latent-dim": 0,
    "weight-reg": 0.0,
    "weight-mmd": 0.0,
    "term-guard": True,
    "clustering": {"weight-cluster": 3.0, "mix-frame": "own", "weight-mix": 1.0},
    "unaligned": {"weight-mix": 0.0},
    "anchored": {"weight-reg": 3.0, "min-links-per-cluster": 2.0},
}
_WAE_BASELINE: dict[str, Any] = {
    "latent-dim": 0,
    "weight-mmd": 0.0,
    "clustering": {"weight-cluster": 3.0},
}

#: Method -> validated run-config keys (kebab case), with task/regime subtables.
VALIDATED: dict[str, dict[str, Any]] = {
    "otm": _OTM,
    "otm-w": _OTM,
    "otm-gw": _OTM,
    "otm-nomix": _OTM,
    "otm-fedavg": {"latent-dim": 0, "weight-reg": 0.0},
    "otm-head": {
        "latent-dim": 0,
        "weight-reg": 3.0,
        "weight-mmd": 0.0,
        "mix-frame": "own",
    },
    "fedavg": _WAE_BASELINE,
    "local": _WAE_BASELINE,
    "oracle": _WAE_BASELINE,
    "raw": {},
}

_SUBTABLES = ("clustering", "classification", "unaligned", "anchored")


def regime_name(task: str, anchored: bool) -> str:
    """The regime subtable a run takes: ``anchored``, ``unaligned`` (clustering
    without linked records) or ``classification`` (no regime subtable)."""
    if anchored:
        return "anchored"
    return "unaligned" if task == "clustering" else "classification"


def preset_keys(method: str, task: str, anchored: bool) -> dict[str, Any]:
    """The validated keys of ``method`` for a task and regime (kebab case).

    Plain keys first, then the task subtable's, then the regime subtable's.

    Raises
    ------
    ValueError
        On a method without a validated table.
    """
    if method not in VALIDATED:
        raise ValueError(
            f"no validated settings for method {method!r}; known: {sorted(VALIDATED)}"
        )
    table: Mapping[str, Any] = VALIDATED[method]
    keys = {k: v for k, v in table.items() if k not in _SUBTABLES}
    for name in dict.fromkeys((task, regime_name(task, anchored))):
        keys.update(table.get(name, {}))
    return keys


def _governed() -> tuple[str, ...]:
    names: dict[str, None] = {}
    for table in VALIDATED.values():
        for key, value in table.items():
            names.update(dict.fromkeys(value if isinstance(value, dict) else (key,)))
    return tuple(names)


#: Every run-config key some validated table sets (kebab case).
GOVERNED_KEYS: tuple[str, ...] = _governed()
