"""The term guard: a party keeps its local score when OTM's targets only hurt."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from otm_flower.config import parse_run_config
from otm_flower.metrics import clustering_scores
from otm_flower.protocol import MixTargets
from otm_flower.term_guard import (
    TermGuard,
    codes_silhouette,
    guard_decision,
    holdout_size,
    term_guard_for,
)
from otm_flower.training import LocalTrainer, LossWeights

K = 3
WEIGHTS = LossWeights(rec=1.0, mix=1.0, reg=3.0, mmd=0.0, cluster=0.0)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _blobs(n: int = 120, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(K, size=n)
    centres = rng.normal(scale=4.0, size=(K, dim))
    x = centres[labels] + rng.normal(size=(n, dim))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype(np.float32), labels


def _trainer(x: np.ndarray, guard: TermGuard | None) -> LocalTrainer:
    return LocalTrainer(
        x,
        latent_dim=4,
        hidden_dim=32,
        batch_size=32,
        weights=WEIGHTS,
        num_clusters=K,
        seed=3,
        guard=guard,
    )


def _noise_targets(n: int, round_: int) -> MixTargets:
    rng = np.random.default_rng([7, round_])
    rows = rng.choice(n, size=64, replace=False)
    noise = rng.normal(scale=5.0, size=(64, 4)).astype(np.float32)
    return MixTargets(rows=rows, mixed=noise, barycenter=noise[::-1].copy())


def _own_targets(trainer: LocalTrainer, round_: int) -> MixTargets:
    """Targets that agree with the party: its own current codes of the rows."""
    rng = np.random.default_rng([8, round_])
    rows = rng.choice(trainer.n_train, size=64, replace=False)
    codes = trainer.encode(trainer.x.numpy()[rows])
    return MixTargets(rows=rows, mixed=codes, barycenter=codes.copy())


def _acc(trainer: LocalTrainer, x: np.ndarray, y: np.ndarray) -> float:
    return clustering_scores(trainer.encode(x), y, K, seed=0)["acc"]


def test_noise_targets_leave_the_local_score() -> None:
    x, y = _blobs()
    x_test, y_test = x[:60], y[:60]
    guarded, alone, unguarded = (
        _trainer(x, TermGuard()),
        _trainer(x, None),
        _trainer(x, None),
    )
    for trainer in (guarded, alone, unguarded):
        trainer.train(3)  # the first round has no targets
    kept = []
    for r in range(3):
        alone.train(1)
        kept.append(guarded.train(1, _noise_targets(len(x), r))["guard-kept"])
        unguarded.train(1, _noise_targets(len(x), r))
    assert guarded.guard is not None and guarded.guard.scale < 1.0
    assert sum(kept) < len(kept)
    if not any(kept):  # every round dropped: the local trajectory, step for step
        np.testing.assert_allclose(guarded.encode(x), alone.encode(x), atol=1e-5)
    local = _acc(alone, x_test, y_test)
    assert _acc(guarded, x_test, y_test) >= local - 0.02
    assert guarded.own_objective() <= unguarded.own_objective()


def test_noise_targets_leave_the_local_score_with_the_silhouette() -> None:
    criterion = "silhouette"
    x, y = _blobs()
    x_test, y_test = x[:60], y[:60]
    # alone: the same rows held out, never any targets (local training on the
    # rows the guarded party trains on, step for step)
    guarded, alone = (_trainer(x, TermGuard(criterion=criterion)) for _ in range(2))
    for trainer in (guarded, alone):
        trainer.train(3)
    kept = []
    for r in range(3):
        alone.train(1)
        kept.append(guarded.train(1, _noise_targets(len(x), r))["guard-kept"])
    assert guarded.guard is not None and guarded.guard.scale < 1.0
    assert sum(kept) < len(kept)
    if not any(kept):
        np.testing.assert_allclose(guarded.encode(x), alone.encode(x), atol=1e-5)
    assert _acc(guarded, x_test, y_test) >= _acc(alone, x_test, y_test) - 0.02


@pytest.mark.parametrize("criterion", ["held-out", "silhouette"])
def test_held_out_criteria_score_rows_no_step_trains_on(criterion: str) -> None:
    x, _ = _blobs(seed=4)
    probe = _trainer(x, TermGuard(criterion=criterion))
    held = probe.criterion_rows.numpy()
    assert probe.fit_rows is not None
    fit = probe.fit_rows.numpy()
    assert len(held) == holdout_size(len(x), probe.guard.rows) == 12
    assert set(held).isdisjoint(fit) and len(held) + len(fit) == len(x)
    # NaN features on the held-out rows: any step that read one (reconstruction,
    # mix or alignment term) would turn the model's parameters into NaN
    poisoned = x.copy()
    poisoned[held] = np.nan
    trainer = _trainer(poisoned, TermGuard(criterion=criterion))
    trainer.train(2)
    every_row = MixTargets(
        rows=np.arange(len(x)),
        mixed=np.zeros((len(x), 4), np.float32),
        barycenter=np.zeros((len(x), 4), np.float32),
    )
    for _ in range(2):
        trainer.train(1, every_row)
    for name, value in trainer.model.state_dict().items():
        assert torch.isfinite(value.float()).all(), name
    assert np.isfinite(trainer.encode(x[fit])).all()


def test_the_objective_criterion_trains_on_every_row() -> None:
    trainer = _trainer(_blobs()[0], TermGuard())
    assert trainer.fit_rows is None  # today's criterion: nothing held out


def test_holdout_size_and_silhouette() -> None:
    assert holdout_size(120, 256) == 12
    assert holdout_size(10_000, 256) == 256
    assert holdout_size(4, 256) == 2
    with pytest.raises(ValueError, match="4 training rows"):
        holdout_size(3, 256)
    x, _ = _blobs(n=90)
    separated = codes_silhouette(x, K)
    assert separated > codes_silhouette(
        np.random.default_rng(0).normal(size=x.shape), K
    )
    assert codes_silhouette(np.zeros((5, 2)), K) == -1.0
    assert codes_silhouette(np.full((5, 2), np.nan), K) == -1.0


def test_the_scale_reacts_to_helpful_and_harmful_targets() -> None:
    x, _ = _blobs(seed=1)
    helped, harmed = _trainer(x, TermGuard()), _trainer(x, TermGuard())
    helped.train(3)
    harmed.train(3)
    kept = {"helped": 0.0, "harmed": 0.0}
    for r in range(4):
        kept["helped"] += helped.train(1, _own_targets(helped, r))["guard-kept"]
        kept["harmed"] += harmed.train(1, _noise_targets(len(x), r))["guard-kept"]
    assert helped.guard is not None and harmed.guard is not None
    assert kept["helped"] >= 3 and kept["harmed"] == 0
    assert harmed.guard.scale == 0.5**4 < helped.guard.scale


def test_decision_rule_and_scale_bounds() -> None:
    assert guard_decision(1.0, 1.01, 1.0, 0.02) == (True, 1.0)
    assert guard_decision(0.25, 1.0, 1.0, 0.0) == (True, 0.5)
    assert guard_decision(1.0, 1.05, 1.0, 0.02) == (False, 0.5)
    with pytest.raises(ValueError, match="margin"):
        TermGuard(margin=-1.0)
    with pytest.raises(ValueError, match="scale"):
        TermGuard(scale=0.0)
    with pytest.raises(ValueError, match="criterion"):
        TermGuard(criterion="accuracy")


def test_scale_survives_the_saved_state() -> None:
    x, _ = _blobs(seed=2)
    trainer = _trainer(x, TermGuard())
    trainer.train(1, _noise_targets(len(x), 0))
    trainer.train(1, _noise_targets(len(x), 1))
    restored = _trainer(x, TermGuard())
    restored.load_state_bytes(trainer.state_bytes())
    assert trainer.guard is not None and restored.guard is not None
    assert restored.guard.scale == trainer.guard.scale


def test_guard_off_or_terms_off_train_as_before() -> None:
    x, _ = _blobs(seed=3)
    targets = _noise_targets(len(x), 0)
    plain, guarded = _trainer(x, None), _trainer(x, TermGuard())
    assert "guard-kept" not in guarded.train(1)  # no targets: nothing to guard
    plain.train(1)
    np.testing.assert_allclose(plain.encode(x), guarded.encode(x), atol=0)
    losses = plain.train(1, targets)
    assert "guard-scale" not in losses


def test_run_config_keys_build_the_guard() -> None:
    assert term_guard_for(parse_run_config({"preset": "paper"})) is None
    guard = term_guard_for(parse_run_config({"term-guard-margin": 0.05}))
    assert guard is not None and guard.margin == 0.05
    assert guard.criterion == "objective"
    config = parse_run_config({"term-guard-criterion": "held-out"})
    held_out = term_guard_for(config)
    assert held_out is not None and held_out.criterion == "held-out"
