"""Parties with their own files under Flower's Deployment Runtime.

``otm-flower split`` turns a multi-view data set into one folder per party; a
real SuperLink and one SuperNode per party then run the app, each SuperNode
given only its own files (``data-path``, ``test-path``) and the federation's
linkage secret, the ServerApp given no data set at all. Each SuperNode runs
with ``--isolation process`` beside the warm executor :mod:`clients.warm_exec`.
A SuperNode dying mid-run, and the server and a party restarting, are tested in
``tests/test_restart.py``.
Every process runs in its own session on loopback (insecure mode, tests only),
with ``FLWR_HOME`` in a temporary folder; all of them are stopped by process
group, also on failure (:mod:`tests.deployment_support`).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.deployment_support import (
    BIN,
    LOCALHOST,
    Party,
    Processes,
    cli_config,
    flwr_env,
    free_port,
    prepare_parties,
    read_table,
    small_views,
    split_into_parties,
    start_superlink,
    start_supernode,
    stream_run,
    wait_for_port,
)

pytestmark = pytest.mark.slow
#: A small, quick run: few rounds and epochs, small networks.
QUICK = (
    "local-epochs=1 latent-dim=8 hidden-dim=32 mix-batch-size=64 "
    'barycenter-iterations=2 output-dir=""'
)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[tuple[Processes, dict[str, str], int]]:
    procs = Processes(flwr_env(tmp_path, OMP_NUM_THREADS="1"), tmp_path)
    try:
        yield procs, procs.env, free_port()
    finally:
        procs.stop_all()


def start_federation(
    procs: Processes,
    env: dict[str, str],
    port: int,
    parties: list[Party],
    secret: Path,
) -> list[list[subprocess.Popen]]:
    """A SuperLink, one (warm) SuperNode per party, and a CLI config ``test``."""
    start_superlink(procs, port)
    fleet = f"{LOCALHOST}:{port}"
    nodes = [
        start_supernode(procs, f"supernode{i}", fleet, party.node_config(secret))
        for i, party in enumerate(parties)
    ]
    cli_config(env, port)
    wait_for_port(port)
    time.sleep(3)  # and let the SuperNodes register
    return nodes


def predicted_acc(party: Party, tmp_path: Path, name: str) -> float:
    """``otm-flower predict`` on the party's test file, scored against its labels."""
    from otm_flower.metrics import clustering_accuracy

    out = tmp_path / f"{name}-pred.csv"
    command = [
        str(BIN / "otm-flower"),
        "predict",
        "--model",
        str(party.model_dir),
        "--data",
        str(party.test),
        "--key-column",
        "record_key",
        "--label-column",
        "label",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    predicted = pd.read_csv(out, dtype={"record_key": str})
    truth = read_table(party.test)
    assert predicted["record_key"].tolist() == truth["record_key"].tolist()
    return clustering_accuracy(truth["label"].to_numpy(), predicted["cluster"])


def test_parties_with_their_own_files_train_and_predict(
    federation, tmp_path: Path
) -> None:
    procs, env, port = federation
    data = small_views(tmp_path / "hw.npz", views=(3, 1, 2), n=400, seed=0)
    secret = split_into_parties(data, tmp_path / "parties", link_rate=0.05)
    parties = prepare_parties(tmp_path / "parties")
    start_federation(procs, env, port, parties, secret)
    out = tmp_path / "result.json"
    nowhere = tmp_path / "no-such-data.npz"  # neither server nor parties read it
    run_config = (
        f"num-server-rounds=2 num-agents=3 n-clusters=10 {QUICK} "
        f'round-timeout=120 dataset="{nowhere}" out="{out}"'
    )
    rc, logs = stream_run(procs, run_config, timeout=420)
    assert rc == 0, logs[-3000:]
    assert out.exists(), logs[-3000:]
    result = json.loads(out.read_text())
    assert result["rejected"] == []
    # up: 2 rounds x 3 parties x 64 rows x (8 float32 code values + one int64 id)
    assert result["bytes_up"] == 2 * 3 * 64 * (8 * 4 + 8)
    agents = {a["id"]: a for a in result["agents"]}
    assert sorted(agents) == [0, 1, 2]
    for i, party in enumerate(parties):
        row = agents[i]
        assert row["round"] == 2 and row["n_test"] == 80, row
        assert (party.model_dir / "model.json").is_file(), party.model_dir
        assert -1.0 <= row["silhouette"] <= 1.0
        if not party.labelled:
            assert row["acc"] is None and row["nmi"] is None
            continue
        reported = row["acc"]
        assert 0.0 < reported <= 1.0
        assert predicted_acc(party, tmp_path, f"party-{i}") == pytest.approx(
            reported, abs=1e-9
        )
