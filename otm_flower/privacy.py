"""Local differential privacy for uploaded latent codes: clip, add Gaussian noise,
and account the (epsilon, delta) spent per training row with Flower's accountant.

The mechanism, per round and agent (see docs/privacy.md):

* each training row is drawn independently with probability ``q = size / n_train``
  (Poisson sampling; ``size`` is the upload bound ``mix-batch-size``), linked rows
  by a coin every agent holding the record agrees on, the others by the agent's own
  coin; a draw above ``size`` keeps the linked rows and a uniform subset of the
  others (the bound always holds);
* each drawn code is clipped to L2 norm ``clip`` and gets ``N(0, (noise*clip)^2)``
  per coordinate.

Neighbouring data sets differ in one row's features (replace-one), so one code
moves by at most ``2 * clip``: a release is a Gaussian mechanism with noise
multiplier ``noise / 2`` relative to that sensitivity. The number of uploaded
codes is visible to the server but does not depend on the features, and given
that number ``k`` the unlinked rows sent are a uniform ``k``-subset of the
unlinked rows: each round is the sampled-without-replacement Gaussian mechanism
of at most ``size`` of them, accounted with Flower's RDP accountant
(:class:`flwr.serverapp.RdpAccountant` over Google's ``dp-accounting``) and
composed over rounds. A linked row's upload carries its record id, so whether it
went up is visible: its privacy loss is that of ``K ~ Binomial(rounds, q)``
Gaussian releases, accounted exactly (the delta of each ``K``, from
``dp-accounting``'s Gaussian privacy loss, averaged over ``K``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from dp_accounting import (
    GaussianDpEvent,
    NeighboringRelation,
    SampledWithoutReplacementDpEvent,
)
from dp_accounting.pld.privacy_loss_mechanism import GaussianPrivacyLoss
from dp_accounting.rdp import RdpAccountant
from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon
from scipy import optimize, stats

#: Renyi orders of the sampled-without-replacement accountant (integers: the
#: accountant's bound for that sampling is computed at integer orders).
RDP_ORDERS: tuple[float, ...] = tuple(float(a) for a in range(2, 65)) + (
    80.0,
    96.0,
    128.0,
    192.0,
    256.0,
)


def clip_and_noise(
    codes: np.ndarray, clip: float, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Clip each row to L2 norm ``clip`` and add Gaussian noise of std ``noise*clip``.

    Parameters
    ----------
    codes : np.ndarray
        ``n x d`` codes, one row per sample.
    clip : float
        L2 bound per row (> 0).
    noise : float
        Noise multiplier (>= 0): standard deviation relative to ``clip``.
    rng : np.random.Generator
        Source of the noise (keep it local to the agent).
    """
    if clip <= 0 or noise < 0:
        raise ValueError(
            f"need clip > 0 and noise >= 0, got clip={clip}, noise={noise}"
        )
    norms = np.linalg.norm(codes, axis=1, keepdims=True)
    clipped = codes * np.minimum(1.0, clip / np.maximum(norms, 1e-12))
    return clipped + rng.normal(scale=noise * clip, size=codes.shape)


def _check(noise: float, rounds: int, delta: float) -> float | None:
    """The epsilon of the trivial cases (no release: 0, no noise: inf), else None."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if noise < 0:
        raise ValueError(f"noise multiplier must be >= 0, got {noise}")
    if rounds <= 0:
        return 0.0
    return float("inf") if noise == 0 else None


@functools.lru_cache(maxsize=256)
def _round_rdp(noise: float, sample_size: int, population: int) -> tuple[float, ...]:
    """RDP (at :data:`RDP_ORDERS`) of one round of the unlinked rows' uploads."""
    accountant = RdpAccountant(list(RDP_ORDERS), NeighboringRelation.REPLACE_ONE)
    accountant.compose(
        SampledWithoutReplacementDpEvent(
            population, sample_size, GaussianDpEvent(noise / 2.0)
        )
    )
    return tuple(float(r) for r in accountant.rdp)


@functools.lru_cache(maxsize=1024)
def sampled_epsilon(
    noise: float, rounds: int, sample_size: int, population: int, delta: float
) -> float:
    """Epsilon of an unlinked row after ``rounds`` uploads of at most
    ``sample_size`` of the ``population`` unlinked rows (replace-one).

    Parameters
    ----------
    noise : float
        Noise multiplier of :func:`clip_and_noise` (std ``noise * clip``).
    rounds : int
        Rounds composed.
    sample_size, population : int
        Upload bound and number of unlinked rows (``1 <= sample_size``).
    delta : float
        Target delta in (0, 1).
    """
    trivial = _check(noise, rounds, delta)
    if trivial is not None:
        return trivial
    if population < 1 or sample_size < 1:
        raise ValueError(
            f"need population >= 1 and sample_size >= 1, got {population}, "
            f"{sample_size}"
        )
    sample_size = min(sample_size, population)
    rdp = np.asarray(_round_rdp(float(noise), sample_size, population)) * rounds
    epsilon, _ = compute_epsilon(RDP_ORDERS, rdp, delta)
    return float(epsilon)


