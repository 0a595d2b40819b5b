"""Simulator-only diagnostics: labels of uploaded batches, kept out of messages.

To measure whether mixing pairs samples of the same class (the couplings' class
agreement), a simulation needs the labels of the rows each agent uploaded. With
``diagnostics-dir`` set (``"auto"``: a per-run temporary folder; the benchmark
sets it), agents write them to a local folder, never into a message, and the
simulating server reads them beside the plans. The default ``""`` writes no files
and the run reports no agreement, as a real deployment must (there the server
cannot read the agents' folders).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def diagnostics_dir(setting: str, run_id: int) -> Path | None:
    """Resolve the ``diagnostics-dir`` run-config value for one run.

    ``""`` disables diagnostics; ``"auto"`` is a per-run folder under the system's
    temporary directory (the same path for the server and the agents of one run on
    one machine); anything else is used as a base folder, with a per-run subfolder.
    """
    if not setting:
        return None
    base = (
        Path(tempfile.gettempdir()) / "otm-flower-diagnostics"
        if setting == "auto"
        else Path(setting)
    )
    return base / f"run-{run_id}"


def _labels_path(folder: Path, agent_id: int, server_round: int) -> Path:
    return folder / f"agent{agent_id}-round{server_round}.npy"


def save_upload_labels(
    folder: Path, agent_id: int, server_round: int, labels: np.ndarray
) -> None:
    """Agent side: keep the labels of the rows uploaded in ``server_round``."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(_labels_path(folder, agent_id, server_round), np.asarray(labels))


def load_upload_labels(
    folder: Path, agent_id: int, server_round: int
) -> np.ndarray | None:
    """Simulator side: the labels an agent saved for a round, or ``None``."""
    path = _labels_path(folder, agent_id, server_round)
    return np.load(path) if path.exists() else None
