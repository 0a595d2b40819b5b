"""Client side of the OTM protocol for any model: read mix targets, build replies.

Use these from your own Flower ClientApp to take part in OTM with your own encoder
and decoder (see ``examples/custom_model``). Only latent codes and scalar metrics
go into the replies (and, for the hybrids ``otm-fedavg`` / ``otm-head``, the
shared model parameters); which rows were encoded stays in the node's
``context.state``.

Every array the server sends is decoded with
:func:`otm_flower.wire_arrays.read_array` (the data must hold the bytes its
header claims) and every problem in a server message is a ``ProtocolError``.

Importing this module loads Flower's ``flwr.app``, numpy,
:mod:`otm_flower.protocol` and :mod:`otm_flower.wire_arrays` only: no torch, POT
or scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)

from otm_flower import protocol as P
from otm_flower.protocol import MixTargets
from otm_flower.wire_arrays import read_array

#: ConfigRecord in ``context.state`` with the rows of the agent's last upload
#: (node-local, never sent).
ROWS_STATE = "otm-upload"
MetricValues = dict[str, int | float | list[int] | list[float]]


def round_config(msg: Message) -> ConfigRecord:
    """The round's ConfigRecord, after checking the protocol version.

    Raises
    ------
    ProtocolError
        When the server speaks another protocol version.
    """
    config = msg.content.config_records.get(P.CONFIG_RECORD, ConfigRecord())
    version = config.get(P.KEY_VERSION, P.PROTOCOL_VERSION)
    if version != P.PROTOCOL_VERSION:
        raise P.ProtocolError(
            f"server speaks OTM protocol version {version!r}, "
            f"this client {P.PROTOCOL_VERSION}"
        )
    return config


def read_mix_targets(msg: Message, context: Context) -> MixTargets | None:
    """The server's mixed codes for this agent's last upload, if it sent any.

    Returns ``None`` in the agent's first round or when the server sent nothing.

    Raises
    ------
    ProtocolError
        When the record has no mixed codes, or the codes do not match the last
        upload (rows, width), are not floating point or not finite in float32.
    """
    round_config(msg)
    if P.CODES_RECORD not in msg.content.array_records:
        return None
    rows = last_upload(context)
    if rows is None:
        return None
    record = msg.content.array_records[P.CODES_RECORD]
    if P.KEY_MIXED not in record:
        raise P.ProtocolError(
            f"record {P.CODES_RECORD!r} has no array {P.KEY_MIXED!r} "
            f"(it holds {sorted(record)[:5]})"
        )
    mixed = _matching_codes(P.KEY_MIXED, record[P.KEY_MIXED], len(rows))
    barycenter = None
    if P.KEY_BARYCENTER in record:
        barycenter = _matching_codes(
            P.KEY_BARYCENTER, record[P.KEY_BARYCENTER], len(rows)
        )
        if barycenter.shape != mixed.shape:
            raise P.ProtocolError(
                f"{P.KEY_BARYCENTER} of shape {barycenter.shape} unlike "
                f"{P.KEY_MIXED} of shape {mixed.shape}"
            )
    return MixTargets(rows, mixed, barycenter)


def _matching_codes(name: str, array: Array, n_rows: int) -> np.ndarray:
    """The codes of ``array`` when they are ``n_rows x d`` (``d >= 1``) floats,
    finite in float32; else a ProtocolError."""
    codes = read_array(array, name)
    if codes.ndim != 2 or codes.shape[0] != n_rows or codes.shape[1] == 0:
        raise P.ProtocolError(
            f"{name} of shape {codes.shape} do not match the last upload "
            f"of {n_rows} rows"
        )
    return _finite_floats(name, codes)


def _finite_floats(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` (unchanged) when floating point and finite in float32, the
    precision the agents train in; else a ProtocolError."""
    if not np.issubdtype(values.dtype, np.floating):
        raise P.ProtocolError(f"{name} must be floating point, got {values.dtype}")
    with np.errstate(over="ignore"):
        finite = np.isfinite(values.astype(np.float32))
    if not finite.all():
        bad = int((~finite).sum())
        raise P.ProtocolError(f"{name} hold {bad} NaN/Inf values (in float32)")
    return values


