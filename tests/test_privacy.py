"""Local DP on uploaded codes: clipping, noise, and the epsilon accountant."""

from __future__ import annotations

import numpy as np
import pytest

from otm_flower.privacy import clip_and_noise, gaussian_epsilon


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


def test_epsilon_grows_with_releases_and_falls_with_noise() -> None:
    delta = 1e-5
    one = gaussian_epsilon(noise=4.0, releases=1, delta=delta)
    # a single Gaussian release: RDP bound never beats the classic analytic one by
    # much, and is finite and positive
    assert 0 < one < 10
    assert gaussian_epsilon(4.0, 10, delta) > one
    assert gaussian_epsilon(8.0, 10, delta) < gaussian_epsilon(4.0, 10, delta)
    assert gaussian_epsilon(4.0, 0, delta) == 0.0
    assert gaussian_epsilon(0.0, 3, delta) == float("inf")
    # composition: k releases at noise s equal one release at noise s / sqrt(k)
    assert gaussian_epsilon(4.0, 4, delta) == pytest.approx(
        gaussian_epsilon(2.0, 1, delta), rel=1e-9
    )
