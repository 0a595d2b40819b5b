"""Decoding a received Flower ``Array`` without trusting what it claims.

Flower's ``Array.numpy()`` hands the bytes to ``np.load``, which allocates the
array its ``.npy`` header claims before reading the data: a message claiming
``10**12`` rows in a few bytes costs that allocation (or a ``MemoryError``). It
also raises plain ``ValueError``/``EOFError`` on corrupt bytes and object dtypes.
:func:`read_array` reads the header first, checks that the data carry exactly the
bytes it claims, and decodes only then; every problem is a
:class:`~otm_flower.protocol.ProtocolError` naming the array.

Flower-free (duck-typed on the ``stype`` and ``data`` of an ``Array``).
"""

from __future__ import annotations

import io
import math
from typing import Protocol

import numpy as np
from numpy.lib import format as npy_format

from .protocol import ProtocolError

#: The only serialisation type decoded (Flower's ``SType.NUMPY``).
NUMPY_STYPE = "numpy.ndarray"
#: dtype kinds a protocol array may have: bool, signed, unsigned, float.
NUMERIC_KINDS = "biuf"
_HEADER_READERS = {
    (1, 0): npy_format.read_array_header_1_0,
    (2, 0): npy_format.read_array_header_2_0,
}


class WireArray(Protocol):
    """What :func:`read_array` needs of a Flower ``Array``."""

    stype: str
    data: bytes


def read_array(array: WireArray, name: str) -> np.ndarray:
    """The numpy array a received ``Array`` carries, once its bytes add up.

    Parameters
    ----------
    array : flwr.app.Array
        As received.
    name : str
        What the array is (``"codes"``, ``"shared parameter 'head.weight'"``),
        for the error message.

    Raises
    ------
    ProtocolError
        When it is not numpy-serialised, its header does not parse, its dtype is
        not bool/int/float, a dimension is negative, or its data are not exactly
        the ``prod(shape) * itemsize`` bytes the header claims.
    """
    if array.stype != NUMPY_STYPE:
        raise ProtocolError(f"{name}: serialisation {array.stype!r}, not {NUMPY_STYPE}")
    data = bytes(array.data)
    shape, fortran, dtype, offset = _header(data, name)
    claimed = math.prod(shape) * dtype.itemsize
    if len(data) - offset != claimed:
        raise ProtocolError(
            f"{name}: header claims shape {shape} of {dtype} ({claimed} bytes), "
            f"the data hold {len(data) - offset} bytes"
        )
    flat = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C").copy()


def _header(data: bytes, name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset of ``.npy`` bytes."""
    stream = io.BytesIO(data)
    try:
        version = npy_format.read_magic(stream)
    except ValueError as err:
        raise ProtocolError(f"{name}: not a .npy array ({err})") from err
    reader = _HEADER_READERS.get(version)
    if reader is None:
        raise ProtocolError(f"{name}: .npy format version {version} not accepted")
    try:
        shape, fortran, dtype = reader(stream)
    except (ValueError, TypeError, SyntaxError, EOFError, OverflowError) as err:
        raise ProtocolError(f"{name}: unreadable .npy header ({err})") from err
    if dtype.kind not in NUMERIC_KINDS or dtype.fields or dtype.subdtype:
        raise ProtocolError(f"{name}: dtype {dtype} is not bool, int or float")
    if any(dim < 0 for dim in shape):
        raise ProtocolError(f"{name}: negative dimension in shape {shape}")
    return tuple(int(d) for d in shape), bool(fortran), dtype, stream.tell()
