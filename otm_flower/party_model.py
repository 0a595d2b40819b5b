"""A party's trained model: saved at the end of a run, loaded to embed and predict.

An artifact is a folder holding

- ``weights.pt``: the WAE's encoder/decoder (and task head) weights, a torch
  state dict (loadable with ``torch.load(..., weights_only=True)``);
- ``model.json``: the format version, the task, the WAE config, the feature
  names, the fitted preprocessing (:meth:`Preprocessor.to_dict`), the cluster
  model (k-means centroids) or the classifier (logistic-regression weights),
  the class values and the party's last reported metrics.

:func:`load_party_model` returns a :class:`PartyModel` whose :meth:`~PartyModel.
embed` maps raw feature rows (after the saved preprocessing) to latent codes
and whose :meth:`~PartyModel.predict` gives a cluster or class index per row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression

from .models import WAE
from .party_data import PartyTable
from .preprocessing import Preprocessor

__all__ = ["FORMAT_VERSION", "PartyModel", "load_party_model", "save_party_model"]

FORMAT_VERSION = 1
"""Version of the artifact layout; :func:`load_party_model` refuses others."""

MANIFEST = "model.json"
WEIGHTS = "weights.pt"


@dataclass(frozen=True)
class Classifier:
    """A fitted multinomial logistic regression on codes (weights only)."""

    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray

    @classmethod
    def of(cls, model: LogisticRegression) -> Classifier:
        """The weights of a fitted scikit-learn model."""
        return cls(model.coef_.copy(), model.intercept_.copy(), model.classes_.copy())

    def estimator(self) -> LogisticRegression:
        """A scikit-learn model with these weights (predicts as the original)."""
        model = LogisticRegression(max_iter=2000)
        model.coef_ = self.coef
        model.intercept_ = self.intercept
        model.classes_ = self.classes
        model.n_features_in_ = self.coef.shape[1]
        return model


def save_party_model(
    folder: str | os.PathLike[str],
    *,
    model: WAE,
    preprocessor: Preprocessor,
    feature_names: list[str],
    task: str,
    centers: np.ndarray,
    classifier: LogisticRegression | None = None,
    classes: np.ndarray | None = None,
    wae_config: Mapping[str, Any],
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Write a party's model artifact to ``folder`` (created; files replaced).

    Parameters
    ----------
    folder : path
        The artifact folder (a party's ``model-dir``).
    model : WAE
        The trained autoencoder.
    preprocessor : Preprocessor
        The transform fitted on the party's training rows.
    feature_names : list of str
        The raw feature columns the model expects, in order.
    task : {"clustering", "classification"}
    centers : ndarray
        ``(k, latent_dim)`` k-means centroids of the codes (the cluster model).
    classifier : LogisticRegression, optional
        Fitted on codes; required for classification.
    classes : ndarray, optional
        The original label value of each class index.
    wae_config : mapping
        ``input_dim``, ``latent_dim``, ``hidden_dim``, ``num_classes``.
    metrics : mapping, optional
        The party's last reported test metrics.

    Returns
    -------
    Path
        The folder.
    """
    if task == "classification" and classifier is None:
        raise ValueError("a classification model needs its classifier")
    out = Path(folder).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / WEIGHTS)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "task": task,
        "wae": {k: int(v) for k, v in wae_config.items()},
        "feature_names": [str(n) for n in feature_names],
        "preprocessing": preprocessor.to_dict(),
        "cluster_centers": np.asarray(centers, dtype=np.float64).tolist(),
        "classes": None if classes is None else np.asarray(classes).tolist(),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
    }
    if classifier is not None:
        weights = Classifier.of(classifier)
        manifest["classifier"] = {
            "coef": weights.coef.tolist(),
            "intercept": weights.intercept.tolist(),
            "classes": weights.classes.tolist(),
        }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out


class PartyModel:
    """A loaded party model (see :func:`load_party_model`).

    Attributes
    ----------
    task : str
        ``"clustering"`` or ``"classification"``.
    feature_names : list of str
        The raw feature columns :meth:`embed` expects, in order.
    classes : ndarray or None
        Original label value of each class index (labelled parties).
    metrics : dict
        The party's last reported test metrics.
    """

    def __init__(self, manifest: dict[str, Any], state: dict[str, Any]) -> None:
        wae = manifest["wae"]
        self.task: str = str(manifest["task"])
        self.feature_names: list[str] = list(manifest["feature_names"])
        self.preprocessor = Preprocessor.from_dict(manifest["preprocessing"])
        self.classes = (
            None if manifest.get("classes") is None else np.asarray(manifest["classes"])
        )
        self.metrics: dict[str, float] = dict(manifest.get("metrics", {}))
        self.model = WAE(
            wae["input_dim"], wae["latent_dim"], wae["hidden_dim"], wae["num_classes"]
        )
        self.model.load_state_dict(state)
        self.model.eval()
        self._kmeans = _kmeans(np.asarray(manifest["cluster_centers"]))
        self._classifier = None
        if "classifier" in manifest:
            c = manifest["classifier"]
            self._classifier = Classifier(
                np.asarray(c["coef"]),
                np.asarray(c["intercept"]),
                np.asarray(c["classes"]),
            ).estimator()

    def _features(self, x: np.ndarray | PartyTable) -> Any:
        if isinstance(x, PartyTable):
            if x.feature_names != self.feature_names:
                raise ValueError(
                    f"{x.source}: feature columns differ from the model's "
                    f"{len(self.feature_names)} ({self.feature_names[:3]}...)"
                )
            return x.features
        return x

    @torch.no_grad()
    def embed(self, x: np.ndarray | PartyTable) -> np.ndarray:
        """Latent codes (float32, ``n x latent_dim``) of raw feature rows."""
        features = self.preprocessor.transform(self._features(x))
        return self.model.encode(torch.as_tensor(features)).numpy()

    def predict(self, x: np.ndarray | PartyTable) -> np.ndarray:
        """Cluster index (clustering) or class index (classification) per row."""
        codes = np.asarray(self.embed(x), dtype=np.float64)
        if self.task == "classification" and self._classifier is not None:
            return np.asarray(self._classifier.predict(codes.astype(np.float32)))
        return np.asarray(self._kmeans.predict(codes))


def _kmeans(centers: np.ndarray) -> KMeans:
    """A scikit-learn k-means with these centroids (predicts as the fitted one)."""
    model = KMeans(n_clusters=len(centers))
    model.cluster_centers_ = np.ascontiguousarray(centers, dtype=np.float64)
    model.n_features_in_ = centers.shape[1]
    model._n_threads = 1  # noqa: SLF001 - set by fit, read by predict
    return model


def load_party_model(path: str | os.PathLike[str]) -> PartyModel:
    """Load the artifact :func:`save_party_model` wrote to ``path``.

    Raises
    ------
    FileNotFoundError
        When the folder or one of its files is missing.
    ValueError
        On another format version.
    """
    folder = Path(path).expanduser()
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{folder}: party model format {manifest.get('format_version')!r}, "
            f"this version reads {FORMAT_VERSION}"
        )
    state = torch.load(folder / WEIGHTS, weights_only=True)
    return PartyModel(manifest, state)
