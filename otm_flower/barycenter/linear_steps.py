"""Linear steps of the fast FGW solver: entropic, assignment, and rounding (torch).

The linear minimisation of each conditional-gradient step is solved by a
warm-started Sinkhorn at a small temperature (:func:`entropic_lmo`) or, for
square uniform couplings, by an assignment solver (:func:`polish`); plans are
rounded onto the couplings by :func:`round_to_coupling` (Altschuler et al.,
2017) and steps take the exact line search (:func:`line_search`).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import torch
from scipy.optimize import linear_sum_assignment

from .lowrank import FGWProblem

__all__ = [
    "entropic_lmo",
    "line_search",
    "polish",
    "reduce_costs",
    "round_to_coupling",
]

#: Smallest plan side whose assignment problems are solved on threads (below
#: it one problem takes less than handing it to a thread on a busy machine).
THREADED_ASSIGNMENT_N = 256

#: Plan entries below this are set to zero by :func:`entropic_lmo` (far above
#: the denormal range, far below the ``1 / (N n)`` mass of a uniform entry).
_NEGLIGIBLE = {
    torch.float32: 1e-30,
    torch.float64: 1e-300,
    torch.float16: 0.0,
    torch.bfloat16: 1e-30,
}


def round_to_coupling(
    t: torch.Tensor, p: torch.Tensor, q: torch.Tensor
) -> torch.Tensor:
    """Round nonnegative plans onto the coupling polytope (Altschuler 2017).

    Parameters
    ----------
    t : torch.Tensor
        Plans ``(B, N, n)``, nonnegative.
    p, q : torch.Tensor
        Target marginals ``(N,)`` and ``(n,)`` (same total mass).

    Returns
    -------
    torch.Tensor
        Plans with row sums ``p`` and column sums ``q`` up to rounding
        error, differing from ``t`` by at most the marginal violation in
        l1 norm.
    """
    tiny = torch.finfo(t.dtype).tiny
    x = torch.clamp(p / t.sum(2).clamp(min=tiny), max=1.0)
    t = t * x[:, :, None]
    y = torch.clamp(q / t.sum(1).clamp(min=tiny), max=1.0)
    t.mul_(y[:, None, :])
    er = (p - t.sum(2)).clamp_(min=0.0)  # >= 0 up to round-off
    ec = (q - t.sum(1)).clamp_(min=0.0)
    mass = ec.sum(1).clamp(min=tiny)
    return t.baddbmm_(er[:, :, None], (ec / mass[:, None])[:, None, :])


def _mv(kern: torch.Tensor, x: torch.Tensor, transpose: bool) -> torch.Tensor:
    """Batched ``K @ x`` (or ``K^T @ x``) for ``kern`` ``(B, N, n)``."""
    if transpose:
        return torch.bmm(x[:, None, :], kern)[:, 0]
    return torch.bmm(kern, x[:, :, None])[:, :, 0]


def entropic_lmo(
    grad: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    g_dual: torch.Tensor,
    eps: float | torch.Tensor,
    n_iter: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropic linear step: near-optimal coupling for the cost ``grad``.

    Warm-started Sinkhorn in scaling form on ``(B, N, n)`` costs. The column
    dual ``g_dual`` of the previous step is absorbed into the kernel and each
    row is re-centred on its smallest reduced cost, so the kernel has a 1 in
    every row (no overflow, no empty row). After ``n_iter`` iterations the
    plan is rounded onto the couplings of ``(p, q)`` (Altschuler et al.,
    2017) in factored form. ``grad`` is overwritten (it becomes the plan).
    ``eps`` is one temperature, or one per plan ``(B,)``.

    Returns
    -------
    plan : torch.Tensor
        ``(B, N, n)`` coupling (stored in ``grad``'s memory).
    g_dual : torch.Tensor
        Updated column dual ``(B, n)``.
    """
    eps_b = torch.as_tensor(eps, dtype=grad.dtype, device=grad.device).expand(
        grad.shape[0]
    )
    kern = grad.sub_(g_dual[:, None, :])
    top = kern.amin(dim=2)
    # kernel entries of at least exp(floor): u K v stays clear of the slow
    # denormal floats (exp(-52) ~ 3e-23 of the row maximum: no mass to speak of)
    floor = 0.6 * math.log(torch.finfo(grad.dtype).tiny)
    scale = (-1.0 / eps_b)[:, None]
    # (kern - top) * scale in one pass, in place
    torch.addcmul((-top * scale)[:, :, None], kern, scale[:, :, None], out=kern)
    kern.clamp_(min=floor).exp_()
    u = p.expand_as(top).clone()
    v = torch.ones_like(g_dual)
    tiny = torch.finfo(grad.dtype).tiny
    for _ in range(n_iter):
        v = q / _mv(kern, u, True).clamp(min=tiny)
        u = p / _mv(kern, v, False).clamp(min=tiny)
    g_dual = g_dual + eps_b[:, None] * torch.log(v.clamp(min=tiny))
    # rounding: the last scaling left the rows exact (u = p / K v), so only
    # the columns are scaled down, then the rank-one correction
    ktu = _mv(kern, u, True)
    v = v * torch.clamp(q / (v * ktu).clamp(min=tiny), max=1.0)
    ec = (q - v * ktu).clamp_(min=0.0)
    er = (p - u * _mv(kern, v, False)).clamp_(min=0.0)
    mass = ec.sum(1).clamp(min=tiny)
    plan = kern.mul_(u[:, :, None]).mul_(v[:, None, :])
    plan.baddbmm_(er[:, :, None], (ec / mass[:, None])[:, None, :])
    # entries far below any mass that matters are zeroed: denormal floats
    # (u K v of a sharp kernel) make every later pass over the plans slow
    # (threshold in place: a boolean mask of the plan cost 13x more)
    torch.nn.functional.threshold(plan, _NEGLIGIBLE[plan.dtype], 0.0, inplace=True)
    return plan, g_dual


