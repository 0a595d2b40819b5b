"""Hypothesis strategies for hostile Flower messages: arrays whose bytes lie.

A wire array is a Flower ``Array`` as it may arrive: an honest one of any dtype
and shape (0-length dimensions, NaN/Inf included), one whose ``.npy`` header
claims a shape its data do not hold (up to ``2**40`` rows), one cut short, one of
pickled objects, random bytes, or a foreign serialisation type. The fuzz tests'
profile: a fixed number of examples, derandomised (``FUZZ_EXAMPLES`` scales it).
"""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from flwr.app import Array, MetricRecord
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib import format as npy_format

#: Examples per property; ``FUZZ_EXAMPLES=4000`` for a long run.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Most bytes a decode may allocate beyond the data it was given.
ALLOCATION_BOUND = 8 * 2**20
HUGE = (2**31, 2**33, 10**12, 2**40)

DTYPES = st.sampled_from(
    ["<f4", ">f4", "<f8", "<f2", "<i8", "<i4", "|u1", "<u8", "|b1", "<c8", "<M8[s]"]
)
SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 1e38, -3.4e38, 0.0, -0.0])


def mostly(value, others: st.SearchStrategy) -> st.SearchStrategy:
    """``value`` four times in five, else one of ``others``."""
    return st.integers(0, 4).flatmap(lambda i: others if i == 4 else st.just(value))


@st.composite
def float_matrix(draw, rows: st.SearchStrategy[int], cols: st.SearchStrategy[int]):
    """Honest-looking float32 codes; one in four has a NaN/Inf or huge value."""
    shape = (draw(rows), draw(cols))
    values = draw(hnp.arrays(np.float32, shape, elements=st.floats(-10, 10, width=32)))
    if values.size and draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, values.size - 1))
        values.flat[at] = draw(SPECIAL)
    return values


def any_array():
    """An honest array of any dtype and 0-3 dimensions of 0-5."""
    return DTYPES.flatmap(
        lambda dtype: hnp.arrays(
            np.dtype(dtype),
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        )
    )


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def forged(array: np.ndarray, shape: tuple[int, ...]) -> Array:
    """``array``'s data under a header that claims ``shape``."""
    buffer = io.BytesIO()
    header = {"descr": npy_format.dtype_to_descr(array.dtype)}
    header |= {"fortran_order": False, "shape": shape}
    npy_format.write_array_header_1_0(buffer, header)
    buffer.write(array.tobytes())
    return Array(str(array.dtype), shape, "numpy.ndarray", buffer.getvalue())


@st.composite
def lying_array(draw) -> Array:
    """An array whose header, data or type is not what it seems."""
    base = draw(any_array())
    kind = draw(st.sampled_from(["huge", "shape", "cut", "pickle", "bytes", "stype"]))
    if kind == "huge":
        tail = draw(st.lists(st.integers(1, 8), max_size=2))
        return forged(base, (draw(st.sampled_from(HUGE)), *tail))
    if kind == "shape":
        shape = draw(st.lists(st.integers(-3, 7), max_size=3))
        return forged(base, tuple(shape))
    data = npy_bytes(base)
    if kind == "cut":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif kind == "pickle":
        data = npy_bytes(np.array([{"x": 1}, None], dtype=object))
    elif kind == "bytes":
        data = draw(st.binary(max_size=200))
    stype = "numpy.ndarray"
    if kind == "stype":
        stype = draw(st.sampled_from(["torch.Tensor", "", "numpy.ndarray "]))
    return Array("float32", base.shape, stype, data)


def wire_array(honest: st.SearchStrategy[np.ndarray] | None = None):
    """Mostly ``honest`` arrays (as Flower sends them), else any or lying ones."""
    honest_arrays = st.nothing() if honest is None else honest
    return st.one_of(
        honest_arrays.map(Array),
        honest_arrays.map(Array),
        any_array().map(Array),
        lying_array(),
    )


def names() -> st.SearchStrategy[str]:
    """Record and key names: the protocol's, near misses, random text."""
    known = ["otm", "codes", "anchor-ids", "mixed-codes", "barycenter-codes"]
    known += ["shared", "metrics", "config", "head.weight", "head.bias", "enc.w"]
    return st.sampled_from(known) | st.text(max_size=12)


def metric_values():
    """Any value a MetricRecord holds, NaN and Inf included."""
    number = st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True)
    number |= st.sampled_from([np.nan, np.inf, -np.inf, 0, -1, 0.0])
    return number | st.lists(st.integers(-5, 5)) | st.lists(st.floats(), max_size=3)


def metric_record(required: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """A MetricRecord with each ``required`` key (dropped at times), plus noise."""
    return st.fixed_dictionaries(
        {},
        optional={key: value for key, value in required.items()},
    ).flatmap(
        lambda values: st.dictionaries(names(), metric_values(), max_size=3).map(
            lambda extra: MetricRecord(extra | values)
        )
    )


@contextmanager
def allocation_peak() -> Iterator[dict[str, int]]:
    """``{"peak": bytes}``: the most numpy and Python held at once inside the
    block (set when the block ends, also on an exception)."""
    measured = {"peak": 0}
    tracemalloc.start()
    try:
        yield measured
    finally:
        measured["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def finite32(values: np.ndarray) -> bool:
    """Whether ``values`` stay finite when cast to float32 (what is sent on)."""
    with np.errstate(over="ignore"):
        return bool(np.isfinite(np.asarray(values).astype(np.float32)).all())
