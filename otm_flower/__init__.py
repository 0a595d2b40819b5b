"""otm-flower core: OT latent mixer, WAE models, data, metrics (no Flower imports).

The names below load lazily (PEP 562): ``from otm_flower import mix`` imports
:mod:`otm_flower.mixer` (and POT) on first use, while ``import otm_flower.protocol``
loads only numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ConfigError, RunConfig, parse_run_config, valid_keys
    from .data import AgentData, DataError, MultiViewDataset, load_dataset, make_agents
    from .metrics import (
        classification_accuracy,
        clustering_accuracy,
        clustering_scores,
        purity,
    )
    from .mixer import (
        BarycenterResult,
        MixerError,
        fgw_barycenter,
        mix,
        mix_and_pull_back,
        project,
        pull_back,
    )
    from .models import WAE, mmd_imq
    from .party_model import PartyModel, load_party_model
    from .training import LocalTrainer, LossWeights, MixTargets

_HOMES: dict[str, tuple[str, ...]] = {
    "config": ("ConfigError", "RunConfig", "parse_run_config", "valid_keys"),
    "data": (
        "AgentData",
        "DataError",
        "MultiViewDataset",
        "load_dataset",
        "make_agents",
    ),
    "metrics": (
        "classification_accuracy",
        "clustering_accuracy",
        "clustering_scores",
        "purity",
    ),
    "mixer": (
        "BarycenterResult",
        "MixerError",
        "fgw_barycenter",
        "mix",
        "mix_and_pull_back",
        "project",
        "pull_back",
    ),
    "models": ("WAE", "mmd_imq"),
    "party_model": ("PartyModel", "load_party_model"),
    "training": ("LocalTrainer", "LossWeights", "MixTargets"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "WAE",
    "AgentData",
    "BarycenterResult",
    "ConfigError",
    "DataError",
    "LocalTrainer",
    "LossWeights",
    "MixTargets",
    "MixerError",
    "MultiViewDataset",
    "PartyModel",
    "RunConfig",
    "classification_accuracy",
    "clustering_accuracy",
    "clustering_scores",
    "fgw_barycenter",
    "load_dataset",
    "load_party_model",
    "make_agents",
    "mix",
    "mix_and_pull_back",
    "mmd_imq",
    "parse_run_config",
    "project",
    "pull_back",
    "purity",
    "valid_keys",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
