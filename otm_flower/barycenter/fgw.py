"""The label-free (F)GW barycenter: validation, then the exact or fast solver.

Each iteration solves one plan ``T_k`` per cloud against the current support
``Z``, then moves the support to the weighted normalised barycentric
projection ``Z = sum_k w_k N T_k Z_k`` and recomputes the structure ``C``
(:mod:`otm_flower.barycenter.engine`); after the last update the plans are
solved once more, so the returned plans and costs match the returned support.

* Support initialisation: cloud ``init``; a smaller ``n_points``: a seeded
  subsample of it without replacement; a larger one: all its rows plus
  seeded resampled rows with a tiny jitter.
* Variants: fused GW (``ot.gromov.fused_gromov_wasserstein``), Wasserstein
  only (``ot.emd`` on the feature cost) or GW only
  (``ot.gromov.gromov_wasserstein``); GW plans are warm-started from the
  previous iteration's plans.
* Structure: ``"features"`` (the reference code) recomputes ``C = D(Z, Z)``
  from the support; ``"free"`` (POT's ``fgw_barycenters``, Vayer et al.
  2019) starts from ``D(Z, Z)`` and then updates ``C`` to its minimiser
  ``sum_k w_k N^2 T_k C_k T_k^T``, returned in ``structure_matrix``.
* Solvers: ``"exact"`` (:mod:`otm_flower.barycenter.exact`, POT's
  conditional gradient with network-simplex linear steps, ``(n_iter + 1) *
  K`` solves of about ``O(n^3)``) or ``"fast"``
  (:mod:`otm_flower.barycenter.fast`: low-rank gradients, warm-started
  entropic linear steps with annealing, exact line search, agents batched in
  torch, ``O(N n d)`` steps; its plans are rounded to exact couplings and
  its ``costs`` computed from them exactly; see ``docs/performance.md``).
* Cost normalisation: every cost matrix is divided by one common scale
  ``s = mean_k max(C_k)`` fixed from the inputs (1 for degenerate clouds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from .engine import BarycenterResult, BarycenterSolution, build_result, iterate
from .exact import ExactSolver
from .fast import fast_fgw_barycenter
from .utils import cloud_maxima, common_scale, init_support
from .validation import (
    SOLVERS,
    ArrayLike,
    MixerError,
    Solver,
    Structure,
    Variant,
    as_clouds,
    check_barycenter_options,
    effective_alpha,
    normalized_weights,
    resolve_device,
)

__all__ = ["fgw_barycenter"]


def _check_solver(
    solver: str, device: str, fast_options: Mapping[str, Any] | None
) -> str:
    """The resolved device of a valid solver choice (MixerError otherwise)."""
    if solver not in SOLVERS:
        raise MixerError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if fast_options is not None and solver != "fast":
        raise MixerError("fast_options is only valid with solver='fast'")
    return resolve_device(str(device), solver)


@dataclass(frozen=True)
class _Run:
    """The options one barycenter run hands to its solver."""

    variant: str
    alpha: float
    structure: str
    n_iter: int
    tol: float
    normalize_costs: bool

    def result(
        self,
        solution: BarycenterSolution,
        w: np.ndarray,
        scale: float,
        solver: str,
    ) -> BarycenterResult:
        """The :class:`BarycenterResult` of ``solution``."""
        return build_result(
            solution,
            weights=w,
            scale=scale,
            variant=cast(Variant, self.variant),
            alpha=effective_alpha(self.variant, self.alpha),
            solver=cast(Solver, solver),
            structure=cast(Structure, self.structure),
            result_type=BarycenterResult,
        )

    def exact(
        self, clouds: list[np.ndarray], support: np.ndarray, w: np.ndarray
    ) -> tuple[BarycenterSolution, float]:
        """Solution and cost scale of the exact solver."""
        solver = ExactSolver(
            clouds,
            support,
            w,
            variant=self.variant,
            alpha=self.alpha,
            structure=self.structure,
            normalize_costs=self.normalize_costs,
        )
        trace = iterate(solver, self.n_iter, self.tol)
        return solver.solution(trace.history, trace.n_iter), solver.scale

    def fast(
        self,
        clouds: list[np.ndarray],
        support: np.ndarray,
        w: np.ndarray,
        device: str,
        fast_options: Mapping[str, Any] | None,
    ) -> tuple[BarycenterSolution, float]:
        """Solution and cost scale of the fast solver; its errors as MixerError.

        The fast solver never forms the agents' structure matrices: the scale
        comes from :func:`otm_flower.barycenter.utils.cloud_maxima`.
        """
        scale = 1.0
        if self.normalize_costs:
            scale = common_scale(cloud_maxima(clouds, device))
        structure = "features" if self.variant == "w" else self.structure
        try:
            solution = fast_fgw_barycenter(
                clouds,
                support,
                w,
                alpha=effective_alpha(self.variant, self.alpha),
                n_iter=self.n_iter,
                tol=self.tol,
                scale=scale,
                structure=cast(Structure, structure),
                device=device,
                **dict(fast_options or {}),
            )
        except (TypeError, ValueError, RuntimeError) as exc:
            raise MixerError(f"fast solver failed: {exc}") from exc
        return solution, scale


def fgw_barycenter(
    codes: Sequence[ArrayLike],
    *,
    n_points: int | None = None,
    alpha: float = 0.5,
    variant: Variant = "fgw",
    n_iter: int = 5,
    tol: float = 1e-6,
    weights: Sequence[float] | None = None,
    init: int = 0,
    normalize_costs: bool = True,
    seed: int | None = None,
    solver: Solver = "fast",
    structure: Structure = "features",
    device: str = "cpu",
    fast_options: Mapping[str, Any] | None = None,
) -> BarycenterResult:
    """Free-support (F)GW barycenter of K code clouds (method: module docstring).

    Parameters
    ----------
    codes : sequence of array-like
        K >= 1 clouds ``(n_k, d)``, numpy or torch (detached and copied to
        CPU), of one ``d``, finite.
    n_points : int, optional
        Barycenter size ``N``; default: the size of cloud ``init``.
    alpha : float
        Weight in ``[0, 1]`` of the structure term of ``"fgw"``.
    variant : {"fgw", "w", "gw"}
        Fused GW, Wasserstein only (alpha 0) or GW only (alpha 1).
    n_iter, tol : int, float
        Maximum number of support updates (>= 1); stop early when the
        relative change of the objective is below ``tol``.
    weights : sequence of float, optional
        Positive agent weights (normalised to sum 1); default uniform.
    init, seed : int
        Cloud that initialises the support, and the seed of that draw.
    normalize_costs : bool
        Divide all cost matrices by ``s = mean_k max(C_k)``.
    solver : {"fast", "exact"}
        :func:`otm_flower.fast_fgw.fast_fgw_barycenter` (the default, as in
        the run config) or POT's conditional gradient (the reference,
        CPU only).
    structure : {"features", "free"}
        ``C = D(Z, Z)`` from the support, or optimised too.
    device : str
        Torch device of the fast solver: ``"cpu"``, ``"cuda[:N]"`` or
        ``"auto"`` (:func:`otm_flower.mixer.resolve_device`; the exact
        solver: ``"cpu"`` only).
    fast_options : mapping, optional
        Extra keywords of :func:`otm_flower.fast_fgw.fast_fgw_barycenter`.

    Returns
    -------
    BarycenterResult
        Final support, plans solved against it (``transport``; the fast
        solver keeps them on ``device`` until ``plans`` is read), their costs
        and the history.

    Raises
    ------
    MixerError
        On invalid codes or parameters.
    """
    clouds = as_clouds(codes)
    check_barycenter_options(
        len(clouds), variant, alpha, n_iter, tol, n_points, init, structure
    )
    device = _check_solver(solver, device, fast_options)
    w = normalized_weights(weights, len(clouds))
    size = None if n_points is None else int(n_points)
    support = init_support(clouds[init], size, np.random.default_rng(seed))
    run = _Run(variant, alpha, structure, int(n_iter), tol, normalize_costs)
    if solver == "fast":
        solution, scale = run.fast(clouds, support, w, device, fast_options)
    else:
        solution, scale = run.exact(clouds, support, w)
    return run.result(solution, w, scale, solver)