def remember_upload(context: Context, rows: np.ndarray) -> None:
    """Keep the uploaded ``rows`` in ``context.state`` (node-local, never sent)."""
    context.state.config_records[ROWS_STATE] = ConfigRecord(
        {"rows": [int(r) for r in rows]}
    )


def last_upload(context: Context) -> np.ndarray | None:
    """The rows of the agent's last upload (int64), ``None`` before the first."""
    saved = context.state.config_records.get(ROWS_STATE)
    if saved is None:
        return None
    return np.asarray(cast(list[int], saved["rows"]), dtype=np.int64)


def read_shared_arrays(msg: Message) -> dict[str, np.ndarray] | None:
    """The server's averaged shared parameters (``otm-fedavg``/``otm-head``).

    Returns ``None`` when the message carries none (every OTM method in round 1,
    and methods that share no parameters).

    Raises
    ------
    ProtocolError
        When an array is not floating point, or not finite in float32.
    """
    record = msg.content.array_records.get(P.SHARED_RECORD)
    if record is None or len(record) == 0:
        return None
    arrays = {}
    for key, array in record.items():
        name = f"shared parameter {key!r}"
        arrays[key] = _finite_floats(name, read_array(array, name))
    return arrays


def read_linked_ids(msg: Message) -> np.ndarray | None:
    """Ids of the agent's records that the server saw another agent upload too.

    Returns ``None`` when the message carries none (no record linkage, nothing
    met yet, or a server with ``link-feedback`` off).

    Raises
    ------
    ProtocolError
        When the ids are not a 1-D array of integers ``>= 0``.
    """
    record = msg.content.array_records.get(P.LINKS_RECORD)
    if record is None or P.KEY_LINKED not in record:
        return None
    ids = read_array(record[P.KEY_LINKED], P.KEY_LINKED)
    if not np.issubdtype(ids.dtype, np.integer) or ids.ndim != 1:
        raise P.ProtocolError(
            f"{P.KEY_LINKED} must be a 1-D integer array, got {ids.dtype} "
            f"of shape {ids.shape}"
        )
    if (ids < 0).any():
        raise P.ProtocolError(f"{P.KEY_LINKED} must be >= 0")
    return ids.astype(np.int64)


def upload_size(msg: Message, n_train: int) -> int:
    """Codes to upload: the server's ``mix-batch-size``, at most ``n_train``.

    Raises
    ------
    ProtocolError
        When ``mix-batch-size`` is not a positive integer.
    """
    size = round_config(msg).get(P.KEY_MIX_BATCH, n_train)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise P.ProtocolError(
            f"{P.KEY_MIX_BATCH} must be a positive integer, got {size!r}"
        )
    return max(1, min(size, n_train))