@functools.lru_cache(maxsize=64)
def _linked_losses(
    noise: float, rounds: int, rate: float
) -> tuple[np.ndarray, tuple[GaussianPrivacyLoss, ...]]:
    """P(K = k) for k = 1..rounds, and the privacy loss of k Gaussian releases
    (one Gaussian of noise multiplier ``noise / 2 / sqrt(k)``)."""
    ks = np.arange(1, rounds + 1)
    losses = tuple(GaussianPrivacyLoss(noise / 2.0 / math.sqrt(k)) for k in ks)
    return stats.binom.pmf(ks, rounds, rate), losses


def linked_delta(noise: float, rounds: int, rate: float, epsilon: float) -> float:
    """Delta at ``epsilon`` of a linked row drawn with probability ``rate`` in
    each of ``rounds`` rounds (``K ~ Binomial(rounds, rate)`` Gaussian releases of
    sensitivity ``2 * clip``; exact)."""
    weights, losses = _linked_losses(float(noise), rounds, float(rate))
    deltas = [loss.get_delta_for_epsilon(epsilon) for loss in losses]
    return float(np.dot(weights, deltas))


@functools.lru_cache(maxsize=1024)
def linked_epsilon(noise: float, rounds: int, rate: float, delta: float) -> float:
    """Epsilon of a linked row (see :func:`linked_delta`); ``rate`` in (0, 1]."""
    trivial = _check(noise, rounds, delta)
    if trivial is not None:
        return trivial
    if not 0 < rate <= 1:
        raise ValueError(f"sampling rate must be in (0, 1], got {rate}")
    if linked_delta(noise, rounds, rate, 0.0) <= delta:
        return 0.0
    high = 1.0
    while linked_delta(noise, rounds, rate, high) > delta:
        high *= 2.0
    return float(
        optimize.brentq(
            lambda e: linked_delta(noise, rounds, rate, e) - delta,
            0.0,
            high,
            xtol=1e-6,
        )
    )


def upload_epsilon(
    noise: float,
    rounds: int,
    *,
    size: int,
    n_train: int,
    n_linked: int,
    delta: float,
) -> float:
    """Epsilon spent by the most exposed training row of an agent after ``rounds``
    rounds of Poisson-sampled uploads (the larger of the unlinked and the linked
    rows' epsilon).

    Parameters
    ----------
    noise : float
        Noise multiplier (``dp-noise``).
    rounds : int
        Rounds the agent has uploaded in.
    size : int
        Upload bound (``mix-batch-size``); the sampling rate is ``size / n_train``.
    n_train, n_linked : int
        The agent's training rows, and how many of them carry a record id.
    delta : float
        Target delta (``dp-delta``).
    """
    if not 0 <= n_linked <= n_train or n_train < 1 or size < 1:
        raise ValueError(
            f"need 0 <= n_linked <= n_train, n_train >= 1 and size >= 1, got "
            f"n_linked={n_linked}, n_train={n_train}, size={size}"
        )
    epsilon = 0.0
    if n_linked < n_train:
        epsilon = sampled_epsilon(noise, rounds, size, n_train - n_linked, delta)
    if n_linked > 0:
        rate = min(1.0, size / n_train)
        epsilon = max(epsilon, linked_epsilon(noise, rounds, rate, delta))
    return epsilon


def noise_for_epsilon(
    epsilon: float,
    rounds: int,
    *,
    size: int,
    n_train: int,
    n_linked: int,
    delta: float,
) -> float:
    """The smallest noise multiplier whose :func:`upload_epsilon` after
    ``rounds`` rounds is at most ``epsilon`` (to 0.1%)."""
    if epsilon <= 0 or rounds < 1:
        raise ValueError(f"need epsilon > 0 and rounds >= 1, got {epsilon}, {rounds}")

    def spent(noise: float) -> float:
        return upload_epsilon(
            noise, rounds, size=size, n_train=n_train, n_linked=n_linked, delta=delta
        )

    low, high = 0.05, 1.0
    while spent(high) > epsilon:
        low, high = high, high * 2.0
    while high - low > 1e-3 * high:
        mid = (low + high) / 2.0
        low, high = (low, mid) if spent(mid) <= epsilon else (mid, high)
    return high
