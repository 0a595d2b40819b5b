"""A short in-process Flower simulation of OTM on Handwritten (Ray backend)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otm_flower.config import parse_run_config
from simulations.cli import simulate

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


def make_recorder(folder: str):
    """A Flower mod that writes the structure of every reply an agent sends."""

    def record_replies(msg, context, call_next):
        import json as _json
        import uuid
        from pathlib import Path as _Path

        reply = call_next(msg, context)
        content = reply.content
        summary = {
            "type": msg.metadata.message_type,
            "config_records": list(content.config_records),
            "array_records": {
                name: {
                    key: {"shape": list(arr.shape), "dtype": arr.dtype}
                    for key, arr in record.items()
                }
                for name, record in content.array_records.items()
            },
            "metric_records": {
                name: {key: type(v).__name__ for key, v in record.items()}
                for name, record in content.metric_records.items()
            },
        }
        _Path(folder, f"{uuid.uuid4().hex}.json").write_text(_json.dumps(summary))
        return reply

    return record_replies


def test_simulation_reports_every_agent_and_sends_only_codes(tmp_path: Path) -> None:
    rounds, mix_batch, latent = 2, 64, 8
    config = parse_run_config(
        {
            "num-server-rounds": rounds,
            "local-epochs": 1,
            "latent-dim": latent,
            "hidden-dim": 32,
            "mix-batch-size": mix_batch,
            "barycenter-iterations": 2,
            "out": str(tmp_path / "result.json"),
            "output-dir": str(tmp_path / "runs"),
            "diagnostics-dir": "auto",
        }
    )
    log_dir = tmp_path / "messages"
    log_dir.mkdir()
    result = simulate(
        config, runtime="ray", num_cpus=2, mods=[make_recorder(str(log_dir))]
    )

    assert json.loads((tmp_path / "result.json").read_text()) == result
    (run_dir,) = (tmp_path / "runs").iterdir()  # one folder named by the run
    assert run_dir.name.startswith("handwritten-otm-clustering-seed0-run")
    assert json.loads((run_dir / "result.json").read_text()) == result
    assert (run_dir / "history.png").stat().st_size > 1000
    assert result["dataset"] == "handwritten" and result["rounds"] == rounds
    assert [a["id"] for a in result["agents"]] == list(range(6))
    for agent in result["agents"]:
        assert agent["round"] == rounds
        assert 0.1 < agent["acc"] <= 1.0 and 0.0 < agent["nmi"] <= 1.0
        assert agent["n_train"] == 1600 and agent["n_test"] == 400
        assert agent["accuracy"] is None
    assert result["mean"]["acc"] == pytest.approx(
        sum(a["acc"] for a in result["agents"]) / 6
    )
    assert result["bytes_up"] == rounds * 6 * mix_batch * latent * 4
    assert result["bytes_down"] == (rounds - 1) * 6 * 2 * mix_batch * latent * 4
    assert len(result["history"]) == rounds and result["rejected"] == []
    # the couplings' class agreement, from labels the agents kept locally
    assert 0.0 <= result["coupling_agreement"] <= 1.0
    assert [h["round"] for h in result["coupling_agreement_history"]] == [1, 2]
    assert set(result["coupling_agreement_history"][-1]["per_agent"]) == {
        str(a) for a in range(6)
    }

    replies = [json.loads(p.read_text()) for p in log_dir.glob("*.json")]
    assert len(replies) == 2 * rounds * 6  # train + evaluate, every round, every agent
    for reply in replies:
        assert reply["config_records"] == []
        assert set(reply["metric_records"]) == {"metrics"}
        assert set(reply["metric_records"]["metrics"].values()) <= {"int", "float"}
        if reply["type"] == "train":
            assert reply["array_records"] == {
                "otm": {"codes": {"shape": [mix_batch, latent], "dtype": "float32"}}
            }
        else:
            assert reply["array_records"] == {}
