"""Fast solver: free-support FGW barycenter by entropic conditional gradient (torch).

The exact solver (:mod:`otm_flower.barycenter.exact`) solves every FGW
subproblem with POT's conditional gradient, whose linear step is a network
simplex (about ``O(n^3)``), and whose gradient costs a dense ``O(n^3)``
product ``C T C_k``. This solver plugs into the same engine loop (plans, then
the barycentric update of the support, then plans again) and makes each piece
cheap:

* **Low-rank structure** (:mod:`otm_flower.barycenter.lowrank`). The GW
  gradient and the exact objective come from the rank ``d + 2`` factors of
  the squared Euclidean structure matrices, in ``O(N n d)``.
* **Entropic linear step** (:func:`otm_flower.barycenter.linear_steps.
  entropic_lmo`). Warm-started Sinkhorn at a small temperature ``eps``,
  rounded to an exact coupling (Altschuler et al., 2017). The step length is
  the exact line search of the quadratic objective, so the objective never
  increases inside a solve.
* **Annealing and warm starts.** ``eps`` decreases geometrically over the
  outer iterations; plans and Sinkhorn duals are carried from one outer
  iteration to the next, and solves stop early once the objective no longer
  moves.
* **Batching.** Agents whose clouds have the same size are solved together
  as batched tensor problems (``torch.bmm``) on ``device``, in batches of at
  most ``batch_elements`` plan entries, so each batch's plans stay in cache
  across the passes of a step; every cloud has its own temperature.
* **Plans stay on the device.** The final plans are returned as a
  :class:`otm_flower.barycenter.transport.TorchTransport` over the working
  tensors; only products with them (and, on request, the dense plans) leave
  the device.
* **Exact polish.** Entropic plans stay slightly blurred, which costs
  objective on clustered codes. When the barycenter and a cloud have the same
  size (uniform weights), the final plans take ``polish_steps`` exact
  conditional-gradient steps whose linear step is an assignment problem
  (:func:`scipy.optimize.linear_sum_assignment`, on the CPU, its costs
  reduced by the last entropic step's duals: the same optimum, found several
  times faster), with the same exact line search, so the objective can only
  go down. The support (and a free structure) then moves to the polished
  plans, ``polish_updates`` times, each update after its own polish: the
  entropic iterations stop at the optimum of blurred plans; one such update
  lowered the objective by 0.6-2.5% on each of the mixer benchmark's cases
  (Handwritten codes and clustered clouds, K = 2 and 6, n = 1024). The
  final plans are the last polish's (the update only lowers their cost);
  polishing them once more against the moved support changed those
  objectives by less than 1e-4 of their value (one polish fewer).

All costs are in the normalised units of the exact path: coordinates are
divided by ``sqrt(scale)`` so squared distances are divided by ``scale``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .engine import BarycenterSolution, iterate
from .linear_steps import entropic_lmo, line_search, polish, round_to_coupling
from .lowrank import CloudBatch, FGWProblem, LowRankStructure
from .transport import TorchTransport
from .validation import Structure

#: Slower, more accurate settings (more Sinkhorn iterations and steps): use
#: as ``fast_options`` when the speed defaults leave a gap on clustered codes.
QUALITY_OPTIONS: dict[str, int] = {
    "sinkhorn_iter": 100,
    "inner_steps": 5,
    "first_steps": 20,
}

__all__ = ["QUALITY_OPTIONS", "FastSettings", "FastSolver", "fast_fgw_barycenter"]

Batch = tuple[list[int], CloudBatch]


def _batches(
    clouds: Sequence[np.ndarray],
    root: float,
    dtype: torch.dtype,
    dev: torch.device,
    per_batch: int,
) -> list[Batch]:
    """Equal-size clouds stacked into batches, in normalised coordinates.

    A batch holds at most ``per_batch(n)`` clouds of size ``n`` (at least
    one), so that its plans stay in a core's cache across the many passes of
    a conditional-gradient step.
    """
    groups: dict[int, list[int]] = {}
    for k, c in enumerate(clouds):
        groups.setdefault(c.shape[0], []).append(k)
    out = []
    for n, members in groups.items():
        size = max(1, per_batch // n)
        for lo in range(0, len(members), size):
            idx = members[lo : lo + size]
            y = np.stack([clouds[k] for k in idx]) / root
            out.append((idx, CloudBatch(torch.as_tensor(y, dtype=dtype, device=dev))))
    return out


@dataclass(frozen=True)
class FastSettings:
    """Iteration settings of the fast solver (see :func:`fast_fgw_barycenter`).

    ``polish_steps`` is the number actually taken (0 above ``polish_max_n``);
    ``polish_updates`` the support updates after polishing (see
    :func:`fast_fgw_barycenter`).
    """

    dtype: torch.dtype
    eps_start: float
    eps_end: float
    inner_steps: int
    first_steps: int
    sinkhorn_iter: int
    polish_steps: int
    batch_elements: int
    polish_updates: int = 1


class FastSolver:
    """The FGW barycenter problem in torch, batched over equal-size clouds.

    Parameters are those of :func:`fast_fgw_barycenter`, with ``dev`` a
    :class:`torch.device` and the iteration settings in ``settings``.
    """

    floor = 1e-30

    def __init__(
        self,
        clouds: Sequence[np.ndarray],
        support: np.ndarray,
        weights: np.ndarray,
        alpha: float,
        n_iter: int,
        scale: float,
        structure: Structure,
        dev: torch.device,
        settings: FastSettings,
    ) -> None:
        self.alpha, self.n_iter, self.structure = alpha, n_iter, structure
        self.dtype, self.dev, self.weights = settings.dtype, dev, weights
        self.eps_start, self.eps_end = settings.eps_start, settings.eps_end
        self.inner_steps, self.first_steps = settings.inner_steps, settings.first_steps
        self.sinkhorn_iter = settings.sinkhorn_iter
        self.polish_steps = settings.polish_steps
        self.polish_updates = settings.polish_updates
        self.batch_elements = settings.batch_elements
        dtype = settings.dtype
        self.scale, self.root = scale, math.sqrt(scale)
        self.z = torch.as_tensor(support / self.root, dtype=dtype, device=dev)
        self.n_bary = self.z.shape[0]
        per_batch = max(1, settings.batch_elements // self.n_bary)
        self.batches = _batches(clouds, self.root, dtype, dev, per_batch)
        self.w = torch.as_tensor(weights, dtype=dtype, device=dev)
        self.state: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = [
            None
        ] * len(self.batches)
        self.costs = torch.zeros(len(clouds), dtype=dtype, device=dev)
        self.n_clouds = len(clouds)
        self.st = self._initial_structure()
        self.plans: list[torch.Tensor] = []

    def _initial_structure(self) -> LowRankStructure:
        """Structure of the initial support: ``D(z, z)`` (dense when free)."""
        z = self.z
        if self.structure == "features":
            return LowRankStructure(z, None)
        st = LowRankStructure(z, None)
        return LowRankStructure(z, None, (st.fa, st.fb))  # C = D(z, z) = fa fb^T

    def _steps(
        self,
        prob: FGWProblem,
        q: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        steps: int,
        eps_rel: float,
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """Entropic conditional-gradient steps from ``(T, T @ [y, a, 1], dual)``.

        Returns the new state and the plans' costs, tracked through the exact
        gains of the line search (the objective is quadratic in the step).
        """
        t, tr, gd = state
        cta = prob.cta(tr)
        cur = prob.coupled_cost(tr, cta)
        eps: torch.Tensor | None = None
        for i in range(steps):
            if i:
                cta = prob.cta(tr)
            grad, _ = prob.grad(tr, cta)
            if eps is None:  # temperature fixed per solve, relative to spread
                flat = grad.reshape(grad.shape[0], -1)
                # amin and amax apart: torch's fused aminmax is ~25x slower here
                low, high = flat.amin(dim=1), flat.amax(dim=1)
                # a flat gradient (e.g. identical codes): every coupling is
                # optimal, any temperature will do
                eps = torch.where(high > low, eps_rel * (high - low), 1.0)
            plan, gd = entropic_lmo(grad, prob.p, q, gd, eps, self.sinkhorn_iter)
            del grad
            ptr = prob.products(plan)
            lin, quad = prob.lin_quad(ptr - tr, cta)
            step = line_search(lin, quad)
            t.lerp_(plan, step[:, None, None])
            tr.lerp_(ptr, step[:, None, None])
            del plan
            gain = -(step * lin + step**2 * quad)
            cur = cur - gain
            if bool(torch.all(gain <= 1e-4 * cur.abs())):
                break
        # the products as the steps updated them (the support update takes
        # them; recomputing them from the plans changed no objective digit)
        return (t, tr, gd), cur

    def _solve_batch(self, b: int, eps_rel: float) -> torch.Tensor:
        """Warm-started solve of batch ``b``; records its costs and state."""
        idx, cl = self.batches[b]
        prob = FGWProblem(self.st, cl, self.alpha)
        prev = self.state[b]
        if prev is None:
            t = prob.p[None, :, None] * cl.q[:, None, :]
            state = (t, prob.products(t), torch.zeros_like(cl.q))
            steps = self.first_steps
        else:
            state, steps = prev, self.inner_steps
        new_state, self.costs[idx] = self._steps(prob, cl.q[0], state, steps, eps_rel)
        self.state[b] = new_state
        return new_state[0]

    def solve(self, it: int) -> tuple[float, float]:
        """Solve every batch at the temperature of solve ``it``."""
        ratio = self.eps_end / self.eps_start
        eps_rel = self.eps_start * ratio ** (it / max(self.n_iter, 1))
        self.plans = [self._solve_batch(b, eps_rel) for b in range(len(self.batches))]
        obj = float(self.w @ self.costs)
        return obj, obj

    def update(self) -> None:
        """Barycentric support update (and the free structure update).

        Both come from the products ``T [y, a, 1]`` the solves keep: no pass
        over the plans.
        """
        n_bary, d = self.n_bary, self.z.shape[1]
        z = torch.zeros_like(self.z)
        free = self.structure != "features"
        left, right = [], []
        for (idx, _), state in zip(self.batches, self.state, strict=True):
            assert state is not None  # every batch was solved
            tr, w = state[1], self.w[idx]
            z += torch.einsum("b,bid->id", w, tr[..., :d])
            if free:
                ty, ta, t1 = tr[..., :d], tr[..., d : d + 1], tr[..., d + 1 :]
                fa = torch.cat([ta, t1, ty], 2)
                fb = torch.cat([t1, ta, -2.0 * ty], 2)
                # C = sum_b w_b fa_b fb_b^T: the factors side by side
                left.append((w[:, None, None] * fa).permute(1, 0, 2).flatten(1))
                right.append(fb.permute(1, 0, 2).flatten(1))
        self.z = n_bary * z
        if not free:
            self.st = LowRankStructure(self.z, None)
            return
        scale = float(n_bary) ** 2
        u, v = torch.cat(left, 1) * scale, torch.cat(right, 1)
        if 2 * u.shape[1] < n_bary:  # the factors are cheaper than the dense C
            self.st = LowRankStructure(self.z, None, (u, v))  # C formed when read
        else:
            self.st = LowRankStructure(self.z, u @ v.T)

    def _finish_batch(
        self,
        b: int,
        st64: LowRankStructure,
        with_costs: bool = True,
        rework: bool = True,
    ) -> np.ndarray:
        """Round (and polish) batch ``b``'s plans in float64, a few at a time.

        Each plan is rounded onto the couplings in float64, polished, and
        written back into the working plan tensor (not without ``rework``:
        the plans are then kept as they are); the returned float64 costs are
        those of the plan that :meth:`TorchTransport.plan64` forms from it
        (not computed without ``with_costs``: the array is then unset). At
        most ``chunk`` float64 plans exist at once (two large ones, or as many
        small ones as fit in ``batch_elements`` entries).
        """
        idx, cl = self.batches[b]
        t = self.plans[b]
        state = self.state[b]
        col_dual = None if state is None else state[2]  # warm start of the polish
        costs = np.empty(len(idx))
        # polish: one agent per core for large plans; small plans all at once
        # (a batch of them is no larger than one large plan)
        per_core = max(1, min(2, os.cpu_count() or 1))
        chunk = max(per_core, self.batch_elements // (self.n_bary * cl.y.shape[1]))
        for lo in range(0, len(idx), chunk):
            sl = slice(lo, lo + chunk)
            cl64 = CloudBatch(cl.y[sl].to(torch.float64))
            prob = FGWProblem(st64, cl64, self.alpha)
            if not rework:
                costs[sl] = self._plan64_costs(prob, t[sl])
                continue
            t64 = t[sl].to(torch.float64).clamp_(min=0.0)
            t64 = round_to_coupling(t64, prob.p, cl64.q[0])
            if self.polish_steps and cl64.y.shape[1] == self.n_bary:
                dual = None if col_dual is None else col_dual[sl]
                t64 = polish(prob, t64, self.polish_steps, dual)
            t[sl] = t64
            del t64
            if with_costs:
                costs[sl] = self._plan64_costs(prob, t[sl])
        return costs

    @staticmethod
    def _plan64_costs(prob: FGWProblem, t: torch.Tensor) -> np.ndarray:
        """Float64 costs of the plans :meth:`TorchTransport.plan64` forms from
        the working plans ``t``."""
        t64 = round_to_coupling(
            t.to(torch.float64).clamp_(min=0.0), prob.p, prob.cl.q[0]
        )
        return prob.cost(t64).cpu().numpy()

    def _st64(self, dense_only: bool = False) -> LowRankStructure:
        """The current support's structure in float64 (``dense_only``: a free
        structure without its factors, so that costs are exact to the dense
        matrix the result returns)."""
        st = self.st.to(torch.float64)
        return st.without_factors() if dense_only else st

    def _polished_update(self) -> None:
        """Polish every plan against the current support, then move the support
        (and a free structure) to the polished plans (:meth:`update`)."""
        st64 = self._st64()
        for b, (_, cl) in enumerate(self.batches):
            self._finish_batch(b, st64, with_costs=False)
            state = self.state[b]
            assert state is not None  # every batch was solved
            t = self.plans[b]
            prob = FGWProblem(self.st, cl, self.alpha)
            self.state[b] = (t, prob.products(t), state[2])
        self.update()

    def _polished(self) -> bool:
        """Whether any plan is polished (square, polish steps on)."""
        sizes = {cl.y.shape[1] for _, cl in self.batches}
        return self.polish_steps > 0 and self.n_bary in sizes

    def solution(self, history: list[float], n_iter: int) -> BarycenterSolution:
        """Support, polished couplings on the device, their float64 costs.

        With polished plans, the support first takes ``polish_updates``
        polished updates (:meth:`_polished_update`), and the plans are the
        last update's polished ones; else the plans are rounded and
        polished here (when square). The plans stay in the
        solver's tensors (a :class:`TorchTransport`); the last ``history``
        entry is replaced by the weighted float64 costs.
        """
        updated = self._polished() and self.polish_updates > 0
        if updated:
            for _ in range(self.polish_updates):
                self._polished_update()
        st64 = self._st64(dense_only=True)
        z64, dense64 = st64.z, st64.dense
        costs64 = np.empty(self.n_clouds)
        for b, (idx, _) in enumerate(self.batches):
            # after a polished update the plans are already rounded and
            # polished (against the support before it): a further polish
            # against the moved support changed the objective by < 1e-4
            costs64[idx] = self._finish_batch(b, st64, rework=not updated)
        history[-1] = float(np.asarray(self.weights) @ costs64)
        transport = TorchTransport(
            [(idx, t) for (idx, _), t in zip(self.batches, self.plans, strict=True)]
        )
        self.state = [None] * len(self.batches)  # drop the duals' references
        return BarycenterSolution(
            barycenter=(z64 * self.root).cpu().numpy(),
            plans=transport,
            costs=costs64,
            history=history,
            n_iter=n_iter,
            structure=None if dense64 is None else dense64.cpu().numpy() * self.scale,
        )


@contextmanager
def _torch_threads(dev: torch.device, threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads (on the CPU), then restore them."""
    old_threads = torch.get_num_threads()
    if dev.type == "cpu" and threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)


