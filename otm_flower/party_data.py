"""One party's own data file: one modality, optional labels, optional record keys.

A party (a clinic's images, a lab's assays, another's reports) holds ONE view
of its records in its own file.  :func:`read_party_file` reads that file into a
:class:`PartyTable` and refuses bad input with a :class:`PartyDataError` that
names the file, the column and the count.  :func:`check_test_matches` checks
that a test file has the training file's feature columns.

Formats (by file extension)
---------------------------
``.csv`` (comma), ``.tsv`` (tab), ``.txt`` (delimiter detected by pandas)
    A table with a header row, read with :func:`pandas.read_csv`.
``.parquet``, ``.pq``
    A table, read with :func:`pandas.read_parquet` (pyarrow).
``.npy``
    A 2-D numeric array of features (no labels, no keys).
``.npz``
    Either a scipy sparse matrix written by :func:`scipy.sparse.save_npz` (e.g.
    bag-of-words counts; features only), or named dense arrays: the features
    under ``x`` or ``features``, optional labels under ``y`` or ``labels``,
    optional record keys under ``keys``, optional column names under
    ``feature_names``.
``.mat``
    MATLAB v5/v7.  A single-view file holds one (dense or sparse) matrix under
    ``X``, ``x``, ``data`` or ``features``, optional labels under ``y``,
    ``Y``, ``gt``, ``truth``, ``label``, ``labels`` or ``gnd`` and optional
    keys under ``keys``; a multi-view file (a cell array of views, see
    :func:`otm_flower.data.load_mat`) needs ``view``, the index of this
    party's view.

Columns
-------
In a table the features are all numeric (and boolean) columns except the
label and key columns, or exactly ``feature_columns``.  In an array file the
feature names are ``feature_0, feature_1, ...`` (or the file's
``feature_names``), and ``label_column`` / ``key_column`` name the array (or
MATLAB variable) that holds the labels / keys instead of the defaults above.

Sparse input stays a ``scipy.sparse.csr_matrix`` in the table; the
preprocessing (:mod:`otm_flower.preprocessing`) decides whether to densify.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from otm_flower.data import DataError, load_mat

__all__ = [
    "TABLE_SUFFIXES",
    "ARRAY_SUFFIXES",
    "PartyDataError",
    "PartyTable",
    "check_test_matches",
    "read_party_file",
]

TABLE_SUFFIXES: dict[str, str | None] = {".csv": ",", ".tsv": "\t", ".txt": None}
"""Delimited-text extensions and their delimiter (``None``: detected)."""

PARQUET_SUFFIXES = (".parquet", ".pq")
ARRAY_SUFFIXES = (".npy", ".npz", ".mat")

_NPZ_FEATURES = ("x", "features")
_NPZ_LABELS = ("y", "labels")
_MAT_FEATURES = ("X", "x", "data", "features")
_MAT_LABELS = ("y", "Y", "gt", "truth", "label", "labels", "gnd")
_KEYS = "keys"
_SHOW = 5  # how many column names or values an error message lists

Features: TypeAlias = "np.ndarray | sp.csr_matrix"


class PartyDataError(ValueError):
    """A party's data file is missing, unreadable, malformed or invalid."""


@dataclass(frozen=True, eq=False)
class PartyTable:
    """The rows of one party's file: features, optional labels and record keys.

    Attributes
    ----------
    features : ndarray or scipy.sparse.csr_matrix
        ``(n_rows, n_features)`` finite float32 or float64 values (float32 only
        when the file stores float32); sparse when the file is sparse.
    feature_names : list of str
        One name per feature column, in file order.
    labels : ndarray or None
        One class label per row: int64 for integer-valued numeric labels, else
        the labels as strings; ``None`` when the file has no labels.
    keys : ndarray of str or None
        One record key per row (``""`` where a row has none; the others are
        unique); ``None`` when the file has no key column.
    source : Path
        The file read.
    """

    features: Features
    feature_names: list[str]
    labels: np.ndarray | None
    keys: np.ndarray | None
    source: Path

    @property
    def n_rows(self) -> int:
        """Number of records (rows)."""
        return int(self.features.shape[0])

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return int(self.features.shape[1])

    @property
    def is_sparse(self) -> bool:
        """Whether the features are a scipy sparse matrix."""
        return bool(sp.issparse(self.features))


def _listing(names: Sequence[Any]) -> str:
    """Up to ``_SHOW`` names, then how many more."""
    shown = ", ".join(repr(str(n)) for n in list(names)[:_SHOW])
    more = len(names) - _SHOW
    return f"{shown}, ... ({more} more)" if more > 0 else shown


