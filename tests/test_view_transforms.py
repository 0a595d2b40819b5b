"""Per-view preprocessing: ``l2`` and what ``auto`` picks for each kind of view."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from otm_flower.multiview import DataError
from otm_flower.view_transforms import auto_method, preprocess_view


def _sparse_weights(n: int = 40, dim: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, dim)) * (rng.random((n, dim)) < 0.05)
    x[0] = 0.0  # an empty document
    return x


def test_auto_tells_views_apart() -> None:
    rng = np.random.default_rng(1)
    weights = _sparse_weights()
    counts = np.round(weights * 10)
    assert auto_method(weights) == "l2"
    assert auto_method(sp.csr_matrix(weights)) == "l2"
    assert auto_method(counts) == "tfidf"
    assert auto_method(sp.csr_matrix(counts)) == "tfidf"
    assert auto_method(rng.normal(size=(40, 5))) == "standard"  # dense, real
    assert auto_method(rng.random((40, 5))) == "standard"  # dense, few zeros
    signed = weights.copy()
    signed[1, 1] = -0.5
    assert auto_method(signed) == "standard"


def test_l2_normalises_rows_and_keeps_zeros() -> None:
    weights = _sparse_weights()
    train, test = preprocess_view(weights[:30], weights[30:], method="l2")
    norms = np.linalg.norm(train, axis=1)
    nonzero = weights[:30].any(axis=1)
    np.testing.assert_allclose(norms[nonzero], 1.0, rtol=1e-5)
    assert np.all(train[~nonzero] == 0)
    assert np.all(train[weights[:30] == 0] == 0)  # sparsity pattern kept
    assert test.shape == (10, 50) and test.dtype == np.float32


def test_auto_on_sparse_weights_is_l2_not_zscore() -> None:
    weights = _sparse_weights()
    auto = preprocess_view(weights[:30], weights[30:])
    l2 = preprocess_view(weights[:30], weights[30:], method="l2")
    np.testing.assert_array_equal(auto[0], l2[0])
    assert auto[0].min() >= 0  # z-scoring would make the zeros negative


def test_unknown_method_and_bad_input_are_named() -> None:
    weights = _sparse_weights()
    with pytest.raises(ValueError, match="unknown preprocess method 'l1'"):
        preprocess_view(weights, weights, method="l1")
    bad = weights.copy()
    bad[2, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        preprocess_view(bad, weights, method="l2")
