"""Property-based tests of the strategy's reply parsing (``strategies/replies.py``).

Whatever an agent sends (record names, dtypes, shapes, NaN/Inf, lying headers,
missing and extra keys, metrics of any type), a train reply becomes an Upload
that is safe to mix or a RejectedReply with a reason; nothing else escapes, and
no decode allocates what a header claims but the data do not hold.
"""

from __future__ import annotations

import numpy as np
from flwr.app import (
    ArrayRecord,
    Error,
    Message,
    MessageType,
    Metadata,
    RecordDict,
)
from hypothesis import given
from hypothesis import strategies as st

from otm_flower import protocol as P
from strategies.replies import (
    RejectedReply,
    Upload,
    check_code_width,
    check_shared_layout,
    read_evaluate_reply,
    read_train_reply,
)

from .conftest import incoming
from .fuzz_arrays import (
    ALLOCATION_BOUND,
    FUZZ,
    allocation_peak,
    finite32,
    float_matrix,
    metric_record,
    metric_values,
    mostly,
    names,
    wire_array,
)

CODES = float_matrix(mostly(8, st.integers(0, 40)), mostly(4, st.integers(0, 7)))
IDS = (
    mostly(8, st.integers(1, 40))
    .flatmap(
        lambda n: st.lists(
            mostly(-1, st.integers(-3, 2**63 - 1)), min_size=n, max_size=n
        )
    )
    .map(lambda ids: np.asarray(ids, dtype=np.int64))
)
SHARED = st.dictionaries(
    mostly("head.weight", names()),
    wire_array(float_matrix(st.integers(0, 3), st.integers(1, 3))),
    max_size=3,
)
RULES = st.fixed_dictionaries(
    {
        "latent_dim": mostly(4, st.none() | st.integers(1, 6)),
        "max_rows": mostly(32, st.integers(1, 40)),
        "label_cost": mostly(False, st.just(True)),
        "share": st.sampled_from(["none", "all", "head"]),
    }
)


@st.composite
def codes_record(draw) -> ArrayRecord:
    """Record ``otm``: usually ``codes`` and maybe ``anchor-ids``, plus noise."""
    arrays = {}
    if draw(st.integers(0, 9)) < 9:
        arrays[P.KEY_CODES] = draw(wire_array(CODES))
    if draw(mostly(False, st.just(True))):
        arrays[P.KEY_ANCHORS] = draw(wire_array(IDS))
    arrays |= draw(st.dictionaries(names(), wire_array(CODES), max_size=1))
    return ArrayRecord(arrays)


@st.composite
def train_replies(draw) -> Message:
    """A train reply as an agent of any intent could send it."""
    if draw(st.integers(0, 19)) == 19:
        return _failed_reply(draw(st.text(max_size=20)))
    content = RecordDict()
    content[draw(mostly(P.CODES_RECORD, names()))] = draw(codes_record())
    count = mostly(100, metric_values())
    metrics = {P.KEY_NUM_EXAMPLES: count, P.KEY_AGENT: metric_values()}
    content[draw(mostly(P.METRICS_RECORD, names()))] = draw(metric_record(metrics))
    if draw(st.booleans()):
        content[draw(mostly(P.SHARED_RECORD, names()))] = ArrayRecord(draw(SHARED))
    return incoming(content, MessageType.TRAIN, src=draw(st.integers(1, 9)), dst=0)


def _failed_reply(reason: str) -> Message:
    """A reply carrying Flower's error instead of content."""
    metadata = incoming(RecordDict(), MessageType.TRAIN, src=4, dst=0).metadata
    meta = Metadata(**{k: getattr(metadata, k) for k in _METADATA_FIELDS})
    return Message(metadata=meta, error=Error(code=0, reason=reason))


_METADATA_FIELDS = (
    "run_id",
    "message_id",
    "src_node_id",
    "dst_node_id",
    "reply_to_message_id",
    "group_id",
    "created_at",
    "ttl",
    "message_type",
)


