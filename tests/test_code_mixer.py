"""CodeMixer alone: settings from a run config, targets by id, fallbacks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import otm_flower.code_mixer as mixer_module
from otm_flower.code_mixer import CodeMixer
from otm_flower.config import RunConfig
from otm_flower.mixer import mix_and_pull_back

D = 4


def clouds(sizes: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, D)).astype(np.float32) for n in sizes]


def test_settings_come_from_the_run_config_and_are_frozen() -> None:
    config = RunConfig(
        method="otm-nomix",
        mix_frame="own",
        fgw_alpha=0.25,
        barycenter_iterations=3,
        solver="exact",
        dirichlet_concentration=2.0,
        anchor_weight=10.0,
        seed=9,
    )
    mixer = CodeMixer.from_run_config(config)
    assert mixer == CodeMixer(
        alpha=0.25,
        variant="fgw",
        iterations=3,
        solver="exact",
        device="cpu",
        concentration=2.0,
        own_only=True,
        align_frames=True,
        anchor_weight=10.0,
        seed=9,
    )
    assert CodeMixer.from_run_config(RunConfig(method="otm-w")).variant == "w"
    with pytest.raises(dataclasses.FrozenInstanceError):
        mixer.alpha = 0.5  # type: ignore[misc]


def test_targets_by_id_equal_one_mixing_step() -> None:
    mixer = CodeMixer(iterations=2, seed=5)
    codes = clouds([10, 12, 14])
    mixed = mixer.mix(3, [7, 8, 9], codes)
    result, expected_mixed, expected_bary = mix_and_pull_back(
        codes,
        rng=np.random.default_rng([5, 3]),
        concentration=0.5,
        alpha=0.5,
        variant="fgw",
        n_iter=2,
        solver="fast",
        device="cpu",
        seed=5 * 100_003 + 3,
    )
    assert sorted(mixed.targets) == [7, 8, 9] and mixed.withheld == ()
    assert mixed.failures == () and mixed.anchoring is None and mixed.seconds > 0
    assert mixed.result is not None
    assert mixed.result.objective == result.objective
    for key, m, b in zip([7, 8, 9], expected_mixed, expected_bary, strict=True):
        np.testing.assert_array_equal(mixed.targets[key][0], m)
        np.testing.assert_array_equal(mixed.targets[key][1], b)


def test_failed_barycenter_falls_back_to_wasserstein_then_gives_up(
    monkeypatch,
) -> None:
    real = mixer_module.mix_and_pull_back

    def fgw_fails(codes, **kwargs):
        if kwargs["variant"] == "fgw":
            raise FloatingPointError("injected")
        return real(codes, **kwargs)

    monkeypatch.setattr(mixer_module, "mix_and_pull_back", fgw_fails)
    mixed = CodeMixer(iterations=1).mix(1, [1, 2], clouds([9, 11]))
    assert mixed.failures == (("fgw", "FloatingPointError: injected"),)
    assert mixed.result is not None and mixed.result.variant == "w"
    assert sorted(mixed.targets) == [1, 2]

    def always_fails(codes, **kwargs):
        raise FloatingPointError("injected")

    monkeypatch.setattr(mixer_module, "mix_and_pull_back", always_fails)
    mixed = CodeMixer(iterations=1).mix(1, [1, 2], clouds([9, 11]))
    assert [v for v, _ in mixed.failures] == ["fgw", "w"]
    assert mixed.result is None and mixed.targets == {} and mixed.seconds == 0.0


def test_non_finite_targets_are_withheld(monkeypatch) -> None:
    real = mixer_module.mix_and_pull_back

    def nan_for_second(codes, **kwargs):
        result, mixed, bary = real(codes, **kwargs)
        mixed[1] = np.full_like(mixed[1], np.nan)
        return result, mixed, bary

    monkeypatch.setattr(mixer_module, "mix_and_pull_back", nan_for_second)
    mixed = CodeMixer(iterations=1).mix(1, [4, 5, 6], clouds([8, 8, 8]))
    assert sorted(mixed.targets) == [4, 6] and mixed.withheld == (5,)


def test_anchor_ids_make_the_barycenter_anchored() -> None:
    codes = clouds([12, 12], seed=2)
    ids = [np.arange(12, dtype=np.int64), np.arange(12, dtype=np.int64)]
    mixed = CodeMixer(iterations=1, solver="exact").mix(1, [0, 1], codes, ids)
    assert mixed.anchoring is not None and "shared ids" in mixed.anchoring
    assert sorted(mixed.targets) == [0, 1]
    plain = CodeMixer(iterations=1, solver="exact").mix(1, [0, 1], codes, [None, None])
    assert plain.anchoring is None


def test_own_frame_mix_bounds_the_partners_of_each_agent() -> None:
    from otm_flower.mixer import MIX_PARTNERS

    assert CodeMixer().partners == MIX_PARTNERS
    bounded = CodeMixer(iterations=1, seed=2, align_frames=True, partners=3)
    unbounded = dataclasses.replace(bounded, partners=None)
    small, large = clouds([8] * 3), clouds([8] * 5, seed=1)
    a, b = bounded.mix(1, range(3), small), unbounded.mix(1, range(3), small)
    for k in range(3):  # no more agents than partners: the same targets
        np.testing.assert_array_equal(a.targets[k][0], b.targets[k][0])
        np.testing.assert_array_equal(a.targets[k][1], b.targets[k][1])
    a, b = bounded.mix(1, range(5), large), unbounded.mix(1, range(5), large)
    assert sorted(a.targets) == list(range(5))
    assert not np.allclose(a.targets[0][1], b.targets[0][1])
