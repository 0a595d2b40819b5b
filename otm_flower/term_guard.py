"""Never worse than alone: a party weights OTM's terms down when they cost it.

Every round a guarded party trains twice from the same state: once with the
cross-agent terms (mix, alignment) scaled by its current *scale*, once without
them (a local-only shadow, the step-for-step trajectory of training alone). It
then scores both on its own criterion rows (training rows drawn once from its
own stream; never test rows) with its label-free local objective: reconstruction
plus, for clustering, the clustering term (for classification, the task loss on
its own labels). When the terms cost more than ``margin`` (relative) the party
keeps the shadow and halves the scale; otherwise it keeps the OTM model and
doubles the scale (at most 1). A party whose targets only hurt therefore trains
exactly as it would alone, and one whose targets help keeps them at full weight.
Nothing of this leaves the party but two metrics (``guard-scale``, ``guard-kept``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import RunConfig

__all__ = ["TermGuard", "guard_decision", "term_guard_for"]

#: Scale of the cross-agent terms a guard starts from.
INITIAL_SCALE = 1.0
#: Most criterion rows a guard scores (the clustering term's GW solve grows with them).
CRITERION_ROWS = 256


@dataclass
class TermGuard:
    """A party's guard over the cross-agent terms (mutable: its scale moves).

    Parameters
    ----------
    margin : float
        Relative increase of the local objective the terms may cost in a round
        (``0.02``: 2%) before the party drops them for that round.
    rows : int
        Most criterion rows (training rows) the objective is scored on.
    scale : float
        Current multiplier of the mix and alignment weights, in (0, 1].
    """

    margin: float = 0.02
    rows: int = CRITERION_ROWS
    scale: float = INITIAL_SCALE

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError(f"term guard margin must be >= 0, got {self.margin}")
        if self.rows < 2:
            raise ValueError(f"term guard needs rows >= 2, got {self.rows}")
        if not 0 < self.scale <= 1:
            raise ValueError(f"term guard scale must be in (0, 1], got {self.scale}")

    def update(self, with_terms: float, alone: float) -> bool:
        """Record one round's two objective values; return whether to keep the
        model trained with the terms (and move the scale accordingly)."""
        keep, self.scale = guard_decision(self.scale, with_terms, alone, self.margin)
        return keep


def guard_decision(
    scale: float, with_terms: float, alone: float, margin: float
) -> tuple[bool, float]:
    """Keep the terms' model when ``with_terms <= alone + margin * |alone|``.

    Returns
    -------
    keep : bool
        Whether the model trained with the terms is kept this round.
    scale : float
        The next round's scale: doubled (at most 1) when kept, halved otherwise.
    """
    keep = with_terms <= alone + margin * abs(alone)
    return keep, (min(1.0, 2.0 * scale) if keep else 0.5 * scale)


def term_guard_for(config: RunConfig) -> TermGuard | None:
    """The guard a run's ``term-guard`` and ``term-guard-margin`` keys ask for
    (``None``: off)."""
    return TermGuard(margin=config.term_guard_margin) if config.term_guard else None
