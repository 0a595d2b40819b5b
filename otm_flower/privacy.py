"""Local differential privacy for uploaded latent codes: clip, add Gaussian noise,
and account the (epsilon, delta) spent per sample.

Each uploaded code is one sample's release. Clipping every code to L2 norm ``clip``
bounds what one sample can change: any two codes in the ball differ by at most
``2 * clip`` (local DP, replace-one neighbours). Adding ``N(0, (noise * clip)^2)``
per coordinate makes each release a Gaussian mechanism with sensitivity
``2 * clip`` and standard deviation ``noise * clip``. Releases of the same sample
over rounds compose; the accountant uses Renyi DP (Mironov 2017): a Gaussian
release has RDP ``alpha * S^2 / (2 sigma^2)`` at order ``alpha``, compositions add,
and ``epsilon = min_alpha RDP + log(1 / delta) / (alpha - 1)``. No amplification by
subsampling is claimed, so the bound is conservative.
"""

from __future__ import annotations

import numpy as np

RDP_ORDERS = np.concatenate([np.linspace(1.1, 10.9, 99), np.arange(11, 257)])


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


def gaussian_epsilon(noise: float, releases: int, delta: float) -> float:
    """Epsilon of ``releases`` Gaussian releases of one sample's clipped code.

    Parameters
    ----------
    noise : float
        Noise multiplier of :func:`clip_and_noise` (std = ``noise * clip``; the
        sensitivity is ``2 * clip``).
    releases : int
        How many times the sample's code was released.
    delta : float
        Target delta in (0, 1).

    Returns
    -------
    float
        The epsilon spent (``0`` without releases, ``inf`` without noise).
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if releases <= 0:
        return 0.0
    if noise <= 0:
        return float("inf")
    sensitivity_over_sigma = 2.0 / noise
    rdp = releases * RDP_ORDERS * sensitivity_over_sigma**2 / 2.0
    return float(np.min(rdp + np.log(1.0 / delta) / (RDP_ORDERS - 1.0)))
