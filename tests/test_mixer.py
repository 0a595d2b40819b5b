"""Tests of the server-side OT latent mixer (otm_flower.mixer)."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch

from otm_flower.mixer import (
    BarycenterResult,
    MixerError,
    align_projection,
    fgw_barycenter,
    mix,
    mix_and_pull_back,
    mix_targets,
    project,
    pull_back,
)

VARIANTS = ("fgw", "w", "gw")


def _clouds(sizes=(20, 27, 33), d=5, seed=0, shift=3.0):
    rng = np.random.default_rng(seed)
    return [shift * k + rng.normal(size=(n, d)) * (1 + k) for k, n in enumerate(sizes)]


def _clustered(rng):
    """Asymmetric, well-separated clusters of unequal sizes in 3-D."""
    centers = np.array([[0, 0, 0], [6, 0, 0], [0, 10, 0], [3, 3, 7.0]])
    sizes = [4, 7, 9, 12]
    pts = np.concatenate(
        [c + 0.6 * rng.normal(size=(s, 3)) for c, s in zip(centers, sizes, strict=True)]
    )
    return pts, np.repeat(np.arange(len(sizes)), sizes)


def _fgw2(result: BarycenterResult, z: np.ndarray, plan: np.ndarray) -> float:
    """POT's FGW value for this plan, same normalisation as the result."""
    zb = result.barycenter
    c = ot.dist(zb, zb) / result.scale
    ck = ot.dist(z, z) / result.scale
    m = ot.dist(zb, z) / result.scale
    with warnings.catch_warnings():  # POT divides by alpha in its log when alpha=0
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(
            ot.gromov.fused_gromov_wasserstein2(
                m, c, ck, alpha=result.alpha, G0=plan, loss_fun="square_loss"
            )
        )


# ---------------------------------------------------------------------------
# barycenter: plans, costs, objective
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_points", [None, 17, 40])
def test_plans_are_couplings_with_uniform_marginals(variant, n_points):
    codes = _clouds()
    res = fgw_barycenter(codes, variant=variant, n_points=n_points, seed=1)
    n = n_points or len(codes[0])
    assert res.barycenter.shape == (n, 5)
    assert res.barycenter.dtype == np.float64
    assert len(res.plans) == 3
    for t, z in zip(res.plans, codes, strict=True):
        assert t.shape == (n, len(z))
        assert np.all(t >= -1e-15)
        np.testing.assert_allclose(t.sum(axis=1), 1.0 / n, atol=1e-10)
        np.testing.assert_allclose(t.sum(axis=0), 1.0 / len(z), atol=1e-10)
    assert np.all(np.isfinite(res.barycenter))


@pytest.mark.parametrize("variant", VARIANTS)
def test_costs_match_pot_on_returned_barycenter(variant):
    codes = _clouds()
    res = fgw_barycenter(
        codes, variant=variant, alpha=0.3, n_points=25, seed=0, solver="exact"
    )
    assert res.scale == pytest.approx(np.mean([ot.dist(z, z).max() for z in codes]))
    assert res.alpha == {"fgw": 0.3, "w": 0.0, "gw": 1.0}[variant]
    for k, (t, z) in enumerate(zip(res.plans, codes, strict=True)):
        np.testing.assert_allclose(res.costs[k], _fgw2(res, z, t), rtol=1e-6)
    if variant == "w":  # exact OT: the plan is globally optimal
        for k, z in enumerate(codes):
            m = ot.dist(res.barycenter, z) / res.scale
            np.testing.assert_allclose(res.costs[k], ot.emd2([], [], m), rtol=1e-9)


def test_costs_use_normalisation_and_unnormalised_option():
    codes = _clouds()
    a = fgw_barycenter(codes, seed=0, solver="exact")
    b = fgw_barycenter(codes, seed=0, normalize_costs=False, solver="exact")
    assert b.scale == 1.0 and a.scale > 10.0
    for k, (t, z) in enumerate(zip(b.plans, codes, strict=True)):
        np.testing.assert_allclose(b.costs[k], _fgw2(b, z, t), rtol=1e-6)
    # normalised costs are O(1), unnormalised are on the squared-code scale
    assert a.objective < 1.0 < b.objective


