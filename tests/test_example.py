"""The plug-in example (a custom model in a user's own app) runs end to end."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_model" / "app.py"


def test_custom_model_example_runs_with_otm_strategy() -> None:
    from flwr.simulation import run_simulation

    spec = importlib.util.spec_from_file_location("custom_model_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    run_simulation(
        server_app=example.server_app,
        client_app=example.client_app,
        num_supernodes=2,
        backend_config={"init_args": {"num_cpus": 2}},
    )
    metrics = example.RESULTS["agent_metrics"]
    assert example.RESULTS["rejected"] == []
    assert sorted(metrics) == [1, 2, 3] and sorted(metrics[3]) == [0, 1]
    for agent in metrics[3].values():
        assert agent["acc"] > 0.2  # well above chance (0.1)
