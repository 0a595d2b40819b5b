"""Parameter averaging of the OTM hybrids ``otm-fedavg`` and ``otm-head``.

Flower-free, numpy only. Besides the OTM content, the server's ``train`` (and
``evaluate``) message of these methods carries ArrayRecord ``shared``
(:data:`otm_flower.protocol.SHARED_RECORD`) with the latest example-weighted
average of the agents' shared parameters, and each agent's ``train`` reply carries
its trained shared parameters under the same record name. ``otm-fedavg`` shares
what ``WAE.shared_state`` returns (latent-side layers, BatchNorm statistics and
task head); ``otm-head`` only the task head (``head.*`` keys, ``WAE.head_state``).
The names ``SHARED_RECORD``, ``KEY_SHARING`` and ``HEAD_PREFIX`` are defined in
:mod:`otm_flower.protocol` and re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .protocol import HEAD_PREFIX, KEY_SHARING, SHARED_RECORD, ProtocolError

__all__ = [
    "HEAD_PREFIX",
    "KEY_SHARING",
    "SHARED_RECORD",
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
