"""Screening of uploaded code clouds against agents that are broken or hostile.

One agent sending codes on another scale (say 1000x larger), shifted far away, or
collapsed to a point would dominate or poison the shared barycenter. The server
compares each cloud's spread and centre with the median over agents (robust to a
minority of bad agents) and leaves outliers out of that round's mixing.
"""

from __future__ import annotations

import numpy as np


def cloud_spread(codes: np.ndarray) -> float:
    """Root-mean-square distance of the codes to their centroid."""
    centred = codes - codes.mean(axis=0)
    return float(np.sqrt((centred**2).sum(axis=1).mean()))


def screen_clouds(codes: list[np.ndarray], factor: float = 10.0) -> list[str | None]:
    """Flag clouds whose scale or position is far from the other agents'.

    Parameters
    ----------
    codes : list of np.ndarray
        One ``n_k x d`` cloud per agent.
    factor : float
        Tolerance: a cloud is flagged when its spread is more than ``factor`` times,
        or less than ``1 / factor`` of, the median spread, or when its centroid lies
        more than ``factor`` median spreads from the median centroid. ``0`` disables
        screening. Needs at least 3 clouds (a median of two says nothing).

    Returns
    -------
    list of (str or None)
        Per cloud, ``None`` if accepted, else the reason it was flagged.
    """
    if factor < 0:
        raise ValueError(f"factor must be >= 0, got {factor}")
    if factor == 0 or len(codes) < 3:
        return [None] * len(codes)
    spreads = np.array([cloud_spread(c) for c in codes])
    centres = np.stack([c.mean(axis=0) for c in codes])
    typical = float(np.median(spreads))
    if typical <= 0:
        return [None] * len(codes)
    centre = np.median(centres, axis=0)
    reasons: list[str | None] = []
    for spread, mean in zip(spreads, centres, strict=True):
        offset = float(np.linalg.norm(mean - centre))
        if spread > factor * typical or spread < typical / factor:
            reasons.append(
                f"code spread {spread:.3g} is off the agents' median {typical:.3g} "
                f"by more than {factor:g}x (scale outlier)"
            )
        elif offset > factor * typical:
            reasons.append(
                f"code centroid lies {offset:.3g} from the agents' median centroid, "
                f"over {factor:g}x the median spread {typical:.3g} (position outlier)"
            )
        else:
            reasons.append(None)
    return reasons
