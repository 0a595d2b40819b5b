"""otm-flower core: OT latent mixer, WAE models, data, metrics (no Flower imports)."""

from .config import ConfigError, RunConfig, parse_run_config, valid_keys
from .data import AgentData, DataError, MultiViewDataset, load_dataset, make_agents
from .metrics import classification_accuracy, clustering_accuracy, clustering_scores
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
from .training import LocalTrainer, LossWeights, MixTargets

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
    "RunConfig",
    "classification_accuracy",
    "clustering_accuracy",
    "clustering_scores",
    "fgw_barycenter",
    "load_dataset",
    "make_agents",
    "mix",
    "mix_and_pull_back",
    "mmd_imq",
    "parse_run_config",
    "project",
    "pull_back",
    "valid_keys",
]
__version__ = "0.1.0"
