"""Tests of the fast FGW barycenter solver (otm_flower.fast_fgw, solver="fast")."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from otm_flower.fast_fgw import QUALITY_OPTIONS, fgw_objective, round_to_coupling
from otm_flower.mixer import MixerError, fgw_barycenter, mix_and_pull_back


def _gauss(sizes=(40, 40, 40), d=6, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, d)) * (1 + 0.3 * k) for k, n in enumerate(sizes)]


def _clustered(sizes=(60, 60, 60), d=8, seed=0, n_clusters=4):
    """Real-like codes: clusters of unequal sizes, each agent its own embedding."""
    rng = np.random.default_rng(seed)
    centers = 4.0 * rng.normal(size=(n_clusters, d))
    out = []
    for n in sizes:
        labels = rng.choice(n_clusters, size=n, p=[0.4, 0.3, 0.2, 0.1])
        rot, _ = np.linalg.qr(rng.normal(size=(d, d)))
        out.append((centers[labels] + 0.7 * rng.normal(size=(n, d))) @ rot)
    return out


def _check_couplings(res, clouds, rtol=1e-6):
    n_bary = res.barycenter.shape[0]
    for t, z in zip(res.plans, clouds, strict=True):
        assert t.shape == (n_bary, z.shape[0])
        assert t.min() >= 0.0
        np.testing.assert_allclose(t.sum(1), 1.0 / n_bary, rtol=rtol, atol=0)
        np.testing.assert_allclose(t.sum(0), 1.0 / z.shape[0], rtol=rtol, atol=0)


@pytest.mark.parametrize("variant", ["fgw", "w", "gw"])
@pytest.mark.parametrize("structure", ["features", "free"])
def test_fast_plans_are_couplings(variant, structure):
    clouds = _gauss(sizes=(30, 30, 41))  # two batches of equal size
    res = fgw_barycenter(
        clouds, variant=variant, structure=structure, solver="fast", n_iter=3, seed=0
    )
    _check_couplings(res, clouds)
    assert res.solver == "fast"
    assert len(res.history) == res.n_iter + 1
    assert res.objective == res.history[-1]


def test_fast_plans_with_other_support_size():
    clouds = _gauss(sizes=(30, 45))
    res = fgw_barycenter(clouds, n_points=25, solver="fast", n_iter=2, seed=1)
    _check_couplings(res, clouds)


@pytest.mark.parametrize("structure", ["features", "free"])
def test_fast_costs_match_objective_function_and_pot(structure):
    clouds = _gauss()
    res = fgw_barycenter(clouds, solver="fast", structure=structure, n_iter=3)
    obj, costs = fgw_objective(
        res.barycenter,
        res.plans,
        clouds,
        alpha=res.alpha,
        c=res.structure_matrix,
        scale=res.scale,
    )
    np.testing.assert_allclose(res.costs, costs, rtol=1e-6)
    assert res.objective == pytest.approx(obj, rel=1e-6)
    # the shared objective equals POT's FGW loss of the coupling
    zb = res.barycenter
    c = ot.dist(zb, zb) if res.structure_matrix is None else res.structure_matrix
    for t, z, cost in zip(res.plans, clouds, res.costs, strict=True):
        m = ot.dist(zb, z) / res.scale
        cc, hc1, hc2 = ot.gromov.init_matrix(
            c / res.scale, ot.dist(z, z) / res.scale, t.sum(1), t.sum(0)
        )
        ref = 0.5 * np.vdot(m, t) + 0.5 * ot.gromov.gwloss(cc, hc1, hc2, t)
        assert cost == pytest.approx(float(ref), rel=1e-6)


@pytest.mark.parametrize(
    "make", [_gauss, _clustered, lambda: _clustered(sizes=(80, 80, 80, 80), seed=3)]
)
def test_fast_objective_close_to_exact(make):
    clouds = make()
    exact = fgw_barycenter(clouds, solver="exact", n_iter=5, seed=0)
    fast = fgw_barycenter(
        clouds, solver="fast", n_iter=5, seed=0, fast_options=QUALITY_OPTIONS
    )
    assert fast.objective <= exact.objective * 1.03


def test_fast_free_structure_close_to_exact_free():
    clouds = _clustered()
    exact = fgw_barycenter(clouds, solver="exact", structure="free", n_iter=5)
    fast = fgw_barycenter(
        clouds, solver="fast", structure="free", n_iter=5, fast_options=QUALITY_OPTIONS
    )
    assert fast.objective <= exact.objective * 1.03
    assert fast.structure_matrix is not None
    assert fast.structure_matrix.shape == (60, 60)
    np.testing.assert_allclose(
        fast.structure_matrix, fast.structure_matrix.T, rtol=1e-5
    )


def test_fast_is_deterministic():
    clouds = _clustered()
    a = fgw_barycenter(clouds, solver="fast", n_iter=4, seed=0)
    b = fgw_barycenter(clouds, solver="fast", n_iter=4, seed=0)
    np.testing.assert_array_equal(a.barycenter, b.barycenter)
    for ta, tb in zip(a.plans, b.plans, strict=True):
        np.testing.assert_array_equal(ta, tb)


def test_fast_identical_clouds_recover_codes():
    z = _clustered(sizes=(50,))[0]
    res = fgw_barycenter([z, z.copy()], solver="fast", n_iter=3)
    # both plans are close to the identity (entropic plans keep a little blur)
    for t in res.plans:
        assert (t.argmax(1) == np.arange(50)).mean() >= 0.95
    start = fgw_barycenter([z, z.copy()], solver="fast", n_iter=1).history[0]
    assert res.objective < 0.05 * start or res.objective < 1e-2


def test_fast_through_mix_and_pull_back():
    clouds = _gauss()
    res, mixed, pulled = mix_and_pull_back(clouds, rng=0, solver="fast", n_iter=2)
    assert res.solver == "fast"
    assert [m.shape for m in mixed] == [c.shape for c in clouds]
    assert all(np.isfinite(m).all() for m in mixed + pulled)


def test_fast_options_and_errors():
    clouds = _gauss()
    res = fgw_barycenter(
        clouds,
        solver="fast",
        n_iter=2,
        fast_options={"dtype": torch.float64, "sinkhorn_iter": 5},
    )
    _check_couplings(res, clouds)
    with pytest.raises(MixerError, match="solver"):
        fgw_barycenter(clouds, solver="fastest")  # type: ignore[arg-type]
    with pytest.raises(MixerError, match="structure"):
        fgw_barycenter(clouds, structure="dense")  # type: ignore[arg-type]
    with pytest.raises(MixerError, match="CPU"):
        fgw_barycenter(clouds, solver="exact", device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(MixerError, match="no CUDA device"):
            fgw_barycenter(clouds, device="cuda")
    with pytest.raises(MixerError, match="fast_options"):
        fgw_barycenter(clouds, solver="exact", fast_options={"sinkhorn_iter": 3})
    with pytest.raises(MixerError, match="fast solver"):
        fgw_barycenter(clouds, solver="fast", fast_options={"eps_start": -1.0})
    with pytest.raises(MixerError, match="fast solver"):
        fgw_barycenter(clouds, solver="fast", fast_options={"bogus": 1})


def test_round_to_coupling_exact_marginals():
    rng = np.random.default_rng(0)
    t = torch.as_tensor(rng.random((2, 7, 5)))
    p = torch.full((7,), 1 / 7, dtype=torch.float64)
    q = torch.full((5,), 1 / 5, dtype=torch.float64)
    r = round_to_coupling(t, p, q)
    assert torch.all(r >= 0)
    torch.testing.assert_close(r.sum(2), p.expand(2, -1))
    torch.testing.assert_close(r.sum(1), q.expand(2, -1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_fast_on_cuda_matches_cpu():
    clouds = _clustered()
    cpu = fgw_barycenter(clouds, solver="fast", n_iter=3)
    gpu = fgw_barycenter(clouds, solver="fast", n_iter=3, device="cuda")
    _check_couplings(gpu, clouds)
    assert gpu.objective == pytest.approx(cpu.objective, rel=0.02)


def _checked_fast(clouds, structure, **options):
    """A fast solve of 3 updates with ``options``, its couplings checked."""
    res = fgw_barycenter(
        clouds, solver="fast", structure=structure, n_iter=3, fast_options=options
    )
    _check_couplings(res, clouds)
    return res


@pytest.mark.parametrize("structure", ["features", "free"])
def test_polish_gives_couplings_and_never_raises_the_objective(structure):
    clouds = _clustered(sizes=(50, 50, 50))
    costs = {}
    for steps in (0, 1, 3):
        # no polished update: it lowers the weighted objective, not every
        # cloud's cost (test_support_update_to_polished_plans_...)
        res = _checked_fast(clouds, structure, polish_steps=steps, polish_updates=0)
        costs[steps] = res.costs
    # the polish starts from the unpolished plans and line-searches every step
    assert np.all(costs[1] <= costs[0] * (1 + 1e-9))
    assert np.all(costs[3] <= costs[1] * (1 + 1e-9))
    assert costs[3].sum() < costs[0].sum()  # blur removed on clustered codes


def test_polish_skipped_for_other_sizes_and_above_max_n():
    clouds = _clustered(sizes=(40, 55, 40))  # cloud 1 is not square to N = 40
    off = fgw_barycenter(
        clouds, solver="fast", n_iter=2, fast_options={"polish_steps": 0}
    )
    on = fgw_barycenter(clouds, solver="fast", n_iter=2)
    capped = fgw_barycenter(
        clouds, solver="fast", n_iter=2, fast_options={"polish_max_n": 39}
    )
    _check_couplings(on, clouds)
    # the non-square plan is never polished (only re-rounded in float32
    # storage when the support moves to the polished plans)
    once = fgw_barycenter(
        clouds, solver="fast", n_iter=2, fast_options={"polish_updates": 0}
    )
    np.testing.assert_array_equal(once.plans[1], off.plans[1])
    np.testing.assert_allclose(on.plans[1], off.plans[1], rtol=1e-5, atol=1e-9)
    assert on.costs[0] < off.costs[0]
    np.testing.assert_array_equal(capped.plans[0], off.plans[0])
    with pytest.raises(MixerError, match="polish_steps"):
        fgw_barycenter(clouds, solver="fast", fast_options={"polish_steps": -1})
    with pytest.raises(MixerError, match="polish_updates"):
        fgw_barycenter(clouds, solver="fast", fast_options={"polish_updates": -1})


@pytest.mark.parametrize("structure", ["features", "free"])
def test_support_update_to_polished_plans_lowers_the_objective(structure):
    clouds = _clustered(sizes=(60, 60, 60))
    objective = {}
    for updates in (0, 1, 2):
        res = _checked_fast(clouds, structure, polish_updates=updates)
        # the reported objective is that of the returned support and plans
        obj, _ = fgw_objective(
            res.barycenter,
            res.plans,
            clouds,
            alpha=res.alpha,
            c=res.structure_matrix,
            scale=res.scale,
        )
        assert res.objective == pytest.approx(obj, rel=1e-6)
        objective[updates] = res.objective
    assert objective[1] <= objective[0] * (1 + 1e-6)
    assert objective[2] <= objective[1] * (1 + 1e-6)


def test_resolve_device():
    from otm_flower.mixer import resolve_device

    assert resolve_device("cpu", "exact") == "cpu"
    assert resolve_device("auto", "exact") == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto", "fast") == expected
    with pytest.raises(MixerError, match="CPU only"):
        resolve_device("cuda", "exact")
    if not torch.cuda.is_available():
        with pytest.raises(MixerError, match="no CUDA device"):
            resolve_device("cuda:0", "fast")


def test_fast_on_identical_points_gives_finite_couplings():
    clouds = [np.ones((12, 3)), np.ones((12, 3))]  # flat costs: zero spread
    res = fgw_barycenter(clouds, solver="fast", n_iter=2)
    _check_couplings(res, clouds)
    assert np.all(np.isfinite(res.barycenter)) and np.isfinite(res.objective)


def test_sharp_plans_hold_no_denormal_floats():
    # a very sharp kernel: u K v underflows into denormals (slow on every later
    # pass) unless the linear step zeroes what is negligible
    from otm_flower.barycenter.linear_steps import entropic_lmo

    gen = torch.Generator().manual_seed(0)
    grad = torch.rand(2, 64, 64, generator=gen) * 100.0
    p = torch.full((64,), 1.0 / 64)
    plan, _ = entropic_lmo(grad, p, p, torch.zeros(2, 64), 1e-3, 20)
    tiny = torch.finfo(torch.float32).tiny
    assert not bool(((plan > 0) & (plan < tiny)).any())
    assert bool((plan < 1e-20).any())  # sharp: entries far below any mass
    torch.testing.assert_close(plan.sum(2), p.expand(2, 64), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(plan.sum(1), p.expand(2, 64), rtol=1e-4, atol=1e-7)


def test_reduced_assignment_costs_keep_the_optimum_and_are_warm():
    from scipy.optimize import linear_sum_assignment

    from otm_flower.barycenter.linear_steps import reduce_costs

    rng = np.random.default_rng(0)
    grad = torch.as_tensor(rng.standard_normal((2, 30, 30)) @ rng.random((2, 30, 30)))
    dual = torch.as_tensor(rng.standard_normal((2, 30)))
    for col_dual in (None, dual):
        reduced = reduce_costs(grad.clone(), col_dual)
        assert bool((reduced >= 0).all())
        assert torch.allclose(reduced.amin(dim=2), torch.zeros(2, 30, dtype=grad.dtype))
        for b in range(2):
            raw = grad[b].numpy()
            rows, cols = linear_sum_assignment(reduced[b].numpy())
            best = linear_sum_assignment(raw)
            # a permutation optimal for the reduced costs is optimal for the raw
            assert raw[rows, cols].sum() == pytest.approx(raw[best].sum(), abs=1e-9)
