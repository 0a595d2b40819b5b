"""Input validation shared by every barycenter solver: types, constants, errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    ArrayLike = np.ndarray | torch.Tensor
else:
    ArrayLike = Any

Variant = Literal["fgw", "w", "gw"]
Solver = Literal["exact", "fast"]
Structure = Literal["features", "free"]

VARIANTS: tuple[str, ...] = ("fgw", "w", "gw")
SOLVERS: tuple[str, ...] = ("exact", "fast")
STRUCTURES: tuple[str, ...] = ("features", "free")
#: Iteration cap of the network simplex (POT's default 1e5 is too low for
#: n ~ 1000 clouds and silently returns a non-optimal plan).
EMD_MAX_ITER = 10_000_000
#: Iteration cap of the conditional gradient of the anchored free blocks.
CG_MAX_ITER = 1000

__all__ = [
    "CG_MAX_ITER",
    "EMD_MAX_ITER",
    "SOLVERS",
    "STRUCTURES",
    "VARIANTS",
    "ArrayLike",
    "MixerError",
    "Solver",
    "Structure",
    "Variant",
    "as_clouds",
    "check_barycenter_options",
    "effective_alpha",
    "normalized_weights",
    "resolve_device",
    "to_numpy",
]


class MixerError(ValueError):
    """Invalid input to the mixer (names the offending cloud where relevant)."""


def to_numpy(x: ArrayLike) -> np.ndarray:
    """``x`` as a float64 numpy array (torch tensors detached, copied to CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _cloud(k: int, c: ArrayLike, d0: int | None) -> np.ndarray:
    """Cloud ``k`` as a float64 ``(n_k, d)`` array, checked against ``d0``."""
    try:
        z = to_numpy(c)
    except (TypeError, ValueError) as exc:
        raise MixerError(f"codes[{k}] is not numeric: {exc}") from exc
    if z.ndim != 2:
        raise MixerError(f"codes[{k}] must be 2-D (n_k, d), got shape {tuple(z.shape)}")
    n, d = z.shape
    if n == 0:
        raise MixerError(f"codes[{k}] is empty (0 samples)")
    if d == 0:
        raise MixerError(f"codes[{k}] has latent dimension d=0")
    if d0 is not None and d != d0:
        raise MixerError(
            f"codes[{k}] has latent dimension d={d}, but codes[0] has d={d0}"
        )
    bad = ~np.isfinite(z)
    if bad.any():
        raise MixerError(
            f"codes[{k}] contains {int(bad.sum())} non-finite value(s) (NaN or Inf)"
        )
    return z


def as_clouds(codes: Sequence[ArrayLike]) -> list[np.ndarray]:
    """Convert and validate K code clouds to float64 ``(n_k, d)`` arrays.

    Raises
    ------
    MixerError
        When ``codes`` is a single array, empty, or holds a cloud that is not
        2-D, empty, of another latent dimension or not finite.
    """
    if isinstance(codes, np.ndarray) or hasattr(codes, "detach"):
        raise MixerError(
            "codes must be a sequence of K arrays (one per agent), got a single "
            "array; wrap it in a list"
        )
    try:
        codes = list(codes)
    except TypeError as exc:
        raise MixerError(f"codes must be a sequence of arrays: {exc}") from exc
    if len(codes) == 0:
        raise MixerError("codes is empty: need at least one cloud (K >= 1)")
    clouds: list[np.ndarray] = []
    for k, c in enumerate(codes):
        clouds.append(_cloud(k, c, clouds[0].shape[1] if clouds else None))
    return clouds


def normalized_weights(weights: Sequence[float] | None, k: int) -> np.ndarray:
    """Agent weights normalised to sum 1 (uniform when ``None``)."""
    if weights is None:
        return np.full(k, 1.0 / k)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (k,):
        raise MixerError(f"weights must have length K={k}, got {w.size}")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise MixerError(f"weights must be finite and positive, got {w.tolist()}")
    return w / w.sum()


def check_barycenter_options(
    k_count: int,
    variant: str,
    alpha: float,
    n_iter: int,
    tol: float,
    n_points: int | None,
    init: int,
    structure: str,
) -> None:
    """Check the options every barycenter solver shares.

    Raises
    ------
    MixerError
        Naming the first invalid option.
    """
    if variant not in VARIANTS:
        raise MixerError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise MixerError(f"alpha must be in [0, 1], got {alpha}")
    if int(n_iter) != n_iter or n_iter < 1:
        raise MixerError(f"n_iter must be an integer >= 1, got {n_iter}")
    if not tol >= 0:
        raise MixerError(f"tol must be >= 0, got {tol}")
    if n_points is not None and (int(n_points) != n_points or n_points < 1):
        raise MixerError(f"n_points must be a positive integer, got {n_points}")
    if not -k_count <= init < k_count:
        raise MixerError(f"init must index one of the K={k_count} clouds, got {init}")
    if structure not in STRUCTURES:
        raise MixerError(f"structure must be one of {STRUCTURES}, got {structure!r}")


def effective_alpha(variant: str, alpha: float) -> float:
    """Structure weight the costs use: ``alpha`` (fgw), 0 (w) or 1 (gw)."""
    return {"fgw": float(alpha), "w": 0.0, "gw": 1.0}[variant]


def resolve_device(device: str, solver: str) -> str:
    """The torch device the mixer runs on, from a config value.

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or ``"auto"`` (CUDA when torch
        sees a GPU and ``solver`` is ``"fast"``, else the CPU).
    solver : str
        ``"exact"`` (CPU only) or ``"fast"``.

    Raises
    ------
    MixerError
        When a CUDA device is asked for but torch sees none, or with the exact
        solver.
    """
    if device == "auto":
        return "cuda" if solver == "fast" and torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if solver != "fast":
        raise MixerError(f"the exact solver runs on CPU only, got device={device!r}")
    if not torch.cuda.is_available():
        raise MixerError(f"device {device!r} asked for, but torch sees no CUDA device")
    return device
