"""The saveable per-view preprocessing: the automatic rule and the round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import StandardScaler, normalize

from otm_flower.preprocessing import Preprocessor, choose_kind
from otm_flower.view_transforms import preprocess_view


def _gaussian(n: int = 40, d: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(2.0, 3.0, size=(n, d))


def _bag_of_words(n: int = 40, d: int = 200, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    x = sp.random(n, d, density=0.04, format="csr", random_state=seed)
    x.data = rng.integers(1, 6, size=x.data.size).astype(np.float64)
    return x


def test_sparse_counts_pick_tfidf_and_sparse_weights_l2() -> None:
    x = _bag_of_words()
    assert choose_kind(x) == "tfidf"
    assert choose_kind(x.toarray()) == "tfidf"  # stored dense, same rule
    assert Preprocessor().fit(x).kind == "tfidf"
    weights = x.copy()
    weights.data = weights.data / 7.0
    assert choose_kind(weights) == "l2"


@pytest.mark.parametrize("kind", ["auto", "standard", "tfidf", "l2", "none"])
def test_same_values_as_the_simulated_agents_transform(kind: str) -> None:
    """A party's Preprocessor and a simulated agent's preprocess_view agree
    exactly, so a party file and a simulated agent train on the same rows."""
    x = _bag_of_words(60) if kind in ("tfidf", "l2") else _gaussian(60)
    train, test = x[:45], x[45:]
    fitted = Preprocessor(kind).fit(train)
    expected_train, expected_test = preprocess_view(train, test, kind)
    np.testing.assert_array_equal(fitted.transform(train), expected_train)
    np.testing.assert_array_equal(fitted.transform(test), expected_test)


def test_dense_gaussian_view_picks_standard() -> None:
    assert choose_kind(_gaussian()) == "standard"
    assert Preprocessor().fit(_gaussian()).kind == "standard"


def test_negative_or_not_sparse_enough_views_pick_standard() -> None:
    x = _bag_of_words().toarray()
    x[0, 0] = -1.0
    assert choose_kind(x) == "standard"
    dense_counts = np.random.default_rng(1).integers(0, 3, size=(30, 10))
    assert choose_kind(dense_counts) == "standard"  # ~1/3 zeros, below 90%


def test_standard_matches_scikit_learn_and_zeroes_constant_columns() -> None:
    x = _gaussian()
    x[:, 2] = 7.0
    out = Preprocessor("standard").fit(x).transform(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(
        out, StandardScaler().fit_transform(x).astype(np.float32)
    )
    assert np.all(out[:, 2] == 0.0)


def test_l2_matches_scikit_learn_and_returns_dense() -> None:
    x = _bag_of_words()
    out = Preprocessor("l2").fit(x).transform(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, normalize(x).toarray().astype(np.float32))


def test_none_keeps_values() -> None:
    x = _gaussian()
    np.testing.assert_array_equal(
        Preprocessor("none").fit(x).transform(x), x.astype(np.float32)
    )


@pytest.mark.parametrize(
    ("kind", "x"),
    [
        ("auto", _gaussian()),
        ("auto", _bag_of_words()),
        ("l2", _bag_of_words()),
        ("none", _gaussian()),
    ],
)
def test_save_load_round_trip_through_json(kind: str, x: np.ndarray) -> None:
    fitted = Preprocessor(kind).fit(x)
    state = json.loads(json.dumps(fitted.to_dict()))
    restored = Preprocessor.from_dict(state)
    assert restored.kind == fitted.kind
    new_rows = x[:7] * 1.5
    np.testing.assert_array_equal(
        restored.transform(new_rows), fitted.transform(new_rows)
    )


def test_refusals() -> None:
    with pytest.raises(ValueError, match="unknown preprocessing kind 'zscore'"):
        Preprocessor("zscore")
    with pytest.raises(ValueError, match="call fit"):
        Preprocessor().transform(_gaussian())
    fitted = Preprocessor().fit(_gaussian(d=5))
    with pytest.raises(ValueError, match="4 feature columns, fitted on 5"):
        fitted.transform(_gaussian(d=4))
    bad = _gaussian()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="1 NaN/Inf values"):
        fitted.transform(bad)
    state = fitted.to_dict()
    state["mean"] = state["mean"][:2]
    with pytest.raises(ValueError, match=r"mean has shape \(2,\), expected \(5,\)"):
        Preprocessor.from_dict(state)
    with pytest.raises(ValueError, match="unknown kind 'zscore'"):
        Preprocessor.from_dict({"format": 1, "kind": "zscore", "n_features": 5})
    with pytest.raises(ValueError, match="bad tf-idf values"):
        Preprocessor.from_dict({"format": 1, "kind": "tfidf", "n_features": 5})
    with pytest.raises(ValueError, match="tfidf needs non-negative"):
        Preprocessor("tfidf").fit(_gaussian())