# --------------------------------------------------------------------------- #
# Reading
# --------------------------------------------------------------------------- #


def read_party_file(
    path: str | os.PathLike[str],
    *,
    label_column: str | None = None,
    key_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    view: int | None = None,
) -> PartyTable:
    """Read one party's data file (format chosen by extension; see the module).

    Parameters
    ----------
    path : str or path-like
        The file: ``.csv``, ``.tsv``, ``.txt``, ``.parquet``/``.pq``, ``.npy``,
        ``.npz`` or ``.mat``.
    label_column : str, optional
        Column (array, variable) holding the class labels; in a table without
        it the file has no labels.
    key_column : str, optional
        Column (array, variable) holding the record keys used for linkage;
        missing or empty keys are allowed, repeated keys are not.
    feature_columns : sequence of str, optional
        The feature columns, in this order; default all numeric columns except
        the label and key columns.
    view : int, optional
        Index of this party's view in a multi-view ``.mat`` file.

    Returns
    -------
    PartyTable

    Raises
    ------
    PartyDataError
        For a missing, unreadable or empty file, an unknown extension, an
        absent named column, no numeric feature column, NaN/Inf features, a
        label column with missing values or one class, or repeated keys.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise PartyDataError(f"{source}: file not found")
    suffix = source.suffix.lower()
    if suffix in TABLE_SUFFIXES or suffix in PARQUET_SUFFIXES:
        frame = _read_frame(source, suffix, key_column)
        parts = _split_frame(frame, source, label_column, key_column, feature_columns)
    elif suffix in ARRAY_SUFFIXES:
        if view is not None and suffix != ".mat":
            raise PartyDataError(f"{source}: view= applies to .mat files only")
        parts = _read_arrays(source, suffix, label_column, key_column, view)
        parts = _select_array_columns(parts, source, feature_columns)
    else:
        known = ", ".join([*TABLE_SUFFIXES, *PARQUET_SUFFIXES, *ARRAY_SUFFIXES])
        raise PartyDataError(
            f"{source}: unknown file extension {source.suffix!r}; use one of {known}"
        )
    return _validated(source, *parts)


def _read_frame(source: Path, suffix: str, key_column: str | None) -> pd.DataFrame:
    """The file as a data frame (key column as text in delimited files)."""
    try:
        if suffix in PARQUET_SUFFIXES:
            frame = pd.read_parquet(source)
        else:
            sep = TABLE_SUFFIXES[suffix]
            frame = pd.read_csv(
                source,
                sep=sep,
                dtype={key_column: str} if key_column else None,
                keep_default_na=True,
                **(
                    {"engine": "python"}
                    if sep is None
                    else {"engine": "c", "float_precision": "round_trip"}
                ),
            )
    except pd.errors.EmptyDataError as err:
        raise PartyDataError(f"{source}: empty file (no header, no rows)") from err
    except Exception as err:  # pandas/pyarrow raise many types for bad input
        raise PartyDataError(f"{source}: cannot read the file ({err})") from err
    frame.columns = [str(c) for c in frame.columns]
    if frame.shape[0] == 0:
        raise PartyDataError(f"{source}: empty file (0 data rows)")
    return frame


def _require_columns(
    source: Path, frame: pd.DataFrame, role: str, names: Sequence[str]
) -> None:
    """Refuse named columns that the frame lacks, listing the columns there are."""
    missing = [n for n in names if n not in frame.columns]
    if missing:
        what = f"{role} column" + ("s" if len(missing) > 1 else "")
        raise PartyDataError(
            f"{source}: {len(missing)} {what} not found: {_listing(missing)}; "
            f"the file has {frame.shape[1]} columns: {_listing(list(frame.columns))}"
        )


def _split_frame(
    frame: pd.DataFrame,
    source: Path,
    label_column: str | None,
    key_column: str | None,
    feature_columns: Sequence[str] | None,
) -> tuple[Features, list[str], Any, Any]:
    """Features, feature names, raw labels and raw keys of a table."""
    for role, name in (("label", label_column), ("key", key_column)):
        _require_columns(source, frame, role, [name] if name else [])
    if feature_columns is not None:
        names = [str(c) for c in feature_columns]
        _require_columns(source, frame, "feature", names)
        clash = [c for c in (label_column, key_column) if c and c in names]
        if clash:
            raise PartyDataError(
                f"{source}: {_listing(clash)} named both as a feature column and "
                "as the label or key column"
            )
    else:
        names = _numeric_columns(frame, source, {label_column, key_column})
    numeric = frame[names].apply(pd.api.types.is_numeric_dtype)
    if not numeric.all():
        bad = [f"{c} ({frame[c].dtype})" for c in numeric.index[~numeric]]
        raise PartyDataError(
            f"{source}: {len(bad)} feature columns are not numeric: {_listing(bad)}"
        )
    features = frame[names].to_numpy(dtype=np.float64, na_value=np.nan)
    labels = frame[label_column].to_numpy() if label_column else None
    keys = frame[key_column].to_numpy() if key_column else None
    return features, names, labels, keys


def _numeric_columns(frame: pd.DataFrame, source: Path, exclude: set[Any]) -> list[str]:
    """All numeric or boolean columns not in ``exclude``; warns about the rest."""
    rest = [c for c in frame.columns if c not in exclude]
    names = [c for c in rest if pd.api.types.is_numeric_dtype(frame[c])]
    skipped = [c for c in rest if c not in names]
    if not names:
        kinds = [f"{c} ({frame[c].dtype})" for c in frame.columns]
        raise PartyDataError(
            f"{source}: no numeric feature column among {frame.shape[1]} columns: "
            f"{_listing(kinds)}"
        )
    if skipped:
        warnings.warn(
            f"{source}: {len(skipped)} non-numeric columns are not used as "
            f"features: {_listing(skipped)} (name a label or key column, or pass "
            "feature_columns, to silence this)",
            stacklevel=4,
        )
    return names


def _read_arrays(
    source: Path,
    suffix: str,
    label_column: str | None,
    key_column: str | None,
    view: int | None,
) -> tuple[Features, list[str], Any, Any]:
    """Features, feature names, raw labels and raw keys of an array file."""
    if suffix == ".npy":
        if label_column or key_column:
            raise PartyDataError(
                f"{source}: a .npy file holds features only; use .npz for "
                "labels or keys"
            )
        x = _load_npy(source)
        return x, _default_names(x), None, None
    if suffix == ".npz":
        return _read_npz(source, label_column, key_column)
    return _read_mat(source, label_column, key_column, view)


def _default_names(x: Features) -> list[str]:
    return [f"feature_{j}" for j in range(x.shape[1])]


def _load_npy(source: Path) -> np.ndarray:
    try:
        loaded = np.load(source, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise PartyDataError(f"{source}: not a valid .npy file ({err})") from err
    if isinstance(loaded, np.lib.npyio.NpzFile):
        loaded.close()
        raise PartyDataError(f"{source}: an .npz archive under a .npy name")
    return _as_matrix(loaded, source, "the array")


def _as_matrix(x: Any, source: Path, what: str) -> Features:
    """A 2-D numeric dense float array or float CSR matrix."""
    if sp.issparse(x):
        x = sp.csr_matrix(x)
        values = x.data
    else:
        x = np.asarray(x)
        values = x
    if values.dtype == object or not (
        np.issubdtype(values.dtype, np.number) or values.dtype == bool
    ):
        raise PartyDataError(f"{source}: {what} is not numeric (dtype {values.dtype})")
    if x.ndim != 2:
        raise PartyDataError(f"{source}: {what} must be 2-D, got shape {x.shape}")
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    return x.astype(dtype)


def _npz_arrays(source: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(source, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with loaded as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise PartyDataError(f"{source}: not a valid .npz file ({err})") from err


def _pick(
    arrays: dict[str, Any],
    source: Path,
    role: str,
    name: str | None,
    defaults: tuple[str, ...],
    required: bool = False,
) -> Any:
    """The array named ``name`` (must exist), else the first default present."""
    if name is not None and name not in arrays:
        raise PartyDataError(
            f"{source}: {role} array {name!r} not found; the file has "
            f"{len(arrays)} arrays: {_listing(sorted(arrays))}"
        )
    found = (
        name if name is not None else next((k for k in defaults if k in arrays), None)
    )
    if found is None and required:
        raise PartyDataError(
            f"{source}: no {role} array (expected one of {list(defaults)}; "
            f"found {_listing(sorted(arrays))})"
        )
    return None if found is None else arrays[found]


def _read_npz(
    source: Path, label_column: str | None, key_column: str | None
) -> tuple[Features, list[str], Any, Any]:
    arrays = _npz_arrays(source)
    if {"format", "shape", "data"} <= arrays.keys():
        if label_column or key_column:
            raise PartyDataError(
                f"{source}: a scipy sparse .npz file holds features only"
            )
        try:
            x = sp.load_npz(source)
        except (ValueError, OSError) as err:
            raise PartyDataError(f"{source}: malformed sparse matrix ({err})") from err
        x = _as_matrix(x, source, "the sparse matrix")
        return x, _default_names(x), None, None
    x = _pick(arrays, source, "features", None, _NPZ_FEATURES, required=True)
    x = _as_matrix(x, source, "the features")
    labels = _pick(arrays, source, "label", label_column, _NPZ_LABELS)
    keys = _pick(arrays, source, "key", key_column, (_KEYS,))
    stored = arrays.get("feature_names")
    names = _default_names(x) if stored is None else [str(s) for s in stored.ravel()]
    return x, names, labels, keys


def _load_mat_dict(source: Path) -> dict[str, Any]:
    try:
        mat = scipy.io.loadmat(str(source))
    except NotImplementedError as err:  # scipy's message for v7.3 (HDF5) files
        raise PartyDataError(
            f"{source}: MATLAB v7.3 (HDF5) files are not supported; re-save with -v7"
        ) from err
    except Exception as err:  # scipy raises many types for garbage input
        raise PartyDataError(f"{source}: not a valid .mat file ({err})") from err
    return {k: v for k, v in mat.items() if not k.startswith("__")}


def _read_mat(
    source: Path, label_column: str | None, key_column: str | None, view: int | None
) -> tuple[Features, list[str], Any, Any]:
    mat = _load_mat_dict(source)
    raw = _pick(mat, source, "features", None, _MAT_FEATURES, required=True)
    if isinstance(raw, np.ndarray) and raw.dtype == object:
        return _read_mat_view(source, raw, mat, key_column, view, label_column)
    if view not in (None, 0):
        raise PartyDataError(f"{source}: a single-view file has no view {view}")
    x = _as_matrix(raw, source, "the features")
    labels = _pick(mat, source, "label", label_column, _MAT_LABELS)
    if labels is not None:
        labels = np.asarray(labels).ravel()
        if x.shape[0] != labels.size and x.shape[1] == labels.size:
            x = sp.csr_matrix(x.T) if sp.issparse(x) else np.ascontiguousarray(x.T)
    keys = _pick(mat, source, "key", key_column, (_KEYS,))
    return x, _default_names(x), labels, _mat_strings(keys)


def _read_mat_view(
    source: Path,
    cells: np.ndarray,
    mat: dict[str, Any],
    key_column: str | None,
    view: int | None,
    label_column: str | None,
) -> tuple[Features, list[str], Any, Any]:
    """One view of a multi-view ``.mat`` file, read by :func:`load_mat`."""
    n_views = cells.size
    if view is None or not 0 <= view < n_views:
        got = "no view" if view is None else f"view={view}"
        raise PartyDataError(
            f"{source}: a multi-view file with {n_views} views; pass view= "
            f"0..{n_views - 1} ({got} given)"
        )
    if label_column is not None:
        raise PartyDataError(
            f"{source}: a multi-view file keeps its labels where load_mat finds "
            "them; label_column does not apply"
        )
    try:
        dataset = load_mat(source)
    except DataError as err:
        raise PartyDataError(str(err)) from err
    x = _as_matrix(dataset.views[view], source, f"view {view}")
    keys = _pick(mat, source, "key", key_column, (_KEYS,))
    name = dataset.view_names[view]
    names = [f"{name}_{j}" for j in range(x.shape[1])]
    return x, names, dataset.labels, _mat_strings(keys)


def _mat_strings(keys: Any) -> Any:
    """Keys of a MATLAB char matrix or cell array of strings as a flat list."""
    if keys is None:
        return None
    arr = np.asarray(keys)
    if arr.dtype == object:
        return [
            str(np.asarray(k).ravel()[0]) if np.size(k) else "" for k in arr.ravel()
        ]
    if arr.dtype.kind == "U" and arr.ndim == 1:
        return [s.strip() for s in arr]
    return arr.ravel()


def _select_array_columns(
    parts: tuple[Features, list[str], Any, Any],
    source: Path,
    feature_columns: Sequence[str] | None,
) -> tuple[Features, list[str], Any, Any]:
    """Keep only ``feature_columns`` (by feature name) of an array file."""
    x, names, labels, keys = parts
    if len(names) != x.shape[1]:
        raise PartyDataError(
            f"{source}: {len(names)} feature names for {x.shape[1]} feature columns"
        )
    if feature_columns is None:
        return parts
    wanted = [str(c) for c in feature_columns]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise PartyDataError(
            f"{source}: {len(missing)} feature columns not found: "
            f"{_listing(missing)}; the file has {len(names)}: {_listing(names)}"
        )
    index = [names.index(c) for c in wanted]
    return x[:, index], wanted, labels, keys


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


def _validated(
    source: Path, features: Features, names: list[str], labels: Any, keys: Any
) -> PartyTable:
    """The checked :class:`PartyTable` of the parts read from ``source``."""
    n = int(features.shape[0])
    if n == 0:
        raise PartyDataError(f"{source}: empty file (0 data rows)")
    if features.shape[1] == 0:
        raise PartyDataError(f"{source}: no feature column")
    _check_finite(source, features, names)
    return PartyTable(
        features=features,
        feature_names=list(names),
        labels=None if labels is None else _checked_labels(source, labels, n),
        keys=None if keys is None else _checked_keys(source, keys, n),
        source=source,
    )


def _check_finite(source: Path, features: Features, names: list[str]) -> None:
    """Refuse NaN/Inf features, naming how many and in which columns."""
    if sp.issparse(features):
        csr = sp.csr_matrix(features)
        bad = ~np.isfinite(csr.data)
        counts = np.bincount(csr.indices[bad], minlength=len(names))
    else:
        counts = (~np.isfinite(features)).sum(axis=0)
    if counts.sum() == 0:
        return
    cols = np.flatnonzero(counts)
    detail = [f"{names[j]} ({int(counts[j])})" for j in cols]
    raise PartyDataError(
        f"{source}: {int(counts.sum())} NaN/Inf (or missing) feature values in "
        f"{cols.size} columns: {_listing(detail)}"
    )


def _checked_labels(source: Path, raw: Any, n: int) -> np.ndarray:
    """Labels as int64 (integer-valued numbers) or str, one per row, >= 2 classes."""
    series = pd.Series(np.asarray(raw).ravel() if not isinstance(raw, list) else raw)
    if series.size != n:
        raise PartyDataError(f"{source}: {series.size} labels for {n} rows")
    missing = int(series.isna().sum())
    if missing:
        raise PartyDataError(f"{source}: label column has {missing} missing values")
    if pd.api.types.is_bool_dtype(series):
        labels = series.to_numpy(dtype=np.int64)
    elif pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all() or not np.array_equal(
            values, np.round(values)
        ):
            raise PartyDataError(
                f"{source}: numeric labels must be whole numbers (class values)"
            )
        labels = values.astype(np.int64)
    else:
        labels = series.astype(str).to_numpy(dtype=str)
    classes = np.unique(labels)
    if classes.size < 2:
        raise PartyDataError(
            f"{source}: label column has one class ({classes[0].item()!r}) in "
            f"{n} rows; "
            "a labelled party needs at least 2 classes (or omit label_column)"
        )
    return labels


def _key_text(value: Any) -> str:
    """A record key as text; missing (None, NaN, NA) becomes ``""``."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _checked_keys(source: Path, raw: Any, n: int) -> np.ndarray:
    """Keys as strings, one per row; ``""`` for none; the others unique."""
    keys = np.array([_key_text(k) for k in np.asarray(raw, dtype=object).ravel()])
    keys = keys.astype(str)
    if keys.size != n:
        raise PartyDataError(f"{source}: {keys.size} keys for {n} rows")
    present = pd.Series(keys[keys != ""])
    repeated = present[present.duplicated(keep=False)]
    if repeated.size:
        example = repeated.iloc[0]
        raise PartyDataError(
            f"{source}: key column has {repeated.nunique()} repeated keys in "
            f"{repeated.size} rows, e.g. {example!r} "
            f"({int((present == example).sum())} times)"
        )
    return keys


