"""Tests of the partly anchored barycenter (otm_flower.anchored)."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest

from otm_flower.anchored import (
    AnchoredBarycenterResult,
    anchored_fgw_barycenter,
    common_anchors,
    soft_anchor_profiles,
)
from otm_flower.metrics import coupling_agreement
from otm_flower.mixer import (
    BarycenterResult,
    MixerError,
    fgw_barycenter,
    mix,
    project,
    pull_back,
)


def _rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _rotated_copies(
    n: int = 120, d: int = 5, n_agents: int = 2, rate: float = 0.05, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Agents holding rotated, row-shuffled copies of one 3-cluster cloud.

    Returns codes, anchor ids (sample id for ~``rate`` of the samples, else
    -1), labels and each agent's sample ids.
    """
    rng = np.random.default_rng(seed)
    centers = 4.0 * rng.normal(size=(3, d))
    y = np.repeat(np.arange(3), n // 3)
    x = centers[y] + rng.normal(size=(y.size, d))
    anchored = rng.choice(y.size, size=max(2, round(rate * y.size)), replace=False)
    codes, ids, labels, samples = [], [], [], []
    for _ in range(n_agents):
        perm = rng.permutation(y.size)
        codes.append(x[perm] @ _rotation(d, rng))
        ids.append(np.where(np.isin(perm, anchored), perm, -1).astype(np.int64))
        labels.append(y[perm])
        samples.append(perm)
    return codes, ids, labels, samples


def _random_case(
    sizes: tuple[int, ...] = (30, 30, 30), shared: int = 5, seed: int = 1
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    codes = [rng.normal(size=(n, 4)) * (1 + k) for k, n in enumerate(sizes)]
    ids = []
    for n in sizes:
        a = np.full(n, -1, np.int64)
        rows = rng.choice(n, size=shared + 2, replace=False)
        a[rows[:shared]] = 100 + np.arange(shared)  # common to all clouds
        a[rows[shared:]] = rng.integers(1000, 2000, size=2)  # (almost) private
        ids.append(a)
    return codes, ids


def _check_couplings(res: BarycenterResult, sizes: list[int]) -> None:
    n = res.plans[0].shape[0]
    for t, nk in zip(res.plans, sizes, strict=True):
        assert t.shape == (n, nk)
        assert (t >= -1e-12).all()
        np.testing.assert_allclose(t.sum(axis=1), 1.0 / n, atol=1e-9)
        np.testing.assert_allclose(t.sum(axis=0), 1.0 / nk, atol=1e-9)


@pytest.mark.parametrize("variant", ["fgw", "w", "gw"])
def test_plans_are_couplings_with_fixed_anchor_mass(variant):
    codes, ids = _random_case()
    res = anchored_fgw_barycenter(codes, ids, variant=variant, n_iter=2, seed=0)
    assert isinstance(res, AnchoredBarycenterResult)
    assert isinstance(res, BarycenterResult)
    assert res.anchored and res.fallback_reason is None
    _check_couplings(res, [30, 30, 30])
    assert res.anchor_ids.size >= 5
    for k, t in enumerate(res.plans):
        held = res.anchor_rows[k] >= 0
        mass = t[res.anchor_points[held], res.anchor_rows[k][held]]
        np.testing.assert_allclose(mass, 1.0 / 30, atol=1e-12)
    # plan of the init cloud and bookkeeping
    assert len(res.history) == res.n_iter + 1
    assert res.objective == pytest.approx(float(res.weights @ res.costs))
    assert res.history[-1] == pytest.approx(res.objective)
    assert len(res.anchored_history) == len(res.history)


def test_unequal_sizes_and_n_points():
    codes, ids = _random_case(sizes=(24, 30, 36))
    res = anchored_fgw_barycenter(codes, ids, n_iter=2, seed=0, n_points=28)
    _check_couplings(res, [24, 30, 36])
    for k, t in enumerate(res.plans):
        held = res.anchor_rows[k] >= 0
        mass = t[res.anchor_points[held], res.anchor_rows[k][held]]
        assert (mass >= min(1 / 28, 1 / t.shape[1]) - 1e-12).all()
        assert res.anchor_mass[k] == pytest.approx(min(1 / 28, 1 / t.shape[1]))


def test_works_with_project_mix_pull_back():
    codes, ids = _random_case()
    res = anchored_fgw_barycenter(codes, ids, n_iter=1, seed=0)
    proj = project(res, codes)
    assert [p.shape for p in proj] == [(30, 4)] * 3
    # an anchor's projection is exactly its code in that cloud
    a = 0
    for k, p in enumerate(proj):
        np.testing.assert_allclose(
            p[res.anchor_points[a]], codes[k][res.anchor_rows[k][a]], atol=1e-9
        )
    z_mix = mix(res, codes, rng=0)
    back = pull_back(res, z_mix)
    assert [b.shape for b in back] == [(30, 4)] * 3
    assert all(np.isfinite(b).all() for b in back)


def test_costs_match_the_mixer_definition():
    codes, ids = _random_case()
    res = anchored_fgw_barycenter(
        codes, ids, variant="gw", n_iter=1, seed=0, structure_scale="common"
    )
    z = res.barycenter
    cks = [ot.dist(x, x) for x in codes]
    s = float(np.mean([c.max() for c in cks]))
    c = ot.dist(z, z) / s
    for k, t in enumerate(res.plans):
        ck = cks[k] / s
        p, q = t.sum(axis=1), t.sum(axis=0)
        diff = c[:, None, :, None] - ck[None, :, None, :]
        ref = float(np.einsum("ijkl,ij,kl->", diff**2, t, t))
        assert res.costs[k] == pytest.approx(ref, rel=1e-8)
        assert p.sum() == pytest.approx(1.0) and q.sum() == pytest.approx(1.0)


def test_rotated_copies_follow_anchors():
    codes, ids, labels, samples = _rotated_copies()
    res = anchored_fgw_barycenter(codes, ids, seed=0)
    assert res.anchored and res.anchor_ids.size == 6
    agree, _ = coupling_agreement(res.plans, labels)
    assert agree > 0.9
    n = res.plans[0].shape[0]
    coupling = n * res.plans[0].T @ res.plans[1]
    same_sample = samples[0][:, None] == samples[1][None, :]
    assert float(coupling[same_sample].sum()) > 0.9
    # labels independent of the matching: agreement at chance (1/3)
    rng = np.random.default_rng(5)
    shuffled, _ = coupling_agreement(res.plans, [rng.permutation(y) for y in labels])
    assert abs(shuffled - 1 / 3) < 0.1


@pytest.mark.parametrize("variant", ["fgw", "gw"])
def test_rotated_copies_variants(variant):
    codes, ids, labels, _ = _rotated_copies(n=90, n_agents=3, seed=3)
    res = anchored_fgw_barycenter(codes, ids, variant=variant, n_iter=2, seed=0)
    assert coupling_agreement(res.plans, labels)[0] > 0.9


def test_anchors_shared_by_two_of_three_clouds():
    codes, ids = _random_case()
    ids = [a.copy() for a in ids]
    ids[2][ids[2] >= 0] = -1  # cloud 2 holds no id
    ids[2][:3] = [900, 901, 902]  # private ids only
    ids[0][np.flatnonzero(ids[0] < 0)[:2]] = [700, 701]  # two more, shared with 1
    ids[1][np.flatnonzero(ids[1] < 0)[:2]] = [700, 701]
    res = anchored_fgw_barycenter(codes, ids, n_iter=1, seed=0)
    assert res.anchored
    assert set(res.anchor_ids.tolist()) >= {100, 101, 102, 103, 104, 700, 701}
    assert (res.anchor_rows[2] == -1).all()
    _check_couplings(res, [30, 30, 30])


def test_anchor_held_by_clouds_other_than_init():
    codes, ids = _random_case()
    ids = [a.copy() for a in ids]
    free1 = np.flatnonzero(ids[1] < 0)[:3]
    free2 = np.flatnonzero(ids[2] < 0)[:3]
    ids[1][free1] = [500, 501, 502]
    ids[2][free2] = [500, 501, 502]
    res = anchored_fgw_barycenter(codes, ids, n_iter=1, seed=0)
    a = int(np.flatnonzero(res.anchor_ids == 500)[0])
    assert res.anchor_rows[0][a] == -1
    pt = res.anchor_points[a]
    assert res.plans[1][pt, free1[0]] == pytest.approx(1 / 30)
    assert res.plans[2][pt, free2[0]] == pytest.approx(1 / 30)
    _check_couplings(res, [30, 30, 30])


def test_more_shared_ids_than_barycenter_points():
    """Clouds of 20 rows sharing 26 ids in all (each cloud a different 20): the 20
    ids held by all three clouds are the anchors, the rest match as plain rows."""
    rng = np.random.default_rng(4)
    codes = [rng.normal(size=(20, 3)) for _ in range(3)]
    common = np.arange(100, 114)  # 14 ids in every cloud
    extra = [np.arange(200, 206), np.arange(200, 206), np.arange(300, 306)]
    ids = [rng.permutation(np.concatenate([common, e])) for e in extra]
    # ids 200-205 are in clouds 0 and 1, ids 300-305 in cloud 2 only: 20 shared
    res = anchored_fgw_barycenter(codes, ids, n_iter=1, seed=0, n_points=16)
    assert res.anchored and res.anchor_ids.size == 16
    assert set(common.tolist()) <= set(res.anchor_ids.tolist())  # most holders
    _check_couplings(res, [20, 20, 20])
    full = anchored_fgw_barycenter(codes, ids, n_iter=1, seed=0)
    assert full.anchored and full.anchor_ids.size == 20


def test_fallback_with_fewer_than_two_anchors():
    codes, ids = _random_case(shared=1)
    with pytest.warns(UserWarning, match="label-free"):
        res = anchored_fgw_barycenter(codes, ids, n_iter=1, seed=0)
    assert not res.anchored and res.fallback_reason
    plain = fgw_barycenter(codes, n_iter=1, seed=0, solver="exact")
    for t, u in zip(res.plans, plain.plans, strict=True):
        np.testing.assert_allclose(t, u)
    none = [np.full(30, -1, np.int64) for _ in codes]
    with pytest.warns(UserWarning):
        assert not anchored_fgw_barycenter(codes, none, n_iter=1).anchored


def test_common_anchors_and_profiles():
    ids, rows = common_anchors(
        [np.array([5, -1, 7, 9]), np.array([9, 5, -1]), np.array([-1, 7])]
    )
    assert ids.tolist() == [5, 7, 9]
    assert [r.tolist() for r in rows] == [[0, 2, 3], [1, -1, 0], [-1, 1, -1]]
    assert common_anchors([np.array([1, 2]), np.array([2, 3])], 3)[0].size == 0
    z = np.random.default_rng(0).normal(size=(20, 3))
    phi = soft_anchor_profiles(z, np.array([0, 4, 9]))
    np.testing.assert_allclose(phi.sum(axis=1), 1.0)
    np.testing.assert_allclose(phi, soft_anchor_profiles(7.0 * z, np.array([0, 4, 9])))


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        ([np.full(30, -1), np.full(29, -1)], "29 ids but codes"),
        ([np.arange(30), np.r_[np.arange(29), 3]], "repeats"),
        ([np.arange(30.0), np.arange(30)], "integers"),
        ([np.arange(30) > 3, np.arange(30)], "integers"),
        ([np.arange(30) - 5, np.arange(30)], ">= 0"),
        ([np.arange(30)], "2 code clouds"),
        ([np.arange(30), np.arange(31)], "31 ids"),
        ([np.arange(30).reshape(15, 2), np.arange(30)], "1-D"),
    ],
)
def test_invalid_ids(ids, match):
    rng = np.random.default_rng(0)
    codes = [rng.normal(size=(30, 3)), rng.normal(size=(30, 3))]
    with pytest.raises(MixerError, match=match):
        anchored_fgw_barycenter(codes, ids)


def test_invalid_options():
    codes, ids = _random_case()
    with pytest.raises(MixerError, match="single array"):
        anchored_fgw_barycenter(codes, np.stack(ids))
    with pytest.raises(MixerError, match="landmark"):
        anchored_fgw_barycenter(codes, ids, landmark="bogus")  # type: ignore[arg-type]
    with pytest.raises(MixerError, match="anchor_weight"):
        anchored_fgw_barycenter(codes, ids, anchor_weight=-1.0)
    with pytest.raises(MixerError, match="n_points"):
        anchored_fgw_barycenter(codes, ids, n_points=0)
    with pytest.raises(MixerError, match="min_clouds"):
        anchored_fgw_barycenter(codes, ids, min_clouds=1)


def test_landmark_gw_and_options_run():
    codes, ids = _random_case()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kw in (
            {"landmark": "gw"},
            {"metric": "euclidean", "structure": "free"},
            {"metric": "cosine", "anchor_init": False},
            {"structure_scale": "common", "normalize_costs": False},
        ):
            res = anchored_fgw_barycenter(codes, ids, n_iter=1, seed=0, **kw)
            _check_couplings(res, [30, 30, 30])