def line_search(lin: torch.Tensor, quad: torch.Tensor) -> torch.Tensor:
    """Exact minimiser over ``s in [0, 1]`` of ``lin * s + quad * s**2`` (batched)."""
    return torch.where(
        quad > 0,
        torch.clamp(-lin / (2.0 * quad.clamp(min=1e-30)), 0.0, 1.0),
        (lin + quad < 0).to(lin.dtype),
    )


def _assignment_columns(grad: torch.Tensor) -> torch.Tensor:
    """Permutations minimising ``<grad_b, P>``: column of each row ``(B, n)``.

    One :func:`scipy.optimize.linear_sum_assignment` per plan (square costs:
    its rows come back in order, so the columns alone say the permutation).
    """
    n = grad.shape[1]
    costs = grad.cpu().numpy()
    workers = max(1, min(grad.shape[0], os.cpu_count() or 1))
    if workers == 1 or n < THREADED_ASSIGNMENT_N:
        matches = [linear_sum_assignment(c) for c in costs]
    else:  # the assignment solver releases the GIL: one agent per thread
        with ThreadPoolExecutor(workers) as pool:
            matches = list(pool.map(linear_sum_assignment, costs))
    del costs
    cols = torch.empty(grad.shape[:2], dtype=torch.long)
    for b, (rows, col) in enumerate(matches):
        cols[b, torch.as_tensor(rows)] = torch.as_tensor(col)
    return cols.to(grad.device)


def reduce_costs(grad: torch.Tensor, col_dual: torch.Tensor | None) -> torch.Tensor:
    """Assignment costs ``grad - g_j - f_i`` with the same optimal permutations.

    ``col_dual`` ``(B, n)`` is a column dual (the entropic steps' ``g``), the
    row dual ``f`` each row's smallest remaining cost, so every reduced cost
    is ``>= 0`` and near-optimal assignments cost about 0. Constants per row
    and per column do not change which permutation is optimal, but they warm
    start the assignment solver's duals (which start at 0): from the
    entropic duals, :func:`scipy.optimize.linear_sum_assignment` ran 3-30x
    faster on the solver's gradients. ``grad`` is overwritten and returned.
    """
    if col_dual is not None:
        grad.sub_(col_dual.to(grad.dtype)[:, None, :])
    return grad.sub_(grad.amin(dim=2, keepdim=True))


def polish(
    prob: FGWProblem,
    t: torch.Tensor,
    steps: int,
    col_dual: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact conditional-gradient steps on square uniform couplings ``(B, n, n)``.

    The linear step over the couplings of uniform marginals is attained at a
    permutation (Birkhoff), found by an assignment solver on the gradient
    (reduced by ``col_dual`` ``(B, n)`` when given, see :func:`reduce_costs`);
    the step length is the exact line search, so no step increases the cost.
    ``t`` is updated in place and returned.
    """
    tr = prob.products(t)
    n = t.shape[1]
    right = prob.right
    for _ in range(steps):
        grad, cta = prob.grad(tr)
        cols = _assignment_columns(reduce_costs(grad, col_dual))
        del grad  # peak memory: at most one plan-sized array besides t
        # the vertex P / n enters through its products alone: row i of
        # (P / n) [y, a, 1] is row cols[i] of [y, a, 1], over n (no pass
        # over a plan-sized array)
        index = cols[:, :, None].expand(-1, -1, right.shape[2])
        dtr = torch.gather(right, 1, index).div_(n).sub_(tr)
        lin, quad = prob.lin_quad(dtr, cta)
        step = line_search(lin, quad)
        if not bool(torch.any(step > 0)):
            break
        # T + s (P / n - T) in place: t is the caller's copy
        t.mul_((1.0 - step)[:, None, None])
        t.scatter_add_(2, cols[:, :, None], (step / n)[:, None, None].expand(-1, n, 1))
        tr.add_(dtr.mul_(step[:, None, None]))
    return t
