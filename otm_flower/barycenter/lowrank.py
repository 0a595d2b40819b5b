"""Low-rank squared Euclidean geometry of the fast FGW solver (torch).

Squared Euclidean structure matrices have rank at most ``d + 2``:
``C = a 1^T + 1 a^T - 2 Z Z^T`` with ``a = |z|^2``. The GW gradient
``C T C_k`` and the exact objective are computed from these factors in
``O(N n d)`` instead of ``O(N n^2)``; no structure matrix is ever formed
(except a dense free barycenter structure).
"""

from __future__ import annotations

import torch

__all__ = ["CloudBatch", "FGWProblem", "LowRankStructure", "factors", "quad_struct"]


class CloudBatch:
    """A batch of equal-size clouds with their low-rank structure factors."""

    def __init__(self, y: torch.Tensor) -> None:
        self.y = y  # (B, n, d), normalised coordinates
        b, n, _ = y.shape
        self.a = (y**2).sum(2)  # (B, n)
        ones = torch.ones(b, n, 1, dtype=y.dtype, device=y.device)
        # C_k = A_k B_k^T with A_k = [a, 1, y] and B_k = [1, a, -2y]
        self.fa = torch.cat([self.a[..., None], ones, y], dim=2)
        self.fb = torch.cat([ones, self.a[..., None], -2.0 * y], dim=2)
        self.q = torch.full((b, n), 1.0 / n, dtype=y.dtype, device=y.device)
        self.sq = quad_struct(self.a, y, self.q)  # q^T C_k^2 q


