"""Parameter averaging of the OTM hybrids ``otm-fedavg`` and ``otm-head``.

Besides the OTM content, the server's ``train`` (and
``evaluate``) message of these methods carries ArrayRecord ``shared``
(:data:`otm_flower.protocol.SHARED_RECORD`) with the latest example-weighted
average of the agents' shared parameters, and each agent's ``train`` reply carries
its trained shared parameters under the same record name. ``otm-fedavg`` shares
what ``WAE.shared_state`` returns (latent-side layers, BatchNorm statistics and
task head); ``otm-head`` only the task head (``head.*`` keys, ``WAE.head_state``).
The names ``SHARED_RECORD``, ``KEY_SHARING`` and ``HEAD_PREFIX`` are defined in
:mod:`otm_flower.protocol` and re-exported here.

:func:`aggregate_shared` combines the uploads as the run's
``parameter-aggregation`` says: the example-weighted mean (FedAvg), or one of
Flower's robust aggregations (FedMedian's coordinate-wise median,
FedTrimmedAvg's trimmed mean, Krum's selection), computed with Flower's own
functions so they match its strategies exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict
from flwr.serverapp.strategy.fedtrimmedavg import trim_mean
from flwr.serverapp.strategy.multikrum import select_multikrum

from .protocol import HEAD_PREFIX, KEY_SHARING, SHARED_RECORD, ProtocolError

#: Ways to combine shared parameters (the ``parameter-aggregation`` key).
AGGREGATIONS = ("mean", "median", "trimmed-mean", "krum")
#: Fraction cut at each end by ``trimmed-mean`` (FedTrimmedAvg's default beta).
TRIM_BETA = 0.2

__all__ = [
    "AGGREGATIONS",
    "HEAD_PREFIX",
    "KEY_SHARING",
    "SHARED_RECORD",
    "TRIM_BETA",
    "aggregate_shared",
    "krum_hostile_bound",
    "validate_shared",
    "weighted_average",
]


def validate_shared(
    arrays: Mapping[str, np.ndarray],
    *,
    scope: str,
    reference: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Check one agent's uploaded shared parameters.

    Parameters
    ----------
    arrays : Mapping[str, np.ndarray]
        Parameter name -> values, as the agent sent them.
    scope : {"all", "head"}
        What the method shares; ``"head"`` accepts only ``head.*`` keys.
    reference : Mapping[str, np.ndarray], optional
        Arrays the upload must match in keys and shapes (the current average, or
        another accepted upload of the round).

    Returns
    -------
    dict of str to np.ndarray
        The arrays (float arrays, unchanged).

    Raises
    ------
    ProtocolError
        Naming the problem: no arrays, a key outside the scope, a non-float array,
        NaN/Inf values, or keys/shapes unlike the reference.
    """
    if not arrays:
        raise ProtocolError("shared parameters are empty")
    if scope == "head":
        _check_head_only(arrays)
    out = {key: _checked_array(key, value) for key, value in arrays.items()}
    if reference is not None:
        _check_like(out, reference)
    return out


def _check_head_only(arrays: Mapping[str, np.ndarray]) -> None:
    """Only ``head.*`` keys, or a ProtocolError naming (up to 5) others."""
    outside = sorted(k for k in arrays if not k.startswith(HEAD_PREFIX))
    if outside:
        raise ProtocolError(
            f"otm-head shares the task head only, got other arrays {outside[:5]}"
        )


def _checked_array(key: str, value: np.ndarray) -> np.ndarray:
    """``value`` as an array, when it is floating point and finite."""
    value = np.asarray(value)
    if not np.issubdtype(value.dtype, np.floating):
        raise ProtocolError(
            f"shared parameter {key!r} must be floating point, got {value.dtype}"
        )
    if not np.isfinite(value).all():
        bad = int((~np.isfinite(value)).sum())
        raise ProtocolError(f"shared parameter {key!r} contains {bad} NaN/Inf values")
    return value