def train_reply(
    msg: Message,
    context: Context,
    *,
    rows: np.ndarray,
    codes: np.ndarray,
    agent_id: int,
    n_train: int,
    metrics: Mapping[str, float] | None = None,
    anchor_ids: np.ndarray | None = None,
    shared_arrays: Mapping[str, np.ndarray] | None = None,
) -> Message:
    """Reply to an OTM ``train`` message with the codes of ``rows``.

    Parameters
    ----------
    msg, context : Message, Context
        The incoming message and the node's context (``rows`` are kept there, so
        the next round's mixed codes can be matched to them; they are never sent).
    rows : np.ndarray
        Indices of the encoded rows in the agent's own training data.
    codes : np.ndarray
        Their latent codes, ``len(rows) x d``.
    agent_id : int
        The agent's id (its partition id), reported in the metrics.
    n_train : int
        The agent's number of training rows (``num-examples``).
    metrics : Mapping[str, float], optional
        Scalar training metrics to report (prefixed ``train-``).
    anchor_ids : np.ndarray, optional
        Opaque shared record id of each row, -1 for none (see
        :mod:`otm_flower.anchors`); sent only when given.
    shared_arrays : Mapping[str, np.ndarray], optional
        The agent's trained shared parameters (``otm-fedavg``: every shared-shape
        layer; ``otm-head``: the task head), sent in ArrayRecord
        :data:`otm_flower.protocol.SHARED_RECORD` for the server to average.
    """
    codes = np.asarray(codes, dtype=np.float32)
    if codes.ndim != 2 or len(codes) != len(rows):
        raise ValueError(f"codes must be (len(rows)={len(rows)}, d), got {codes.shape}")
    remember_upload(context, rows)
    values: MetricValues = {
        f"{P.TRAIN_PREFIX}{k}": float(v) for k, v in (metrics or {}).items()
    }
    values.update({P.KEY_NUM_EXAMPLES: int(n_train), P.KEY_AGENT: int(agent_id)})
    content = RecordDict(
        {
            P.CODES_RECORD: _codes_record(codes, anchor_ids),
            P.METRICS_RECORD: MetricRecord(values),
        }
    )
    if shared_arrays is not None:
        content[P.SHARED_RECORD] = ArrayRecord(
            {key: Array(np.asarray(value)) for key, value in shared_arrays.items()}
        )
    return Message(content=content, reply_to=msg)


def _codes_record(codes: np.ndarray, anchor_ids: np.ndarray | None) -> ArrayRecord:
    """ArrayRecord ``otm`` of a reply: the codes, and the anchor ids when given."""
    arrays = {P.KEY_CODES: Array(codes)}
    if anchor_ids is not None:
        ids = np.asarray(anchor_ids, dtype=np.int64)
        if ids.shape != (len(codes),):
            raise ValueError(f"anchor_ids must be one per row, got {ids.shape}")
        arrays[P.KEY_ANCHORS] = Array(ids)
    return ArrayRecord(arrays)


def evaluate_reply(msg: Message, metrics: Mapping[str, int | float]) -> Message:
    """Reply to an OTM ``evaluate`` message with scalar metrics only."""
    round_config(msg)
    values: MetricValues = {k: v for k, v in metrics.items()}
    return Message(
        content=RecordDict({P.METRICS_RECORD: MetricRecord(values)}), reply_to=msg
    )


def answer_train(
    msg: Message,
    context: Context,
    *,
    train: Callable[[MixTargets | None], Mapping[str, float]],
    encode_rows: Callable[[np.ndarray], np.ndarray],
    n_train: int,
    agent_id: int,
    rng: np.random.Generator,
) -> Message:
    """Answer an OTM ``train`` message with any model, in one call.

    Parameters
    ----------
    train : callable
        ``train(targets)`` runs the agent's local training and returns scalar
        losses. ``targets`` is ``None`` or a :class:`MixTargets`: for each row
        ``targets.rows[i]`` of the agent's training data, the server's mixed code
        ``targets.mixed[i]`` (decode it back to that row: the mix loss) and
        pulled-back barycenter ``targets.barycenter[i]`` (pull the row's code
        toward it: the alignment loss). :func:`otm_flower.training.otm_loss_terms`
        computes both for torch models.
    encode_rows : callable
        ``encode_rows(rows)`` returns the latent codes of those training rows.
    n_train, agent_id : int
        The agent's training-set size and id.
    rng : np.random.Generator
        Draws the rows to upload.
    """
    targets = read_mix_targets(msg, context)
    losses = train(targets)
    rows = rng.choice(n_train, size=upload_size(msg, n_train), replace=False)
    return train_reply(
        msg,
        context,
        rows=rows,
        codes=encode_rows(rows),
        agent_id=agent_id,
        n_train=n_train,
        metrics=losses,
    )
