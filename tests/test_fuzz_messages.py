"""Property-based tests of the client's handling of server messages
(``clients/otm_messages.py``).

Whatever a server sends (any config values, record names, dtypes, shapes,
NaN/Inf, lying headers, missing and extra keys), reading the round config, the
mix targets, the shared arrays and the upload size either succeeds with values
safe to train on or raises a ProtocolError with a reason; no decode allocates
what a header claims but the data do not hold.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    RecordDict,
)
from hypothesis import given
from hypothesis import strategies as st

from clients.otm_messages import (
    read_mix_targets,
    read_shared_arrays,
    remember_upload,
    round_config,
    upload_size,
)
from otm_flower import protocol as P

from .conftest import incoming
from .fuzz_arrays import (
    ALLOCATION_BOUND,
    FUZZ,
    allocation_peak,
    finite32,
    float_matrix,
    forged,
    mostly,
    names,
    wire_array,
)

CONFIG_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, 64, P.PROTOCOL_VERSION, 2, -1]),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.booleans(),
    st.lists(st.integers(-3, 3), max_size=3),
)
CONFIG_KEYS = st.sampled_from([P.KEY_VERSION, P.KEY_MIX_BATCH, P.KEY_ROUND]) | names()
ARRAY_KEYS = st.sampled_from([P.KEY_MIXED, P.KEY_BARYCENTER]) | names()


@st.composite
def server_messages(draw, n_rows: int) -> Message:
    """A ``train`` message as a server of any intent could send it."""
    content = RecordDict()
    config = draw(st.dictionaries(CONFIG_KEYS, CONFIG_VALUES, max_size=4))
    if draw(mostly(True, st.just(False))):
        config[P.KEY_VERSION] = P.PROTOCOL_VERSION
    content[draw(mostly(P.CONFIG_RECORD, names()))] = ConfigRecord(config)
    rows = mostly(n_rows, st.sampled_from([0, n_rows + 1]))
    codes = float_matrix(rows, mostly(4, st.integers(0, 5)))
    if draw(st.integers(0, 4)) < 4:
        arrays = draw(st.dictionaries(ARRAY_KEYS, wire_array(codes), max_size=3))
        if draw(mostly(True, st.just(False))):
            arrays[P.KEY_MIXED] = draw(wire_array(codes))
        content[draw(mostly(P.CODES_RECORD, names()))] = ArrayRecord(arrays)
    if draw(st.booleans()):
        shared = draw(st.dictionaries(names(), wire_array(codes), max_size=3))
        content[draw(mostly(P.SHARED_RECORD, names()))] = ArrayRecord(shared)
    return incoming(content, MessageType.TRAIN)


def node_context(rows: np.ndarray | None) -> Context:
    """A node's context, after an upload of ``rows`` (``None``: before any)."""
    context = Context(1, 1, {}, RecordDict(), {})
    if rows is not None:
        remember_upload(context, rows)
    return context


def _assert_safe_targets(targets, n_rows: int) -> None:
    assert targets.mixed.ndim == 2 and targets.mixed.shape[0] == n_rows
    assert targets.mixed.shape[1] >= 1 and finite32(targets.mixed)
    assert np.issubdtype(targets.mixed.dtype, np.floating)
    if targets.barycenter is not None:
        assert targets.barycenter.shape == targets.mixed.shape
        assert finite32(targets.barycenter)


@FUZZ
@given(
    data=st.data(),
    n_rows=st.integers(1, 6),
    uploaded=mostly(True, st.just(False)),
    n_train=st.integers(1, 500),
)
def test_a_server_message_is_read_safely_or_refused(
    data, n_rows: int, uploaded: bool, n_train: int
) -> None:
    msg = data.draw(server_messages(n_rows))
    context = node_context(np.arange(n_rows) if uploaded else None)
    outcomes = []
    with allocation_peak() as memory:
        for read in (
            lambda: round_config(msg),
            lambda: read_mix_targets(msg, context),
            lambda: read_shared_arrays(msg),
            lambda: upload_size(msg, n_train),
        ):
            try:
                outcomes.append(read())
            except P.ProtocolError as err:
                assert str(err)
                outcomes.append(err)
    assert memory["peak"] < ALLOCATION_BOUND
    config, targets, shared, size = outcomes
    if isinstance(config, ConfigRecord):
        assert config.get(P.KEY_VERSION, P.PROTOCOL_VERSION) == P.PROTOCOL_VERSION
    if targets is not None and not isinstance(targets, P.ProtocolError):
        _assert_safe_targets(targets, n_rows)
    if isinstance(shared, dict):
        assert all(finite32(value) for value in shared.values())
    if isinstance(size, int):
        assert 1 <= size <= n_train


def _train_message(config: dict, arrays: dict | None = None) -> Message:
    content = RecordDict({P.CONFIG_RECORD: ConfigRecord(config)})
    if arrays is not None:
        content[P.CODES_RECORD] = ArrayRecord(arrays)
    return incoming(content, MessageType.TRAIN)


@pytest.mark.parametrize("size", ["64", 2.5, -3, 0, True, [64]])
def test_a_mix_batch_size_that_is_no_positive_integer_is_refused(size) -> None:
    msg = _train_message({P.KEY_MIX_BATCH: size})
    with pytest.raises(P.ProtocolError, match="mix-batch-size must be a positive"):
        upload_size(msg, 100)


def test_mix_targets_without_mixed_codes_or_claiming_absent_rows_are_refused() -> None:
    context = node_context(np.arange(3))
    without = _train_message({}, {P.KEY_BARYCENTER: Array(np.zeros((3, 2)))})
    with pytest.raises(P.ProtocolError, match="has no array 'mixed-codes'"):
        read_mix_targets(without, context)
    lying = _train_message({}, {P.KEY_MIXED: forged(np.zeros((3, 2)), (2**40, 2))})
    with allocation_peak() as memory, pytest.raises(P.ProtocolError, match="claims"):
        read_mix_targets(lying, context)
    assert memory["peak"] < 2**20
    overflow = _train_message({}, {P.KEY_MIXED: Array(np.full((3, 2), 1e300))})
    with pytest.raises(P.ProtocolError, match="NaN/Inf values"):
        read_mix_targets(overflow, context)
