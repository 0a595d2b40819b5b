"""The ``preset`` key: validated settings per regime, explicit keys winning."""

from __future__ import annotations

import pytest

from otm_flower.agent import build_trainer, load_agents
from otm_flower.config import METHODS, RunConfig, latent_width, parse_run_config
from otm_flower.presets import GOVERNED_KEYS, VALIDATED, preset_keys
from simulations.benchmark.grid import REGIMES, regime_task
from simulations.benchmark.hyperparameters import (
    DEFAULT_HYPERPARAMETERS,
    _cell_table,
    load_hyperparameters,
)

ANCHORED = {"anchor-rate": 0.05}


def test_default_is_validated_and_paper_is_the_reference() -> None:
    assert parse_run_config({}).preset == "validated"
    paper = parse_run_config({"preset": "paper"})
    assert paper == RunConfig(preset="paper")
    assert (paper.weight_mix, paper.mix_frame, paper.term_guard) == (
        0.1,
        "shared",
        False,
    )


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({}, (0.0, 0.0, "own", True)),  # unaligned clustering: no mix
        (ANCHORED, (1.0, 3.0, "own", True)),  # linked records: mix and align
        ({"task": "classification"}, (0.1, 0.0, "shared", True)),
        # parties linked by record keys say so; auto follows anchor-rate
        ({"linked-records": "yes"}, (1.0, 3.0, "own", True)),
        ({**ANCHORED, "linked-records": "no"}, (0.0, 0.0, "own", True)),
        ({**ANCHORED, "linked-records": "auto"}, (1.0, 3.0, "own", True)),
    ],
)
def test_otm_takes_the_regime_settings(keys, expected) -> None:
    config = parse_run_config(keys)
    got = (config.weight_mix, config.weight_reg, config.mix_frame, config.term_guard)
    assert got == expected


def test_explicit_keys_win_over_the_preset() -> None:
    config = parse_run_config({**ANCHORED, "weight-mix": 2.5, "mix-frame": "own"})
    assert config.weight_mix == 2.5
    assert config.weight_reg == 3.0  # not set: the preset's
    config = parse_run_config({"term-guard": True, "weight-reg": 0.5})
    assert config.weight_reg == 0.5


def test_keys_set_to_the_reference_value_are_kept() -> None:
    config = parse_run_config({**ANCHORED, "term-guard": False, "mix-frame": "shared"})
    assert (config.term_guard, config.mix_frame, config.weight_mix) == (
        False,
        "shared",
        1.0,
    )


def test_flowers_complete_run_config_takes_the_preset() -> None:
    """Flower passes every key; reference values there count as left alone."""
    app_config = {**RunConfig().to_dict(), "anchor-rate": 0.05}
    config = parse_run_config(app_config)
    assert (config.weight_mix, config.weight_reg, config.term_guard) == (1.0, 3.0, True)
    config = parse_run_config({**app_config, "weight-mix": 2.0})
    assert config.weight_mix == 2.0


def test_linked_records_is_checked_and_read_from_flowers_run_config() -> None:
    full = {**RunConfig().to_dict(), "linked-records": "yes"}
    config = parse_run_config(full)
    assert config.linked and (config.weight_mix, config.weight_reg) == (1.0, 3.0)
    assert not parse_run_config({}).linked
    assert parse_run_config(ANCHORED).linked
    with pytest.raises(ValueError, match="linked-records must be one of"):
        parse_run_config({"linked-records": "maybe"})


def test_resolved_configs_survive_a_round_trip() -> None:
    for keys in ({}, ANCHORED, {"task": "classification"}, {"weight-mix": 4.0}):
        config = parse_run_config(keys)
        assert parse_run_config(config.to_dict()) == config


def test_baselines_differ_from_the_reference_in_code_width_only() -> None:
    for method in ("local", "fedavg", "oracle", "raw"):
        for keys in ({}, ANCHORED):
            validated = parse_run_config({**keys, "method": method})
            paper = parse_run_config({**keys, "method": method, "preset": "paper"})
            width = {"latent-dim": 10} if method != "raw" else {}
            assert validated.to_dict() | {"preset": "paper", **width} == (
                paper.to_dict()
            )


def test_every_method_has_a_table_and_governed_keys_are_keys() -> None:
    assert set(VALIDATED) == set(METHODS)
    fields = set(RunConfig().to_dict())
    assert set(GOVERNED_KEYS) <= fields
    with pytest.raises(ValueError, match="no validated settings"):
        preset_keys("nope", "clustering", False)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_presets_agree_with_the_hyperparameter_file(method, regime) -> None:
    """The benchmark's file and the packaged table give every cell the same keys."""
    task = regime_task(regime)
    tables = load_hyperparameters(DEFAULT_HYPERPARAMETERS)
    from_file = _cell_table(tables.get(method, {}), task, regime)
    from_file.pop("task")
    anchored = REGIMES[regime].get("anchor-rate", 0) > 0
    assert preset_keys(method, task, anchored) == from_file


@pytest.mark.parametrize("method", ["otm", "local", "fedavg", "oracle", "otm-head"])
def test_validated_codes_widen_with_the_class_count(method: str) -> None:
    """``latent-dim = 0`` (auto): the paper's 10, or k for k > 10 classes; an
    explicit width and the paper preset keep theirs."""
    task = "classification" if method == "otm-head" else "clustering"
    config = parse_run_config({"method": method, "task": task})
    assert config.latent_dim == 0
    assert [latent_width(config, k) for k in (4, 10, 15, 40)] == [10, 10, 15, 40]
    explicit = parse_run_config({"method": method, "task": task, "latent-dim": 8})
    assert latent_width(explicit, 40) == 8
    paper = parse_run_config({"method": method, "task": task, "preset": "paper"})
    assert latent_width(paper, 40) == 10


def test_a_trainer_takes_the_auto_width_from_its_class_count() -> None:
    config = parse_run_config({"hidden-dim": 16})
    agent = load_agents(config)[0][3]
    assert build_trainer(config, agent, 40).encode(agent.x_test).shape == (
        len(agent.x_test),
        40,
    )
    assert build_trainer(config, agent, 4).encode(agent.x_test).shape[1] == 10
