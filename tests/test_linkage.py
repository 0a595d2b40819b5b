"""Keyed-hash record linkage: the secret file and the linked-record ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from otm_flower.linkage import (
    MIN_SECRET_BYTES,
    NO_LINK,
    LinkageError,
    link_id,
    link_ids,
    read_link_secret,
)
from otm_flower.protocol import validate_anchor_ids

SECRET = b"0123456789abcdef-federation"
OTHER = b"another federation secret!"


def test_read_link_secret_strips_one_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    assert read_link_secret(path) == SECRET
    path.write_bytes(SECRET + b"\r\n")
    assert read_link_secret(path) == SECRET
    path.write_bytes(SECRET + b"\n\n")
    assert read_link_secret(path) == SECRET + b"\n"


def test_read_link_secret_refusals(tmp_path: Path) -> None:
    with pytest.raises(LinkageError, match="link secret file not found: .*nope"):
        read_link_secret(tmp_path / "nope")
    path = tmp_path / "secret"
    path.write_bytes(b"\n")
    with pytest.raises(LinkageError, match="secret .* is empty"):
        read_link_secret(path)
    path.write_bytes(b"short\n")
    with pytest.raises(LinkageError, match=f"has 5 bytes; at least {MIN_SECRET_BYTES}"):
        read_link_secret(path)
    assert isinstance(LinkageError("x"), ValueError)


def test_same_key_same_id_across_calls_and_types() -> None:
    keys = ["p-001", "p-002", "17", " p-003 "]
    first = link_ids(keys, SECRET)
    np.testing.assert_array_equal(first, link_ids(list(keys), SECRET))
    assert link_ids(["p-002"], SECRET)[0] == first[1]
    assert link_id(17, SECRET) == first[2]
    assert link_id("p-003", SECRET) == first[3]
    assert link_id(b"p-001", SECRET) == first[0]


def test_ids_are_int64_non_negative_and_fit_the_wire_format() -> None:
    keys = [f"record-{i}" for i in range(500)]
    ids = link_ids(keys, SECRET)
    assert ids.dtype == np.int64 and ids.shape == (500,)
    assert np.all(ids >= 0)
    assert len(np.unique(ids)) == 500
    validate_anchor_ids(ids, 500)


def test_missing_keys_map_to_minus_one() -> None:
    ids = link_ids(["a", None, "", "   ", float("nan"), np.nan, "b"], SECRET)
    assert list(ids[1:6]) == [NO_LINK] * 5 == [-1] * 5
    assert ids[0] >= 0 and ids[6] >= 0
    validate_anchor_ids(ids, 7)


def test_different_secrets_give_unrelated_ids() -> None:
    keys = [f"k{i}" for i in range(100)]
    a, b = link_ids(keys, SECRET), link_ids(keys, OTHER)
    assert not np.any(a == b)
    assert len(np.intersect1d(a, b)) == 0


def test_ids_do_not_contain_the_key() -> None:
    ids = link_ids(["1", "2", "3"], SECRET)
    assert not np.any(np.isin(ids, [1, 2, 3]))
    assert np.all(ids > 2**32)  # spread over 63 bits, not small numbers


def test_repeated_keys_and_bad_secrets_are_refused() -> None:
    with pytest.raises(LinkageError, match=r"1 record keys repeat .* row 0"):
        link_ids(["x", "y", "x"], SECRET)
    with pytest.raises(LinkageError, match="has 4 bytes"):
        link_ids(["x"], b"abcd")
    with pytest.raises(LinkageError, match="must be bytes, got str"):
        link_ids(["x"], "0123456789abcdefgh")  # type: ignore[arg-type]