def _check_like(
    arrays: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]
) -> None:
    """Same keys and shapes as ``reference``, or a ProtocolError naming the first
    difference."""
    missing = sorted(reference.keys() - arrays.keys())
    unexpected = sorted(arrays.keys() - reference.keys())
    if missing or unexpected:
        raise ProtocolError(
            f"shared parameters differ from the others': missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for key, value in arrays.items():
        if value.shape != np.shape(reference[key]):
            raise ProtocolError(
                f"shared parameter {key!r} has shape {value.shape}, "
                f"expected {np.shape(reference[key])}"
            )


def weighted_average(
    uploads: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]
) -> dict[str, np.ndarray]:
    """Example-weighted mean of several agents' parameters (as FedAvg computes it).

    Parameters
    ----------
    uploads : sequence of Mapping[str, np.ndarray]
        One mapping per agent, all with the same keys and shapes (see
        :func:`validate_shared`).
    weights : sequence of float
        Non-negative weight per agent (its number of training examples), not all 0.

    Returns
    -------
    dict of str to np.ndarray
        Per key, ``sum_k w_k x_k / sum_k w_k``, computed in float64 and returned in
        the first upload's dtype.

    Raises
    ------
    ValueError
        On no uploads, a weight count that differs, negative or all-zero weights,
        or keys that differ between uploads.
    """
    if not uploads:
        raise ValueError("nothing to average")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(uploads),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(
            f"need one non-negative weight per upload, not all zero; got {weights!r}"
        )
    keys = list(uploads[0])
    if any(set(u) != set(keys) for u in uploads[1:]):
        raise ValueError("uploads to average have different keys")
    w = w / w.sum()
    return {
        key: np.tensordot(
            w, np.stack([np.asarray(u[key], dtype=np.float64) for u in uploads]), 1
        ).astype(np.asarray(uploads[0][key]).dtype)
        for key in keys
    }


def krum_hostile_bound(n_uploads: int) -> int:
    """Most hostile parties Krum assumes among ``n_uploads``: the largest ``f``
    with ``n > 2 f + 2`` (its guarantee's condition), at least 0."""
    return max(0, (n_uploads - 3) // 2)


def aggregate_shared(
    uploads: Sequence[Mapping[str, np.ndarray]],
    weights: Sequence[float],
    how: str = "mean",
) -> dict[str, np.ndarray]:
    """Combine several agents' parameters as Flower's strategy ``how`` would.

    Parameters
    ----------
    uploads : sequence of Mapping[str, np.ndarray]
        One mapping per agent, all with the same keys and shapes.
    weights : sequence of float
        Non-negative weight per agent (its number of training examples).
    how : {"mean", "median", "trimmed-mean", "krum"}
        ``mean``: :func:`weighted_average` (FedAvg). ``median``: the
        coordinate-wise median (FedMedian, unweighted). ``trimmed-mean``:
        Flower's ``trim_mean`` with ``beta`` :data:`TRIM_BETA` (FedTrimmedAvg,
        unweighted). ``krum``: the upload Flower's ``select_multikrum`` picks,
        assuming :func:`krum_hostile_bound` hostile parties (Krum).

    Returns
    -------
    dict of str to np.ndarray
        Per key, the combined array in the first upload's dtype.

    Raises
    ------
    ValueError
        On an unknown ``how``, or what :func:`weighted_average` rejects.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {how!r}")
    if how == "mean" or not uploads:
        return weighted_average(uploads, weights)
    weighted_average(uploads, weights)  # the same checks of weights and keys
    if how == "krum":
        return _krum(uploads)
    combine = {
        "median": lambda stack: np.median(stack, axis=0),
        "trimmed-mean": lambda stack: trim_mean(stack, TRIM_BETA),
    }[how]
    return {
        key: np.asarray(
            combine(np.stack([np.asarray(u[key], dtype=np.float64) for u in uploads]))
        ).astype(np.asarray(uploads[0][key]).dtype)
        for key in uploads[0]
    }


def _krum(uploads: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The upload Krum selects (Flower's ``select_multikrum``, one node)."""
    keys = list(uploads[0])
    contents = [
        RecordDict({"arrays": ArrayRecord({k: Array(np.asarray(u[k])) for k in keys})})
        for u in uploads
    ]
    chosen = select_multikrum(
        contents,
        num_malicious_nodes=krum_hostile_bound(len(uploads)),
        num_nodes_to_select=1,
    )[0]
    index = next(i for i, c in enumerate(contents) if c is chosen)
    return {key: np.asarray(uploads[index][key]).copy() for key in keys}
