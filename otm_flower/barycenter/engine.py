"""The barycenter engine: the support-update loop and the result, for any solver.

A solver (:class:`SupportSolver`) owns one barycenter problem: it solves the
K plans against its current support and moves the support (and its structure,
and any extra per-point data) to the plans' barycentric update. The engine
alternates the two (:func:`iterate`) until the objective settles, and
:func:`build_result` turns the solver's final state into a
:class:`BarycenterResult`. The exact (POT), fast (torch) and anchored solvers
all plug in here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from .transport import DenseTransport, Transport
from .validation import Solver, Structure, Variant

__all__ = [
    "BarycenterResult",
    "BarycenterSolution",
    "SupportSolver",
    "Trace",
    "build_result",
    "iterate",
]

R = TypeVar("R", bound="BarycenterResult")


@dataclass
class BarycenterResult:
    """Output of :func:`otm_flower.mixer.fgw_barycenter`.

    Attributes
    ----------
    barycenter : np.ndarray
        Barycenter support ``Z``, shape ``(N, d)``, float64.
    transport : Transport
        The ``K`` transport plans where the solver computed them (the fast
        solver: its device), offering the projection and pull-back products
        without forming the plans on the host.
    plans : list of np.ndarray
        (property) ``K`` float64 plans; plan ``k`` has shape ``(N, n_k)``,
        rows sum to ``1/N`` and columns to ``1/n_k``. Solved against the
        final ``Z``. Reading it forms them on the host
        (:meth:`Transport.dense`).
    costs : np.ndarray
        Shape ``(K,)``: FGW cost of plan ``k`` against the final barycenter
        with the (normalised) cost matrices, i.e. what POT's
        ``fused_gromov_wasserstein2`` reports for that plan. The effective
        ``alpha`` is ``alpha`` for ``"fgw"``, 0 for ``"w"`` and 1 for ``"gw"``.
    objective : float
        ``sum_k w_k * costs[k]``.
    n_iter : int
        Number of barycenter updates done.
    history : list of float
        Objective before the first update, then after each update
        (length ``n_iter + 1``; ``history[-1] == objective``).
    weights : np.ndarray
        Normalised agent weights, shape ``(K,)``.
    scale : float
        Common divisor applied to all cost matrices (1.0 if not normalised).
    variant : str
        Barycenter variant used.
    alpha : float
        Effective structure weight used in ``costs``.
    solver : str
        ``"exact"`` (POT conditional gradient) or ``"fast"``
        (:mod:`otm_flower.fast_fgw`).
    structure : str
        ``"features"``: barycenter structure ``C = D(Z, Z)``; ``"free"``:
        ``C`` optimised too (see :func:`otm_flower.mixer.fgw_barycenter`).
    structure_matrix : np.ndarray or None
        For ``structure="free"``: the final ``C`` ``(N, N)`` that ``costs``
        use, in squared-distance units (divide by ``scale`` to get the
        normalised matrix). ``None`` for ``"features"``.
    """

    barycenter: np.ndarray
    transport: Transport
    costs: np.ndarray
    objective: float
    n_iter: int
    history: list[float] = field(default_factory=list)
    weights: np.ndarray = field(default_factory=lambda: np.ones(0))
    scale: float = 1.0
    variant: Variant = "fgw"
    alpha: float = 0.5
    solver: Solver = "exact"
    structure: Structure = "features"
    structure_matrix: np.ndarray | None = None

    @property
    def plans(self) -> list[np.ndarray]:
        """The ``K`` dense float64 plans, formed on the host on first access."""
        return self.transport.dense()


@dataclass
class BarycenterSolution:
    """Raw output of a solver (normalised cost units).

    Attributes
    ----------
    barycenter : np.ndarray
        Support ``(N, d)`` in the input coordinates (not rescaled).
    plans : list of np.ndarray or Transport
        ``K`` couplings ``(N, n_k)`` with marginals ``1/N`` and ``1/n_k``,
        as numpy arrays or a :class:`Transport` (kept where computed).
    costs : np.ndarray
        ``(K,)`` FGW cost of each plan against the final support.
    history : list of float
        Weighted objective after each solve (``n_iter + 1`` entries).
    n_iter : int
        Number of support updates done.
    structure : np.ndarray or None
        Final dense structure ``C`` ``(N, N)`` for ``structure="free"``, in
        the units the solver documents (the exact and fast solvers: squared
        distances, not divided by ``scale``); ``None`` for ``"features"``
        (``C = D(Z, Z)``).
    """

    barycenter: np.ndarray
    plans: list[np.ndarray] | Transport
    costs: np.ndarray
    history: list[float]
    n_iter: int
    structure: np.ndarray | None = None


class SupportSolver(Protocol):
    """One barycenter problem, driven by :func:`iterate`.

    Attributes
    ----------
    floor : float
        Smallest objective magnitude the relative tolerance is taken of.
    """

    floor: float

    def solve(self, it: int) -> tuple[float, float]:
        """Solve the plans against the current support (solve number ``it``).

        Returns
        -------
        reported : float
            Weighted (F)GW cost of the plans (the result's ``history``).
        minimised : float
            The objective the solver minimises, whose relative change stops
            the loop (``reported`` unless the solver adds terms).
        """
        ...

    def update(self) -> None:
        """Move the support (and structure) to the current plans' update."""
        ...


@dataclass
class Trace:
    """The objectives of a run of :func:`iterate`.

    Attributes
    ----------
    history : list of float
        Reported objective before the first update and after each one.
    minimised : list of float
        Minimised objective, likewise.
    n_iter : int
        Number of support updates done.
    """

    history: list[float]
    minimised: list[float]
    n_iter: int


def iterate(solver: SupportSolver, n_iter: int, tol: float) -> Trace:
    """Alternate plan solves and support updates.

    Solves the plans, then at most ``n_iter`` times updates the support and
    solves again, stopping when the minimised objective changes by at most
    ``tol`` relative to its previous value.
    """
    reported, obj = solver.solve(0)
    history, minimised = [reported], [obj]
    done = 0
    for it in range(1, int(n_iter) + 1):
        solver.update()
        reported, new_obj = solver.solve(it)
        history.append(reported)
        minimised.append(new_obj)
        done += 1
        if abs(new_obj - obj) <= tol * max(abs(obj), solver.floor):
            break
        obj = new_obj
    return Trace(history, minimised, done)


def build_result(
    solution: BarycenterSolution,
    *,
    weights: np.ndarray,
    scale: float,
    variant: Variant,
    alpha: float,
    solver: Solver,
    structure: Structure,
    result_type: type[R],
    **extra: Any,
) -> R:
    """The result of a solve: ``solution`` plus the options that produced it.

    ``result_type`` is :class:`BarycenterResult` or a subclass, which
    receives the ``extra`` fields.
    """
    plans = solution.plans
    transport = plans if isinstance(plans, Transport) else DenseTransport(plans)
    return result_type(
        barycenter=solution.barycenter,
        transport=transport,
        costs=solution.costs,
        objective=solution.history[-1],
        n_iter=solution.n_iter,
        history=solution.history,
        weights=weights,
        scale=scale,
        variant=variant,
        alpha=alpha,
        solver=solver,
        structure=structure,
        structure_matrix=solution.structure,
        **extra,
    )
