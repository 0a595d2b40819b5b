"""Tests for the exhaustive cluster-relabelling search and the matching study."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from research.matching import (
    relabelling_agreement,
    relabelling_coupling,
    search_relabellings,
    semantic_relabelling,
)
from research.matching_study import main as study_main
from tests.synthetic import clustered_views_npz

# five clusters at pairwise different distances: no symmetry to confuse GW
CENTRES = np.array(
    [[0.0, 0.0, 0.0], [9.0, 0.0, 0.0], [0.0, 4.0, 0.0], [3.0, 3.0, 7.0], [12, 8, 2]]
)


def rotated_pair(seed: int) -> tuple[np.ndarray, ...]:
    """Two shuffled, noisy copies of one clustered cloud, the second rotated and
    scaled (its own frame), with the rows' classes."""
    rng = np.random.default_rng(seed)
    y1 = rng.integers(0, 5, 200)
    y2 = rng.integers(0, 5, 180)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    z1 = CENTRES[y1] + 0.3 * rng.normal(size=(200, 3))
    z2 = 2.5 * (CENTRES[y2] + 0.3 * rng.normal(size=(180, 3))) @ q + 5.0
    return z1, z2, y1, y2


def test_rotated_copies_are_matched_semantically() -> None:
    z1, z2, y1, y2 = rotated_pair(0)
    search = search_relabellings(z1, z2, 5)
    semantic = semantic_relabelling(search, y1, y2)
    assert np.array_equal(search.best, semantic)
    assert search.rank(semantic) == 0
    assert search.objectives.size == 120
    assert relabelling_agreement(search, search.best, y1, y2) > 0.95
    plan = relabelling_coupling(search, search.best)
    assert plan.shape == (200, 180)
    assert plan.sum() == pytest.approx(1.0)


def test_shuffled_labels_give_chance_agreement() -> None:
    z1, z2, y1, y2 = rotated_pair(1)
    search = search_relabellings(z1, z2, 5, structure="kernel")
    shuffled = np.random.default_rng(2).permutation(y2)
    chance = sum(np.mean(y1 == c) * np.mean(shuffled == c) for c in range(5))
    value = relabelling_agreement(search, search.best, y1, shuffled)
    assert abs(value - chance) < 0.06


def test_wrong_relabelling_scores_worse_and_ranks_higher() -> None:
    z1, z2, y1, y2 = rotated_pair(3)
    search = search_relabellings(z1, z2, 5, structure="euclidean")
    swapped = search.best.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert search.objective(swapped) > search.objective(search.best)
    assert search.rank(swapped) >= 1
    assert relabelling_agreement(search, swapped, y1, y2) < 0.7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_clusters": 11}, "n_clusters must be in 2..10"),
        ({"n_clusters": 1}, "n_clusters must be in 2..10"),
        ({"n_clusters": 3, "structure": "cosine"}, "structure must be one of"),
    ],
)
def test_bad_search_arguments(kwargs: dict, message: str) -> None:
    z1, z2, _, _ = rotated_pair(0)
    with pytest.raises(ValueError, match=message):
        search_relabellings(z1, z2, **kwargs)


def test_bad_clouds_and_permutations() -> None:
    z1, z2, y1, _ = rotated_pair(0)
    bad = z1.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="z1 contains NaN"):
        search_relabellings(bad, z2, 5)
    with pytest.raises(ValueError, match="z2 must be 2-D"):
        search_relabellings(z1, z2[:, 0], 5)
    with pytest.raises(ValueError, match="fewer than 5 clusters"):
        search_relabellings(z1, z2[:3], 5)
    search = search_relabellings(z1, z2, 5)
    with pytest.raises(ValueError, match="permutation of 0..4"):
        search.objective(np.array([0, 0, 1, 2, 3]))
    with pytest.raises(ValueError, match="do not fit plan"):
        relabelling_agreement(search, search.best, y1[:10], y1)


def test_study_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = clustered_views_npz(
        tmp_path / "three.npz", n=150, k=3, dims=(5, 4), spread=3.0, seed=1, name="t"
    )
    out = tmp_path / "study.json"
    argv = ["--dataset", str(data), "--features", "raw", "--rows", "60"]
    assert study_main([*argv, "--starts", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert [p["pair"] for p in run["pairs"]] == ["a-b"]
    mean = run["mean"]
    for route in ("gw", "gw-best", "gw-kernel", "annealed", "relabel"):
        assert 0.0 <= mean[route] <= 1.0
    # the semantic relabelling is the best any relabelling can do
    assert mean["relabel-ceiling"] >= mean["relabel"] - 1e-12
    assert 0.0 <= mean["relabel-rank-share"] < 1.0
    assert "| relabel-ceiling |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        study_main([*argv, "--routes", "gw,magic"])


def test_study_refuses_relabel_beyond_ten_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = clustered_views_npz(
        tmp_path / "eleven.npz", n=110, k=11, dims=(3, 3), spread=2.0, seed=0, name="e"
    )
    argv = ["--dataset", str(data), "--features", "raw", "--rows", "60"]
    assert study_main([*argv, "--routes", "relabel"]) == 2
    assert "11 classes" in capsys.readouterr().err
