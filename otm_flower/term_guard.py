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

The *criterion* (:data:`CRITERIA`) says what the two candidates are scored with:

``objective``
    the local objective above, on criterion rows the party also trains on;
``held-out``
    the same objective on a slice of the party's own training rows
    (:data:`HOLDOUT_FRACTION`, at most ``rows``) that it never trains on (no
    step of either candidate sees them; mix targets on them are dropped). It
    does not reject pure-noise targets: on a few dozen rows, what they cost
    the held-out objective in one round stays within the margin, so they are
    kept and their cost adds up over rounds;
``silhouette``
    label-free cluster quality of the codes of that held-out slice: the
    silhouette of their k-means clustering (k the party's cluster count),
    higher is better (scored as its negative, so the same rule applies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from .config import GUARD_CRITERIA

if TYPE_CHECKING:
    from .config import RunConfig

__all__ = [
    "CRITERIA",
    "TermGuard",
    "codes_silhouette",
    "guard_decision",
    "holdout_size",
    "term_guard_for",
]

#: Scale of the cross-agent terms a guard starts from.
INITIAL_SCALE = 1.0
#: Most criterion rows a guard scores (the clustering term's GW solve grows with them).
CRITERION_ROWS = 256
#: What a guard scores its two candidates with (see the module docstring).
CRITERIA = GUARD_CRITERIA
#: Share of a party's training rows a held-out criterion keeps out of training.
HOLDOUT_FRACTION = 0.1


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
    criterion : str
        One of :data:`CRITERIA`: what the candidates are scored with.
    """

    margin: float = 0.02
    rows: int = CRITERION_ROWS
    scale: float = INITIAL_SCALE
    criterion: str = "objective"

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError(f"term guard margin must be >= 0, got {self.margin}")
        if self.rows < 2:
            raise ValueError(f"term guard needs rows >= 2, got {self.rows}")
        if not 0 < self.scale <= 1:
            raise ValueError(f"term guard scale must be in (0, 1], got {self.scale}")
        if self.criterion not in CRITERIA:
            raise ValueError(
                f"term guard criterion must be one of {CRITERIA}, "
                f"got {self.criterion!r}"
            )

    @property
    def holds_out(self) -> bool:
        """Whether the criterion rows are kept out of the party's training."""
        return self.criterion != "objective"

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


def holdout_size(n_train: int, rows: int) -> int:
    """Training rows a held-out criterion keeps out of ``n_train``:
    :data:`HOLDOUT_FRACTION` of them (at least 2, at most ``rows``), always
    leaving at least 2 to train on.

    Raises
    ------
    ValueError
        With fewer than 4 training rows (nothing to hold out and still train).
    """
    if n_train < 4:
        raise ValueError(
            f"a held-out guard criterion needs >= 4 training rows, got {n_train}"
        )
    return min(rows, n_train - 2, max(2, round(HOLDOUT_FRACTION * n_train)))


def codes_silhouette(codes: np.ndarray, n_clusters: int, seed: int = 0) -> float:
    """Silhouette of the k-means clustering of ``codes`` (3 seeded inits).

    Returns -1 (the worst score) when the codes cannot form 2 or more clusters
    (too few rows, all codes equal, or non-finite codes).
    """
    codes = np.asarray(codes, dtype=np.float64)
    if not np.isfinite(codes).all():
        return -1.0
    k = min(n_clusters, len(codes) - 1, len(np.unique(codes, axis=0)))
    if k < 2:
        return -1.0
    labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(codes)
    if len(np.unique(labels)) < 2:
        return -1.0
    return float(silhouette_score(codes, labels))


def term_guard_for(config: RunConfig) -> TermGuard | None:
    """The guard a run's ``term-guard``, ``term-guard-margin`` and
    ``term-guard-criterion`` keys ask for (``None``: off)."""
    if not config.term_guard:
        return None
    return TermGuard(
        margin=config.term_guard_margin, criterion=config.term_guard_criterion
    )
