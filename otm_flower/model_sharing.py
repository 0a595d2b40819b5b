"""An agent's side of the OTM hybrids: the WAE parameters it exchanges."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .models import WAE

__all__ = ["load_shared_parameters", "shared_parameters"]


def shared_parameters(model: WAE, scope: str) -> dict[str, np.ndarray]:
    """The parameters an OTM hybrid exchanges, as numpy arrays.

    Parameters
    ----------
    model : WAE
        The agent's model.
    scope : {"all", "head"}
        ``"all"``: :meth:`WAE.shared_state` (``otm-fedavg``); ``"head"``:
        :meth:`WAE.head_state` (``otm-head``).
    """
    state = _select(model, scope)()
    return {key: value.cpu().numpy() for key, value in state.items()}


def load_shared_parameters(
    model: WAE, scope: str, arrays: dict[str, np.ndarray]
) -> None:
    """Load averaged parameters of ``scope`` into ``model`` (see
    :func:`shared_parameters`).

    Raises
    ------
    ValueError
        When keys or shapes differ from the model's, or the scope is unknown.
    """
    state = {key: torch.as_tensor(np.asarray(v)) for key, v in arrays.items()}
    if scope == "all":
        model.load_shared_state(state)
    elif scope == "head":
        model.load_head_state(state)
    else:
        raise ValueError(f"scope must be 'all' or 'head', got {scope!r}")


def _select(model: WAE, scope: str) -> Callable[[], dict[str, torch.Tensor]]:
    if scope == "all":
        return model.shared_state
    if scope == "head":
        return model.head_state
    raise ValueError(f"scope must be 'all' or 'head', got {scope!r}")