def factors(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``a = |z|^2`` and the factors ``[a, 1, z]``, ``[1, a, -2z]`` of ``D(z, z)``."""
    a = (z**2).sum(1)
    ones = torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)
    fa = torch.cat([a[:, None], ones, z], dim=1)
    fb = torch.cat([ones, a[:, None], -2.0 * z], dim=1)
    return a, fa, fb


def quad_struct(a: torch.Tensor, z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``p^T (C * C) p`` for ``C = D(z, z)``, batched over leading dims."""
    pa = (p * a).sum(-1)
    pa2 = (p * a * a).sum(-1)
    mass = p.sum(-1)
    zpz = torch.einsum("...i,...ij,...ik->...jk", p, z, z)
    pz = torch.einsum("...i,...ij->...j", p, z)
    paz = torch.einsum("...i,...ij->...j", p * a, z)
    return (
        2.0 * mass * pa2
        + 2.0 * pa**2
        - 8.0 * (paz * pz).sum(-1)
        + 4.0 * (zpz**2).sum((-2, -1))
    )


class LowRankStructure:
    """Barycenter structure ``C``: low-rank ``D(z, z)`` or a dense matrix.

    A dense ``C`` may come with factors ``(U, V)``, ``C = U V^T`` (the free
    structure update's, rank ``K (d + 2)``): products with ``C`` and
    :meth:`quad` then use them, which is cheaper while the rank is below
    about ``N / 2``, and the dense matrix is formed only when read
    (``dense=None`` with factors: a free structure given by them alone).
    """

    def __init__(
        self,
        z: torch.Tensor,
        dense: torch.Tensor | None,
        dense_factors: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self._dense = dense
        self.a, self.fa, self.fb = factors(z)
        self.z = z
        self.dense_factors = dense_factors
        self._quad_uniform: torch.Tensor | None = None

    @property
    def free(self) -> bool:
        """Whether ``C`` is a free (dense) structure rather than ``D(z, z)``."""
        return self._dense is not None or self.dense_factors is not None

    @property
    def dense(self) -> torch.Tensor | None:
        """The dense ``C`` (formed from its factors on first read), or None."""
        if self._dense is None and self.dense_factors is not None:
            u, v = self.dense_factors
            self._dense = u @ v.T
        return self._dense

    def to(self, dtype: torch.dtype) -> LowRankStructure:
        """The same structure in ``dtype``."""
        dense, fac = self._dense, self.dense_factors
        return LowRankStructure(
            self.z.to(dtype),
            None if dense is None else dense.to(dtype),
            None if fac is None else (fac[0].to(dtype), fac[1].to(dtype)),
        )

    def without_factors(self) -> LowRankStructure:
        """The same structure, its products through the dense matrix alone."""
        self.dense  # noqa: B018 (formed from the factors before they go)
        self.dense_factors = None
        self._quad_uniform = None
        return self

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``C @ x`` for ``x`` of shape ``(B, N, r)``."""
        if self.dense_factors is not None:
            u, v = self.dense_factors
            return torch.matmul(u, torch.matmul(v.T, x))
        if self._dense is not None:
            return torch.matmul(self._dense, x)
        return torch.matmul(self.fa, torch.matmul(self.fb.T, x))

    def quad(self, p: torch.Tensor) -> torch.Tensor:
        """``p^T (C * C) p`` for ``p`` of shape ``(B, N)``."""
        if self.dense_factors is not None:
            # sum_ij p_i p_j (u_i . v_j)^2 = <U^T diag(p) U, V^T diag(p) V>
            u, v = self.dense_factors
            gu = torch.matmul(u.T, p[..., :, None] * u)
            gv = torch.matmul(v.T, p[..., :, None] * v)
            return (gu * gv).sum((-2, -1))
        if self._dense is not None:
            return ((p @ (self._dense**2)) * p).sum(-1)
        return quad_struct(self.a, self.z, p)

    def quad_uniform(self) -> torch.Tensor:
        """``p^T (C * C) p`` for the uniform ``p = 1/N`` (computed once)."""
        if self._quad_uniform is None:
            n_bary = self.z.shape[0]
            p = torch.full((1, n_bary), 1.0 / n_bary, dtype=self.z.dtype)
            self._quad_uniform = self.quad(p.to(self.z.device))[0]
        return self._quad_uniform


class FGWProblem:
    """FGW subproblems of one barycenter ``(z, C)`` against a batch of clouds."""

    def __init__(self, st: LowRankStructure, cl: CloudBatch, alpha: float) -> None:
        self.st, self.z, self.cl, self.alpha = st, st.z, cl, alpha
        n_bary = self.z.shape[0]
        self.p = torch.full(
            (n_bary,), 1.0 / n_bary, dtype=cl.y.dtype, device=cl.y.device
        )
        # A_k = [a, 1, y] and B_k = [1, a, -2y] share the columns [y, a, 1].
        self.right = torch.cat(
            [cl.y, cl.a[..., None], torch.ones_like(cl.a)[..., None]], 2
        )
        self.d = cl.y.shape[2]
        self.right_t = self.right[..., :-1].transpose(1, 2).contiguous()

    def products(self, t: torch.Tensor) -> torch.Tensor:
        """``T @ [y, a_k, 1]`` ``(B, N, d + 2)``: all the plan enters through."""
        return torch.bmm(t, self.right)

    def _split(
        self, tr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.d
        ty, ta, t1 = tr[..., :d], tr[..., d : d + 1], tr[..., d + 1 :]
        return ty, torch.cat([ta, t1, ty], 2), torch.cat([t1, ta, -2.0 * ty], 2)

    def _gw_cross(self, ta: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
        """``<C T C_k, T>`` from ``T A_k`` and ``T B_k``: ``sum((C T A_k) * T B_k)``."""
        return (self.st.matmul(ta) * tb).sum((1, 2))

    def cta(self, tr: torch.Tensor) -> torch.Tensor:
        """``C T A_k`` ``(B, N, d + 2)`` from :meth:`products` ``tr``."""
        return self.st.matmul(self._split(tr)[1])

    def grad(
        self, tr: torch.Tensor, cta: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient up to row/column constants ``(B, N, n)``, and ``C T A_k``.

        ``cta`` is :meth:`cta` of ``tr`` when already known.
        """
        al = self.alpha
        if cta is None:
            cta = self.cta(tr)
        # G = (1-al) M - 4 al C T C_k with C_k = A_k B_k^T, B_k = [1, a, -2y];
        # the column of ones only adds row constants, which the LMO ignores.
        left = torch.cat(
            [
                (-2.0 * (1.0 - al)) * self.z + (8.0 * al) * cta[..., 2:],
                (-4.0 * al) * cta[..., 1:2],
            ],
            dim=2,
        )
        return torch.bmm(left, self.right_t), cta

    def lin_quad(
        self, dtr: torch.Tensor, cta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Slope and curvature of ``cost(T + s dT)`` in ``s`` (zero-mass ``dT``).

        ``dtr`` is :meth:`products` of ``dT``, ``cta`` from :meth:`grad`.
        """
        al = self.alpha
        dty, dta, dtb = self._split(dtr)
        lin = -2.0 * (1.0 - al) * (self.z * dty).sum((1, 2))
        lin = lin - 4.0 * al * (cta * dtb).sum((1, 2))
        quad = -2.0 * al * self._gw_cross(dta, dtb)
        return lin, quad

    def cost(self, t: torch.Tensor, tr: torch.Tensor | None = None) -> torch.Tensor:
        """Exact FGW cost of each plan, with the plan's own marginals."""
        al = self.alpha
        pt, qt = t.sum(2), t.sum(1)
        ty, ta, tb = self._split(self.products(t) if tr is None else tr)
        lin = pt @ self.st.a + (qt * self.cl.a).sum(1) - 2.0 * (self.z * ty).sum((1, 2))
        if al == 0.0:
            return lin
        sq = quad_struct(self.cl.a, self.cl.y, qt)
        gw = self.st.quad(pt) + sq - 2.0 * self._gw_cross(ta, tb)
        return (1.0 - al) * lin + al * gw

    def coupled_cost(self, tr: torch.Tensor, cta: torch.Tensor) -> torch.Tensor:
        """FGW cost of couplings of ``(p, q)`` from ``tr`` and ``cta`` alone.

        No pass over the plans: their marginals are the uniform ``p`` and
        ``q`` (the working plans' up to round-off), so every marginal term is
        fixed by the structures; ``cta`` is :meth:`cta` of ``tr``.
        """
        al = self.alpha
        ty, _, tb = self._split(tr)
        n_bary = self.z.shape[0]
        lin = self.st.a.sum() / n_bary + (self.cl.q * self.cl.a).sum(1)
        lin = lin - 2.0 * (self.z * ty).sum((1, 2))
        if al == 0.0:
            return lin
        gw = self.st.quad_uniform() + self.cl.sq - 2.0 * (cta * tb).sum((1, 2))
        return (1.0 - al) * lin + al * gw
