"""Record linkage across parties by keyed hashes of shared record keys.

Parties that share a record key for some records (a patient number, a sample
barcode) turn each key into an opaque linked-record id with HMAC-SHA256 under
a federation secret that every party holds and the server does not.  The ids
are int64 values in ``[0, 2**63)``, one per uploaded row, ``-1`` for a row
without a key: the OTM protocol's ``anchor-ids`` (see
:func:`otm_flower.protocol.validate_anchor_ids`).

What the server learns: which uploaded rows of different parties carry the
same id (so share a key), how many ids each upload has and how many of them it
shares with each other upload, and which ids no other upload carries (visible
as solitary: a keyed record no other party uploaded).  What it
cannot learn without the secret: the keys themselves, or whether an id belongs
to a key it guesses (a keyed hash cannot be inverted or checked by hashing
candidate keys).  Under a different secret the same key gives an unrelated id,
so ids of two federations cannot be joined.  Anyone holding the secret can test
guessed keys, so the secret is kept from the server.

Key text: a key is ``str(key)`` with surrounding whitespace removed, Unicode
NFC-normalised and UTF-8 encoded, so parties must write keys the same way
(``"0017"`` and ``"17"`` are different keys).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MIN_SECRET_BYTES",
    "NO_LINK",
    "LinkageError",
    "link_id",
    "link_ids",
    "read_link_secret",
]

MIN_SECRET_BYTES = 16
"""Shortest accepted federation secret, in bytes."""

NO_LINK = -1
"""The id of a row without a record key."""

_DOMAIN = b"otm-flower record link v1\x00"  # keeps these HMACs apart from others


class LinkageError(ValueError):
    """A link secret or a set of record keys is missing or unusable."""


def read_link_secret(path: str | os.PathLike[str]) -> bytes:
    """Read the federation secret from a file.

    One trailing newline (``\\n`` or ``\\r\\n``) is removed; the other bytes
    are the secret as they are.

    Parameters
    ----------
    path : str or path-like
        The secret file (e.g. 32 random bytes, or a long random hex line).

    Returns
    -------
    bytes

    Raises
    ------
    LinkageError
        If the file is missing or unreadable, empty, or the secret is shorter
        than :data:`MIN_SECRET_BYTES` bytes.
    """
    path = Path(path).expanduser()
    try:
        secret = path.read_bytes()
    except FileNotFoundError as err:
        raise LinkageError(f"link secret file not found: {path}") from err
    except OSError as err:
        raise LinkageError(f"cannot read link secret file {path}: {err}") from err
    for ending in (b"\r\n", b"\n"):
        if secret.endswith(ending):
            secret = secret[: -len(ending)]
            break
    if not secret:
        raise LinkageError(f"link secret file {path} is empty")
    _check_secret(secret, f"link secret in {path}")
    return secret


def _check_secret(secret: Any, what: str = "link secret") -> None:
    if not isinstance(secret, bytes):
        raise LinkageError(f"{what} must be bytes, got {type(secret).__name__}")
    if len(secret) < MIN_SECRET_BYTES:
        raise LinkageError(
            f"{what} has {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed"
        )


def _key_bytes(key: Any) -> bytes | None:
    """The normalised UTF-8 text of a key; ``None`` for a missing or empty key."""
    if key is None or (isinstance(key, float | np.floating) and math.isnan(key)):
        return None
    if isinstance(key, bytes):
        key = key.decode("utf-8")
    text = unicodedata.normalize("NFC", str(key).strip())
    return text.encode("utf-8") if text else None


def link_id(key: Any, secret: bytes) -> int:
    """The linked-record id of one key (see :func:`link_ids`)."""
    _check_secret(secret)
    return _id(key, secret)


def _id(key: Any, secret: bytes) -> int:
    data = _key_bytes(key)
    if data is None:
        return NO_LINK
    digest = hmac.new(secret, _DOMAIN + data, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def link_ids(keys: Iterable[Any], secret: bytes) -> np.ndarray:
    """Opaque linked-record ids of record keys, one per row.

    Each id is the first 8 bytes of HMAC-SHA256(secret, key) read big-endian
    and shifted right by one bit, a non-negative int63; a missing key (``None``,
    NaN, empty or blank text) gives ``-1``.  The same key under the same secret
    gives the same id at every party and in every call.

    Parameters
    ----------
    keys : iterable
        One record key per row (str, bytes, int, ...; ``str`` is applied).
    secret : bytes
        The federation secret (:func:`read_link_secret`), at least
        :data:`MIN_SECRET_BYTES` bytes.

    Returns
    -------
    ndarray
        int64, shape ``(n_rows,)``; ``-1`` or an id in ``[0, 2**63)``.

    Raises
    ------
    LinkageError
        On a bad secret, or a repeated key (ids must be unique within an
        upload); the message gives the count and a row index, not the key.
    """
    _check_secret(secret)
    ids = np.array([_id(k, secret) for k in keys], dtype=np.int64)
    linked = ids[ids != NO_LINK]
    values, counts = np.unique(linked, return_counts=True)
    if (counts > 1).any():
        first = int(np.flatnonzero(ids == values[counts > 1][0])[0])
        raise LinkageError(
            f"{int((counts > 1).sum())} record keys repeat (ids must be unique "
            f"within an upload), e.g. the key of row {first}"
        )
    return ids
