"""Which data a run trains on, in words: the server's data set or the parties' files.

In a simulation the server holds the run's data set (``dataset``) and its agents
are parts of it. In a federation of parties each party reads its own file and the
server holds none: ``num-agents`` counts the parties, and ``dataset`` is left at
its default or names a file the server does not have. :func:`data_label` is
what run logs and summaries print for the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import RunConfig
from .loaders import SHARED_NAMES

__all__ = ["PARTY_FILES", "data_label", "server_holds_data"]

PARTY_FILES = "parties' own files"
"""How a run of parties that read their own files names its data."""


def _known(name: str) -> bool:
    """Whether ``name`` is a data set name or an existing path."""
    return name.lower() in SHARED_NAMES or Path(name).expanduser().exists()


def server_holds_data(config: Mapping[str, Any] | RunConfig) -> bool:
    """Whether the run's server holds its data set.

    Parameters
    ----------
    config : Mapping or RunConfig
        The run config (kebab-case keys, as a result document's ``config``).

    Returns
    -------
    bool
        False when ``num-agents`` > 0 (the parties are counted, not the views)
        and ``dataset`` is left at its default or names no data set the server
        can find; True otherwise (a simulation).
    """
    values = config.to_dict() if isinstance(config, RunConfig) else config
    dataset = str(values.get("dataset", RunConfig.dataset))
    if int(values.get("num-agents", 0) or 0) <= 0:
        return True
    return dataset != RunConfig.dataset and _known(dataset)


def data_label(config: Mapping[str, Any] | RunConfig) -> str:
    """The run's data in words: the data set's name, or ``"N parties' own
    files"`` when the server holds none (:func:`server_holds_data`)."""
    values = config.to_dict() if isinstance(config, RunConfig) else config
    if server_holds_data(values):
        return str(values.get("dataset", RunConfig.dataset))
    return f"{int(values['num-agents'])} {PARTY_FILES}"
