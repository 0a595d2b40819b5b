"""Reading one party's data file: every format, every refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.pandas import column, data_frames, range_indexes

from otm_flower.party_data import (
    PartyDataError,
    PartyTable,
    check_test_matches,
    read_party_file,
)
from tests.conftest import SHARED_DATA, needs_shared_data


def _frame(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": [f"r{i:03d}" for i in range(n)],
            "a": rng.normal(size=n),
            "b": rng.integers(0, 9, size=n),
            "c": rng.normal(size=n),
            "label": [i % 2 for i in range(n)],
        }
    )


def _write_table(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        sep = "\t" if path.suffix in (".tsv", ".txt") else ","
        frame.to_csv(path, sep=sep, index=False)
    return path


# --------------------------------------------------------------------------- #
# Round trips
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", ["p.csv", "p.tsv", "p.txt", "p.parquet", "p.pq"])
def test_table_round_trip(tmp_path: Path, name: str) -> None:
    frame = _frame()
    path = _write_table(frame, tmp_path / name)
    table = read_party_file(path, label_column="label", key_column="id")
    assert isinstance(table, PartyTable)
    assert table.source == path
    assert table.feature_names == ["a", "b", "c"]
    np.testing.assert_allclose(table.features, frame[["a", "b", "c"]].to_numpy())
    assert table.features.dtype == np.float64
    assert table.labels is not None and table.labels.dtype == np.int64
    np.testing.assert_array_equal(table.labels, frame["label"].to_numpy())
    assert table.keys is not None
    assert list(table.keys) == list(frame["id"])
    assert (table.n_rows, table.n_features, table.is_sparse) == (6, 3, False)


def test_table_without_labels_or_keys(tmp_path: Path) -> None:
    frame = _frame().drop(columns=["id"])
    table = read_party_file(_write_table(frame, tmp_path / "p.csv"))
    assert table.feature_names == ["a", "b", "c", "label"]
    assert table.labels is None and table.keys is None


def test_explicit_feature_columns_keep_their_order(tmp_path: Path) -> None:
    path = _write_table(_frame(), tmp_path / "p.csv")
    table = read_party_file(path, feature_columns=["c", "a"], key_column="id")
    assert table.feature_names == ["c", "a"]
    np.testing.assert_allclose(table.features, _frame()[["c", "a"]].to_numpy())


def test_string_labels_and_numeric_looking_keys(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("key,x,y\n0017,1.5,benign\n,2.5,malignant\n0020,3.5,benign\n")
    table = read_party_file(path, label_column="y", key_column="key")
    assert list(table.keys) == ["0017", "", "0020"]
    assert list(table.labels) == ["benign", "malignant", "benign"]


def test_non_numeric_columns_are_skipped_with_a_warning(tmp_path: Path) -> None:
    frame = _frame().assign(note=["x"] * 6)
    path = _write_table(frame, tmp_path / "p.csv")
    with pytest.warns(UserWarning, match="1 non-numeric columns .*'note'"):
        table = read_party_file(path, label_column="label", key_column="id")
    assert table.feature_names == ["a", "b", "c"]


def test_npy_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    np.save(tmp_path / "p.npy", x)
    table = read_party_file(tmp_path / "p.npy")
    assert table.features.dtype == np.float32
    np.testing.assert_array_equal(table.features, x)
    assert table.feature_names == ["feature_0", "feature_1", "feature_2"]
    assert table.labels is None and table.keys is None


def test_dense_npz_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(2).normal(size=(4, 2))
    path = tmp_path / "p.npz"
    np.savez(
        path,
        x=x,
        y=np.array([0, 1, 1, 0]),
        keys=np.array(["a", "b", "", "d"]),
        feature_names=np.array(["u", "v"]),
    )
    table = read_party_file(path)
    np.testing.assert_array_equal(table.features, x)
    assert table.feature_names == ["u", "v"]
    assert list(table.labels) == [0, 1, 1, 0]
    assert list(table.keys) == ["a", "b", "", "d"]


def test_npz_arrays_by_name(tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    np.savez(path, features=np.eye(3), cls=np.array([2, 5, 5]), rid=np.arange(3))
    table = read_party_file(path, label_column="cls", key_column="rid")
    assert list(table.labels) == [2, 5, 5]
    assert list(table.keys) == ["0", "1", "2"]


def test_sparse_npz_stays_sparse(tmp_path: Path) -> None:
    x = sp.random(20, 50, density=0.05, format="csr", random_state=3)
    sp.save_npz(tmp_path / "bow.npz", x)
    table = read_party_file(tmp_path / "bow.npz")
    assert table.is_sparse and sp.issparse(table.features)
    assert table.features.format == "csr"
    np.testing.assert_array_equal(table.features.toarray(), x.toarray())
    assert table.n_features == 50


def test_single_view_mat_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(4).normal(size=(6, 3))
    path = tmp_path / "p.mat"
    scipy.io.savemat(path, {"X": x, "y": np.array([[1, 2, 1, 2, 1, 2]])})
    table = read_party_file(path)
    np.testing.assert_array_equal(table.features, x)
    assert list(table.labels) == [1, 2, 1, 2, 1, 2]


def test_single_view_mat_features_by_samples_is_transposed(tmp_path: Path) -> None:
    x = np.random.default_rng(5).normal(size=(7, 3))
    path = tmp_path / "p.mat"
    scipy.io.savemat(path, {"X": x.T, "gnd": np.arange(7) % 2})
    np.testing.assert_array_equal(read_party_file(path).features, x)


def test_sparse_single_view_mat_stays_sparse(tmp_path: Path) -> None:
    x = sp.random(10, 30, density=0.1, format="csc", random_state=7)
    path = tmp_path / "p.mat"
    scipy.io.savemat(path, {"X": x})
    table = read_party_file(path)
    assert table.is_sparse and table.features.format == "csr"
    np.testing.assert_array_equal(table.features.toarray(), x.toarray())
    assert table.labels is None


def _multi_view_mat(path: Path) -> list[np.ndarray]:
    rng = np.random.default_rng(6)
    views = [rng.normal(size=(8, 3)), rng.normal(size=(8, 5))]
    cells = np.empty((1, 2), dtype=object)
    cells[0, 0], cells[0, 1] = views
    keys = np.array([f"k{i}" for i in range(8)], dtype=object)
    scipy.io.savemat(path, {"X": cells, "Y": np.arange(8) % 2, "keys": keys})
    return views


def test_multi_view_mat_reads_the_chosen_view(tmp_path: Path) -> None:
    path = tmp_path / "mv.mat"
    views = _multi_view_mat(path)
    table = read_party_file(path, view=1, key_column="keys")
    np.testing.assert_array_equal(table.features, views[1])
    assert table.feature_names[0] == "view1_0"
    assert list(table.labels) == [0, 1] * 4
    assert list(table.keys) == [f"k{i}" for i in range(8)]


def test_multi_view_mat_needs_a_view(tmp_path: Path) -> None:
    path = tmp_path / "mv.mat"
    _multi_view_mat(path)
    with pytest.raises(PartyDataError, match=r"mv.mat: a multi-view file with 2 "):
        read_party_file(path)
    with pytest.raises(PartyDataError, match=r"pass view= 0..1 \(view=2 given\)"):
        read_party_file(path, view=2)


@needs_shared_data
def test_a_view_of_a_shared_benchmark_file() -> None:
    table = read_party_file(SHARED_DATA / "Movies.mat", view=1)
    assert table.features.shape == (617, 1398)
    assert table.feature_names[:2] == ["actors_0", "actors_1"]
    assert table.labels is not None and table.labels.shape == (617,)


numeric_frames = data_frames(
    columns=[
        column("f0", elements=st.floats(-1e6, 1e6, allow_nan=False)),
        column("f1", elements=st.integers(-1000, 1000)),
        column("f2", elements=st.floats(-1e6, 1e6, allow_nan=False)),
    ],
    index=range_indexes(min_size=1, max_size=20),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=numeric_frames, fmt=st.sampled_from([".csv", ".parquet"]))
def test_random_numeric_frames_round_trip(
    tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame, fmt: str
) -> None:
    path = _write_table(frame, tmp_path_factory.mktemp("h") / f"p{fmt}")
    table = read_party_file(path)
    assert table.feature_names == ["f0", "f1", "f2"]
    np.testing.assert_array_equal(table.features, frame.to_numpy(dtype=np.float64))


# --------------------------------------------------------------------------- #
# Refusals
# --------------------------------------------------------------------------- #


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PartyDataError, match=r"nope.csv: file not found"):
        read_party_file(tmp_path / "nope.csv")


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "p.xlsx"
    path.write_text("x")
    with pytest.raises(PartyDataError, match=r"unknown file extension '.xlsx'.*\.csv"):
        read_party_file(path)


@pytest.mark.parametrize("name", ["p.parquet", "p.npz", "p.npy", "p.mat"])
def test_unreadable_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(PartyDataError, match=rf"{name}: (cannot read|not a valid)"):
        read_party_file(path)


def test_empty_files(tmp_path: Path) -> None:
    blank = tmp_path / "blank.csv"
    blank.write_text("")
    with pytest.raises(PartyDataError, match=r"blank.csv: empty file"):
        read_party_file(blank)
    header = tmp_path / "header.csv"
    header.write_text("a,b\n")
    with pytest.raises(PartyDataError, match=r"header.csv: empty file \(0 data rows\)"):
        read_party_file(header)
    np.save(tmp_path / "e.npy", np.zeros((0, 3)))
    with pytest.raises(PartyDataError, match=r"e.npy: empty file"):
        read_party_file(tmp_path / "e.npy")


def test_no_numeric_feature_column(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("name,y\nann,0\nbob,1\n")
    with pytest.raises(
        PartyDataError, match=r"p.csv: no numeric feature column among 2 columns"
    ):
        read_party_file(path, label_column="y")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label_column": "class"}, r"1 label column not found: 'class'"),
        ({"key_column": "pid"}, r"1 key column not found: 'pid'"),
        (
            {"feature_columns": ["a", "zz", "yy"]},
            r"2 feature columns not found: 'zz', 'yy'",
        ),
    ],
)
def test_absent_named_column_lists_the_columns(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    path = _write_table(_frame(), tmp_path / "p.csv")
    with pytest.raises(PartyDataError, match=message) as info:
        read_party_file(path, **kwargs)
    assert "the file has 5 columns: 'id', 'a', 'b', 'c', 'label'" in str(info.value)


def test_non_numeric_explicit_feature_column(tmp_path: Path) -> None:
    path = _write_table(_frame(), tmp_path / "p.csv")
    with pytest.raises(PartyDataError, match=r"1 feature columns are not numeric: 'id"):
        read_party_file(path, feature_columns=["a", "id"])


def test_label_listed_as_feature(tmp_path: Path) -> None:
    path = _write_table(_frame(), tmp_path / "p.csv")
    with pytest.raises(PartyDataError, match=r"'label' named both as a feature"):
        read_party_file(path, label_column="label", feature_columns=["a", "label"])


def test_nan_and_inf_features_are_counted_per_column(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("a,b,c\n1,,3\n4,inf,6\nnan,8,9\n")
    with pytest.raises(
        PartyDataError,
        match=r"p.csv: 3 NaN/Inf \(or missing\) feature values in 2 columns: "
        r"'a \(1\)', 'b \(2\)'",
    ):
        read_party_file(path)


def test_nan_in_sparse_features(tmp_path: Path) -> None:
    x = sp.csr_matrix(np.array([[0.0, np.nan, 0.0], [1.0, 0.0, np.inf]]))
    sp.save_npz(tmp_path / "s.npz", x)
    with pytest.raises(PartyDataError, match=r"2 NaN/Inf .* 'feature_1 \(1\)'"):
        read_party_file(tmp_path / "s.npz")


def test_label_column_with_one_class(tmp_path: Path) -> None:
    path = _write_table(_frame().assign(label=3), tmp_path / "p.csv")
    with pytest.raises(
        PartyDataError, match=r"p.csv: label column has one class \(3\) in 6 rows"
    ):
        read_party_file(path, label_column="label", key_column="id")


def test_label_column_with_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("x,y\n1,0\n2,\n3,1\n")
    with pytest.raises(PartyDataError, match=r"label column has 1 missing values"):
        read_party_file(path, label_column="y")


def test_duplicate_keys(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[[1, 3, 4], "id"] = "r001"
    frame.loc[5, "id"] = "r000"
    path = _write_table(frame, tmp_path / "p.csv")
    with pytest.raises(
        PartyDataError,
        match=r"p.csv: key column has 2 repeated keys in 5 rows, e.g. 'r000' "
        r"\(2 times\)",
    ):
        read_party_file(path, key_column="id")


def test_view_only_for_mat(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.eye(2))
    with pytest.raises(PartyDataError, match=r"view= applies to .mat files only"):
        read_party_file(tmp_path / "p.npy", view=0)


def test_npz_without_features(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", y=np.arange(3))
    with pytest.raises(
        PartyDataError, match=r"no features array \(expected one of \['x', 'features'\]"
    ):
        read_party_file(tmp_path / "p.npz")


# --------------------------------------------------------------------------- #
# Train/test agreement
# --------------------------------------------------------------------------- #


def _table(names: list[str], source: str) -> PartyTable:
    x = np.zeros((2, len(names)))
    return PartyTable(x, names, None, None, Path(source))


def test_test_file_with_the_same_columns_passes() -> None:
    check_test_matches(_table(["a", "b"], "train.csv"), _table(["a", "b"], "t.csv"))


def test_test_file_with_missing_and_extra_columns() -> None:
    with pytest.raises(
        PartyDataError,
        match=r"test file t.csv vs training file train.csv: 3 training vs 3 test "
        r"feature columns; missing in test: 'b'; extra in test: 'z'",
    ):
        check_test_matches(
            _table(["a", "b", "c"], "train.csv"), _table(["a", "c", "z"], "t.csv")
        )


def test_test_file_with_other_column_count() -> None:
    with pytest.raises(
        PartyDataError, match=r"2 training vs 3 test .*extra in test: 'feature_2'"
    ):
        check_test_matches(
            _table(["feature_0", "feature_1"], "train.npy"),
            _table(["feature_0", "feature_1", "feature_2"], "t.npy"),
        )


def test_test_file_with_reordered_columns() -> None:
    with pytest.raises(
        PartyDataError,
        match=r"different order; column 1 is 'b' in training, 'c' in test",
    ):
        check_test_matches(
            _table(["a", "b", "c"], "train.csv"), _table(["a", "c", "b"], "t.csv")
        )