def _assert_safe_upload(upload: Upload, rules: dict) -> None:
    """What the mixer may rely on in an accepted upload."""
    n, width = upload.codes.shape
    assert 1 <= n <= rules["max_rows"] and width >= 1
    assert upload.codes.dtype == np.float64 and finite32(upload.codes)
    if rules["latent_dim"] is not None:
        if rules["label_cost"]:
            assert width > rules["latent_dim"]
        else:
            assert width == rules["latent_dim"]
    if upload.anchors is not None:
        linked = upload.anchors[upload.anchors >= 0]
        assert upload.anchors.shape == (n,) and upload.anchors.min() >= -1
        assert len(np.unique(linked)) == len(linked)
    if rules["share"] == "none":
        assert upload.shared is None
        return
    assert upload.shared and upload.weight > 0 and np.isfinite(upload.weight)
    for key, value in upload.shared.items():
        assert np.issubdtype(value.dtype, np.floating) and np.isfinite(value).all()
        assert rules["share"] == "all" or key.startswith(P.HEAD_PREFIX)


@FUZZ
@given(msg=train_replies(), rules=RULES)
def test_a_train_reply_is_a_safe_upload_or_a_reason(msg: Message, rules) -> None:
    with allocation_peak() as memory:
        try:
            upload = read_train_reply(msg, **rules)
        except RejectedReply as err:
            upload = None
            assert err.reason and err.nbytes >= 0
    assert memory["peak"] < ALLOCATION_BOUND
    if upload is not None:
        _assert_safe_upload(upload, rules)


@FUZZ
@given(
    msg=st.builds(
        lambda record, key: incoming(
            RecordDict({key: record}), MessageType.EVALUATE, src=2, dst=0
        ),
        metric_record({"acc": metric_values(), "nmi": metric_values()}),
        st.just(P.METRICS_RECORD) | names(),
    )
)
def test_an_evaluate_reply_is_finite_metrics_or_a_reason(msg: Message) -> None:
    try:
        metrics = read_evaluate_reply(msg)
    except RejectedReply as err:
        assert err.reason.startswith("evaluation: ")
        return
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())


def _upload(node: int, codes: np.ndarray, shared: dict | None) -> Upload:
    return Upload(node, codes, None, None, shared, 1.0, codes.nbytes)  # type: ignore[arg-type]


LAYOUTS = st.dictionaries(
    st.sampled_from(["head.weight", "head.bias", "enc.w"]),
    st.sampled_from([(2,), (2, 3), (3, 2), (0,)]),
    min_size=1,
)


@FUZZ
@given(
    widths=st.lists(st.integers(1, 6), max_size=8),
    width=st.none() | st.integers(1, 6),
)
def test_the_width_check_keeps_one_width_and_names_the_rest(widths, width) -> None:
    uploads = [_upload(i, np.zeros((2, w)), None) for i, w in enumerate(widths)]
    kept, rejected, chosen = check_code_width(uploads, width, 4)
    assert len(kept) + len(rejected) == len(uploads)
    assert {u.codes.shape[1] for u in kept} <= {chosen}
    if width is None and uploads:
        assert len(kept) == max(widths.count(w) for w in set(widths))
    assert all(str(chosen) in reason for _, reason in rejected)


@FUZZ
@given(
    layouts=st.lists(LAYOUTS, min_size=1, max_size=6),
    share=st.sampled_from(["all", "head"]),
)
def test_the_layout_check_keeps_one_layout(layouts, share) -> None:
    uploads = [
        _upload(i, np.zeros((2, 2)), {k: np.zeros(s) for k, s in layout.items()})
        for i, layout in enumerate(layouts)
    ]
    kept, rejected = check_shared_layout(uploads, None, share)
    assert len(kept) + len(rejected) == len(uploads)
    signatures = {
        tuple(sorted((k, v.shape) for k, v in u.shared.items())) for u in kept
    }
    assert len(signatures) <= 1
    assert all(reason for _, reason in rejected)
