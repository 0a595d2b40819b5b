"""Server-side OTM latent mixer: (F)GW barycenter of code clouds and mixing.

The barycenter itself (:func:`fgw_barycenter`, :class:`BarycenterResult`,
:func:`resolve_device`, the option types) lives in :mod:`otm_flower.barycenter`
and is re-exported here; this module projects, mixes and pulls back.

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

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.linalg import orthogonal_procrustes

from .barycenter.engine import BarycenterResult
from .barycenter.fgw import fgw_barycenter
from .barycenter.validation import (
    ArrayLike,
    MixerError,
    Solver,
    Structure,
    Variant,
    as_clouds,
    resolve_device,
    to_numpy,
)

#: Most agents one agent's framed mix draws its weights over (itself
#: included; ``mix_targets(..., align=True)``). Up to this many agents every
#: agent mixes all of them; beyond it each agent mixes a random subset of this
#: size, so the server's work per agent stops growing with the number of agents.
MIX_PARTNERS = 16

__all__ = [
    "MIX_PARTNERS",
    "ArrayLike",
    "BarycenterResult",
    "MixerError",
    "Solver",
    "Structure",
    "Variant",
    "align_projection",
    "fgw_barycenter",
    "mix",
    "mix_and_pull_back",
    "mix_targets",
    "project",
    "pull_back",
    "resolve_device",
]


def _check_against(result: BarycenterResult, clouds: list[np.ndarray]) -> None:
    sizes = result.transport.sizes
    if len(clouds) != len(sizes):
        raise MixerError(
            f"got {len(clouds)} code clouds but the result has {len(sizes)} plans"
        )
    for k, (z, n_k) in enumerate(zip(clouds, sizes, strict=True)):
        if z.shape[0] != n_k:
            raise MixerError(
                f"codes[{k}] has {z.shape[0]} samples but plans[{k}] expects {n_k}"
            )


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
    clouds = as_clouds(codes)
    _check_against(result, clouds)
    return result.transport.project(clouds)


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


def _mix_stacked(
    stacked: np.ndarray, concentration: float, rng: np.random.Generator
) -> np.ndarray:
    """:func:`_mix_projections` of ``(K, N, d)`` projections in one product.

    The same Dirichlet draw; the weighted sum is one contraction instead of
    ``K`` array operations (equal up to the order of the additions).
    """
    k, n, d = stacked.shape
    wts = rng.dirichlet(np.full(k, float(concentration)), size=(n, d))  # (N, d, K)
    return np.einsum("ndj,jnd->nd", wts, stacked)


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
    zz = to_numpy(z)
    n = result.transport.n_bary
    if zz.ndim != 2 or zz.shape[0] != n:
        raise MixerError(f"z must have shape (N={n}, d), got {tuple(zz.shape)}")
    if not np.all(np.isfinite(zz)):
        raise MixerError("z contains non-finite value(s) (NaN or Inf)")
    return result.transport.pull_back([zz] * len(result.transport.sizes))


def mix_and_pull_back(
    codes: Sequence[ArrayLike],
    *,
    rng: np.random.Generator | int | None = None,
    concentration: float = 0.5,
    own_only: bool = False,
    align: bool = False,
    partners: int | None = MIX_PARTNERS,
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
    partners : int or None
        Most agents each framed mix draws over (see :func:`mix_targets`).
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
    clouds = as_clouds(codes)
    result = fgw_barycenter(clouds, **barycenter_kwargs)
    mixed, barycenter = mix_targets(
        result,
        clouds,
        concentration=concentration,
        rng=rng,
        own_only=own_only,
        align=align,
        partners=partners,
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
    partners: int | None = MIX_PARTNERS,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every agent's targets from a barycenter (any solver's): mixed codes and
    barycenter, pulled back to its own samples (see :func:`mix_and_pull_back`).

    With ``align``, each agent's mix is formed in its own latent frame: every
    other agent's projection is first mapped onto the agent's own projection by
    :func:`align_projection` (one Dirichlet draw per agent), and its barycenter
    target is the equal-weight mean of those framed projections (the barycenter
    expressed in the agent's own frame) rather than the shared-frame support.
    With more than ``partners`` agents (default :data:`MIX_PARTNERS`; ``None``:
    no bound) each agent frames, mixes and averages only itself and
    ``partners - 1`` other agents drawn at random (without replacement, from
    ``rng``, before its weights), so the work per agent is bounded; with at
    most ``partners`` agents the result does not depend on it.
    With ``own_only`` (the ``otm-nomix`` ablation) the mixed codes are the agent's
    own projection; the barycenter targets are as without it."""
    _check_concentration(concentration)
    if partners is not None and partners < 1:
        raise MixerError(f"partners must be >= 1 or None, got {partners}")
    clouds = as_clouds(codes)
    _check_against(result, clouds)
    proj = result.transport.project(clouds)
    if align:
        z_mix, z_bary = _framed_targets(
            proj, concentration, _rng(rng), own_only, partners
        )
    else:
        shared = None if own_only else _mix_projections(proj, concentration, _rng(rng))
        z_mix = proj if shared is None else [shared] * len(proj)
        z_bary = [result.barycenter] * len(proj)
    pull = result.transport.pull_back
    return pull(z_mix), pull(z_bary)