def _check_options(
    eps_start: float,
    eps_end: float,
    structure: str,
    polish_steps: int,
    polish_updates: int,
) -> None:
    if not (0 < eps_end <= eps_start):
        raise ValueError(f"need 0 < eps_end <= eps_start, got {eps_start}, {eps_end}")
    if structure not in ("features", "free"):
        raise ValueError(f"structure must be 'features' or 'free', got {structure!r}")
    if polish_steps < 0:
        raise ValueError(f"polish_steps must be >= 0, got {polish_steps}")
    if polish_updates < 0:
        raise ValueError(f"polish_updates must be >= 0, got {polish_updates}")


def fast_fgw_barycenter(
    clouds: Sequence[np.ndarray],
    support: np.ndarray,
    weights: np.ndarray,
    *,
    alpha: float,
    n_iter: int,
    tol: float,
    scale: float = 1.0,
    structure: Structure = "features",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    eps_start: float = 1e-2,
    eps_end: float = 1e-3,
    inner_steps: int = 1,
    first_steps: int = 3,
    sinkhorn_iter: int = 10,
    polish_steps: int = 1,
    polish_max_n: int = 2048,
    polish_updates: int = 1,
    threads: int | None = None,
    batch_elements: int = 2**18,
) -> BarycenterSolution:
    """Free-support FGW barycenter with entropic conditional gradient.

    Parameters
    ----------
    clouds, support, weights : np.ndarray
        ``K`` validated float64 clouds ``(n_k, d)``, the initial support
        ``(N, d)`` and the normalised agent weights ``(K,)``.
    alpha, scale : float
        Structure weight in ``[0, 1]`` (0: Wasserstein, 1: GW); common divisor
        of all cost matrices (see the mixer).
    n_iter, tol : int, float
        Most support updates; stop at a relative objective change below tol.
    structure : {"features", "free"}
        ``C = D(Z, Z)`` of the support (rank ``d + 2``, never formed), or dense,
        updated like the support to ``sum_k w_k N^2 T_k C_k T_k^T``.
    device, dtype : torch device and dtype
        Where and how precisely to iterate (plans are rounded in float64).
    eps_start, eps_end : float
        Relative Sinkhorn temperature of the first and last solve (geometric).
    inner_steps, first_steps, sinkhorn_iter : int
        Conditional-gradient steps per warm-started solve and of the first
        (cold) solve; scaling iterations per linear step (warm duals).
    polish_steps, polish_max_n : int
        Exact assignment steps (one :func:`scipy.optimize.linear_sum_assignment`
        per agent) on each final plan whose cloud is as large as the
        barycenter (0: off), skipped above ``polish_max_n`` points.
    polish_updates : int
        Support updates to the polished plans, each after its own polish; the
        result's plans are the last polish's (0: the support of the last
        entropic solve is kept and its plans polished).
    threads : int, optional
        Torch CPU threads (default 1 when ``N * max n_k <= 2**18``, else as is).
    batch_elements : int
        Plan entries per batch of equal-size clouds solved together (in cache).

    Returns
    -------
    BarycenterSolution
        A free structure in input units (not divided by ``scale``).
    """
    _check_options(eps_start, eps_end, structure, polish_steps, polish_updates)
    dev = torch.device(device)
    n = support.shape[0]
    if threads is None and n * max(c.shape[0] for c in clouds) <= 2**18:
        threads = 1  # small plans: threads cost more than they save
    polish = polish_steps if n <= polish_max_n else 0
    steps = (inner_steps, first_steps, sinkhorn_iter, polish)
    settings = FastSettings(
        dtype, eps_start, eps_end, *steps, int(batch_elements), int(polish_updates)
    )
    with _torch_threads(dev, threads):
        solver = FastSolver(
            clouds, support, weights, alpha, n_iter, scale, structure, dev, settings
        )
        trace = iterate(solver, n_iter, tol)
        return solver.solution(trace.history, trace.n_iter)
