"""Reading train replies into uploads; the round-level checks; bytes of rejects."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MessageType, MetricRecord, RecordDict

from otm_flower import protocol as P
from otm_flower.averaging import SHARED_RECORD
from strategies.replies import (
    RejectedReply,
    check_code_width,
    read_evaluate_reply,
    read_train_reply,
)

from .conftest import incoming
from .fuzz_arrays import allocation_peak, forged, npy_bytes

D = 4
RULES = {"latent_dim": D, "max_rows": 32, "label_cost": False, "share": "none"}


def reply(codes: np.ndarray, *, anchors=None, shared=None, examples=100):
    record = ArrayRecord({P.KEY_CODES: Array(codes)})
    if anchors is not None:
        record[P.KEY_ANCHORS] = Array(anchors)
    content = RecordDict(
        {
            P.CODES_RECORD: record,
            P.METRICS_RECORD: MetricRecord(
                {P.KEY_NUM_EXAMPLES: examples, P.KEY_AGENT: 3}
            ),
        }
    )
    if shared is not None:
        content[SHARED_RECORD] = ArrayRecord({k: Array(v) for k, v in shared.items()})
    return incoming(content, MessageType.TRAIN, src=5, dst=0)


CODES = np.ones((10, D), np.float32)
HEAD = {"head.weight": np.ones((2, D), np.float32)}


def test_a_valid_reply_becomes_an_upload_with_its_bytes() -> None:
    ids = np.arange(10, dtype=np.int64)
    upload = read_train_reply(reply(CODES, anchors=ids), **RULES)
    assert upload.node_id == 5 and upload.codes.shape == (10, D)
    np.testing.assert_array_equal(upload.anchors, ids)
    assert upload.shared is None and upload.weight == 1.0
    assert upload.nbytes == CODES.nbytes + ids.nbytes
    shared = read_train_reply(
        reply(CODES, shared=HEAD, examples=40), **RULES | {"share": "head"}
    )
    assert shared.weight == 40.0 and shared.nbytes == CODES.nbytes + 2 * D * 4


@pytest.mark.parametrize(
    ("kwargs", "rules", "reason", "nbytes"),
    [
        ({"anchors": np.arange(9)}, {}, "one per code row", CODES.nbytes),
        ({}, {"share": "head"}, "no ArrayRecord 'shared'", CODES.nbytes),
        (
            {"shared": {"head.weight": np.full((2, D), np.nan, np.float32)}},
            {"share": "head"},
            "NaN",
            CODES.nbytes + 2 * D * 4,
        ),
        (
            {"shared": HEAD, "examples": 0},
            {"share": "head"},
            "positive number",
            CODES.nbytes + 2 * D * 4,
        ),
        ({}, {"latent_dim": D + 1}, "latent dimension", 0),
        ({}, {"label_cost": True}, "label-cost-weight", 0),
    ],
)
def test_a_rejected_reply_names_the_problem_and_the_bytes_read(
    kwargs, rules, reason, nbytes
) -> None:
    with pytest.raises(RejectedReply, match=reason) as caught:
        read_train_reply(reply(CODES, **kwargs), **RULES | rules)
    assert caught.value.nbytes == nbytes


def test_code_width_is_the_most_common_then_fixed() -> None:
    def uploads(*widths: int):
        return [
            read_train_reply(
                reply(np.ones((4, w), np.float32)), **RULES | {"latent_dim": None}
            )
            for w in widths
        ]

    kept, rejected, width = check_code_width(uploads(7, 6, 7), None, D)
    assert width == 7 and len(kept) == 2 and len(rejected) == 1
    assert "the other agents' 7" in rejected[0][1]
    _, _, tie = check_code_width(uploads(7, 6), None, D)
    assert tie == 6  # ties: the narrowest
    kept, rejected, width = check_code_width(uploads(6, 6), 7, D)
    assert width == 7 and kept == [] and len(rejected) == 2


def test_an_evaluate_reply_without_metrics_is_rejected() -> None:
    empty = incoming(RecordDict(), MessageType.EVALUATE, src=2, dst=0)
    with pytest.raises(RejectedReply, match="evaluation: no metrics record"):
        read_evaluate_reply(empty)
    scores = incoming(
        RecordDict({P.METRICS_RECORD: MetricRecord({"acc": 0.5, P.KEY_AGENT: 1})}),
        MessageType.EVALUATE,
        src=2,
        dst=0,
    )
    assert read_evaluate_reply(scores) == {"acc": 0.5, P.KEY_AGENT: 1.0}


def test_a_header_claiming_absent_rows_is_rejected_without_allocating() -> None:
    msg = reply(CODES)
    msg.content[P.CODES_RECORD][P.KEY_CODES] = forged(CODES, (2**40, D))
    with allocation_peak() as memory, pytest.raises(RejectedReply) as err:
        read_train_reply(msg, **RULES)
    assert "header claims shape (1099511627776, 4)" in err.value.reason
    assert memory["peak"] < 2**20


def test_pickled_and_unsigned_overflowing_arrays_are_rejected() -> None:
    objects = reply(CODES)
    pickled = npy_bytes(np.array([None, {"a": 1}], dtype=object))
    objects.content[P.CODES_RECORD][P.KEY_CODES] = Array(
        "object", (2,), "numpy.ndarray", pickled
    )
    with pytest.raises(RejectedReply, match="dtype object"):
        read_train_reply(objects, **RULES)
    wrapped = np.full(10, 2**64 - 1, dtype=np.uint64)  # -1 once cast to int64
    with pytest.raises(RejectedReply, match="exceeds the int64 range"):
        read_train_reply(reply(CODES, anchors=wrapped), **RULES)


def test_codes_beyond_float32_range_and_nan_metrics_are_rejected() -> None:
    huge = np.full((10, D), 1e300, np.float64)
    with pytest.raises(RejectedReply, match="float32 range"):
        read_train_reply(reply(huge), **RULES)
    scores = incoming(
        RecordDict({P.METRICS_RECORD: MetricRecord({"acc": float("nan")})}),
        MessageType.EVALUATE,
        src=2,
        dst=0,
    )
    with pytest.raises(RejectedReply, match=r"\['acc'\] are NaN/Inf"):
        read_evaluate_reply(scores)