def test_objective_is_weighted_sum_and_history_ends_with_it():
    codes = _clouds()
    res = fgw_barycenter(codes, weights=[1.0, 2.0, 5.0], n_iter=4, tol=0.0, seed=0)
    np.testing.assert_allclose(res.weights, np.array([1, 2, 5]) / 8)
    assert res.objective == pytest.approx(float(res.weights @ res.costs), rel=1e-12)
    assert len(res.history) == res.n_iter + 1
    assert 1 <= res.n_iter <= 4
    assert res.history[-1] == res.objective
    # FGW barycenter iterations should not make the objective worse overall
    assert res.objective <= res.history[0] + 1e-12


def test_weights_pull_barycenter_towards_heavy_agent():
    codes = _clouds(sizes=(25, 25), shift=10.0)
    light = fgw_barycenter(codes, weights=[1.0, 1.0], variant="w", seed=0)
    heavy = fgw_barycenter(codes, weights=[1.0, 9.0], variant="w", seed=0)
    mean1 = codes[1].mean(0)
    d_light = np.linalg.norm(light.barycenter.mean(0) - mean1)
    d_heavy = np.linalg.norm(heavy.barycenter.mean(0) - mean1)
    assert d_heavy < 0.5 * d_light


def test_torch_input_matches_numpy():
    codes = _clouds()
    tcodes = [torch.tensor(z, dtype=torch.float64, requires_grad=True) for z in codes]
    a = fgw_barycenter(codes, n_points=21, seed=3)
    b = fgw_barycenter(tcodes, n_points=21, seed=3)
    np.testing.assert_array_equal(a.barycenter, b.barycenter)
    for ta, tb in zip(a.plans, b.plans, strict=True):
        np.testing.assert_array_equal(ta, tb)
    np.testing.assert_array_equal(a.costs, b.costs)
    ma = mix(a, codes, rng=0)
    mb = mix(b, tcodes, rng=0)
    np.testing.assert_array_equal(ma, mb)


