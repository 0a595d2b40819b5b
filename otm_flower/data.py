"""Multi-view datasets and their split into unaligned federated agents.

One import point for the data layer, whose parts live in modules named for
their jobs:

- :mod:`otm_flower.multiview`: the :class:`MultiViewDataset` container and
  :class:`DataError`;
- :mod:`otm_flower.loaders`: :func:`load_dataset` (the embedded UCI Handwritten
  default, shared ``.mat`` files by short name, any ``.mat`` or ``.npz`` by
  path), :func:`load_mat`, :func:`load_npz`, :func:`save_npz`;
- :mod:`otm_flower.view_transforms`: :func:`preprocess_view`, the per-view transform
  fitted on an agent's training rows;
- :mod:`otm_flower.partition`: :func:`make_agents`, which turns a dataset into
  one or more agents per modality (view), each holding its own train/test rows,
  with an adjustable fraction of the rows shuffled so that rows of different
  modalities no longer correspond, and :class:`AgentData`.
"""

from __future__ import annotations

from .loaders import (
    DATA_DIR_ENV,
    HANDWRITTEN_VIEWS,
    SHARED_NAMES,
    load_dataset,
    load_mat,
    load_npz,
    save_npz,
)
from .multiview import DataError, MultiViewDataset, View
from .partition import AgentData, make_agents
from .view_transforms import PREPROCESS_METHODS, preprocess_view

__all__ = [
    "DATA_DIR_ENV",
    "HANDWRITTEN_VIEWS",
    "PREPROCESS_METHODS",
    "SHARED_NAMES",
    "AgentData",
    "DataError",
    "MultiViewDataset",
    "View",
    "load_dataset",
    "load_mat",
    "load_npz",
    "make_agents",
    "preprocess_view",
    "save_npz",
]
