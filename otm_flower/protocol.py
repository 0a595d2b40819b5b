"""OTM message protocol: record names, version, and validation of uploaded codes.

Flower-free on purpose: a compatible client or server in any stack needs only these
names (see ``docs/protocol.md``). One exchange per round:

* server -> agent, message type ``train``: ConfigRecord ``config``
  (``server-round``, ``protocol-version``, ``mix-batch-size``) and, from the
  agent's second round on, ArrayRecord ``otm`` with ``mixed-codes`` and
  ``barycenter-codes`` (float32, ``n_k x d``, in the order of the agent's last
  upload) and, with record linkage, ArrayRecord ``links`` with ``linked-ids``
  (int64: the ids of the agent's uploads that another agent also uploaded);
* agent -> server reply: ArrayRecord ``otm`` with ``codes`` (float32,
  ``n_k x d``, ``n_k <= mix-batch-size``) of a fresh batch of its own training rows
  (with ``anchor-rate`` > 0 also ``anchor-ids``, int64, ``n_k``: each row's opaque
  shared record id or -1, see :mod:`otm_flower.anchors`), and MetricRecord
  ``metrics`` (``num-examples``, ``agent-id``, loss terms);
* server -> agent ``evaluate``: ConfigRecord ``config``; reply MetricRecord
  ``metrics`` (``agent-id``, ``modality``, ``n-train``, ``n-test``, ``acc``,
  ``nmi``, ``ari``, and ``accuracy`` for classification).

The hybrids ``otm-fedavg``/``otm-head`` add ArrayRecord ``shared`` (model
parameters, :mod:`otm_flower.averaging`) in both directions, and
``label-cost-weight`` > 0 widens the codes by a scaled one-hot label block; see
``docs/protocol.md``.

Every record and key name of these messages is defined here, once; the strategy,
the ServerApps and the clients import them from this module. The ``fedavg``
baseline speaks Flower's own FedAvg messages (ArrayRecord :data:`ARRAYS_RECORD`,
MetricRecord :data:`METRICS_RECORD`, ConfigRecord :data:`CONFIG_RECORD`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Version the server sends under :data:`KEY_VERSION`; a client refuses another.
PROTOCOL_VERSION = 1

# Record names.
#: ConfigRecord of every server message (round, version, batch size, sharing).
CONFIG_RECORD = "config"
#: ArrayRecord of the OTM codes, in both directions.
CODES_RECORD = "otm"
#: MetricRecord of every agent reply.
METRICS_RECORD = "metrics"
#: ArrayRecord of the hybrids' shared parameters, in both directions.
SHARED_RECORD = "shared"
#: ArrayRecord of the ids of an agent's records that another agent also uploaded
#: (server -> agent, with record linkage).
LINKS_RECORD = "links"
#: ArrayRecord of the ``fedavg`` baseline's layers (Flower FedAvg's default
#: ``arrayrecord_key``).
ARRAYS_RECORD = "arrays"

# Keys of the server's ConfigRecord.
KEY_ROUND = "server-round"
KEY_VERSION = "protocol-version"
KEY_MIX_BATCH = "mix-batch-size"
#: What a hybrid shares (``"all"`` or ``"head"``).
KEY_SHARING = "shared-parameters"

# Keys of the codes ArrayRecord.
KEY_CODES = "codes"
KEY_ANCHORS = "anchor-ids"
KEY_MIXED = "mixed-codes"
KEY_BARYCENTER = "barycenter-codes"
#: Key of :data:`LINKS_RECORD`: int64 ids, each one the agent itself uploaded.
KEY_LINKED = "linked-ids"

#: Key prefix of the task head's parameters (all that ``otm-head`` shares).
HEAD_PREFIX = "head."

# Keys of the agents' MetricRecord.
KEY_NUM_EXAMPLES = "num-examples"
KEY_AGENT = "agent-id"
KEY_MODALITY = "modality"
KEY_N_TRAIN = "n-train"
KEY_N_TEST = "n-test"
#: Prefix of every training metric in a ``train`` reply (``train-rec``, ...).
TRAIN_PREFIX = "train-"
#: Training metric: the local-DP epsilon spent so far (``train-dp-epsilon`` on the
#: wire).
DP_EPSILON = "dp-epsilon"
KEY_DP_EPSILON = TRAIN_PREFIX + DP_EPSILON
#: Training metric: 1 when the party ignored the round's mix targets because its
#: estimated linked records are below the link floor (:mod:`otm_flower.link_floor`),
#: 0 when it used them (``train-link-floor`` on the wire).
KEY_LINK_FLOOR = "link-floor"

#: Query action (message type ``query.identify``): which agent a node holds.
QUERY_IDENTIFY = "identify"


class ProtocolError(ValueError):
    """A message does not follow the OTM protocol."""


@dataclass
class MixTargets:
    """What the server sent back for the agent's last uploaded batch.

    Attributes
    ----------
    rows : np.ndarray
        Indices of the uploaded batch in the agent's own training data. Local only:
        never sent anywhere.
    mixed : np.ndarray
        Pulled-back mixed codes, one per row (n x d).
    barycenter : np.ndarray, optional
        Pulled-back barycenter, one per row (n x d), target of the alignment term.
    """

    rows: np.ndarray
    mixed: np.ndarray
    barycenter: np.ndarray | None = None


def validate_codes(
    codes: np.ndarray, latent_dim: int | None, max_rows: int
) -> np.ndarray:
    """Check uploaded latent codes and return them as float64.

    Parameters
    ----------
    codes : np.ndarray
        What the agent sent under ``otm/codes``.
    latent_dim : int, optional
        Expected number of columns; ``None`` accepts any (>= 1).
    max_rows : int
        Upper bound on rows (the configured ``mix-batch-size``).

    Raises
    ------
    ProtocolError
        Naming the problem: wrong dtype, not 2-D, empty, too many rows, wrong latent
        dimension, NaN or Inf values.
    """
    if not np.issubdtype(codes.dtype, np.floating):
        raise ProtocolError(f"codes must be floating point, got dtype {codes.dtype}")
    if codes.ndim != 2:
        raise ProtocolError(f"codes must be 2-D (n x d), got shape {codes.shape}")
    if codes.shape[0] == 0 or codes.shape[1] == 0:
        raise ProtocolError(f"codes are empty (shape {codes.shape})")
    if codes.shape[0] > max_rows:
        raise ProtocolError(
            f"{codes.shape[0]} codes exceed the configured batch of {max_rows}"
        )
    if latent_dim is not None and codes.shape[1] != latent_dim:
        raise ProtocolError(
            f"codes have latent dimension {codes.shape[1]}, expected {latent_dim}"
        )
    if not np.isfinite(codes).all():
        bad = int((~np.isfinite(codes)).sum())
        raise ProtocolError(f"codes contain {bad} NaN/Inf values")
    return codes.astype(np.float64)


def validate_anchor_ids(ids: np.ndarray, n_rows: int) -> np.ndarray:
    """Check uploaded anchor ids (one int per code row, -1 for none).

    Raises
    ------
    ProtocolError
        On a wrong dtype, shape or length, ids below -1, or repeated ids.
    """
    if not np.issubdtype(ids.dtype, np.integer):
        raise ProtocolError(f"anchor ids must be integers, got dtype {ids.dtype}")
    if ids.ndim != 1 or len(ids) != n_rows:
        raise ProtocolError(
            f"anchor ids must be one per code row ({n_rows}), got shape {ids.shape}"
        )
    if (ids < -1).any():
        raise ProtocolError("anchor ids must be >= -1 (-1: no anchor)")
    linked = ids[ids >= 0]
    if len(np.unique(linked)) != len(linked):
        raise ProtocolError("anchor ids repeat within one upload")
    return ids.astype(np.int64)
