"""Local DP on uploaded codes: clipping, noise, Poisson sampling and the accountant."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.serverapp import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    RdpAccountant,
    SamplingMethod,
)
from scipy import optimize, stats

from clients.upload import poisson_rows
from otm_flower.privacy import (
    clip_and_noise,
    linked_epsilon,
    noise_for_epsilon,
    sampled_epsilon,
    upload_epsilon,
)

DELTA = 1e-5


def test_clipping_bounds_norms_and_noise_has_the_right_scale() -> None:
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(2000, 16)) * 5.0
    clipped = clip_and_noise(codes, clip=1.0, noise=0.0, rng=rng)
    assert np.linalg.norm(clipped, axis=1).max() <= 1.0 + 1e-9
    small = codes[:1] * 1e-3  # already inside the ball: unchanged
    np.testing.assert_allclose(clip_and_noise(small, 1.0, 0.0, rng), small)
    noisy = clip_and_noise(codes, clip=2.0, noise=0.5, rng=rng)
    assert np.std(noisy - clip_and_noise(codes, 2.0, 0.0, rng)) == pytest.approx(
        1.0, rel=0.05
    )
    with pytest.raises(ValueError, match="clip"):
        clip_and_noise(codes, clip=0.0, noise=1.0, rng=rng)


def _analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """Epsilon of the Gaussian mechanism of sensitivity / std ``mu`` (Balle and
    Wang 2018, exact)."""

    def gap(eps: float) -> float:
        return (
            stats.norm.cdf(-eps / mu + mu / 2)
            - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)
            - delta
        )

    return optimize.brentq(gap, 0.0, 200.0, xtol=1e-9)


@pytest.mark.parametrize("noise,rounds", [(4.0, 1), (6.0, 5), (10.0, 20)])
def test_linked_rows_always_drawn_match_the_analytic_gaussian(noise, rounds) -> None:
    # rate 1: ``rounds`` Gaussian releases of sensitivity 2*clip, std noise*clip:
    # one Gaussian with mu = 2 sqrt(rounds) / noise
    mu = 2.0 * math.sqrt(rounds) / noise
    assert linked_epsilon(noise, rounds, 1.0, DELTA) == pytest.approx(
        _analytic_gaussian_epsilon(mu, DELTA), rel=1e-4
    )


def test_linked_rows_sampled_spend_less_than_always_drawn() -> None:
    always = linked_epsilon(3.0, 20, 1.0, DELTA)
    sampled = linked_epsilon(3.0, 20, 0.16, DELTA)
    assert 0 < sampled < always
    # the mixture is bounded by its worst case: every round drawn
    assert linked_epsilon(3.0, 20, 0.5, DELTA) > sampled


def test_unlinked_rows_match_flowers_accountant() -> None:
    # the same event through Flower's accountant (over dp-accounting's RDP)
    config = PrivacyConfig(
        target_delta=DELTA,
        population_size=1520,
        neighboring_relation=NeighboringRelation.REPLACE_ONE,
        sampling_method=SamplingMethod.WITHOUT_REPLACEMENT,
    )
    accountant = RdpAccountant(config)
    accountant.compose(GaussianPrivacyEvent(1.0, 256, 1520), count=20)
    ours = sampled_epsilon(2.0, 20, 256, 1520, DELTA)
    assert ours == pytest.approx(accountant.get_epsilon(DELTA), rel=1e-3)


def test_sampling_amplifies_and_composition_grows() -> None:
    full = sampled_epsilon(2.0, 10, 1000, 1000, DELTA)  # everyone, every round
    sampled = sampled_epsilon(2.0, 10, 100, 1000, DELTA)
    assert sampled < 0.5 * full
    assert sampled_epsilon(2.0, 20, 100, 1000, DELTA) > sampled
    assert sampled_epsilon(4.0, 10, 100, 1000, DELTA) < sampled
    assert sampled_epsilon(2.0, 0, 100, 1000, DELTA) == 0.0
    assert sampled_epsilon(0.0, 3, 100, 1000, DELTA) == float("inf")
    with pytest.raises(ValueError, match="delta"):
        sampled_epsilon(2.0, 3, 100, 1000, 1.5)


def test_upload_epsilon_is_the_worse_class_and_calibration_inverts_it() -> None:
    kw = {"size": 256, "n_train": 1600, "delta": DELTA}
    unlinked = upload_epsilon(3.0, 20, n_linked=0, **kw)
    assert unlinked == pytest.approx(sampled_epsilon(3.0, 20, 256, 1600, DELTA))
    both = upload_epsilon(3.0, 20, n_linked=80, **kw)
    assert both == pytest.approx(
        max(
            sampled_epsilon(3.0, 20, 256, 1520, DELTA),
            linked_epsilon(3.0, 20, 0.16, DELTA),
        )
    )
    noise = noise_for_epsilon(8.0, 20, n_linked=80, **kw)
    assert upload_epsilon(noise, 20, n_linked=80, **kw) <= 8.0
    assert upload_epsilon(noise * 0.99, 20, n_linked=80, **kw) > 8.0
    with pytest.raises(ValueError, match="n_linked"):
        upload_epsilon(3.0, 20, n_linked=2000, **kw)


def test_poisson_sampling_rate_and_bound() -> None:
    rng = np.random.default_rng(0)
    ids = np.full(2000, -1, dtype=np.int64)
    ids[:200] = np.arange(200) * 11 + 5  # linked records
    sizes, linked_counts, hits = [], [], np.zeros(2000)
    for server_round in range(1, 301):
        rows = poisson_rows(ids, 100, rng, server_round=server_round)
        assert len(np.unique(rows)) == len(rows) <= 100
        sizes.append(len(rows))
        linked_counts.append(int(np.sum(rows < 200)))
        hits[rows] += 1
    # rate 100 / 2000 = 0.05 per row: about 100 rows per round, 10 linked
    assert np.mean(sizes) == pytest.approx(100 * (1 - 0.04), abs=3)  # capped
    assert np.mean(linked_counts) == pytest.approx(10.0, rel=0.1)
    assert hits[200:].mean() / 300 == pytest.approx(0.05, rel=0.1)
    # every agent holding a linked record draws it in the same rounds
    again = poisson_rows(ids, 100, np.random.default_rng(99), server_round=7)
    first = poisson_rows(ids, 100, np.random.default_rng(1), server_round=7)
    np.testing.assert_array_equal(
        np.sort(again[again < 200]), np.sort(first[first < 200])
    )


def test_poisson_batches_above_the_bound_keep_linked_rows() -> None:
    ids = np.arange(50, dtype=np.int64)  # all linked, rate 1: all drawn
    rows = poisson_rows(ids, 50, np.random.default_rng(0), server_round=1)
    assert sorted(rows) == list(range(50))
    ids = np.full(100, -1, dtype=np.int64)
    ids[:10] = np.arange(10)
    rows = poisson_rows(ids, 99, np.random.default_rng(0), server_round=1)
    assert len(rows) <= 99 and set(range(10)) <= set(rows.tolist())
