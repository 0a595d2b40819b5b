"""Run-config keys: one source of truth, strict parsing."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from otm_flower.config import ConfigError, RunConfig, parse_run_config, valid_keys

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_pyproject_run_config_matches_the_defaults() -> None:
    app_config = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]
    assert sorted(app_config) == sorted(valid_keys())
    # the table lists the reference values; the preset is applied when parsed
    assert app_config == RunConfig().to_dict()
    assert parse_run_config(app_config) == parse_run_config({})
    assert parse_run_config({}).preset == "validated"


def test_readme_documents_every_key() -> None:
    readme = (PYPROJECT.parent / "README.md").read_text()
    missing = [key for key in valid_keys() if f"`{key}`" not in readme]
    assert not missing, f"README lacks run-config keys: {missing}"


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match="unknown run-config key 'epochs'.*local-epochs"
    ):
        parse_run_config({"epochs": 3})


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({"fgw-alpha": 1.5}, "fgw-alpha"),
        ({"task": "regression"}, "task"),
        ({"local-epochs": "three"}, "local-epochs"),
        ({"unaligned-rate": -0.1}, "unaligned-rate"),
        ({"latent-dim": 2.5}, "latent-dim"),
    ],
)
def test_bad_values_are_named(mapping, match) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_run_config(mapping)


def test_strings_from_the_command_line_are_converted() -> None:
    config = parse_run_config({"local-epochs": "4", "fgw-alpha": "0.25", "seed": 3})
    assert (config.local_epochs, config.fgw_alpha, config.seed) == (4, 0.25, 3)
    assert parse_run_config(config.to_dict()) == config


def test_mixer_device_values() -> None:
    from otm_flower.config import ConfigError, parse_run_config

    assert parse_run_config({}).mixer_device == "cpu"
    assert parse_run_config({"mixer-device": "cuda:1"}).mixer_device == "cuda:1"
    with pytest.raises(ConfigError, match="mixer-device must be"):
        parse_run_config({"mixer-device": "gpu"})
    with pytest.raises(ConfigError, match="needs solver=fast"):
        parse_run_config({"mixer-device": "cuda", "solver": "exact"})
