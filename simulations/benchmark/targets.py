"""The product's targets, checked on per-data-set mean scores of one regime.

Scores are fractions (mean over seeds of the mean over agents); the lines the
checks return speak in points (hundredths). A target holds or fails on what the
results hold; a set that lacks a method it needs counts as not measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SetScores:
    """Mean headline scores of one data set in one regime (``None``: not run)."""

    otm: float | None = None
    local: float | None = None
    fedavg: float | None = None
    raw: float | None = None
    oracle: float | None = None

    @property
    def best_baseline(self) -> float | None:
        """The better of ``local`` and ``fedavg`` (``None`` unless both ran)."""
        if self.local is None or self.fedavg is None:
            return None
        return max(self.local, self.fedavg)

    @property
    def gain(self) -> float | None:
        """``otm - local`` (``None`` unless both ran)."""
        return None if self.otm is None or self.local is None else self.otm - self.local

    @property
    def gap(self) -> float | None:
        """``oracle - local`` (``None`` unless both ran)."""
        if self.oracle is None or self.local is None:
            return None
        return self.oracle - self.local

    @property
    def gap_closed(self) -> float | None:
        """``gain / gap``; ``None`` without a gain or a positive gap."""
        gain, gap = self.gain, self.gap
        return None if gain is None or gap is None or gap <= 0 else gain / gap


#: A check: per-set scores -> one line saying whether the target holds.
Check = Callable[[Mapping[str, SetScores]], str]


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _verdict(ok: bool) -> str:
    return "**holds**" if ok else "**fails**"


def _every_set(
    name: str,
    sets: Mapping[str, SetScores],
    value: Callable[[SetScores], float | None],
    floor: float = 0.0,
) -> str:
    """A target that must hold on every set: ``value >= floor`` on each (the
    failing sets are named with their value)."""
    values = {d: v for d, s in sets.items() if (v := value(s)) is not None}
    failing = {d: v for d, v in values.items() if v < floor - 1e-12}
    missing = sorted(set(sets) - set(values))
    ok = bool(values) and not failing and not missing
    text = (
        f"{name}: {_verdict(ok)} (met on {len(values) - len(failing)} of "
        f"{len(sets)} sets)"
    )
    if failing:
        text += "; fails on " + ", ".join(
            f"{d} ({_points(m)})" for d, m in failing.items()
        )
    if missing:
        text += "; not measured on " + ", ".join(missing)
    return text


def never_worse(sets: Mapping[str, SetScores]) -> str:
    """``otm >= local - 0.5`` points on every set (figures: otm - local)."""
    return _every_set(
        "never worse (otm ≥ local − 0.5 points)",
        sets,
        lambda s: s.gain,
        floor=-0.005,
    )


def local_over_raw(sets: Mapping[str, SetScores]) -> str:
    """``local >= raw`` on every set (figures: local - raw)."""
    return _every_set(
        "local ≥ raw",
        sets,
        lambda s: None if s.local is None or s.raw is None else s.local - s.raw,
    )


def beats_both_on(points: float, needed: int) -> Check:
    """``otm`` at least ``points`` over the best of local and fedavg on at least
    ``needed`` sets."""

    def check(sets: Mapping[str, SetScores]) -> str:
        gains = {
            d: s.otm - s.best_baseline
            for d, s in sets.items()
            if s.otm is not None and s.best_baseline is not None
        }
        won = sorted(d for d, g in gains.items() if g >= points / 100)
        ok = len(won) >= needed
        return (
            f"otm ≥ best of local/fedavg + {points:g} points on ≥ {needed} sets: "
            f"{_verdict(ok)} ({len(won)} of {len(sets)}"
            + (f": {', '.join(won)}" if won else "")
            + "; gains "
            + ", ".join(f"{d} {_points(g)}" for d, g in gains.items())
            + ")"
        )

    return check


def gap_closed_on_average(share: float) -> Check:
    """The mean over sets of the local-to-oracle gap closed is at least ``share``."""

    def check(sets: Mapping[str, SetScores]) -> str:
        gapped = [s for s in sets.values() if s.gap_closed is not None]
        if not gapped:
            return f"≥ {share:.0%} of the local-to-oracle gap closed: not measured"
        mean = float(np.mean([s.gap_closed for s in gapped]))
        pooled = sum(s.gain or 0.0 for s in gapped) / sum(s.gap or 0.0 for s in gapped)
        return (
            f"≥ {share:.0%} of the local-to-oracle gap closed on average: "
            f"{_verdict(mean >= share)} ({mean:.1%} over the {len(gapped)} sets "
            f"with a positive gap; summed gains over summed gaps {pooled:.1%})"
        )

    return check


#: Regime -> its targets, in the order they are reported.
TARGETS: dict[str, tuple[Check, ...]] = {
    "unaligned": (never_worse, local_over_raw),
    "anchored": (
        never_worse,
        beats_both_on(3.0, 5),
        gap_closed_on_average(0.25),
        local_over_raw,
    ),
    "classification": (never_worse, beats_both_on(1.5, 5)),
}


def target_lines(regime: str, sets: Mapping[str, SetScores]) -> list[str]:
    """One line per target of ``regime`` (none for a regime without targets)."""
    return [check(sets) for check in TARGETS.get(regime, ())]
