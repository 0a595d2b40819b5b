"""A fitted, saveable per-party preprocessing of one view's features.

:class:`Preprocessor` is fitted on a party's own training rows and stored with
its model as plain JSON-able values (:meth:`Preprocessor.to_dict`,
:meth:`Preprocessor.from_dict`), so the same transform is applied to later
(test or production) rows.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.preprocessing import StandardScaler, normalize

from .view_transforms import auto_method

__all__ = ["KINDS", "Preprocessor", "choose_kind"]

Kind: TypeAlias = Literal["standard", "tfidf", "l2", "none"]
KINDS: tuple[str, ...] = ("standard", "tfidf", "l2", "none")
"""The transforms a :class:`Preprocessor` can apply."""

_FORMAT = 1  # version of the to_dict layout

Matrix: TypeAlias = "np.ndarray | sp.spmatrix | sp.sparray"


def _values(x: Any) -> np.ndarray:
    """The stored values: the non-zeros of a sparse matrix, else all entries."""
    return np.asarray(x.data) if sp.issparse(x) else np.asarray(x)


def choose_kind(features: Matrix) -> Kind:
    """The automatic transform for a view, from its training rows.

    The rule of the simulated agents'
    :func:`~otm_flower.view_transforms.auto_method`, so a party reading its own
    file and a simulated agent holding the same rows preprocess them alike:
    ``"tfidf"`` for sparse non-negative counts, ``"l2"`` for sparse
    non-negative non-integer weights, ``"standard"`` otherwise.

    Parameters
    ----------
    features : ndarray or scipy sparse matrix
        ``(n_rows, n_features)`` training rows.

    Returns
    -------
    {"standard", "tfidf", "l2"}
    """
    kind = auto_method(features)
    if kind not in KINDS:
        raise ValueError(f"automatic preprocessing chose unknown kind {kind!r}")
    return kind  # type: ignore[return-value]


def _dense(x: Any) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x, dtype=np.float64)


class Preprocessor:
    """Per-view transform fitted on one party's training rows.

    Kinds:

    - ``"standard"``: z-score every column with scikit-learn's
      :class:`~sklearn.preprocessing.StandardScaler` (population standard
      deviation; a zero-variance column is only centred, so it is 0 on the
      training rows); sparse input is densified first.
    - ``"tfidf"``: tf-idf weighting (scikit-learn's
      :class:`~sklearn.feature_extraction.text.TfidfTransformer`, idf fitted on
      the training rows) then unit L2 rows, for non-negative counts;
    - ``"l2"``: scale every row to unit Euclidean norm with
      :func:`sklearn.preprocessing.normalize` (all-zero rows stay zero); no
      fitted state, sparse input stays sparse until the dense output.
    - ``"none"``: values unchanged.

    Parameters
    ----------
    kind : {"auto", "standard", "tfidf", "l2", "none"}, default "auto"
        ``"auto"`` picks the kind in :meth:`fit` with :func:`choose_kind`.

    Raises
    ------
    ValueError
        On an unknown ``kind``.
    """

    def __init__(self, kind: str = "auto") -> None:
        if kind != "auto" and kind not in KINDS:
            raise ValueError(f"unknown preprocessing kind {kind!r}; use auto, {KINDS}")
        self.kind: str = kind
        self.n_features: int | None = None
        self._scaler: StandardScaler | None = None
        self._tfidf: TfidfTransformer | None = None

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_dict`) has set the transform."""
        return self.n_features is not None

    def fit(self, features: Matrix) -> Preprocessor:
        """Fit on the training rows (choosing the kind if ``"auto"``).

        Parameters
        ----------
        features : ndarray or scipy sparse matrix
            ``(n_rows, n_features)`` finite training rows, at least one row.

        Returns
        -------
        Preprocessor
            ``self``.
        """
        _check_matrix(features, None, "fit")
        if features.shape[0] == 0:
            raise ValueError("Preprocessor.fit: no rows to fit on")
        if self.kind == "auto":
            self.kind = choose_kind(features)
        self._scaler = self._tfidf = None
        if self.kind == "standard":
            self._scaler = StandardScaler().fit(_dense(features))
        elif self.kind == "tfidf":
            _check_non_negative(features, "fit")
            self._tfidf = TfidfTransformer(norm=None).fit(sp.csr_matrix(features))
        self.n_features = int(features.shape[1])
        return self

    def transform(self, features: Matrix) -> np.ndarray:
        """Apply the fitted transform.

        Parameters
        ----------
        features : ndarray or scipy sparse matrix
            ``(n_rows, n_features)`` finite rows with the fitted column count.

        Returns
        -------
        ndarray
            Dense float32 ``(n_rows, n_features)``.

        Raises
        ------
        ValueError
            If not fitted, or on a wrong shape or NaN/Inf values.
        """
        if not self.is_fitted:
            raise ValueError("Preprocessor.transform: call fit (or from_dict) first")
        _check_matrix(features, self.n_features, "transform")
        if self.kind == "standard":
            assert self._scaler is not None
            out = self._scaler.transform(_dense(features))
        elif self.kind == "tfidf":
            assert self._tfidf is not None
            _check_non_negative(features, "transform")
            weighted = self._tfidf.transform(sp.csr_matrix(features))
            out = _dense(normalize(weighted, norm="l2"))
        elif self.kind == "l2":
            out = _dense(normalize(features, norm="l2"))
        else:
            out = _dense(features)
        return np.asarray(out, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as plain JSON-able values (see :meth:`from_dict`)."""
        if not self.is_fitted:
            raise ValueError("Preprocessor.to_dict: call fit first")
        state: dict[str, Any] = {
            "format": _FORMAT,
            "kind": self.kind,
            "n_features": self.n_features,
        }
        if self._scaler is not None:
            state["mean"] = [float(v) for v in self._scaler.mean_]
            state["var"] = [float(v) for v in self._scaler.var_]
            state["scale"] = [float(v) for v in self._scaler.scale_]
            state["n_samples_seen"] = int(self._scaler.n_samples_seen_)
        if self._tfidf is not None:
            state["idf"] = [float(v) for v in self._tfidf.idf_]
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Preprocessor:
        """Rebuild a fitted :class:`Preprocessor` from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            On an unknown format or kind, or missing or mis-sized values.
        """
        if state.get("format") != _FORMAT:
            raise ValueError(
                f"preprocessor state: unknown format {state.get('format')}"
            )
        kind = state.get("kind")
        if kind not in KINDS:
            raise ValueError(f"preprocessor state: unknown kind {kind!r}")
        out = cls(str(kind))
        out.n_features = int(state["n_features"])
        if kind == "standard":
            out._scaler = _restored_scaler(state, out.n_features)
        elif kind == "tfidf":
            out._tfidf = _restored_tfidf(state, out.n_features)
        return out


def _restored_scaler(state: dict[str, Any], n_features: int) -> StandardScaler:
    """A fitted StandardScaler with the stored mean, variance and scale."""
    scaler = StandardScaler()
    try:
        arrays = {
            k: np.asarray(state[k], dtype=np.float64) for k in ("mean", "var", "scale")
        }
        seen = int(state["n_samples_seen"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"preprocessor state: bad standard-scaler values ({err})"
        ) from err
    for name, values in arrays.items():
        if values.shape != (n_features,):
            raise ValueError(
                f"preprocessor state: {name} has shape {values.shape}, "
                f"expected ({n_features},)"
            )
    scaler.mean_, scaler.var_, scaler.scale_ = (
        arrays["mean"],
        arrays["var"],
        arrays["scale"],
    )
    scaler.n_samples_seen_ = seen
    scaler.n_features_in_ = n_features
    return scaler


def _restored_tfidf(state: dict[str, Any], n_features: int) -> TfidfTransformer:
    """A fitted TfidfTransformer with the stored idf weights."""
    try:
        idf = np.asarray(state["idf"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"preprocessor state: bad tf-idf values ({err})") from err
    if idf.shape != (n_features,):
        raise ValueError(
            f"preprocessor state: idf has shape {idf.shape}, expected ({n_features},)"
        )
    tfidf = TfidfTransformer(norm=None)
    tfidf.idf_ = idf
    tfidf.n_features_in_ = n_features
    return tfidf


def _check_non_negative(x: Matrix, where: str) -> None:
    """Refuse negative values (tf-idf weights counts)."""
    values = _values(x)
    if values.size and float(values.min()) < 0:
        raise ValueError(
            f"Preprocessor.{where}: tfidf needs non-negative features, "
            f"{int((values < 0).sum())} values are negative"
        )


def _check_matrix(x: Matrix, n_features: int | None, where: str) -> None:
    """Refuse a non-2-D, wrongly sized or non-finite matrix."""
    if len(x.shape) != 2:
        raise ValueError(f"Preprocessor.{where}: features must be 2-D, got {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(
            f"Preprocessor.{where}: {x.shape[1]} feature columns, "
            f"fitted on {n_features}"
        )
    values = _values(x)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise ValueError(f"Preprocessor.{where}: {bad} NaN/Inf values in the features")
