"""Enough linked records to pin the clusters: a party's floor on its links.

A barycenter anchored on linked records can match one party's clusters to
another's only through the links that land in them: with fewer linked records
than clusters some clusters hold none, and the coupling is free to pair them
with the wrong partner, so the mix targets pull the party's codes apart. A party
that hears back from the server which of its records others hold too (link
feedback, docs/protocol.md) estimates from that how many of its records are
linked (:func:`estimated_links`), and trains alone, ignoring the mix targets,
while the estimate is below ``min-links-per-cluster`` times its cluster count
(:func:`below_link_floor`). Nothing of this leaves the party but a metric.
"""

from __future__ import annotations

__all__ = ["below_link_floor", "discovered_share", "estimated_links"]


def discovered_share(upload_share: float, rounds: int) -> float:
    """Expected share of a party's linked records the server has confirmed
    after ``rounds`` uploads.

    Every holder of a record draws it for an upload alike (a hash of its id and
    the round), with probability ``upload_share`` (codes per upload over
    training rows), and the server confirms it the first time two holders send
    it in the same round.
    """
    if not 0.0 <= upload_share <= 1.0:
        raise ValueError(f"upload share must be in [0, 1], got {upload_share}")
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    return 1.0 - (1.0 - upload_share) ** rounds


def estimated_links(confirmed: int, upload_share: float, rounds: int) -> float:
    """A party's linked records, estimated from the ``confirmed`` ones.

    ``confirmed / discovered_share(upload_share, rounds)``; infinite while no
    upload could have been confirmed yet (nothing is known, so nothing is
    ruled out).
    """
    share = discovered_share(upload_share, rounds)
    return float("inf") if share <= 0.0 else confirmed / share


def below_link_floor(
    confirmed: int,
    upload_share: float,
    rounds: int,
    n_clusters: int,
    per_cluster: float,
) -> bool:
    """Whether a party has too few linked records to use the mix targets:
    :func:`estimated_links` below ``per_cluster * n_clusters`` (``per_cluster``
    0: never)."""
    if per_cluster <= 0:
        return False
    return estimated_links(confirmed, upload_share, rounds) < per_cluster * n_clusters
