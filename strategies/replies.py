"""Reading and checking the agents' replies to OTMStrategy.

A train reply becomes an :class:`Upload` (its codes, anchor ids, metrics and,
for the hybrids, shared parameters) or raises :class:`RejectedReply` with the
reason. The round-level checks compare the accepted uploads with each other:
code width under the label cost, the shared arrays' keys and shapes, and the
screening of outlier clouds. Each returns the uploads it keeps and the
``(node_id, reason)`` of those it leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import Message, MetricRecord, RecordDict

from otm_flower import protocol as P
from otm_flower.averaging import validate_shared
from otm_flower.screening import screen_clouds
from otm_flower.wire_arrays import read_array

Rejection = tuple[int, str]

#: Largest code magnitude accepted: codes are float32 on the wire, and the
#: mixed codes sent back must be finite in float32 too.
MAX_CODE_MAGNITUDE = float(np.finfo(np.float32).max) / 4
#: Largest opaque anchor id (the ids are int64).
MAX_ANCHOR_ID = int(np.iinfo(np.int64).max)


class RejectedReply(Exception):
    """A reply left out of the round: ``reason`` and the payload ``nbytes`` read."""

    def __init__(self, reason: str, nbytes: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.nbytes = nbytes


@dataclass(frozen=True, slots=True)
class Upload:
    """One agent's accepted train reply, while a round is aggregated."""

    node_id: int
    codes: np.ndarray
    metrics: MetricRecord
    anchors: np.ndarray | None
    shared: dict[str, np.ndarray] | None
    weight: float
    nbytes: int


def scalar_metrics(record: Mapping[str, object]) -> dict[str, float]:
    """The record's numeric values as floats."""
    return {k: float(v) for k, v in record.items() if isinstance(v, int | float)}


def read_train_reply(
    msg: Message,
    *,
    latent_dim: int | None,
    max_rows: int,
    label_cost: bool,
    share: str,
) -> Upload:
    """Read a train reply into an :class:`Upload`.

    Parameters
    ----------
    msg : Message
        The reply.
    latent_dim : int or None
        Expected latent dimension (``None``: any).
    max_rows : int
        Most code rows an agent may upload.
    label_cost : bool
        Codes carry a label block after their ``latent_dim`` columns.
    share : {"none", "all", "head"}
        Which shared parameters the reply must carry.

    Raises
    ------
    RejectedReply
        With the reason, and the payload bytes read before the problem showed.
    """
    nbytes = 0
    try:
        content = _content(msg)
        record = content.array_records[P.CODES_RECORD]
        raw = read_array(record[P.KEY_CODES], P.KEY_CODES)
        codes = _codes(raw, latent_dim, max_rows, label_cost)
        nbytes += raw.nbytes
        ids = None
        if P.KEY_ANCHORS in record:
            raw_ids = read_array(record[P.KEY_ANCHORS], P.KEY_ANCHORS)
            ids = _anchor_ids(raw_ids, len(codes))
            nbytes += raw_ids.nbytes
        metrics = content.metric_records[P.METRICS_RECORD]
        if share == "none":
            return Upload(
                msg.metadata.src_node_id, codes, metrics, ids, None, 1.0, nbytes
            )
        raw_shared = _shared_arrays(content, share)
        nbytes += sum(v.nbytes for v in raw_shared.values())
        shared = validate_shared(raw_shared, scope=share)
        weight = _example_weight(metrics)
    except (P.ProtocolError, KeyError, TypeError) as err:
        raise RejectedReply(str(err), nbytes) from err
    return Upload(msg.metadata.src_node_id, codes, metrics, ids, shared, weight, nbytes)


def _content(msg: Message) -> RecordDict:
    """The reply's content, once it has the records OTM needs."""
    if msg.has_error():
        raise P.ProtocolError(f"agent failed: {msg.error.reason}")
    content = msg.content
    if P.CODES_RECORD not in content.array_records:
        raise P.ProtocolError(f"reply has no ArrayRecord {P.CODES_RECORD!r}")
    if P.METRICS_RECORD not in content.metric_records:
        raise P.ProtocolError(f"reply has no MetricRecord {P.METRICS_RECORD!r}")
    if P.KEY_CODES not in content.array_records[P.CODES_RECORD]:
        raise P.ProtocolError(f"record {P.CODES_RECORD!r} has no array {P.KEY_CODES!r}")
    return content


def _codes(
    raw: np.ndarray, latent_dim: int | None, max_rows: int, label_cost: bool
) -> np.ndarray:
    """Validated codes; with ``label_cost`` wider than ``latent_dim``."""
    codes = P.validate_codes(raw, None if label_cost else latent_dim, max_rows)
    if np.abs(codes).max() > MAX_CODE_MAGNITUDE:
        raise P.ProtocolError(
            f"codes reach magnitude {np.abs(codes).max():.3g}, beyond "
            f"{MAX_CODE_MAGNITUDE:.3g} (float32 range)"
        )
    if label_cost and latent_dim is not None and codes.shape[1] <= latent_dim:
        raise P.ProtocolError(
            f"codes have {codes.shape[1]} columns; with label-cost-weight > "
            f"0 they need latent-dim {latent_dim} + one per class"
        )
    return codes


