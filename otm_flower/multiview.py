"""The multi-view dataset container: views of the same samples, with labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeGuard

import numpy as np
import scipy.sparse as sp

__all__ = ["DataError", "MultiViewDataset", "View", "is_sparse"]

View: TypeAlias = "np.ndarray | sp.csr_matrix"
"""One view: a dense array or a CSR matrix, samples x features."""


def is_sparse(x: Any) -> TypeGuard[sp.csr_matrix]:
    """Whether ``x`` is a scipy sparse matrix (or array)."""
    return bool(sp.issparse(x))


class DataError(ValueError):
    """A dataset file, name or array is missing, malformed or invalid."""


def _checked_view(where: str, v: int, x: Any) -> View:
    """View ``v`` as CSR or ndarray, after checking it is 2-D, non-empty and finite."""
    if is_sparse(x):
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
    return x


def _checked_labels(where: str, raw: Any, n: int) -> np.ndarray:
    """``raw`` as an int64 vector of ``n`` non-negative integer labels."""
    labels = np.asarray(raw)
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D, got shape {labels.shape}")
    if labels.shape[0] != n:
        raise DataError(
            f"{where}: {labels.shape[0]} labels for {n} samples in the views"
        )
    if not np.issubdtype(labels.dtype, np.number) or not np.all(np.isfinite(labels)):
        raise DataError(f"{where}: labels must be finite numbers")
    if np.any(labels != np.round(labels)) or np.any(labels < 0):
        raise DataError(f"{where}: labels must be non-negative integers 0..k-1")
    return labels.astype(np.int64)


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
        views = [_checked_view(where, v, x) for v, x in enumerate(self.views)]
        n = views[0].shape[0]
        shapes = [x.shape for x in views]
        if any(s[0] != n for s in shapes):
            raise DataError(f"{where}: views disagree on n_samples: {shapes}")
        labels = _checked_labels(where, self.labels, n)
        names = list(self.view_names) or [f"view{v}" for v in range(len(views))]
        if len(names) != len(views):
            raise DataError(f"{where}: {len(names)} view names for {len(views)} views")
        object.__setattr__(self, "views", views)
        object.__setattr__(self, "labels", labels)
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