def test_deterministic_with_seed():
    codes = _clouds()
    a = fgw_barycenter(codes, n_points=12, seed=7)
    b = fgw_barycenter(codes, n_points=12, seed=7)
    c = fgw_barycenter(codes, n_points=12, seed=8)
    np.testing.assert_array_equal(a.barycenter, b.barycenter)
    for ta, tb in zip(a.plans, b.plans, strict=True):
        np.testing.assert_array_equal(ta, tb)
    assert a.history == b.history
    assert not np.array_equal(a.barycenter, c.barycenter)
    r1 = mix_and_pull_back(codes, rng=5, n_points=12, seed=7)
    r2 = mix_and_pull_back(codes, rng=5, n_points=12, seed=7)
    for x, y in zip(r1[1] + r1[2], r2[1] + r2[2], strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("n_points", [None, 7, 30])
def test_barycenter_mean_is_weighted_mean_of_clouds(n_points):
    # exact property of the normalised barycentric update, any N (incl. N > n_k),
    # to the working precision of each solver (the fast one iterates in float32)
    codes = _clouds(sizes=(10, 12))
    expected = 0.75 * codes[0].mean(0) + 0.25 * codes[1].mean(0)
    for solver, tol in (("exact", 1e-9), ("fast", 1e-6)):
        res = fgw_barycenter(
            codes, n_points=n_points, weights=[3.0, 1.0], seed=0, solver=solver
        )
        assert res.barycenter.shape == (n_points or 10, 5)
        np.testing.assert_allclose(res.barycenter.mean(0), expected, atol=tol)


# ---------------------------------------------------------------------------
# projection, mixing, pull-back
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_projection_lives_on_codes_scale(variant):
    codes = _clouds()
    res = fgw_barycenter(codes, variant=variant, n_points=24, seed=0)
    proj = project(res, codes)
    for p, z in zip(proj, codes, strict=True):
        assert p.shape == (24, 5)
        # normalised projection preserves the cloud mean exactly ...
        np.testing.assert_allclose(p.mean(0), z.mean(0), atol=1e-9)
        # ... and rows are codes-sized, not shrunk by ~1/N
        ratio = np.linalg.norm(p, axis=1).mean() / np.linalg.norm(z, axis=1).mean()
        assert 0.5 < ratio < 1.5


def test_mix_is_convex_combination_and_random():
    codes = _clouds()
    res = fgw_barycenter(codes, n_points=24, seed=0)
    proj = np.stack(project(res, codes))
    z1 = mix(res, codes, rng=1)
    z2 = mix(res, codes, rng=2)
    z1b = mix(res, codes, rng=np.random.default_rng(1))
    assert z1.shape == (24, 5)
    eps = 1e-9
    for z in (z1, z2):
        assert np.all(z >= proj.min(0) - eps) and np.all(z <= proj.max(0) + eps)
    assert not np.allclose(z1, z2)
    np.testing.assert_array_equal(z1, z1b)


def test_mix_weights_drawn_per_point_and_dimension():
    codes = _clouds(sizes=(30, 30), d=8)
    res = fgw_barycenter(codes, variant="w", seed=0)
    p0, p1 = project(res, codes)
    zmix = mix(res, codes, rng=0)
    gap = p0 - p1
    ok = np.abs(gap) > 1e-3
    w0 = np.where(ok, (zmix - p1) / np.where(ok, gap, 1.0), np.nan)  # weight of 0
    assert np.nanmin(w0) >= -1e-9 and np.nanmax(w0) <= 1 + 1e-9
    # independent per dimension: weights vary within a row, and across rows
    assert np.nanmean(np.nanstd(w0, axis=1)) > 0.2
    assert np.nanmean(np.nanstd(w0, axis=0)) > 0.2


def test_mix_concentration_controls_spread():
    codes = _clouds(sizes=(30, 30), shift=0.0)
    res = fgw_barycenter(codes, variant="w", seed=0)
    proj = np.stack(project(res, codes))
    mid = proj.mean(0)
    dev_small = np.abs(mix(res, codes, concentration=0.05, rng=0) - mid).mean()
    dev_large = np.abs(mix(res, codes, concentration=50.0, rng=0) - mid).mean()
    assert dev_large < 0.5 * dev_small


def test_single_agent_mix_is_projection():
    codes = _clouds(sizes=(15,))
    res = fgw_barycenter(codes, n_points=10, seed=0)
    np.testing.assert_allclose(mix(res, codes, rng=0), project(res, codes)[0])


@pytest.mark.parametrize(("variant", "alpha"), [("fgw", 0.2), ("fgw", 0.8), ("w", 0.5)])
def test_identical_clouds_roundtrip_recovers_codes(variant, alpha):
    z = np.random.default_rng(4).normal(size=(40, 6))
    res, mixed, pulled = mix_and_pull_back(
        [z, torch.from_numpy(z.copy())],
        rng=0,
        variant=variant,
        alpha=alpha,
        seed=0,
        solver="exact",
    )
    n = len(z)
    for t in res.plans:  # plans are (scaled) permutations, here the identity
        np.testing.assert_allclose(t, np.eye(n) / n, atol=1e-12)
    np.testing.assert_allclose(res.barycenter, z, atol=1e-12)
    assert res.objective == pytest.approx(0.0, abs=1e-12)
    for m, pb in zip(mixed, pulled, strict=True):
        assert m.shape == (n, 6)
        np.testing.assert_allclose(m, z, atol=1e-10)
        np.testing.assert_allclose(pb, z, atol=1e-10)


def test_pull_back_shapes_and_mix_and_pull_back_consistency():
    codes = _clouds()
    res, mixed, pulled = mix_and_pull_back(codes, rng=3, n_points=22, seed=0)
    zmix = mix(res, codes, rng=3)
    for k, z in enumerate(codes):
        assert mixed[k].shape == z.shape
        assert pulled[k].shape == z.shape
    for a, b in zip(mixed, pull_back(res, zmix), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)
    for a, b in zip(pulled, pull_back(res, res.barycenter), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)
    # pull-back of a constant field is that constant (normalised, no shrink)
    const = np.full((22, 5), 3.0)
    for pb in pull_back(res, const):
        np.testing.assert_allclose(pb, 3.0, atol=1e-12)


def test_gw_matches_rotated_copies():
    rng = np.random.default_rng(0)
    x, lab = _clustered(rng)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    perm = rng.permutation(len(x))
    y = (x @ q.T)[perm]  # y[j] is the rotated copy of x[perm[j]]
    res = fgw_barycenter([x, y], variant="gw", seed=0)
    composed = res.plans[0].T @ res.plans[1]  # x-sample -> y-sample coupling
    match = composed.argmax(axis=1)
    truth = np.argsort(perm)  # x[l] sits at y[truth[l]]
    assert (match == truth).mean() >= 0.9
    assert (lab[perm][match] == lab).mean() >= 0.95


@pytest.mark.parametrize("variant", VARIANTS)
def test_degenerate_identical_codes(variant):
    codes = [np.ones((8, 4)), np.ones((5, 4))]
    res, mixed, pulled = mix_and_pull_back(codes, rng=0, variant=variant, seed=0)
    assert res.scale == 1.0
    assert np.all(np.isfinite(res.barycenter)) and np.all(np.isfinite(res.costs))
    np.testing.assert_allclose(res.barycenter, 1.0)
    for t, z in zip(res.plans, codes, strict=True):
        np.testing.assert_allclose(t.sum(0), 1.0 / len(z), atol=1e-12)
    for m in mixed + pulled:
        np.testing.assert_allclose(m, 1.0)
    # one degenerate cloud among normal ones
    res2 = fgw_barycenter([np.zeros((6, 4)), _clouds(sizes=(9,), d=4)[0]], seed=0)
    assert np.all(np.isfinite(res2.barycenter)) and np.isfinite(res2.objective)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_nan_codes_name_the_cloud():
    codes = _clouds()
    codes[2][3, 1] = np.nan
    with pytest.raises(MixerError, match=r"codes\[2\].*non-finite"):
        fgw_barycenter(codes)
    codes[2][3, 1] = np.inf
    with pytest.raises(MixerError, match=r"codes\[2\]"):
        mix_and_pull_back(codes)


def test_dimension_mismatch():
    codes = _clouds()
    codes[1] = codes[1][:, :4]
    with pytest.raises(MixerError, match=r"codes\[1\].*d=4.*d=5"):
        fgw_barycenter(codes)


@pytest.mark.parametrize(
    ("codes", "pattern"),
    [
        ([], "at least one"),
        ([np.zeros((3, 2)), np.zeros((0, 2))], r"codes\[1\] is empty"),
        ([np.zeros(4)], r"codes\[0\] must be 2-D"),
        ([np.zeros((2, 3, 4))], r"codes\[0\] must be 2-D"),
        (np.zeros((3, 2)), "sequence"),
    ],
)
def test_bad_codes(codes, pattern):
    with pytest.raises(MixerError, match=pattern):
        fgw_barycenter(codes)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 1.5},
        {"alpha": -0.1},
        {"n_iter": 0},
        {"weights": [1.0, 0.0, 1.0]},
        {"weights": [1.0, 1.0]},
        {"variant": "sinkhorn"},
        {"init": 3},
        {"n_points": 0},
    ],
)
def test_bad_parameters(kwargs):
    with pytest.raises(MixerError):
        fgw_barycenter(_clouds(), **kwargs)


