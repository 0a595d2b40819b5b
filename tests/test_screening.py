"""Screening of code clouds (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from otm_flower.screening import cloud_spread, screen_clouds


def test_spread_is_rms_radius() -> None:
    cloud = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]) + 5.0
    assert cloud_spread(cloud) == pytest.approx(1.0)


def test_honest_clouds_pass_and_outliers_are_named() -> None:
    rng = np.random.default_rng(0)
    clouds = [rng.normal(size=(50, 8)) * s for s in (1.0, 1.3, 0.8, 1.1)]
    assert screen_clouds(clouds) == [None] * 4
    clouds.append(rng.normal(size=(50, 8)) * 200.0)
    reasons = screen_clouds(clouds)
    assert reasons[:4] == [None] * 4 and "scale outlier" in (reasons[4] or "")
    assert screen_clouds(clouds, factor=0) == [None] * 5
    assert screen_clouds(clouds[:2]) == [None, None]  # too few to judge
    with pytest.raises(ValueError, match="factor"):
        screen_clouds(clouds, factor=-1)