def _similarity_maps(
    proj: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair's :func:`align_projection` map, batched.

    Returns the centred projections ``(K, N, d)``, their means ``(K, d)``, the
    rotations ``R[j, k]`` ``(K, K, d, d)`` and scales ``s[j, k]`` ``(K, K)``
    that map projection ``j`` onto projection ``k`` (``s = 0`` for a
    projection with nothing to align: it maps onto the target's mean).
    """
    stacked = np.stack(proj)
    means = stacked.mean(axis=1)
    centred = stacked - means[:, None, :]
    norms = (centred**2).sum(axis=(1, 2))
    k, n, d = centred.shape
    # orthogonal Procrustes of every pair: SVD of the cross-covariances, all
    # from one product; pair (k, j) is pair (j, k) transposed, so only j < k
    # is decomposed (R[k, j] = R[j, k]^T, the same singular values)
    flat = centred.transpose(0, 2, 1).reshape(k * d, n)
    cross = (flat @ flat.T).reshape(k, d, k, d).transpose(0, 2, 1, 3)
    upper_j, upper_k = np.triu_indices(k, 1)
    u, sing, vt = np.linalg.svd(cross[upper_j, upper_k])
    rotations = np.broadcast_to(np.eye(d), (k, k, d, d)).copy()
    rotations[upper_j, upper_k] = u @ vt
    rotations[upper_k, upper_j] = (u @ vt).transpose(0, 2, 1)
    sums = np.zeros((k, k))
    sums[upper_j, upper_k] = sums[upper_k, upper_j] = sing.sum(axis=-1)
    sums[np.arange(k), np.arange(k)] = norms  # a projection onto itself: s = 1
    ok = norms > 1e-12
    scales = np.where(ok[:, None], sums, 0.0) / np.where(ok, norms, 1.0)[:, None]
    return centred, means, rotations, scales


def _maps_onto(
    centred: np.ndarray, norms: np.ndarray, sources: np.ndarray, target: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rotations ``(S, d, d)`` and scales ``(S,)`` mapping each source onto
    ``target`` (the maps of :func:`_similarity_maps`, for these pairs only)."""
    cross = np.einsum("snd,ne->sde", centred[sources], centred[target])
    u, sing, vt = np.linalg.svd(cross)
    rotations = u @ vt
    src_norms = norms[sources]
    ok = src_norms > 1e-12
    scales = np.where(ok, sing.sum(axis=-1), 0.0) / np.where(ok, src_norms, 1.0)
    own = sources == target
    rotations[own] = np.eye(centred.shape[2])
    scales[own] = np.where(ok[own], 1.0, 0.0)
    return rotations, scales


def _partners(
    k: int, n_agents: int, partners: int, rng: np.random.Generator
) -> np.ndarray:
    """Agent ``k`` and ``partners - 1`` others drawn without replacement, sorted."""
    others = rng.choice(n_agents - 1, size=partners - 1, replace=False)
    others = others + (others >= k)  # skip k itself
    return np.sort(np.append(others, k))


def _framed_targets(
    proj: list[np.ndarray],
    concentration: float,
    generator: np.random.Generator,
    own_only: bool,
    partners: int | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per agent, the mix and the barycenter in its own frame (``N x d``).

    With at most ``partners`` agents (or ``partners`` ``None``) every pair's
    alignment comes from one batched Procrustes solve
    (:func:`_similarity_maps`) and agent ``k``'s framed projections are
    formed together, one agent at a time (``K x N x d`` at once). With more,
    each agent mixes itself and ``partners - 1`` others drawn at random
    (:func:`_bounded_framed_targets`): the work per agent stays bounded.
    """
    if partners is not None and len(proj) > partners:
        return _bounded_framed_targets(
            proj, concentration, generator, own_only, partners
        )
    centred, means, rotations, scales = _similarity_maps(proj)
    z_mix, z_bary = [], []
    for k, own in enumerate(proj):
        framed = np.matmul(centred, rotations[:, k])
        framed = framed * scales[:, k, None, None] + means[k]
        framed[k] = own
        z_mix.append(
            own if own_only else _mix_stacked(framed, concentration, generator)
        )
        z_bary.append(framed.mean(axis=0))
    return z_mix, z_bary


def _bounded_framed_targets(
    proj: list[np.ndarray],
    concentration: float,
    generator: np.random.Generator,
    own_only: bool,
    partners: int,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`_framed_targets` with each agent framing ``partners`` agents.

    Agent ``k`` draws its partners (itself and ``partners - 1`` others,
    without replacement), aligns only their projections onto its own, and
    mixes and averages those: ``O(K partners N d)`` work and draws in all.
    """
    stacked = np.stack(proj)
    means = stacked.mean(axis=1)
    centred = stacked - means[:, None, :]
    norms = (centred**2).sum(axis=(1, 2))
    z_mix, z_bary = [], []
    for k, own in enumerate(proj):
        sub = _partners(k, len(proj), partners, generator)
        rotations, scales = _maps_onto(centred, norms, sub, k)
        framed = np.matmul(centred[sub], rotations)
        framed = framed * scales[:, None, None] + means[k]
        framed[np.searchsorted(sub, k)] = own
        z_mix.append(
            own if own_only else _mix_stacked(framed, concentration, generator)
        )
        z_bary.append(framed.mean(axis=0))
    return z_mix, z_bary