def test_mix_and_project_validate_against_result():
    codes = _clouds()
    res = fgw_barycenter(codes, seed=0)
    with pytest.raises(MixerError, match="concentration"):
        mix(res, codes, concentration=0.0)
    with pytest.raises(MixerError, match="concentration"):
        mix_and_pull_back(codes, concentration=-1.0)
    with pytest.raises(MixerError, match=r"codes\[1\]"):
        project(res, [codes[0], codes[1][:-1], codes[2]])
    with pytest.raises(MixerError):
        project(res, codes[:2])
    with pytest.raises(MixerError):
        pull_back(res, np.zeros((3, 5)))
    assert issubclass(MixerError, ValueError)


def test_align_projection_undoes_a_similarity_transform():
    rng = np.random.default_rng(3)
    target = rng.normal(size=(40, 4))
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    source = 2.5 * target @ q + 7.0  # another frame: rotated, scaled, shifted
    np.testing.assert_allclose(align_projection(source, target), target, atol=1e-8)
    flat = align_projection(np.ones((40, 4)), target)  # nothing to align: the mean
    np.testing.assert_allclose(flat, np.broadcast_to(target.mean(0), target.shape))


def test_own_frame_mix_is_coherent_for_matched_agents_in_different_frames():
    rng = np.random.default_rng(0)
    x, _ = _clustered(rng)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    y = 3.0 * x @ q + 5.0  # agent 2: the same samples, another encoder's frame
    res = fgw_barycenter([x, y], variant="gw", seed=0)
    own, _ = mix_targets(res, [x, y], own_only=True)
    framed, framed_bary = mix_targets(res, [x, y], rng=1, align=True)
    shared, shared_bary = mix_targets(res, [x, y], rng=1)
    # the no-mix ablation in the own frame: own projection, same barycenter targets
    alone, alone_bary = mix_targets(res, [x, y], own_only=True, align=True)
    for k in range(2):
        np.testing.assert_allclose(alone[k], own[k])
        np.testing.assert_allclose(alone_bary[k], framed_bary[k])
        scale = np.linalg.norm(own[k])
        # in its own frame every agent's mix is its own projection (the other
        # agent's codes map onto it), whatever the Dirichlet weights
        assert np.linalg.norm(framed[k] - own[k]) < 0.05 * scale
        # and so is its barycenter target (the alignment term's)
        assert np.linalg.norm(framed_bary[k] - own[k]) < 0.05 * scale
        # coordinate-wise mixing across frames is not
        assert np.linalg.norm(shared[k] - own[k]) > 0.3 * scale
        assert np.linalg.norm(shared_bary[k] - own[k]) > 0.3 * scale


