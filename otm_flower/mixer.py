"""Server-side OTM latent mixer: (F)GW barycenter of code clouds and mixing.

One mixing step (see ``docs`` / ``otm-method.md``): the server receives K
unaligned clouds of latent codes ``Z_k`` (``n_k x d``), computes a barycenter
support ``Z`` (``N x d``) with one transport plan ``T_k`` (``N x n_k``, uniform
marginals) per agent, mixes the agents' projections onto the barycenter
points with Dirichlet weights, and pulls the mixed codes back to each agent
(one code per own sample).

Unlike the reference code, projections use the *normalised* barycentric map
(``N * T_k @ Z_k`` and ``n_k * T_k.T @ z``) so mixed codes stay on the codes'
scale.

Cost normalisation (``normalize_costs=True``): all cost matrices (feature
costs ``M_k = ||Z_i - Z_k,l||^2`` and structure matrices ``C = D(Z, Z)``,
``C_k = D(Z_k, Z_k)``, squared Euclidean) are divided by one common scale
``s = mean_k max(C_k)``, computed once from the inputs (``s = 1`` when all
clouds are degenerate). One common scale keeps the feature and structure
terms comparable and the objective a fixed function of ``Z`` across
iterations; reported ``costs`` use the same normalised matrices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import ot
from scipy.linalg import orthogonal_procrustes

if TYPE_CHECKING:  # pragma: no cover
    import torch

    ArrayLike = np.ndarray | torch.Tensor
else:
    ArrayLike = Any

Variant = Literal["fgw", "w", "gw"]
Solver = Literal["exact", "fast"]
Structure = Literal["features", "free"]

__all__ = [
    "BarycenterResult",
    "MixerError",
    "align_projection",
    "Solver",
    "Structure",
    "Variant",
    "fgw_barycenter",
    "mix",
    "mix_and_pull_back",
    "mix_targets",
    "project",
    "pull_back",
]

_VARIANTS = ("fgw", "w", "gw")
_SOLVERS = ("exact", "fast")
_STRUCTURES = ("features", "free")
#: Iteration cap of the network simplex (POT's default 1e5 is too low for
#: n ~ 1000 clouds and silently returns a non-optimal plan).
_EMD_MAX_ITER = 10_000_000


class MixerError(ValueError):
    """Invalid input to the mixer (names the offending cloud where relevant)."""


@dataclass
class BarycenterResult:
    """Output of :func:`fgw_barycenter`.

    Attributes
    ----------
    barycenter : np.ndarray
        Barycenter support ``Z``, shape ``(N, d)``, float64.
    plans : list of np.ndarray
        ``K`` transport plans; plan ``k`` has shape ``(N, n_k)``, rows sum to
        ``1/N`` and columns to ``1/n_k``. Solved against the final ``Z``.
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
        ``C`` optimised too (see :func:`fgw_barycenter`).
    structure_matrix : np.ndarray or None
        For ``structure="free"``: the final ``C`` ``(N, N)`` that ``costs``
        use, in squared-distance units (divide by ``scale`` to get the
        normalised matrix). ``None`` for ``"features"``.
    """

    barycenter: np.ndarray
    plans: list[np.ndarray]
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


# ----------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, no import
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _as_clouds(codes: Sequence[ArrayLike]) -> list[np.ndarray]:
    """Convert and validate K code clouds to float64 ``(n_k, d)`` arrays."""
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
    d0 = None
    for k, c in enumerate(codes):
        try:
            z = _to_numpy(c)
        except (TypeError, ValueError) as exc:
            raise MixerError(f"codes[{k}] is not numeric: {exc}") from exc
        if z.ndim != 2:
            raise MixerError(
                f"codes[{k}] must be 2-D (n_k, d), got shape {tuple(z.shape)}"
            )
        n, d = z.shape
        if n == 0:
            raise MixerError(f"codes[{k}] is empty (0 samples)")
        if d == 0:
            raise MixerError(f"codes[{k}] has latent dimension d=0")
        if d0 is None:
            d0 = d
        elif d != d0:
            raise MixerError(
                f"codes[{k}] has latent dimension d={d}, but codes[0] has d={d0}"
            )
        bad = ~np.isfinite(z)
        if bad.any():
            raise MixerError(
                f"codes[{k}] contains {int(bad.sum())} non-finite value(s) (NaN or Inf)"
            )
        clouds.append(z)
    return clouds


def _check_against(result: BarycenterResult, clouds: list[np.ndarray]) -> None:
    if len(clouds) != len(result.plans):
        raise MixerError(
            f"got {len(clouds)} code clouds but the result has "
            f"{len(result.plans)} plans"
        )
    for k, (z, t) in enumerate(zip(clouds, result.plans, strict=True)):
        if z.shape[0] != t.shape[1]:
            raise MixerError(
                f"codes[{k}] has {z.shape[0]} samples but plans[{k}] expects "
                f"{t.shape[1]}"
            )


def _weights(weights: Sequence[float] | None, k: int) -> np.ndarray:
    if weights is None:
        return np.full(k, 1.0 / k)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (k,):
        raise MixerError(f"weights must have length K={k}, got {w.size}")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise MixerError(f"weights must be finite and positive, got {w.tolist()}")
    return w / w.sum()


# ----------------------------------------------------------------------------
# barycenter
# ----------------------------------------------------------------------------


def _init_support(
    z0: np.ndarray, n_points: int | None, rng: np.random.Generator
) -> np.ndarray:
    n0 = z0.shape[0]
    if n_points is None or n_points == n0:
        return z0.copy()
    if n_points < n0:
        idx = np.sort(rng.choice(n0, size=n_points, replace=False))
        return z0[idx]
    # More points than codes: keep every code once, add resampled, jittered ones.
    extra = z0[rng.integers(0, n0, size=n_points - n0)]
    spread = float(np.std(z0))
    jitter = 1e-6 * (spread if spread > 0 else 1.0)
    extra = extra + jitter * rng.standard_normal(extra.shape)
    return np.concatenate([z0, extra], axis=0)


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
    import torch

    if device == "auto":
        return "cuda" if solver == "fast" and torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if solver != "fast":
        raise MixerError(f"the exact solver runs on CPU only, got device={device!r}")
    if not torch.cuda.is_available():
        raise MixerError(f"device {device!r} asked for, but torch sees no CUDA device")
    return device


def _valid_scale(scale: float) -> float:
    return scale if np.isfinite(scale) and scale > 0.0 else 1.0


def _structure_scale(clouds: list[np.ndarray], device: str) -> float:
    """``mean_k max_ij |z_i - z_j|^2`` (the exact path's scale), in torch.

    Computed on ``device`` in float64 row blocks, without forming the
    ``n x n`` structure matrices on the host.
    """
    import torch

    maxima = []
    for z in clouds:
        zt = torch.as_tensor(z, dtype=torch.float64, device=device)
        sq = (zt * zt).sum(1)
        block = max(1, 2**22 // zt.shape[0])
        best = 0.0
        for start in range(0, zt.shape[0], block):
            rows = zt[start : start + block]
            d = sq[start : start + block, None] + sq[None, :] - 2.0 * rows @ zt.T
            best = max(best, float(d.max()))
        maxima.append(max(best, 0.0))
    return _valid_scale(float(np.mean(maxima)))


def _solve(
    variant: str,
    m: np.ndarray | None,
    c: np.ndarray | None,
    ck: np.ndarray,
    p: np.ndarray,
    q: np.ndarray,
    alpha: float,
    g0: np.ndarray | None,
) -> tuple[np.ndarray, float]:
    """One plan and its cost (normalised matrices already applied)."""
    if variant == "w":
        assert m is not None
        t = ot.emd(p, q, m, numItermax=_EMD_MAX_ITER)
        return t, float(np.vdot(m, t))
    assert c is not None
    if variant == "gw":
        t, log = ot.gromov.gromov_wasserstein(
            c,
            ck,
            p,
            q,
            "square_loss",
            symmetric=True,
            G0=g0,
            log=True,
            numItermaxEmd=_EMD_MAX_ITER,
        )
        return t, float(log["gw_dist"])
    assert m is not None
    t, log = ot.gromov.fused_gromov_wasserstein(
        m,
        c,
        ck,
        p,
        q,
        loss_fun="square_loss",
        symmetric=True,
        alpha=alpha,
        G0=g0,
        log=True,
        numItermaxEmd=_EMD_MAX_ITER,
    )
    return t, float(log["fgw_dist"])


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
    solver: Solver = "exact",
    structure: Structure = "features",
    device: str = "cpu",
    fast_options: Mapping[str, Any] | None = None,
) -> BarycenterResult:
    """Free-support (F)GW barycenter of K code clouds.

    Parameters
    ----------
    codes : sequence of array-like
        K >= 1 clouds, each ``(n_k, d)`` (numpy or torch; torch tensors are
        detached and copied to CPU), same ``d``, finite values.
    n_points : int, optional
        Barycenter size ``N``. Default: ``n_init`` (size of cloud ``init``).
        Smaller: seeded subsample of cloud ``init`` without replacement;
        larger: cloud ``init`` plus seeded resampled rows with tiny jitter.
    alpha : float
        Weight of the structure (GW) term in ``[0, 1]`` for ``"fgw"``;
        ignored by ``"w"`` (alpha 0) and ``"gw"`` (alpha 1).
    variant : {"fgw", "w", "gw"}
        Fused GW (``ot.gromov.fused_gromov_wasserstein``), Wasserstein only
        (``ot.emd`` on the feature cost) or GW only
        (``ot.gromov.gromov_wasserstein``). GW plans are warm-started from
        the previous iteration's plans.
    n_iter : int
        Maximum number of barycenter updates (>= 1).
    tol : float
        Stop early when the relative change of the objective is below it.
    weights : sequence of float, optional
        Positive agent weights (normalised to sum 1); default uniform.
    init : int
        Index of the cloud that initialises the support.
    normalize_costs : bool
        Divide all cost matrices by ``s = mean_k max(C_k)`` (fixed from the
        inputs; 1 if zero) so solvers see O(1) values. See module docstring.
    seed : int, optional
        Seed of the support initialisation (the solvers are deterministic).
    solver : {"exact", "fast"}
        ``"exact"``: POT's conditional gradient with network-simplex linear
        steps (the reference). ``"fast"``: :func:`otm_flower.fast_fgw.
        fast_fgw_barycenter` (low-rank gradients, warm-started entropic
        linear steps with annealing, exact line search, agents batched in
        torch); its plans are rounded to exact couplings and its ``costs``
        are computed from them exactly as here. See ``docs/performance.md``.
    structure : {"features", "free"}
        Barycenter structure matrix. ``"features"`` (reference code):
        ``C = D(Z, Z)`` recomputed from the support. ``"free"`` (POT's
        ``fgw_barycenters``, Vayer et al. 2019): ``C`` starts as
        ``D(Z, Z)`` and is then updated to its minimiser ``sum_k w_k N^2
        T_k C_k T_k^T``; it is returned in ``structure_matrix``. The
        support update is the same for both.
    device : str
        Torch device of the fast solver (``"cpu"``, ``"cuda"``, ...);
        the exact solver always runs on CPU and accepts only ``"cpu"``.
    fast_options : mapping, optional
        Extra keywords of :func:`otm_flower.fast_fgw.fast_fgw_barycenter`
        (``eps_start``, ``eps_end``, ``inner_steps``, ``first_steps``,
        ``sinkhorn_iter``, ``dtype``).

    Returns
    -------
    BarycenterResult
        Final support, plans solved against it, their costs and the history.

    Raises
    ------
    MixerError
        On invalid codes or parameters.

    Notes
    -----
    Each iteration solves one plan per cloud, then moves the support to the
    weighted normalised barycentric projection ``Z = sum_k w_k N T_k Z_k`` and
    recomputes ``C`` (``D(Z, Z)``, or the free update). After the last update
    the plans are solved once more, so the returned plans and costs match the
    returned support. Cost of the exact solver: ``(n_iter + 1) * K`` exact
    solves, each about ``O(n^3)``; the fast solver's steps are ``O(N n d)``.
    """
    clouds = _as_clouds(codes)
    k_count = len(clouds)
    if variant not in _VARIANTS:
        raise MixerError(f"variant must be one of {_VARIANTS}, got {variant!r}")
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
    if solver not in _SOLVERS:
        raise MixerError(f"solver must be one of {_SOLVERS}, got {solver!r}")
    if structure not in _STRUCTURES:
        raise MixerError(f"structure must be one of {_STRUCTURES}, got {structure!r}")
    if solver == "exact" and str(device) != "cpu":
        raise MixerError(f"the exact solver runs on CPU only, got device={device!r}")
    if fast_options is not None and solver != "fast":
        raise MixerError("fast_options is only valid with solver='fast'")
    w = _weights(weights, k_count)
    eff_alpha = {"fgw": float(alpha), "w": 0.0, "gw": 1.0}[variant]
    rng = np.random.default_rng(seed)

    bary = _init_support(clouds[init], None if n_points is None else int(n_points), rng)
    n_bary = bary.shape[0]
    if solver == "fast":
        # The fast solver never forms the agents' structure matrices.
        scale = _structure_scale(clouds, device) if normalize_costs else 1.0
        return _fast_barycenter(
            clouds,
            bary,
            w,
            eff_alpha,
            variant,
            structure,
            int(n_iter),
            tol,
            scale,
            device,
            fast_options,
        )
    # Structure matrices of the agents and the common normalisation scale.
    cks = [ot.dist(z, z) for z in clouds]
    scale = 1.0
    if normalize_costs:
        scale = _valid_scale(float(np.mean([ck.max() for ck in cks])))
        for ck in cks:
            ck /= scale
    qs = [ot.unif(z.shape[0]) for z in clouds]
    p = ot.unif(n_bary)
    need_c = variant != "w"
    need_m = variant != "gw"

    def solve_all(
        z: np.ndarray, prev: list[Any] | None, c_free: np.ndarray | None
    ) -> tuple[list[np.ndarray], np.ndarray]:
        c = ot.dist(z, z) if need_c and c_free is None else c_free
        if c is not None and c_free is None and scale != 1.0:
            c /= scale
        plans, costs = [], np.empty(k_count)
        for k, zk in enumerate(clouds):
            m = ot.dist(z, zk) if need_m else None
            if m is not None and scale != 1.0:
                m /= scale
            g0 = None if prev is None else prev[k]
            if prev is not None:  # drop our reference: K plans alive, not 2K
                prev[k] = None
            plans_k, costs[k] = _solve(variant, m, c, cks[k], p, qs[k], alpha, g0)
            del g0
            plans.append(plans_k)
        return plans, costs

    free = structure == "free" and need_c
    c_free: np.ndarray | None = None
    plans, costs = solve_all(bary, None, None)
    obj = float(w @ costs)
    history = [obj]
    done = 0
    for _ in range(int(n_iter)):
        bary = n_bary * sum(
            wk * (t @ zk) for wk, t, zk in zip(w, plans, clouds, strict=True)
        )
        if free:
            c_free = n_bary**2 * sum(
                wk * (t @ ck @ t.T) for wk, t, ck in zip(w, plans, cks, strict=True)
            )
        plans, costs = solve_all(bary, plans, c_free)
        new_obj = float(w @ costs)
        history.append(new_obj)
        done += 1
        if abs(new_obj - obj) <= tol * max(abs(obj), 1e-300):
            break
        obj = new_obj

    return BarycenterResult(
        barycenter=np.asarray(bary, dtype=np.float64),
        plans=plans,
        costs=costs,
        objective=history[-1],
        n_iter=done,
        history=history,
        weights=w,
        scale=scale,
        variant=variant,
        alpha=eff_alpha,
        solver="exact",
        structure=structure,
        structure_matrix=None if c_free is None else c_free * scale,
    )


def _fast_barycenter(
    clouds: list[np.ndarray],
    support: np.ndarray,
    w: np.ndarray,
    eff_alpha: float,
    variant: Variant,
    structure: Structure,
    n_iter: int,
    tol: float,
    scale: float,
    device: str,
    fast_options: Mapping[str, Any] | None,
) -> BarycenterResult:
    """Dispatch to :func:`otm_flower.fast_fgw.fast_fgw_barycenter`."""
    from .fast_fgw import fast_fgw_barycenter

    try:
        res = fast_fgw_barycenter(
            clouds,
            support,
            w,
            alpha=eff_alpha,
            n_iter=n_iter,
            tol=tol,
            scale=scale,
            structure=structure if variant != "w" else "features",
            device=device,
            **dict(fast_options or {}),
        )
    except (TypeError, ValueError, RuntimeError) as exc:
        raise MixerError(f"fast solver failed: {exc}") from exc
    return BarycenterResult(
        barycenter=res.barycenter,
        plans=res.plans,
        costs=res.costs,
        objective=res.history[-1],
        n_iter=res.n_iter,
        history=res.history,
        weights=w,
        scale=scale,
        variant=variant,
        alpha=eff_alpha,
        solver="fast",
        structure=structure,
        structure_matrix=res.structure,
    )


# ----------------------------------------------------------------------------
# projection, mixing, pull-back
# ----------------------------------------------------------------------------


def project(result: BarycenterResult, codes: Sequence[ArrayLike]) -> list[np.ndarray]:
    """Normalised barycentric projection of each cloud onto the barycenter.

    Parameters
    ----------
    result : BarycenterResult
        Output of :func:`fgw_barycenter` for these codes.
    codes : sequence of array-like
        The same K clouds, ``(n_k, d)``.

    Returns
    -------
    list of np.ndarray
        ``P_k = N * T_k @ Z_k``, each ``(N, d)``: the code of agent k matched
        to each barycenter point (a convex combination of its own codes).
    """
    clouds = _as_clouds(codes)
    _check_against(result, clouds)
    return [t.shape[0] * (t @ z) for t, z in zip(result.plans, clouds, strict=True)]


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _mix_projections(
    proj: list[np.ndarray], concentration: float, rng: np.random.Generator
) -> np.ndarray:
    n, d = proj[0].shape
    k = len(proj)
    wts = rng.dirichlet(np.full(k, float(concentration)), size=(n, d))  # (N, d, K)
    out = np.zeros((n, d))
    for j, pk in enumerate(proj):
        out += wts[..., j] * pk
    return out


def align_projection(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Map ``source`` onto ``target`` by the best similarity transform.

    Both are ``(N, d)`` and row-matched (projections onto the same barycenter
    points). Returns ``s * (source - mean_s) @ R + mean_t`` with ``R`` orthogonal
    and ``s > 0`` minimising the squared distance to ``target`` (orthogonal
    Procrustes, :func:`scipy.linalg.orthogonal_procrustes`). It expresses one
    agent's codes in another agent's latent frame: the agents' encoders are
    trained separately, so their coordinates are only defined up to such a map.
    """
    src = source - source.mean(axis=0)
    tgt = target - target.mean(axis=0)
    norm = float((src**2).sum())
    if norm <= 1e-12:
        return np.broadcast_to(target.mean(axis=0), target.shape).copy()
    rotation, singular_sum = orthogonal_procrustes(src, tgt)
    return (singular_sum / norm) * (src @ rotation) + target.mean(axis=0)


def _check_concentration(concentration: float) -> None:
    if not (np.isfinite(concentration) and concentration > 0):
        raise MixerError(f"concentration must be > 0, got {concentration}")


def mix(
    result: BarycenterResult,
    codes: Sequence[ArrayLike],
    *,
    concentration: float = 0.5,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Stochastic Dirichlet mix of the agents' projections.

    Parameters
    ----------
    result : BarycenterResult
        Output of :func:`fgw_barycenter` for these codes.
    codes : sequence of array-like
        The same K clouds.
    concentration : float
        Symmetric Dirichlet parameter (> 0); small values favour one agent.
    rng : Generator or int, optional
        Random source (or seed); ``None`` draws fresh entropy.

    Returns
    -------
    np.ndarray
        ``Z_mix`` of shape ``(N, d)``, ``Z_mix[i, j] = sum_k W[i, j, k]
        P_k[i, j]`` with ``W[i, j] ~ Dirichlet(concentration)`` drawn
        independently per barycenter point ``i`` and dimension ``j``.
    """
    _check_concentration(concentration)
    return _mix_projections(project(result, codes), concentration, _rng(rng))


def pull_back(result: BarycenterResult, z: ArrayLike) -> list[np.ndarray]:
    """Pull barycenter-indexed codes back to each agent's samples.

    Parameters
    ----------
    result : BarycenterResult
        Output of :func:`fgw_barycenter`.
    z : array-like
        Codes on the barycenter points, ``(N, d)`` (e.g. ``Z_mix`` or
        ``result.barycenter``).

    Returns
    -------
    list of np.ndarray
        ``n_k * T_k.T @ z``, each ``(n_k, d)``: one code per own sample.
    """
    zz = _to_numpy(z)
    n = result.plans[0].shape[0]
    if zz.ndim != 2 or zz.shape[0] != n:
        raise MixerError(f"z must have shape (N={n}, d), got {tuple(zz.shape)}")
    if not np.all(np.isfinite(zz)):
        raise MixerError("z contains non-finite value(s) (NaN or Inf)")
    return [t.shape[1] * (t.T @ zz) for t in result.plans]


def mix_and_pull_back(
    codes: Sequence[ArrayLike],
    *,
    rng: np.random.Generator | int | None = None,
    concentration: float = 0.5,
    own_only: bool = False,
    align: bool = False,
    **barycenter_kwargs: Any,
) -> tuple[BarycenterResult, list[np.ndarray], list[np.ndarray]]:
    """One server mixing step: barycenter, Dirichlet mix, pull-back.

    Parameters
    ----------
    codes : sequence of array-like
        K clouds ``(n_k, d)``.
    rng : Generator or int, optional
        Random source of the Dirichlet weights (independent of the
        barycenter ``seed``).
    concentration : float
        Dirichlet parameter, see :func:`mix`.
    own_only : bool
        Ablation: give every agent its own projection instead of a mix (all
        Dirichlet weight on itself), so no other agent's codes reach it.
    align : bool
        Mix in each agent's own latent frame (see :func:`mix_targets`).
    **barycenter_kwargs
        Passed to :func:`fgw_barycenter`.

    Returns
    -------
    result : BarycenterResult
    mixed : list of np.ndarray
        Per agent, ``(n_k, d)``: pulled-back mixed codes (mix-loss targets).
    pulled_barycenter : list of np.ndarray
        Per agent, ``(n_k, d)``: pulled-back barycenter support.
    """
    _check_concentration(concentration)
    clouds = _as_clouds(codes)
    result = fgw_barycenter(clouds, **barycenter_kwargs)
    mixed, barycenter = mix_targets(
        result,
        clouds,
        concentration=concentration,
        rng=rng,
        own_only=own_only,
        align=align,
    )
    return result, mixed, barycenter


def mix_targets(
    result: BarycenterResult,
    codes: Sequence[ArrayLike],
    *,
    concentration: float = 0.5,
    rng: np.random.Generator | int | None = None,
    own_only: bool = False,
    align: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every agent's targets from a barycenter (any solver's): mixed codes and
    barycenter, pulled back to its own samples (see :func:`mix_and_pull_back`).

    With ``align``, each agent's mix is formed in its own latent frame: every
    other agent's projection is first mapped onto the agent's own projection by
    :func:`align_projection` (one Dirichlet draw per agent), and its barycenter
    target is the equal-weight mean of those framed projections (the barycenter
    expressed in the agent's own frame) rather than the shared-frame support.
    With ``own_only`` (the ``otm-nomix`` ablation) the mixed codes are the agent's
    own projection; the barycenter targets are as without it."""
    _check_concentration(concentration)
    clouds = _as_clouds(codes)
    _check_against(result, clouds)
    proj = [t.shape[0] * (t @ z) for t, z in zip(result.plans, clouds, strict=True)]
    if not align:
        if own_only:
            mixed = [pull_back(result, p)[k] for k, p in enumerate(proj)]
        else:
            mixed = pull_back(result, _mix_projections(proj, concentration, _rng(rng)))
        return mixed, pull_back(result, result.barycenter)
    generator = _rng(rng)
    mixed, framed_barycenter = [], []
    for k, own in enumerate(proj):
        framed = [
            own if j == k else align_projection(p, own) for j, p in enumerate(proj)
        ]
        z_mix = own if own_only else _mix_projections(framed, concentration, generator)
        mixed.append(pull_back(result, z_mix)[k])
        framed_barycenter.append(pull_back(result, np.mean(framed, axis=0))[k])
    return mixed, framed_barycenter