def _anchor_ids(raw: np.ndarray, n_rows: int) -> np.ndarray:
    """Validated anchor ids; unsigned ids must fit int64 (no wrap to -1)."""
    if raw.dtype.kind == "u" and raw.size and int(raw.max()) > MAX_ANCHOR_ID:
        raise P.ProtocolError(
            f"anchor id {int(raw.max())} exceeds the int64 range of the protocol"
        )
    return P.validate_anchor_ids(raw, n_rows)


def _shared_arrays(content: RecordDict, share: str) -> dict[str, np.ndarray]:
    """The reply's shared parameters, unchecked."""
    if P.SHARED_RECORD not in content.array_records:
        raise P.ProtocolError(
            f"reply has no ArrayRecord {P.SHARED_RECORD!r} "
            f"(this run averages {share!r} parameters)"
        )
    record = content.array_records[P.SHARED_RECORD]
    return {
        key: read_array(array, f"shared parameter {key!r}")
        for key, array in record.items()
    }


def _example_weight(metrics: MetricRecord) -> float:
    """``num-examples``, the reply's weight in the parameter average."""
    count = metrics.get(P.KEY_NUM_EXAMPLES)
    if not isinstance(count, int | float) or isinstance(count, bool) or not count > 0:
        raise P.ProtocolError(
            f"metric {P.KEY_NUM_EXAMPLES!r} must be a positive number to "
            f"weight the average, got {count!r}"
        )
    return float(count)


def read_evaluate_reply(msg: Message) -> dict[str, float]:
    """An evaluate reply's numeric metrics.

    Raises
    ------
    RejectedReply
        When the agent failed, sent no metrics record, or a NaN/Inf metric.
    """
    if msg.has_error() or P.METRICS_RECORD not in msg.content.metric_records:
        reason = msg.error.reason if msg.has_error() else "no metrics record"
        raise RejectedReply(f"evaluation: {reason}")
    metrics = scalar_metrics(msg.content.metric_records[P.METRICS_RECORD])
    bad = sorted(key for key, value in metrics.items() if not np.isfinite(value))
    if bad:
        raise RejectedReply(f"evaluation: metrics {bad[:5]} are NaN/Inf")
    return metrics


def check_code_width(
    uploads: list[Upload], width: int | None, latent_dim: int | None
) -> tuple[list[Upload], list[Rejection], int | None]:
    """Keep the uploads of width ``width`` (``None``: the round's most common
    width, ties to the narrowest); return them, the rejections and the width."""
    if not uploads:
        return uploads, [], width
    if width is None:
        values, counts = np.unique(
            [u.codes.shape[1] for u in uploads], return_counts=True
        )
        width = int(values[np.argmax(counts)])
    kept, rejected = [], []
    for upload in uploads:
        if upload.codes.shape[1] == width:
            kept.append(upload)
        else:
            rejected.append(
                (
                    upload.node_id,
                    f"codes have {upload.codes.shape[1]} columns, the other "
                    f"agents' {width} (latent-dim {latent_dim} + one label "
                    "column per class)",
                )
            )
    return kept, rejected, width


def check_shared_layout(
    uploads: list[Upload],
    reference: Mapping[str, np.ndarray] | None,
    share: str,
) -> tuple[list[Upload], list[Rejection]]:
    """Keep the uploads whose shared arrays match ``reference`` in keys and
    shapes (``None``: the round's most common layout, ties to the first)."""
    if not uploads:
        return uploads, []
    if reference is None:
        signatures = [_signature(u.shared or {}) for u in uploads]
        best = max(signatures, key=signatures.count)
        reference = uploads[signatures.index(best)].shared
    kept, rejected = [], []
    for upload in uploads:
        assert upload.shared is not None
        try:
            validate_shared(upload.shared, scope=share, reference=reference)
        except P.ProtocolError as err:
            rejected.append((upload.node_id, str(err)))
            continue
        kept.append(upload)
    return kept, rejected


def screen_uploads(
    uploads: list[Upload], factor: float
) -> tuple[list[Upload], list[Rejection]]:
    """Leave out clouds off the agents' median scale or position
    (:func:`otm_flower.screening.screen_clouds`)."""
    reasons = screen_clouds([u.codes for u in uploads], factor)
    kept = [u for u, r in zip(uploads, reasons, strict=True) if r is None]
    rejected = [
        (u.node_id, r) for u, r in zip(uploads, reasons, strict=True) if r is not None
    ]
    return kept, rejected


def _signature(arrays: Mapping[str, np.ndarray]) -> tuple[tuple[str, tuple], ...]:
    """Keys and shapes of a set of arrays (to find the agents' common layout)."""
    return tuple(sorted((key, np.shape(value)) for key, value in arrays.items()))