def test_mix_frame_run_config_reaches_the_strategy():
    from otm_flower.config import ConfigError, RunConfig
    from strategies.otm import OTMStrategy

    own = OTMStrategy.from_run_config(RunConfig(mix_frame="own"), 2)
    shared = OTMStrategy.from_run_config(RunConfig(mix_frame="shared"), 2)
    assert own.mixer.align_frames is True
    assert shared.mixer.align_frames is False
    with pytest.raises(ConfigError, match="mix-frame must be one of"):
        RunConfig(mix_frame="mine")


def test_framed_targets_match_pairwise_alignment():
    # the batched alignment is the pairwise align_projection, every pair,
    # with the same Dirichlet draws (one per agent, in agent order)
    from otm_flower.mixer import _framed_targets, _mix_projections

    rng = np.random.default_rng(1)
    proj = [rng.standard_normal((20, 3)) * (k + 1) + k for k in range(4)]
    proj.append(np.full((20, 3), 2.0))  # nothing to align: maps onto the mean
    z_mix, z_bary = _framed_targets(proj, 0.5, np.random.default_rng(7), False)
    gen = np.random.default_rng(7)
    for k, own in enumerate(proj):
        framed = [
            own if j == k else align_projection(p, own) for j, p in enumerate(proj)
        ]
        np.testing.assert_allclose(z_bary[k], np.mean(framed, axis=0), atol=1e-10)
        expected = _mix_projections(framed, 0.5, gen)
        np.testing.assert_allclose(z_mix[k], expected, atol=1e-10)
    own_mix, _ = _framed_targets(proj, 0.5, np.random.default_rng(7), True)
    assert all(m is p for m, p in zip(own_mix, proj, strict=True))


def test_bounded_framed_mix_uses_each_agents_drawn_partners_only():
    # with more agents than partners, agent k frames, mixes and averages
    # itself and partners - 1 others drawn from the generator before its
    # weights: the same numbers as the pairwise alignment of that subset
    from otm_flower.mixer import _framed_targets, _mix_projections, _partners

    rng = np.random.default_rng(3)
    proj = [rng.standard_normal((20, 3)) * (k + 1) + k for k in range(6)]
    proj.append(np.full((20, 3), 2.0))  # nothing to align: maps onto the mean
    z_mix, z_bary = _framed_targets(proj, 0.5, np.random.default_rng(7), False, 3)
    gen = np.random.default_rng(7)
    used = set()
    for k, own in enumerate(proj):
        sub = _partners(k, len(proj), 3, gen)
        assert len(sub) == 3 and k in sub and len(set(sub.tolist())) == 3
        used.update(sub.tolist())
        framed = [own if j == k else align_projection(proj[j], own) for j in sub]
        np.testing.assert_allclose(z_bary[k], np.mean(framed, axis=0), atol=1e-10)
        expected = _mix_projections(framed, 0.5, gen)
        np.testing.assert_allclose(z_mix[k], expected, atol=1e-10)
    assert used == set(range(len(proj)))  # the draws differ between agents


def test_partner_bound_leaves_small_federations_unchanged():
    from otm_flower.mixer import MIX_PARTNERS

    clouds = _clouds(sizes=(20, 20, 20, 20))
    res = fgw_barycenter(clouds, seed=0)
    free = mix_targets(res, clouds, rng=5, align=True, partners=None)
    for partners in (4, MIX_PARTNERS):
        bounded = mix_targets(res, clouds, rng=5, align=True, partners=partners)
        for a, b in zip(free[0] + free[1], bounded[0] + bounded[1], strict=True):
            np.testing.assert_array_equal(a, b)
    two = mix_targets(res, clouds, rng=5, align=True, partners=2)
    assert not np.allclose(two[1][0], free[1][0])  # a mean of 2 framed, not 4
    with pytest.raises(MixerError, match="partners"):
        mix_targets(res, clouds, align=True, partners=0)