# --------------------------------------------------------------------------- #
# Train/test agreement
# --------------------------------------------------------------------------- #


def check_test_matches(train: PartyTable, test: PartyTable) -> None:
    """Refuse a test file whose feature columns differ from the training file's.

    Parameters
    ----------
    train, test : PartyTable
        The training and test tables of one party.

    Raises
    ------
    PartyDataError
        If the column names, their count or their order differ; the message
        names the missing and extra columns, or the first misplaced one.
    """
    a, b = train.feature_names, test.feature_names
    if a == b:
        return
    where = f"test file {test.source} vs training file {train.source}"
    missing = [c for c in a if c not in set(b)]
    extra = [c for c in b if c not in set(a)]
    if missing or extra or len(a) != len(b):
        parts = [f"{len(a)} training vs {len(b)} test feature columns"]
        if missing:
            parts.append(f"missing in test: {_listing(missing)}")
        if extra:
            parts.append(f"extra in test: {_listing(extra)}")
        raise PartyDataError(f"{where}: " + "; ".join(parts))
    j = next(i for i, (p, q) in enumerate(zip(a, b, strict=True)) if p != q)
    raise PartyDataError(
        f"{where}: same feature columns in a different order; column {j} is "
        f"{a[j]!r} in training, {b[j]!r} in test"
    )
