"""The K transport plans of a barycenter, as the products the mixer needs.

The mixer only ever uses the plans ``T_k`` (``N x n_k``) through two products:
the normalised projection ``N T_k @ X_k`` of an agent's rows onto the
barycenter points and the pull-back ``n_k T_k^T @ Z`` of barycenter-indexed
rows onto an agent's own rows. A :class:`Transport` offers exactly these,
computed where the plans live, and returns only the ``(N, d)`` / ``(n_k, d)``
results; the dense plans are formed on the host only when
:meth:`Transport.dense` is called.

* :class:`DenseTransport`: numpy plans (the exact and anchored solvers).
* :class:`TorchTransport`: the fast solver's batched torch plans, kept on
  its device in its working precision and rounded onto the couplings in
  float64 one agent at a time for every product.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from .linear_steps import round_to_coupling

__all__ = ["DenseTransport", "TorchTransport", "Transport"]


class Transport(ABC):
    """K plans ``T_k`` of shape ``(N, n_k)`` with uniform marginals.

    Attributes
    ----------
    n_bary : int
        Barycenter size ``N``.
    sizes : tuple of int
        ``n_k`` of every agent.
    materialised : bool
        Whether :meth:`dense` has formed the plans on the host.
    """

    n_bary: int
    sizes: tuple[int, ...]
    materialised: bool = False

    @abstractmethod
    def project(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``N T_k @ values[k]`` for ``values[k]`` of shape ``(n_k, m)``."""

    @abstractmethod
    def pull_back(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``n_k T_k^T @ values[k]`` for ``values[k]`` of shape ``(N, m)``."""

    @abstractmethod
    def dense(self) -> list[np.ndarray]:
        """The K plans as float64 numpy arrays (formed once, then cached)."""

    def check(self, values: Sequence[np.ndarray], rows: Sequence[int]) -> None:
        """Raise ``ValueError`` unless ``values[k]`` has ``rows[k]`` rows."""
        if len(values) != len(self.sizes):
            raise ValueError(f"got {len(values)} arrays for {len(self.sizes)} plans")
        for k, (v, n) in enumerate(zip(values, rows, strict=True)):
            if v.ndim != 2 or v.shape[0] != n:
                raise ValueError(
                    f"values[{k}] must have shape ({n}, m), got {tuple(v.shape)}"
                )


class DenseTransport(Transport):
    """Plans held as numpy arrays."""

    def __init__(self, plans: Sequence[np.ndarray]) -> None:
        self.plans = [np.asarray(t) for t in plans]
        self.n_bary = int(self.plans[0].shape[0]) if self.plans else 0
        self.sizes = tuple(int(t.shape[1]) for t in self.plans)

    def project(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``N T_k @ values[k]``."""
        self.check(values, self.sizes)
        return [self.n_bary * (t @ v) for t, v in zip(self.plans, values, strict=True)]

    def pull_back(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``n_k T_k^T @ values[k]``."""
        self.check(values, [self.n_bary] * len(self.sizes))
        return [t.shape[1] * (t.T @ v) for t, v in zip(self.plans, values, strict=True)]

    def dense(self) -> list[np.ndarray]:
        """The plans themselves."""
        self.materialised = True
        return self.plans


class TorchTransport(Transport):
    """Batched torch plans on their device.

    Parameters
    ----------
    batches : sequence of (list of int, torch.Tensor)
        Agent indices of each batch and its plans ``(B, N, n)`` (any float
        dtype, approximately coupled); they are not copied.
    """

    def __init__(self, batches: Sequence[tuple[list[int], torch.Tensor]]) -> None:
        self.batches = list(batches)
        first = self.batches[0][1]
        self.device, self.n_bary = first.device, int(first.shape[1])
        sizes = {k: int(t.shape[2]) for idx, t in self.batches for k in idx}
        self.sizes = tuple(sizes[k] for k in range(len(sizes)))
        self.where = {
            k: (b, j) for b, (idx, _) in enumerate(batches) for j, k in enumerate(idx)
        }
        self._dense: list[np.ndarray] | None = None

    def plan64(self, k: int) -> torch.Tensor:
        """Plan ``k`` in float64 on the device, rounded onto the couplings."""
        b, j = self.where[k]
        t = self.batches[b][1][j : j + 1].to(torch.float64).clamp_(min=0.0)
        n_bary, n = t.shape[1], t.shape[2]
        p = torch.full((n_bary,), 1.0 / n_bary, dtype=t.dtype, device=t.device)
        q = torch.full((n,), 1.0 / n, dtype=t.dtype, device=t.device)
        return round_to_coupling(t, p, q)[0]

    def _products(
        self, values: Sequence[np.ndarray], transpose: bool
    ) -> list[np.ndarray]:
        out = []
        for k, v in enumerate(values):
            t = self.plan64(k)
            x = torch.as_tensor(np.asarray(v, dtype=np.float64), device=self.device)
            y = t.shape[1] * (t.T @ x) if transpose else t.shape[0] * (t @ x)
            out.append(y.cpu().numpy())
            del t
        return out

    def project(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``N T_k @ values[k]`` on the device; only the result moves."""
        self.check(values, self.sizes)
        return self._products(values, transpose=False)

    def pull_back(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``n_k T_k^T @ values[k]`` on the device; only the result moves."""
        self.check(values, [self.n_bary] * len(self.sizes))
        return self._products(values, transpose=True)

    def dense(self) -> list[np.ndarray]:
        """Every rounded float64 plan, copied to the host once."""
        if self._dense is None:
            self._dense = [self.plan64(k).cpu().numpy() for k in range(len(self.sizes))]
        self.materialised = True
        return self._dense
