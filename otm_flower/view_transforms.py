"""Per-view feature transforms of the simulated agents, fitted on their train rows.

:func:`preprocess_view` is what :func:`~otm_flower.partition.make_agents` applies
to each agent's view (z-score, tf-idf, L2 row normalisation or none).  A deployed
party's saveable transform is :class:`~otm_flower.preprocessing.Preprocessor`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.preprocessing import StandardScaler, normalize

from .multiview import DataError, View, is_sparse

__all__ = ["PREPROCESS_METHODS", "auto_method", "check_method", "preprocess_view"]

PREPROCESS_METHODS = ("auto", "standard", "tfidf", "l2", "none")
"""Names :func:`preprocess_view` accepts as ``method``."""

Transform = Callable[[View], np.ndarray]


def check_method(method: str) -> None:
    """Raise ``ValueError`` unless ``method`` is one of :data:`PREPROCESS_METHODS`."""
    if method not in PREPROCESS_METHODS:
        raise ValueError(
            f"unknown preprocess method {method!r}; use one of {PREPROCESS_METHODS}"
        )


def preprocess_view(
    x_train: View, x_test: View, method: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a per-view transform on the training rows and apply it to both sets.

    Parameters
    ----------
    x_train, x_test : ndarray or scipy sparse matrix
        ``(n, dim)`` rows of one view; ``x_test`` may have zero rows.
    method : {"auto", "standard", "tfidf", "l2", "none"}
        ``"standard"``: z-score each column (constant columns become 0);
        ``"tfidf"``: tf-idf weighting then L2 row normalisation, for count
        (bag-of-words) views, needs non-negative input; ``"l2"``: scale each
        row to unit L2 norm (all-zero rows stay zero), for sparse non-negative
        weights (tf-idf already applied, frequencies); ``"auto"``: see
        :func:`auto_method`; ``"none"``: no transform.

    Returns
    -------
    x_train, x_test : ndarray
        Dense float32 arrays.

    Raises
    ------
    DataError
        On NaN/Inf values, mismatched or non-2-D shapes, or negative values for
        ``"tfidf"``.
    ValueError
        On an unknown ``method``.
    """
    check_method(method)
    _check_pair(x_train, x_test)
    if method == "auto":
        method = auto_method(x_train)
    transform = _fit(method, x_train, x_test)
    out_train = transform(x_train).astype(np.float32)
    if x_test.shape[0] == 0:
        out_test = np.zeros((0, out_train.shape[1]), dtype=np.float32)
    else:
        out_test = transform(x_test).astype(np.float32)
    return out_train, out_test


def _check_pair(x_train: View, x_test: View) -> None:
    """Both 2-D and finite, ``x_train`` non-empty, equal column counts."""
    for label, x in (("x_train", x_train), ("x_test", x_test)):
        if x.ndim != 2:
            raise DataError(f"preprocess_view: {label} must be 2-D, got {x.shape}")
        values = x.data if is_sparse(x) else np.asarray(x)
        if not np.all(np.isfinite(values)):
            raise DataError(f"preprocess_view: {label} contains NaN or Inf values")
    if x_train.shape[0] == 0:
        raise DataError("preprocess_view: x_train has no rows to fit on")
    if x_train.shape[1] != x_test.shape[1]:
        raise DataError(
            f"preprocess_view: x_train has {x_train.shape[1]} columns, "
            f"x_test {x_test.shape[1]}"
        )


def auto_method(x: View) -> str:
    """The method ``"auto"`` picks for a view, from its training rows alone.

    A view is *sparse non-negative* when it is a scipy sparse matrix or a dense
    array with more than half its entries zero, and has no negative value.
    Such a view gets ``"tfidf"`` when its values are (near-)integers (counts) and
    ``"l2"`` when they are non-integer weights (z-scoring them would turn the
    zeros into large negative values that dominate every distance); any other
    view gets ``"standard"``.
    """
    values = x.data if is_sparse(x) else np.asarray(x)
    if values.size == 0 or np.any(values < 0):
        return "standard"
    if not is_sparse(x) and np.mean(values == 0) <= 0.5:
        return "standard"
    return "tfidf" if np.allclose(values, np.round(values), atol=1e-6) else "l2"


def _dense(x: View) -> np.ndarray:
    return x.toarray() if is_sparse(x) else np.asarray(x, dtype=np.float64)


def _fit(method: str, x_train: View, x_test: View) -> Transform:
    """The transform ``method`` (not ``"auto"``) fitted on ``x_train``."""
    if method == "none":
        return _dense
    if method == "standard":
        scaler = StandardScaler().fit(_dense(x_train))
        return lambda x: scaler.transform(_dense(x))
    if method == "l2":
        return lambda x: _dense(normalize(x, norm="l2"))
    for label, x in (("x_train", x_train), ("x_test", x_test)):
        values = x.data if is_sparse(x) else np.asarray(x)
        if values.size and values.min() < 0:
            raise DataError(f"preprocess_view: tfidf needs non-negative {label}")
    tfidf = TfidfTransformer(norm=None).fit(sp.csr_matrix(x_train))
    return lambda x: _dense(normalize(tfidf.transform(sp.csr_matrix(x)), norm="l2"))
